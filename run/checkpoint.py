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

import numpy as np
import torch

from rewind.errors import RewindError
from rewind.files import atomic_write

FORMAT = "rewind-checkpoint"
_TAG = "__rewind_plain__"   # marks a dict that encodes a numpy value


def to_plain(obj):
    """`obj` with numpy arrays and scalars replaced by tagged dicts of tensors: loadable with weights_only."""
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, torch.Tensor)):
        return obj
    if isinstance(obj, (np.ndarray, np.generic)):
        arr = np.asarray(obj)
        if not (arr.flags.c_contiguous and arr.flags.writeable):  # torch wants writable memory; scalars too
            arr = np.array(arr, order="C")
        if arr.dtype.hasobject:
            raise TypeError("a numpy array of Python objects cannot be saved as plain data")
        return {_TAG: "ndarray", "dtype": np.lib.format.dtype_to_descr(arr.dtype), "shape": list(arr.shape),
                "scalar": isinstance(obj, np.generic), "data": torch.from_numpy(arr.reshape(-1).view(np.uint8))}
    if isinstance(obj, dict):
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


def save_checkpoint(path: str | Path, state: dict) -> None:
    data = to_plain({"format": FORMAT, **state})

    def write(tmp):
        try:
            torch.save(data, tmp)
        except RuntimeError as exc:  # torch's zip writer reports a full disk as a RuntimeError
            raise OSError(28, str(exc).splitlines()[0][:120]) from None

    atomic_write(path, write)


def convert_hint(path) -> str:
    return f"if you wrote it with an older rewind and trust it, convert it: rewind convert-checkpoint {path} --trust"


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint written by save_checkpoint (data only), or raise a one-line RewindError."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.exists():
        raise RewindError(f"checkpoint {path} does not exist; give a run directory or its checkpoint.pt")
    if not path.is_file():
        raise RewindError(f"checkpoint {path} is not a file")
    try:
        # mmap: tensors (a replay of GBs) are paged in when used, so checking a run's metadata is cheap.
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        what = str(exc).split("Unsupported global:")[-1].split("was not")[0].strip().removeprefix("GLOBAL ")
        raise RewindError(f"checkpoint {path} needs unpickling ({what[:80] or 'not plain data'}), which can run "
                          f"code; refused. {convert_hint(path)}") from None
    except Exception as exc:  # torch raises many types for truncated/garbled files
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise RewindError(f"checkpoint {path} is corrupt or unreadable ({reason}); "
                          "use another checkpoint or start a new run") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise RewindError(f"{path} is not a rewind checkpoint")
    try:
        return from_plain(state)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RewindError(f"checkpoint {path} is corrupt ({type(exc).__name__}: {str(exc)[:80]})") from None


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
