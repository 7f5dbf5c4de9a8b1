"""Feature extractors for sample-quality metrics, and batched extraction.

A `FeatureExtractor` maps images [N, 3, H, W] (uint8 in [0, 255], or float in [-1, 1]) to pool features [N, D] and,
when it has a classifier head, logits [N, C]. Two adapters:

- `InceptionV3Extractor`: torch-fidelity's port of the TF FID Inception graph (optional extra `vapi[eval]`). It
  yields ADM's `pool_3` features (2048) and the unbiased logits (1008) ADM's IS softmax uses. Weights are never
  downloaded here: pass `weights_path`, or place torch-fidelity's file in `$TORCH_HOME/hub/checkpoints/`.
  With `spatial=True` it also returns ADM's sFID features: TF `mixed_6/conv` is the 1x1 branch of the fourth 17x17
  block (`Mixed_6d.branch1x1`, after its ReLU); ADM keeps its first 7 channels and flattens them in TF's NHWC order
  ([N, 17 * 17 * 7 = 2023]), which we reproduce so the features line up with the `mu_s`/`sigma_s` of ADM reference
  batches.
- `ClassifierExtractor`: any `nn.Module` with a `features(x)` method and an optional head module (the CPU demo's
  small classifier). Its metrics are for relative comparisons only, never comparable to published FIDs.

Usage: `feats, logits = compute_features(InceptionV3Extractor(weights_path=p), batches, batch_size=64)`.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from vapi.imageio import to_uint8
from vapi.weights import WEIGHT_FILES

INCEPTION_WEIGHTS_FILE = WEIGHT_FILES["inception"].file
INCEPTION_WEIGHTS_URL = WEIGHT_FILES["inception"].url


@runtime_checkable
class FeatureExtractor(Protocol):
    name: str  # identifies network + weights; keys the reference-statistics cache

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """images [N, 3, H, W] uint8 or float in [-1, 1] -> (pool features [N, D], logits [N, C] or None).

        Extractors that also provide sFID features return a third element, spatial features [N, D_s]."""
        ...


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] exactly as the data pipeline does (ToTensor + Normalize(0.5, 0.5), see
    `vapi.data.transforms.uint8_to_tensor`); float images are returned as float32 unchanged."""
    if images.dtype == torch.uint8:
        return images.float().div(255.0).sub(0.5).div(0.5)
    return images.float()


def inception_weights_cache_path() -> Path:
    """Where torch-fidelity's InceptionV3 weights are looked up when no path is given."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


def resolve_inception_weights(weights_path: str | os.PathLike | None = None) -> Path:
    """Return an existing InceptionV3 weights file, or raise FileNotFoundError saying which file to put where."""
    path = Path(weights_path) if weights_path is not None else inception_weights_cache_path()
    if path.is_file():
        return path
    from vapi.weights import missing_message

    raise FileNotFoundError(f"InceptionV3 FID weights not found: {missing_message('inception', path, '--inception-weights')}")


class InceptionV3Extractor:
    """torch-fidelity InceptionV3 (TF FID graph port): pool_3 features [N, 2048], unbiased logits [N, 1008].

    `random_init=True` builds the network with seeded random weights and no file: for plumbing tests only.
    `spatial=True` adds a third output, ADM's sFID features [N, 2023] (see the module docstring).
    """

    def __init__(
        self,
        weights_path: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        random_init: bool = False,
        spatial: bool = False,
    ):
        resolved = None if random_init else resolve_inception_weights(weights_path)
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError as e:
            raise ImportError("InceptionV3Extractor needs torch-fidelity: pip install 'vapi[eval]'") from e

        features = ["2048", "logits_unbiased"]
        if random_init:
            # The port always loads a state dict in __init__; skip that load once and keep the seeded init.
            class _RandomInit(FeatureExtractorInceptionV3):
                _skip_load = True

                def load_state_dict(self, state_dict, *args, **kwargs):
                    if self._skip_load:
                        self._skip_load = False
                        return None
                    return super().load_state_dict(state_dict, *args, **kwargs)

            empty = io.BytesIO()
            torch.save({}, empty)
            empty.seek(0)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                self.net = _RandomInit("inception-v3-compat", features, feature_extractor_weights_path=empty)
                # PyTorch's default conv init shrinks activations ~3x per layer: after ~90 layers the features are
                # ~1e-8 and every distance is 0. He init keeps them O(1), so tests see non-degenerate numbers.
                for m in self.net.modules():
                    if isinstance(m, (nn.Conv2d, nn.Linear)):
                        nn.init.kaiming_normal_(m.weight, nonlinearity="relu" if isinstance(m, nn.Conv2d) else "linear")
            self.name = "inception-v3-random-init"
        else:
            self.net = FeatureExtractorInceptionV3(
                "inception-v3-compat", features, feature_extractor_weights_path=str(resolved)
            )
            self.name = "inception-v3-tf-2015-12-05"
        self.device = torch.device(device)
        self.net.to(self.device).eval()
        self.spatial, self._captured = spatial, None
        if spatial:
            self.net.Mixed_6d.branch1x1.register_forward_hook(self._capture)

    def _capture(self, module, inputs, output: torch.Tensor) -> None:
        self._captured = output  # [N, 192, 17, 17], after BN + ReLU as TF's `mixed_6/conv`

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = to_uint8(images).to(self.device)  # [N, 3, H, W] uint8; the port resizes to 299 like TF1 bilinear
        pool, logits = self.net(x)  # [N, 2048], [N, 1008]
        if not self.spatial:
            return pool.float().cpu(), logits.float().cpu()
        # ADM: spatial[..., :7] of the NHWC tensor, flattened (h, w, c): the order its mu_s / sigma_s use
        spatial = self._captured[:, :7].permute(0, 2, 3, 1).flatten(1)  # [N, 17 * 17 * 7]
        self._captured = None
        return pool.float().cpu(), logits.float().cpu(), spatial.float().cpu()


def _module_hash(module: nn.Module) -> str:
    """Content hash of a module's parameters and buffers, so cached reference stats follow its weights."""
    h = hashlib.sha256()
    for key, t in module.state_dict().items():
        h.update(key.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class ClassifierExtractor:
    """Wrap an `nn.Module` classifier: features = `model.features(x)` flattened to [N, D], logits =
    `getattr(model, head)(features)` [N, C] (None when `head=None`). Inputs reach the model as float in [-1, 1]."""

    def __init__(self, model: nn.Module, head: str | None = "head", device: str | torch.device | None = None):
        if not callable(getattr(model, "features", None)):
            raise TypeError(f"{type(model).__name__} has no features(x) method")
        if head is not None and not callable(getattr(model, head, None)):
            raise TypeError(f"{type(model).__name__} has no callable attribute {head!r} (pass head=None)")
        self.model, self.head = model.eval(), head
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.name = f"{type(model).__name__}-{_module_hash(model)}"

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = to_unit_range(images).to(self.device)  # [N, 3, H, W] float in [-1, 1]
        feats = self.model.features(x).flatten(1)  # [N, D]
        logits = getattr(self.model, self.head)(feats) if self.head is not None else None  # [N, C]
        return feats.float().cpu(), (logits.float().cpu() if logits is not None else None)


def _as_nchw(batch) -> torch.Tensor:
    """Tensor or numpy batch, NCHW or NHWC (ADM npz layout) -> tensor [N, 3, H, W]."""
    t = torch.as_tensor(np.asarray(batch)) if not torch.is_tensor(batch) else batch
    if t.ndim != 4:
        raise ValueError(f"expected a batch of images [N, 3, H, W] or [N, H, W, 3], got {tuple(t.shape)}")
    if t.shape[1] != 3 and t.shape[-1] == 3:
        t = t.permute(0, 3, 1, 2)
    return t


def compute_features(
    extractor: FeatureExtractor,
    images: torch.Tensor | np.ndarray | Iterable,
    batch_size: int = 64,
    total: int | None = None,
    progress: bool = True,
    return_spatial: bool = False,
) -> tuple[np.ndarray, np.ndarray | None] | tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Run `extractor` over images in batches of at most `batch_size`.

    `images` is one array [N, ...] or an iterable of batches (tensors or arrays, NCHW or NHWC).
    Returns (features [N, D] float32, logits [N, C] float32 or None), plus spatial features [N, D_s] (or None when
    the extractor has none) with `return_spatial`.
    """
    if torch.is_tensor(images) or isinstance(images, np.ndarray):
        array, total = images, len(images)
        images = (array[i : i + batch_size] for i in range(0, total, batch_size))
    feats, logits, spatial = [], [], []
    with tqdm(total=total, unit="img", desc=f"features ({extractor.name})", disable=not progress) as bar:
        for batch in images:
            batch = _as_nchw(batch)  # [b, 3, H, W]
            for i in range(0, batch.shape[0], batch_size):
                f, lg, *sp = extractor(batch[i : i + batch_size])  # [b', D], [b', C] | None, ([b', D_s])
                feats.append(f.numpy())
                if lg is not None:
                    logits.append(lg.numpy())
                if sp and sp[0] is not None:
                    spatial.append(sp[0].numpy())
                bar.update(f.shape[0])
    if not feats:
        raise ValueError("compute_features got no images")
    out = (np.concatenate(feats).astype(np.float32), np.concatenate(logits).astype(np.float32) if logits else None)
    if return_spatial:
        return (*out, np.concatenate(spatial).astype(np.float32) if spatial else None)
    return out
