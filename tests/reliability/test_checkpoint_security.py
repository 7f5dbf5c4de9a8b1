"""Resume never runs code from the run folder: crafted `.metadata`, trainer_state.pt, RNG and weight files are
refused with one line naming the file, and the payload's marker file never appears."""
import pytest

from helpers import malicious_pickle, run_config, trainer, write_malicious_pt
from vapi.cli import main
from vapi.models.state_dict_io import load_state_dict_file
from vapi.training.checkpoint import UnsafeCheckpointError, latest_checkpoint, safe_load_metadata


@pytest.fixture
def run(tmp_path):
    cfg = run_config(tmp_path)
    trainer(cfg).train()
    return cfg, latest_checkpoint(cfg.train.output_dir), tmp_path / "PWNED"


def resume_refused(cfg, marker, name):
    with pytest.raises(UnsafeCheckpointError) as e:
        trainer(cfg, resume=True)
    message = str(e.value)
    assert "\n" not in message and name in message and "refused" in message
    assert not marker.exists()


def test_real_metadata_reads_through_the_restricted_unpickler(run):
    _, ckpt, _ = run
    meta = safe_load_metadata(ckpt / "dcp" / ".metadata")
    assert "optimizer.state.output.weight.exp_avg" in meta.state_dict_metadata


def test_crafted_dcp_metadata_runs_nothing(run):
    cfg, ckpt, marker = run
    (ckpt / "dcp" / ".metadata").write_bytes(malicious_pickle(marker))
    resume_refused(cfg, marker, ".metadata")


def test_crafted_trainer_state_runs_nothing(run):
    cfg, ckpt, marker = run
    write_malicious_pt(ckpt / "trainer_state.pt", marker)
    resume_refused(cfg, marker, "trainer_state.pt")


def test_crafted_rng_file_runs_nothing(run):
    cfg, ckpt, marker = run
    write_malicious_pt(ckpt / "rng" / "rank-00000.pt", marker)
    resume_refused(cfg, marker, "rank-00000.pt")


def test_crafted_dcp_data_file_runs_nothing(run):
    cfg, ckpt, marker = run
    (data_file,) = (ckpt / "dcp").glob("*.distcp")
    write_malicious_pt(data_file, marker)
    with pytest.raises(ValueError) as e:
        trainer(cfg, resume=True)
    assert "\n" not in str(e.value) and "dcp" in str(e.value)
    assert not marker.exists()


def test_crafted_weights_file_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    write_malicious_pt(tmp_path / "gpt.pt", marker)
    with pytest.raises(ValueError):
        load_state_dict_file(tmp_path / "gpt.pt")
    rc = main(["sample", "--gpt", str(tmp_path / "gpt.pt"), "--vq", str(tmp_path / "gpt.pt"), "--classes", "0",
               "--out", str(tmp_path / "g.png"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "gpt.pt" in err
    assert not marker.exists()


def test_cli_resume_of_crafted_checkpoint_is_one_line(cli_run, capsys):
    tmp_path, args = cli_run
    assert main(["train", *args]) == 0
    marker = tmp_path / "PWNED"
    ckpt = latest_checkpoint(tmp_path / "run")
    (ckpt / "dcp" / ".metadata").write_bytes(malicious_pickle(marker))
    capsys.readouterr()
    assert main(["train", *args, "train.max_steps=3", "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ".metadata" in err
    assert not marker.exists() and (ckpt / "model").is_dir()  # nothing deleted either


def test_crafted_optimizer_value_inside_dcp_runs_nothing(run):
    """A well-formed DCP checkpoint whose pickled non-tensor entry (an optimizer hyper-parameter) carries a payload:
    DCP's own planner would unpickle it freely; vapi's reads such entries with weights_only=True."""
    import shutil

    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    from helpers import Payload

    cfg, ckpt, marker = run
    t = trainer(cfg, resume=True)  # a genuine resume loads
    state = {"optimizer": get_optimizer_state_dict(t.model, t.optimizer)}
    state["optimizer"]["param_groups"][0]["lr"] = Payload(marker)
    shutil.rmtree(ckpt / "dcp")
    dcp.save(state, checkpoint_id=str(ckpt / "dcp"))
    resume_refused(cfg, marker, "dcp")
