"""run.num_envs > 1: N envs stepped as one vector env, acted on in one forward pass, their episodes
stored whole and contiguous in the replay, learning phases counted over all envs, exact resume."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import gymnasium as gym
import numpy as np
import pytest
import torch

from rewind.agents.dqn import DQNConfig, learning_due, learning_phases
from rewind.agents.ebu import AdaptiveEBUAgent, EBUAgent, EBUConfig
from rewind.buffers.backward import backward_targets
from rewind.cli import main
from rewind.config import parse_set
from rewind.run.checkpoint import load_checkpoint
from rewind.run.experiment import resolve, run_experiment


def test_learning_phases_count_env_steps_over_all_envs():
    cfg = DQNConfig(update_every=4, learning_starts=10)
    # one env at a time: exactly learning_due
    assert [learning_phases(s - 1, s, cfg) for s in range(1, 40)] == [int(learning_due(s, cfg)) for s in range(1, 40)]
    # 8 envs: two phases per vector step once learning started; 3 envs: the multiples of 4 crossed
    assert [learning_phases(s - 8, s, cfg) for s in (8, 16, 24)] == [0, 2, 2]   # 12 counts, 8 does not
    assert sum(learning_phases(s - 3, s, cfg) for s in range(3, 301, 3)) == sum(learning_due(s, cfg) for s in range(1, 301))


def streams(n_envs: int, lengths: list[list[int]], seed: int = 0):
    """Per-env synthetic episodes whose observations name (env, episode, t), stepped in lockstep."""
    rng = np.random.default_rng(seed)
    episodes = [[{"env": e, "len": L, "r": rng.normal(size=L).astype(np.float32), "a": rng.integers(0, 3, L)}
                 for L in lengths[e]] for e in range(n_envs)]
    for e in range(n_envs):
        for k, ep in enumerate(episodes[e]):
            ep["obs"] = [np.array([e, k, t, 0.5], np.float32) for t in range(ep["len"] + 1)]
    return episodes


def drive(agent, episodes):
    """Feed the streams through observe_batch, env by env in lockstep (like the vector loop)."""
    n = len(episodes)
    cursor = [[0, 0] for _ in range(n)]   # (episode, t)
    while any(c[0] < len(episodes[e]) for e, c in enumerate(cursor)):
        live = [e for e in range(n) if cursor[e][0] < len(episodes[e])]
        if len(live) < n:                  # the test streams end together: keep it simple
            break
        obs, act, rew, nxt, term = [], [], [], [], []
        for e in range(n):
            k, t = cursor[e]
            ep = episodes[e][k]
            obs.append(ep["obs"][t]), act.append(ep["a"][t]), rew.append(ep["r"][t]), nxt.append(ep["obs"][t + 1])
            term.append(t == ep["len"] - 1)
            cursor[e] = [k + 1, 0] if t == ep["len"] - 1 else [k, t + 1]
        term = np.array(term)
        agent.observe_batch(np.stack(obs), np.array(act), np.array(rew), np.stack(nxt), term, np.zeros(n, bool),
                            [{} for _ in range(n)])


def stored_episodes(rb):
    return [np.arange(rb._ep_first[j % len(rb._ep_first)], rb._ep_last[j % len(rb._ep_first)] + 1)
            for j in range(rb._ep_head, rb._ep_tail)]


def test_vector_episodes_are_stored_whole_and_ebu_targets_equal_backward_targets_per_episode():
    lengths = [[3, 9, 4], [7, 5, 4], [2, 2, 12], [16]]          # every env ends its last episode at step 16
    episodes = streams(4, lengths)
    space = gym.spaces.Box(-1e4, 1e4, (4,), np.float32)
    agent = EBUAgent(space, gym.spaces.Discrete(3), EBUConfig(network="mlp", hidden=(8,), buffer_size=500,
                                                              gamma=0.9, beta=0.7), seed=0)
    drive(agent, episodes)
    assert agent.steps == 64 and agent.replay.staged == 0
    stored = stored_episodes(agent.replay)
    assert sorted(len(p) for p in stored) == sorted(L for ls in lengths for L in ls)
    by_id = {(e, k): ep for e in range(4) for k, ep in enumerate(episodes[e])}
    for p in stored:
        states = agent.replay.states(p)
        env, k = int(states[0, 0]), int(states[0, 1])
        assert (states[:, :2] == [env, k]).all()                  # one env's one episode ...
        assert (states[:, 2] == np.arange(len(p))).all()          # ... in time order, nothing missing
        ep = by_id[(env, k)]
        _, y = agent.episode_targets([p])
        with torch.no_grad():
            next_q = agent.q_target(torch.from_numpy(np.stack(ep["obs"][1:]))).numpy()
        term = np.arange(ep["len"]) == ep["len"] - 1
        expected = backward_targets(ep["r"], ep["a"], next_q, term, 0.9, [0.7])
        assert np.allclose(y[:, 0], np.asarray(expected, np.float32).ravel(), atol=1e-5)


def test_interleaving_without_staging_would_tear_episodes():
    # The check above can fail: feeding the same lockstep steps to observe() one by one mixes envs.
    episodes = streams(2, [[3], [3]])
    space = gym.spaces.Box(-1e4, 1e4, (4,), np.float32)
    agent = EBUAgent(space, gym.spaces.Discrete(3), EBUConfig(network="mlp", hidden=(8,), buffer_size=100), seed=0)
    for t in range(3):
        for e in range(2):
            ep = episodes[e][0]
            agent.observe(ep["obs"][t], ep["a"][t], ep["r"][t], ep["obs"][t + 1], t == 2, False, {})
    first = stored_episodes(agent.replay)[0]
    assert len(set(agent.replay.states(first)[:, 0])) > 1


def test_adaptive_ebu_gives_each_env_episode_a_learner_in_turn():
    space = gym.spaces.Box(-1e4, 1e4, (4,), np.float32)
    agent = AdaptiveEBUAgent(space, gym.spaces.Discrete(3), AdaptiveEBUAgent.Config(
        network="mlp", hidden=(8,), buffer_size=200), seed=0)
    drive(agent, streams(3, [[2, 2], [4], [1, 3]]))
    # envs start with learners 0, 1, 2 (next: 3). Step 1: env 2 ends (learner 2), takes 3. Step 2: env 0
    # ends (0), takes 0. Step 4: env 0 ends (0) -> 1; env 1 ends (1) -> 2; env 2 ends (3) -> 3.
    assert [len(r) for r in agent._returns] == [2, 1, 1, 1]
    assert agent.env_actor.tolist() == [1, 2, 3] and agent.actor == 0


SETTINGS = ["agent.hidden=[32,32]", "agent.learning_starts=100", "agent.batch_size=16", "agent.update_every=2",
            "agent.target_update_every=50", "agent.eps_decay_steps=400", "run.eval_every=0",
            "run.eval_episodes=2", "run.eval_max_steps=200", "run.checkpoint_every=200", "run.save_buffer=true",
            "run.log_every=50", "run.torch_threads=1", "run.num_envs=4"]


def experiment(agent, env, steps, extra=()):
    return resolve(agent, env, None, parse_set(SETTINGS + list(extra)), steps=steps, seed=3)


@pytest.mark.parametrize("env", ["minatar-breakout", "breakout"])
def test_real_vector_runs_store_only_whole_episodes(env, tmp_path, one_torch_thread):
    extra = ["agent.network=auto", "agent.buffer_size=5000"] if env == "breakout" else []
    run_experiment(experiment("ebu", env, 400 if env == "breakout" else 800, extra), tmp_path, progress=False)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    rb = state["replay"]
    ends = (rb["terminated"] | rb["truncated"]).numpy()
    valid, start = rb["valid"].numpy(), rb["start"].numpy()
    firsts = np.flatnonzero(valid & (start == np.arange(len(start))))
    assert len(firsts) >= 4                                   # several complete episodes were stored
    for a in firsts:                                          # each: valid slots, one end, then its final frame
        b = a
        while not ends[b]:
            b += 1
            assert valid[b] and start[b] == a
        assert not valid[b + 1]
    if env == "breakout":                                     # stacks continue frame by frame within an episode
        frames = rb["frames"].numpy()
        a = firsts[1]
        assert frames[a + 1].any() and not np.array_equal(frames[a], frames[a + 5])


def test_vector_run_resumed_after_sigint_ends_bit_identical(tmp_path):
    logdir = tmp_path / "run"
    cmd = ["rewind", "train", "--agent", "ebu", "--env", "CartPole-v1", "--steps", "1000000", "--seed", "3",
           "--logdir", str(logdir), "--no-progress"] + [x for s in SETTINGS for x in ("--set", s)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 60
        while not (logdir / "checkpoint.pt").exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint after 60 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    stopped = load_checkpoint(logdir / "checkpoint.pt")["loop"]["step"]
    assert stopped % 4 == 0 and 200 <= stopped < 1_000_000
    total = stopped + 200
    assert main([a if a != "1000000" else str(total) for a in cmd[1:]] + ["--resume"]) == 0
    reference = tmp_path / "reference"
    run_experiment(experiment("ebu", "CartPole-v1", total), reference, progress=False)
    a, b = load_checkpoint(reference / "checkpoint.pt"), load_checkpoint(logdir / "checkpoint.pt")
    assert a["loop"]["step"] == b["loop"]["step"] == total and a["agent"]["updates"] == b["agent"]["updates"] > 0
    for net in ("q", "q_target"):
        for k in a["agent"][net]:
            assert torch.equal(a["agent"][net][k], b["agent"][net][k]), f"{net}.{k}"
    for k in ("frames", "actions", "rewards", "terminated", "total"):
        va, vb = a["replay"][k], b["replay"][k]
        assert torch.equal(va, vb) if isinstance(va, torch.Tensor) else va == vb, k
