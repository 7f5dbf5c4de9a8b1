"""Caption datasets for text-to-image post-training: `ds[i] -> (image [3, S, S] in [-1, 1], caption str)`.

Two layouts, chosen by `build_dataset` (`data.kind = captions | webdataset`, or `auto`):
- `CaptionFolderDataset`: a folder of images plus one captions file, `.jsonl` (one object per line) or `.csv` (a
  header row). The image column is the first of file_name / image / file / path / filename (HF imagefolder's
  `metadata.jsonl` uses file_name), relative to the captions file; the caption column is `caption_column` or the
  first of caption / text / prompt / TEXT.
- `CaptionTarDataset`: webdataset-style tar shards (LAION-COCO): members `<key>.<jpg|jpeg|png|webp>` paired with
  `<key>.txt` or `<key>.json` ("caption" / "text" / "TEXT" / "alt"), key = member path up to its first dot. Shards
  are a folder, a file, a glob, `{000..073}` ranges or a comma list. Members are indexed once (offsets), and read
  with a plain seek, so workers need no open tar handles.

Nothing is dropped silently: a shard that cannot be read is skipped as a whole and recorded in `skipped` and
`skipped_shards`; an image without a caption, a caption without an image or an unparseable JSON caption is a
recorded member skip; an image whose bytes fail to decode is found at load time, recorded and replaced by the next
readable item (as in vapi.data.transforms). Image preprocessing is the same ADM center crop as the class datasets.

`ConditionedDataset` turns the captions into the generator's PromptCondition (FLAN-T5 features, Janus prompt ids)
through its prompt encoder, precomputing them once at construction.
"""
from __future__ import annotations

import csv
import dataclasses
import glob
import io
import json
import os
import re
import tarfile
import warnings

from torch.utils.data import Dataset

from vapi.data.transforms import IMG_EXTENSIONS, RobustImageDataset, open_rgb, summarise_skips

IMAGE_KEYS = ("file_name", "image", "file", "path", "filename")
CAPTION_KEYS = ("caption", "text", "prompt", "TEXT", "alt")
CAPTION_FILES = (".jsonl", ".csv")


def find_captions_file(root: str) -> str:
    """The one `.jsonl`/`.csv` in `root` (metadata.jsonl / captions.* preferred when there are several)."""
    found = sorted(f for f in os.listdir(root) if f.lower().endswith(CAPTION_FILES) and not f.startswith("."))
    preferred = [f for f in found if os.path.splitext(f)[0] in ("metadata", "captions")]
    if len(preferred) == 1 or len(found) == 1:
        return os.path.join(root, (preferred or found)[0])
    what = f"several ({', '.join(found)})" if found else "no"
    raise ValueError(f"caption folder {root!r} has {what} .jsonl/.csv captions files: set data.captions_file")


def _read_rows(path: str) -> tuple[list[tuple[int, dict]], dict[str, str]]:
    """([(line number, row)], {"file:line": reason} for malformed lines, which are skipped)."""
    rows, bad = [], {}
    try:
        with open(path, encoding="utf-8", newline="") as f:
            if path.lower().endswith(".csv"):
                reader = csv.DictReader(f)
                for row in reader:
                    if None in row:  # more fields than the header names
                        bad[f"{path}:{reader.line_num}"] = "malformed line: more fields than the header"
                    else:
                        rows.append((reader.line_num, row))
                return rows, bad
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    bad[f"{path}:{lineno}"] = f"malformed line: {e.msg} at column {e.colno}"
                    continue
                if isinstance(row, dict):
                    rows.append((lineno, row))
                else:
                    bad[f"{path}:{lineno}"] = "malformed line: not a JSON object"
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (undecodable byte at offset {e.start})") from None
    except csv.Error as e:
        raise ValueError(f"{path}: unreadable CSV ({e})") from None
    return rows, bad


def _column(rows: list[dict], wanted: str, candidates: tuple[str, ...], what: str, path: str) -> str:
    keys = set().union(*(r.keys() for r in rows)) if rows else set()
    if wanted:
        if wanted not in keys:
            raise ValueError(f"{path}: no {what} column {wanted!r}; columns: {sorted(keys)}")
        return wanted
    for key in candidates:
        if key in keys:
            return key
    raise ValueError(f"{path}: no {what} column (looked for {', '.join(candidates)}); columns: {sorted(keys)}")


class CaptionFolderDataset(RobustImageDataset):
    """Images + a `.jsonl`/`.csv` of (image file, caption) rows → (image, caption)."""

    def __init__(self, root: str | os.PathLike, image_size: int, captions_file: str = "", caption_column: str = ""):
        super().__init__()
        self.root, self.image_size = os.path.expanduser(os.fspath(root)), image_size
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"caption folder {self.root!r} does not exist")
        self.captions_file = captions_file or find_captions_file(self.root)
        numbered, bad = _read_rows(self.captions_file)
        self.skipped.update(bad)
        if bad:
            first = next(iter(bad.items()))
            warnings.warn(f"{self.captions_file}: skipped {len(bad)} malformed line(s) (first: {first[0]}: "
                          f"{first[1]})", stacklevel=2)
        rows = [row for _, row in numbered]
        image_col = _column(rows, "", IMAGE_KEYS, "image file", self.captions_file)
        caption_col = _column(rows, caption_column, CAPTION_KEYS, "caption", self.captions_file)
        base = os.path.dirname(os.path.abspath(self.captions_file))
        self.samples: list[tuple[str, str]] = []
        for lineno, row in numbered:
            name, caption = row.get(image_col), row.get(caption_col)
            path = os.path.join(base, str(name)) if name else ""
            if not isinstance(caption, str) or not caption.strip():
                self.skipped[f"{self.captions_file}:{lineno}"] = "no caption"
            elif not name or not os.path.isfile(path):
                self.skipped[path or f"{self.captions_file}:{lineno}"] = "missing image file"
            else:
                self.samples.append((path, caption.strip()))
        _finish(self, f"caption folder {self.root!r} ({self.captions_file})")

    @property
    def captions(self) -> list[str]:
        return [c for _, c in self.samples]


def expand_shards(spec: str) -> list[str]:
    """'dir' | 'a.tar,b.tar' | 'shards/*.tar' | 'shards/{00000..00073}.tar' → sorted .tar paths."""
    paths: list[str] = []
    for part in filter(None, (s.strip() for s in os.path.expanduser(spec).split(","))):
        m = re.search(r"\{(\d+)\.\.(\d+)\}", part)
        if m:
            width = len(m.group(1))
            paths += [part[:m.start()] + f"{i:0{width}d}" + part[m.end():]
                      for i in range(int(m.group(1)), int(m.group(2)) + 1)]
        elif os.path.isdir(part):
            paths += sorted(os.path.join(dp, f) for dp, _, fs in os.walk(part) for f in fs if f.endswith(".tar"))
        elif any(c in part for c in "*?["):
            paths += sorted(glob.glob(part))
        else:
            paths.append(part)
    return paths


def _caption_from(name: str, data: bytes) -> str:
    if name.endswith(".txt"):
        return data.decode("utf-8").strip()
    obj = json.loads(data.decode("utf-8"))
    for key in CAPTION_KEYS:
        if isinstance(obj.get(key), str) and obj[key].strip():
            return obj[key].strip()
    return ""


class CaptionTarDataset(RobustImageDataset):
    """Webdataset tar shards of image + txt/json members → (image, caption); bad shards/members are counted skips."""

    def __init__(self, shards: str, image_size: int):
        super().__init__()
        self.spec, self.image_size = shards, image_size
        self.shards = expand_shards(shards)
        if not self.shards:
            raise FileNotFoundError(f"no .tar shards match {shards!r}")
        self.skipped_shards = 0
        self.samples: list[tuple[str, int, int, str]] = []  # (shard, data offset, size, caption)
        for shard in self.shards:
            try:
                self.samples += self._index(shard)
            except (OSError, tarfile.TarError, EOFError) as err:
                self.skipped[shard] = f"unreadable shard: {type(err).__name__}: {err}"
                self.skipped_shards += 1
        _finish(self, f"tar shards {shards!r}")

    def _index(self, shard: str) -> list[tuple[str, int, int, str]]:
        images: dict[str, tarfile.TarInfo] = {}
        captions: dict[str, str] = {}
        size = os.path.getsize(shard)
        with tarfile.open(shard, mode="r:") as tf:  # uncompressed, as webdataset writes: members are seekable
            for member in _members_until_damage(tf, shard, self.skipped):
                if not member.isfile():
                    continue
                if member.offset_data + member.size > size:
                    self.skipped[f"{shard}:{member.name}"] = "truncated member: the shard ends inside it"
                    continue
                name = member.name.lower()
                folder, _, base = member.name.rpartition("/")
                key = f"{folder}/{base.split('.')[0]}"  # webdataset: the path up to the basename's first dot
                if name.endswith(IMG_EXTENSIONS):
                    images[key] = member
                elif name.endswith((".txt", ".json")) and key not in captions:
                    try:
                        captions[key] = _caption_from(name, tf.extractfile(member).read())
                    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
                        self.skipped[f"{shard}:{member.name}"] = f"unreadable caption: {err}"
        out = []
        for key, member in images.items():
            caption = captions.get(key, "")
            if caption:
                out.append((shard, member.offset_data, member.size, caption))
            else:
                self.skipped[f"{shard}:{member.name}"] = "image without a caption"
        for key in sorted(set(captions) - set(images)):
            self.skipped[f"{shard}:{key}"] = "caption without an image"
        return out

    @property
    def captions(self) -> list[str]:
        return [s[3] for s in self.samples]

    def _name(self, index: int) -> str:
        shard, offset, _, _ = self.samples[index]
        return f"{shard}@{offset}"

    def _decode(self, index: int):
        shard, offset, size, caption = self.samples[index]
        with open(shard, "rb") as f:
            f.seek(offset)
            data = f.read(size)
        return open_rgb(io.BytesIO(data)), caption


def _members_until_damage(tf: tarfile.TarFile, shard: str, skipped: dict):
    """The members of a tar up to the first damaged header: a truncated shard keeps its readable members."""
    count = 0
    try:
        for member in tf:
            count += 1
            yield member
    except (tarfile.TarError, EOFError, OSError) as err:
        if count == 0:
            raise
        skipped[shard] = f"truncated shard: salvaged the {count} members before {type(err).__name__}: {err}"


def _finish(ds: RobustImageDataset, what: str) -> None:
    ds.num_classes, ds.class_names = 0, []
    if not ds.samples:
        detail = f"; skipped {len(ds.skipped)} ({summarise_skips(ds.skipped)})" if ds.skipped else ""
        raise ValueError(f"no (image, caption) pairs in {what}{detail}")
    if ds.skipped:
        warnings.warn(f"{type(ds).__name__}: skipped {len(ds.skipped)} entries ({summarise_skips(ds.skipped)}) in "
                      f"{what}; see .skipped", stacklevel=3)


def detect_caption_layout(path: str) -> str | None:
    """'webdataset' for tar shards, 'captions' for a folder with a .jsonl/.csv at its top, else None."""
    parts = [p.strip() for p in path.split(",") if p.strip()]
    if (parts and all(p.endswith(".tar") for p in parts)) or (
            os.path.isdir(path) and any(f.endswith(".tar") for f in os.listdir(path))):
        return "webdataset"
    if os.path.isdir(path) and any(f.lower().endswith(CAPTION_FILES) for f in os.listdir(path)):
        return "captions"
    return None


class ConditionedDataset(Dataset):
    """(image, caption) → (image, PromptCondition of batch 1) through `encoder`, precomputed at construction."""

    def __init__(self, dataset, encoder):
        self.dataset, self.encoder = dataset, encoder
        encoder.prepare(dataset.captions)
        self.num_classes, self.class_names = 0, []

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, caption = self.dataset[index]
        return image, dataclasses.replace(self.encoder([caption]), texts=(caption,))  # texts: for text rewards
