"""Damaged model files are one-line errors naming the file: integer weights, non-numeric config fields, NaN
weights, corrupt LPIPS / discriminator weights."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from tiny import tiny_policy, tiny_tokenizer
from vapi.cli import main
from vapi.models.weights_io import save_pretrained


@pytest.fixture
def folders(tmp_path):
    save_pretrained(tiny_policy(), tmp_path / "gpt")
    save_pretrained(tiny_tokenizer(), tmp_path / "vq")
    return tmp_path


def damaged(folders, name, edit_weights=None, edit_config=None):
    dst = folders / name
    shutil.copytree(folders / "gpt", dst)
    if edit_weights:
        sd = load_file(dst / "model.safetensors")
        save_file(edit_weights(sd), dst / "model.safetensors")
    if edit_config:
        meta = json.loads((dst / "config.json").read_text())
        edit_config(meta["config"])
        (dst / "config.json").write_text(json.dumps(meta))
    return dst


def sample(folders, gpt, capsys):
    rc = main(["sample", "--gpt", str(gpt), "--vq", str(folders / "vq"), "--classes", "0", "--out",
               str(folders / "g.png"), "--device", "cpu", "--image-size", "16", "--top-k", "0"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and gpt.name in err, err
    return err


def test_integer_weights(folders, capsys):
    gpt = damaged(folders, "gpt_int", edit_weights=lambda sd: {k: (v * 100).to(torch.int32) for k, v in sd.items()})
    assert "non-float" in sample(folders, gpt, capsys)


def test_string_in_config_json(folders, capsys):
    gpt = damaged(folders, "gpt_str", edit_config=lambda c: c.update(dim="abc"))
    assert "dim='abc'" in sample(folders, gpt, capsys)


def test_nan_weights(folders, capsys):
    def poison(sd):
        sd["output.weight"][0, 0] = float("nan")
        return sd

    gpt = damaged(folders, "gpt_nan", edit_weights=poison)
    assert "NaN" in sample(folders, gpt, capsys)


@pytest.mark.parametrize("option", ["reward.lpips_weights", "reward.discriminator_path"])
def test_corrupt_reward_weight_files(cli_run, capsys, option):
    tmp_path, args = cli_run
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x80\x04garbage" * 50)
    extra = ["reward.lpips=1"] if option == "reward.lpips_weights" else ["reward.discriminator=0.1"]
    assert main(["train", *args, *extra, f"{option}={junk}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "junk.pth" in err, err
    assert not (tmp_path / "run" / "checkpoints").exists()
