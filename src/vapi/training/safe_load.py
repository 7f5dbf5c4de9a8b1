"""Reading a training checkpoint's pickled files without running anything in them.

PyTorch's DCP reads `dcp/.metadata` with plain `pickle.load`: a crafted file would run code on resume.
`SafeMetadataReader` (a `FileSystemReader`) reads it through `_MetadataUnpickler`, which resolves only the globals
DCP's metadata is made of (its dataclasses, `torch.Size`, dtypes/layouts, paths). `.pt` files go through vapi's one
torch-file loader (`models.state_dict_io.load_torch_file`, tensors and plain containers only). Whatever is refused
raises `UnsafeCheckpointError` with one line naming the file.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint._traverse import set_element  # the setter DCP's own planner uses
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner

from vapi.models.infer_config import CheckpointError
from vapi.models.state_dict_io import load_torch_file


class UnsafeCheckpointError(ValueError):
    """A checkpoint file that is not plain data (crafted or corrupt): refused before anything in it runs."""


# Exactly the globals a DCP `.metadata` pickle references (torch 2.x): its dataclasses, tensor sizes, dtypes and
# layouts, and the path of the checkpoint.
_DCP_META = "torch.distributed.checkpoint.metadata"
_ALLOWED = {
    (_DCP_META, n) for n in ("Metadata", "TensorStorageMetadata", "TensorProperties", "_MEM_FORMAT_ENCODING",
                             "ChunkStorageMetadata", "BytesStorageMetadata", "MetadataIndex", "StorageMeta")
} | {("torch.distributed.checkpoint.filesystem", "_StorageInfo"), ("torch", "Size"),
     ("torch.serialization", "_get_layout"), ("collections", "OrderedDict"),
     ("pathlib", "PosixPath"), ("pathlib", "PurePosixPath"), ("pathlib", "WindowsPath"),
     ("pathlib", "PureWindowsPath")}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module == "torch":  # dtypes and layouts are pickled by name: torch.float32, torch.strided
            value = getattr(torch, name, None)
            if isinstance(value, (torch.dtype, torch.layout, torch.memory_format)):
                return value
        raise pickle.UnpicklingError(f"global {module}.{name} is not part of DCP metadata")


def safe_load_metadata(path: Path):
    """Unpickle a DCP `.metadata` file allowing only DCP's metadata classes; UnsafeCheckpointError otherwise."""
    from torch.distributed.checkpoint.metadata import Metadata

    try:
        with open(path, "rb") as f:
            meta = _MetadataUnpickler(io.BytesIO(f.read())).load()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: the checkpoint is incomplete; resume from another one") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError, IndexError) as e:
        raise UnsafeCheckpointError(f"{path}: refused, not plain DCP metadata ({e}); the checkpoint is corrupt or "
                                    "crafted: resume from another one or delete it") from None
    if not isinstance(meta, Metadata):
        raise UnsafeCheckpointError(f"{path}: refused, holds a {type(meta).__name__}, not DCP metadata")
    return meta


class SafeMetadataReader(dcp.FileSystemReader):
    """DCP's filesystem reader with a restricted unpickler for `.metadata` (DCP itself uses plain pickle.load)."""

    def read_metadata(self, *args, **kwargs):
        from torch.distributed.checkpoint.metadata import StorageMeta

        rank = kwargs.get("rank")
        metadata = safe_load_metadata(Path(self._get_metadata_path(rank)))
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's default load planner, except that non-tensor values (optimizer hyper-parameters, stored by DCP as
    pickled bytes) are read with `torch.load(weights_only=True)`; DCP's own planner unpickles them freely."""

    def load_bytes(self, read_item, value: io.BytesIO) -> None:
        obj = torch.load(value, weights_only=True)
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], obj)
        else:
            self.state_dict[read_item.dest_index.fqn] = obj


def safe_torch_load(path: Path):
    """`models.state_dict_io.load_torch_file` with nothing allowed beyond tensors and plain containers; whatever it
    refuses raises UnsafeCheckpointError, one line naming the file."""
    try:
        return load_torch_file(path, safe_globals=(), advice="")
    except CheckpointError as e:
        raise UnsafeCheckpointError(f"refused: {e}; the checkpoint is corrupt or crafted: resume from another one or "
                                    "delete it") from None
