"""rewind.agents.sb3.EBU: learns a small digit-maze layout (cell observations) in a short run,
trains backward from the terminal with backward_targets, keeps truncation apart from
termination, and works with SB3's save/load, callbacks and TensorBoard logging."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback

from rewind.agents.sb3 import EBU, EpisodicSB3Buffer
from rewind.buffers.backward import backward_targets
from rewind.envs import make_env
from rewind.errors import RewindError


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def maze(max_steps=200):
    env = make_env("rewind/maze-v0", {"size": 6, "density": 0.2, "maze_seed": 3, "observation": "index",
                                      "max_steps": max_steps})
    return gym.wrappers.TransformReward(env, lambda r: r * 1e-3)   # goal 1, wall -0.001


def model(env, **kw):
    args = dict(learning_rate=1e-3, buffer_size=10_000, learning_starts=200, batch_size=32, gamma=0.9, train_freq=1,
                target_update_interval=200, exploration_fraction=0.5, exploration_final_eps=0.1,
                policy_kwargs={"net_arch": [64]}, seed=0, beta=1.0)
    args.update(kw)
    return EBU("MlpPolicy", env, **args)


def greedy_relative_length(m, env) -> float:
    obs, _ = env.reset(seed=0)
    while True:
        action, _ = m.predict(obs, deterministic=True)
        obs, _, term, trunc, info = env.step(int(action))
        if term or trunc:
            return float(info["relative_length"])


class CountSteps(BaseCallback):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def _on_step(self) -> bool:
        self.calls += 1
        return True


def test_sb3_ebu_learns_the_maze_saves_loads_and_logs(tmp_path):
    env = maze()
    m = model(env, tensorboard_log=str(tmp_path / "tb"))
    assert greedy_relative_length(m, maze()) > 1.5        # untrained: wanders or bumps
    counter = CountSteps()
    m.learn(1500, callback=counter)
    assert counter.calls == 1500
    assert greedy_relative_length(m, maze()) <= 1.5       # the shortest path (or nearly) after 1.5k steps

    m.save(tmp_path / "ebu.zip")
    loaded = EBU.load(tmp_path / "ebu.zip", env=maze())
    assert loaded.beta == 1.0 and isinstance(loaded.replay_buffer, EpisodicSB3Buffer)
    states = np.arange(36)
    np.testing.assert_array_equal(m.predict(states, deterministic=True)[0],
                                  loaded.predict(states, deterministic=True)[0])
    loaded.learn(300)                                     # and it keeps training after loading

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    runs = sorted((tmp_path / "tb").iterdir())
    acc = EventAccumulator(str(runs[0]))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "train/loss" in tags and "rollout/exploration_rate" in tags


def test_sb3_ebu_trains_backward_from_the_terminal_with_backward_targets():
    m = model(maze(max_steps=30), learning_starts=10_000, beta=0.5)   # collect only, no training
    m.learn(400)
    buf = m.replay_buffer
    storage = buf.storages[0]
    m._reset_queue()
    m._ebu_rng = np.random.default_rng(7)
    envs, idx, y = m.next_minibatch(32)
    rng = np.random.default_rng(7)
    _, p = buf.sample_episode(rng)                        # the same first episode
    assert idx[0] == p[-1] and storage.truncated[p[-1] % storage.capacity] | storage.terminated[p[-1] % storage.capacity]
    k = min(32, len(p))
    np.testing.assert_array_equal(idx[:k], p[::-1][:k])   # consecutive, from the terminal backward
    with torch.no_grad():
        next_q = m.q_net_target(torch.as_tensor(storage.next_states(p))).numpy()
    rows = p % storage.capacity
    want = backward_targets(storage.rewards[rows], storage.actions[rows].astype(np.int64), next_q,
                            storage.terminated[rows], 0.9, 0.5)
    np.testing.assert_allclose(y[:k], want[::-1][:k], rtol=1e-5, atol=1e-6)
    if len(p) < 32:                                       # padded with the next episode's terminal end
        assert storage.truncated[idx[k] % storage.capacity] | storage.terminated[idx[k] % storage.capacity]


def test_episodic_sb3_buffer_keeps_time_limit_truncation_apart_and_samples_uniformly():
    m = model(maze(max_steps=25), learning_starts=10_000)
    m.learn(210)                                          # 8 episodes by the time limit, one running
    storage = m.replay_buffer.storages[0]
    n = len(storage)
    # the maze's own time limit (25) ends episodes as truncated, never as terminal, unless the goal is reached
    ended_by_limit = storage.truncated[:n].sum()
    assert ended_by_limit >= 1 and not (storage.truncated[:n] & storage.terminated[:n]).any()
    sample = m.replay_buffer.sample(64)
    assert sample.observations.shape == (64, 1) and sample.dones.shape == (64, 1)
    # a new learn() resets the env: the running episode is closed as truncated, nothing is torn
    before = m.replay_buffer.num_episodes
    m.learn(10)
    assert m.replay_buffer.num_episodes >= before + 1


def test_bad_arguments_are_clear_errors():
    with pytest.raises(RewindError, match="beta"):
        EBU("MlpPolicy", maze(), beta=1.5)
    with pytest.raises(RewindError, match="n_steps"):
        EBU("MlpPolicy", maze(), n_steps=3)
    with pytest.raises(RewindError, match="Discrete action"):
        EBU("MlpPolicy", "Pendulum-v1")


def test_sb3_ebu_replay_is_saved_as_data_and_a_pickled_one_is_refused(tmp_path):
    import pickle

    m = model(maze())
    m.learn(300)
    m.save_replay_buffer(tmp_path / "replay.pt")
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "replay.pt") == []
    other = model(maze())
    other.load_replay_buffer(tmp_path / "replay.pt", truncate_last_traj=False)
    a, b = m.replay_buffer.storages[0], other.replay_buffer.storages[0]
    assert b.num_episodes == a.num_episodes > 0 and b.total == a.total
    np.testing.assert_array_equal(b.frames[:b.total], a.frames[:a.total])
    assert (other.replay_buffer.pos, other.replay_buffer.full) == (m.replay_buffer.pos, m.replay_buffer.full)
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "sb3.pkl").write_bytes(pickle.dumps({"buffer": Payload()}))  # what SB3's pickle format allows
    with pytest.raises(RewindError, match="refused"):
        other.load_replay_buffer(tmp_path / "sb3.pkl")
    assert not marker.exists()
