"""EpisodicReplayBuffer: wraparound never yields a torn episode, the O(1) index matches a
brute-force count, and episode boundaries (life loss, termination, truncation) are kept apart
on real envs (ALE Breakout's training env, the digit maze's time limit)."""

from __future__ import annotations

import numpy as np
import pytest

from rewind.buffers.episodic import EpisodicReplayBuffer
from rewind.envs import make_env


def _obs(ep, t, k):
    """A frame that names its episode and time step: (ep, t) repeated; stacks of k frames."""
    frame = np.array([ep, t], np.int32)
    if k == 1:
        return frame
    return np.stack([np.array([ep, max(t - j, 0)], np.int32) for j in range(k - 1, -1, -1)])


@pytest.mark.parametrize("frame_stack", [1, 3])
def test_wraparound_never_yields_a_torn_episode(frame_stack):
    rng = np.random.default_rng(0)
    cap = 61
    shape = (frame_stack, 2) if frame_stack > 1 else (2,)
    rb = EpisodicReplayBuffer(cap, shape, np.int32, n_actions=5, frame_stack=frame_stack)
    starts = {}          # episode id -> absolute index of its first slot
    lengths = {}
    sampled = 0
    for ep in range(400):
        T = int(rng.integers(1, 25))
        for t in range(T):
            last = t == T - 1
            p = rb.add(_obs(ep, t, frame_stack), (ep + t) % 5, float(ep * 100 + t), _obs(ep, t + 1, frame_stack),
                       terminated=last and ep % 3 != 0, truncated=last and ep % 3 == 0)
            if t == 0:
                starts[ep] = p
        lengths[ep] = T
        # ground truth by brute force: complete episodes whose first slot is still stored
        intact = [e for e in starts if starts[e] >= rb.oldest]
        assert rb.num_episodes == len(intact)
        for _ in range(5):
            p = rb.sample_episode(rng)
            e = rb.episode(p)
            frames = e["obs"][:, -1] if frame_stack > 1 else e["obs"]
            ep_id = int(frames[0, 0])
            assert ep_id in intact
            T = lengths[ep_id]
            np.testing.assert_array_equal(p, np.arange(starts[ep_id], starts[ep_id] + T))   # contiguous
            np.testing.assert_array_equal(frames, np.stack([np.full(T, ep_id), np.arange(T)], 1))
            np.testing.assert_array_equal(e["obs"], np.stack([_obs(ep_id, t, frame_stack) for t in range(T)]))
            np.testing.assert_array_equal(e["next_obs"],
                                          np.stack([_obs(ep_id, t + 1, frame_stack) for t in range(T)]))
            np.testing.assert_array_equal(e["actions"], (ep_id + np.arange(T)) % 5)
            np.testing.assert_array_equal(e["rewards"], ep_id * 100 + np.arange(T))
            ends = np.zeros(T, bool)
            ends[-1] = True
            np.testing.assert_array_equal(e["terminated"], ends & (ep_id % 3 != 0))
            np.testing.assert_array_equal(e["truncated"], ends & (ep_id % 3 == 0))
            sampled += 1
    assert sampled == 2000 and rb.total > 20 * cap   # wrapped around many times


def test_life_loss_ends_an_episode_in_breakout_training_env():
    env = make_env("breakout", training=True, seed=0)
    rb = EpisodicReplayBuffer(5000, env.observation_space.shape, env.observation_space.dtype, n_actions=4,
                              frame_stack=4)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    ale = env.unwrapped.ale
    lives_at_end, infos = [], []
    for _ in range(3000):
        a = int(rng.integers(4))
        nxt, r, term, trunc, info = env.step(a)
        rb.add(obs, a, r, nxt, term, trunc, info)
        if term or trunc:
            lives_at_end.append(ale.lives())
            infos.append(info)
            if len(infos) == 2:
                break
            obs, _ = env.reset()
        else:
            obs = nxt
    assert len(infos) == 2, "random play should lose two lives within 3000 steps"
    # each "episode" ended at a life loss while the game went on (5 lives -> 4 -> 3)
    assert lives_at_end == [4, 3] and all(i["life_loss"] for i in infos)
    assert rb.num_episodes == 2
    firsts = []
    for j in range(2):
        j_abs = (rb._ep_head + j) % len(rb._ep_first)
        p = np.arange(rb._ep_first[j_abs], rb._ep_last[j_abs] + 1)
        e = rb.episode(p)
        firsts.append(p[0])
        # flags kept apart: terminal and life loss on the last transition only, never truncated
        assert e["terminated"][-1] and e["life_loss"][-1] and not e["truncated"].any()
        assert not e["terminated"][:-1].any() and not e["life_loss"][:-1].any()
        # a frame stack never reaches into the previous life: the first state repeats its first frame
        first = e["obs"][0]
        assert all(np.array_equal(first[k], first[-1]) for k in range(4))
    assert firsts[1] == rb._ep_last[rb._ep_head % len(rb._ep_first)] + 2   # one final-obs slot in between


def test_time_limit_truncation_is_not_a_terminal():
    env = make_env("rewind/maze-d20-v0", {"max_steps": 7, "maze_seed": 1})
    rb = EpisodicReplayBuffer(100, env.observation_space.shape, env.observation_space.dtype, n_actions=4)
    obs, _ = env.reset(seed=0)
    for _ in range(7):
        nxt, r, term, trunc, info = env.step(2)  # walk left into the border: never reaches the goal
        rb.add(obs, 2, r, nxt, term, trunc, info)
        obs = nxt
    assert trunc and not term
    e = rb.episode(rb.sample_episode(np.random.default_rng(0)))
    assert len(e["rewards"]) == 7 and e["truncated"][-1] and not e["terminated"].any()
    assert not e["life_loss"].any()
    np.testing.assert_array_equal(e["next_obs"][-1], nxt)   # the final observation is kept for bootstrapping


def test_abandoned_running_episode_is_closed_as_truncated():
    rb = EpisodicReplayBuffer(50, (2,), np.int32, n_actions=2)
    for t in range(5):
        rb.add(_obs(0, t, 1), 0, 1.0, _obs(0, t + 1, 1), False, False)
    assert rb.num_episodes == 0
    rb.truncate_running_episode()   # the newest transition has no stored next obs: it is dropped
    e = rb.episode(rb.sample_episode(np.random.default_rng(0)))
    assert len(e["rewards"]) == 4 and e["truncated"][-1] and not e["terminated"].any()
    np.testing.assert_array_equal(e["next_obs"][-1], _obs(0, 4, 1))
    rb.add(_obs(1, 0, 1), 1, 0.0, _obs(1, 1, 1), True, False)    # the next episode starts cleanly
    assert rb.num_episodes == 2
