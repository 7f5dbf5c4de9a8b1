import pytest

from tiny import tiny_policy, tiny_tokenizer
from vapi.data.procedural import ProceduralShapes, save_as_image_folder
from vapi.models.weights_io import save_pretrained


@pytest.fixture
def cli_run(tmp_path):
    """An image folder, tiny generator/tokenizer folders and `vapi train` arguments for a 2-step run."""
    data = save_as_image_folder(ProceduralShapes(16, image_size=16, seed=1), tmp_path / "images")
    save_pretrained(tiny_policy(), tmp_path / "gpt")
    save_pretrained(tiny_tokenizer(), tmp_path / "vq")
    args = [f"model.gpt={tmp_path / 'gpt'}", f"model.vq={tmp_path / 'vq'}", f"data.path={data}",
            "objective.num_generations=4", "train.per_device_batch_size=4", "train.micro_batch_size=8",
            "reward.lpips=0", "train.progress=false", "train.image_steps=0", "train.save_steps=1",
            "train.tensorboard=false", "optim.learning_rate=1e-3", "train.max_steps=2",
            f"train.output_dir={tmp_path / 'run'}"]
    return tmp_path, args
