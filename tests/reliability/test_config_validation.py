"""Every bad value is refused at config time, by the CLI with one line and exit 2, before any model loads or any
file is written."""
import pytest

from vapi.cli import main
from vapi.config import load_config
from vapi.training.config import RunConfig

BAD = [
    ("objective.adv_clip=-1", "adv_clip"),
    ("objective.adv_clip=0", "adv_clip"),
    ("objective.top_p=0", "top_p"),
    ("objective.top_k=-5", "top_k"),
    ("objective.temperature=0", "temperature"),
    ("objective.epsilon=-0.1", "epsilon"),
    ("objective.prior_weight=-1", "prior_weight"),
    ("train.precision=fp8", "precision"),
    ("train.save_steps=-2", "save_steps"),
    ("train.logging_steps=0", "logging_steps"),
    ("train.image_steps=-1", "image_steps"),
    ("train.save_total_limit=-1", "save_total_limit"),
    ("train.max_nonfinite_steps=0", "max_nonfinite_steps"),
    ("train.sample_steps=-1", "sample_steps"),
    ("train.sample_num=0", "sample_num"),
    ("train.sample_cfg_scale=-2", "sample_cfg_scale"),
    ("train.num_workers=-1", "num_workers"),
    ("optim.adam_beta2=1.5", "adam_beta2"),
    ("optim.max_grad_norm=-1", "max_grad_norm"),
    ("reward.mse=-1", "mse"),
]


@pytest.mark.parametrize("override,name", BAD, ids=[b[0] for b in BAD])
def test_bad_train_value_is_one_line(tmp_path, capsys, override, name):
    out = tmp_path / "run"
    assert main(["train", override, f"train.output_dir={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and name in err
    assert not out.exists()


def test_all_reward_weights_zero(tmp_path, capsys):
    args = ["reward.mse=0", "reward.lpips=0", f"train.output_dir={tmp_path / 'run'}"]
    assert main(["train", *args]) == 2
    assert "every reward weight is 0" in capsys.readouterr().err
    load_config(RunConfig, None, [*args, "objective.name=ce"])  # the CE control has no reward: accepted


@pytest.mark.parametrize("flag", [["--cfg", "-3"], ["--top-k", "-5"], ["--top-p", "0"], ["--temperature", "0"]])
def test_bad_sampling_value_is_one_line(tmp_path, capsys, flag):
    rc = main(["sample", "--gpt", "x", "--vq", "y", "--classes", "0", "--out", str(tmp_path / "g.png"), *flag])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and not (tmp_path / "g.png").exists()


def test_unknown_demo_variant_is_refused_before_any_work(tmp_path, capsys):
    rc = main(["demo", "variants=[vapi,vapi_typo]", f"out_dir={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "vapi_typo" in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_data_size_that_disagrees_with_the_generator_grid(tmp_path):
    from helpers import run_config
    from tiny import tiny_policy, tiny_tokenizer
    from vapi.data.procedural import ProceduralShapes
    from vapi.training.trainer import Trainer

    with pytest.raises(ValueError) as e:
        Trainer(run_config(tmp_path), tiny_policy(), tiny_tokenizer(), ProceduralShapes(8, image_size=32, seed=0))
    assert "data.image_size=16" in str(e.value) and "\n" not in str(e.value)
