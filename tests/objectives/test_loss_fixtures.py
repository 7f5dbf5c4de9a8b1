"""Golden check of the VA-π loss against every `vapi_grpo_loss` fixture (reference train_c2i_grpo.py numbers).

All settings come from each fixture's config.json; every `expected` tensor listed in io.json must be reproduced to 1e-6.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fixture_utils import fixture_params, load_config, load_io

from vapi.objectives import VaPiLoss, clipped_surrogate, group_advantages, prior_ce, token_logprobs

ATOL = 1e-6


def _unsupported(cfg: dict, io: dict) -> str | None:
    if cfg.get("top_k", 0) > 0 or cfg.get("top_p", 1.0) < 1.0:
        return "reference old log-probs come from the top-k/top-p filtered distribution; vapi's are unfiltered"
    if not cfg.get("adv_std_unbiased", True):
        return "biased advantage std requested; vapi uses the unbiased std"
    if cfg.get("use_kl_loss") and ("ref_logits" not in io or "kl_coef" not in cfg):
        return "KL fixture without ref_logits input / kl_coef setting"
    if cfg.get("use_token_dropout") and "token_mask" not in io:
        return "token dropout requested but the fixture does not store its token_mask"
    return None


def _compute(cfg: dict, io: dict) -> dict[str, torch.Tensor]:
    G, temperature = cfg["num_generations"], cfg["temperature"]
    kl_on = bool(cfg.get("use_kl_loss"))
    mask = io["token_mask"].bool() if cfg.get("use_token_dropout") else None
    objective = VaPiLoss(epsilon=cfg["clip_range"], prior_weight=cfg["aux_ce_weight"],
                         beta=cfg["kl_coef"] if kl_on else 0.0, temperature=temperature,
                         grad_accum_steps=cfg["gradient_accumulation_steps"])
    old_logps = token_logprobs(io["old_logits"], io["sampled_tokens"], temperature)  # [B*G, T]
    adv_raw = group_advantages(io["rewards"], G, clip=None, eps=cfg["adv_std_eps"])  # [B*G]
    adv = group_advantages(io["rewards"], G, clip=cfg["adv_clip_max"], eps=cfg["adv_std_eps"])  # [B*G]
    new_logits = io["new_logits"].clone().requires_grad_(True)  # [B*G, T, V]
    loss, stats = objective(new_logits, io["sampled_tokens"], old_logps, adv, io["gt_tokens"], token_mask=mask,
                            ref_logits=io["ref_logits"] if kl_on else None)
    (grad,) = torch.autograd.grad(loss, new_logits)
    with torch.no_grad():
        new_logps = token_logprobs(new_logits, io["sampled_tokens"], temperature)
        policy, surrogate = clipped_surrogate(new_logps, old_logps, adv, cfg["clip_range"], mask)
        aux_ce = prior_ce(new_logits, io["gt_tokens"])
    return {
        "old_token_logps": old_logps, "new_token_logps": new_logps, "advantages_raw": adv_raw, "advantages": adv,
        "ratio": surrogate.ratio, "clipped_ratio": surrogate.clipped_ratio,
        "per_token_loss": surrogate.per_token_loss, "policy_loss": policy, "aux_ce": aux_ce,
        "loss": loss.detach(), "grad_new_logits": grad,
        "loss_stat": stats.loss / cfg["gradient_accumulation_steps"],
    }


@pytest.mark.fixtures
@pytest.mark.parametrize("folder", fixture_params("vapi_grpo_loss"))
def test_vapi_loss_matches_reference(folder: Path):
    cfg = load_config(folder)
    io, meta = load_io(folder)
    reason = _unsupported(cfg, io)
    if reason:
        pytest.skip(reason)
    expected = [name for name, info in meta["tensors"].items() if info["role"] == "expected"]
    got = _compute(cfg, io)
    missing = sorted(set(expected) - set(got))
    assert not missing, f"runner does not compute expected tensors {missing}"
    diffs = {}
    for name in expected:
        assert got[name].shape == io[name].shape, f"{name}: shape {tuple(got[name].shape)} != {tuple(io[name].shape)}"
        diffs[name] = (got[name].double() - io[name].double()).abs().max().item()
    diffs["loss_stat"] = (got["loss_stat"].double() - io["loss"].double()).abs().max().item()
    bad = {n: d for n, d in diffs.items() if not d <= ATOL}
    assert not bad, f"max abs diff above {ATOL}: {bad}"
