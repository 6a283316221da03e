"""Pacing functions: which fraction of the easy-to-hard ordered data is available at step t.

Families (docs/curriculum.md):

- Wu, Dyer, Neyshabur 2021: ``linear``, ``quad``, ``root``, ``step``, ``exp``, ``log`` with
  ``a`` = fraction of training after which all data is used and ``b`` = initial fraction.
- Bengio et al. 2009: ``single_step`` (= ``step``: b before the switch at fraction a, then 1).
- Hacohen & Weinshall 2019: ``fixed_exp`` (start fraction ``b``, multiplied by ``inc`` every
  ``step_length`` steps) and ``varied_exp`` (the same with a list of step lengths).

Every pacing is a callable of the step (int or numpy array) returning fractions in [b, 1];
it equals b at t=0, reaches 1 by step a*total_steps and never decreases.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from rewind.errors import RewindError

PACINGS = ("linear", "quad", "root", "step", "single_step", "exp", "log", "fixed_exp", "varied_exp")


class Pacing:
    """g(t) for t in [0, total_steps]; attributes a (full-data fraction) and b (start fraction)."""

    def __init__(self, name: str, total_steps: int, a: float, b: float, fn):
        self.name, self.total_steps, self.a, self.b, self._fn = name, total_steps, a, b, fn

    def __call__(self, t):
        t = np.asarray(t, dtype=np.float64)
        out = np.clip(self._fn(np.maximum(t, 0.0)), self.b, 1.0)
        return float(out) if out.ndim == 0 else out

    def n_available(self, t, n: int):
        """How many of the n ordered examples are available at step t (at least 1)."""
        return np.maximum(1, np.ceil(np.asarray(self(t)) * n - 1e-9).astype(np.int64))

    def __repr__(self) -> str:
        return f"Pacing({self.name!r}, total_steps={self.total_steps}, a={self.a:g}, b={self.b:g})"


def _check(total_steps, a, b):
    if not isinstance(total_steps, (int, np.integer)) or total_steps < 1:
        raise RewindError(f"pacing total_steps must be a positive integer, got {total_steps!r}")
    if not 0.0 < a <= 1.0:
        raise RewindError(f"pacing a (fraction of training until all data is used) must be in (0, 1], got {a}")
    if not 0.0 < b <= 1.0:
        raise RewindError(f"pacing b (initial data fraction) must be in (0, 1], got {b}")


def make_pacing(name: str, total_steps: int, a: float = 0.8, b: float = 0.2, *, inc: float = 1.9,
                step_length: int = 100, step_lengths: Sequence[int] | None = None, n_steps: int = 1) -> Pacing:
    """Build pacing `name`. For the exponential H&W families b is the start fraction and a is derived.

    n_steps (``step`` only): number of equal increments between b and 1 (1 = a single switch).
    """
    if name not in PACINGS:
        raise RewindError(f"unknown pacing {name!r}; choose from: {', '.join(PACINGS)}")
    if name in ("fixed_exp", "varied_exp"):
        return _exponential(name, total_steps, b, inc, step_length, step_lengths)
    _check(total_steps, a, b)
    full = a * total_steps
    fns = {
        "linear": lambda t: b + (1 - b) * t / full,
        "quad": lambda t: b + (1 - b) * (t / full) ** 2,
        "root": lambda t: b + (1 - b) * np.sqrt(t / full),
        "exp": lambda t: b + (1 - b) * np.expm1(10 * np.minimum(t / full, 1.0)) / math.expm1(10),
        "log": lambda t: b + (1 - b) * (1 + 0.1 * np.log(t / full + math.exp(-10))),
    }
    if name in ("step", "single_step"):
        if not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
            raise RewindError(f"pacing n_steps must be a positive integer, got {n_steps!r}")
        k = 1 if name == "single_step" else n_steps
        fns[name] = lambda t: b + (1 - b) * np.floor(t * k / full + 1e-12) / k
    return Pacing(name, total_steps, a, b, fns[name])


def _exponential(name, total_steps, start, inc, step_length, step_lengths):
    if not 0.0 < start <= 1.0:
        raise RewindError(f"pacing start fraction b must be in (0, 1], got {start}")
    if inc <= 1.0:
        raise RewindError(f"pacing inc must be > 1 (Hacohen & Weinshall use 1.9), got {inc}")
    if not isinstance(total_steps, (int, np.integer)) or total_steps < 1:
        raise RewindError(f"pacing total_steps must be a positive integer, got {total_steps!r}")
    n_incs = 0 if start >= 1 else math.ceil(math.log(1 / start) / math.log(inc) - 1e-12)
    if name == "fixed_exp":
        if step_length < 1:
            raise RewindError(f"pacing step_length must be >= 1, got {step_length}")
        lengths = [step_length] * max(n_incs, 1)
    else:
        if not step_lengths or any(s < 1 for s in step_lengths):
            raise RewindError("varied_exp pacing needs step_lengths, a list of positive step counts")
        lengths = list(step_lengths) + [step_lengths[-1]] * max(0, n_incs - len(step_lengths))
    bounds = np.cumsum(lengths[:max(n_incs, 1)])  # step at which each increment happens
    full_at = int(bounds[-1]) if n_incs else 0
    if full_at > total_steps:
        raise RewindError(f"{name} pacing reaches all data only after {full_at} steps > total_steps "
                          f"{total_steps}: raise inc or start, or shorten the step lengths")

    def fn(t):
        k = np.searchsorted(bounds, t, side="right")
        return start * inc ** k

    return Pacing(name, total_steps, max(full_at / total_steps, 1e-12), start, fn)
