"""Tabular EBU vs uniform-replay tabular Q-learning on the digit maze's cells (observation=index).

Run: `python3 -m rewind.bench.studies.tabular_maze [--seeds 5 --steps 20000]`.
For each wall density (deterministic maze) and maze seed, both agents train with the same
exploration schedule and the same number of updates per env step on average; every
`--eval-every` steps one greedy episode is played on a copy of the maze and its relative
length (steps / shortest path) recorded.  Prints, per density and agent, the median env
steps until the greedy relative length first reaches <= 1.5 (the issue's target level) and
the final relative length.  A tabular sanity check of the deep experiment, not a substitute.
"""

from __future__ import annotations

import argparse

import numpy as np

from rewind.agents import make_agent
from rewind.envs import make_env


def greedy_relative_length(agent, env) -> float:
    obs, _ = env.reset(seed=0)
    while True:
        obs, _, term, trunc, info = env.step(agent.act(obs, explore=False))
        if term or trunc:
            return float(info["relative_length"])


def run(agent_name: str, density: int, maze_seed: int, steps: int, eval_every: int, eps_decay: int):
    cfg = {"observation": "index", "maze_seed": maze_seed}
    env = make_env(f"rewind/maze-d{density}-v0", cfg)
    eval_env = make_env(f"rewind/maze-d{density}-v0", cfg)
    agent = make_agent(agent_name, env, {"eps_decay_steps": eps_decay}, seed=maze_seed)
    obs, _ = env.reset(seed=maze_seed)
    first, last = None, float("nan")
    for step in range(1, steps + 1):
        action = agent.act(obs)
        next_obs, reward, term, trunc, info = env.step(action)
        agent.observe(obs, action, reward, next_obs, term, trunc, info)
        agent.update()
        obs = env.reset()[0] if (term or trunc) else next_obs
        if step % eval_every == 0:
            last = greedy_relative_length(agent, eval_env)
            if first is None and last <= 1.5:
                first = step
    return first, last


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--eps-decay", type=int, default=5_000)
    args = parser.parse_args(argv)
    print(f"{'density':>7} {'agent':>12} {'median steps to rel.len<=1.5':>29} {'reached':>8} {'final rel.len (median)':>23}")
    for density in (20, 50):
        for name in ("tabular-ebu", "tabular-q"):
            results = [run(name, density, s, args.steps, args.eval_every, args.eps_decay) for s in range(args.seeds)]
            firsts = [f if f is not None else np.inf for f, _ in results]
            reached = sum(f is not None for f, _ in results)
            med = np.median(firsts)
            med_s = f"{med:.0f}" if np.isfinite(med) else f">{args.steps}"
            print(f"{density:>6}% {name:>12} {med_s:>29} {reached:>5}/{args.seeds} "
                  f"{np.median([l for _, l in results]):>23.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
