"""Run / step / model folders all lead to the model folder; `latest` is atomic and survives being stale."""
import pytest

from tiny import tiny_config, tiny_policy, tiny_tokenizer
from vapi.cli import main
from vapi.models.weights_io import save_pretrained
from vapi.training.resolve import latest_step_dir, resolve_model_dir, run_dir_of, write_latest
from vapi.training.trainer import Trainer


@pytest.fixture
def run(tmp_path, shapes16):
    save_pretrained(tiny_tokenizer(), tmp_path / "vq")
    cfg = tiny_config(tmp_path, max_steps=2, save_steps=1, save_total_limit=3)
    cfg.model.vq = str(tmp_path / "vq")
    Trainer(cfg, tiny_policy(), tiny_tokenizer(), shapes16).train()
    return tmp_path / "run"


def test_every_folder_resolves_to_the_model(run, tmp_path):
    ckpts = run / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "step-000002"
    model = ckpts / "step-000002" / "model"
    for given in (run, ckpts, ckpts / "step-000002", model):
        assert resolve_model_dir(given) == model
    assert resolve_model_dir(ckpts / "step-000001") == ckpts / "step-000001" / "model"
    assert resolve_model_dir(tmp_path / "x.pt") == tmp_path / "x.pt"  # files go to the loaders unchanged
    assert run_dir_of(model) == run.resolve()
    write_latest(run, ckpts / "step-000001")
    assert latest_step_dir(run) == ckpts / "step-000001"
    (ckpts / "latest").write_text("step-000099\n")  # stale pointer: the newest complete step instead
    assert latest_step_dir(run) == ckpts / "step-000002"
    assert not list(ckpts.glob(".latest.tmp*"))


def test_sample_and_convert_accept_a_run_folder(run, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["sample", "--gpt", str(run), "--classes", "0-1", "--out", str(out), "--top-k", "0"]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "step-000002" in printed and "--vq:" in printed  # tokenizer from the run's config
    assert main(["convert", str(run / "checkpoints" / "step-000001"), str(tmp_path / "gpt.pt")]) == 0
    assert (tmp_path / "gpt.pt").is_file()


def test_run_without_checkpoints_is_a_clear_error(tmp_path):
    (tmp_path / "r" / "checkpoints").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="without a complete checkpoint"):
        resolve_model_dir(tmp_path / "r")
