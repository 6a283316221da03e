"""Memory and sampling cost of rewind's replay at Atari scale (1M transitions of 84x84 frames).

Not a suite: replay memory per transition and time per sampled update; nothing is trained.

Reports bytes per stored transition (goal: 1M transitions in at most 7.5 GB), then, with a
full 1M buffer of synthetic one-life episodes, the cost per update of
  - DQN: sample 32 uniform indexes and gather s, s' (4-frame stacks rebuilt by index);
  - EBU: sample one episode (O(1) from the episode index), gather its next states, run the
    Nature-CNN target network over them and compute all backward targets, amortised over
    the episode's minibatches of 32, plus gathering each minibatch.

    python -m rewind.bench.studies.replay_cost --capacity 1000000
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch

from rewind.buffers.episodic import EpisodicReplayBuffer
from rewind.buffers.replay import UniformReplay


def fill(buf: EpisodicReplayBuffer, n: int, rng: np.random.Generator) -> None:
    """Write n transitions in episodes of 100..1500 steps (Atari lives), frames of noise."""
    pool = rng.integers(0, 255, size=(256, 84, 84), dtype=np.uint8)
    stack = np.zeros((4, 84, 84), dtype=np.uint8)
    left = int(rng.integers(100, 1500))
    for k in range(n):
        stack[-1] = pool[k % 256]
        left -= 1
        end = left == 0
        buf.add(stack, int(rng.integers(18)), float(rng.random() < 0.05), stack, end, False, None)
        if end:
            left = int(rng.integers(100, 1500))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--capacity", type=int, default=1_000_000)
    p.add_argument("--episodes", type=int, default=30, help="EBU episodes to time")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    from rewind.agents.ebu import EBUAgent, EBUConfig

    obs_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    agent = EBUAgent(obs_space, gym.spaces.Discrete(18), EBUConfig(network="nature", buffer_size=args.capacity,
                                                                   refill_min=0), frame_stack=4)
    buf = agent.replay
    per = buf.nbytes() / buf.capacity
    print(f"bytes per stored transition: {per:.1f} (84*84 = {84 * 84}); "
          f"{per * 1e6 / 1e9:.2f} GB per 1M transitions")

    t0 = time.perf_counter()
    fill(buf, args.capacity + args.capacity // 10, rng)  # wrap around once
    print(f"filled {buf.total} slots ({buf.num_episodes} intact episodes) in {time.perf_counter() - t0:.0f} s")

    # DQN-style uniform minibatch
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        idx = UniformReplay.sample_indices(buf, 32, rng)  # same storage, uniform sampling
        buf.batch(idx)
    dqn_us = (time.perf_counter() - t0) / n * 1e6

    # EBU: sample an episode, targets for all of it, then its minibatches
    t_sample = t_targets = t_batches = 0.0
    transitions = 0
    for _ in range(args.episodes):
        t0 = time.perf_counter()
        ep = buf.sample_episode(rng)
        t1 = time.perf_counter()
        p, y = agent.episode_targets([ep])
        t2 = time.perf_counter()
        for s in range(len(p) - 32, -32, -32):
            buf.batch(p[max(s, 0): s + 32])
        t3 = time.perf_counter()
        t_sample += t1 - t0
        t_targets += t2 - t1
        t_batches += t3 - t2
        transitions += len(ep)
    updates = transitions / 32
    print(f"DQN uniform minibatch (sample + gather s, s'): {dqn_us:.0f} us per update")
    print(f"EBU over {args.episodes} episodes ({transitions} transitions, {updates:.0f} updates):")
    print(f"  sample an episode:            {t_sample / args.episodes * 1e6:8.1f} us per episode")
    print(f"  targets (target net + backward): {t_targets / updates * 1e6:8.0f} us per update "
          f"({t_targets / args.episodes * 1e3:.1f} ms per episode)")
    print(f"  gather minibatches:           {t_batches / updates * 1e6:8.0f} us per update")
    print(f"  total per update:             {(t_sample + t_targets + t_batches) / updates * 1e6:8.0f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
