"""`vapi train` end to end on an ImageFolder with tiny models: outputs, resume, presets, clear errors."""
import json
from pathlib import Path

import pytest
import torch

from tiny import tiny_tokenizer
from vapi.cli import main
from vapi.config import load_config
from vapi.models.weights_io import load_gpt, save_pretrained
from vapi.training.config import RunConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def setup(tmp_path, tiny_run):
    return tmp_path, tiny_run(24, "train.image_steps=2", "train.save_steps=2")


def test_train_writes_every_output_and_resumes(setup):
    tmp_path, args = setup
    assert main(["train", *args, "train.max_steps=3"]) == 0
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(r["reward"])) for r in rows)
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "images" / "step-000002.png").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step-000002", "step-000003"]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-000003"
    resolved = load_config(RunConfig, run / "config.yaml")
    assert resolved.model.image_size == 16 and resolved.objective.num_generations == 4
    # the policy of the last checkpoint loads like any vapi model folder
    assert load_gpt(run / "checkpoints" / "step-000003" / "model").config.vocab_size == 32
    assert main(["train", *args, "--resume", "--train.max_steps", "5"]) == 0  # not taken as a checkpoint path
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]


def test_train_errors_are_one_line(setup, capsys):
    tmp_path, args = setup
    save_pretrained(tiny_tokenizer(codebook=64), tmp_path / "vq64")
    assert main(["train", *args, f"model.vq={tmp_path / 'vq64'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "32" in err and "64" in err
    (tmp_path / "empty").mkdir()
    assert main(["train", *args, f"data.path={tmp_path / 'empty'}"]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["train", *args, "objective.num_generations=1"]) == 2
    assert "num_generations" in capsys.readouterr().err


@pytest.mark.parametrize("preset", sorted((REPO / "configs").glob("llamagen_*.yaml")), ids=lambda p: p.stem)
def test_paper_presets_validate(preset):
    cfg = load_config(RunConfig, preset)
    assert cfg.optim.learning_rate == 1e-6 and cfg.objective.prior_weight == 0.1
    assert cfg.sequences_per_step == 128 and cfg.grad_accum_steps == 16


def test_build_trainer_leaves_the_callers_config_alone(setup):
    from vapi.config import to_dict
    from vapi.training.run import build_trainer

    _, args = setup
    cfg = load_config(RunConfig, None, args)
    before = to_dict(cfg)
    trainer = build_trainer(cfg)
    assert to_dict(cfg) == before and cfg.model.image_size == 0 and cfg.data.image_size == 256
    assert trainer.cfg.model.image_size == trainer.cfg.data.image_size == 16  # what the run records


@pytest.mark.parametrize("preset", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_presets_set_only_what_differs_from_the_defaults(preset):
    import yaml

    from vapi.config import to_dict

    def flat(d, prefix=""):
        return {k2: v2 for k, v in d.items()
                for k2, v2 in (flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v}).items()}

    defaults, given = flat(to_dict(RunConfig())), flat(yaml.safe_load(preset.read_text()))
    assert given and set(given) <= set(defaults)
    assert {k: v for k, v in given.items() if defaults[k] == v} == {}  # nothing repeats a default
    resolved = flat(to_dict(load_config(RunConfig, preset)))
    assert {k for k in defaults if resolved[k] != defaults[k]} == set(given)  # and everything set takes effect
