"""Frame-once replay: rebuilt stacks equal what the env returned, never mix episodes, survive wraparound.

Every stored transition is checked against the observation the env actually handed out
(gymnasium's FrameStackObservation, padding at episode start included), with small
capacities so the circular buffer wraps many times, and episodes cut both by termination
and by truncation.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rewind.buffers.replay import UniformReplay
from rewind.envs import make_env


class EncodedEpisodes(gym.Env):
    """Frame = [episode % 256, t % 256, episode // 256]: every pixel says where it came from.

    Episodes end after a random length, by termination or truncation; some terminations
    are flagged as life losses, like the Atari training env does.
    """

    observation_space = gym.spaces.Box(0, 255, shape=(3,), dtype=np.uint8)
    action_space = gym.spaces.Discrete(3)

    def __init__(self, max_len=12, long_every=0, long_len=0):
        self.max_len, self.long_every, self.long_len = max_len, long_every, long_len
        self.episode = -1

    def _frame(self):
        return np.array([self.episode % 256, self.t % 256, self.episode // 256], dtype=np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        if self.long_every and self.episode % self.long_every == self.long_every - 1:
            self.length = self.long_len
        else:
            self.length = int(self.np_random.integers(1, self.max_len + 1))
        return self._frame(), {}

    def step(self, action):
        self.t += 1
        done = self.t >= self.length
        kind = int(self.np_random.integers(3)) if done else -1
        terminated, truncated = done and kind != 2, done and kind == 2
        info = {"life_loss": bool(done and kind == 1)}
        return self._frame(), float(self.t), terminated, truncated, info


def fill(env, replay, steps, seed=0, check_every_episode=None):
    """Play random actions, store every transition, record what the env returned per absolute index."""
    rec = {}
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        a = int(rng.integers(env.action_space.n))
        nxt, r, term, trunc, info = env.step(a)
        p = replay.add(obs, a, r, nxt, term, trunc, info)
        rec[p] = dict(obs=np.array(obs), next_obs=np.array(nxt), action=a, reward=r, terminated=term,
                      truncated=trunc, life_loss=bool(info.get("life_loss", False)))
        if term or trunc:
            if check_every_episode is not None:
                check_every_episode(rec)
            obs, _ = env.reset()
        else:
            obs = nxt
    return rec


def expected_valid(replay, rec, k):
    """Transitions whose state and next state can still be rebuilt from stored frames only."""
    starts, s = {}, None
    for p in sorted(rec):
        if s is None or p - 1 not in rec or rec[p - 1]["terminated"] or rec[p - 1]["truncated"]:
            s = p
        starts[p] = s
    out = []
    for p in rec:
        first_needed = max(p - (k - 1), starts[p])
        if p >= replay.oldest and p + 1 < replay.total and first_needed >= replay.oldest:
            out.append(p)
    return sorted(out)


def check_all(replay, rec, k, encoded=True):
    stored = np.arange(replay.oldest, replay.total)
    valid = stored[replay.is_valid(stored)]
    assert valid.tolist() == expected_valid(replay, rec, k)
    if len(valid) == 0:
        return []
    want_obs = np.stack([rec[p]["obs"] for p in valid])
    want_next = np.stack([rec[p]["next_obs"] for p in valid])
    np.testing.assert_array_equal(replay.states(valid), want_obs)
    np.testing.assert_array_equal(replay.next_states(valid), want_next)
    b = replay.batch(valid)
    np.testing.assert_array_equal(b["obs"].numpy(), want_obs)
    np.testing.assert_array_equal(b["next_obs"].numpy(), want_next)
    np.testing.assert_array_equal(b["actions"].numpy(), [rec[p]["action"] for p in valid])
    np.testing.assert_array_equal(b["rewards"].numpy(), [rec[p]["reward"] for p in valid])
    np.testing.assert_array_equal(b["terminated"].numpy(), [rec[p]["terminated"] for p in valid])
    i = valid % replay.capacity
    np.testing.assert_array_equal(replay.truncated[i], [rec[p]["truncated"] for p in valid])
    np.testing.assert_array_equal(replay.life_loss[i], [rec[p]["life_loss"] for p in valid])
    if k > 1 and encoded:  # the defining property: one episode per stack (pixel 0 and 2 name the episode)
        for stacks in (replay.states(valid), replay.next_states(valid)):
            ep = stacks[:, :, 0].astype(int) + 256 * stacks[:, :, 2].astype(int)
            assert (ep == ep[:, -1:]).all()
    return valid.tolist()


@pytest.mark.parametrize("k", [4, 1])
def test_every_stack_equals_the_env_observation_across_boundaries_and_wraparound(k):
    env = EncodedEpisodes(max_len=12, long_every=25, long_len=90)  # some episodes longer than capacity
    if k > 1:
        env = gym.wrappers.FrameStackObservation(env, k)  # pads episode starts with the reset frame
    replay = UniformReplay(37, env.observation_space.shape, np.uint8, n_actions=3, frame_stack=k)
    checked = {"n": 0, "truncated": 0, "terminated": 0, "life_loss": 0, "padded": 0}

    def check(rec):
        valid = check_all(replay, rec, k)
        checked["n"] += len(valid)
        for p in valid:
            for flag in ("truncated", "terminated", "life_loss"):
                checked[flag] += rec[p][flag]
            checked["padded"] += k > 1 and (rec[p]["obs"][0] == rec[p]["obs"][-1]).all()

    fill(env, replay, 3000, check_every_episode=check)
    assert replay.total > 20 * replay.capacity  # wrapped many times
    assert checked["n"] > 5000
    # episode ends of every kind, and (with stacking) padded episode starts, were among the checked
    assert min(checked["truncated"], checked["terminated"], checked["life_loss"]) > 50
    assert k == 1 or checked["padded"] > 100


def test_sampled_indices_are_valid_and_cover_the_buffer():
    env = gym.wrappers.FrameStackObservation(EncodedEpisodes(max_len=6), 4)
    replay = UniformReplay(50, (4, 3), np.uint8, n_actions=3, frame_stack=4)
    rec = fill(env, replay, 1000, seed=1)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(50):
        p = replay.sample_indices(32, rng)
        assert replay.is_valid(p).all()
        np.testing.assert_array_equal(replay.states(p), np.stack([rec[q]["obs"] for q in p]))
        np.testing.assert_array_equal(replay.next_states(p), np.stack([rec[q]["next_obs"] for q in p]))
        seen.update(p.tolist())
    assert seen == set(expected_valid(replay, rec, 4))


def test_real_breakout_frames_with_life_loss_episodes():
    env = make_env("breakout", {"noop_max": 0}, training=True, seed=0)
    replay = UniformReplay(160, (4, 84, 84), np.uint8, n_actions=env.action_space.n, frame_stack=4)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    rec, ends = {}, 0
    for _ in range(700):
        a = int(rng.integers(env.action_space.n))
        nxt, r, term, trunc, info = env.step(a)
        p = replay.add(obs, a, r, nxt, term, trunc, info)
        rec[p] = dict(obs=np.array(obs), next_obs=np.array(nxt), action=a, reward=r, terminated=term,
                      truncated=trunc, life_loss=info["life_loss"])
        if term or trunc:
            ends += 1
            obs, _ = env.reset()
            if ends <= 3:
                assert check_all(replay, rec, 4, encoded=False)
        else:
            obs = nxt
    assert ends >= 2, "random play lost no life in 700 steps"
    assert len(check_all(replay, rec, 4, encoded=False)) > 100


def test_bytes_per_84x84_transition_close_to_one_frame():
    replay = UniformReplay(20_000, (4, 84, 84), np.uint8, n_actions=18, frame_stack=4)
    per_transition = replay.nbytes() / replay.capacity
    assert 84 * 84 <= per_transition <= 84 * 84 * 1.01
    assert per_transition * 1_000_000 <= 7.5e9  # issue 2's budget for a 1M replay
