"""agent.overlap (agents/overlap.py): the learner updates on a background thread while the agent acts.

Its defining properties: actions come from the parameters exactly one update old; the updates
themselves are the sequential agent's, bit for bit; a checkpoint-and-resume continues as if
uninterrupted; settings that would race with the learner thread are refused."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rewind.agents import make_agent
from rewind.config import parse_set
from rewind.errors import RewindError
from rewind.run.checkpoint import load_checkpoint
from rewind.run.experiment import resolve, run_experiment

SMALL = {"network": "mlp", "hidden": (16,), "learning_starts": 40, "batch_size": 8, "update_every": 1,
         "target_update_every": 3, "buffer_size": 500, "gradient_steps": 1}


def params(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def fed_pair(agent_name: str):
    """A sequential and an overlapped agent, same seed, that observed the same 200 CartPole transitions."""
    env = gym.make("CartPole-v1")
    seq = make_agent(agent_name, env, dict(SMALL), seed=5)
    ovl = make_agent(agent_name, env, dict(SMALL, overlap=True), seed=5)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = int(rng.integers(2))
        nxt, r, term, trunc, info = env.step(a)
        for agent in (seq, ovl):
            agent.observe(obs, a, r, nxt, term, trunc, info)
        obs = env.reset()[0] if term or trunc else nxt
    return seq, ovl


@pytest.mark.parametrize("agent_name", ["dqn", "ebu"])
def test_actions_come_from_parameters_exactly_one_update_old(agent_name, one_torch_thread):
    seq, ovl = fed_pair(agent_name)
    history = [params(seq.q)]                     # the sequential learner after 0, 1, 2, ... updates
    for k in range(1, 8):
        seq.gradient_update()
        history.append(params(seq.q))
        ovl.gradient_update()                     # update k is handed to the learner thread
        assert same(params(ovl.acting_net), history[k - 1]), f"actor after update {k} was handed over"
        assert not same(history[k], history[k - 1])   # the property could fail: each update moves the net
    ovl.finish_update()
    assert ovl.updates == seq.updates == 7
    assert same(params(ovl.q), history[-1]) and same(params(ovl.q_target), params(seq.q_target))
    obs = np.zeros(4, np.float32)
    assert ovl.act(obs, explore=False) == seq.act(obs, explore=False)   # evaluation: the newest parameters


def test_overlapped_run_resumes_as_if_uninterrupted(tmp_path, one_torch_thread):
    settings = parse_set([f"agent.{k}={list(v) if isinstance(v, tuple) else v}" for k, v in SMALL.items()]
                         + ["agent.overlap=true", "agent.eps_decay_steps=300", "run.eval_every=0"])

    def exp(steps):
        return resolve("dqn", "CartPole-v1", None, settings, steps=steps, seed=2)

    run_experiment(exp(600), tmp_path / "whole", progress=False)
    run_experiment(exp(330), tmp_path / "split", progress=False)          # stops (and saves) mid-run
    run_experiment(exp(600), tmp_path / "split", resume=True, progress=False)
    a, b = (load_checkpoint(tmp_path / d / "checkpoint.pt")["agent"] for d in ("whole", "split"))
    assert a["updates"] == b["updates"] > 500
    for net in ("q", "q_target", "q_actor"):
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k}"


def test_settings_that_race_with_the_learner_thread_are_refused():
    env = gym.make("CartPole-v1")
    with pytest.raises(RewindError, match="overlap"):
        make_agent("dqn", env, {"overlap": True, "aux_loss": "dim"})
    with pytest.raises(RewindError, match="overlap"):
        make_agent("ebu-adaptive", env, {"overlap": True})


def test_a_checkpoint_keeps_the_actors_one_update_old_copy(one_torch_thread):
    _, ovl = fed_pair("dqn")
    for _ in range(3):
        ovl.gradient_update()
    state = ovl.state_dict()                      # waits for update 3; the actor still holds update 2
    assert not same(params(ovl.acting_net), params(ovl.q))
    _, fresh = fed_pair("dqn")
    fresh.load_state_dict(state)
    assert same(params(fresh.acting_net), params(ovl.acting_net)) and same(params(fresh.q), params(ovl.q))
