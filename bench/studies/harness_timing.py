"""Harness cost: overhead vs a bare `rewind train` of the same run, and scaling with workers / Ray.

Not a suite: it times the harness itself (overhead per run, scaling with workers and Ray).

overhead: one run (dqn on CartPole, torch limited to 1 thread in both) as `rewind train` and
as a one-run suite under `rewind bench run --workers 1 --no-report`, each a fresh process,
alternated `--repeats` times; the medians are compared. The harness adds one worker process
(a second import of torch) and its bookkeeping files; training code is the same.

scaling: `--runs` small runs with 1 local worker, with 2 local workers, and on a local Ray
cluster with 2 CPUs (started here, in this process); wall-clock times and ratios.

    nice -n 5 python -m rewind.bench.studies.harness_timing overhead --steps 20000 --repeats 3
    nice -n 5 python -m rewind.bench.studies.harness_timing scaling --runs 8 --steps 3000
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def _suite(steps: int, seeds: int) -> dict:
    return {"name": "timing", "agents": {"dqn": "dqn"}, "envs": ["CartPole-v1"], "seeds": seeds,
            "config": {"run": {"steps": steps, "eval_every": 0, "eval_episodes": 5, "torch_threads": 1,
                               "checkpoint_every": 0}}}


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def overhead(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="rewind-overhead-"))
    suite = tmp / "suite.yaml"
    suite.write_text(yaml.safe_dump(_suite(args.steps, 1)))
    bare, harness = [], []
    for i in range(args.repeats):
        bare.append(_timed([sys.executable, "-m", "rewind.cli", "train", "--agent", "dqn", "--env", "CartPole-v1",
                            "--steps", str(args.steps), "--logdir", str(tmp / f"bare{i}"), "--no-progress",
                            "--set", "run.torch_threads=1", "--set", "run.eval_every=0",
                            "--set", "run.checkpoint_every=0", "--set", "run.eval_episodes=5"]))
        harness.append(_timed([sys.executable, "-m", "rewind.cli.bench", "run", str(suite), "--out",
                               str(tmp / f"bench{i}"), "--workers", "1", "--no-report"]))
        print(f"repeat {i}: bare {bare[-1]:.2f}s  harness {harness[-1]:.2f}s", file=sys.stderr)
    b, h = statistics.median(bare), statistics.median(harness)
    shutil.rmtree(tmp, ignore_errors=True)
    return {"steps": args.steps, "bare_s": bare, "harness_s": harness, "bare_median_s": b, "harness_median_s": h,
            "overhead_s": h - b, "overhead_pct": 100 * (h - b) / b}


def scaling(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="rewind-scaling-"))
    suite = tmp / "suite.yaml"
    suite.write_text(yaml.safe_dump(_suite(args.steps, args.runs)))
    result = {"runs": args.runs, "steps": args.steps}
    for workers in (1, 2):
        result[f"local_{workers}_s"] = _timed([sys.executable, "-m", "rewind.cli.bench", "run", str(suite), "--out",
                                               str(tmp / f"w{workers}"), "--workers", str(workers), "--no-report"])
        print(f"{workers} local worker(s): {result[f'local_{workers}_s']:.1f}s", file=sys.stderr)
    result["ratio_2_vs_1"] = result["local_2_s"] / result["local_1_s"]
    try:
        import ray
    except ImportError:
        result["ray_2cpu_s"] = None
    else:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        try:
            address = ray.get_runtime_context().gcs_address
            result["ray_2cpu_s"] = _timed([sys.executable, "-m", "rewind.cli.bench", "run", str(suite), "--out",
                                           str(tmp / "ray"), "--ray-address", address, "--no-report"])
        finally:
            ray.shutdown()
        result["ratio_ray_vs_1"] = result["ray_2cpu_s"] / result["local_1_s"]
        print(f"Ray, 2 CPUs: {result['ray_2cpu_s']:.1f}s", file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    o = sub.add_parser("overhead")
    o.add_argument("--steps", type=int, default=20000)
    o.add_argument("--repeats", type=int, default=3)
    s = sub.add_parser("scaling")
    s.add_argument("--runs", type=int, default=8)
    s.add_argument("--steps", type=int, default=3000)
    args = p.parse_args(argv)
    print(json.dumps(overhead(args) if args.what == "overhead" else scaling(args), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
