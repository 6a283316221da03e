"""The smoke suite on a real local Ray cluster (2 CPUs) started by the test: same runs, same files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from rewind.bench.suite import load_suite

ray = pytest.importorskip("ray")


def test_smoke_suite_on_a_local_ray_cluster(tmp_path, small_smoke):
    suite_path, out = small_smoke(), tmp_path / "out"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        address = ray.get_runtime_context().gcs_address
        cmd = [sys.executable, "-m", "rewind.cli.bench", "run", str(suite_path), "--out", str(out),
               "--ray-address", address, "--reps", "300"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"Ray at {address}" in proc.stderr
    finally:
        ray.shutdown()
    suite = load_suite(suite_path)
    pids = set()
    for spec in suite.runs:
        run = out / "runs" / spec.run_id
        st = json.loads((run / "status.json").read_text())
        assert st["state"] == "done", st
        pids.add(st["pid"])
        evals = json.loads((run / "evaluations.json").read_text())
        assert evals[-1]["step"] == 600 and len(evals[-1]["returns"]) == 3
        assert list(run.glob("events.out.tfevents.*"))
    # the runs were Ray tasks: executed in the cluster's worker processes, not in the driver
    assert os.getpid() not in pids and len(pids) >= 2
    report = (out / "report.md").read_text()
    ci = re.compile(r"-?\d+\.\d{3} \[-?\d+\.\d{3}, -?\d+\.\d{3}\]")
    for label in ("dqn", "ebu", "sb3-dqn"):
        row = next(line for line in report.splitlines() if line.startswith(f"| {label} | "))
        assert len(ci.findall(row)) == 4, row
