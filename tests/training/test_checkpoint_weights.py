"""Weights are stored once per checkpoint: `model/` holds them, `dcp/` only the optimizer (and LoRA adapters).
Resume stays bit-exact for a full fine-tune, the tokenizer method and LoRA; older checkpoints whose `dcp/` holds the
whole model still resume, from `dcp/`."""
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

from tiny import tiny_config, tiny_policy, tiny_tokenizer
from vapi.models.infer_config import CheckpointError
from vapi.models.lora import LoraConfig, apply_lora
from vapi.models.state_dict_io import read_folder_weights
from vapi.training.checkpoint import latest_checkpoint, safe_load_metadata
from vapi.training.checkpoint_weights import unmatched_keys
from vapi.training.trainer import Trainer


def tensor_bytes(meta, prefix: str) -> int:
    """Bytes of the tensors a DCP checkpoint's metadata lists under `prefix`."""
    total = 0
    for key, item in meta.state_dict_metadata.items():
        if key.startswith(prefix) and hasattr(item, "chunks"):
            total += item.size.numel() * torch.empty((), dtype=item.properties.dtype).element_size()
    return total


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def lora_policy(seed=0, adapter_seed=0):
    policy = tiny_policy(seed=seed)
    torch.manual_seed(adapter_seed)  # the adapters' random init
    return apply_lora(policy, LoraConfig(rank=2, alpha=4.0))


def run(tmp_path, steps, make_policy=tiny_policy, resume=False, **kw):
    cfg = tiny_config(tmp_path, max_steps=steps, save_steps=2)
    cfg.objective.policy_mode = "eval"
    for k, v in kw.items():
        setattr(cfg.objective, k, v)
    policy, tokenizer = make_policy(), tiny_tokenizer()
    trainer = Trainer(cfg, policy, tokenizer, _data(), resume=resume)
    trainer.train()
    return trainer


def _data():
    from vapi.data.procedural import ProceduralShapes

    return ProceduralShapes(32, image_size=16, seed=0)


@pytest.mark.parametrize("method", ["vapi", "tokenizer"])
def test_dcp_holds_no_weights_and_the_checkpoint_one_copy(tmp_path, method):
    trainer = run(tmp_path, 2, make_policy=lambda: tiny_policy(dim=128), name=method)
    ckpt = latest_checkpoint(tmp_path / "run")
    meta = safe_load_metadata(ckpt / "dcp" / ".metadata")
    assert not [k for k in meta.state_dict_metadata if k.startswith("model.")]
    trained = trainer.model  # the policy, or the VQ whose decoder the tokenizer method trains
    weights = read_folder_weights(ckpt / "model")
    assert weights.keys() == trained.state_dict().keys()
    weight_bytes = sum(v.nbytes for v in weights.values())
    trainable_bytes = sum(p.nbytes for p in trained.parameters() if p.requires_grad)
    # dcp/ holds Adam's two moments of what trains (+ step counters); model/ one copy of the weights
    assert tensor_bytes(meta, "optimizer.") == pytest.approx(2 * trainable_bytes, rel=0.01)
    assert tensor_bytes(meta, "") == tensor_bytes(meta, "optimizer.")
    assert weight_bytes <= folder_bytes(ckpt / "model") < weight_bytes + 32_000  # + header and config.json
    if method == "vapi":  # on disk: one copy of the weights + the moments + small files (a second copy is 1.6 MB)
        assert weight_bytes > 1_500_000
        overhead = folder_bytes(ckpt) - weight_bytes - 2 * trainable_bytes
        assert 0 < overhead < 0.2 * weight_bytes


def test_full_fine_tune_resume_reads_model_folder(tmp_path):
    """Poisoning model/ after the save makes the resume differ: the weights do come from model/."""
    run(tmp_path / "a", 2)
    ckpt = latest_checkpoint(tmp_path / "a" / "run")
    weights = read_folder_weights(ckpt / "model")
    save_file({k: torch.zeros_like(v) for k, v in weights.items()}, str(ckpt / "model" / "model.safetensors"))
    resumed = tiny_policy(seed=123)
    cfg = tiny_config(tmp_path / "a", max_steps=2, save_steps=2)
    Trainer(cfg, resumed, tiny_tokenizer(), _data(), resume=True)
    assert all(torch.equal(v, torch.zeros_like(v)) for v in resumed.state_dict().values())


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_old_checkpoint_with_the_model_in_dcp_resumes_bit_exactly(tmp_path):
    full = run(tmp_path / "a", 4).model
    interrupted = run(tmp_path / "b", 2)
    ckpt = latest_checkpoint(tmp_path / "b" / "run")
    # the layout of older vapi: dcp/ = {"model", "optimizer"}; model/ is poisoned so only dcp/ can give the weights
    shutil.rmtree(ckpt / "dcp")
    dcp.save({"model": get_model_state_dict(interrupted.model),
              "optimizer": get_optimizer_state_dict(interrupted.model, interrupted.optimizer)},
             checkpoint_id=str(ckpt / "dcp"))
    weights = read_folder_weights(ckpt / "model")
    save_file({k: torch.zeros_like(v) for k, v in weights.items()}, str(ckpt / "model" / "model.safetensors"))
    resumed = run(tmp_path / "b", 4, make_policy=lambda: tiny_policy(seed=123), resume=True).model
    for name, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_lora_checkpoint_keeps_adapters_and_resumes_bit_exactly(tmp_path):
    full = run(tmp_path / "a", 4, make_policy=lora_policy).model
    run(tmp_path / "b", 2, make_policy=lora_policy)
    ckpt = latest_checkpoint(tmp_path / "b" / "run")
    meta = safe_load_metadata(ckpt / "dcp" / ".metadata")
    in_dcp = [k for k in meta.state_dict_metadata if k.startswith("model.")]
    assert in_dcp and all(".lora_A." in k or ".lora_B." in k for k in in_dcp)  # adapters only, never the base
    assert not any("base_layer" in k for k in read_folder_weights(ckpt / "model"))  # model/ holds merged weights
    # same pretrained base, other adapter init: the adapters come from dcp/, the base from the run's weights
    resumed = run(tmp_path / "b", 4, make_policy=lambda: lora_policy(adapter_seed=7), resume=True).model
    for name, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_lora_resume_on_another_base_is_refused(tmp_path):
    run(tmp_path, 2, make_policy=lora_policy)
    with pytest.raises(CheckpointError, match="LoRA base weights .* differ") as e:
        run(tmp_path, 4, make_policy=lambda: lora_policy(seed=123), resume=True)
    assert "\n" not in str(e.value)


def test_unmatched_keys():
    policy = ["emb.weight", "head.weight", "wo.base_layer.weight", "wo.lora_A.default.weight", "norm.weight"]
    tied = {"emb.weight": {"head.weight"}, "head.weight": {"emb.weight"}}
    saved = ["emb.weight", "wo.weight", "norm.weight"]  # an HF folder drops the tied head; LoRA merged into wo
    assert unmatched_keys(policy, saved, {"wo.lora_A.default.weight"}, tied) == ([], [])
    assert unmatched_keys(policy, saved, set(), tied) == (["wo.lora_A.default.weight"], [])
    assert unmatched_keys(policy, ["emb.weight", "norm.weight", "extra.bias"], {"wo.lora_A.default.weight"}, tied) \
        == (["wo.base_layer.weight"], ["extra.bias"])


def test_a_model_folder_that_does_not_fit_is_one_line(tmp_path):
    run(tmp_path, 2)
    ckpt = latest_checkpoint(tmp_path / "run")
    weights = read_folder_weights(ckpt / "model")
    weights.pop("output.weight")
    save_file(weights, str(ckpt / "model" / "model.safetensors"))
    with pytest.raises(CheckpointError, match="1 weights missing") as e:
        run(tmp_path, 4, resume=True)
    assert "\n" not in str(e.value) and "model" in str(e.value)
    json.loads((ckpt / "model" / "config.json").read_text())  # nothing else touched
