"""`rewind curriculum maze`: the options of the former maze curriculum study, run as the suite `curriculum_maze`.

Not a suite itself: the sweep (teacher conditions x seeds, tabular-q on the digit maze) is
`bench/suites/curriculum_maze.yaml`, run by the bench harness (resume, workers, report). This
module only keeps the command line of `rewind curriculum maze` / `python -m
rewind.bench.studies.curriculum_maze`: it maps those options onto the suite (an option left out
keeps the suite's value, so no option = the shipped suite, and the results folder is shared
with `rewind bench run curriculum_maze`), runs it and adds a paired test of each condition
against `fixed` (Wilcoxon, paired by seed = same maze) on the env steps to solve the hardest
maze, with unsolved runs counted at the run length (OUT/paired_tests.md).

    rewind bench run curriculum_maze --out bench/results/curriculum_maze --workers 1
    python -m rewind.bench.studies.curriculum_maze --seeds 5 --out bench/results/curriculum_maze
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from rewind.errors import RewindError, exit_code
from rewind.files import atomic_write_text

CONDITIONS = ("tscl-window", "tscl-online", "tscl-sampling", "plr", "uniform", "fixed")
SUITE = "curriculum_maze"


def build_parser(parser=None):
    p = parser or argparse.ArgumentParser(prog="python -m rewind.bench.studies.curriculum_maze",
                                          description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (suite: 5)")
    p.add_argument("--conditions", nargs="+", default=None, choices=CONDITIONS,
                   help="teachers (suite: tscl-window uniform fixed); fixed = the hardest maze only")
    p.add_argument("--densities", type=float, nargs="+", default=None, help="suite: 0.0 0.1 0.2 0.3 0.4 0.5")
    p.add_argument("--size", type=int, default=None, help="maze size (suite: 10)")
    p.add_argument("--max-steps", type=int, default=None, help="env steps per run (suite: 200000)")
    p.add_argument("--episode-steps", type=int, default=None, help="training episode time limit (suite: 300)")
    p.add_argument("--eval-every", type=int, default=None, help="steps between solve checks (suite: 1000)")
    p.add_argument("--solve-factor", type=float, default=None,
                   help="solved = path <= this x shortest path (suite: 1)")
    p.add_argument("--eps-decay-steps", type=int, default=None, help="suite: 20000")
    p.add_argument("--buffer-size", type=int, default=None, help="student's replay size (suite: 1000000)")
    p.add_argument("--updates-per-step", type=int, default=None, help="student's replayed updates per step (suite: 1)")
    p.add_argument("--out", default=f"bench/results/{SUITE}", help="results folder (one suite setting per folder)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--logdir", default=None,
                   help="ignored: each run's TensorBoard events are in its folder under OUT/runs")
    p.add_argument("--no-progress", action="store_true", help="accepted for compatibility (no progress bars)")
    return p


def suite_raw(args) -> dict:
    """The shipped suite with the given options applied."""
    import yaml

    from rewind.bench.suite import SUITE_DIR

    raw = yaml.safe_load((SUITE_DIR / f"{SUITE}.yaml").read_text())
    cfg = raw["config"]
    if args.seeds is not None:
        raw["seeds"] = args.seeds
    if args.conditions is not None:
        raw["agents"] = {c: {"agent": "tabular-q", "set": {"curriculum.name": c}} for c in args.conditions}
    if args.size is not None or args.densities is not None:
        size = args.size if args.size is not None else cfg["env"]["size"]
        densities = sorted(args.densities) if args.densities is not None else \
            sorted(d for _, d in cfg["curriculum"]["options"]["tasks"])
        cfg["env"].update(size=size, density=densities[-1])
        cfg["curriculum"]["options"]["tasks"] = [[size, d] for d in densities]
    for opt, section, key in (("max_steps", "run", "steps"), ("eval_every", "run", "eval_every"),
                              ("eps_decay_steps", "agent", "eps_decay_steps"), ("buffer_size", "agent", "buffer_size"),
                              ("updates_per_step", "agent", "updates_per_step")):
        if getattr(args, opt) is not None:
            cfg[section][key] = getattr(args, opt)
    if args.episode_steps is not None:
        cfg["env"]["max_steps"] = cfg["run"]["eval_max_steps"] = args.episode_steps
    if args.solve_factor is not None:
        raw["report"]["threshold"] = args.solve_factor
    return raw


def paired_tests(rel: dict, env: str) -> dict:
    """Wilcoxon p of each condition vs `fixed` on steps to solve (unsolved = run length), paired by seed."""
    from scipy import stats

    rows = rel.get(env, {})
    if "fixed" not in rows:
        return {}
    ref = rows["fixed"]
    out = {}
    for cond, d in rows.items():
        if cond == "fixed":
            continue
        seeds = sorted(set(d["seeds"]) & set(ref["seeds"]))
        cap = max(d["last_step"], ref["last_step"])
        x = np.array([min(d["steps_to_threshold"][d["seeds"].index(s)], cap) for s in seeds])
        y = np.array([min(ref["steps_to_threshold"][ref["seeds"].index(s)], cap) for s in seeds])
        out[f"{cond} vs fixed"] = float(stats.wilcoxon(x, y).pvalue) if len(seeds) and np.any(x != y) else None
    return out


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        from rewind.bench.report import build_report
        from rewind.bench.runner import run_suite
        from rewind.bench.suite import build_suite

        if args.workers < 1:
            raise RewindError("--workers must be >= 1")
        if args.logdir:
            print("rewind: --logdir is ignored: TensorBoard events are in each run's folder under "
                  f"{args.out}/runs", file=sys.stderr)
        suite = build_suite(suite_raw(args), default_name=SUITE)
        result = run_suite(suite, args.out, workers=args.workers)
        if result["interrupted"]:
            print("rewind: re-run the same command to resume", file=sys.stderr)
            return 143 if result.get("stopped_by") == "SIGTERM" else 130
        report = build_report(args.out)
        env = suite.envs[0]
        tests = paired_tests(report.get("relative_length", {}), env)
        text = (Path(args.out) / "report.md").read_text()
        section = text.split("## Relative length", 1)[-1].split("\n## ", 1)[0]
        lines = ["## Relative length" + section.rstrip(), ""]
        if tests:
            lines += ["| comparison (paired by seed = same maze) | Wilcoxon p |", "|---|---|"]
            lines += [f"| {k} | {'n/a' if v is None else f'{v:.3g}'} |" for k, v in tests.items()]
        atomic_write_text(Path(args.out) / "paired_tests.md", "\n".join(lines) + "\n")
        print("\n".join(lines))
        return 1 if result["failed"] else 0

    return exit_code(run)


if __name__ == "__main__":
    sys.exit(main())
