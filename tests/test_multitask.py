"""Shared-bottom / OMoE / MMoE heads and the MMoE paper's synthetic tasks."""

import numpy as np
import pytest
import torch

from rewind.agents.multitask import HEADS, make_head, param_count, task_mse, train_regression
from rewind.envs.mmoe_synthetic import synthetic_dataset, synthetic_tasks

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_synthetic_tasks_have_the_asked_cosine_and_falling_label_correlation():
    corr = []
    for rho in (1.0, 0.5, 0.0):
        t = synthetic_tasks(rho, seed=0)
        w1, w2 = t.w
        assert abs(np.dot(w1, w2) / np.linalg.norm(w1) / np.linalg.norm(w2) - rho) < 1e-9
        _, y = synthetic_dataset(t, 5000, seed=1)
        corr.append(np.corrcoef(y.T)[0, 1])
    assert corr[0] > 0.95 and corr[0] > corr[1] > corr[2] - 0.05 and abs(corr[2]) < 0.1


def test_heads_have_equal_parameter_counts_and_per_task_gates():
    heads = {k: make_head(k, 100) for k in HEADS}
    counts = {k: param_count(h) for k, h in heads.items()}
    assert abs(counts["shared-bottom"] - counts["mmoe"]) / counts["mmoe"] < 0.01
    assert abs(counts["omoe"] - counts["mmoe"]) / counts["mmoe"] < 0.06    # MMoE's extra gate
    x = torch.randn(16, 100)
    g_m, g_o = heads["mmoe"].gate_weights(x), heads["omoe"].gate_weights(x)
    assert len(heads["mmoe"].gates) == 2 and len(heads["omoe"].gates) == 1
    assert g_m.shape == (2, 16, 8) and not torch.allclose(g_m[0], g_m[1])
    assert torch.allclose(g_o[0], g_o[1])
    assert torch.allclose(g_m.sum(-1), torch.ones(2, 16))


def test_mmoe_at_rho_one_is_no_worse_than_shared_bottom():
    torch.manual_seed(0)
    tasks = synthetic_tasks(1.0, seed=0)
    x, y = synthetic_dataset(tasks, 6000, seed=1)
    xt, yt = synthetic_dataset(tasks, 2000, seed=2)
    loss = {}
    for kind in ("shared-bottom", "mmoe"):
        torch.manual_seed(0)
        head = train_regression(make_head(kind, 100), x, y, steps=1500, lr=3e-3, seed=0)
        loss[kind] = sum(task_mse(head, xt, yt))
    base = float(np.var(yt, axis=0).sum())
    assert loss["mmoe"] < 0.5 * base                     # it learned something
    assert loss["mmoe"] <= 1.1 * loss["shared-bottom"], loss


def test_mtl_bandit_learns_on_the_synthetic_bandit_and_logs_propensities():
    from rewind.agents import make_agent
    from rewind.envs import make_env

    env = make_env("rewind/mmoe-rho0.5-v0", {"dim": 10})
    agent = make_agent("mtl-bandit", env, {"epsilon": 0.1}, seed=0)
    obs, _ = env.reset(seed=0)
    regret = []
    for _ in range(800):
        a = agent.act(obs)
        nxt, r, term, trunc, info = env.step(a)
        assert info["propensity"] in (pytest.approx(0.01), pytest.approx(0.91)) and len(info["feedback"]) == 2
        agent.observe(obs, a, r, nxt, term, trunc, info)
        agent.update()
        regret.append(info["best_expected_reward"] - info["expected_reward"])
        obs, _ = env.reset()
    assert np.mean(regret[-200:]) < 0.6 * np.mean(regret[:200])
