"""The recommender bandit: oracle vs its own sampling, determinism, fresh items, bad input."""

import math

import numpy as np
import pytest

from rewind.envs import make_env
from rewind.envs.recsys import LoggedAction, split_obs
from rewind.errors import RewindError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _env(**kw):
    return make_env("rewind/recsys-v0", {"n_items": 300, "n_users": 50, "publish_steps": 1000, **kw})


@pytest.mark.parametrize("reward", ["watch_time", "click"])
def test_oracle_matches_monte_carlo(reward):
    env = _env(reward=reward, world_seed=3)
    env.reset(seed=0)
    w = env.unwrapped.world
    rng = np.random.default_rng(1)
    for user, t in [(0, 0.0), (7, 400.0), (21, 999.0)]:
        er = w.expected_rewards(user, t)
        for item in (int(np.argmax(er)), 5, w.n_available(t) - 1):
            draws = np.array([w.sample(user, item, t, rng) for _ in range(20_000)], dtype=np.float64)
            r = draws[:, 0] if reward == "click" else draws[:, 1]
            se = r.std() / math.sqrt(len(r)) + 1e-9
            assert abs(r.mean() - er[item]) < 4 * se + 1e-3, (user, item, r.mean(), er[item])


def test_info_carries_oracle_values_and_propensity():
    env = _env(world_seed=0)
    env.reset(seed=0)
    base = env.unwrapped
    er = base.expected_rewards()
    _, r, term, _, info = env.step(LoggedAction(4, 0.25))
    assert term and info["propensity"] == 0.25
    assert info["expected_reward"] == pytest.approx(er[4])
    assert info["best_expected_reward"] == pytest.approx(er.max()) and info["best_action"] == int(np.argmax(er))
    env.reset()
    _, _, _, _, info = env.step(3)
    assert "propensity" not in info        # a plain int action has no known propensity


def test_seeded_runs_are_identical_and_seeds_differ():
    def run(seed):
        env = _env()
        obs, _ = env.reset(seed=seed)
        out = []
        for i in range(200):
            _, r, _, _, info = env.step(i % 150)
            out.append((r, info["user"], info["best_action"]))
            obs, _ = env.reset()
        return out, obs

    a, b, c = run(0), run(0), run(1)
    assert a[0] == b[0] and np.array_equal(a[1], b[1])
    assert a[0] != c[0]


def test_fresh_items_arrive_and_unpublished_items_are_never_clicked():
    env = _env(world_seed=0, initial_items=0.5)
    obs, _ = env.reset(seed=0)
    hist, demo, t, n_avail = split_obs(obs, 10, 300)
    assert n_avail == 150 and t == 0.0 and demo.sum() == 2 and (hist < 150).all()
    _, r, _, _, info = env.step(299)           # the last item is published at t = publish_steps
    assert r == 0.0 and info["expected_reward"] == 0.0
    base = env.unwrapped
    assert base.world.n_available(500) == 225 and base.world.n_available(1000) == 300
    er = base.world.expected_rewards(0, 1000.0)
    assert er[-1] > 0 and base.world.click_prob(0, 1000.0)[-1] > base.world.click_prob(0, 5000.0)[-1]


def test_bad_options_are_one_line_errors():
    with pytest.raises(RewindError, match="did you mean env.n_items"):
        _env(n_itmes=5)
    with pytest.raises(RewindError, match="env.reward must be one of"):
        _env(reward="dwell")
    env = _env()
    env.reset(seed=0)
    with pytest.raises(RewindError, match="out of range"):
        env.step(300)
