"""File-system, YAML, archive and unpickling errors are one line naming the path, exit code 2, nothing lost."""
import numpy as np
import pytest

from tiny import tiny_policy, tiny_tokenizer
from vapi.cli import main
from vapi.models.weights_io import save_pretrained


def one_line(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


def test_yaml_syntax_error_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  max_steps: 3\n  seed: [1, 2\nobjective:\n  beta: 0\n")
    assert main(["train", "--config", str(bad)]) == 2
    one_line(capsys, "bad.yaml:", "YAML")


def test_binary_yaml_is_named(tmp_path, capsys):
    bad = tmp_path / "weights.yaml"
    bad.write_bytes(bytes(range(256)) * 4)
    assert main(["train", "--config", str(bad)]) == 2
    one_line(capsys, "weights.yaml", "not a text YAML")


def test_output_dir_below_a_regular_file(cli_run, capsys):
    tmp_path, args = cli_run
    blocker = tmp_path / "afile"
    blocker.write_text("keep me")
    assert main(["train", *args, f"train.output_dir={blocker / 'run'}"]) == 2
    one_line(capsys, "afile")
    assert blocker.read_text() == "keep me"


@pytest.fixture
def models(tmp_path):
    save_pretrained(tiny_policy(), tmp_path / "gpt")
    save_pretrained(tiny_tokenizer(), tmp_path / "vq")
    return tmp_path


def test_sample_out_below_a_file_and_out_a_folder(models, capsys):
    blocker = models / "afile"
    blocker.write_text("keep me")
    base = ["sample", "--gpt", str(models / "gpt"), "--vq", str(models / "vq"), "--image-size", "16",
            "--device", "cpu", "--top-k", "0", "--cfg", "1"]
    assert main([*base, "--num-samples", "2", "--out-dir", str(blocker / "x"), "--shard-size", "2"]) == 2
    one_line(capsys, "afile")
    (models / "folder").mkdir()
    assert main([*base, "--classes", "0", "--out", str(models / "folder")]) == 2
    one_line(capsys, "folder")
    assert blocker.read_text() == "keep me"


def test_convert_to_below_a_file(models, capsys):
    blocker = models / "afile"
    blocker.write_text("keep me")
    rc = main(["convert", str(models / "gpt"), str(blocker / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "afile" in err
    assert blocker.read_text() == "keep me"


def test_random_bytes_npz(tmp_path, capsys):
    junk = tmp_path / "samples.npz"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    assert main(["eval", str(junk), "--ref", str(junk), "--features", str(junk.parent), "--device", "cpu"]) == 2
    one_line(capsys, "samples.npz")


def test_filesystem_errors_are_one_line_with_path_and_fix():
    from vapi.errors import one_line

    msg = one_line(PermissionError(13, "Permission denied", "/runs/x"))
    assert msg == "/runs/x: Permission denied; check its permissions or choose another path"
    assert "\n" not in one_line(OSError(28, "No space left on device", "/runs/x/ckpt"))
    assert one_line(KeyError("bug")) is None  # not a user error: keeps its traceback

