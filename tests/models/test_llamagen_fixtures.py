"""Golden-fixture runner for the LlamaGen GPT and VQ tokenizer: every `llamagen_gpt` / `llamagen_vq` folder under
$VAPI_FIXTURES_DIR is rebuilt from its config.json and checked against the reference outputs it stores."""
import pytest
import torch

from fixture_utils import fixture_params, load_config, load_io, load_weights
from vapi.models.llamagen_gpt import GPTConfig, LlamaGenGPT
from vapi.models.llamagen_vq import VQConfig, VQModel
from vapi.sampling import SamplingConfig, generate

pytestmark = pytest.mark.fixtures
ATOL = 1e-4


def build_gpt(folder):
    model = LlamaGenGPT(GPTConfig(**load_config(folder)["model_args"]))
    model.load_state_dict(load_weights(folder), strict=True)
    return model.eval()


def build_vq(folder):
    cfg = load_config(folder)
    enc = cfg.get("encoder_args", {})
    extra = {k: enc[k] for k in ("ch", "num_res_blocks") if k in enc}
    model = VQModel(VQConfig(**cfg["model_args"], **extra))
    model.load_state_dict(load_weights(folder), strict=True)
    return model.eval()


def max_diff(a, b):
    return (a.float() - b.float()).abs().max().item()


@pytest.mark.parametrize("folder", fixture_params("llamagen_gpt"))
def test_gpt_teacher_forced_logits(folder):
    model = build_gpt(folder)
    io, meta = load_io(folder)
    cond, tokens = io["cond"], io["tokens"]
    cond_mask = io.get("cond_mask")
    with torch.no_grad():
        logits = model.teacher_forced_logits(cond, tokens, cond_mask)
        assert logits.shape == io["tf_logits"].shape
        assert max_diff(logits, io["tf_logits"]) <= ATOL
        if "tf_logits_uncond" in io:
            null = model.teacher_forced_logits(model.null_condition(cond), tokens, cond_mask)
            assert max_diff(null, io["tf_logits_uncond"]) <= ATOL
        if "tf_ce" in io:
            ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.flatten())
            assert abs(ce.item() - io["tf_ce"].item()) <= ATOL


@pytest.mark.parametrize("folder", fixture_params("llamagen_gpt"))
def test_gpt_greedy_generation(folder):
    model = build_gpt(folder)
    io, meta = load_io(folder)
    keys = [k for k, v in meta["tensors"].items() if k.startswith("greedy") and v.get("role") == "expected"]
    assert keys, "fixture has no greedy generation outputs"
    for key in keys:
        scale = meta["tensors"][key]["cfg_scale"]
        out = generate(model, io["cond"], SamplingConfig(cfg_scale=scale, greedy=True),
                       num_tokens=io[key].shape[1], cond_mask=io.get("cond_mask"))
        assert torch.equal(out, io[key].long()), f"{key}: greedy tokens differ at cfg {scale}"


@pytest.mark.parametrize("folder", fixture_params("llamagen_vq"))
def test_vq_encode_decode(folder):
    model = build_vq(folder)
    io, meta = load_io(folder)
    with torch.no_grad():
        latent = model.encode_latent(io["images"])
        if "latent_prequant" in io:
            assert max_diff(latent, io["latent_prequant"]) <= ATOL
        quant, codes, _ = model.quantize_latent(latent)
        if "quant" in io:
            assert max_diff(quant, io["quant"]) <= ATOL
        assert torch.equal(model.encode(io["images"]), io["codes"].long())
        grid = tuple(meta.get("latent_grid", ()))  or None
        assert max_diff(model.decode(io["codes"], grid), io["decode_code_recon"]) <= ATOL
        if "recon_forward" in io:
            assert max_diff(model(io["images"])[0], io["recon_forward"]) <= ATOL
