"""An env's state as plain data, for checkpoints that resume exactly without pickling the env.

env_state(env) walks the env and its wrappers attribute by attribute and keeps data only:
numbers, strings, arrays, containers of those, numpy Generators (their state dict), torch
modules and optimizers (their state dicts) and ALE emulators (`cloneState(include_rng=True)`
serialized to bytes). Code (functions, classes) is skipped: the fresh env built at resume has
it. set_env_state(env, state) writes the values back into a freshly built env of the same kind.
An env holding anything else gives None: the run then resumes with a fresh episode.
"""

from __future__ import annotations

import collections
import enum
import functools
import types

import numpy as np
import torch

from rewind.errors import RewindError

_WALKED = ("gymnasium", "rewind", "ale_py", "minatar")  # modules whose objects are walked attribute by attribute
_SKIP = {"_saved_kwargs", "_ezpickle_args", "_ezpickle_kwargs", "spec", "_cached_spec", "metadata", "_metadata"}
_MAX_DEPTH = 24


class _Unsaveable(Exception):
    pass


def _is_code(value) -> bool:
    return isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType,
                              type, functools.partial))


def _encode(value, depth: int, seen: set):
    if depth > _MAX_DEPTH:
        raise _Unsaveable("too deep")
    if value is None or type(value) in (bool, int, float, str, bytes) or isinstance(value, (np.generic, torch.Tensor)):
        return ["v", value]
    if isinstance(value, (torch.nn.Module, torch.optim.Optimizer)):  # e.g. the NAS env's shared weights
        return ["torch", value.state_dict()]
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise _Unsaveable("object array")
        return ["v", value]
    if isinstance(value, np.random.Generator):
        return ["rng", value.bit_generator.state]
    if isinstance(value, np.dtype):
        return ["dtype", np.lib.format.dtype_to_descr(value)]
    if isinstance(value, (list, tuple)):
        return ["list" if isinstance(value, list) else "tuple", [_encode(v, depth + 1, seen) for v in value]]
    if isinstance(value, collections.deque):
        return ["deque", [_encode(v, depth + 1, seen) for v in value], value.maxlen]
    if isinstance(value, dict):
        if not all(isinstance(k, (str, int)) for k in value):
            raise _Unsaveable("dict key")
        return ["dict", {k: _encode(v, depth + 1, seen) for k, v in value.items()}]
    module = type(value).__module__ or ""
    if module.startswith("ale_py") and hasattr(value, "cloneState"):
        return ["ale", value.cloneState(include_rng=True).serialize()]
    if module.split(".")[0] in _WALKED:
        if id(value) in seen:
            raise _Unsaveable("cycle")
        if not hasattr(value, "__dict__") or isinstance(value, enum.Enum):  # a constant (e.g. ale_py.Action)
            return ["const", repr(value)]
        seen = seen | {id(value)}
        attrs = vars(value)
        return ["obj", type(value).__name__, {k: _encode(v, depth + 1, seen) for k, v in attrs.items()
                                              if k not in _SKIP and not _is_code(v)}]
    raise _Unsaveable(type(value).__name__)


def env_state(env) -> dict | None:
    """The env's state (it and every wrapper) as plain data, or None if some part is not data."""
    try:
        return {"version": 1, "tree": _encode(env, 0, set())}
    except _Unsaveable:
        return None


def _decode(code, current):
    kind = code[0]
    if kind == "v":
        return code[1]
    if kind == "const":
        if repr(current) != code[1]:
            raise ValueError(f"expected {code[1]}, the env has {current!r}")
        return current
    if kind in ("list", "tuple"):
        mine = list(current) if isinstance(current, (list, tuple)) and len(current) == len(code[1]) else []
        items = [_decode(c, mine[i] if mine else None) for i, c in enumerate(code[1])]
        return items if kind == "list" else tuple(items)
    if kind == "deque":
        return collections.deque((_decode(c, None) for c in code[1]), maxlen=code[2])
    if kind == "dict":
        return {k: _decode(c, None) for k, c in code[1].items()}
    if kind == "dtype":
        return np.lib.format.descr_to_dtype(code[1])
    if kind == "rng":
        bit_generator = getattr(np.random, str(code[1]["bit_generator"]), None)
        if not (isinstance(bit_generator, type) and issubclass(bit_generator, np.random.BitGenerator)):
            raise ValueError(f"unknown bit generator {code[1]['bit_generator']!r}")
        rng = np.random.Generator(bit_generator())
        rng.bit_generator.state = code[1]
        return rng
    if kind == "torch":
        current.load_state_dict(code[1])
        return current
    if kind == "ale":
        import ale_py
        current.restoreState(ale_py.ALEState(bytes(code[1])))
        return current
    if kind == "obj":
        if current is None or type(current).__name__ != code[1]:
            raise ValueError(f"expected a {code[1]}, the env has {type(current).__name__}")
        for name, sub in code[2].items():
            setattr(current, name, _decode(sub, getattr(current, name, None)))
        return current
    raise ValueError(f"unknown env state entry {kind!r}")


def set_env_state(env, state: dict) -> None:
    """Write a state from env_state into a freshly built env of the same kind; RewindError if it does not fit."""
    try:
        _decode(state["tree"], env)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise RewindError(f"the checkpoint's env state does not fit this env ({str(exc).splitlines()[0][:100]})") \
            from None
