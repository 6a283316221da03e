"""Slates on the recommender env: the choice-model oracle, exact best slate, k = 1, bad slates, agents."""

import itertools
import math

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rewind.agents import make_agent
from rewind.agents.recsys import explore_slate
from rewind.envs import make_env
from rewind.envs.recsys import LoggedSlate, SlateSpace
from rewind.errors import RewindError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = {"n_items": 300, "n_users": 50, "publish_steps": 1000}


def _env(**kw):
    return make_env("rewind/recsys-v0", {**SMALL, **kw})


@pytest.mark.parametrize("decay,reward,user,t", [(1.0, "watch_time", 0, 0.0), (0.6, "watch_time", 7, 400.0),
                                                 (0.6, "click", 21, 999.0)])
def test_slate_oracle_matches_monte_carlo_of_the_choice_model(decay, reward, user, t):
    env = _env(slate_size=4, slate_position_decay=decay, reward=reward, world_seed=3)
    env.reset(seed=0)
    w = env.unwrapped.world
    rng = np.random.default_rng(1)
    n = 6_000
    best, _ = w.best_slate(user, t, 4, decay)
    for slate in (best, np.array([5, 3, 149, w.n_available(t) - 1])):
        probs = w.slate_choice(user, t, slate, decay)
        draws = [w.sample_slate(user, slate, t, rng, decay) for _ in range(n)]
        pos = np.array([d[0] for d in draws])
        for p in range(4):   # share of clicks on each position
            se = math.sqrt(probs[p] * (1 - probs[p]) / n) + 1e-9
            assert abs(np.mean(pos == p) - probs[p]) < 4 * se + 1e-3, (user, p)
        r = np.array([d[1] for d in draws]) if reward == "watch_time" else (pos >= 0).astype(float)
        se = r.std() / math.sqrt(n) + 1e-9
        assert abs(r.mean() - w.slate_expected_reward(user, t, slate, decay)) < 4 * se + 1e-3


@pytest.mark.parametrize("decay", [1.0, 0.7])
def test_best_slate_is_the_brute_force_optimum(decay):
    env = _env(n_items=9, initial_items=1.0, slate_size=3, slate_position_decay=decay, world_seed=1)
    env.reset(seed=0)
    w = env.unwrapped.world
    for user in range(8):
        best, value = w.best_slate(user, 0.0, 3, decay)
        brute = max(w.slate_expected_reward(user, 0.0, s, decay) for s in itertools.permutations(range(9), 3))
        assert value == pytest.approx(brute, rel=1e-12)
        assert w.slate_expected_reward(user, 0.0, best, decay) == pytest.approx(brute, rel=1e-12)


def test_info_carries_the_slate_oracle_and_propensities():
    env = _env(slate_size=3, world_seed=0)
    env.reset(seed=0)
    base = env.unwrapped
    user, t = base.user, base.t
    slate = LoggedSlate([4, 9, 2], 0.125, [0.5, 0.25, 1.0])
    _, r, term, _, info = env.step(slate)
    assert term and info["propensity"] == 0.125 and list(info["position_propensities"]) == [0.5, 0.25, 1.0]
    assert info["expected_reward"] == pytest.approx(base.world.slate_expected_reward(user, t, [4, 9, 2]))
    best, value = base.world.best_slate(user, t, 3)
    assert list(info["best_action"]) == list(best) and info["best_expected_reward"] == pytest.approx(value)
    assert info["chosen_item"] == (-1 if info["chosen"] < 0 else [4, 9, 2][info["chosen"]])
    assert (r > 0) == info["click"] == (info["chosen"] >= 0)
    env.reset()
    _, _, _, _, info = env.step(np.array([1, 2, 3]))
    assert "propensity" not in info        # a plain array has no known propensity


def test_slate_of_one_is_the_single_item_env_for_the_same_seed():
    single, slate = _env(), _env(slate_size=1)
    o1, _ = single.reset(seed=5)
    o2, _ = slate.reset(seed=5)
    rng = np.random.default_rng(0)
    clicks = 0
    for _ in range(1500):
        assert np.array_equal(o1, o2)
        item = int(rng.integers(150))
        _, r1, _, _, i1 = single.step(item)
        _, r2, _, _, i2 = slate.step([item])
        assert (r1, i1["click"], i1["watch_time"]) == (r2, i2["click"], i2["watch_time"])
        assert i2["expected_reward"] == pytest.approx(i1["expected_reward"], rel=1e-12, abs=1e-15)
        assert i2["best_expected_reward"] == pytest.approx(i1["best_expected_reward"], rel=1e-12)
        assert list(i2["best_action"]) == [i1["best_action"]]
        clicks += i1["click"]
        o1, _ = single.reset()
        o2, _ = slate.reset()
    assert clicks > 50     # the streams had clicks (and so history updates) to agree on


def test_bad_slates_are_one_line_errors():
    env = _env(slate_size=3)
    env.reset(seed=0)
    with pytest.raises(RewindError, match="repeats an item"):
        env.step([4, 7, 4])
    with pytest.raises(RewindError, match="out of range"):
        env.step([4, 7, 300])
    with pytest.raises(RewindError, match="a slate is 3 item ids"):
        env.step([4, 7])
    with pytest.raises(RewindError, match="integer item ids"):
        env.step([4.5, 7, 1])
    space = env.action_space
    assert isinstance(space, SlateSpace) and space.contains(np.array([4, 7, 5]))
    assert not space.contains(np.array([4, 7, 4]))
    with pytest.raises(RewindError, match="env.slate_size=200 is more than the 150 items"):
        _env(slate_size=200)
    with pytest.raises(RewindError, match="slate_position_decay"):
        _env(slate_size=2, slate_position_decay=0.0)


@pytest.mark.parametrize("decay", [1.0, 0.8])
def test_gymnasium_check_env_passes(decay):
    env = make_env("rewind/recsys-slate5-v0", {**SMALL, "slate_position_decay": decay})
    check_env(env.unwrapped, skip_render_check=True)
    assert env.action_space.sample().shape == (5,)


def test_explore_slate_propensities_are_the_empirical_frequencies():
    rng = np.random.default_rng(0)
    pool, greedy, eps, n = np.arange(10, 16), np.array([13, 11]), 0.3, 40_000
    seen, props, pos_hits = {}, {}, np.zeros(2)
    for _ in range(n):
        s = explore_slate(rng, pool, greedy, eps)
        key = tuple(s.tolist())
        seen[key] = seen.get(key, 0) + 1
        props[key] = s.propensity
        pos_hits += s == greedy
    assert len(seen) == 30 and sum(props[k] for k in seen) == pytest.approx(1.0)
    for key in (tuple(greedy), (10, 12), (11, 13)):
        p = props[key]
        assert abs(seen[key] / n - p) < 4 * math.sqrt(p * (1 - p) / n), key
    s = explore_slate(rng, pool, greedy, eps)
    assert np.allclose(pos_hits / n, eps / 6 + (1 - eps), atol=0.01) and len(s.position_propensities) == 2


@pytest.mark.parametrize("agent,cfg", [("youtube-dnn", {"learning_starts": 60, "train_every": 5}),
                                       ("youtube-dnn", {"learning_starts": 60, "ranking_head": "mmoe"}),
                                       ("cg-eps-greedy-linear", {}), ("cg-linucb", {}),
                                       ("cg-bootstrap-ts", {"hidden": [8]}), ("recsys-random", {})])
def test_learners_send_valid_logged_slates(agent, cfg):
    env = _env(slate_size=4, n_items=200, publish_steps=400)
    ag = make_agent(agent, env, cfg, seed=1)
    obs, _ = env.reset(seed=0)
    for _ in range(50):
        a = ag.act(obs)
        n_avail = env.unwrapped.world.n_available(env.unwrapped.t)
        assert isinstance(a, LoggedSlate) and env.action_space.contains(a) and a.max() < n_avail
        assert 0 < a.propensity <= 1 and np.all((a.position_propensities > 0) & (a.position_propensities <= 1))
        assert np.all(a.position_propensities >= a.propensity - 1e-12)   # a position is shown at least as often
        nxt, r, term, trunc, info = env.step(a)
        ag.observe(obs, a, r, nxt, term, trunc, info)
        ag.update()
        obs, _ = env.reset()


def test_youtube_dnn_recommends_its_ranker_top_k_and_logs_one_impression_per_item():
    env = _env(slate_size=3, n_items=200, publish_steps=400)
    ag = make_agent("youtube-dnn", env, {"learning_starts": 20, "train_every": 2}, seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(40):
        a = ag.act(obs)
        nxt, r, term, trunc, info = env.step(a)
        ag.observe(obs, a, r, nxt, term, trunc, info)
        ag.update()
        obs, _ = env.reset()
    assert ag.log.size == 120 and ag.train_steps > 0
    clicks = ag.log.click[:120].reshape(40, 3).sum(1)
    assert clicks.max() <= 1                     # at most one click per slate
    hist, demo, t, _ = ag._context(obs)
    items = ag.candidates(obs)
    scores = ag._rank_scores(hist, demo, t, items)
    slate = ag.act(obs, explore=False)
    assert list(slate) == list(items[np.argsort(-scores)[:3]]) and slate.propensity == 1.0
    with pytest.raises(RewindError, match="fewer than the env's slate"):
        make_agent("youtube-dnn", env, {"n_candidates": 2})
