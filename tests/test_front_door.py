"""`import vapi` is the library's front door: its names resolve, and its docstring example runs."""
import doctest
import subprocess
import sys

import yaml

import vapi
from tiny import tiny_policy, tiny_tokenizer
from vapi.data.procedural import ProceduralShapes, save_as_image_folder
from vapi.models.weights_io import save_pretrained


def test_front_door_names_resolve():
    for name in vapi.__all__:
        assert getattr(vapi, name) is not None
    assert {"RunConfig", "train", "build_policy", "Method", "RewardTerm"} <= set(dir(vapi))


def test_import_vapi_loads_no_torch():
    code = "import sys, vapi; assert 'torch' not in sys.modules, 'torch imported'; print(vapi.__version__)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_front_door_example_runs(tmp_path):
    images = save_as_image_folder(ProceduralShapes(16, image_size=16, seed=1), tmp_path / "images")
    save_pretrained(tiny_policy(), tmp_path / "gpt")
    save_pretrained(tiny_tokenizer(), tmp_path / "vq")
    config = {"model": {"gpt": str(tmp_path / "gpt"), "vq": str(tmp_path / "vq")}, "data": {"path": str(images)},
              "objective": {"num_generations": 4}, "reward": {"lpips": 0.0},
              "optim": {"learning_rate": 1e-3},
              "train": {"per_device_batch_size": 4, "micro_batch_size": 8, "progress": False, "image_steps": 0,
                        "tensorboard": False, "output_dir": str(tmp_path / "run")}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    result = doctest.testmod(vapi, extraglobs={"config_file": str(tmp_path / "tiny.yaml")},
                             optionflags=doctest.ELLIPSIS, report=True)
    assert result.attempted >= 5 and result.failed == 0
