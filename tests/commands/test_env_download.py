"""`vapi env`, `vapi download` (through torch.hub, here from a file:// URL) and the weight loaders' offline errors."""
import hashlib
import json

import pytest
import torch

from vapi.cli import main
from vapi.weights import WEIGHT_FILES, WeightFile


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_env_lists_missing_weights_with_file_path_and_url(torch_home, capsys):
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert "torch " + torch.__version__ in out
    for name in ("lpips-vgg", "lpips-alex", "inception"):
        w = WEIGHT_FILES[name]
        assert f"MISSING  {name}" in out and str(torch_home / w.file) in out and w.url in out
    assert "vapi download lpips inception" in out
    torch_home.mkdir(parents=True)
    (torch_home / WEIGHT_FILES["lpips-vgg"].file).write_bytes(b"x")
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["weights"]["lpips-vgg"]["present"] and not info["weights"]["inception"]["present"]


def test_download_through_torch_hub_from_a_file_url(torch_home, tmp_path, capsys, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    payload = b"not really inception"
    digest = hashlib.sha256(payload).hexdigest()[:8]
    fake = WeightFile("inception", f"weights-test-{digest}.pth", "https://example.invalid/x.pth", "tests")
    monkeypatch.setitem(WEIGHT_FILES, "inception", fake)
    (mirror / fake.file).write_bytes(payload)
    assert main(["download", "inception", "--base-url", mirror.as_uri()]) == 0
    assert (torch_home / fake.file).read_bytes() == payload
    assert main(["download", "inception"]) == 0  # present: kept, nothing fetched
    assert "already present" in capsys.readouterr().out
    # a file whose SHA-256 does not match its name is refused, and leaves nothing in the cache
    bad = WeightFile("lpips-vgg", "vgg16-397923af.pth", "https://example.invalid/v.pth", "tests")
    monkeypatch.setitem(WEIGHT_FILES, "lpips-vgg", bad)
    (mirror / bad.file).write_bytes(b"wrong bytes")
    assert main(["download", "lpips-vgg", "--base-url", mirror.as_uri()]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after torch.hub's progress bar: one error line
    assert last.startswith("vapi download: error:") and "vgg16-397923af.pth" in last and "hash" in last
    assert not (torch_home / bad.file).exists()
    assert main(["download", "lpips-vgg", "--base-url", mirror.as_uri(), "--no-check-hash"]) == 0


def test_lpips_offline_error_names_file_cache_path_and_url(torch_home):
    from vapi.objectives.rewards import build_lpips

    with pytest.raises(FileNotFoundError) as err:
        build_lpips("alex")
    msg = str(err.value)
    w = WEIGHT_FILES["lpips-alex"]
    assert w.file in msg and str(torch_home) in msg and w.url in msg and "vapi download lpips" in msg


def test_inception_offline_error_names_the_url(torch_home):
    from vapi.eval.features import resolve_inception_weights

    with pytest.raises(FileNotFoundError) as err:
        resolve_inception_weights()
    assert WEIGHT_FILES["inception"].url in str(err.value) and "vapi download inception" in str(err.value)


def test_train_names_missing_lpips_weights_before_loading_models(torch_home, tmp_path, capsys):
    from vapi.cli import main

    code = main(["train", "model.gpt=/nowhere/gpt", "model.vq=/nowhere/vq", "data.path=/nowhere",
                 f"train.output_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert WEIGHT_FILES["lpips-vgg"].url in err and "reward.lpips=0" in err


def test_hub_model_offline_errors_name_cache_path_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from vapi.models.text_encoder import resolve_pretrained

    with pytest.raises(FileNotFoundError) as err:
        resolve_pretrained("nobody/no-such-t5")
    msg = str(err.value)
    assert "https://huggingface.co/nobody/no-such-t5" in msg and "models--nobody--no-such-t5" in msg
    pytest.importorskip("transformers")
    from vapi.models.janus import load_janus

    with pytest.raises(FileNotFoundError, match="https://huggingface.co/nobody/no-such-janus"):
        load_janus("nobody/no-such-janus")
