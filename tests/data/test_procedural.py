"""ProceduralShapes: determinism by (seed, index), balance, range, class separability, ImageFolder round trip."""

import os
from collections import Counter

import pytest
import torch

from vapi.data.build import DataConfig, build_dataset
from vapi.data.images import ImageFolderDataset
from vapi.data.procedural import ProceduralShapes, main, save_as_image_folder


def test_same_seed_and_index_give_identical_images_in_any_order():
    a, b = ProceduralShapes(50, image_size=16, seed=3), ProceduralShapes(50, image_size=16, seed=3)
    later = [b[i][0] for i in (9, 0, 7)]  # b renders 9 and 0 before 7: no hidden sequential state
    assert torch.equal(a[7][0], later[2])
    assert torch.equal(a[9][0], later[0])
    assert a[7][1] == b[7][1]


def test_different_seed_or_index_gives_different_images():
    a, b = ProceduralShapes(50, image_size=16, seed=0), ProceduralShapes(50, image_size=16, seed=1)
    assert not torch.equal(a[5][0], b[5][0])
    assert not torch.equal(a[5][0], a[15][0])  # same class (5 % 10 == 15 % 10), different draw


def test_labels_are_exactly_balanced():
    ds = ProceduralShapes(100, image_size=8)
    assert Counter(ds.label(i) for i in range(len(ds))) == {c: 10 for c in range(10)}
    small = ProceduralShapes(12, image_size=8, num_classes=4)
    assert Counter(small.label(i) for i in range(12)) == {c: 3 for c in range(4)}
    assert small.class_names == ["00_disk_red", "01_square_blue", "02_triangle_green", "03_ring_yellow"]


@pytest.mark.parametrize("size", [16, 32, 64])
def test_shape_dtype_and_range(size):
    ds = ProceduralShapes(10, image_size=size)
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.shape == (3, size, size) and image.dtype == torch.float32
        assert image.min() >= -1.0 and image.max() <= 1.0
        assert isinstance(label, int)
    assert ds[-1][1] == ds[9][1]


def test_distinct_classes_differ_in_mean_images():
    # Split-half check: each class's mean image from one half is nearest to its own mean from the other half, i.e.
    # classes differ by more than the sampling noise of random position/scale/rotation/colour/background.
    ds = ProceduralShapes(1000, image_size=16, seed=0)
    images = torch.stack([ds[i][0] for i in range(len(ds))]).flatten(1)  # [1000, 3 * 16 * 16]
    labels = torch.tensor([ds.label(i) for i in range(len(ds))])

    def class_means(rows: slice) -> torch.Tensor:  # [10, 768]
        return torch.stack([images[rows][labels[rows] == c].mean(0) for c in range(10)])

    distances = torch.cdist(class_means(slice(0, 500)), class_means(slice(500, 1000)))  # [10, 10]
    assert distances.argmin(1).tolist() == list(range(10))


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="num_classes"):
        ProceduralShapes(10, num_classes=11)
    with pytest.raises(IndexError):
        ProceduralShapes(10, image_size=8)[10]


def test_save_as_image_folder_round_trips_exactly(tmp_path):
    ds = ProceduralShapes(30, image_size=16, seed=2)
    root = save_as_image_folder(ds, tmp_path / "shapes")
    assert sorted(os.listdir(root)) == sorted(ds.class_names)
    folder = ImageFolderDataset(root, image_size=16)
    assert len(folder) == len(ds) and folder.skipped == {} and folder.class_names == ds.class_names
    for j, (path, _) in enumerate(folder.samples):
        index = int(os.path.splitext(os.path.basename(path))[0])
        image, label = folder[j]
        assert torch.equal(image, ds[index][0])  # PNG is lossless and the crop at native size is the identity
        assert label == ds.label(index)  # numbered class folders keep the label ids


def test_cli_main_and_build_dataset(tmp_path):
    root = main([str(tmp_path / "out"), "--num-images", "20", "--image-size", "8", "--num-classes", "5"])
    assert len(ImageFolderDataset(root, image_size=8)) == 20
    ds = build_dataset(DataConfig(kind="procedural", image_size=8, procedural_num_images=20, procedural_seed=1))
    assert len(ds) == 20 and ds.num_classes == 10 and ds[0][0].shape == (3, 8, 8)
