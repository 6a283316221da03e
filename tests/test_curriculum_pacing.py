"""Pacing functions, the data scheduler and self-paced learning (issue 6)."""

import numpy as np
import pytest

from rewind.controllers.curriculum import (CurriculumScheduler, SelfPaced, score_by_margin, score_by_noise,
                                           score_by_teacher_confidence)
from rewind.controllers.pacing import PACINGS, make_pacing
from rewind.errors import RewindError

T = 1000


@pytest.mark.parametrize("name", [p for p in PACINGS if p not in ("fixed_exp", "varied_exp")])
@pytest.mark.parametrize("a,b", [(0.8, 0.2), (0.3, 0.05), (1.0, 0.5)])
def test_pacing_starts_at_b_reaches_one_by_a_and_never_decreases(name, a, b):
    g = make_pacing(name, T, a=a, b=b)
    t = np.arange(T + 1)
    v = g(t)
    assert g(0) == pytest.approx(b)
    assert np.all(v[t >= int(np.ceil(a * T))] == pytest.approx(1.0))
    assert np.all(np.diff(v) >= -1e-12)
    assert v.min() >= b - 1e-12 and v.max() <= 1.0
    if a < 1.0:  # strictly below 1 somewhere before a*T: the schedule really paces
        assert v[int(a * T) // 2] < 1.0


@pytest.mark.parametrize("name,kw", [("fixed_exp", dict(inc=1.9, step_length=100)),
                                     ("varied_exp", dict(inc=1.9, step_lengths=[50, 100, 150]))])
def test_exponential_pacing_hacohen_weinshall(name, kw):
    g = make_pacing(name, 2000, b=0.04, **kw)
    t = np.arange(2001)
    v = g(t)
    assert g(0) == pytest.approx(0.04)
    full = int(round(g.a * 2000))
    assert v[full] == 1.0 and v[full - 1] < 1.0
    assert np.all(np.diff(v) >= 0)
    if name == "fixed_exp":  # x1.9 every 100 steps
        assert g(100) == pytest.approx(0.04 * 1.9) and g(99) == pytest.approx(0.04)
    else:
        assert g(50) == pytest.approx(0.04 * 1.9) and g(150) == pytest.approx(0.04 * 1.9 ** 2)


@pytest.mark.parametrize("kw", [dict(a=0.0), dict(a=1.5), dict(b=0.0), dict(b=1.2), dict(total_steps=0)])
def test_pacing_rejects_out_of_range_parameters(kw):
    args = dict(total_steps=100, a=0.5, b=0.1) | kw
    with pytest.raises(RewindError):
        make_pacing("linear", args.pop("total_steps"), **args)


def test_pacing_rejects_unknown_name_and_bad_exponential():
    with pytest.raises(RewindError, match="unknown pacing"):
        make_pacing("cubic", 100)
    with pytest.raises(RewindError, match="inc"):
        make_pacing("fixed_exp", 100, b=0.1, inc=1.0)
    with pytest.raises(RewindError, match="total_steps"):
        make_pacing("fixed_exp", 100, b=0.04, step_length=100)  # needs 600 steps


def test_scheduler_draws_only_from_the_easiest_fraction():
    scores = np.random.default_rng(0).permutation(1000).astype(float)  # score = difficulty rank
    sched = CurriculumScheduler(make_pacing("linear", 100, a=0.5, b=0.1), 64, scores=scores, seed=1)
    early = np.concatenate([sched.sample_batch(0) for _ in range(50)])
    assert scores[early].max() < 100                       # only the 10% easiest
    assert len(np.unique(early)) > 90                       # and all of them, uniformly
    late = sched.sample_batches(50, 50)
    assert late.shape == (50, 64) and scores[late].max() > 900
    anti = CurriculumScheduler(make_pacing("linear", 100, a=0.5, b=0.1), 64, scores=scores, order="anti")
    assert scores[anti.sample_batch(0)].min() >= 900


def test_random_order_control_ignores_scores():
    scores = np.arange(1000.0)
    sched = CurriculumScheduler(make_pacing("step", 100, a=0.5, b=0.1), 256, scores=scores, order="random")
    picked = sched.sample_batch(0)
    assert len(np.unique(sched.available(0))) == 100
    assert scores[picked].max() > 500                       # hard examples are in the first pool too


def test_scheduler_without_data_and_bad_scores_fail_clearly():
    sched = CurriculumScheduler(make_pacing("linear", 10), 4)
    with pytest.raises(RewindError, match="register"):
        sched.sample_batch(0)
    with pytest.raises(RewindError):
        sched.register([])
    with pytest.raises(RewindError):
        CurriculumScheduler(make_pacing("linear", 10), 4, order="hardest")


def test_scoring_functions():
    X = np.array([[2.0, 0.0], [0.1, 0.0], [-1.0, 0.0]])
    y = np.array([1, 1, 1])
    margin = score_by_margin(X, y, np.array([1.0, 0.0]))
    assert list(np.argsort(margin)) == [0, 1, 2]            # large margin = easy
    Xn = np.array([[1, 0, 0, 0], [1, 3, 0, 2], [1, 0, 5, 0]])
    assert list(score_by_noise(Xn, [1, 2, 3])) == [0, 2, 1]
    conf = score_by_teacher_confidence(np.array([[0.9, 0.1], [0.4, 0.6]]), np.array([0, 0]))
    assert conf == pytest.approx([0.1, 0.6])
    with pytest.raises(RewindError):
        score_by_margin(X, np.array([0, 1, 1]), np.ones(2))


def test_self_paced_selects_low_loss_and_anneals_to_everything():
    losses = np.linspace(0.01, 2.0, 200)
    spl = SelfPaced(threshold=0.1, growth=2.0)
    first = spl.select(losses)
    assert first.sum() == (losses < 0.1).sum() and first[:5].all() and not first[-1]
    sizes = [first.sum()]
    while not spl.all_selected:
        spl.anneal()
        sizes.append(spl.select(losses).sum())
    assert sizes == sorted(sizes) and sizes[-1] == 200 and len(sizes) <= 6
    with pytest.raises(RewindError):
        SelfPaced(growth=1.0)
    with pytest.raises(RewindError):
        SelfPaced().anneal()
