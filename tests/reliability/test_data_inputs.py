"""Datasets: symlink loops are walked once, malformed caption lines are reported as file:line and skipped, truncated
tar shards keep their readable members, images smaller than the target size are counted in a warning."""
import io
import json
import os
import tarfile

import pytest
from PIL import Image

from vapi.cli import main
from vapi.data.captions import CaptionFolderDataset, CaptionTarDataset
from vapi.data.images import ImageFolderDataset


def png(size=16, color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


def test_symlink_loop_in_an_image_folder_is_walked_once(tmp_path):
    cls = tmp_path / "root" / "cat"
    cls.mkdir(parents=True)
    for i in range(4):
        (cls / f"{i}.png").write_bytes(png())
    os.symlink(cls, cls / "loop")  # cat/loop -> cat
    os.symlink(tmp_path / "root", cls / "up")  # cat/up -> root (contains cat again)
    with pytest.warns(UserWarning, match="skipped"):
        ds = ImageFolderDataset(tmp_path / "root", 16)
    assert len(ds) == 4
    assert any("symlink loop" in reason for reason in ds.skipped.values())


def test_malformed_caption_lines_are_file_line_and_skipped(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(png())
    lines = [json.dumps({"file_name": "0.png", "caption": "a"}), '{"file_name": "1.png", "caption": "b"',
             "[1, 2]", json.dumps({"file_name": "2.png", "caption": "c"})]
    (tmp_path / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match=r"metadata.jsonl: skipped 2 malformed line\(s\) \(first: .*metadata.jsonl:2"):
        ds = CaptionFolderDataset(tmp_path, 16)
    assert ds.captions == ["a", "c"]
    assert {k.rsplit(":", 1)[1] for k in ds.skipped if k.endswith((":2", ":3"))} == {"2", "3"}


def test_truncated_tar_shard_is_salvaged(tmp_path):
    shard = tmp_path / "000.tar"
    with tarfile.open(shard, "w") as tf:
        for i in range(4):
            for name, data in ((f"{i:03d}.png", png() + b"\0" * 3000), (f"{i:03d}.txt", b"a red square")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    with tarfile.open(shard) as tf:
        third = tf.getmember("002.png")
    shard.write_bytes(shard.read_bytes()[: third.offset_data + third.size // 2])  # cut inside the third image
    with pytest.warns(UserWarning, match="truncated"):
        ds = CaptionTarDataset(str(shard), 16)
    assert len(ds) == 2 and ds.skipped_shards == 0
    image, caption = ds[1]
    assert image.shape == (3, 16, 16) and caption == "a red square"


def test_images_smaller_than_the_target_are_counted(tmp_path):
    cls = tmp_path / "root" / "a"
    cls.mkdir(parents=True)
    for i in range(3):
        (cls / f"{i}.png").write_bytes(png(8 if i else 32))
    with pytest.warns(UserWarning, match="2 of 3 images are smaller than 16 px"):
        ImageFolderDataset(tmp_path / "root", 16)


def test_a_dataset_whose_every_image_is_truncated_is_one_error_line(cli_run, capsys):
    tmp_path, args = cli_run
    bad = tmp_path / "truncated" / "a"
    bad.mkdir(parents=True)
    for i in range(6):
        (bad / f"{i}.png").write_bytes(png(16)[:60])  # the header parses, the pixels do not
    assert main(["train", *args, f"data.path={bad.parent}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "none of its 6 images could be decoded" in err[-1] and err[-1].startswith("vapi train: error:")
    assert not (tmp_path / "run" / "checkpoints").exists()
