"""Labelled data as a contextual-bandit env (docs/bandits.md; Dudik et al., Bietti et al.).

Each episode is one step: reset() shows the next context x, the agent picks a class, and
the env answers with that arm's reward (1 if right, else 0; or 1 - cost[y, a] from a cost
matrix) and terminates. Without ``full_feedback`` nothing else leaks: ``info`` is empty and
the observation after the step is the same x. With it, ``info["label"]`` carries the true
class, which is what a full-information (supervised) learner needs.

Because every prediction is made before its example is learned from, the mean loss over a
run of one-step episodes is the progressive validation loss (``progressive_validation``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import gymnasium as gym
import numpy as np

from rewind.errors import RewindError

SKLEARN_DATASETS = ("digits", "wine", "iris", "breast_cancer")
ORDERS = ("shuffle", "fixed", "sorted")
SCALES = ("standard", "minmax", "none")


def progressive_validation(rewards) -> float:
    """Progressive validation loss of a run of one-step bandit episodes: 1 - mean reward.

    Each reward is the score of a prediction made before the learner saw its example, so
    this is the bake-off's online loss (0/1 error, or mean cost with a cost matrix).
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.size == 0:
        raise RewindError("progressive_validation needs at least one reward")
    return float(1.0 - r.mean())


def longtail_counts(n_max: int, n_classes: int, imbalance: float) -> np.ndarray:
    """Cui et al. 2019 exponential profile: n_i = n_max * imbalance**(-i / (C - 1)), at least 1."""
    if imbalance < 1.0:
        raise RewindError(f"imbalance must be >= 1 (n_max / n_min), got {imbalance}")
    if n_classes == 1:
        return np.array([n_max])
    i = np.arange(n_classes)
    return np.maximum(1, np.floor(n_max * imbalance ** (-i / (n_classes - 1)) + 1e-9)).astype(np.int64)


def _load_sklearn(name: str):
    import sklearn.datasets as skd

    loader = getattr(skd, f"load_{name}")
    bunch = loader()
    return bunch.data, bunch.target


def _load_csv(path: Path, label: str | None):
    if label is None:
        raise RewindError(f"CSV data {str(path)!r} needs label=<name of the label column>")
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise RewindError(f"CSV file {str(path)!r} is empty")
    header = [h.strip() for h in rows[0]]
    if label not in header:
        raise RewindError(f"label column {label!r} not in {str(path)!r}; columns: {', '.join(header)}")
    li = header.index(label)
    feats = [j for j in range(len(header)) if j != li]
    X = np.empty((len(rows) - 1, len(feats)), dtype=np.float64)
    y = []
    for r, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise RewindError(f"{str(path)!r} line {r + 2}: {len(row)} fields, header has {len(header)}")
        y.append(row[li].strip())
        for k, j in enumerate(feats):
            cell = row[j].strip()
            try:
                X[r, k] = float(cell) if cell else np.nan
            except ValueError:
                raise RewindError(f"{str(path)!r} line {r + 2}, column {header[j]!r}: "
                                  f"{cell!r} is not a number (only the label may be text)") from None
    return X, np.asarray(y)


def load_dataset(data=None, label: str | None = None, X=None, y=None):
    """(X, y) from arrays, a scikit-learn bundled dataset name, or a CSV path with a label column."""
    if X is not None or y is not None:
        if X is None or y is None:
            raise RewindError("give both X and y (features and labels)")
        return np.asarray(X), np.asarray(y), "arrays"
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return np.asarray(data[0]), np.asarray(data[1]), "arrays"
    if not isinstance(data, (str, Path)):
        raise RewindError("data must be a dataset name, a CSV path or an (X, y) pair")
    if str(data) in SKLEARN_DATASETS:
        X, y = _load_sklearn(str(data))
        return X, y, str(data)
    path = Path(data)
    if path.suffix.lower() == ".csv" or path.exists():
        if not path.exists():
            raise RewindError(f"CSV file {str(path)!r} not found")
        X, y = _load_csv(path, label)
        return X, y, path.name
    raise RewindError(f"unknown dataset {str(data)!r}; give one of {', '.join(SKLEARN_DATASETS)}, "
                      "a CSV path (with label=...), or X and y arrays")


class ClassificationBandit(gym.Env):
    """A labelled dataset as a K-armed contextual bandit; one context per (one-step) episode.

    Options: ``order`` of the stream ('shuffle': a new permutation each pass; 'fixed': data
    order; 'sorted': by class, a non-stationary stream), ``shuffle_seed`` (None: the seed given
    to reset), ``imbalance`` (> 1 subsamples the training split to Cui et al.'s long-tailed
    profile), ``test_fraction``/``split`` (a stratified held-out split, never long-tailed),
    ``scale`` (feature scaling fitted on the training split).
    """

    metadata = {"render_modes": []}

    def __init__(self, data="digits", label: str | None = None, *, X=None, y=None,
                 full_feedback: bool = False, cost_matrix=None, n_classes: int | None = None,
                 order: str = "shuffle", shuffle_seed: int | None = None,
                 imbalance: float = 1.0, longtail_seed: int = 0,
                 test_fraction: float = 0.0, split: str = "train", split_seed: int = 0,
                 scale: str = "standard", render_mode=None):
        X, y_raw, self.name = load_dataset(data, label, X, y)
        if order not in ORDERS:
            raise RewindError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
        if scale not in SCALES:
            raise RewindError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
        if split not in ("train", "test"):
            raise RewindError(f"split must be 'train' or 'test', got {split!r}")
        try:
            X = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError):
            raise RewindError("features X must be numeric") from None
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim != 2 or len(X) == 0:
            raise RewindError(f"features X must be a non-empty 2-D array (rows = examples), got shape {X.shape}")
        if len(y_raw) != len(X):
            raise RewindError(f"X has {len(X)} rows but y has {len(y_raw)} labels")
        bad = ~np.isfinite(X)
        if bad.any():
            rows, cols = np.nonzero(bad)
            raise RewindError(f"dataset {self.name!r} has {bad.sum()} NaN/inf feature values "
                              f"(first at row {rows[0]}, column {cols[0]}); impute or drop them first")
        if y_raw.dtype.kind == "f" and not np.isfinite(y_raw).all():
            raise RewindError(f"dataset {self.name!r} has NaN labels; drop those rows first")
        self.classes, y_all = np.unique(y_raw, return_inverse=True)
        k = len(self.classes)
        if k < 2:
            raise RewindError(f"dataset {self.name!r} has {k} class; a bandit needs at least 2")
        if n_classes is not None and n_classes != k:
            raise RewindError(f"n_classes={n_classes} (action space) but dataset {self.name!r} "
                              f"has {k} classes: {list(self.classes)[:20]}")
        if cost_matrix is None:
            cost = 1.0 - np.eye(k)
        else:
            cost = np.asarray(cost_matrix, dtype=np.float64)
            if cost.shape != (k, k):
                raise RewindError(f"cost_matrix must be {k}x{k} (true class x chosen class) for "
                                  f"dataset {self.name!r}, got shape {cost.shape}")
            if not np.isfinite(cost).all() or cost.min() < 0 or cost.max() > 1:
                raise RewindError("cost_matrix entries must be in [0, 1] (reward = 1 - cost)")
        self.reward_matrix = (1.0 - cost).astype(np.float32)

        idx = np.arange(len(X))
        if not 0.0 <= test_fraction < 1.0:
            raise RewindError(f"test_fraction must be in [0, 1), got {test_fraction}")
        if test_fraction > 0:
            from sklearn.model_selection import train_test_split
            try:
                tr, te = train_test_split(idx, test_size=test_fraction, stratify=y_all, random_state=split_seed)
            except ValueError as exc:
                raise RewindError(f"cannot split {self.name!r} with test_fraction={test_fraction}: {exc}") from None
            tr, te = np.sort(tr), np.sort(te)
        else:
            tr, te = idx, idx[:0]
            if split == "test":
                raise RewindError("split='test' needs test_fraction > 0")
        if imbalance != 1.0:
            tr = self._longtail(tr, y_all, k, imbalance, longtail_seed)
        self.imbalance = float(imbalance)
        fit = X[tr]
        if scale == "standard":
            mu, sd = fit.mean(0), fit.std(0)
            X = (X - mu) / np.where(sd > 1e-12, sd, 1.0)
        elif scale == "minmax":
            lo, hi = fit.min(0), fit.max(0)
            X = (X - lo) / np.where(hi - lo > 1e-12, hi - lo, 1.0)
        rows = tr if split == "train" else te
        self.X = np.ascontiguousarray(X[rows], dtype=np.float32)
        self.y = y_all[rows].astype(np.int64)
        self.n_classes = k
        self.full_feedback = bool(full_feedback)
        self.order = order
        self.shuffle_seed = shuffle_seed
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(self.X.shape[1],), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(k)
        self.render_mode = render_mode
        self._stream = np.empty(0, dtype=np.int64)
        self._pos = 0
        self._rng = None
        self.current_index: int | None = None   # row of self.X shown now (for checks, not for agents)

    @staticmethod
    def _longtail(tr, y_all, k, imbalance, seed):
        counts_avail = np.bincount(y_all[tr], minlength=k)
        want = np.minimum(longtail_counts(int(counts_avail[0]), k, imbalance), counts_avail)
        rng = np.random.default_rng(seed)
        keep = [rng.permutation(tr[y_all[tr] == c])[: want[c]] for c in range(k)]
        return np.sort(np.concatenate(keep))

    @property
    def class_counts(self) -> np.ndarray:
        return np.bincount(self.y, minlength=self.n_classes)

    def _new_pass(self):
        n = len(self.y)
        if self.order == "shuffle":
            return self._rng.permutation(n)
        if self.order == "sorted":
            return np.argsort(self.y, kind="stable")
        return np.arange(n)

    def stream_indices(self, steps: int, seed: int | None) -> np.ndarray:
        """The rows the env will show in its first `steps` episodes after reset(seed=seed)."""
        saved = (self._rng, self._stream, self._pos)
        self._restart(seed)
        out = np.empty(steps, dtype=np.int64)
        for t in range(steps):
            out[t] = self._next()
        self._rng, self._stream, self._pos = saved
        return out

    def _restart(self, seed):
        s = self.shuffle_seed if self.shuffle_seed is not None else seed
        self._rng = np.random.default_rng(s)
        self._stream = np.empty(0, dtype=np.int64)
        self._pos = 0

    def _next(self) -> int:
        if self._pos >= len(self._stream):
            self._stream = self._new_pass()
            self._pos = 0
        i = int(self._stream[self._pos])
        self._pos += 1
        return i

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        if seed is not None or self._rng is None:
            self._restart(seed if seed is not None else int(self.np_random.integers(2**31)))
        self.current_index = self._next()
        return self.X[self.current_index].copy(), {}

    def step(self, action):
        if self.current_index is None:
            raise RewindError("ClassificationBandit: call reset() before step() (each episode is one step)")
        a = int(action)
        if not 0 <= a < self.n_classes:
            raise RewindError(f"action {action!r} out of range: dataset {self.name!r} has {self.n_classes} classes")
        i = self.current_index
        label = int(self.y[i])
        reward = float(self.reward_matrix[label, a])
        info = {"label": label} if self.full_feedback else {}
        self.current_index = None
        return self.X[i].copy(), reward, True, False, info
