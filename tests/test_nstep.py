"""n-step DQN returns computed by index in UniformReplay: hand-computed values on a
hand-made replay (episode ends inside the window, truncation vs termination, the running
episode), n = 1 equal to the one-step batch, and the DQN agent's targets built from them."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rewind.agents.dqn import DQNAgent, DQNConfig
from rewind.buffers.replay import UniformReplay
from rewind.errors import RewindError

G = 0.5


def filled_replay(frame_stack: int = 1):
    """Three episodes; observation value = 100 * episode + time step (final obs included).

    ep 0: 5 transitions, terminated at the end; ep 1: 4 transitions, truncated at the end;
    ep 2: 3 transitions, still running.  Rewards are distinct powers of ten.
    """
    shape = (frame_stack, 1) if frame_stack > 1 else (1,)
    rb = UniformReplay(64, shape, np.float32, n_actions=2, frame_stack=frame_stack)

    def obs(v):
        return np.full(shape, v, np.float32)

    rewards = {}
    for ep, (length, end) in enumerate([(5, "term"), (4, "trunc"), (3, None)]):
        for t in range(length):
            r = float(10 ** t) * (1 if ep != 1 else -1)
            last = t == length - 1
            p = rb.add(obs(100 * ep + t), t % 2, r, obs(100 * ep + t + 1),
                       terminated=last and end == "term", truncated=last and end == "trunc")
            rewards[(ep, t)] = (p, r)
    return rb, rewards


def test_hand_computed_n_step_returns_stop_at_episode_ends():
    rb, rw = filled_replay()
    p = np.array([rw[(0, 0)][0], rw[(0, 3)][0], rw[(0, 4)][0], rw[(1, 1)][0], rw[(1, 2)][0], rw[(2, 1)][0]])
    b = rb.n_step_batch(p, 3, G)
    want_R = [1 + G * 10 + G**2 * 100,      # ep0 t0: full window, bootstrap from s_3
              1000 + G * 10000,             # ep0 t3: terminal after 2 steps
              10000,                        # ep0 t4: the terminal transition itself
              -(10 + G * 100 + G**2 * 1000),  # ep1 t1: window ends exactly at the truncation
              -(100 + G * 1000),            # ep1 t2: truncated after 2 steps: still bootstraps
              10]                           # ep2 t1: the newest transition has no next state yet
    np.testing.assert_allclose(b["rewards"].numpy(), want_R, rtol=1e-6)
    np.testing.assert_array_equal(b["terminated"].numpy(), [False, True, True, False, False, False])
    np.testing.assert_allclose(b["discounts"].numpy(), [G**3, G**2, G, G**3, G**2, G])
    # next_obs is s_{p+m}: for the truncated episode, its final observation (value 104)
    np.testing.assert_array_equal(b["next_obs"].numpy()[:, 0], [3, 5, 5, 104, 104, 202])
    np.testing.assert_array_equal(b["obs"].numpy()[:, 0], [0, 3, 4, 101, 102, 201])


def test_n_step_one_is_the_one_step_batch():
    rb, _ = filled_replay()
    p = rb.sample_indices(200, np.random.default_rng(0))
    one, nb = rb.batch(p), rb.n_step_batch(p, 1, G)
    for key in one:
        assert torch.equal(one[key], nb[key])
    assert torch.all(nb["discounts"] == G)


def test_n_step_window_is_clipped_by_the_episode_for_every_n():
    # a long n reaches every episode end: the return is the discounted rest of the episode
    rb, rw = filled_replay()
    b = rb.n_step_batch(np.array([rw[(0, 0)][0]]), 50, G)
    assert b["rewards"].item() == pytest.approx(sum(G**t * 10**t for t in range(5)))
    assert bool(b["terminated"].item()) and b["discounts"].item() == pytest.approx(G**5)


def test_n_step_next_state_stacks_frames_of_the_same_episode():
    rb, rw = filled_replay(frame_stack=2)
    b = rb.n_step_batch(np.array([rw[(1, 0)][0], rw[(1, 2)][0]]), 3, G)
    # s_3 of ep 1 stacks frames 102, 103; the truncated window ends at the final obs 104 (stack 103, 104)
    np.testing.assert_array_equal(b["next_obs"].numpy()[:, :, 0], [[102, 103], [103, 104]])


def test_dqn_targets_use_n_step_returns_and_gamma_to_the_m():
    obs_space = gym.spaces.Box(-1e3, 1e3, shape=(1,), dtype=np.float32)
    for n in (1, 3):
        agent = DQNAgent(obs_space, gym.spaces.Discrete(2),
                         DQNConfig(network="mlp", hidden=(8,), gamma=G, n_step=n, buffer_size=64), seed=0)
        rb, rw = filled_replay()
        agent.replay = rb
        p = np.array([rw[(0, 0)][0], rw[(0, 3)][0], rw[(1, 2)][0]])
        b = rb.n_step_batch(p, n, G)
        with torch.no_grad():
            got = agent.td_targets(b["rewards"], b["next_obs"], b["terminated"], b["discounts"])
            v = agent.q_target(b["next_obs"]).max(dim=1).values
        if n == 1:
            r = torch.tensor([1.0, 1000.0, -100.0])
            want = r + G * v
            one = agent.td_targets(rb.batch(p)["rewards"], rb.batch(p)["next_obs"], rb.batch(p)["terminated"])
            assert torch.equal(got, one)
        else:
            r = torch.tensor([1 + G * 10 + G**2 * 100, 1000 + G * 10000, -(100 + G * 1000)])
            want = r + torch.tensor([G**3, 0.0, G**2]) * v
        torch.testing.assert_close(got, want)


def test_bad_n_step_is_a_clear_error():
    with pytest.raises(RewindError, match="n_step"):
        DQNConfig(n_step=0).validate()
    rb, _ = filled_replay()
    with pytest.raises(RewindError, match="n >= 1"):
        rb.n_step_batch(np.array([0]), 0, G)
