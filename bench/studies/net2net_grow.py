"""Net2Net growth check and after-growth comparison for the results of the `net2net_grow` suite.

Not a suite itself: the runs are the suite `bench/suites/net2net_grow.yaml` (narrow / grown /
wide labels, run by `rewind bench run`, which also writes the generic report). This helper
only reads that suite's result files and adds what the generic report does not compute:

- the function-preservation check: the evaluation at the growth step runs just after the
  growth, so a grown run scores what the narrow run of the same seed scores there only if the
  widened Q-network acts as the narrow one;
- the mean eval return after the growth step per variant (mean and 95% t interval over seeds)
  and P(grown > wide), P(grown > narrow) on it (bootstrap 95% CI, bench/stats.py);
- growth.png: eval return vs env steps (mean +- sd over seeds) with the growth step marked.

    rewind bench run net2net_grow --out bench/results/net2net_grow --workers 1
    python -m rewind.bench.studies.net2net_grow bench/results/net2net_grow

Writes growth.md and growth.json into the results folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from rewind.errors import RewindError, exit_code, require
from rewind.files import atomic_write_json, atomic_write_text

VARIANTS = ("narrow", "grown", "wide")


def growth_summary(out: str | Path, reps: int = 2000) -> dict:
    """Per variant: seeds, steps, eval returns (seed x step), mean after the growth step; the check; PoI."""
    from rewind.bench.report import collect
    from rewind.bench.stats import poi_with_ci, t_interval
    from rewind.bench.suite import resolve_run

    data = collect(Path(out))
    suite, curves = data["suite"], data["curves"]
    missing = [v for v in VARIANTS if v not in suite.agents]
    if missing:
        raise RewindError(f"{out} is not a net2net_grow results folder: no label(s) {', '.join(missing)}")
    grown_spec = next(s for s in suite.runs if s.label == "grown")
    run = resolve_run(grown_spec).run
    grow_at, factor = run.grow_at, run.widen
    if grow_at <= 0:
        raise RewindError(f"{out}: the grown label does not grow (run.grow_at = {grow_at})")
    env = suite.envs[0]
    variants = {}
    for v in VARIANTS:
        runs = curves.get(v, {}).get(env, {})
        if not runs:
            continue
        seeds = sorted(runs)
        n = min(len(runs[s]) for s in seeds)
        steps = np.array([e["step"] for e in runs[seeds[0]][:n]])
        ret = np.array([[e["return_mean"] for e in runs[s][:n]] for s in seeds])
        after = ret[:, steps > grow_at].mean(1)
        variants[v] = {"seeds": seeds, "steps": steps.tolist(), "eval_return": ret.tolist(),
                       "after_growth": after.tolist(), "after_growth_mean_ci95": list(t_interval(after)),
                       "before_growth_mean": float(ret[:, steps <= grow_at].mean()),
                       "final_mean_ci95": list(t_interval(ret[:, -1]))}
    if "grown" not in variants or "narrow" not in variants:
        raise RewindError(f"{out} has no finished grown and narrow runs yet")
    check = []
    g, nr = variants["grown"], variants["narrow"]
    if grow_at in g["steps"] and grow_at in nr["steps"]:
        i, j = g["steps"].index(grow_at), nr["steps"].index(grow_at)
        for s in sorted(set(g["seeds"]) & set(nr["seeds"])):
            a, b = g["eval_return"][g["seeds"].index(s)][i], nr["eval_return"][nr["seeds"].index(s)][j]
            check.append({"seed": s, "grown": a, "narrow": b, "same": a == b})
    poi = {}
    for other in ("wide", "narrow"):
        if other in variants:
            est, lo, hi = poi_with_ci({"t": np.array(g["after_growth"])},
                                      {"t": np.array(variants[other]["after_growth"])}, reps=reps, seed=0)
            poi[f"grown > {other}"] = [est, lo, hi]
    return {"suite": suite.name, "env": env, "grow_at": grow_at, "widen": factor, "variants": variants,
            "check_at_growth": check, "poi_after_growth": poi, "missing": data["missing"], "failed": data["failed"]}


def write_growth_report(out: str | Path, reps: int = 2000, plot: bool = True) -> str:
    out = Path(out)
    r = growth_summary(out, reps)
    rows = []
    for v, d in r["variants"].items():
        (am, ah), (fm, fh) = d["after_growth_mean_ci95"], d["final_mean_ci95"]
        rows.append(f"| {v} | {len(d['seeds'])} | {d['before_growth_mean']:.2f} | {am:.2f} +- {ah:.2f} | "
                    f"{fm:.2f} +- {fh:.2f} |")
    same = sum(c["same"] for c in r["check_at_growth"])
    lines = [f"# Net2Net growth: {r['env']}, widened x{r['widen']:g} at step {r['grow_at']:,}", "",
             "Eval returns from the result files of the net2net_grow suite; mean +- half-width of the 95% "
             "t interval over seeds.", "",
             "| variant | seeds | mean eval return up to the growth step | mean eval return after it | "
             "final eval return |", "|---|---|---|---|---|", *rows, "",
             f"Check: at the growth step (evaluated just after growing) grown and narrow runs of the same seed "
             f"score the same in {same}/{len(r['check_at_growth'])} seeds.", ""]
    lines += [f"P({k}) on the mean eval return after the growth step: {e:.2f} [95% CI {lo:.2f}, {hi:.2f}] "
              "(0.5 = no difference)" for k, (e, lo, hi) in r["poi_after_growth"].items()]
    if r["missing"] or r["failed"]:
        lines += ["", "Not finished: " + ", ".join(m["run_id"] for m in r["missing"] + r["failed"])]
    if plot:
        _plot(out / "growth.png", r)
        lines += ["", "![growth](growth.png)"]
    text = "\n".join(lines) + "\n"
    atomic_write_json(out / "growth.json", r)
    atomic_write_text(out / "growth.md", text)
    return text


def _plot(path: Path, r: dict) -> None:
    matplotlib = require("matplotlib", "bench", "plotting")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rewind.bench.curves import plot_mean_band

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for v, d in r["variants"].items():
        plot_mean_band(ax, np.array(d["steps"]), np.array(d["eval_return"]), v)
    ax.axvline(r["grow_at"], color="gray", ls="--", lw=1, label=f"growth x{r['widen']:g} (grown)")
    ax.set_xlabel("env steps")
    ax.set_ylabel("evaluation return")
    ax.set_title(f"Net2WiderNet mid-training on {r['env']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m rewind.bench.studies.net2net_grow", description=__doc__.splitlines()[0],
                                epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", help="results folder of `rewind bench run net2net_grow`")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap replicates (default 2000)")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    return exit_code(lambda: print(write_growth_report(args.dir, args.reps, not args.no_plot)) or 0)


if __name__ == "__main__":
    sys.exit(main())
