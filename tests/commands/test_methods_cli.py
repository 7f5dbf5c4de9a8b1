"""`vapi train objective.name=ste|tokenizer|grpo` end to end: an ImageFolder (and a caption folder with a CLIP
reward for grpo), then resume; the tokenizer method's checkpoint samples with the unchanged generator."""
import json

import pytest

from t2i_tiny import CAPTION_TOKENS, tiny_clip_folder, tiny_t2i_policy, tiny_t5_folder, write_caption_folder
from tiny import tiny_policy, tiny_tokenizer
from vapi.cli import main
from vapi.data.procedural import ProceduralShapes, save_as_image_folder
from vapi.models.weights_io import load_vq, save_pretrained


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    save_pretrained(tiny_policy(), root / "gpt")
    save_pretrained(tiny_t2i_policy(), root / "gpt_t2i")
    save_pretrained(tiny_tokenizer(), root / "vq")
    return {"root": root, "images": save_as_image_folder(ProceduralShapes(10, image_size=16, seed=1), root / "images"),
            "captions": write_caption_folder(root / "captions", n=8, image_size=16),
            "t5": tiny_t5_folder(root / "t5"), "clip": tiny_clip_folder(root / "clip")}


def common(run):
    return ["train.per_device_batch_size=4", "train.micro_batch_size=8", "grpo.num_generations=2", "reward.lpips=0",
            "train.progress=false", "train.image_steps=1", "train.tensorboard=false", "train.save_steps=1",
            "optim.learning_rate=1e-3", "train.device=cpu", f"train.output_dir={run}"]


def steps(run):
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", ["ste", "tokenizer", "grpo"])
def test_train_method_on_an_image_folder_and_resume(assets, tmp_path, name):
    run, root = tmp_path / "run", assets["root"]
    extra = ["reward.mse=0", f"reward.clip_path={assets['clip']}", "reward.clip=1",
             "reward.clip_prompt=a {}"] if name == "grpo" else []
    args = ["train", f"model.gpt={root / 'gpt'}", f"model.vq={root / 'vq'}", f"data.path={assets['images']}",
            f"objective.name={name}", *common(run), *extra]
    assert main([*args, "train.max_steps=1"]) == 0
    assert main([*args, "train.max_steps=2", "--resume"]) == 0
    assert steps(run) == [1, 2]
    assert (run / "images" / "step-000002.png").is_file()
    if name == "tokenizer":  # the checkpoint is a VQ folder that `vapi sample` takes with the unchanged generator
        model = run / "checkpoints" / "step-000002" / "model"
        assert load_vq(model).config.codebook_size == 32
        out = tmp_path / "grid.png"
        assert main(["sample", "--gpt", str(root / "gpt"), "--vq", str(model), "--classes", "0,1", "--cfg", "1",
                     "--top-k", "0", "--device", "cpu", "--out", str(out)]) == 0
        assert out.is_file()


def test_grpo_on_captions_with_a_clip_reward(assets, tmp_path):
    run, root = tmp_path / "run", assets["root"]
    args = ["train", f"model.gpt={root / 'gpt_t2i'}", f"model.vq={root / 'vq'}", f"data.path={assets['captions']}",
            f"text_encoder.path={assets['t5']}", f"text_encoder.max_length={CAPTION_TOKENS}",
            "text_encoder.dtype=fp32", f"text_encoder.cache_dir={root / 't5_cache'}", "objective.name=grpo",
            "reward.mse=0", "reward.clip=1", f"reward.clip_path={assets['clip']}", "grpo.cfg_scale=2", *common(run)]
    assert main([*args, "train.max_steps=1"]) == 0
    assert main([*args, "train.max_steps=2", "--resume"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all("rewards/clip/mean" in r and "kl" in r for r in rows)


def test_grpo_without_a_target_free_reward_is_one_line(assets, tmp_path, capsys):
    root = assets["root"]
    assert main(["train", f"model.gpt={root / 'gpt'}", f"model.vq={root / 'vq'}", f"data.path={assets['images']}",
                 "objective.name=grpo", *common(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "reward.mse=0" in err
