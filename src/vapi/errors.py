"""One-line messages for the errors a user can cause: bad paths, unreadable files, bad YAML, corrupt archives.

`cli.main` prints `vapi CMD: error: <one_line(e)>` and exits 2 for these; anything else is a bug and keeps its
traceback.
"""
from __future__ import annotations

import pickle
import zipfile

HINTS = {
    PermissionError: "check its permissions or choose another path",
    NotADirectoryError: "a part of this path is a file, not a folder: choose another path",
    IsADirectoryError: "this is a folder where a file is expected: give a file path",
    FileExistsError: "a file is in the way of a folder: move it or choose another path",
    FileNotFoundError: "check the path",
    OSError: "check the path and the free disk space",
}


def one_line(e: BaseException) -> str | None:
    """The message for a user-caused error, on one line; None for anything else (a bug: keep the traceback)."""
    if isinstance(e, OSError):
        if not e.filename:
            return _flat(str(e))  # vapi's own OSError messages name the file already
        hint = next(h for cls, h in HINTS.items() if isinstance(e, cls))
        where = f"{e.filename}" + (f" → {e.filename2}" if e.filename2 else "")
        return _flat(f"{where}: {e.strerror or e}; {hint}")
    if isinstance(e, zipfile.BadZipFile):
        return _flat(f"not a valid zip/npz file ({e}); the file is corrupt or of another format")
    if isinstance(e, pickle.UnpicklingError):
        return _flat(f"refused to unpickle ({e}); the file is corrupt or not plain tensors")
    if isinstance(e, ValueError):
        return _flat(str(e))
    return None


def _flat(text: str) -> str:
    return " ".join(line.strip() for line in text.strip().splitlines() if line.strip())
