"""The demo's pretrained stages shipped with vapi (assets/demo): copy built stages there with a manifest of their
config, cache key and file hashes, and verify them. `vapi demo --rebuild` reproduces them from their config.

    python -m vapi.demo.assets ship [key=value ...]   # after a --rebuild run filled the cache
    python -m vapi.demo.assets verify
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

from vapi.config import load_config, to_dict
from vapi.demo.run import DemoConfig, repo_assets, stage_keys

STAGES = ("tokenizer", "prior", "evalnet", "perceptual")
SHIPPED_FILES = ("config.json", "metrics.json", "config.yaml")  # plus every *.safetensors


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def portable_metrics(path: Path, folders: dict[str, str]) -> None:
    """A stage's metrics.json names the stages it was built on by the path they had where it was built (the prior's
    "tokenizer": a cache folder on the builder's machine); shipped, it names their folder in assets/demo instead. A
    recorded path whose folder is not the one being shipped means the stage was built on another one: refuse."""
    metrics = json.loads(path.read_text())
    for name, folder in folders.items():
        recorded = metrics.get(name)
        if isinstance(recorded, str):
            if Path(recorded).name != folder:
                raise ValueError(f"{path} says it was built on {name} {recorded!r}, not on the shipped {folder}: "
                                 "rebuild it with `vapi demo --rebuild` so every stage comes from the same cache")
            metrics[name] = folder
    path.write_text(json.dumps(metrics, indent=1))


def ship(cfg: DemoConfig, dest: Path | None = None) -> Path:
    """Copy the cached stages of `cfg` into `dest` (default assets/demo) and write MANIFEST.json."""
    dest = Path(dest or repo_assets())
    manifest = {}
    for name, key in stage_keys(cfg).items():
        src = Path(cfg.cache_dir) / f"{name}-{key}"
        if not (src / "metrics.json").is_file():
            raise FileNotFoundError(f"{src} is not built: run `vapi demo --rebuild` with the same options first")
        out = dest / src.name
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        files = sorted([f for f in src.iterdir() if f.suffix == ".safetensors" or f.name in SHIPPED_FILES])
        for f in files:
            shutil.copy2(f, out / f.name)
        portable_metrics(out / "metrics.json", {n: f"{n}-{k}" for n, k in stage_keys(cfg).items()})
        manifest[name] = {"folder": src.name, "key": key, "config": to_dict(getattr(cfg, name)),
                          "files": {f.name: sha256(out / f.name) for f in files}}
    (dest / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return dest


def verify(dest: Path | None = None, cfg: DemoConfig | None = None) -> list[str]:
    """Problems with the shipped stages (empty = fine): missing folders, keys or configs that differ from the
    demo's defaults, hash mismatches."""
    dest, cfg = Path(dest or repo_assets()), cfg or DemoConfig()
    manifest = json.loads((dest / "MANIFEST.json").read_text())
    problems = []
    for name, key in stage_keys(cfg).items():
        entry = manifest.get(name)
        if entry is None or entry["key"] != key:
            problems.append(f"{name}: shipped key {entry and entry['key']} != the config's {key}")
            continue
        if entry["config"] != to_dict(getattr(cfg, name)):
            problems.append(f"{name}: recorded config differs from DemoConfig's")
        for fname, digest in entry["files"].items():
            path = dest / entry["folder"] / fname
            if not path.is_file() or sha256(path) != digest:
                problems.append(f"{name}: {fname} missing or its hash differs")
    return problems


if __name__ == "__main__":
    cmd, overrides = sys.argv[1], sys.argv[2:]
    if cmd == "ship":
        print(ship(load_config(DemoConfig, None, overrides)))
    else:
        problems = verify()
        print("\n".join(problems) or "ok")
        sys.exit(1 if problems else 0)
