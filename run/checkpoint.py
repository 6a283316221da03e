"""Checkpoints: one file per run, written atomically (rewind.files), checked on load."""

from __future__ import annotations

from pathlib import Path

import torch

from rewind.errors import RewindError
from rewind.files import atomic_write

FORMAT = "rewind-checkpoint"


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
