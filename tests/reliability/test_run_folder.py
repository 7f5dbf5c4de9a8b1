"""A run folder belongs to one run: no silent overwrite, explicit resume semantics, config comparison on resume,
metrics truncated to the resumed step."""
import json

import pytest
import torch

from helpers import run_config, trainer
from vapi.cli import main
from vapi.training import checkpoint as ckpt
from vapi.training.checkpoint import RunFolderError


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_new_run_into_a_used_folder_is_refused_and_nothing_changes(tmp_path):
    cfg = run_config(tmp_path)
    trainer(cfg).train()
    run = tmp_path / "run"
    before = snapshot(run)
    with pytest.raises(RunFolderError) as e:
        trainer(run_config(tmp_path, max_steps=5))
    msg = str(e.value)
    assert "\n" not in msg and "--resume" in msg and "train.overwrite=true" in msg and "output_dir" in msg
    assert snapshot(run) == before


def test_cli_refusal_is_one_line(cli_run, capsys):
    tmp_path, args = cli_run
    assert main(["train", *args]) == 0
    before = snapshot(tmp_path / "run")
    capsys.readouterr()
    assert main(["train", *args, "objective.context_noise=0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume" in err
    assert snapshot(tmp_path / "run") == before


def test_overwrite_replaces_the_old_run(tmp_path):
    trainer(run_config(tmp_path, max_steps=3)).train()
    cfg = run_config(tmp_path, max_steps=1, overwrite=True)
    trainer(cfg).train()
    assert [p.name for p in ckpt.list_checkpoints(cfg.train.output_dir)] == ["step-000001"]
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [1]


def test_overwrite_keeps_the_users_own_files_in_the_grid_folders(tmp_path):
    trainer(run_config(tmp_path, max_steps=1)).train()
    mine = [tmp_path / "run" / "images" / "cat_0001.jpg", tmp_path / "run" / "samples" / "notes.txt"]
    for f in mine:
        f.parent.mkdir(exist_ok=True)
        f.write_text("mine")
    trainer(run_config(tmp_path, max_steps=1, overwrite=True)).train()
    assert all(f.read_text() == "mine" for f in mine)


def test_resume_given_the_run_folder_follows_the_latest_pointer(tmp_path):
    """An abandoned higher step (left by resuming from an older checkpoint) is not what `--resume RUN_DIR` means."""
    cfg = run_config(tmp_path, max_steps=3, save_total_limit=3)
    trainer(cfg).train()
    root = ckpt.checkpoint_dir(cfg.train.output_dir)
    ckpt.write_latest(cfg.train.output_dir, root / "step-000002")  # step 3 is the abandoned branch
    t = trainer(run_config(tmp_path, max_steps=4, save_total_limit=3), resume=str(tmp_path / "run"))
    assert t.state.step == 2


def test_resume_with_nothing_says_so_and_must_refuses(tmp_path, capsys):
    cfg = run_config(tmp_path)
    t = trainer(cfg, resume=True)
    assert t.state.step == 0
    assert f"no checkpoint in {tmp_path / 'run'}, starting fresh" in capsys.readouterr().out
    with pytest.raises(RunFolderError, match="--resume=must"):
        trainer(run_config(tmp_path / "other"), resume="must")


def test_cli_resume_must(cli_run, capsys):
    tmp_path, args = cli_run
    assert main(["train", *args, "--resume=must"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("change", ["objective.num_generations", "train.seed", "data.image_size",
                                    "train.per_device_batch_size", "model.gpt"])
def test_resume_refuses_changes_that_make_another_run(tmp_path, change):
    trainer(run_config(tmp_path)).train()
    cfg = run_config(tmp_path, max_steps=4)
    section, key = change.split(".")
    value = {"num_generations": 2, "seed": 1, "image_size": 32, "per_device_batch_size": 8, "gpt": "other.pt"}[key]
    setattr(getattr(cfg, section), key, value)
    if key == "num_generations":
        cfg.train.micro_batch_size = 4
    with pytest.raises(RunFolderError) as e:
        trainer(cfg, resume=True)
    assert change.split(".")[-1] in str(e.value) and "\n" not in str(e.value)


def test_resume_applies_a_new_learning_rate_with_the_schedule_rebased(tmp_path, capsys):
    cfg = run_config(tmp_path, max_steps=2)
    cfg.optim.lr_scheduler_type = "linear"
    trainer(cfg).train()
    cfg2 = run_config(tmp_path, max_steps=4)
    cfg2.optim.lr_scheduler_type = "linear"
    cfg2.optim.learning_rate = 5e-4
    t = trainer(cfg2, resume=True)
    out = capsys.readouterr().out
    assert "optim.learning_rate 0.001 → 0.0005" in out and "train.max_steps 2 → 4" in out
    # linear decay over 4 updates, 2 done: lr = 5e-4 · (1 - 2/4)
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(2.5e-4)
    t.train()
    assert t.scheduler.get_last_lr()[0] == pytest.approx(0.0)


def test_metrics_are_truncated_to_the_resumed_step(tmp_path, monkeypatch):
    cfg = run_config(tmp_path, max_steps=4, save_steps=2)

    def crash(phase):  # dies while saving step 4 (the second save): metrics.jsonl already holds steps 1-4
        if phase == "tmp-partial" and crash.saves == 1:
            raise KeyboardInterrupt
        if phase == "tmp-partial":
            crash.saves += 1

    crash.saves = 0
    monkeypatch.setattr(ckpt, "fault_hook", crash)
    with pytest.raises(KeyboardInterrupt):
        trainer(cfg).train()
    metrics = tmp_path / "run" / "metrics.jsonl"
    assert [json.loads(r)["step"] for r in metrics.read_text().splitlines()] == [1, 2, 3, 4]
    (tmp_path / "run" / "images" / "step-000003.png").write_bytes(b"a grid of the killed attempt")
    (tmp_path / "run" / "samples").mkdir(exist_ok=True)
    (tmp_path / "run" / "samples" / "step-000004.png").write_bytes(b"a grid of the killed attempt")
    monkeypatch.setattr(ckpt, "fault_hook", None)
    t = trainer(cfg, resume=True)
    assert t.state.step == 2
    assert [json.loads(r)["step"] for r in metrics.read_text().splitlines()] == [1, 2]
    assert not (tmp_path / "run" / "images" / "step-000003.png").exists()
    assert not (tmp_path / "run" / "samples" / "step-000004.png").exists()
    t.train()
    assert [json.loads(r)["step"] for r in metrics.read_text().splitlines()] == [1, 2, 3, 4]
    assert torch.isfinite(torch.tensor([json.loads(r)["reward"] for r in metrics.read_text().splitlines()])).all()


def test_resume_of_a_finished_run_does_not_rewrite_its_checkpoint(tmp_path):
    cfg = run_config(tmp_path)
    trainer(cfg).train()
    last = ckpt.latest_checkpoint(cfg.train.output_dir)
    before = snapshot(last)
    mtime = last.stat().st_mtime_ns
    trainer(cfg, resume=True).train()
    assert last.stat().st_mtime_ns == mtime and snapshot(last) == before


def test_tensorboard_is_cut_back_to_the_resumed_step(tmp_path, monkeypatch):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    cfg = run_config(tmp_path, max_steps=4, save_steps=2, tensorboard=True)

    def crash(phase):  # dies while saving step 4, after TensorBoard got steps 1-4
        crash.saves += phase == "tmp-partial"
        if crash.saves == 2:
            raise KeyboardInterrupt

    crash.saves = 0
    monkeypatch.setattr(ckpt, "fault_hook", crash)
    with pytest.raises(KeyboardInterrupt):
        trainer(cfg).train()
    monkeypatch.setattr(ckpt, "fault_hook", None)
    trainer(cfg, resume=True).train()  # resumes at step 2, logs steps 3 and 4 again
    acc = event_accumulator.EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("reward")] == [1, 2, 3, 4]


def test_config_comparison_rules():
    from vapi.training.checkpoint import compare_configs

    saved = {"model": {"gpt": "/w/gpt"}, "text_encoder": {"cache_dir": "a"}, "train": {"per_device_batch_size": 2,
                                                                                      "logging_steps": 1}}
    new = {"model": {"gpt": "/w/../w/gpt"}, "text_encoder": {"cache_dir": "b"},
           "train": {"per_device_batch_size": 4, "logging_steps": 5}}
    refused, applied = compare_configs(saved, new, saved_world=2, new_world=1)
    assert refused == []  # same file, a cache folder, the same global batch on fewer ranks
    assert any("logging_steps" in a for a in applied) and any("same global batch" in a for a in applied)
    refused, _ = compare_configs(saved, {**new, "model": {"gpt": "/w/other"}}, saved_world=2, new_world=1)
    assert refused and "model.gpt" in refused[0]


def test_resume_follows_the_latest_pointer_not_an_abandoned_higher_step(tmp_path, capsys):
    trainer(run_config(tmp_path, max_steps=4, save_total_limit=4)).train()
    older = tmp_path / "run" / "checkpoints" / "step-000002"
    trainer(run_config(tmp_path, max_steps=3, save_total_limit=4), resume=str(older)).train()
    assert "while newer checkpoints exist (step-000003, step-000004)" in capsys.readouterr().out
    # step-000004 belongs to the abandoned continuation; `latest` names this run's newest, step-000003
    assert trainer(run_config(tmp_path, max_steps=5, save_total_limit=4), resume=True).state.step == 3
