"""The third-party weight files vapi reads: where each one is cached, its public URL, and fetching it.

Nothing is downloaded behind the user's back: training and evaluation read these files from torch's hub cache
(`$TORCH_HOME/hub/checkpoints/`, by default `~/.cache/torch/hub/checkpoints/`) and fail with one error naming the
file, the cache path and the URL. `vapi download lpips|inception` fetches them through torch's own
`torch.hub.download_url_to_file` (SHA-256 prefix of the file name checked, as `torch.hub` does); `vapi env` lists
what is present. FLAN-T5 (text-to-image) lives in the Hugging Face cache instead and is fetched with `hf download`.

    vapi download lpips            # VGG16 + AlexNet backbones of LPIPS (528 MB + 233 MB)
    vapi download inception        # torch-fidelity's FID Inception (91 MB)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WeightFile:
    name: str  # what `vapi download` and `vapi env` call it
    file: str  # the file name in torch's hub cache
    url: str
    used_by: str

    @property
    def hash_prefix(self) -> str | None:
        """torch.hub's convention: `name-<sha256 prefix>.ext`."""
        tail = Path(self.file).stem.rsplit("-", 1)[-1]
        return tail if len(tail) >= 6 and all(c in "0123456789abcdef" for c in tail) else None


TORCHVISION = "https://download.pytorch.org/models/"
WEIGHT_FILES = {
    "lpips-vgg": WeightFile("lpips-vgg", "vgg16-397923af.pth", TORCHVISION + "vgg16-397923af.pth",
                            "reward.lpips with lpips_net=vgg (LlamaGen runs, the default)"),
    "lpips-alex": WeightFile("lpips-alex", "alexnet-owt-7be5be79.pth", TORCHVISION + "alexnet-owt-7be5be79.pth",
                             "reward.lpips with lpips_net=alex (Janus runs)"),
    "lpips-squeeze": WeightFile("lpips-squeeze", "squeezenet1_1-b8a52dc0.pth",
                                TORCHVISION + "squeezenet1_1-b8a52dc0.pth", "reward.lpips with lpips_net=squeeze"),
    "inception": WeightFile("inception", "weights-inception-2015-12-05-6726825d.pth",
                            "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                            "weights-inception-2015-12-05-6726825d.pth",
                            "vapi eval, train.gen_metrics_features=inception"),
}
GROUPS = {"lpips": ("lpips-vgg", "lpips-alex"), "inception": ("inception",)}
T5_DEFAULT = "google/flan-t5-xl"


def cache_dir() -> Path:
    """torch's hub checkpoint folder (honours $TORCH_HOME)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def cache_path(name: str) -> Path:
    return cache_dir() / WEIGHT_FILES[name].file


def missing_message(name: str, path: str | os.PathLike | None = None, option: str = "") -> str:
    """The offline error of a loader: which file, where it is looked for, where to get it."""
    w = WEIGHT_FILES[name]
    path = Path(path) if path else cache_path(name)
    group = next((g for g, members in GROUPS.items() if name in members), None)
    fetch = f"run `vapi download {group}` on a machine with internet" if group else "download it"
    extra = f", or set {option}=PATH" if option else ""
    return (f"{w.file} not found at {path} ({w.used_by}). Fetch it from {w.url}: {fetch}, or copy the file into "
            f"{cache_dir()} ($TORCH_HOME/hub/checkpoints){extra}")


def download(name: str, base_url: str | None = None, check_hash: bool = True, progress: bool = True) -> Path:
    """Fetch one weight file into torch's hub cache with `torch.hub.download_url_to_file`; present files are kept.
    `base_url` replaces the folder of the public URL (a mirror, or `file:///dir/` in tests)."""
    import torch

    w = WEIGHT_FILES[name]
    dst = cache_path(name)
    if dst.is_file():
        return dst
    url = base_url.rstrip("/") + "/" + w.file if base_url else w.url
    dst.parent.mkdir(parents=True, exist_ok=True)
    # download_url_to_file writes a temporary file next to dst and renames it, so a failed fetch leaves nothing.
    torch.hub.download_url_to_file(url, str(dst), hash_prefix=w.hash_prefix if check_hash else None,
                                   progress=progress)
    return dst


def hf_missing_message(repo_id: str, used_by: str) -> str:
    """The offline error for a Hugging Face hub model: where the cache would hold it and where it comes from."""
    try:
        from huggingface_hub import constants

        where = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    except ImportError:
        where = Path("~/.cache/huggingface/hub") / f"models--{repo_id.replace('/', '--')}"
    return (f"{repo_id} ({used_by}) is neither a local folder nor in the Hugging Face cache at {where}. Fetch it from "
            f"https://huggingface.co/{repo_id} once on a machine with internet (hf download {repo_id}, or "
            f"huggingface-cli download {repo_id}) or give a local folder")


def t5_status(name: str = T5_DEFAULT) -> tuple[bool, str]:
    """(present, where) of a hub id in the Hugging Face cache, without importing transformers."""
    try:
        from huggingface_hub import constants, try_to_load_from_cache
    except ImportError:
        return False, "huggingface_hub is not installed (pip install 'vapi[hf]')"
    found = try_to_load_from_cache(name, "config.json")
    if isinstance(found, str):
        return True, str(Path(found).parent)
    return False, str(Path(constants.HF_HUB_CACHE) / f"models--{name.replace('/', '--')}")
