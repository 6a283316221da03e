"""Typed configuration: dataclasses filled from YAML presets and `--set key=value` overrides.

Every section of a run (agent, env, run) is a dataclass. Unknown keys and values of the
wrong type are rejected with a RewindError that lists the valid keys, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from rewind.errors import RewindError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


# YAML 1.1 (PyYAML) reads 1e-4 and 1e5 as strings: it wants a dot (1.0e-4). Accept them as numbers.
_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


_INT_MAX = 2**53   # beyond this a YAML float (1e99) is no longer an exact integer; no setting needs more


def _coerce(value: Any, tp, where: str) -> Any:
    """Return `value` as type `tp`, or raise a RewindError naming the key `where`."""
    if isinstance(tp, str):
        tp = eval(tp, {"typing": typing, "tuple": tuple, "list": list})  # dataclass string annotations
    if tp in (int, float) and isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()):
        value = float(value)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except RewindError as exc:
                errors.append(str(exc))
        raise RewindError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin in (tuple, list):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise RewindError(f"{where} must be a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        out = [_coerce(v, item, where) for v in value]
        return tuple(out) if origin is tuple else out
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise RewindError(f"{where} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise RewindError(f"{where} must be an integer, got {value!r}")
        if abs(value) > _INT_MAX:
            raise RewindError(f"{where} = {value!r} is out of range (at most {_INT_MAX:.3g} in size)")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RewindError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise RewindError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise RewindError(f"{where} must be a string, got {value!r}")
        return value
    if tp is dict or typing.get_origin(tp) is dict:
        if not isinstance(value, dict):
            raise RewindError(f"{where} must be a mapping, got {value!r}")
        return value
    return value


def from_dict(cls, values: dict | None, section: str = ""):
    """Build dataclass `cls` from `values`, rejecting unknown keys and wrong types."""
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        where = f"{section}.{key}" if section else key
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean {section + '.' if section else ''}{close[0]}?)" if close else ""
            raise RewindError(
                f"unknown config key {where!r}{hint}; valid keys: {', '.join(sorted(fields))}"
            )
        kwargs[key] = _coerce(value, hints[key], where)
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise RewindError(f"bad {section or 'config'}: {exc}") from None
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


def to_dict(obj) -> dict:
    """Plain-dict form of a config dataclass (tuples become lists), for YAML/JSON and checkpoints."""
    out = dataclasses.asdict(obj)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def parse_set(items: list[str] | None) -> dict:
    """Parse `--set a.b=value` strings into a nested dict; values are read as YAML scalars."""
    result: dict = {}
    for item in items or []:
        if "=" not in item:
            raise RewindError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise RewindError(f"--set expects key=value, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RewindError(f"--set {key}: {part!r} is not a section")
        node[parts[-1]] = value
    return result


def merge(base: dict, override: dict) -> dict:
    """Recursive dict merge; `override` wins."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def preset_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_yaml(name_or_path: str | Path) -> dict:
    """Load a preset by name (`dqn_nature`) or a YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        candidate = CONFIG_DIR / f"{name_or_path}.yaml"
        if candidate.exists():
            path = candidate
    if not path.exists():
        raise RewindError(
            f"config {str(name_or_path)!r} not found; give a YAML path or a preset: {', '.join(preset_names())}"
        )
    if not path.is_file():
        raise RewindError(f"config {path} is a directory, not a YAML file; give a YAML file or a preset name")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "parse error"
        raise RewindError(f"config {path} is not valid YAML: {first}") from None
    if not isinstance(data, dict):
        raise RewindError(f"config {path} must be a mapping of sections (agent:, env:, run:)")
    return data
