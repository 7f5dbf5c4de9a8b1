"""`vapi train` and `vapi sample` end to end on tiny text-to-image models: LlamaGen T2I (T5 captions) and Janus-Pro
(transformers folder), each from caption data in both layouts, then GenEval folders from the trained checkpoints."""
import json

import pytest
import torch

from t2i_tiny import CAPTION_TOKENS, tiny_janus_folder, tiny_t2i_policy, tiny_t5_folder, write_caption_folder, \
    write_tar_shards
from tiny import tiny_tokenizer
from vapi.cli import main
from vapi.models.weights_io import save_pretrained

GENEVAL = [{"tag": "single_object", "include": [{"class": "disk", "count": 1}], "prompt": "a photo of a red disk"},
           {"tag": "counting", "include": [{"class": "square", "count": 2}], "prompt": "two blue square"}]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("t2i")
    save_pretrained(tiny_t2i_policy(), root / "gpt_t2i")
    save_pretrained(tiny_tokenizer(), root / "vq")
    prompts = root / "geneval.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in GENEVAL))
    return {"root": root, "t5": tiny_t5_folder(root / "t5"), "janus": tiny_janus_folder(root / "janus"),
            "captions": write_caption_folder(root / "captions", n=8, image_size=32),
            "shards": write_tar_shards(root / "shards", n=8, shards=2, image_size=32, corrupt_shard=True),
            "prompts": str(prompts)}


def model_args(assets, kind):
    if kind == "janus":
        return ["model.kind=janus", f"model.gpt={assets['janus']}"]
    return [f"model.gpt={assets['root'] / 'gpt_t2i'}", f"model.vq={assets['root'] / 'vq'}",
            f"text_encoder.path={assets['t5']}", f"text_encoder.max_length={CAPTION_TOKENS}", "text_encoder.dtype=fp32",
            f"text_encoder.cache_dir={assets['root'] / 't5_cache'}"]


def common(run):
    return ["objective.num_generations=2", "train.per_device_batch_size=2", "train.micro_batch_size=4",
            "reward.lpips=0", "train.progress=false", "train.image_steps=0", "train.tensorboard=false",
            "optim.learning_rate=1e-3", "train.device=cpu", f"train.output_dir={run}"]


@pytest.mark.parametrize("layout", ["captions", "shards"])
@pytest.mark.parametrize("kind", ["llamagen", "janus"])
def test_train_t2i_from_both_layouts(assets, tmp_path, kind, layout):
    run = tmp_path / "run"
    args = ["train", *model_args(assets, kind), f"data.path={assets[layout]}", *common(run), "train.max_steps=1"]
    with pytest.warns() if layout == "shards" else _nothing():  # the corrupt shard is announced
        assert main(args) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1] and torch.isfinite(torch.tensor(rows[0]["reward"]))
    model_dir = run / "checkpoints" / "step-000001" / "model"
    assert (model_dir / "config.json").is_file()
    if kind == "janus":  # the checkpoint is a transformers folder, processor included
        assert json.loads((model_dir / "config.json").read_text())["model_type"] == "janus"
        assert (model_dir / "chat_template.jinja").is_file() or (model_dir / "processor_config.json").is_file()


@pytest.mark.parametrize("kind", ["llamagen", "janus"])
def test_train_resume_then_sample_geneval(assets, tmp_path, kind):
    run = tmp_path / "run"
    base = ["train", *model_args(assets, kind), f"data.path={assets['captions']}", *common(run)]
    assert main([*base, "train.max_steps=1"]) == 0
    assert main([*base, "train.max_steps=2", "--resume"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]

    ckpt = run / "checkpoints" / "step-000002" / "model"
    out = tmp_path / "geneval"
    opts = ["--cfg", "3", "--top-k", "0", "--batch-size", "4", "--device", "cpu"]
    if kind == "janus":
        opts += ["--model-kind", "janus"]
    else:
        opts += ["--vq", str(assets["root"] / "vq"), "--text-encoder", assets["t5"],
                 "--text-cache-dir", str(assets["root"] / "t5_cache")]
    assert main(["sample", "--gpt", str(ckpt), "--prompts", assets["prompts"], "--n-per-prompt", "2",
                 "--out", str(out), *opts]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["00000", "00001"]
    for i, entry in enumerate(GENEVAL):
        assert json.loads((out / f"{i:05d}" / "metadata.jsonl").read_text()) == entry
        assert sorted(p.name for p in (out / f"{i:05d}" / "samples").iterdir()) == ["0000.png", "0001.png"]
    grid = tmp_path / "grid.png"
    assert main(["sample", "--gpt", str(ckpt), "--prompt", "a red disk", "--prompt", "two blue square",
                 "--out", str(grid), *opts]) == 0
    assert grid.is_file()


def test_text_mode_errors(assets, capsys):
    assert main(["sample", "--gpt", str(assets["root"] / "gpt_t2i"), "--vq", str(assets["root"] / "vq"),
                 "--classes", "1", "--out", "x.png"]) == 2
    assert "--prompt" in capsys.readouterr().err
    assert main(["train", *model_args(assets, "llamagen"), f"data.path={assets['captions']}",
                 "text_encoder.max_length=120", *common("unused")]) == 2
    assert "text_encoder.max_length" in capsys.readouterr().err


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_t2i_presets():
    from pathlib import Path

    from vapi.config import load_config
    from vapi.training.config import RunConfig

    configs = Path(__file__).resolve().parents[2] / "configs"
    janus = load_config(RunConfig, configs / "janus_pro_1b.yaml")
    assert (janus.model.kind, janus.optim.learning_rate, janus.reward.lpips_net) == ("janus", 1e-7, "alex")
    assert (janus.train.per_device_batch_size, janus.objective.num_generations, janus.train.micro_batch_size,
            janus.grad_accum_steps, janus.train.max_steps) == (8, 8, 2, 32, 100)
    assert janus.objective.context_noise == 0.5  # vapi's ξ; the Janus launcher ran 1.0 (see the preset's note)
    t2i = load_config(RunConfig, configs / "llamagen_t2i_xl_256.yaml")
    assert (t2i.model.gpt_model, t2i.model.image_size, t2i.objective.context_noise, t2i.train.max_steps) == \
        ("GPT-XL", 256, 0.5, 200)
    assert (t2i.reward.lpips_net, t2i.text_encoder.max_length, t2i.data.kind) == ("vgg", 120, "webdataset")
