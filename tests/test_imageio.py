"""vapi.imageio: the one [-1, 1] → uint8 rule and the one grid writer."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.utils import make_grid as tv_make_grid

from vapi.imageio import make_grid, save_grid, to_uint8


def test_grid_matches_torchvision_save_image():
    assert to_uint8(torch.tensor([-1.5, -1.0, 0.0, 1.0, 2.0])).tolist() == [0, 0, 128, 255, 255]
    images = torch.rand(5, 3, 6, 7, generator=torch.Generator().manual_seed(0)) * 2.2 - 1.1  # [N, 3, H, W]
    ref = tv_make_grid(images, nrow=3, normalize=True, value_range=(-1, 1))  # what LlamaGen's save_image does
    ref = ref.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
    assert (make_grid(images, nrow=3) == ref).all()



def test_to_uint8_keeps_uint8_and_any_shape():
    x = torch.arange(6, dtype=torch.uint8).view(1, 2, 3)
    assert to_uint8(x) is x
    assert to_uint8(torch.zeros(2, 3, 4, 5)).shape == (2, 3, 4, 5)


def test_a_lone_image_keeps_its_border_and_bad_shapes_are_refused():
    grid = make_grid(torch.ones(1, 3, 4, 4), padding=2)  # [H', W', 3]
    assert grid.shape == (8, 8, 3) and grid[0].max() == 0 and grid[2:6, 2:6].min() == 255
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        make_grid(torch.zeros(3, 4, 4))


def test_save_grid_writes_the_png_atomically(tmp_path):
    images = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    path = save_grid(images, tmp_path / "sub" / "grid.png", nrow=3)
    assert np.array_equal(np.asarray(Image.open(path)), make_grid(images, nrow=3))
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temporary file left
