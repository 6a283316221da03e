"""Atomic files: write to a temp file in the same folder, then rename.

A crash or Ctrl-C mid-write leaves the previous file intact, never a half-written one.
Every layer writes results, so this lives at the bottom beside config and errors.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from rewind.errors import RewindError


def atomic_write(path: str | Path, write) -> None:
    """Call write(tmp_path), then atomically move tmp_path to `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise RewindError(f"could not write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results and checkpoints are ordinary files
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # full disk, read-only folder: one line, the previous file is kept
            raise RewindError(f"could not write {path}: {exc.strerror or exc}; the previous file is kept") from None
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_write_json(path: str | Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, default=float))


# --- Paths from untrusted input (suite files, command lines) -----------------------------------------

_PLAIN = re.compile(r"[A-Za-z0-9_.-]+")


def plain_name(value, what: str) -> str:
    """`value` as a plain name for a path part (letters, digits, `-_.`; not `.` or `..`), else RewindError.

    Suite labels, env names and seeds become directory names: a `/` or `..` in one would write elsewhere.
    """
    text = str(value)
    if not _PLAIN.fullmatch(text) or text in (".", ".."):
        raise RewindError(f"{what} {text!r} is not a plain name (letters, digits, '-', '_', '.'; not '.' or '..')")
    return text


def inside(path: str | Path, root: str | Path, what: str = "path") -> Path:
    """`path` resolved (symlinks followed); RewindError unless it lies inside `root` (also resolved)."""
    real, base = Path(path).resolve(), Path(root).resolve()
    if real != base and base not in real.parents:
        raise RewindError(f"{what} {path} lies outside {root} (after resolving links); refusing to write there")
    return real


def writable_dir(path: str | Path, what: str) -> Path:
    """Check that `path` is, or can become, a writable directory, without creating anything; else one line."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RewindError(f"{what} {path} is a file, not a directory; give a directory")
    parent = path
    while not parent.exists():  # the nearest existing ancestor is where mkdir will write
        parent = parent.parent
    if not parent.is_dir():
        raise RewindError(f"{what} {path}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RewindError(f"{what} {path}: {parent} is not writable")
    return path


def writable_file(path: str | Path, what: str) -> Path:
    """Check that a file can be written at `path` (not a directory, its folder writable or creatable)."""
    path = Path(path)
    if path.is_dir():
        raise RewindError(f"{what} {path} is a directory; give a file name")
    writable_dir(path.parent if str(path.parent) else ".", f"{what} {path}: folder")
    return path


def remove_stale_tmp(folder: str | Path) -> list[Path]:
    """Delete the `.NAME.*.tmp` files atomic_write leaves when a process is killed mid-write; returns them.

    Only names atomic_write makes (a dot, then the target's name, then mkstemp's suffix) are touched.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(".*.tmp") if p.is_file() and not p.is_symlink()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


# --- Data files: tensors and plain containers, loadable with torch.load(weights_only=True) ---------------
# Checkpoints (run/) and the SB3 EBU replay (agents/) are written with these, so a file from someone
# else is decoded as data and never unpickled.

_TAG = "__rewind_plain__"   # marks a dict that encodes a numpy value


def to_plain(obj):
    """`obj` with numpy arrays and scalars replaced by tagged dicts of tensors: loadable with weights_only."""
    if obj is None or type(obj) in (bool, int, float, str, bytes) or isinstance(obj, torch.Tensor):
        return obj  # exact types: an IntEnum or str subclass would pickle its class, which weights_only refuses
    if isinstance(obj, (np.ndarray, np.generic)):
        arr = np.asarray(obj)
        if not (arr.flags.c_contiguous and arr.flags.writeable):  # torch wants writable memory; scalars too
            arr = np.array(arr, order="C")
        if arr.dtype.hasobject:
            raise TypeError("a numpy array of Python objects cannot be saved as plain data")
        return {_TAG: "ndarray", "dtype": np.lib.format.dtype_to_descr(arr.dtype), "shape": list(arr.shape),
                "scalar": isinstance(obj, np.generic), "data": torch.from_numpy(arr.reshape(-1).view(np.uint8))}
    if isinstance(obj, dict):
        bad = [k for k in obj if not (k is None or type(k) in (bool, int, float, str))]
        if bad:
            raise TypeError(f"cannot save a dict key of type {type(bad[0]).__name__} as plain checkpoint data")
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj) if type(obj) in (list, tuple) else [to_plain(v) for v in obj]
    raise TypeError(f"cannot save a {type(obj).__name__} as plain checkpoint data")


def from_plain(obj):
    """Inverse of to_plain: the numpy values back (as writable arrays over the loaded bytes, no copy)."""
    if isinstance(obj, dict):
        if obj.get(_TAG) == "ndarray":
            dtype = np.lib.format.descr_to_dtype(obj["dtype"])
            if dtype.hasobject:
                raise RewindError("checkpoint holds an array of Python objects; refusing it")
            arr = obj["data"].numpy().view(dtype).reshape(obj["shape"])
            return arr[()] if obj["scalar"] else arr
        return {k: from_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(from_plain(v) for v in obj)
    return obj


def save_data(path: str | Path, obj) -> None:
    """Write `obj` (tensors, numpy, plain containers) atomically as a torch file that loads weights_only."""
    data = to_plain(obj)

    def write(tmp):
        try:
            torch.save(data, tmp)
        except RuntimeError as exc:  # torch's zip writer reports a full disk as a RuntimeError
            import shutil
            free = shutil.disk_usage(Path(tmp).parent).free
            reason = (f"No space left on device ({free:,} bytes free)" if free < 2**20
                      else str(exc).splitlines()[0][:120])
            raise OSError(28, reason) from None

    atomic_write(path, write)


def load_data(path: str | Path, what: str = "file", hint: str = "", mmap: bool = True):
    """Load a file written by save_data with torch.load(weights_only=True): nothing in it can run.

    A file that needs unpickling is refused with one line naming what it asked for (plus `hint`);
    a truncated or garbled one with one line saying so.
    """
    import pickle

    try:
        # mmap: tensors (a replay of GBs) are paged in when used, so reading metadata is cheap.
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        asked = str(exc).split("Unsupported global:")[-1].split("was not")[0].strip().removeprefix("GLOBAL ")
        raise RewindError(f"{what} {path} needs unpickling ({asked[:80] or 'not plain data'}), which can run "
                          f"code; refused.{' ' + hint if hint else ''}") from None
    except Exception as exc:  # torch raises many types for truncated/garbled files
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise RewindError(f"{what} {path} is corrupt or unreadable ({reason})") from None
    try:
        return from_plain(obj)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RewindError(f"{what} {path} is corrupt ({type(exc).__name__}: {str(exc)[:80]})") from None
