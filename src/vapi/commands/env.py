"""`vapi env`: what this machine has for vapi: versions, devices, cache folders and which weight files are present.

Every missing weight file is listed with its exact file name, the cache path it is looked up at and its public URL
(`vapi download lpips|inception` fetches them). Paste the output into bug reports.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("env", help="versions, devices, caches and which weight files are present",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text report")
    p.set_defaults(func=run)
    return p


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect() -> dict:
    import torch

    from vapi import __version__
    from vapi.weights import T5_DEFAULT, WEIGHT_FILES, cache_dir, cache_path, t5_status

    versions = {"vapi": __version__, "python": platform.python_version(), "torch": torch.__version__,
                "cuda": torch.version.cuda, "torchvision": _version("torchvision"),
                "transformers": _version("transformers"), "lpips": _version("lpips"),
                "torch-fidelity": _version("torch-fidelity"), "wandb": _version("wandb")}
    devices = [{"name": torch.cuda.get_device_name(i),
                "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
               for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    weights = {}
    for name, w in WEIGHT_FILES.items():
        path = cache_path(name)
        weights[name] = {"file": w.file, "path": str(path), "present": path.is_file(), "url": w.url,
                         "used_by": w.used_by}
    t5_present, t5_where = t5_status(T5_DEFAULT)
    weights["t5"] = {"file": T5_DEFAULT, "path": t5_where, "present": t5_present,
                     "url": f"https://huggingface.co/{T5_DEFAULT}", "used_by": "text-to-image LlamaGen (T5 captions)"}
    try:
        from huggingface_hub import constants

        hf_cache = constants.HF_HUB_CACHE
    except ImportError:
        hf_cache = None
    caches = {"torch_hub_checkpoints": str(cache_dir()), "huggingface_hub": hf_cache,
              "vapi": os.environ.get("VAPI_CACHE_DIR") or str(Path.home() / ".cache" / "vapi")}
    return {"versions": versions, "cpu_threads": torch.get_num_threads(), "cuda_devices": devices,
            "caches": caches, "weights": weights}


def format_report(info: dict) -> str:
    v = info["versions"]
    lines = ["versions: " + ", ".join(f"{k} {val or 'not installed'}" for k, val in v.items())]
    if info["cuda_devices"]:
        lines.append(f"devices: {len(info['cuda_devices'])} CUDA GPU(s): " + "; ".join(
            f"cuda:{i} {d['name']} ({d['memory_gib']} GiB)" for i, d in enumerate(info["cuda_devices"])))
    else:
        lines.append(f"devices: CPU only ({info['cpu_threads']} threads); training and sampling run, slowly")
    lines.append("caches:")
    lines += [f"  {k}: {val}" for k, val in info["caches"].items()]
    lines.append("weights:")
    missing = []
    for name, w in info["weights"].items():
        if w["present"]:
            lines.append(f"  ok       {name:14s} {w['path']}")
        else:
            missing.append(name)
            lines.append(f"  MISSING  {name:14s} {w['file']}  (for {w['used_by']})")
            lines.append(f"           cache path: {w['path']}")
            lines.append(f"           url:        {w['url']}")
    if missing:
        fetch = [g for g in ("lpips", "inception") if any(m.startswith(g) for m in missing)]
        hint = [f"vapi download {' '.join(fetch)}"] if fetch else []
        if "t5" in missing:
            hint.append("hf download google/flan-t5-xl (text-to-image only)")
        lines.append("to fetch (needs internet): " + "; ".join(hint))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    info = collect()
    print(json.dumps(info, indent=1) if args.json else format_report(info))
    return 0
