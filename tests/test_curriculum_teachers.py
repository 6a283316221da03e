"""TSCL teachers and Prioritized Level Replay on synthetic tasks with known learning curves (issue 6)."""

import gymnasium as gym
import numpy as np
import pytest

from rewind.controllers.plr import PLRConfig, PLRTeacher, gae
from rewind.controllers.teachers import TEACHERS, FixedTeacher, TSCLConfig, UniformTeacher
from rewind.errors import RewindError


def run_student(teacher, rates, steps, seed, forget=0.0, start=None):
    """Task i's score rises by rates[i] each time it is trained (capped at 1) and, with `forget`,
    falls by that much each step it is not. Returns the choices and the score history."""
    rng = np.random.default_rng(seed)
    score = np.zeros(len(rates)) if start is None else np.array(start, float)
    picks, hist = [], []
    for _ in range(steps):
        a = teacher.act()
        score[a] = min(1.0, score[a] + rates[a])
        others = np.arange(len(rates)) != a
        score[others] = np.maximum(0.0, score[others] - forget)
        teacher.observe(None, a, score[a] + rng.normal(0, 0.002))
        teacher.update()
        picks.append(a)
        hist.append(score.copy())
    return np.array(picks), np.array(hist)


CASES = [("tscl-online", "eps_greedy"), ("tscl-online", "boltzmann"), ("tscl-online", "thompson"),
         ("tscl-naive", "eps_greedy"), ("tscl-window", "eps_greedy"), ("tscl-window", "boltzmann"),
         ("tscl-window", "thompson"), ("tscl-sampling", "eps_greedy"), ("tscl-sampling", "thompson")]


@pytest.mark.parametrize("name,policy", CASES)
def test_teacher_picks_the_steepest_task_most(name, policy):
    for seed in range(3):
        teacher = TEACHERS[name](None, None, TSCLConfig(policy=policy, temperature=0.002), seed=seed, tasks=[0, 1, 2])
        picks, _ = run_student(teacher, [0.001, 0.01, 0.003], 90, seed)
        counts = np.bincount(picks, minlength=3)
        assert counts[1] >= 0.6 * len(picks), (seed, counts)


@pytest.mark.parametrize("name,policy", [("tscl-online", "eps_greedy"), ("tscl-window", "eps_greedy"),
                                         ("tscl-window", "boltzmann"), ("tscl-sampling", "thompson")])
def test_absolute_slope_teacher_comes_back_to_a_forgotten_task(name, policy):
    # task 0 is mastered at the start and forgotten while task 1 is trained
    lowest = []
    for seed in range(3):
        teacher = TEACHERS[name](None, None, TSCLConfig(policy=policy, temperature=0.002), seed=seed, tasks=[0, 1])
        picks, hist = run_student(teacher, [0.05, 0.002], 400, seed, forget=0.004, start=[1.0, 0.0])
        assert (picks[200:] == 0).mean() > 0.1            # it keeps going back
        lowest.append(hist[200:, 0].min())
    assert min(lowest) > 0.55, lowest                      # never left to decay (alone: down to 0.2)


def test_signed_slope_lets_the_task_decay():
    """The control that shows the test above can fail: without |slope| the window teacher forgets."""
    lowest = []
    for seed in range(3):
        teacher = TEACHERS["tscl-window"](None, None, TSCLConfig(absolute=False), seed=seed, tasks=[0, 1])
        _, hist = run_student(teacher, [0.05, 0.002], 400, seed, forget=0.004, start=[1.0, 0.0])
        lowest.append(hist[200:, 0].min())
    assert np.mean(lowest) < 0.55


def test_teacher_agent_and_syllabus_surfaces_and_state():
    teacher = TEACHERS["tscl-window"](None, None, seed=0, tasks=[[4, 0.1], [6, 0.2], [10, 0.5]])
    assert isinstance(teacher.task_space, gym.spaces.Discrete) and teacher.task_space.n == 3
    task = teacher.sample()[0]
    teacher.update_on_episode(3.0, length=10, task=task)
    assert teacher.counts.sum() == 1 and teacher.counts[teacher.task_index(task)] == 1
    state = teacher.state_dict()
    clone = TEACHERS["tscl-window"](None, None, seed=5, tasks=teacher.tasks)
    clone.load_state_dict(state)
    assert [clone.act() for _ in range(20)] == [teacher.act() for _ in range(20)]
    with pytest.raises(RewindError, match="not one of"):
        teacher.update_on_episode(1.0, task=[7, 0.3])


def test_teacher_bad_input():
    with pytest.raises(RewindError, match="empty"):
        TEACHERS["tscl-online"](None, None, tasks=[])
    with pytest.raises(RewindError, match="policy"):
        TEACHERS["tscl-online"](None, None, TSCLConfig(policy="ucb"), tasks=[0, 1])
    with pytest.raises(RewindError, match="outside"):
        TEACHERS["tscl-online"](None, None, tasks=[0, 1]).observe(None, 5, 1.0)
    with pytest.raises(RewindError, match="outside the task space"):
        UniformTeacher(None, None, tasks=[3], task_space=gym.spaces.Discrete(2))


def test_baselines():
    uni = UniformTeacher(None, gym.spaces.Discrete(4), seed=0)
    assert set(uni.act() for _ in range(200)) == {0, 1, 2, 3}
    fixed = FixedTeacher(None, gym.spaces.Discrete(4))
    assert {fixed.act() for _ in range(20)} == {3}


def test_plr_rank_transform_temperature_and_staleness():
    plr = PLRTeacher(None, gym.spaces.Discrete(4), PLRConfig(temperature=0.5, staleness_coef=0.0), seed=0)
    for task, score in enumerate([0.1, 0.4, 0.2, 0.8]):
        plr.observe(None, task, score)
    plr.update()
    p = plr.replay_distribution()
    # ranks 4, 2, 3, 1 -> h = 1/rank, P ∝ h ** (1 / 0.5)
    h = np.array([1 / 4, 1 / 2, 1 / 3, 1.0]) ** 2
    assert p == pytest.approx(h / h.sum())
    cold = PLRTeacher(None, gym.spaces.Discrete(4), PLRConfig(temperature=5.0, staleness_coef=0.0))
    cold.load_state_dict(plr.state_dict())
    assert cold.replay_distribution().max() < p.max()     # higher temperature = flatter
    # staleness only: the level not played for longest is the likeliest
    stale = PLRTeacher(None, gym.spaces.Discrete(3), PLRConfig(staleness_coef=1.0, replay_prob=1.0), seed=0)
    for task in range(3):
        stale.observe(None, task, 1.0)
    stale.update()
    stale.last_played[:] = [5, 1, 3]
    stale.episodes = 6
    assert stale.replay_distribution() == pytest.approx(np.array([1, 5, 3]) / 9)


def test_plr_visits_unseen_levels_then_replays_high_scores():
    plr = PLRTeacher(None, gym.spaces.Discrete(5), PLRConfig(replay_prob=0.5), seed=1)
    first = []
    while not plr.seen.all():
        t = plr.act()
        first.append(t)
        plr.observe(None, t, [0.0, 0.0, 5.0, 0.0, 0.0][t])
        plr.update()
    assert len(set(first)) == 5
    picks = np.bincount([plr.act() for _ in range(500)], minlength=5)
    assert picks[2] > 0.7 * 500


def test_gae_matches_the_backward_recursion():
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=30), rng.normal(size=30)
    adv, last = np.zeros(30), 0.0
    for k in reversed(range(30)):
        nxt = v[k + 1] if k + 1 < 30 else 0.0
        last = r[k] + 0.99 * nxt - v[k] + 0.99 * 0.95 * last
        adv[k] = last
    assert gae(r, v) == pytest.approx(adv)
