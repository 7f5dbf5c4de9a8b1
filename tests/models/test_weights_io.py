"""Checkpoint I/O: official LlamaGen containers, safe unpickling, config inference, vapi folders, export."""
import json
import os

import pytest
import torch

from tiny import gpt_outputs, tiny_gpt, tiny_vq, vq_outputs, write_official
from fixture_utils import fixture_params, fixtures_dir, load_io
from vapi.models import weights_io as ckpt
from vapi.models.weights_io import (CheckpointError, build_generator_and_tokenizer, build_model, export_llamagen,
                                    infer_gpt_config, infer_vq_config, load_gpt, load_pretrained,
                                    load_state_dict_file, load_vq, save_pretrained)
from vapi.models.infer_config import image_size_from_filename
from vapi.models.llamagen_gpt import LlamaGenGPT
from vapi.models.llamagen_vq import VQModel

GPT_VARIANTS = {"c2i": {}, "t2i": dict(model_type="t2i"), "gqa": dict(n_kv_head=2), "mqa_t2i": dict(
    model_type="t2i", n_kv_head=1)}


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------- official containers
@pytest.mark.parametrize("variant", GPT_VARIANTS)
@pytest.mark.parametrize("layout", ["train", "module", "state_dict", "bare", "prefixed"])
def test_gpt_official_layouts_load_strictly(tmp_path, variant, layout):
    model = tiny_gpt(**GPT_VARIANTS[variant])
    path = write_official(model, tmp_path / "c2i_tiny.pt", layout)
    loaded = load_gpt(path, image_size=64, n_head=4)
    assert isinstance(loaded, LlamaGenGPT) and not loaded.training
    assert loaded.config.kv_heads == model.config.kv_heads
    assert loaded.config.model_type == model.config.model_type
    assert all(p.requires_grad for p in loaded.parameters())  # the policy stays trainable
    assert torch.equal(gpt_outputs(loaded), gpt_outputs(model))


def test_ema_weights_are_chosen_on_request(tmp_path):
    model, ema = tiny_gpt(seed=0), tiny_gpt(seed=1)
    path = write_official(model, tmp_path / "ck.pt", "train", ema=ema.state_dict())
    assert _same_weights(load_gpt(path, image_size=64, n_head=4), model)
    assert _same_weights(load_gpt(path, image_size=64, n_head=4, prefer_ema=True), ema)
    no_ema = write_official(model, tmp_path / "plain.pt", "train")
    with pytest.raises(CheckpointError, match="no 'ema' weights"):
        load_gpt(no_ema, image_size=64, n_head=4, prefer_ema=True)


@pytest.mark.parametrize("layout", ["train", "bare"])
def test_vq_official_layouts_load_frozen(tmp_path, layout):
    model = tiny_vq()
    loaded = load_vq(write_official(model, tmp_path / "vq_tiny.pt", layout))
    assert isinstance(loaded, VQModel) and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    assert loaded.config.ch == 32 and loaded.config.encoder_ch_mult == [1, 2, 2] and loaded.downsample == 4
    assert torch.equal(vq_outputs(loaded), vq_outputs(model))


def test_safetensors_file_loads(tmp_path):
    from safetensors.torch import save_file
    model = tiny_gpt()
    save_file(dict(model.state_dict()), str(tmp_path / "gpt.safetensors"))
    assert torch.equal(gpt_outputs(load_gpt(tmp_path / "gpt.safetensors", image_size=64, n_head=4)),
                       gpt_outputs(model))


# ---------------------------------------------------------------- refusing code, corrupt files
class Payload:
    """Unpickling this runs a shell command: the file must be refused before that happens."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class CustomObject:
    pass


@pytest.mark.parametrize("payload", ["os_system", "custom_class"])
@pytest.mark.parametrize("legacy", [False, True])
def test_pickled_code_is_refused_and_not_run(tmp_path, payload, legacy):
    marker = tmp_path / "pwned"
    obj = Payload(marker) if payload == "os_system" else CustomObject()
    path = tmp_path / "evil.pt"
    torch.save({"model": tiny_gpt().state_dict(), "extra": obj}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError, match="holds code objects .* that vapi refuses to execute") as err:
        load_state_dict_file(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_checkpoint_names_the_file(tmp_path, legacy):
    path = tmp_path / "c2i_B_256.pt"
    torch.save({"model": tiny_gpt().state_dict()}, path, _use_new_zipfile_serialization=not legacy)
    for cut in (0.5, 0.02):
        data = path.read_bytes()
        bad = tmp_path / f"cut{cut}.pt"
        bad.write_bytes(data[: int(len(data) * cut)])
        with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
            load_gpt(bad)
        assert str(bad) in str(err.value)


def test_truncated_safetensors_and_missing_file(tmp_path):
    save_pretrained(tiny_gpt(), tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors is truncated or corrupt"):
        load_pretrained(tmp_path / "m")
    with pytest.raises(FileNotFoundError):
        load_gpt(tmp_path / "nope.pt")


# ---------------------------------------------------------------- config inference
def test_image_size_from_llamagen_file_names():
    assert image_size_from_filename("c2i_B_256.pt") == 256
    assert image_size_from_filename("/ckpts/c2i_XXL_384.pt") == 384
    assert image_size_from_filename("t2i_XL_stage1_256.pt") == 256
    assert image_size_from_filename("t2i_XL_stage2_512.pt") == 512
    assert image_size_from_filename("vq_ds16_c2i.pt") is None


def _meta_state_dict(entry: dict) -> dict:
    return {k: torch.empty(v["shape"], device="meta") for k, v in entry["state_dict"].items()}


SHAPES = fixtures_dir() / "state_dict_keys.json"
GPT_CASES = ["GPT-B_c2i_256", "GPT-L_c2i_256", "GPT-XL_c2i_256", "GPT-XXL_c2i_256", "GPT-XXL_c2i_384",
             "GPT-XL_t2i_256"]


def assert_matches_reference(model_cls, cfg, entry: dict) -> None:
    """A meta-device model built from `cfg` has the reference's parameter names, shapes and count."""
    with torch.device("meta"):
        model = model_cls(cfg)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == \
        {k: v["shape"] for k, v in entry["state_dict"].items()}
    assert sum(p.numel() for p in model.parameters()) == entry["num_parameters"]


@pytest.mark.skipif(not SHAPES.is_file(), reason=f"no {SHAPES}")
@pytest.mark.parametrize("name", GPT_CASES)
def test_gpt_presets_inferred_from_reference_shapes(name):
    entry = json.loads(SHAPES.read_text())["configs"][name]
    sd = _meta_state_dict(entry)
    cfg, preset = infer_gpt_config(sd, image_size=int(name.rsplit("_", 1)[1]))
    assert preset == name.split("_")[0]
    assert cfg.to_dict() == entry["model_args"]  # every field, dropouts included, equals the reference's
    assert_matches_reference(LlamaGenGPT, cfg, entry)


@pytest.mark.skipif(not SHAPES.is_file(), reason=f"no {SHAPES}")
@pytest.mark.parametrize("name", ["VQ-16", "VQ-8"])
def test_vq_presets_inferred_from_reference_shapes(name):
    entry = json.loads(SHAPES.read_text())["configs"][name]
    cfg, preset = infer_vq_config(_meta_state_dict(entry))
    assert preset == name and cfg.downsample == {"VQ-16": 16, "VQ-8": 8}[name]
    assert {k: getattr(cfg, k) for k in entry["model_args"]} == entry["model_args"]
    assert_matches_reference(VQModel, cfg, entry)


@pytest.mark.skipif(not SHAPES.is_file(), reason=f"no {SHAPES}")
def test_wrong_preset_is_one_error_with_the_right_one():
    sd = _meta_state_dict(json.loads(SHAPES.read_text())["configs"]["GPT-B_c2i_256"])
    cfg, _ = infer_gpt_config(sd, preset="GPT-L")
    with pytest.raises(CheckpointError) as err:
        build_model("llamagen_gpt", cfg, sd, "c2i_B_256.pt")
    msg = str(err.value)
    assert "c2i_B_256.pt: weights do not fit GPT-L" in msg and "missing keys" in msg and "shape mismatches" in msg
    assert "tok_embeddings.weight [16384, 768] in file vs [16384, 1024] in model" in msg
    assert msg.endswith("use --gpt-model GPT-B") and "\n" not in msg


def test_custom_size_needs_heads_and_a_valid_image_size(tmp_path):
    path = write_official(tiny_gpt(), tmp_path / "c2i_tiny.pt")
    with pytest.raises(CheckpointError, match="match no LlamaGen preset .*GPT-B \\(dim 768, 12 layers\\).*n_head"):
        load_gpt(path)
    with pytest.raises(CheckpointError, match="weights do not fit GPT-B.*match no LlamaGen preset.*--n-head"):
        load_gpt(path, "GPT-B")
    with pytest.raises(CheckpointError, match="image size 72 is not divisible by .* downsample factor 16"):
        load_gpt(path, image_size=72, n_head=4)
    assert load_gpt(path, image_size=128, n_head=4).config.block_size == 64  # RoPE grid only: weights still fit


# ---------------------------------------------------------------- vapi folders, export
@pytest.mark.parametrize("shard_bytes", [2 * 10**9, 20_000])
@pytest.mark.parametrize("variant", ["c2i", "gqa", "t2i"])
def test_official_to_vapi_folder_round_trip(tmp_path, variant, shard_bytes):
    model = tiny_gpt(**GPT_VARIANTS[variant])
    official = load_gpt(write_official(model, tmp_path / "c2i.pt"), image_size=64, n_head=4)
    out = save_pretrained(official, tmp_path / "folder", max_shard_bytes=shard_bytes)
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    meta = json.loads((out / "config.json").read_text())
    assert meta["kind"] == "llamagen_gpt" and meta["config"]["n_head"] == 4 and "vapi_version" in meta
    if shard_bytes < 10**6:
        assert len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
        index = json.loads((out / "model.safetensors.index.json").read_text())
        assert set(index["weight_map"]) == set(model.state_dict())
    else:
        assert shards == ["model.safetensors"]
    loaded = load_pretrained(out)
    assert loaded.config == official.config and _same_weights(loaded, model)
    assert torch.equal(gpt_outputs(loaded), gpt_outputs(model))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folders left


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd", "sub/model.safetensors", "model.pt"])
def test_index_naming_a_file_outside_the_folder_is_refused(tmp_path, shard):
    """A shard name from an untrusted index is a plain .safetensors file name inside the folder, nothing else."""
    out = save_pretrained(tiny_vq(), tmp_path / "vq", max_shard_bytes=50_000)
    index = out / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    first = next(iter(data["weight_map"]))
    data["weight_map"][first] = shard
    index.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="is not a .safetensors file name inside the folder"):
        load_pretrained(out)


@pytest.mark.parametrize("text", ['{"metadata": {}}', "not json", '{"weight_map": {"a": 7, "b": "x.safetensors"}}'])
def test_broken_index_is_one_line(tmp_path, text):
    out = save_pretrained(tiny_vq(), tmp_path / "vq", max_shard_bytes=50_000)
    (out / "model.safetensors.index.json").write_text(text)
    with pytest.raises(CheckpointError, match="is not a safetensors index"):
        load_pretrained(out)


def test_vq_folder_round_trip_and_llamagen_export(tmp_path):
    model = tiny_vq()
    loaded = load_pretrained(save_pretrained(model, tmp_path / "vq", max_shard_bytes=50_000))
    assert isinstance(loaded, VQModel) and _same_weights(loaded, model)
    pt = export_llamagen(loaded, tmp_path / "vq_export.pt")
    raw = torch.load(pt, map_location="cpu", weights_only=True)  # what LlamaGen's loader reads
    assert list(raw) == ["model"] and raw["model"].keys() == model.state_dict().keys()
    assert torch.equal(vq_outputs(load_vq(pt)), vq_outputs(model))


def test_failed_save_leaves_no_partial_folder(tmp_path, monkeypatch):
    real_save, calls = ckpt.save_file, []

    def failing_save(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            raise OSError("disk full")
        real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(ckpt, "save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(tiny_gpt(), tmp_path / "new", max_shard_bytes=20_000)
    assert list(tmp_path.iterdir()) == []

    monkeypatch.setattr(ckpt, "save_file", real_save)
    old = tiny_gpt(seed=3)
    save_pretrained(old, tmp_path / "existing")
    with pytest.raises(CheckpointError, match="already exists"):
        save_pretrained(tiny_gpt(), tmp_path / "existing")
    calls.clear()
    monkeypatch.setattr(ckpt, "save_file", failing_save)
    with pytest.raises(OSError):
        save_pretrained(tiny_gpt(), tmp_path / "existing", max_shard_bytes=20_000, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]
    assert _same_weights(load_pretrained(tmp_path / "existing"), old)  # the old folder is untouched


# ---------------------------------------------------------------- generator + tokenizer
def test_generator_and_tokenizer_checks(tmp_path):
    gpt = write_official(tiny_gpt(), tmp_path / "c2i_tiny.pt")
    vq = write_official(tiny_vq(), tmp_path / "vq_tiny.pt")
    bundle = build_generator_and_tokenizer(gpt, vq, image_size=16, n_head=4)
    assert bundle.image_size == 16 and bundle.policy.config.block_size == 16 and bundle.tokenizer.downsample == 4
    with pytest.raises(CheckpointError, match="image size 18 is not divisible by .* downsample factor 4"):
        build_generator_and_tokenizer(gpt, vq, image_size=18, n_head=4)
    small_vq = write_official(tiny_vq(codebook_size=32), tmp_path / "vq_32.pt")
    with pytest.raises(CheckpointError, match="GPT predicts 64 token ids but the VQ codebook has 32 entries"):
        build_generator_and_tokenizer(gpt, small_vq, image_size=16, n_head=4)
    with pytest.raises(CheckpointError, match="holds GPT weights, not a VQ tokenizer"):
        build_generator_and_tokenizer(gpt, gpt, image_size=16, n_head=4)


# ---------------------------------------------------------------- golden fixtures
@pytest.mark.fixtures
@pytest.mark.parametrize("folder", fixture_params("llamagen_gpt") + fixture_params("llamagen_vq"))
def test_fixture_folders_load_with_load_pretrained(folder):
    model = load_pretrained(folder)
    io, _ = load_io(folder)
    with torch.no_grad():
        if isinstance(model, LlamaGenGPT):
            assert torch.allclose(model.teacher_forced_logits(io["cond"], io["tokens"], io.get("cond_mask")),
                                  io["tf_logits"], atol=1e-4)
        else:
            assert torch.equal(model.encode(io["images"]), io["codes"].long())


def test_folder_config_wins_over_contradicting_heads(tmp_path):
    folder = save_pretrained(tiny_gpt(), tmp_path / "gpt")
    assert load_gpt(folder, n_head=4).config.n_head == 4
    with pytest.raises(CheckpointError, match="n_head=2 \\(stored 4\\) contradicts it"):
        load_gpt(folder, n_head=2)
    assert load_gpt(folder, image_size=128).config.block_size == 64
