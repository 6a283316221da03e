"""Deep InfoMax bounds (agents/infomax.py) and the neural bandit learners' aux_loss=dim."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rewind.agents import make_agent
from rewind.agents.infomax import dim_bound, dim_scores, infonce_bound, jsd_bound
from rewind.envs import make_env
from rewind.errors import RewindError

torch.set_num_threads(1)


def _features(seed=0, b=8, n=4, d=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g)
    local = x.unsqueeze(1) + 0.3 * torch.randn(b, n, d, generator=g)   # local features of the same inputs
    return x, local


@pytest.mark.parametrize("estimator", ["jsd", "infonce"])
def test_bound_is_higher_for_matched_than_for_shuffled_pairs(estimator):
    g, local = _features()
    matched = dim_bound(dim_scores(g, local), estimator).item()
    shuffled = dim_bound(dim_scores(g, local[torch.tensor([3, 5, 0, 7, 1, 2, 6, 4])]), estimator).item()
    assert matched > shuffled + 0.5


def test_infonce_matches_its_formula_and_is_at_most_log_b():
    s = torch.tensor([[[2.0], [0.0], [1.0]], [[0.5], [1.0], [-1.0]], [[0.0], [0.0], [3.0]]])   # (3, 3, 1)
    manual = np.mean([s[i, i, 0].item() - math.log(sum(math.exp(s[i, j, 0].item()) for j in range(3)))
                      for i in range(3)]) + math.log(3)
    assert infonce_bound(s).item() == pytest.approx(manual, rel=1e-6)
    assert infonce_bound(100 * torch.eye(3).unsqueeze(2)).item() == pytest.approx(math.log(3), abs=1e-4)


def test_jsd_matches_its_formula():
    s = torch.tensor([[[1.0]], [[-2.0]]]).expand(2, 2, 1).clone()   # s[i, j] = row value
    s[0, 1, 0], s[1, 0, 0] = 0.5, -0.5
    sp = lambda v: math.log1p(math.exp(v))
    manual = np.mean([-sp(-1.0), -sp(2.0)]) - np.mean([sp(0.5), sp(-0.5)])
    assert jsd_bound(s).item() == pytest.approx(manual, rel=1e-6)


@pytest.mark.parametrize("name", ["eps-greedy-neural", "bootstrap-ts", "supervised"])
def test_neural_learners_raise_the_dim_bound(name):
    env = make_env("rewind/bandit-iris-v0", {"full_feedback": name == "supervised"}, seed=0)
    agent = make_agent(name, env, {"batch_size": 16, "hidden": [16, 16], "aux_loss": "dim", "aux_weight": 1.0,
                                   "dim_estimator": "infonce", "lr": 3e-3}, seed=0)
    obs, _ = env.reset(seed=0)
    bounds = []
    for _ in range(200):
        a = agent.act(obs)
        nxt, r, term, trunc, info = env.step(a)
        agent.observe(obs, a, r, nxt, term, trunc, info)
        agent.update()
        bounds.append(agent.last_bound)
        obs, _ = env.reset()
    assert np.mean(bounds[-30:]) > np.mean(bounds[5:35]) + 0.1
    agent.load_state_dict(agent.state_dict())


def test_dim_refusals():
    from rewind.agents.bandit_neural import EpsGreedyNeuralAgent
    with pytest.raises(RewindError, match="2 hidden"):
        EpsGreedyNeuralAgent.Config(aux_loss="dim").validate()
    with pytest.raises(RewindError, match="aux_weight"):
        EpsGreedyNeuralAgent.Config(aux_weight=0.5).validate()


@pytest.mark.parametrize("name", ["dqn", "ebu", "ebu-adaptive"])
def test_q_learners_train_with_stdim(name):
    env = make_env("CartPole-v1", seed=0)
    agent = make_agent(name, env, {"learning_starts": 40, "batch_size": 8, "update_every": 1, "hidden": [16, 16],
                                   "aux_loss": "dim", "aux_weight": 1.0}, seed=0)
    obs, _ = env.reset(seed=0)
    bounds = []
    for _ in range(300):
        a = agent.act(obs)
        nxt, r, term, trunc, info = env.step(a)
        agent.observe(obs, a, r, nxt, term, trunc, info)
        if agent.update():
            bounds.append(agent.stdim.last_bound)
        obs = env.reset()[0] if term or trunc else nxt
    assert len(agent.stdim.critics) == len(agent.learners_and_optimizers())
    assert np.all(np.isfinite(bounds)) and np.mean(bounds[-40:]) > np.mean(bounds[:40])
    state = agent.state_dict()
    fresh = make_agent(name, env, {"learning_starts": 40, "batch_size": 8, "hidden": [16, 16], "aux_loss": "dim",
                                   "aux_weight": 1.0}, seed=1)
    fresh.load_state_dict(state)
    assert fresh.stdim._saved["critics"][0]["w_gl.weight"].equal(agent.stdim.critics[0].w_gl.weight)


def test_stdim_encoder_split_of_the_minatar_net():
    from rewind.agents.networks import MinAtarCNN
    from rewind.agents.stdim import encoder_features
    net = MinAtarCNN(4, 3)
    obs = torch.rand(2, 4, 10, 10)
    local, glob = encoder_features(net, obs)
    assert local.shape == (2, 64, 16) and glob.shape == (2, 128)
    assert torch.allclose(net.net[-1](glob), net(obs))   # the global vector is what the Q head reads
