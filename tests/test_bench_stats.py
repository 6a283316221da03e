"""Normalisation and aggregates: hand-computed values, rliable's metrics on fixed data, CI coverage."""

from __future__ import annotations

import numpy as np
import pytest

from rewind.bench import stats
from rewind.bench.scores import atari100k_games, atari_game, atari_table, nature49_games, normalize, reference_for
from rewind.errors import RewindError

# fixed data: 3 tasks x 4 runs (rows = runs, as rliable)
FIXED = np.array([[0.0, 1.0, 2.0],
                  [0.5, 1.5, 0.2],
                  [1.0, 0.1, 3.0],
                  [0.2, 0.4, 0.6]])


def as_dict(matrix):
    return {f"t{j}": matrix[:, j] for j in range(matrix.shape[1])}


def test_table_and_human_normalisation_by_hand():
    table = atari_table()
    assert len(table) == 57 and len(atari100k_games()) == 26 and len(nature49_games()) == 49
    assert atari_game("ALE/Pong-v5") == atari_game("pong") == "pong"
    assert atari_game("minatar-breakout") is None and atari_game("CartPole-v1") is None
    # breakout: random 1.7, human 30.5 -> (30.5 - 1.7) / 28.8 = 1 and (16.1 - 1.7) / 28.8 = 0.5
    low, high, kind = reference_for("breakout")
    assert (low, high, kind) == (1.7, 30.5, "human")
    assert normalize([1.7, 16.1, 30.5], low, high) == pytest.approx([0.0, 0.5, 1.0])
    # pong has a negative random score: (0 - (-20.7)) / (14.6 + 20.7) = 20.7 / 35.3
    assert float(normalize(0.0, *reference_for("pong")[:2])) == pytest.approx(20.7 / 35.3)
    # a suite's own entry wins and is marked as a reference, not a human score
    assert reference_for("CartPole-v1", {"CartPole-v1": {"random": 20, "reference": 500}}) == (20.0, 500.0, "reference")
    with pytest.raises(RewindError):
        normalize(1.0, 3.0, 3.0)


def test_aggregates_by_hand():
    d = as_dict(FIXED)
    flat = np.sort(FIXED.ravel())          # 12 scores: trim 3 from each end, mean of the middle 6
    assert stats.iqm(d) == pytest.approx(flat[3:9].mean())
    task_means = FIXED.mean(axis=0)        # [0.425, 0.75, 1.45]
    assert stats.mean(d) == pytest.approx(task_means.mean())
    assert stats.median(d) == pytest.approx(0.75)
    assert stats.optimality_gap(d) == pytest.approx(1 - np.minimum(FIXED, 1).mean())
    # P(X > Y) on one task: X = [1, 2], Y = [1, 0]: pairs (1>1: tie 0.5, 1>0: 1, 2>1: 1, 2>0: 1) -> 3.5 / 4
    assert stats.probability_of_improvement({"a": [1, 2]}, {"a": [1, 0]}) == pytest.approx(0.875)
    # tasks with different run counts are allowed (a failed run leaves a hole)
    ragged = {"a": [0.0, 1.0], "b": [2.0]}
    assert stats.mean(ragged) == pytest.approx((0.5 + 2.0) / 2)


def test_point_estimates_agree_with_rliable():
    metrics = pytest.importorskip("rliable.metrics")
    rng = np.random.default_rng(3)
    x, y = rng.normal(0.6, 0.5, size=(5, 7)), rng.normal(0.4, 0.5, size=(6, 7))
    dx, dy = as_dict(x), as_dict(y)
    assert stats.iqm(dx) == pytest.approx(metrics.aggregate_iqm(x))
    assert stats.median(dx) == pytest.approx(metrics.aggregate_median(x))
    assert stats.mean(dx) == pytest.approx(metrics.aggregate_mean(x))
    assert stats.optimality_gap(dx) == pytest.approx(metrics.aggregate_optimality_gap(x))
    assert stats.probability_of_improvement(dx, dy) == pytest.approx(metrics.probability_of_improvement(x, y))


def test_bootstrap_is_stratified_and_matches_a_direct_loop():
    """The vectorised bootstrap = resampling runs within each task (rliable's StratifiedBootstrap)."""
    d = as_dict(FIXED)
    reps = 4000
    point, lo, hi = stats.aggregate_with_ci(d, reps=reps, seed=1)["Mean"]
    # reference: a plain loop that resamples each task's runs with replacement
    rng = np.random.default_rng(99)
    ref = []
    for _ in range(reps):
        cols = [FIXED[rng.integers(0, 4, 4), j] for j in range(3)]
        ref.append(np.mean([c.mean() for c in cols]))
    ref_lo, ref_hi = np.percentile(ref, [2.5, 97.5])
    assert point == pytest.approx(stats.mean(d))
    assert lo == pytest.approx(ref_lo, abs=0.03) and hi == pytest.approx(ref_hi, abs=0.03)
    # stratified: the bootstrap never moves scores between tasks, so a task whose runs all
    # score the same contributes exactly that value in every replicate
    const = {"a": [5.0, 5.0, 5.0], "b": [1.0, 1.0, 1.0]}
    for metric, (p, l, h) in stats.aggregate_with_ci(const, reps=200).items():
        assert l == pytest.approx(p) and h == pytest.approx(p), metric


def test_ci_coverage_on_a_known_distribution():
    """95% CIs of the mean cover the true mean in about 95% of repeated experiments."""
    rng = np.random.default_rng(0)
    true_means = np.array([0.2, 0.5, 1.0, 1.5])
    hits, trials = 0, 200
    for t in range(trials):
        scores = {f"g{j}": rng.normal(m, 0.3, size=10) for j, m in enumerate(true_means)}
        _, lo, hi = stats.aggregate_with_ci(scores, reps=500, seed=t)["Mean"]
        hits += lo <= true_means.mean() <= hi
    assert 0.88 <= hits / trials <= 0.99


def test_poi_ci_and_performance_profile():
    x = {"a": [1.0, 2.0, 3.0], "b": [0.5, 0.7, 0.9]}
    y = {"a": [0.0, 0.1, 0.2], "b": [0.0, 0.1, 0.2]}
    p, lo, hi = stats.poi_with_ci(x, y, reps=500)
    assert p == 1.0 and lo == 1.0 and hi == 1.0        # every run of x beats every run of y
    p, lo, hi = stats.poi_with_ci(y, x, reps=500)
    assert p == 0.0 and hi == 0.0
    taus = np.array([-1.0, 0.6, 10.0])
    prof, ci = stats.performance_profile(x, taus, reps=200)
    # tau 0.6: task a 3/3 above, task b 2/3 above -> mean 5/6
    assert prof == pytest.approx([1.0, 5 / 6, 0.0])
    assert np.all(ci[0] <= prof + 1e-12) and np.all(ci[1] >= prof - 1e-12)
    matrix = np.array([x["a"], x["b"]]).T
    assert prof == pytest.approx([np.mean(matrix > t) for t in taus])  # rliable's run-score distribution
