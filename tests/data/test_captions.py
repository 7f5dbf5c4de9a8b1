"""Caption datasets: image folder + .jsonl/.csv, webdataset tar shards, counted skips, auto-detection."""
import io
import json
import os
import tarfile

import pytest
import torch

from t2i_tiny import caption, write_caption_folder, write_tar_shards
from vapi.data.captions import CaptionFolderDataset, CaptionTarDataset, ConditionedDataset, expand_shards
from vapi.data.build import DataConfig, build_dataset
from vapi.data.procedural import ProceduralShapes
from vapi.models.protocols import PromptCondition


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_caption_folder_loads(tmp_path, fmt):
    root = write_caption_folder(tmp_path / "caps", n=6, image_size=32, fmt=fmt)
    ds = build_dataset(DataConfig(path=root, image_size=16))
    assert isinstance(ds, CaptionFolderDataset) and len(ds) == 6 and not ds.skipped
    image, text = ds[3]
    assert image.shape == (3, 16, 16) and image.min() >= -1 and image.max() <= 1
    assert text == caption(ProceduralShapes(6, seed=1).label(3)) and ds.captions[3] == text


def test_caption_folder_counts_bad_rows(tmp_path):
    root = write_caption_folder(tmp_path / "caps", n=4, image_size=16)
    os.remove(os.path.join(root, "images", "0001.png"))
    with open(os.path.join(root, "metadata.jsonl"), "a") as f:
        f.write(json.dumps({"file_name": "images/0002.png", "caption": ""}) + "\n")
    with pytest.warns(UserWarning, match="skipped 2"):
        ds = CaptionFolderDataset(root, 16)
    assert len(ds) == 3
    assert sorted(ds.skipped.values()) == ["missing image file", "no caption"]
    with pytest.raises(ValueError, match="caption column 'title'"):
        CaptionFolderDataset(root, 16, caption_column="title")


def test_tar_shards_load_and_a_corrupt_shard_is_a_counted_skip(tmp_path):
    root = write_tar_shards(tmp_path / "shards", n=10, shards=2, image_size=32, corrupt_shard=True)
    with pytest.warns(UserWarning, match="unreadable shard"):
        ds = build_dataset(DataConfig(path=root, image_size=16))
    assert isinstance(ds, CaptionTarDataset)
    assert len(ds) == 10 and ds.skipped_shards == 1 and len(ds.shards) == 3
    assert list(ds.skipped) == [os.path.join(root, "00002.tar")]
    labels = ProceduralShapes(10, seed=2)
    assert sorted(ds.captions) == sorted(caption(labels.label(i)) for i in range(10))  # .txt and .json captions
    image, text = ds[0]
    assert image.shape == (3, 16, 16) and isinstance(text, str)
    # the same shards through a brace range, a glob and a comma list
    assert expand_shards(f"{root}/{{00000..00001}}.tar") == expand_shards(f"{root}/0000[01].tar") == \
        expand_shards(f"{root}/00000.tar,{root}/00001.tar")


def test_tar_member_problems_are_counted(tmp_path):
    path = tmp_path / "s" / "00000.tar"
    path.parent.mkdir()
    members = {"a.jpg": b"not a jpeg at all", "a.txt": b"a red disk", "b.txt": b"a caption without image",
               "c.json": b"{broken", "c.png": b"x", "d.jpg": b"y"}
    good = io.BytesIO()
    from PIL import Image
    Image.new("RGB", (8, 8), (200, 10, 10)).save(good, format="PNG")
    members.update({"e.png": good.getvalue(), "e.json": json.dumps({"text": "a blue square"}).encode()})
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    with pytest.warns(UserWarning):
        ds = CaptionTarDataset(str(path.parent), 8)
    assert len(ds) == 2  # a (bytes broken, found at load time) and e
    reasons = sorted(v.split(":")[0] for v in ds.skipped.values())
    assert reasons == ["caption without an image", "image without a caption", "image without a caption",
                       "unreadable caption"]
    with pytest.warns(UserWarning, match="unreadable image"):
        image, text = ds[ds.captions.index("a red disk")]  # undecodable: replaced by the next readable item
    assert text == "a blue square" and image.shape == (3, 8, 8)
    assert len(ds.skipped) == 5


def test_conditioned_dataset_and_batching(tmp_path):
    class Upper:  # a stand-in PromptEncoder: one id per character, no padding
        prepared = None

        def prepare(self, prompts):
            Upper.prepared = list(prompts)

        def __call__(self, prompts):
            ids = torch.tensor([[ord(c) for c in p] for p in prompts])
            return PromptCondition(ids, torch.ones_like(ids))

    root = write_caption_folder(tmp_path / "caps", n=4, image_size=16)
    base = CaptionFolderDataset(root, 16)
    ds = ConditionedDataset(base, Upper())
    assert Upper.prepared == base.captions
    from vapi.training.state import BatchStream

    images, cond = next(BatchStream(ds, 4, seed=0))
    assert images.shape == (4, 3, 16, 16) and isinstance(cond, PromptCondition) and len(cond) == 4
    L = max(len(c) for c in base.captions)
    assert cond.inputs.shape == (4, L) and (cond.mask.sum(1) == torch.tensor(
        [len(base.captions[i]) for i in BatchStream(ds, 4, seed=0)._indices()])).all()
    assert (cond.mask[:, -1] == 1).all()  # left padding: every row ends with a real token
