"""Learning curves of agents x envs x seeds: run them (skipping finished runs), then plot and tabulate.

Each run is a plain `rewind train` run (its own logdir with TensorBoard events,
evaluations.json and a checkpoint), so an interrupted sweep resumes where it stopped.

    python -m rewind.bench.curves --agents dqn,ebu --envs minatar-breakout,minatar-asterix \\
        --seeds 0,1,2 --steps 100000 --out bench/results/minatar
    python -m rewind.bench.curves --out bench/results/minatar --plot-only
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rewind.files import atomic_write_text
from rewind.errors import require


def run_dir(out: Path, agent: str, env: str, seed: int) -> Path:
    return out / "runs" / f"{agent}__{env.replace('/', '_')}__s{seed}"


def run_all(args) -> None:
    from rewind.run.experiment import finished, resolve, run_or_resume
    from rewind.config import parse_set

    for env in args.envs:
        for agent in args.agents:
            for seed in args.seeds:
                d = run_dir(args.out, agent, env, seed)
                if finished(d):
                    print(f"done already: {d.name}", flush=True)
                    continue
                exp = resolve(agent, env, None, parse_set(args.set), args.steps, seed)
                print(f"running {d.name} for {exp.run.steps} steps", flush=True)
                run_or_resume(exp, d, progress=args.progress)


def load_curves(out: Path) -> dict:
    """{(agent, env): {seed: (steps array, mean-return array)}} from every run's evaluations.json."""
    curves: dict = {}
    for f in sorted((out / "runs").glob("*/evaluations.json")):
        agent, env, seed = f.parent.name.split("__")
        evals = json.loads(f.read_text())
        steps = np.array([e["step"] for e in evals])
        means = np.array([e["return_mean"] for e in evals])
        curves.setdefault((agent, env), {})[int(seed.removeprefix("s"))] = (steps, means)
    return curves


def stacked(runs: dict) -> tuple[np.ndarray, np.ndarray]:
    """(steps, returns[seed, step]) of {seed: (steps, means)}, seeds in order, cut to the shortest run."""
    seeds = sorted(runs)
    n = min(len(runs[s][0]) for s in seeds)
    return runs[seeds[0]][0][:n], np.stack([runs[s][1][:n] for s in seeds])


def plot_mean_band(ax, steps: np.ndarray, returns: np.ndarray, label: str) -> None:
    """Mean over seeds with a +-1 sd band."""
    mu, sd = returns.mean(0), returns.std(0)
    ax.plot(steps, mu, label=f"{label} ({len(returns)} seeds)")
    ax.fill_between(steps, mu - sd, mu + sd, alpha=0.2)


def report(out: Path) -> str:
    matplotlib = require("matplotlib", "bench", "plotting")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = load_curves(out)
    envs = sorted({e for _, e in curves})
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.6), squeeze=False)
    lines = ["| env | agent | seeds | steps | final eval return (mean +- sd over seeds) | "
             "mean eval return over the run (area) |", "|---|---|---|---|---|---|"]
    for ax, env in zip(axes[0], envs):
        for (agent, e), runs in sorted(curves.items()):
            if e != env:
                continue
            steps, m = stacked(runs)
            plot_mean_band(ax, steps, m, agent)
            lines.append(f"| {env} | {agent} | {len(runs)} | {int(steps[-1])} | {m[:, -1].mean():.2f} +- "
                         f"{m[:, -1].std():.2f} | {m.mean():.2f} |")
        ax.set_title(env)
        ax.set_xlabel("env steps")
        ax.set_ylabel("evaluation return")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    table = "\n".join(lines)
    atomic_write_text(out / "curves.md", table + "\n\n![curves](curves.png)\n")
    return table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", default="dqn,ebu", type=lambda s: s.split(","))
    p.add_argument("--envs", default="minatar-breakout", type=lambda s: s.split(","))
    p.add_argument("--seeds", default="0,1,2", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--steps", type=int, default=None, help="env steps per run (default: the preset's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every run")
    p.add_argument("--out", type=Path, required=True, help="results folder")
    p.add_argument("--plot-only", action="store_true", help="only tabulate and plot what is there")
    p.add_argument("--progress", action="store_true", help="show a progress bar per run")
    args = p.parse_args(argv)
    if not args.plot_only:
        run_all(args)
    print(report(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
