"""The EBU agent's defining behaviour: minibatches backward from the terminal (a short last
one padded with the next episode), beta = 0 equal to DQN's one-step targets, beta = 1
carrying a terminal reward to the first state in one sweep, adaptive EBU copying its best
learner at a target sync, the CLI entry points, and exact checkpoint/resume."""

from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from rewind.run.checkpoint import load_checkpoint
from rewind.agents.dqn import DQNAgent, DQNConfig
from rewind.agents.ebu import AdaptiveEBUAgent, AdaptiveEBUConfig, EBUAgent, EBUConfig
from rewind.run.experiment import resolve, run_experiment
from rewind.cli import main as cli_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


OBS = gym.spaces.Box(-10.0, 10.0, shape=(3,), dtype=np.float32)
ACTS = gym.spaces.Discrete(4)
AUTHORS = {"refill_min": 0} if "refill_min" in {f.name for f in dataclasses.fields(EBUConfig)} else {}


def ebu_config(cls=EBUConfig, **kw):
    base = dict(network="mlp", hidden=(16,), batch_size=32, buffer_size=1000, learning_starts=0, update_every=1,
                target_update_every=10_000, gamma=0.9, device="cpu")
    base.update(kw)
    return cls(**base)


def fill(agent, lengths, rng, truncate_every=0):
    """Episodes of random observations; returns their absolute index ranges."""
    episodes = []
    for j, T in enumerate(lengths):
        obs = rng.normal(size=3).astype(np.float32)
        first = None
        for t in range(T):
            nxt = rng.normal(size=3).astype(np.float32)
            last = t == T - 1
            trunc = last and truncate_every and j % truncate_every == 0
            p = agent.replay.add(obs, int(rng.integers(4)), float(rng.normal() * (rng.random() < 0.3)), nxt,
                                 last and not trunc, bool(trunc))
            first = p if first is None else first
            obs = nxt
        episodes.append(np.arange(first, first + T))
    return episodes


@pytest.mark.parametrize("extra", [AUTHORS, {}], ids=["one-episode-refill", "default"])
def test_minibatches_run_backward_from_the_terminal_and_pad_with_the_next_episode(extra):
    rng = np.random.default_rng(0)
    agent = EBUAgent(OBS, ACTS, ebu_config(**extra), seed=0)
    episodes = fill(agent, [40, 10, 25, 7, 61], rng)
    batches = [agent.next_minibatch()[0] for _ in range(30)]
    assert all(len(b) == 32 for b in batches)
    stream = np.concatenate(batches)
    owner = {int(p): j for j, ep in enumerate(episodes) for p in ep}
    pos, spans = 0, []
    while pos + 61 <= len(stream):
        ep = episodes[owner[int(stream[pos])]]
        # every sampled episode is trained whole, starting at its terminal, moving backward
        np.testing.assert_array_equal(stream[pos:pos + len(ep)], ep[::-1])
        spans.append(len(ep))
        pos += len(ep)
    assert len(spans) >= 8
    # padding: some minibatch holds the first transitions of one episode and the terminal end of the next
    mixed = [b for b in batches if len({owner[int(p)] for p in b}) > 1]
    assert mixed
    # the queue is what learn() trains on: one update consumes exactly one minibatch from it
    while len(agent._queue_idx) < 32:
        agent.next_minibatch()
    before = agent._queue_idx.copy()
    agent.update()
    np.testing.assert_array_equal(agent._queue_idx, before[32:])


def test_beta_zero_gives_dqn_one_step_targets_on_the_same_transitions():
    rng = np.random.default_rng(1)
    ebu = EBUAgent(OBS, ACTS, ebu_config(beta=0.0, **AUTHORS), seed=5)
    dqn = DQNAgent(OBS, ACTS, DQNConfig(**{k: v for k, v in dataclasses.asdict(ebu_config()).items()
                                           if k in {f.name for f in dataclasses.fields(DQNConfig)}}), seed=5)
    with torch.no_grad():   # a target network that is far from zero, shared by both
        for p in ebu.q_target.parameters():
            p.normal_(0, 1.0)
    dqn.q_target.load_state_dict(ebu.q_target.state_dict())
    fill(ebu, [30, 12, 50, 3, 21], rng, truncate_every=2)
    for _ in range(10):
        idx, ys = ebu.next_minibatch()
        b = ebu.replay.batch(idx)
        with torch.no_grad():
            want = dqn.td_targets(b["rewards"], b["next_obs"], b["terminated"])
        assert want.abs().max() > 0.5
        torch.testing.assert_close(torch.from_numpy(ys[:, 0]), want, rtol=1e-6, atol=1e-6)
    # and beta = 0.5 does not (the test can tell the difference)
    half = EBUAgent(OBS, ACTS, ebu_config(beta=0.5, **AUTHORS), seed=5)
    half.q_target.load_state_dict(ebu.q_target.state_dict())
    fill(half, [50], np.random.default_rng(2))
    idx, ys = half.next_minibatch()
    b = half.replay.batch(idx)
    with torch.no_grad():
        one = dqn.td_targets(b["rewards"], b["next_obs"], b["terminated"])
    assert not torch.allclose(torch.from_numpy(ys[:, 0]), one, atol=1e-3)


def test_beta_one_carries_the_terminal_reward_to_the_first_state_in_one_sweep():
    T, gamma = 45, 0.9
    agent = EBUAgent(OBS, ACTS, ebu_config(beta=1.0, gamma=gamma, **AUTHORS), seed=0)
    with torch.no_grad():
        for p in agent.q_target.parameters():
            p.zero_()        # Q-target is zero everywhere: nothing but the reward can raise a target
    for t in range(T):       # deterministic chain: state t -> t+1, reward 1 on the last step only
        agent.replay.add(np.full(3, t / T, np.float32), 1, float(t == T - 1), np.full(3, (t + 1) / T, np.float32),
                         t == T - 1, False)
    idx, ys = agent.next_minibatch()
    idx2, ys2 = agent.next_minibatch()
    idx, ys = np.concatenate([idx, idx2])[:T], np.concatenate([ys, ys2])[:T, 0]
    np.testing.assert_array_equal(idx, np.arange(T)[::-1])
    np.testing.assert_allclose(ys, gamma ** (T - 1 - idx), rtol=1e-5)
    assert ys[-1] == pytest.approx(gamma ** (T - 1), rel=1e-5) and ys[-1] > 0.008


def _flat(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_adaptive_ebu_copies_the_best_learner_to_all_at_a_target_sync():
    agent = AdaptiveEBUAgent(OBS, ACTS, ebu_config(AdaptiveEBUConfig, target_update_every=3, **AUTHORS), seed=0)
    with torch.no_grad():   # four different learners
        for k, q in enumerate(agent.learners):
            for p in q.parameters():
                p.add_(0.1 * k)
    rng = np.random.default_rng(0)
    returns = [1.0, 1.0, 9.0, 2.0]       # learner 2 acts in the best episode
    actors = []
    for ep, ret in enumerate(returns):
        actors.append(agent.actor)
        for t in range(10):
            agent.observe(rng.normal(size=3).astype(np.float32), 0, ret / 10, rng.normal(size=3).astype(np.float32),
                          t == 9, False, {})
    assert actors == [0, 1, 2, 3] and agent.actor == 0
    assert agent.best_learner() == 2
    flats = [_flat(q) for q in agent.learners]
    assert all(not torch.equal(flats[0], f) for f in flats[1:])
    agent.update(), agent.update()       # two updates: learners train apart on their own betas
    trained = [_flat(q) for q in agent.learners]
    assert len({tuple(f.tolist()) for f in trained}) == 4
    agent.update()                       # third update -> target sync: learner 2 (as trained now) wins
    best_after = _flat(agent.learners[2])
    for q in agent.learners:
        assert torch.equal(_flat(q), best_after)
    assert torch.equal(_flat(agent.q_target), best_after)
    assert agent.last_best == 2


@pytest.mark.parametrize("agent_name", ["ebu", "ebu-adaptive"])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "rewind/maze-d20-v0"])
def test_cli_trains_ebu_agents(tmp_path, agent_name, env_id, capsys):
    logdir = tmp_path / "run"
    rc = cli_main(["train", "--agent", agent_name, "--env", env_id, "--steps", "300", "--logdir", str(logdir),
                   "--no-progress", "--set", "agent.learning_starts=100", "--set", "run.eval_episodes=1",
                   "--set", "run.eval_every=0", "--set", "run.log_every=100", "--set", "run.eval_max_steps=50"]
                  + (["--set", "env.max_steps=40"] if "maze" in env_id else []))
    assert rc == 0
    assert "done at step 300" in capsys.readouterr().out
    state = load_checkpoint(logdir / "checkpoint.pt")
    assert state["meta"]["agent"] == agent_name and state["agent"]["updates"] == 201
    assert json.loads((logdir / "evaluations.json").read_text())[-1]["step"] == 300


@pytest.mark.parametrize("agent_name", ["ebu", "ebu-adaptive"])
def test_checkpoint_resume_gives_exactly_the_uninterrupted_parameters(tmp_path, agent_name):
    over = {"agent": {"learning_starts": 100, "target_update_every": 70, "batch_size": 16, **AUTHORS},
            "run": {"eval_every": 250, "eval_episodes": 1, "eval_max_steps": 50, "checkpoint_every": 0,
                    "progress": False}}

    def exp(steps):
        return resolve(agent_name, "CartPole-v1", overrides=over, steps=steps, seed=3)

    run_experiment(exp(500), tmp_path / "whole")
    run_experiment(exp(250), tmp_path / "split")
    run_experiment(exp(500), tmp_path / "split", resume=True)
    a = load_checkpoint(tmp_path / "whole")["agent"]
    b = load_checkpoint(tmp_path / "split")["agent"]
    assert a["updates"] == b["updates"] == 401
    for key in ("q", "q_target"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs after resume"
    np.testing.assert_array_equal(a["queue_idx"], b["queue_idx"])
    if agent_name == "ebu-adaptive":
        for la, lb in zip(a["learners"], b["learners"]):
            assert all(torch.equal(la[n], lb[n]) for n in la)
