"""GenEval export: write T2I samples in the folder layout the official GenEval scorer reads.

    <outdir>/<index:05d>/metadata.jsonl      the prompt's JSON object from the prompts file, verbatim
    <outdir>/<index:05d>/samples/<k:04d>.png  n_per_prompt images

`index` counts the non-blank lines of the prompts `.jsonl` (GenEval's `evaluation_metadata.jsonl`: one object per
line with "prompt", "tag", "include", ...). The scorer needs an old mmdet stack, so it runs separately:
`python evaluation/evaluate_images.py <outdir> --outfile results.jsonl --model-path <detector dir>`.

Export is resumable: a prompt whose metadata and all PNGs exist is skipped. Images are written to a temporary name and
renamed, and metadata.jsonl is written last, so an interrupted prompt is regenerated whole.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from vapi.imageio import to_uint8

# generate(prompts, n) -> images [len(prompts) * n, 3, H, W], uint8 or float in [-1, 1]; prompt i owns rows
# [i * n, (i + 1) * n).
GenerateFn = Callable[[list[str], int], torch.Tensor | np.ndarray]


def read_prompts(path: str | os.PathLike) -> list[tuple[str, dict]]:
    """(raw JSON line, parsed object) per non-blank line; every object must have a "prompt" string."""
    entries = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            obj = json.loads(line)
            if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str):
                raise ValueError(f"{path}:{lineno}: expected a JSON object with a 'prompt' string")
            entries.append((line, obj))
    return entries


def _is_complete(prompt_dir: Path, n_per_prompt: int) -> bool:
    return (prompt_dir / "metadata.jsonl").is_file() and all(
        (prompt_dir / "samples" / f"{k:04d}.png").is_file() for k in range(n_per_prompt)
    )


def _write_png(image: np.ndarray, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp.png")
    Image.fromarray(image).save(tmp)
    os.replace(tmp, path)


def export_geneval(
    prompts_path: str | os.PathLike,
    outdir: str | os.PathLike,
    generate: GenerateFn,
    n_per_prompt: int = 4,
    prompts_per_call: int = 1,
    progress: bool = True,
) -> int:
    """Generate and write every incomplete prompt's samples; returns how many prompts were generated this call."""
    entries = read_prompts(prompts_path)
    outdir = Path(outdir)
    todo = [i for i in range(len(entries)) if not _is_complete(outdir / f"{i:05d}", n_per_prompt)]
    for start in tqdm(range(0, len(todo), prompts_per_call), desc="geneval", disable=not progress):
        chunk = todo[start : start + prompts_per_call]
        images = torch.as_tensor(generate([entries[i][1]["prompt"] for i in chunk], n_per_prompt))
        if images.ndim != 4 or images.shape[0] != len(chunk) * n_per_prompt or images.shape[1] != 3:
            raise ValueError(
                f"generate() must return [{len(chunk) * n_per_prompt}, 3, H, W] images, got {tuple(images.shape)}"
            )
        images = to_uint8(images).permute(0, 2, 3, 1).cpu().numpy()  # [len(chunk) * n, H, W, 3]
        for j, i in enumerate(chunk):
            prompt_dir = outdir / f"{i:05d}"
            (prompt_dir / "samples").mkdir(parents=True, exist_ok=True)
            for k in range(n_per_prompt):
                _write_png(images[j * n_per_prompt + k], prompt_dir / "samples" / f"{k:04d}.png")
            (prompt_dir / "metadata.jsonl").write_text(entries[i][0] + "\n", encoding="utf-8")
    return len(todo)
