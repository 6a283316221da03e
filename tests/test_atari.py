"""Atari DQN preprocessing on real ALE games, and MinAtar observations.

Training and evaluation versions of one game are played in lockstep (same seed, same
actions): whatever differs between them is exactly what the training-only wrappers do.
"""

from __future__ import annotations

import numpy as np
import pytest

from rewind.envs import env_kind, make_env
from rewind.envs.atari import resolve_atari_id
from rewind.errors import RewindError


def test_shapes_dtypes_and_the_stack_slides_one_frame_per_step():
    for training in (True, False):
        env = make_env("breakout", None, training=training, seed=0)
        assert env.observation_space.shape == (4, 84, 84) and env.observation_space.dtype == np.uint8
        prev, _ = env.reset(seed=0)
        assert prev.shape == (4, 84, 84) and prev.dtype == np.uint8
        assert (prev == prev[-1]).all()  # the stack starts padded with the reset frame
        for a in (1, 2, 3, 2, 3):  # FIRE, then move: the screen changes
            obs, *_ = env.step(a)
            assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
            np.testing.assert_array_equal(obs[:-1], prev[1:])
            prev = obs
        assert not (prev[0] == prev[-1]).all()
    small = make_env("breakout", {"screen_size": 64, "frame_stack": 2}, seed=0)
    assert small.reset(seed=0)[0].shape == (2, 64, 64)


def test_frame_skip_and_sticky_actions_off_by_default():
    env = make_env("breakout", {"noop_max": 0}, seed=0)
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.0
    _, info = env.reset(seed=0)
    start = info["frame_number"]
    for i in range(1, 4):
        _, _, _, _, info = env.step(0)
        assert info["frame_number"] == start + 4 * i
    env = make_env("breakout", {"noop_max": 0, "frame_skip": 2, "sticky_action_prob": 0.25}, seed=0)
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.25
    _, info = env.reset(seed=0)
    assert env.step(0)[4]["frame_number"] == info["frame_number"] + 2


def _lockstep_until_life_loss(game, train_cfg=None, max_steps=3000):
    train = make_env(game, train_cfg, training=True, seed=0)
    evl = make_env(game, None, training=False, seed=0)
    o_t, _ = train.reset(seed=0)
    o_e, _ = evl.reset(seed=0)
    np.testing.assert_array_equal(o_t, o_e)
    lives = evl.unwrapped.ale.lives()
    rng = np.random.default_rng(0)
    rewards = []
    for _ in range(max_steps):
        a = int(rng.integers(train.action_space.n))
        o_t, r_t, term_t, trunc_t, info_t = train.step(a)
        o_e, r_e, term_e, trunc_e, info_e = evl.step(a)
        np.testing.assert_array_equal(o_t, o_e)  # same game, same frames
        rewards.append((r_t, r_e))
        if info_e["lives"] < lives or term_t:
            return train, evl, (term_t, info_t), (term_e, info_e), rewards
    pytest.fail(f"random play lost no life in {max_steps} steps")


def test_life_loss_terminal_in_training_only_and_the_game_continues():
    train, evl, (term_t, info_t), (term_e, info_e), _ = _lockstep_until_life_loss("breakout")
    assert train.unwrapped.ale.lives() == 4  # Breakout starts with 5
    assert term_t and info_t["life_loss"] and info_t["lives"] == 4
    assert not term_e and info_e["lives"] == 4 and "life_loss" not in info_e
    # reset after a life loss continues the same game with one life fewer (one no-op step)
    o_t, _ = train.reset()
    assert train.unwrapped.ale.lives() == 4
    o_e, *_ = evl.step(0)
    np.testing.assert_array_equal(o_t[-1], o_e[-1])
    assert (o_t == o_t[-1]).all()  # the new "episode" starts with a padded stack
    # a seeded reset (or the end of the game) starts a new game with all lives
    train.reset(seed=0)
    assert train.unwrapped.ale.lives() == 5
    # the training-only wrapper can be switched off
    train, _, (term_t, info_t), _, _ = _lockstep_until_life_loss("breakout", {"terminal_on_life_loss": False})
    assert not term_t and info_t["lives"] == 4 and "life_loss" not in info_t


def test_reward_clipping_in_training_only():
    _, _, _, _, rewards = _lockstep_until_life_loss("ms_pacman")  # pellets score 10
    r_t, r_e = np.array(rewards).T
    assert (r_e > 1).sum() >= 3
    np.testing.assert_array_equal(r_t, np.clip(r_e, -1, 1))
    _, _, _, _, rewards = _lockstep_until_life_loss("ms_pacman", {"clip_rewards": False})
    r_t, r_e = np.array(rewards).T
    assert (r_e > 1).sum() >= 3
    np.testing.assert_array_equal(r_t, r_e)


def test_noop_starts_vary_with_the_seed_and_vanish_with_noop_max_0():
    env = make_env("ms_pacman", {"noop_max": 30}, seed=0)  # the ghosts move from frame 1
    frames, counts = [], []
    for seed in range(8):
        obs, info = env.reset(seed=seed)
        frames.append(obs.tobytes())
        counts.append(info["frame_number"])
    assert all(1 <= c <= 30 for c in counts) and len(set(counts)) >= 4
    assert len(set(frames)) >= 4
    again = make_env("ms_pacman", {"noop_max": 30}, seed=0).reset(seed=3)
    assert again[0].tobytes() == frames[3] and again[1]["frame_number"] == counts[3]

    env = make_env("ms_pacman", {"noop_max": 0}, seed=0)
    frames0 = set()
    for seed in range(4):
        obs, info = env.reset(seed=seed)
        assert info["frame_number"] == 0
        frames0.add(obs.tobytes())
    assert len(frames0) == 1
    other = make_env("ms_pacman", {"noop_max": 0}, seed=5).reset(seed=2)[0]
    assert other.tobytes() in frames0


@pytest.mark.parametrize("name,ale_id", [("pong", "ALE/Pong-v5"), ("space_invaders", "ALE/SpaceInvaders-v5"),
                                         ("SpaceInvaders", "ALE/SpaceInvaders-v5"), ("ALE/Pong-v5", "ALE/Pong-v5"),
                                         ("breakout", "ALE/Breakout-v5")])
def test_short_names_resolve(name, ale_id):
    assert resolve_atari_id(name) == ale_id
    assert env_kind(name) == "atari"


def test_names_make_the_same_game_and_unknown_names_fail_clearly():
    a = make_env("pong", {"noop_max": 0}, seed=0).reset(seed=0)[0]
    b = make_env("ALE/Pong-v5", {"noop_max": 0}, seed=0).reset(seed=0)[0]
    np.testing.assert_array_equal(a, b)
    assert make_env("space_invaders", None, seed=0).action_space.n == 6
    assert resolve_atari_id("pongg") is None
    with pytest.raises(RewindError, match="did you mean.*pong"):
        make_env("pongg")


def test_minatar_channel_first_uint8():
    for name in ("minatar-breakout", "MinAtar/Breakout-v1"):
        env = make_env(name, None, seed=0)
        assert env_kind(name) == "minatar"
        assert env.observation_space.shape == (4, 10, 10) and env.observation_space.dtype == np.uint8
        obs, _ = env.reset(seed=0)
        for a in range(20):
            assert obs.shape == (4, 10, 10) and obs.dtype == np.uint8
            assert set(np.unique(obs)) <= {0, 1}
            # channel c of ours is channel c of MinAtar's own (10, 10, C) state
            np.testing.assert_array_equal(obs, np.moveaxis(env.unwrapped.game.state(), -1, 0))
            obs, _, term, trunc, _ = env.step(a % env.action_space.n)
            if term or trunc:
                obs, _ = env.reset()
    assert make_env("minatar-space_invaders", None, seed=0).observation_space.shape[1:] == (10, 10)


@pytest.mark.parametrize("game", ["backgammon", "video_checkers"])
def test_a_game_without_noop_makes_and_plays_with_no_op_starts_skipped(game, capsys):
    env = make_env(game, None, seed=0)
    assert env.unwrapped.get_action_meanings()[0] != "NOOP"  # the case gymnasium's no-op starts refuse
    obs, _ = env.reset(seed=0)
    for a in range(8):
        obs, *_ = env.step(a % env.action_space.n)
    assert obs.shape == env.observation_space.shape
    make_env(game, None, seed=1)
    assert capsys.readouterr().err.count("has no NOOP action") <= 1  # one note per game, not per env
