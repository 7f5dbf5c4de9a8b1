"""Image preprocessing, ImageFolderDataset (incl. damaged files), HFDiskDataset and build_dataset."""

import os
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from vapi.data.build import DataConfig, build_dataset
from vapi.data.images import HFDiskDataset, ImageFolderDataset
from vapi.data.transforms import center_crop_arr, to_tensor, uint8_to_tensor

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _stripes(width: int, height: int, horizontal: bool = True) -> Image.Image:
    """Outer quarters red/blue, middle half green, split along the long axis."""
    arr = np.zeros((height, width, 3), np.uint8)
    n = width if horizontal else height
    edges = [(0, n // 4, RED), (n // 4, 3 * n // 4, GREEN), (3 * n // 4, n, BLUE)]
    for lo, hi, colour in edges:
        if horizontal:
            arr[:, lo:hi] = colour
        else:
            arr[lo:hi, :] = colour
    return Image.fromarray(arr)


def _save(path, image: Image.Image, fmt: str | None = None) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path, format=fmt)


# ---- center crop and tensor conversion ----

@pytest.mark.parametrize("size_in,size_out", [((300, 200), 64), ((50, 80), 32), ((1000, 257), 16), ((32, 32), 32)])
def test_center_crop_output_size(size_in, size_out):
    out = center_crop_arr(Image.new("RGB", size_in, GREEN), size_out)
    assert out.size == (size_out, size_out)


@pytest.mark.parametrize("horizontal", [True, False])
def test_center_crop_keeps_the_centre_of_a_2to1_image(horizontal):
    # 128x64: one BOX halving (64 >= 2*32) then the BICUBIC step is at scale 1; the centre square is exactly the
    # green half. A squashing resize would bring in red and blue.
    image = _stripes(128, 64) if horizontal else _stripes(64, 128, horizontal=False)
    out = np.asarray(center_crop_arr(image, 32))
    assert out.shape == (32, 32, 3)
    assert (out == GREEN).all()


def test_uint8_to_tensor_matches_torchvision_normalize_bit_exactly():
    tv = pytest.importorskip("torchvision.transforms")
    arr = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    reference = tv.Normalize([0.5] * 3, [0.5] * 3)(tv.ToTensor()(arr))
    assert torch.equal(uint8_to_tensor(arr), reference)


def test_grayscale_loads_as_rgb_in_range():
    gray = Image.fromarray(np.array([[0, 128], [255, 64]], np.uint8), mode="L")
    t = to_tensor(gray)
    assert t.shape == (3, 2, 2) and t.dtype == torch.float32
    assert torch.equal(t[0], t[1]) and torch.equal(t[1], t[2])
    assert t.min() == -1.0 and t.max() == 1.0


def test_alpha_is_composited_onto_white():
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 0] = (0, 0, 0, 0)  # fully transparent black -> white
    rgba[0, 1] = (255, 0, 0, 255)  # opaque red stays red
    t = to_tensor(Image.fromarray(rgba, mode="RGBA"))
    assert t[:, 0, 0].tolist() == [1.0, 1.0, 1.0]
    assert t[:, 0, 1].tolist() == [1.0, -1.0, -1.0]
    la = to_tensor(Image.new("LA", (2, 2), (0, 0)))
    assert (la == 1.0).all()
    palette = Image.new("P", (2, 2), 0)
    palette.info["transparency"] = 0
    assert (to_tensor(palette) == 1.0).all()


def test_16bit_grayscale_is_rescaled_not_clipped():
    gray16 = Image.fromarray(np.array([[0, 32896, 65535]], np.uint16))  # mode I;16
    t = to_tensor(gray16)
    assert t[0, 0].tolist() == pytest.approx([-1.0, 128 / 127.5 - 1, 1.0], abs=1e-6)


# ---- ImageFolderDataset ----

@pytest.fixture
def messy_folder(tmp_path):
    root = tmp_path / "data"
    _save(root / "cat" / "a.png", Image.new("RGB", (40, 20), RED))
    _save(root / "cat" / "nested" / "b.JPEG", Image.new("L", (24, 24), 200))  # grayscale, upper-case ext, subdir
    _save(root / "dog" / "c.png", Image.new("RGBA", (16, 16), (0, 0, 255, 128)))
    (root / "dog" / "corrupt.png").write_bytes(np.random.default_rng(0).bytes(256))
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "dog" / "text.jpg").write_text("a text file with an image name")
    (root / "dog" / ".DS_Store").write_bytes(b"\0")  # hidden: ignored, not a dataset file
    return root


def test_image_folder_loads_good_files_and_counts_skips(messy_folder):
    with pytest.warns(UserWarning, match="skipped 3 files"):
        ds = ImageFolderDataset(messy_folder, image_size=8)
    assert ds.class_names == ["cat", "dog"] and ds.num_classes == 2
    assert len(ds) == 3 and ds.labels == [0, 0, 1]
    assert sorted(os.path.basename(p) for p in ds.skipped) == ["corrupt.png", "notes.txt", "text.jpg"]
    assert ds.skipped[str(messy_folder / "dog" / "notes.txt")].startswith("not an image extension")
    assert "UnidentifiedImageError" in ds.skipped[str(messy_folder / "dog" / "corrupt.png")]
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.shape == (3, 8, 8) and image.min() >= -1 and image.max() <= 1
        assert label == ds.labels[i]
    assert torch.equal(ds[1][0][0], ds[1][0][2])  # the grayscale JPEG became RGB


def test_damage_found_only_at_decode_is_substituted_and_counted(tmp_path):
    root = tmp_path / "data"
    _save(root / "a" / "0.png", Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)))
    _save(root / "a" / "1.png", Image.new("RGB", (8, 8), GREEN))
    path = root / "a" / "0.png"
    path.write_bytes(path.read_bytes()[:2000])  # valid header, truncated pixel data
    ds = ImageFolderDataset(root, image_size=8)  # the header check passes
    assert len(ds) == 2 and ds.skipped == {}
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        image, _ = ds[0]
    assert (image[1] == 1.0).all() and (image[0] == -1.0).all()  # substituted by the next (green) image
    assert list(ds.skipped) == [str(path)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the bad index is remembered: no second decode attempt, no warning
        ds[0]


def test_empty_folder_raises_with_path_and_layout(tmp_path):
    with pytest.raises(ValueError, match="class subfolders") as err:
        ImageFolderDataset(tmp_path, image_size=8)
    assert str(tmp_path) in str(err.value) and "root/<class_name>/<image>.png" in str(err.value)
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="no readable images") as err:
        ImageFolderDataset(tmp_path, image_size=8)
    assert str(tmp_path) in str(err.value) and "root/<class_name>/<image>.png" in str(err.value)


def test_flat_folder_without_class_subfolders_raises(tmp_path):
    for i in range(3):
        _save(tmp_path / f"{i}.png", Image.new("RGB", (8, 8)))
    with pytest.raises(ValueError, match="3 images but no class subfolders"):
        ImageFolderDataset(tmp_path, image_size=8)


def test_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderDataset(tmp_path / "nope", image_size=8)


# ---- HFDiskDataset and build_dataset ----

def _hf_dataset():
    datasets = pytest.importorskip("datasets")
    images = [Image.new("RGB", (20, 10), RED), Image.new("L", (12, 12), 30), Image.new("RGB", (9, 9), BLUE)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["x", "y", "z"])})
    return datasets, images, datasets.Dataset.from_dict({"image": images, "label": [2, 0, 1]}, features=features)


def test_hf_save_to_disk_round_trip(tmp_path):
    datasets, images, hf = _hf_dataset()
    hf.save_to_disk(str(tmp_path / "hf"))
    ds = HFDiskDataset(tmp_path / "hf", image_size=8)
    assert len(ds) == 3 and ds.num_classes == 3 and ds.class_names == ["x", "y", "z"]
    for i, expected_label in enumerate([2, 0, 1]):
        image, label = ds[i]
        assert label == expected_label
        assert torch.equal(image, to_tensor(center_crop_arr(images[i].convert("RGB"), 8)))


def test_hf_dataset_dict_split_and_int_labels(tmp_path):
    datasets, images, _ = _hf_dataset()
    plain = datasets.Dataset.from_dict({"img": images, "cls": [0, 4, 4]},
                                       features=datasets.Features({"img": datasets.Image(),
                                                                   "cls": datasets.Value("int64")}))
    datasets.DatasetDict({"train": plain, "test": plain.select([0])}).save_to_disk(str(tmp_path / "dd"))
    ds = build_dataset(DataConfig(path=str(tmp_path / "dd"), image_size=8, image_column="img", label_column="cls"))
    assert isinstance(ds, HFDiskDataset) and len(ds) == 3 and ds.num_classes == 5 and ds[1][1] == 4
    with pytest.raises(ValueError, match="splits"):
        HFDiskDataset(tmp_path / "dd", 8, "img", "cls", split="validation")
    with pytest.raises(ValueError, match="no column 'label'"):
        HFDiskDataset(tmp_path / "dd", 8, "img")
    wider = build_dataset(DataConfig(path=str(tmp_path / "dd"), image_size=8, image_column="img",
                                     label_column="cls", num_classes=10))  # explicit ids: a subset is fine
    assert wider.num_classes == 10 and len(wider.class_names) == 10


def test_hf_without_datasets_installed_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    with pytest.raises(ImportError, match=r"pip install vapi\[hf\]"):
        HFDiskDataset(tmp_path, image_size=8)


def test_build_dataset_auto_detects_and_checks_num_classes(tmp_path, messy_folder):
    _, _, hf = _hf_dataset()
    hf.save_to_disk(str(tmp_path / "hf"))
    assert isinstance(build_dataset(DataConfig(path=str(tmp_path / "hf"), image_size=8)), HFDiskDataset)
    with pytest.warns(UserWarning):
        folder = build_dataset(DataConfig(path=str(messy_folder), image_size=8, num_classes=2))
    assert isinstance(folder, ImageFolderDataset) and folder.num_classes == 2
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="num_classes=1000"):
        build_dataset(DataConfig(path=str(messy_folder), image_size=8, num_classes=1000))
    with pytest.raises(ValueError, match="data.path is empty"):
        build_dataset(DataConfig())
    with pytest.raises(ValueError, match="data.kind"):
        DataConfig(kind="tar")


# ---- the built-in ImageNet class map ----

def test_builtin_imagenet_table_is_the_1000_sorted_synsets():
    from vapi.data.images import imagenet_class_map

    table = imagenet_class_map()
    names = sorted(table, key=table.get)
    assert len(table) == 1000 and names == sorted(names) and list(table.values()) == list(range(1000))
    assert all(len(n) == 9 and n[0] == "n" and n[1:].isdigit() for n in names)
    # well-known LlamaGen / ImageNet class ids: tench, goldfish, golden retriever, otter, toilet tissue
    known = ("n01440764", "n01443537", "n02099601", "n02444819", "n15075141")
    assert [table[n] for n in known] == [0, 1, 207, 360, 999]


def test_imagenet_class_map_gives_llamagen_ids_to_a_subset_of_synset_folders(tmp_path):
    for name in ("n15075141", "n01443537"):
        _save(str(tmp_path / "in" / name / "a.png"), _stripes(12, 12))
    ds = build_dataset(DataConfig(path=str(tmp_path / "in"), image_size=8, class_map="imagenet"))
    assert ds.num_classes == 1000
    assert sorted(ds[i][1] for i in range(len(ds))) == [1, 999]


def test_imagenet_class_map_refuses_a_folder_that_is_not_a_synset(tmp_path):
    for name in ("n01443537", "goldfish"):
        _save(str(tmp_path / "in" / name / "a.png"), _stripes(12, 12))
    with pytest.raises(ValueError) as e:
        build_dataset(DataConfig(path=str(tmp_path / "in"), image_size=8, class_map="imagenet"))
    message = str(e.value)
    assert "\n" not in message and "goldfish" in message and "n01443537" not in message.split("such as")[0]


def test_imagenet_table_ships_with_the_package():
    import fnmatch
    import tomllib
    from pathlib import Path

    import vapi.data

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["vapi"]
    table = Path(vapi.data.__file__).parent / "imagenet_synsets.txt"
    assert table.is_file()
    assert any(fnmatch.fnmatch(str(table.relative_to(table.parents[1])), p) for p in patterns)
