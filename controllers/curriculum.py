"""Data curricula: a scheduler = a scoring function + a pacing function; and self-paced learning.

Scores are difficulties: lower is easier. The scheduler sorts examples by score and, at step
t, draws each minibatch uniformly from the easiest ``pacing(t) * N`` examples. The
``order="random"`` control replaces the scores by a random permutation (Wu et al. 2021: always
report it), ``order="anti"`` trains hard-first.
"""

from __future__ import annotations

import numpy as np

from rewind.controllers.pacing import Pacing
from rewind.errors import RewindError

ORDERS = ("easy", "random", "anti")


# ---- scoring functions: difficulty per example, lower = easier -------------------------------

def score_by_difficulty(levels) -> np.ndarray:
    """Given difficulty labels (e.g. 0 = BasicShapes, 1 = GeomShapes) as they are."""
    return np.asarray(levels, dtype=np.float64)


def score_by_margin(X, y, w, bias: float = 0.0) -> np.ndarray:
    """Margin-based easiness (Bengio et al. 2009): a large y * (w'x + bias) is easy; y in {-1, +1}."""
    y = np.asarray(y, dtype=np.float64)
    if not np.all(np.isin(y, (-1.0, 1.0))):
        raise RewindError("score_by_margin needs labels in {-1, +1}")
    return -y * (np.asarray(X, dtype=np.float64) @ np.asarray(w, dtype=np.float64) + bias)


def score_by_noise(X, irrelevant) -> np.ndarray:
    """Noise-based easiness (Bengio et al. 2009): more irrelevant inputs set to 0 is easier.

    `irrelevant` is a boolean mask or index list of the irrelevant input columns; the score is the
    number of those inputs that are non-zero.
    """
    X = np.asarray(X)
    return (X[:, irrelevant] != 0).sum(axis=1).astype(np.float64)


def score_by_loss(losses) -> np.ndarray:
    """Current loss of each example (self-paced learning, or a student's own loss)."""
    return np.asarray(losses, dtype=np.float64)


def score_by_teacher_confidence(probs, y) -> np.ndarray:
    """Transfer teacher (Hacohen & Weinshall 2019): 1 - p_teacher(true class | x)."""
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y)
    if probs.ndim != 2 or len(probs) != len(y):
        raise RewindError("score_by_teacher_confidence needs probs of shape (N, classes) and N labels")
    return 1.0 - probs[np.arange(len(y)), y]


# ---- the scheduler ----------------------------------------------------------------------------

class CurriculumScheduler:
    """Draws minibatch indices from the easiest pacing(t) fraction of the registered examples."""

    def __init__(self, pacing: Pacing, batch_size: int, *, order: str = "easy", seed: int = 0,
                 scores=None):
        if order not in ORDERS:
            raise RewindError(f"curriculum order must be one of {ORDERS}, got {order!r}")
        if batch_size < 1:
            raise RewindError(f"batch_size must be >= 1, got {batch_size}")
        self.pacing, self.batch_size, self.order = pacing, batch_size, order
        self.rng = np.random.default_rng(seed)
        self.ranked: np.ndarray | None = None
        if scores is not None:
            self.register(scores)

    def register(self, scores) -> None:
        """Set the difficulty of every example (index i of the dataset has scores[i])."""
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 1 or len(scores) == 0:
            raise RewindError("register() needs a non-empty 1-d array of example scores")
        if not np.all(np.isfinite(scores)):
            raise RewindError("example scores must be finite numbers")
        if self.order == "random":
            self.ranked = self.rng.permutation(len(scores))
        else:
            # stable sort with random tie-breaking, so equal scores are not in dataset order
            tie = self.rng.permutation(len(scores))
            key = scores[tie] if self.order == "easy" else -scores[tie]
            self.ranked = tie[np.argsort(key, kind="stable")]

    def available(self, step: int) -> np.ndarray:
        """Indices of the examples available at `step`, easiest first."""
        if self.ranked is None:
            raise RewindError("the curriculum has no data yet: call register(scores) first")
        return self.ranked[: int(self.pacing.n_available(step, len(self.ranked)))]

    def sample_batch(self, step: int) -> np.ndarray:
        """batch_size indices drawn uniformly (with replacement) from the available examples."""
        pool = self.available(step)
        return pool[self.rng.integers(0, len(pool), self.batch_size)]

    def sample_batches(self, start: int, n: int) -> np.ndarray:
        """(n, batch_size) indices for steps start .. start+n-1 in one vectorised draw."""
        if self.ranked is None:
            raise RewindError("the curriculum has no data yet: call register(scores) first")
        sizes = self.pacing.n_available(np.arange(start, start + n), len(self.ranked))
        u = self.rng.random((n, self.batch_size))
        return self.ranked[(u * sizes[:, None]).astype(np.int64)]

    def state_dict(self) -> dict:
        return {"ranked": self.ranked, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.ranked = state["ranked"]
        self.rng.bit_generator.state = state["rng"]


class SelfPaced:
    """Self-paced learning (Kumar, Packer, Koller 2010): train on examples with loss < threshold.

    The threshold (1/K in the paper) is multiplied by `growth` (their mu > 1) at every anneal()
    until every example is selected. `start_fraction` instead sets the first threshold to the
    loss quantile that selects that fraction of the data (losses are scale-dependent).
    """

    def __init__(self, threshold: float | None = None, growth: float = 1.3, start_fraction: float = 0.5):
        if growth <= 1.0:
            raise RewindError(f"self-paced growth must be > 1 (the threshold must rise), got {growth}")
        if threshold is not None and threshold <= 0:
            raise RewindError(f"self-paced threshold must be > 0, got {threshold}")
        if not 0.0 < start_fraction <= 1.0:
            raise RewindError(f"self-paced start_fraction must be in (0, 1], got {start_fraction}")
        self.threshold, self.growth, self.start_fraction = threshold, growth, start_fraction
        self.all_selected = False

    def select(self, losses) -> np.ndarray:
        """Boolean mask v_i = [loss_i < threshold] (at least the single easiest example)."""
        losses = np.asarray(losses, dtype=np.float64)
        if losses.ndim != 1 or len(losses) == 0:
            raise RewindError("self-paced select() needs a non-empty 1-d array of losses")
        if self.threshold is None:
            self.threshold = float(np.quantile(losses, self.start_fraction)) + 1e-12
        mask = losses < self.threshold
        if not mask.any():
            mask[np.argmin(losses)] = True
        self.all_selected = bool(mask.all())
        return mask

    def anneal(self) -> float:
        """Raise the threshold (admit harder examples); returns the new threshold."""
        if self.threshold is None:
            raise RewindError("self-paced anneal() before any select(): nothing to anneal yet")
        self.threshold *= self.growth
        return self.threshold
