"""Digit-maze reproduction of the EBU paper (Lee, Choi, Chung 2019, "MNIST maze"), reduced for CPU.

Relative length (steps of a greedy evaluation episode / shortest path) against env steps for
EBU with beta in {0.25, 0.5, 0.75, 1}, one-step DQN and n-step DQN, on the 10x10 digit maze
with wall density 20% and 50%, deterministic and stochastic (20% random actions); maze
layout seed = run seed, so every agent meets the same mazes. Reports the env steps until the
greedy relative length first reaches <= 1.5 (median over seeds) and the goal "EBU reaches 1.5
in less than half the steps DQN needs".

Protocol (all flags; defaults are the reduced protocol in bench/results/maze/README.md):
every agent shares one network (MLP 128-128 on the 8x16 digit image), Adam, batch 32, one
update per env step, learning starts 1k, target copy every 500 updates, eps 1 -> 0.1 over
10k steps, gamma 0.9, rewards scaled by 1/1000 (goal +1, wall -0.001: the optimal policy is
unchanged, Adam's steps fit Q near 1 instead of 1000); only the targets differ.
Evaluation every --eval-every steps: --eval-episodes greedy (eps 0) episodes, each capped at
--eval-cap steps (a run that does not reach the goal scores cap / shortest path).

    python -m rewind.bench.studies.maze_ebu --seeds 5 --steps 20000 --workers 2
    python -m rewind.bench.studies.maze_ebu --agents ebu-1,dqn --variants d20 --seeds 1 --steps 5000

Writes to --out (small files only): results.json (every run's curve, rewritten atomically
after each run, so an interrupted sweep resumes where it stopped), summary.json, table.md,
curves.png. TensorBoard events and the runs' checkpoints go to --logdir (one folder per run).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np

TARGET = 1.5
VARIANTS = {"d20": "rewind/maze-d20-v0", "d50": "rewind/maze-d50-v0",
            "d20-stoch": "rewind/maze-d20-stoch-v0", "d50-stoch": "rewind/maze-d50-stoch-v0"}


def agent_specs(n_step: int) -> dict[str, tuple[str, dict]]:
    """label -> (registered agent name, agent config overrides)."""
    specs = {f"ebu-{b:g}": ("ebu", {"beta": b}) for b in (0.25, 0.5, 0.75, 1.0)}
    specs["dqn"] = ("dqn", {"n_step": 1})
    specs[f"dqn-n{n_step}"] = ("dqn", {"n_step": n_step})
    return specs


def common_config(args) -> dict:
    return {"network": "mlp", "hidden": [128, 128], "optimizer": "adam", "lr": args.lr, "gamma": args.gamma,
            "batch_size": 32, "buffer_size": args.steps, "learning_starts": args.learning_starts,
            "update_every": 1, "target_update_every": args.target_update, "double": False, "huber_delta": 1.0,
            "max_grad_norm": 10.0, "eps_start": 1.0, "eps_end": 0.1, "eps_decay_steps": args.eps_decay,
            "device": "cpu"}


def run_one(job: dict) -> dict:
    """One training run (in a worker process): returns its evaluation curve."""
    import gymnasium as gym
    import torch

    torch.set_num_threads(1)
    from rewind.agents import make_agent
    from rewind.run.loop import RunConfig, seed_everything, train
    from rewind.envs import make_env

    seed, scale = job["seed"], job["reward_scale"]
    seed_everything(seed)
    env = make_env(job["env"], {"maze_seed": seed}, seed=seed)
    env = gym.wrappers.TransformReward(env, lambda r: r * scale)
    eval_env = make_env(job["env"], {"maze_seed": seed, "max_steps": job["eval_cap"]}, seed=seed + 1)
    shortest = eval_env.unwrapped.shortest_path
    agent = make_agent(job["agent"], env, job["config"], seed=seed)
    run = RunConfig(steps=job["steps"], eval_every=job["eval_every"], eval_episodes=job["eval_episodes"],
                    eval_epsilon=0.0, eval_max_steps=job["eval_cap"], checkpoint_every=0, save_buffer=False,
                    log_every=1000, progress=False)
    t0 = time.process_time()
    logdir = Path(job["logdir"]) / job["name"]
    if (logdir / "checkpoint.pt").exists():  # a rerun of an interrupted sweep starts this run afresh
        (logdir / "checkpoint.pt").unlink()
    train(agent, env, run, eval_env=eval_env, logdir=logdir, seed=seed)
    evals = json.loads((logdir / "evaluations.json").read_text())
    rel = [e["length_mean"] / shortest for e in evals]
    return {"name": job["name"], "label": job["label"], "variant": job["variant"], "seed": seed,
            "shortest_path": shortest, "steps": [e["step"] for e in evals], "relative_length": rel,
            "cpu_s": time.process_time() - t0}


def steps_to_target(steps, rel, target=TARGET) -> float:
    """First evaluation step with relative length <= target (inf if never)."""
    for s, r in zip(steps, rel):
        if r <= target:
            return float(s)
    return float("inf")


def summarize(results: list[dict], labels: list[str], variants: list[str], steps: int) -> dict:
    out = {}
    for v in variants:
        out[v] = {}
        for lab in labels:
            runs = [r for r in results if r["variant"] == v and r["label"] == lab]
            if not runs:
                continue
            hit = [steps_to_target(r["steps"], r["relative_length"]) for r in runs]
            final = [r["relative_length"][-1] for r in runs]
            out[v][lab] = {"seeds": len(runs), "median_steps_to_1.5": float(np.median(hit)),
                           "reached": int(np.isfinite(hit).sum()), "steps_to_1.5": hit,
                           "final_relative_length_median": float(np.median(final))}
        dqn = out[v].get("dqn", {}).get("median_steps_to_1.5")
        ebus = {k: d["median_steps_to_1.5"] for k, d in out[v].items() if k.startswith("ebu-")}
        if dqn is not None and ebus:
            # fastest median; among EBUs that never got there, the one that came closest
            best = min(ebus, key=lambda k: (ebus[k], out[v][k]["final_relative_length_median"]))
            e = ebus[best]
            censored = not np.isfinite(dqn)     # DQN never got there: only a bound on the ratio
            ratio = e / (steps if censored else dqn)
            if not np.isfinite(e):
                met = "undetermined" if censored else "no"  # neither got there within the budget
            elif censored:
                met = "yes" if e < steps / 2 else "undetermined"
            else:
                met = "yes" if e < dqn / 2 else "no"
            out[v]["goal"] = {"best_ebu": best, "best_ebu_steps": e, "dqn_steps": dqn,
                              "ratio": ratio, "ratio_is_upper_bound": censored, "met": met}
    return out


def ratio_text(goal: dict) -> str:
    if not np.isfinite(goal["ratio"]):
        return "-"
    return f"{'<' if goal['ratio_is_upper_bound'] else ''}{goal['ratio']:.2f}"


def write_table(summary: dict, labels: list[str], args, path: Path) -> None:
    def fmt(x):
        return f"{x:,.0f}" if np.isfinite(x) else f">{args.steps:,}"

    lines = [f"Median env steps until the greedy relative length is <= {TARGET} (over seeds; "
             f"reached = seeds that got there within {args.steps:,} steps; final = median relative length "
             f"at the last evaluation).", "",
             "| variant | agent | median steps to 1.5 | reached | final rel. length |", "|---|---|---:|---:|---:|"]
    for v, rows in summary.items():
        for lab in labels:
            if lab in rows:
                d = rows[lab]
                lines.append(f"| {v} | {lab} | {fmt(d['median_steps_to_1.5'])} | {d['reached']}/{d['seeds']} | "
                             f"{d['final_relative_length_median']:.2f} |")
    lines += ["", "Goal: the best EBU reaches 1.5 in less than half the steps one-step DQN needs.", "",
              "| variant | best EBU | its steps | DQN steps | ratio | goal met |", "|---|---|---:|---:|---:|---|"]
    for v, rows in summary.items():
        g = rows.get("goal")
        if g:
            lines.append(f"| {v} | {g['best_ebu']} | {fmt(g['best_ebu_steps'])} | {fmt(g['dqn_steps'])} | "
                         f"{ratio_text(g)} | {g['met']} |")
    path.write_text("\n".join(lines) + "\n")


def plot(results: list[dict], labels: list[str], variants: list[str], path: Path) -> None:
    matplotlib = require("matplotlib", "bench", "plotting")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(variants), figsize=(4.2 * len(variants), 3.6), squeeze=False)
    for ax, v in zip(axes[0], variants):
        for lab in labels:
            runs = [r for r in results if r["variant"] == v and r["label"] == lab]
            if not runs:
                continue
            n = min(len(r["relative_length"]) for r in runs)
            x = np.asarray(runs[0]["steps"][:n])
            y = np.array([r["relative_length"][:n] for r in runs])
            med = np.median(y, axis=0)
            line, = ax.plot(x, med, label=lab, lw=1.6 if lab.startswith("ebu") else 2.2,
                            ls="-" if lab.startswith("ebu") else "--")
            ax.fill_between(x, np.percentile(y, 25, axis=0), np.percentile(y, 75, axis=0), color=line.get_color(),
                            alpha=0.12)
        ax.axhline(TARGET, color="k", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_title(v)
        ax.set_xlabel("env steps")
        ax.set_ylabel("relative length (median, IQR)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rewind.bench.studies.maze_ebu", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5, help="seeds per agent and variant (maze_seed = seed)")
    p.add_argument("--steps", type=int, default=20_000, help="env steps per run (paper: 200k)")
    p.add_argument("--agents", default="all", help="comma list of labels (ebu-0.25, ebu-0.5, ebu-0.75, ebu-1, dqn, "
                   "dqn-nN) or all")
    p.add_argument("--variants", default="all", help=f"comma list of {', '.join(VARIANTS)} or all")
    p.add_argument("--n-step", type=int, default=5, help="n of the n-step DQN baseline")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--gamma", type=float, default=0.9)
    p.add_argument("--reward-scale", type=float, default=1e-3, help="multiply env rewards by this (1 = paper's raw)")
    p.add_argument("--learning-starts", type=int, default=1000)
    p.add_argument("--target-update", type=int, default=500, help="updates between target copies")
    p.add_argument("--eps-decay", type=int, default=10_000)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--eval-episodes", type=int, default=3)
    p.add_argument("--eval-cap", type=int, default=200, help="steps per evaluation episode")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--report-only", action="store_true", help="train nothing: table, summary and curves from "
                   "the runs already in results.json (e.g. of a sweep stopped early)")
    p.add_argument("--out", default="bench/results/maze", help="folder for results.json, table.md, curves.png")
    p.add_argument("--logdir", default="runs/maze_ebu", help="folder for per-run TensorBoard logs")
    return p


def main(argv=None) -> int:
    from tqdm import tqdm

    from rewind.files import atomic_write_json
    from rewind.errors import RewindError

    args = build_parser().parse_args(argv)
    specs = agent_specs(args.n_step)
    labels = list(specs) if args.agents == "all" else args.agents.split(",")
    variants = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    bad = [x for x in labels if x not in specs] + [x for x in variants if x not in VARIANTS]
    if bad or args.seeds < 1 or args.steps < args.eval_every or args.workers < 1:
        raise SystemExit(f"maze_ebu: bad arguments {bad or ''}; labels: {', '.join(specs)}; "
                         f"variants: {', '.join(VARIANTS)}; seeds, workers >= 1, steps >= eval-every")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / "results.json"
    protocol = {k: v for k, v in vars(args).items()
                if k not in ("workers", "out", "logdir", "agents", "variants", "report_only")}
    done = {}
    if res_path.exists():
        old = json.loads(res_path.read_text())
        if old.get("protocol") == protocol:
            done = {r["name"]: r for r in old["runs"]}
    base = common_config(args)
    jobs = []
    for seed in range(args.seeds):  # seed-major: a stopped sweep has whole seeds of every cell
        for v in variants:
            for lab in labels:
                name, extra = specs[lab]
                job_name = f"{v}_{lab}_s{seed}"
                if job_name in done:
                    continue
                jobs.append({"name": job_name, "label": lab, "variant": v, "agent": name, "config": {**base, **extra},
                             "env": VARIANTS[v], "seed": seed, "steps": args.steps, "eval_every": args.eval_every,
                             "eval_episodes": args.eval_episodes, "eval_cap": args.eval_cap,
                             "reward_scale": args.reward_scale, "logdir": args.logdir})
    results = list(done.values())
    if args.report_only:
        jobs = []
        present = {r["variant"] for r in results}
        variants = [v for v in variants if v in present]
    t0 = time.time()
    try:
        with mp.get_context("spawn").Pool(args.workers) as pool, tqdm(total=len(jobs), unit="run") as bar:
            for r in pool.imap_unordered(run_one, jobs):
                results.append(r)
                atomic_write_json(res_path, {"protocol": protocol, "runs": results})
                bar.update(1)
                bar.set_postfix_str(f"{r['name']} {r['cpu_s']:.0f}s")
    except RewindError as exc:
        raise SystemExit(f"maze_ebu: {exc}")
    wall = time.time() - t0
    summary = summarize(results, labels, variants, args.steps)
    cpu = sum(r["cpu_s"] for r in results)
    atomic_write_json(out / "summary.json", {"protocol": protocol, "wall_s_this_call": wall,
                                              "cpu_s_all_runs": cpu, "summary": summary})
    write_table(summary, labels, args, out / "table.md")
    plot(results, labels, variants, out / "curves.png")
    print((out / "table.md").read_text())
    print(f"{len(results)} runs, {cpu / 60:.1f} CPU-min in runs, {wall / 60:.1f} min wall this call -> {out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
