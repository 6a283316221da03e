"""Bandit agents: regret of LinUCB, the supervised upper bound, class-balanced weights, honesty."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rewind.agents import make_agent
from rewind.agents.bandit_linear import LinUCBAgent
from rewind.agents.bandit_neural import SupervisedAgent
from rewind.agents.class_balanced import class_balanced_loss, effective_number_weights
from rewind.envs import make_env
from rewind.envs.bandit import ClassificationBandit, progressive_validation
from rewind.errors import RewindError

torch.set_num_threads(1)
BANDIT_AGENTS = ("eps-greedy-linear", "linucb", "regcb", "eps-greedy-neural", "bootstrap-ts", "softmax-pg")


def run(agent, env, steps, seed=0):
    """The run loop's call order (act, observe, update) on one-step episodes; returns rewards."""
    rewards = np.empty(steps)
    obs, _ = env.reset(seed=seed)
    for t in range(steps):
        a = agent.act(obs)
        nxt, r, term, trunc, info = env.step(a)
        agent.observe(obs, a, r, nxt, term, trunc, info)
        agent.update()
        rewards[t] = r
        obs, _ = env.reset()
    return rewards


def _cumulative_regret(policy, T=4000, d=8, K=8, noise=0.5, seed=0):
    """Linear rewards E[r | x, a] = theta_a . x with Gaussian noise; returns cumulative regret."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(K, d))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    X = (rng.normal(size=(T, d)) / np.sqrt(d)).astype(np.float32)
    regret = np.empty(T)
    for t in range(T):
        mu = theta @ X[t]
        a = policy(X[t], mu, rng)
        regret[t] = mu.max() - mu[a]
    return np.cumsum(regret)


def _loglog_slope(cum, T):
    t = np.unique(np.geomspace(T // 10, T, 20).astype(int))
    return np.polyfit(np.log(t), np.log(cum[t - 1]), 1)[0]


def test_linucb_regret_grows_sublinearly():
    T, d, K = 4000, 8, 8
    agent = LinUCBAgent(gym.spaces.Box(-np.inf, np.inf, (d,), np.float32), gym.spaces.Discrete(K), seed=0)

    def linucb(x, mu, rng):
        a = agent.act(x)
        agent.observe(x, a, mu[a] + 0.5 * rng.normal(), x, True, False, {})
        agent.update()
        return a

    cum = _cumulative_regret(linucb, T, d, K)
    uniform = _cumulative_regret(lambda x, mu, rng: int(rng.integers(K)), T, d, K)
    assert _loglog_slope(uniform, T) > 0.95          # the slope fit sees linear regret as linear
    assert _loglog_slope(cum, T) < 0.6               # LinUCB: ~sqrt(T) up to logs
    assert cum[-1] < 0.25 * uniform[-1]


def test_supervised_learner_matches_an_offline_mlp_on_digits():
    from sklearn.neural_network import MLPClassifier

    train = ClassificationBandit("digits", full_feedback=True, test_fraction=0.3, split_seed=0)
    test = ClassificationBandit("digits", test_fraction=0.3, split_seed=0, split="test")
    agent = SupervisedAgent(train.observation_space, train.action_space, seed=0)
    run(agent, train, 2 * len(train.y))
    online = np.mean([agent.act(x, explore=False) == y for x, y in zip(test.X, test.y)])
    offline = MLPClassifier((64,), max_iter=400, random_state=0).fit(train.X, train.y).score(test.X, test.y)
    assert offline > 0.95
    assert online >= offline - 0.02


@pytest.mark.parametrize("beta", [0.9, 0.99, 0.999, 0.9999])
def test_class_balanced_weights_match_the_effective_number_formula(beta):
    counts = [5000, 2000, 500, 50, 5, 1]
    effective = [(1 - beta ** n) / (1 - beta) for n in counts]
    raw = [1 / e for e in effective]
    expected = [w * len(counts) / sum(raw) for w in raw]
    np.testing.assert_allclose(effective_number_weights(counts, beta), expected, rtol=1e-12)


def test_class_balanced_limits_and_losses():
    counts = np.array([100, 10, 1])
    np.testing.assert_allclose(effective_number_weights(counts, 0.0), 1.0)           # plain loss
    inv = (1 / counts) / (1 / counts).sum() * 3
    np.testing.assert_allclose(effective_number_weights(counts, 1 - 1e-9), inv, rtol=1e-4)   # beta -> 1
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(16, 3, generator=g), torch.randint(0, 3, (16,), generator=g)
    w = torch.tensor(effective_number_weights(counts, 0.99), dtype=torch.float32)
    manual = (F.cross_entropy(logits, labels, reduction="none") * w[labels]).mean()
    torch.testing.assert_close(class_balanced_loss(logits, labels, w, "softmax"), manual)
    torch.testing.assert_close(class_balanced_loss(logits, labels, w, "focal", gamma=0.0),
                               class_balanced_loss(logits, labels, w, "sigmoid"))
    assert class_balanced_loss(logits, labels, w, "focal", gamma=2.0) < class_balanced_loss(logits, labels, w, "sigmoid")
    with pytest.raises(RewindError, match="beta must be in"):
        effective_number_weights(counts, 1.0)


@pytest.mark.parametrize("name", BANDIT_AGENTS)
def test_bandit_agents_learn_and_never_read_the_label(name):
    """Each bandit learner beats chance by far on breast_cancer, and its choices are the same
    whether or not the env also puts the true label in info (so it cannot be peeking)."""
    plain = make_env("rewind/bandit-breast-cancer-v0")
    full = make_env("rewind/bandit-breast-cancer-v0", {"full_feedback": True})
    r_plain = run(make_agent(name, plain, seed=1), plain, 300, seed=1)
    r_full = run(make_agent(name, full, seed=1), full, 300, seed=1)
    np.testing.assert_array_equal(r_plain, r_full)
    assert progressive_validation(r_plain) < 0.2      # chance is about 0.5


def test_state_dict_round_trip_reproduces_choices():
    env = make_env("rewind/bandit-wine-v0")
    for name in ("regcb", "bootstrap-ts", "softmax-pg"):
        a = make_agent(name, env, seed=3)
        run(a, env, 60, seed=3)
        b = make_agent(name, env, seed=99)
        b.load_state_dict(a.state_dict())
        if getattr(a, "replay", None) is not None:
            b.replay.load_state_dict(a.replay.state_dict())
        X = env.unwrapped.X[:40]
        assert [a.act(x) for x in X] == [b.act(x) for x in X]   # exploring choices too: RNG restored
        np.testing.assert_array_equal(run(a, env, 30, seed=5), run(b, env, 30, seed=5))


def test_bad_agent_input_is_one_clear_error():
    env = make_env("rewind/bandit-wine-v0")
    sup = make_agent("supervised", env)
    obs, _ = env.reset(seed=0)
    a = sup.act(obs)
    nxt, r, term, trunc, info = env.step(a)
    with pytest.raises(RewindError, match="full_feedback=true"):
        sup.observe(obs, a, r, nxt, term, trunc, info)
    with pytest.raises(RewindError, match="Discrete action space"):
        LinUCBAgent(env.observation_space, gym.spaces.Box(0, 1, (2,)))
    with pytest.raises(RewindError, match="flat Box observation"):
        LinUCBAgent(gym.spaces.Box(0, 1, (2, 2)), env.action_space)
    with pytest.raises(RewindError, match="cb_loss must be one of sigmoid, focal"):
        make_agent("eps-greedy-neural", env, {"cb_loss": "softmax"})
    with pytest.raises(RewindError, match="cb_beta must be in"):
        make_agent("supervised", env, {"cb_beta": 1.0})
    with pytest.raises(RewindError, match="built for 13 features"):
        make_agent("linucb", env).act(np.zeros(5))
