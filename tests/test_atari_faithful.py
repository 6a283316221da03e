"""The Atari presets do what the authors' code does (docs/atari_protocol.md): summed Huber loss, no norm
clip, adaptive EBU evaluated with the best learner, epsilon after warm-up, episode-sampling exclusions,
no-op starts in evaluation only."""

from __future__ import annotations

import copy
import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from rewind.agents.dqn import DQNAgent
from rewind.agents.ebu import AdaptiveEBUAgent, EBUAgent
from rewind.buffers.episodic import EpisodicReplayBuffer
from rewind.run.experiment import resolve

TINY_OBS = gym.spaces.Box(-1.0, 1.0, (5,), np.float32)


def tiny_agent(cls, preset_agent: str, env: str = "breakout", **over):
    """The preset's learner settings on a tiny MLP (the update rule is what is tested, not the CNN)."""
    cfg = resolve(preset_agent, env).agent_config
    cfg = dataclasses.replace(cfg, network="mlp", hidden=(7,), buffer_size=64, **over)
    return cls(TINY_OBS, gym.spaces.Discrete(3), cfg, seed=0)


def huber(d: torch.Tensor, delta: float) -> torch.Tensor:
    """Written out: 0.5 d^2 inside [-delta, delta], delta (|d| - delta / 2) outside."""
    a = d.abs()
    return torch.where(a <= delta, 0.5 * d * d, delta * (a - 0.5 * delta))


@pytest.mark.parametrize("agent_name,cls", [("dqn", DQNAgent), ("ebu", EBUAgent)])
def test_atari_presets_step_with_the_gradient_of_the_summed_huber_loss(agent_name, cls):
    agent = tiny_agent(cls, agent_name)
    assert agent.config.loss_reduction == "sum" and agent.config.max_grad_norm == 0
    reference = copy.deepcopy(agent.q)
    g = torch.Generator().manual_seed(1)
    obs = torch.rand(32, 5, generator=g) * 2 - 1
    actions = torch.randint(0, 3, (32,), generator=g)
    targets = torch.randn(32, generator=g) * 3          # both Huber branches occur
    agent.gradient_step(obs, actions, targets)
    q = reference(obs).gather(1, actions.view(-1, 1)).squeeze(1)
    loss = huber(q - targets, 1.0).sum()
    loss.backward()
    for (name, p), ref in zip(agent.q.named_parameters(), reference.parameters()):
        assert torch.allclose(p.grad, ref.grad, atol=1e-6), name


def test_mean_reduction_steps_with_one_batch_th_of_the_summed_gradient():
    summed = tiny_agent(DQNAgent, "dqn")
    mean = tiny_agent(DQNAgent, "dqn", loss_reduction="mean")
    obs, actions, targets = torch.rand(8, 5), torch.zeros(8, dtype=torch.long), torch.ones(8) * 5
    summed.gradient_step(obs, actions, targets)
    mean.gradient_step(obs, actions, targets)
    for a, b in zip(summed.q.parameters(), mean.q.parameters()):
        assert torch.allclose(a.grad / 8, b.grad, atol=1e-7)


def test_ebu_refuses_double_instead_of_ignoring_it():
    from rewind.errors import RewindError

    with pytest.raises(RewindError, match="agent.double does not apply to EBU"):
        resolve("ebu", "CartPole-v1", overrides={"agent": {"double": True}})


def test_adaptive_ebu_evaluates_with_the_learner_chosen_at_the_last_sync():
    agent = tiny_agent(AdaptiveEBUAgent, "ebu-adaptive", eps_start=0.0, eps_end=0.0)
    agent._returns = [[1.0], [5.0], [2.0], []]   # learner 1 had the best training return
    agent.sync_target()
    assert agent.last_best == 1
    with torch.no_grad():                         # make the learners disagree after the sync
        for k, q in enumerate(agent.learners):
            for p in q.parameters():
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(k)))
    agent.actor = 3                               # the rotation points elsewhere
    states = np.random.default_rng(0).uniform(-1, 1, (64, 5)).astype(np.float32)
    best = [int(agent.learners[1](torch.from_numpy(s)[None]).argmax()) for s in states]
    rotation = [int(agent.learners[3](torch.from_numpy(s)[None]).argmax()) for s in states]
    assert best != rotation                       # else the check below could not fail
    assert [agent.act(s, explore=False) for s in states] == best
    assert [agent.act(s, explore=True) for s in states] == rotation   # exploring keeps the rotation


def test_epsilon_decays_from_the_end_of_warm_up_when_asked():
    ebu = tiny_agent(EBUAgent, "ebu", learning_starts=100, eps_decay_steps=1000)
    assert ebu.config.eps_decay_after_warmup
    dqn = tiny_agent(DQNAgent, "dqn", learning_starts=100, eps_decay_steps=1000)
    assert not dqn.config.eps_decay_after_warmup   # Nature DQN preset: from step 0
    for agent in (ebu, dqn):
        agent.steps = 100
    assert ebu.epsilon() == 1.0 and dqn.epsilon() == pytest.approx(1.0 - 0.9 * 0.1)
    ebu.steps = 600
    assert ebu.epsilon() == pytest.approx(1.0 - 0.9 * 0.5)


def fill_episodes(rb: EpisodicReplayBuffer, lengths: list[int]) -> None:
    for n in lengths:
        for t in range(n):
            rb.add(np.zeros(2, np.float32), 0, 0.0, np.zeros(2, np.float32), t == n - 1, False)


def test_episode_sampling_skips_oldest_newest_and_first_transitions():
    rb = EpisodicReplayBuffer(1000, (2,), np.float32, n_actions=2)
    lengths = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
    fill_episodes(rb, lengths)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(400):
        p = rb.sample_episode(rng, exclude_oldest=5, exclude_newest=3, skip_first=3)
        seen.add(len(p) + 3)
        assert rb.terminated[p[-1] % rb.capacity]      # still ends at its terminal
    assert seen == {10, 11}                             # only the 6th and 7th episodes are eligible
    plain = {len(rb.sample_episode(rng)) for _ in range(400)}
    assert plain == set(lengths)


def test_training_env_has_no_op_starts_only_when_asked():
    from rewind.envs import find_wrapper, make_env

    def noops(**kw):
        env = make_env("breakout", {"noop_in_training": False}, **kw)
        return find_wrapper(env, gym.wrappers.AtariPreprocessing).noop_max

    assert noops(training=True) == 0 and noops(training=False) == 30
    assert resolve("ebu", "breakout").env_config.noop_in_training is False
    assert resolve("dqn", "breakout").env_config.noop_in_training is True
