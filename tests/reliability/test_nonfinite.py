"""Non-finite loss/reward/gradient: the step is skipped (no optimizer step), counted, and the run stops after
train.max_nonfinite_steps in a row with one line and the last good checkpoint intact; NaN weights are never saved."""
import json
import math

import pytest
import torch

from helpers import run_config, trainer, weights
from vapi.methods import vapi as vapi_method
from vapi.models.state_dict_io import read_folder_weights
from vapi.objectives import rewards as rewards_module
from vapi.training import checkpoint as ckpt
from vapi.training.checkpoint import NonFiniteWeightsError
from vapi.training.guards import NonFiniteError


def poison_rewards(monkeypatch, bad_calls, value=float("nan")):
    """Rewards of the listed score_tokens calls (1-based) get one non-finite entry."""
    calls = {"n": 0}

    def score(*args, **kwargs):
        rewards, terms, decoded = rewards_module.score_tokens(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] in bad_calls:
            rewards = rewards.clone()
            rewards[0] = value
        return rewards, terms, decoded

    monkeypatch.setattr(vapi_method, "score_tokens", score)  # where the VA-π method scores its samples


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_nonfinite_reward_skips_the_step(tmp_path, monkeypatch, value):
    poison_rewards(monkeypatch, {2}, value)
    t = trainer(run_config(tmp_path, max_steps=3, save_steps=0))
    t.step()
    before = weights(t.policy)
    t.guard.begin_step()
    metrics = t.step()
    t.guard.end_step(metrics, t.state.step, t.checkpointer)
    after = weights(t.policy)
    assert all(torch.equal(before[k], after[k]) for k in before)  # no update applied
    assert metrics["skipped_steps"] == 1 and not math.isfinite(metrics["grad_norm"])
    assert t.state.optimizer_steps == 1
    t.train()  # the run goes on and saves finite weights
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 3 and rows[-1]["skipped_steps"] == 1
    assert all(torch.isfinite(v).all() for v in t.policy.state_dict().values())
    assert trainer(run_config(tmp_path, max_steps=4, save_steps=0), resume=True).guard.skipped_steps == 1


def test_too_many_nonfinite_steps_in_a_row_stop_the_run(tmp_path, monkeypatch):
    poison_rewards(monkeypatch, set(range(3, 100)))
    cfg = run_config(tmp_path, max_steps=20, save_steps=1, max_nonfinite_steps=3)
    t = trainer(cfg)
    with pytest.raises(NonFiniteError) as e:
        t.train()
    msg = str(e.value)
    assert "\n" not in msg and "3 steps in a row" in msg and "step-000004" in msg
    # Skipped steps left the weights as they were: their checkpoints are finite; the stopping step saved nothing.
    saved = ckpt.list_checkpoints(cfg.train.output_dir)
    assert [p.name for p in saved] == ["step-000003", "step-000004"] and t.state.step == 5
    for path in saved:
        assert all(torch.isfinite(v).all() for v in read_folder_weights(path / "model").values())


def test_nonfinite_weights_are_never_saved(tmp_path):
    t = trainer(run_config(tmp_path))
    with torch.no_grad():
        t.policy.output.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteWeightsError, match="non-finite weights"):
        t.save()
    assert ckpt.list_checkpoints(tmp_path / "run") == []
