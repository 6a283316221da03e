"""Atomic checkpoint and result files: write to a temp file in the same folder, then rename.

A crash or Ctrl-C mid-write leaves the previous file intact, never a half-written one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from rewind.errors import RewindError

FORMAT = "rewind-checkpoint"


def atomic_write(path: str | Path, write) -> None:
    """Call write(tmp_path), then atomically move tmp_path to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results and checkpoints are ordinary files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_write_json(path: str | Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, default=float))


def save_checkpoint(path: str | Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save({"format": FORMAT, **state}, tmp))


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint written by save_checkpoint, or raise a one-line RewindError."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.exists():
        raise RewindError(f"checkpoint {path} does not exist; give a run directory or its checkpoint.pt")
    try:
        # weights_only=False: our checkpoints hold RNG states and a pickled env; load only files you trust.
        # mmap: tensors (a replay of GBs) are paged in when used, so checking a run's metadata is cheap.
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as exc:  # torch raises many types for truncated/garbled files
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise RewindError(f"checkpoint {path} is corrupt or unreadable ({reason}); "
                          "use another checkpoint or start a new run") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise RewindError(f"{path} is not a rewind checkpoint")
    return state
