"""Checkpoints: one file per run, written atomically (rewind.files), checked on load.

A checkpoint holds data, never code: tensors and plain containers (dict, list, tuple, str,
numbers, bytes), loaded with `torch.load(weights_only=True)`, so a checkpoint from someone
else cannot run anything. numpy arrays (replay memory, RNG states) are stored as uint8
tensors of their bytes plus the dtype and shape; the env is stored as plain data too
(rewind.envs.state). A file that needs unpickling (a crafted one, or one from rewind
before this format) is refused; `rewind convert-checkpoint FILE --trust` converts one you trust.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from rewind.errors import RewindError
from rewind.files import from_plain, load_data, save_data, to_plain  # noqa: F401  (re-exported for callers)

FORMAT = "rewind-checkpoint"


def save_checkpoint(path: str | Path, state: dict) -> None:
    save_data(path, {"format": FORMAT, **state})


def convert_hint(path) -> str:
    return f"If you wrote it with an older rewind and trust it, convert it: rewind convert-checkpoint {path} --trust"


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint written by save_checkpoint (data only), or raise a one-line RewindError."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.exists():
        raise RewindError(f"checkpoint {path} does not exist; give a run directory or its checkpoint.pt")
    if not path.is_file():
        raise RewindError(f"checkpoint {path} is not a file")
    state = load_data(path, "checkpoint", hint=convert_hint(path))
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise RewindError(f"{path} is not a rewind checkpoint")
    return state


def convert_checkpoint(path: str | Path, trust: bool) -> Path:
    """Rewrite an older (pickled) checkpoint as plain data in place; unpickling runs only with trust=True."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise RewindError(f"checkpoint {path} does not exist")
    if not trust:
        raise RewindError(f"converting {path} unpickles it, which runs any code it holds; add --trust only for a "
                          "file you or someone you trust wrote")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise RewindError(f"checkpoint {path} is corrupt or unreadable ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise RewindError(f"{path} is not a rewind checkpoint")
    loop = state.get("loop") or {}
    if isinstance(loop.get("env"), bytes):  # old format: a pickled env -> its plain state (or a fresh episode)
        from rewind.envs.state import env_state
        try:
            loop["env"] = env_state(pickle.loads(loop["env"]))
        except Exception:
            loop["env"] = None
        if loop["env"] is None:
            loop["obs"] = None
    state.pop("format")
    try:
        save_checkpoint(path, state)
    except TypeError as exc:
        raise RewindError(f"cannot convert {path}: {exc}") from None
    return path
