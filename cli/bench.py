"""`rewind bench run SUITE --out DIR` and `rewind bench report DIR` (and `rewind bench list`).

The lead's cli.py calls `register(subparsers)`; `python -m rewind.cli.bench ...` works the same.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """\
examples:
  rewind bench list
  rewind bench run smoke --out results/smoke
  rewind bench run maze --out results/maze --workers 2
  rewind bench run atari100k --out /shared/a100k --ray-address auto
  rewind bench report results/smoke

Re-running the same command skips finished runs and resumes interrupted ones from their
checkpoints; a results folder belongs to one suite (same settings) only.
"""


def _cmd_run(args) -> int:
    from rewind.bench.report import build_report
    from rewind.bench.runner import run_suite
    from rewind.bench.suite import load_suite
    from rewind.config import parse_set
    from rewind.errors import RewindError

    if args.workers is not None and args.workers < 1:
        raise RewindError("--workers must be >= 1")
    if args.workers is not None and args.ray_address:
        raise RewindError("--workers is for the local pool; with --ray-address the cluster's CPUs decide")
    suite = load_suite(args.suite, overrides=parse_set(args.set), seeds=args.seeds)
    result = run_suite(suite, args.out, workers=args.workers, ray_address=args.ray_address)
    n_failed, n_int = len(result["failed"]), len(result["interrupted"])
    print(f"rewind bench: {suite.name}: {result['ran']} run(s) in {result['wall_s']:.1f}s, {result['skipped']} "
          f"skipped as finished, {n_failed} failed, {n_int} interrupted", file=sys.stderr)
    if n_int:
        print("rewind bench: re-run the same command to resume", file=sys.stderr)
        return 143 if result.get("stopped_by") == "SIGTERM" else 130
    if not args.no_report:
        try:
            build_report(args.out, reps=args.reps)
            print(f"rewind bench: report in {args.out}/report.md")
        except RewindError as exc:
            print(f"rewind bench: no report: {exc}", file=sys.stderr)
    return 1 if n_failed else 0


def _cmd_report(args) -> int:
    from rewind.bench.report import build_report

    build_report(args.dir, reps=args.reps, plots=not args.no_plots)   # raises when there is nothing to report
    print((Path(args.dir) / "report.md").read_text())
    return 0


def _cmd_list(args) -> int:
    from rewind.bench.suite import load_suite, suite_names
    from rewind.errors import RewindError

    for name in suite_names():
        try:
            s = load_suite(name)
            first = s.description.strip().splitlines()[0] if s.description.strip() else ""
            print(f"{name:14s} {len(s.runs):5d} runs  {first}")
        except RewindError as exc:
            print(f"{name:14s}  (cannot load here: {exc})")
    return 0


def build_parser(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bench_command", metavar="{run,report,list}", required=True)
    r = sub.add_parser("run", help="run a suite (skips finished runs, resumes interrupted ones)", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("suite", help="shipped suite name (`rewind bench list`) or a YAML file")
    r.add_argument("--out", required=True, help="results folder (one suite per folder)")
    r.add_argument("--workers", type=int, default=None,
                   help="local worker processes (default: CPUs / resources.cpus)")
    r.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="run on an existing Ray cluster: auto or host:port; --out must be visible to every node")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override the suite's shared config, e.g. run.steps=20000 (a changed suite: "
                        "use a new --out)")
    r.add_argument("--seeds", type=int, default=None, help="use seeds 0..N-1 instead of the suite's")
    r.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    r.add_argument("--reps", type=int, default=2000, help="bootstrap replicates for the report (default 2000)")
    r.set_defaults(func=_cmd_run)
    rep = sub.add_parser("report", help="write report.md, report.json and plots for a results folder")
    rep.add_argument("dir", help="results folder of `rewind bench run`")
    rep.add_argument("--reps", type=int, default=2000, help="bootstrap replicates (default 2000)")
    rep.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    rep.set_defaults(func=_cmd_report)
    ls = sub.add_parser("list", help="the shipped suites")
    ls.set_defaults(func=_cmd_list)


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="sample-efficiency benchmarks: run suites, write reports",
                              description="Run benchmark suites (agents x envs x seeds) and report "
                                          "human-normalized aggregates with bootstrap CIs.")
    build_parser(p)


def main(argv: list[str] | None = None) -> int:
    from rewind.errors import exit_code

    parser = argparse.ArgumentParser(prog="rewind bench")
    build_parser(parser)
    args = parser.parse_args(argv)
    return exit_code(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
