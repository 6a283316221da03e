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
