"""Net2Net in RL: a Q-network widened mid-training vs the wide network trained from scratch.

Three variants, same seeds, same settings otherwise:
  narrow  width 1.0 throughout (reference)
  grown   width 1.0, widened x FACTOR by Net2WiderNet at --grow-at (run.grow_at / run.widen)
  wide    width FACTOR from step 0 (agent.width)
Each run is a plain `rewind train` run under OUT/runs/<variant>__<env>__s<seed> (skipped when
finished, resumed when interrupted). The report: eval-return curves (mean +- sd over seeds,
PNG), table.md, results.json; probability of improvement (Mann-Whitney, bootstrap 95% CI,
bench/stats.py) of grown over wide and over narrow on the mean eval return after the growth.

Reduced protocol (so 3 variants x 5 seeds fit ~25 CPU minutes): the dqn_minatar preset with
eps decay 10k steps and learning from 2k steps (MinAtar's own: 100k and 5k), 20k steps.

    python -m rewind.bench.studies.net2net_grow --seeds 0,1,2,3,4 --steps 20000 --out bench/results/net2net
    python -m rewind.bench.studies.net2net_grow --out bench/results/net2net --plot-only
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rewind.files import atomic_write_json
from rewind.bench.curves import load_curves, plot_mean_band, run_dir, stacked
from rewind.bench.markdown import write_result
from rewind.errors import require

REDUCED = ["agent.eps_decay_steps=10000", "agent.learning_starts=2000", "run.eval_every=1000",
           "run.eval_episodes=10", "run.checkpoint_every=0", "run.torch_threads=1"]
VARIANTS = ("narrow", "grown", "wide")


def variant_settings(variant: str, factor: float, grow_at: int) -> list[str]:
    if variant == "grown":
        return [f"run.grow_at={grow_at}", f"run.widen={factor}"]
    if variant == "wide":
        return [f"agent.width={factor}"]
    return []


def run_all(args) -> dict:
    """Run every (variant, seed) not finished yet; returns {run name: CPU seconds} of the runs made now."""
    from rewind.run.experiment import finished, resolve, run_or_resume
    from rewind.config import parse_set

    cpu = {}
    for seed in args.seeds:
        for variant in VARIANTS:
            d = run_dir(args.out, variant, args.env, seed)
            if finished(d):
                print(f"done already: {d.name}", flush=True)
                continue
            sets = REDUCED + variant_settings(variant, args.factor, args.grow_at) + args.set
            exp = resolve(args.agent, args.env, None, parse_set(sets), args.steps, seed)
            print(f"running {d.name} for {exp.run.steps} steps", flush=True)
            t0 = time.process_time()
            run_or_resume(exp, d, progress=args.progress)
            cpu[d.name] = time.process_time() - t0
            print(f"  {cpu[d.name]:.0f} CPU s", flush=True)
    return cpu


def _params(d: Path) -> int | None:
    """Q-network parameter count at the end of a run (from its checkpoint, grown or not); None without one."""
    from rewind.run.checkpoint import load_checkpoint

    if not (d / "checkpoint.pt").exists():   # checkpoints are not committed; results.json keeps the counts
        return None
    q = load_checkpoint(d / "checkpoint.pt")["agent"]["q"]
    return int(sum(v.numel() for v in q.values()))


def report(args, argv, cpu_now: dict) -> str:
    matplotlib = require("matplotlib", "bench", "plotting")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rewind.bench.stats import poi_with_ci

    old = json.loads((args.out / "results.json").read_text()) if (args.out / "results.json").exists() else {}
    cpu = {**old.get("cpu_s", {}), **cpu_now}
    curves = load_curves(args.out)
    runs = {v: curves.get((v, args.env), {}) for v in VARIANTS}   # {variant: {seed: (steps, returns)}}
    if not any(runs.values()):
        raise SystemExit(f"no finished runs under {args.out}/runs")
    n = min(len(s) for rs in runs.values() for s, _ in rs.values())
    steps = stacked(next(rs for rs in runs.values() if rs))[0][:n]
    after = steps > args.grow_at
    fig, ax = plt.subplots(figsize=(6.4, 4))
    rows, per_seed, post = [], {}, {}
    for v, rs in runs.items():
        if not rs:
            continue
        seeds = sorted(rs)
        m = stacked(rs)[1][:, :n]
        plot_mean_band(ax, steps, m, v)
        post[v] = m[:, after].mean(1)
        names = [run_dir(args.out, v, args.env, s).name for s in seeds]
        params = sorted({_params(run_dir(args.out, v, args.env, s)) for s in seeds} - {None})
        params = params or old.get("variants", {}).get(v, {}).get("final_params", [])
        cpus = [cpu[nm] for nm in names if nm in cpu]
        per_seed[v] = {"seeds": seeds, "steps": steps.tolist(), "eval_return": m.tolist(), "final_params": params,
                       "cpu_s": cpus}
        cpu_cell = f"{np.mean(cpus):.0f}" if cpus else "-"
        rows.append(f"| {v} | {len(rs)} | {', '.join(map(str, params))} | {m[:, steps <= args.grow_at].mean():.2f} | "
                    f"{post[v].mean():.2f} +- {post[v].std():.2f} | {m[:, -1].mean():.2f} +- {m[:, -1].std():.2f} | "
                    f"{cpu_cell} |")
    ax.axvline(args.grow_at, color="gray", ls="--", lw=1, label=f"growth x{args.factor:g} (grown)")
    ax.set_xlabel("env steps")
    ax.set_ylabel("evaluation return (10 episodes, eps 0)")
    ax.set_title(f"Net2WiderNet mid-training: {args.agent} on {args.env}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "curves.png", dpi=110)
    plt.close(fig)
    # same seed = same trajectory until the growth step, whose evaluation runs right after the growth:
    # it equals the narrow run's evaluation only if the grown Q-network acts as the narrow one
    at = int(np.searchsorted(steps, args.grow_at))
    common = sorted(set(runs["grown"]) & set(runs["narrow"]))
    pairs = [(runs["grown"][s][1][at], runs["narrow"][s][1][at]) for s in common] if at < n else []
    same = (f"Check: at the growth step (evaluated just after growing) grown and narrow runs of the same seed "
            f"score the same in {sum(a == b for a, b in pairs)}/{len(pairs)} seeds.")
    poi = {}
    for other in ("wide", "narrow"):
        if "grown" in post and other in post:
            est, lo, hi = poi_with_ci({"t": post["grown"]}, {"t": post[other]}, reps=2000, seed=0)
            poi[f"grown>{other}"] = [est, lo, hi]
    table = "\n".join([
        "| variant | seeds | Q-network params at the end | mean eval return up to the growth step | "
        "mean eval return after it (mean +- sd over seeds) | final eval return | CPU s per run |",
        "|---|---|---|---|---|---|---|", *rows])
    body = (f"{args.agent} on {args.env}, {args.steps} steps, growth (Net2WiderNet x{args.factor:g}, "
            f"noise 0) at step {args.grow_at}; reduced protocol: {', '.join(REDUCED + args.set)}.\n"
            "narrow: width 1 throughout; grown: width 1 widened at the growth step; wide: width "
            f"{args.factor:g} from scratch. Evaluation epsilon 0 (preset).\n\n"
            f"{table}\n\n{same}\n\n"
            + "".join(f"P({k.replace('>', ' > ')}) on the mean eval return after the growth step: {e:.2f} "
                      f"[95% CI {lo:.2f}, {hi:.2f}] (0.5 = no difference)\n\n" for k, (e, lo, hi) in poi.items())
            + "![curves](curves.png)")
    write_result(args.out / "table.md", "Net2Net: widened mid-training vs trained wide from scratch",
                 "rewind.bench.studies.net2net_grow", argv, body)
    atomic_write_json(args.out / "results.json", {"env": args.env, "agent": args.agent, "steps": args.steps,
                                                  "grow_at": args.grow_at, "factor": args.factor,
                                                  "settings": REDUCED + args.set, "variants": per_seed,
                                                  "poi_after_growth": poi, "check_at_growth": same,
                                                  "cpu_s": cpu})
    return body


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agent", default="dqn", help="dqn, ebu or ebu-adaptive (default: dqn)")
    p.add_argument("--env", default="minatar-breakout", help="env id (default: minatar-breakout)")
    p.add_argument("--seeds", default="0,1,2", type=lambda s: [int(x) for x in s.split(",")],
                   help="comma-separated seeds (default: 0,1,2)")
    p.add_argument("--steps", type=int, default=20_000, help="env steps per run (default: 20000)")
    p.add_argument("--grow-at", type=int, default=None, help="growth step of the grown variant (default: steps/2)")
    p.add_argument("--factor", type=float, default=2.0, help="widening factor = width of the wide variant (default: 2)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config override (all runs)")
    p.add_argument("--out", type=Path, default=Path("bench/results/net2net"), help="results folder")
    p.add_argument("--plot-only", action="store_true", help="only tabulate and plot the finished runs")
    p.add_argument("--progress", action="store_true", help="show a progress bar per run")
    args = p.parse_args(argv)
    args.grow_at = args.grow_at if args.grow_at is not None else args.steps // 2
    cpu = {} if args.plot_only else run_all(args)
    print(report(args, argv, cpu))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
