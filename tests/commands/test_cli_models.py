"""`vapi convert`, `vapi inspect`, `vapi sample` end to end on tiny official-layout checkpoints."""
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from tiny import tiny_gpt, tiny_vq, write_official
from vapi.commands.model_args import parse_size
from vapi.models.weights_io import load_pretrained

TINY = ["--n-head", "4"]  # a custom size: the head count is not in the weights
SAMPLE = ["--image-size", "16", "--classes", "1,3", "--cfg", "2.0", "--top-k", "0", "--device", "cpu", "--seed", "7"]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpts")
    return {"gpt": write_official(tiny_gpt(), d / "c2i_tiny.pt"),
            "vq": write_official(tiny_vq(), d / "vq_tiny.pt", layout="bare"),
            "vq32": write_official(tiny_vq(codebook_size=32), d / "vq_32.pt")}


def test_convert_inspect_sample_end_to_end(ckpts, tmp_path, run_cli):
    folder = tmp_path / "gpt_vapi"
    code, out, _ = run_cli("convert", ckpts["gpt"], folder, *TINY, "--image-size", "64",
                           "--max-shard-size", "50KB")
    assert code == 0 and "vapi folder" in out
    assert len(list(folder.glob("model-*-of-*.safetensors"))) > 1
    assert load_pretrained(folder).config.n_head == 4

    code, out, _ = run_cli("inspect", folder)
    assert code == 0
    for text in ("GPT (llamagen_gpt)", "preset:", "custom", "c2i, 10 classes", "64 image tokens",
                 "4x4 = 16 tokens", "2 layers, 4 heads, 4 kv heads, dim 64", "parameters:"):
        assert text in out
    code, out, _ = run_cli("inspect", ckpts["vq"])
    assert code == 0 and "VQ tokenizer" in out and "downsample: 4" in out and "64 x 8" in out

    png = tmp_path / "grid.png"
    code, out, _ = run_cli("sample", "--gpt", ckpts["gpt"], "--vq", ckpts["vq"], *TINY, *SAMPLE,
                           "--n-per-class", "2", "--out", png)
    assert code == 0 and png.is_file()
    assert Image.open(png).size == (2 * 18 + 2, 2 * 18 + 2)  # 2 classes x 2 samples of 16 px, 2 px padding

    # the converted folder samples the same pixels as the official file
    png2 = tmp_path / "grid_folder.png"
    code, _, _ = run_cli("sample", "--gpt", folder, "--vq", ckpts["vq"], *SAMPLE, "--n-per-class", "2",
                         "--out", png2)
    assert code == 0 and png.read_bytes() == png2.read_bytes()


def test_convert_back_to_llamagen_file(ckpts, tmp_path, run_cli):
    folder, pt = tmp_path / "vq_vapi", tmp_path / "vq_back.pt"
    assert run_cli("convert", ckpts["vq"], folder)[0] == 0
    assert run_cli("convert", folder, pt)[0] == 0
    original = torch.load(ckpts["vq"], weights_only=True)
    back = torch.load(pt, weights_only=True)["model"]
    assert back.keys() == original.keys() and all(torch.equal(back[k], original[k]) for k in back)
    code, _, err = run_cli("convert", ckpts["vq"], folder)
    assert code == 2 and "already exists" in err


@pytest.mark.parametrize("case", ["class_out_of_range", "wrong_preset", "vocab_mismatch", "bad_image_size",
                                  "code_object", "truncated"])
def test_bad_inputs_are_one_line_errors(ckpts, tmp_path, case, run_cli):
    base = ["sample", "--gpt", ckpts["gpt"], "--vq", ckpts["vq"], *TINY, *SAMPLE, "--out", tmp_path / "x.png"]
    if case == "class_out_of_range":
        argv, expect = base + ["--classes", "3,10"], "class id 10 is out of range: this GPT has 10 classes"
    elif case == "wrong_preset":
        argv, expect = ["inspect", ckpts["gpt"], "--gpt-model", "GPT-B"], "weights do not fit GPT-B"
    elif case == "vocab_mismatch":
        argv = ["sample", "--gpt", ckpts["gpt"], "--vq", ckpts["vq32"], *TINY, *SAMPLE, "--out", tmp_path / "x.png"]
        expect = "GPT predicts 64 token ids but the VQ codebook has 32 entries"
    elif case == "bad_image_size":
        argv, expect = base + ["--image-size", "18"], "image size 18 is not divisible by"
    elif case == "code_object":
        evil = tmp_path / "evil.pt"
        torch.save({"model": {}, "hook": print}, evil)
        argv, expect = ["inspect", evil], "holds code objects (print) that vapi refuses to execute"
    else:
        bad = tmp_path / "c2i_cut.pt"
        bad.write_bytes(ckpts["gpt"].read_bytes()[:3000])
        argv, expect = ["inspect", bad, *TINY], "is truncated or corrupt"
    code, out, err = run_cli(*argv)
    assert code == 2 and expect in err
    assert err.count("\n") == 1 and err.startswith("vapi ")  # one line, no traceback
    assert not (tmp_path / "x.png").exists()


def test_parse_size():
    assert parse_size("2GB") == 2 * 10**9 and parse_size("500MiB") == 500 * 2**20 and parse_size("1024") == 1024
    with pytest.raises(Exception):
        parse_size("two gigs")


def test_python_dash_m_vapi_inspect(ckpts):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "vapi", "inspect", str(ckpts["gpt"]), *TINY],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "GPT (llamagen_gpt)" in proc.stdout and "c2i, 10 classes" in proc.stdout
