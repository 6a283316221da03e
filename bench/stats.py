"""Aggregate metrics with stratified-bootstrap confidence intervals (Agarwal et al. 2021, rliable).

Scores come as {task: 1-D array of per-run scores}; tasks may hold different numbers of runs
(a failed run leaves a hole). The definitions follow rliable's `metrics` module exactly:

- IQM: 25% trimmed mean over all runs x tasks (scipy's trim_mean, as rliable);
- median / mean: over tasks of the per-task mean over runs;
- optimality gap: gamma - mean(min(score, gamma)) over all runs x tasks (gamma = 1);
- probability of improvement P(X > Y): per task the Mann-Whitney statistic
  P(x > y) + 0.5 P(x = y) over all run pairs, averaged over tasks;
- performance profile: fraction of runs above tau, per task, averaged over tasks.

Stratified bootstrap: each task's runs are resampled with replacement independently
(tasks are kept), `reps` times; 95% CIs are the 2.5 / 97.5 percentiles. The resampling is
vectorised in numpy (one array op per task, not a Python loop per replicate), so 2,000
replicates of a 26-game suite take milliseconds where rliable's arch-based loop takes seconds.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as _scipy_stats
from scipy.stats import trim_mean

from rewind.errors import RewindError

METRICS = ("IQM", "Median", "Mean", "Optimality Gap")


def _as_tasks(scores: dict) -> list[np.ndarray]:
    tasks = [np.asarray(v, dtype=np.float64).ravel() for v in scores.values()]
    if not tasks or any(t.size == 0 for t in tasks):
        raise RewindError("aggregate needs at least one run on every task")
    return tasks


def iqm(scores: dict) -> float:
    return float(trim_mean(np.concatenate(_as_tasks(scores)), 0.25))


def median(scores: dict) -> float:
    return float(np.median([t.mean() for t in _as_tasks(scores)]))


def mean(scores: dict) -> float:
    return float(np.mean([t.mean() for t in _as_tasks(scores)]))


def optimality_gap(scores: dict, gamma: float = 1.0) -> float:
    return float(gamma - np.mean(np.minimum(np.concatenate(_as_tasks(scores)), gamma)))


def probability_of_improvement(x: dict, y: dict) -> float:
    """P(X > Y) averaged over the tasks both hold."""
    common = [k for k in x if k in y]
    if not common:
        raise RewindError("probability of improvement needs tasks that both agents ran")
    probs = []
    for k in common:
        a, b = np.asarray(x[k], float).ravel(), np.asarray(y[k], float).ravel()
        diff = a[:, None] - b[None, :]
        probs.append((diff > 0).mean() + 0.5 * (diff == 0).mean())
    return float(np.mean(probs))


def _boot_tasks(tasks: list[np.ndarray], reps: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Per task a (reps, n_runs) array of runs drawn with replacement."""
    return [t[rng.integers(0, t.size, size=(reps, t.size))] for t in tasks]


def _aggregates_of(boot: list[np.ndarray], gamma: float = 1.0) -> dict[str, np.ndarray]:
    """The four aggregates for each bootstrap replicate: {metric: (reps,)}."""
    flat = np.concatenate(boot, axis=1)
    task_means = np.stack([b.mean(axis=1) for b in boot], axis=1)
    return {
        "IQM": trim_mean(flat, 0.25, axis=1),
        "Median": np.median(task_means, axis=1),
        "Mean": task_means.mean(axis=1),
        "Optimality Gap": gamma - np.minimum(flat, gamma).mean(axis=1),
    }


def _ci(samples: np.ndarray, size: float = 0.95) -> tuple[float, float]:
    tail = 100 * (1 - size) / 2
    lo, hi = np.percentile(samples, [tail, 100 - tail], axis=0)
    return float(lo), float(hi)


def aggregate_with_ci(scores: dict, reps: int = 2000, seed: int = 0, size: float = 0.95) -> dict:
    """{metric: (point, ci_low, ci_high)} for IQM, median, mean and optimality gap."""
    tasks = _as_tasks(scores)
    point = {"IQM": iqm(scores), "Median": median(scores), "Mean": mean(scores),
             "Optimality Gap": optimality_gap(scores)}
    boot = _aggregates_of(_boot_tasks(tasks, reps, np.random.default_rng(seed)))
    return {m: (point[m], *_ci(boot[m], size)) for m in METRICS}


def iqm_with_ci(scores: dict, reps: int = 2000, seed: int = 0, size: float = 0.95) -> tuple[float, float, float]:
    tasks = _as_tasks(scores)
    flat = np.concatenate(_boot_tasks(tasks, reps, np.random.default_rng(seed)), axis=1)
    return (iqm(scores), *_ci(trim_mean(flat, 0.25, axis=1), size))


def poi_with_ci(x: dict, y: dict, reps: int = 2000, seed: int = 0, size: float = 0.95) -> tuple[float, float, float]:
    """P(X > Y) with a CI from resampling each agent's runs independently within each task."""
    point = probability_of_improvement(x, y)
    rng = np.random.default_rng(seed)
    common = [k for k in x if k in y]
    per_task = []
    for k in common:
        a, b = np.asarray(x[k], float).ravel(), np.asarray(y[k], float).ravel()
        ab = a[rng.integers(0, a.size, size=(reps, a.size))]
        bb = b[rng.integers(0, b.size, size=(reps, b.size))]
        diff = ab[:, :, None] - bb[:, None, :]
        per_task.append((diff > 0).mean(axis=(1, 2)) + 0.5 * (diff == 0).mean(axis=(1, 2)))
    return (point, *_ci(np.mean(per_task, axis=0), size))


def performance_profile(scores: dict, taus: np.ndarray, reps: int = 1000, seed: int = 0, size: float = 0.95):
    """(profile (len(taus),), ci (2, len(taus))): fraction of runs scoring above each tau."""
    tasks = _as_tasks(scores)
    taus = np.asarray(taus, dtype=np.float64)
    profile = np.mean([(t[:, None] > taus[None, :]).mean(axis=0) for t in tasks], axis=0)
    boot = _boot_tasks(tasks, reps, np.random.default_rng(seed))
    boot_prof = np.mean([(b[:, :, None] > taus[None, None, :]).mean(axis=1) for b in boot], axis=0)
    tail = 100 * (1 - size) / 2
    return profile, np.percentile(boot_prof, [tail, 100 - tail], axis=0)


def t_interval(x) -> tuple[float, float]:
    """Mean over seeds and the half-width of its 95% Student-t interval (nan with fewer than 2 seeds)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return float(x.mean()), float("nan")
    return float(x.mean()), float(_scipy_stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
