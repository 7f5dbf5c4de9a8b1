"""A user reward module importable as `method_rewards:<function>` (the `module:function` path of the config)."""
import sys
import types

import pytest
import torch


def redness(images, targets, condition):
    """Favours red images: mean red minus mean green and blue, [N]."""
    return images[:, 0].mean((1, 2)) - images[:, 1:].mean((1, 2, 3))


@pytest.fixture
def user_rewards(monkeypatch):
    module = types.ModuleType("method_rewards")
    module.redness = redness
    module.constant = lambda images, targets, condition: torch.zeros(images.shape[0])
    monkeypatch.setitem(sys.modules, "method_rewards", module)
    return module
