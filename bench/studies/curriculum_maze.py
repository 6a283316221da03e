"""RL curriculum on the digit maze: a TSCL teacher vs uniform task sampling vs the hardest maze only.

Tasks: one 10x10 maze layout seed per run seed, wall densities 0.0 .. 0.5 (easy -> hard). The
maze draws walls as `uniform < density` from the layout seed, so a sparser maze has a subset of
the walls of a denser one (unless the generator had to redraw for a path): what is learnt on an
easy maze partly holds on a hard one. Student: rewind's tabular Q-learning (`tabular-q`, cell-index
observations). The teacher picks a density per episode through `wrap_with_curriculum`.

Metric: env steps (over all tasks) until the greedy student solves the hardest maze, checked
every --eval-every steps on a separate copy of that maze: solved = reaches the goal within
--solve-factor x the shortest path. Runs that never solve count as --max-steps (censored; the
table says how many). Own small loop rather than agents.loop.train, because the run stops at
the first solve.

    python -m rewind.bench.studies.curriculum_maze --seeds 10 --out bench/results/curriculum
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from rewind.errors import RewindError

CONDITIONS = ("tscl-window", "tscl-online", "tscl-sampling", "plr", "uniform", "fixed")


def build_parser(parser=None):
    p = parser or argparse.ArgumentParser(prog="python -m rewind.bench.studies.curriculum_maze",
                                          description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--conditions", nargs="+", default=["tscl-window", "uniform", "fixed"], choices=CONDITIONS,
                   help="fixed = the hardest maze only")
    p.add_argument("--densities", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    p.add_argument("--size", type=int, default=10)
    p.add_argument("--max-steps", type=int, default=200_000, help="env steps per run at most")
    p.add_argument("--episode-steps", type=int, default=300, help="training episode time limit")
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--solve-factor", type=float, default=1.0, help="solved = path <= this x shortest path")
    p.add_argument("--eps-decay-steps", type=int, default=20_000)
    p.add_argument("--buffer-size", type=int, default=1_000_000, help="student's replay size (tabular-q)")
    p.add_argument("--updates-per-step", type=int, default=1, help="student's replayed updates per step")
    p.add_argument("--out", default="bench/results/curriculum")
    p.add_argument("--logdir", default=None, help="TensorBoard directory (default: <out>/tb_maze)")
    p.add_argument("--no-progress", action="store_true")
    return p


def greedy_solves(agent, env, limit: int) -> tuple[bool, int]:
    obs, _ = env.reset(seed=0)
    for step in range(1, limit + 1):
        obs, _, term, trunc, _ = env.step(agent.act(obs, explore=False))
        if term:
            return True, step
        if trunc:
            break
    return False, limit


def one_run(cond: str, seed: int, args, writer=None) -> dict:
    import gymnasium as gym

    from rewind.agents import make_agent
    from rewind.controllers.curriculum_env import wrap_with_curriculum
    from rewind.envs import make_env

    base = dict(size=args.size, maze_seed=seed, observation="index", max_steps=args.episode_steps)
    hardest = max(args.densities)
    env = make_env("rewind/maze-v0", dict(base, density=hardest))
    tasks = [[args.size, d] for d in sorted(args.densities)]
    options = {"tasks": tasks, "seed": seed}
    env = wrap_with_curriculum("rewind/maze-v0", env, cond, options)
    eval_env = gym.make("rewind/maze-v0", **dict(base, density=hardest, max_steps=10 * args.size ** 2))
    shortest = eval_env.unwrapped.shortest_path
    limit = int(np.floor(args.solve_factor * shortest))
    agent = make_agent("tabular-q", env, {"eps_decay_steps": args.eps_decay_steps, "buffer_size": args.buffer_size,
                                        "updates_per_step": args.updates_per_step}, seed=seed)
    obs, _ = env.reset(seed=seed)
    solved_at, steps = None, 0
    while steps < args.max_steps:
        action = agent.act(obs)
        nxt, r, term, trunc, info = env.step(action)
        agent.observe(obs, action, r, nxt, term, trunc, info)
        agent.update()
        steps += 1
        obs = nxt
        if term or trunc:
            obs, _ = env.reset()
        if steps % args.eval_every == 0:
            ok, length = greedy_solves(agent, eval_env, limit)
            if writer is not None:
                writer.add_scalar(f"{cond}/seed{seed}/greedy_length_hardest", length, steps)
            if ok:
                solved_at = steps
                break
    share = env.episodes_per_task / max(1, env.episodes_per_task.sum())
    return dict(condition=cond, seed=seed, solved=solved_at is not None,
                steps_to_solve=solved_at if solved_at is not None else args.max_steps,
                shortest_path=shortest, episode_share=share.round(3).tolist())


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.seeds < 1 or args.max_steps < 1 or args.eval_every < 1 or not args.densities:
        print("error: --seeds, --max-steps, --eval-every must be positive and --densities non-empty", file=sys.stderr)
        return 2
    import pandas as pd
    from scipy import stats
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(args.logdir or str(out / "tb_maze"))
    rows = []
    t0 = time.time()
    try:
        for run in tqdm([(c, s) for c in args.conditions for s in range(args.seeds)], desc="maze runs",
                        disable=args.no_progress):
            rows.append(one_run(*run, args, writer))
    except RewindError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    writer.close()
    df = pd.DataFrame(rows)
    df.to_csv(out / "maze_curriculum_results.csv", index=False)
    lines = ["| condition | runs | solved | env steps to solve hardest: median | mean | min..max |",
             "|---|---|---|---|---|---|"]
    for c in args.conditions:
        d = df[df.condition == c]
        s = d.steps_to_solve
        lines.append(f"| {c} | {len(d)} | {int(d.solved.sum())} | {s.median():.0f} | {s.mean():.0f} | "
                     f"{s.min():.0f}..{s.max():.0f} |")
    tests = {}
    if "fixed" in args.conditions:
        ref = df[df.condition == "fixed"].sort_values("seed").steps_to_solve.to_numpy()
        for c in args.conditions:
            if c == "fixed":
                continue
            x = df[df.condition == c].sort_values("seed").steps_to_solve.to_numpy()
            w = stats.wilcoxon(x, ref) if np.any(x != ref) else None
            tests[f"{c} vs fixed"] = None if w is None else float(w.pvalue)
        lines += ["", "| comparison (paired by seed = same maze) | Wilcoxon p |", "|---|---|"]
        lines += [f"| {k} | {'n/a' if v is None else f'{v:.3g}'} |" for k, v in tests.items()]
    table = "\n".join(lines)
    (out / "maze_curriculum_table.md").write_text(table + "\n")
    (out / "maze_curriculum_summary.json").write_text(json.dumps(
        dict(args=vars(args), seconds=time.time() - t0, tests=tests), indent=2))
    print(table)
    print(f"{len(rows)} runs in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
