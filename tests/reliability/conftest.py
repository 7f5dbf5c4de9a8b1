import pytest


@pytest.fixture
def cli_run(tmp_path, tiny_run):
    """An image folder, tiny generator/tokenizer folders and `vapi train` arguments for a 2-step run."""
    return tmp_path, tiny_run(16, "train.image_steps=0", "train.save_steps=1", "train.tensorboard=false",
                              "train.max_steps=2")
