"""Committed per-run result files: a sweep continues from them alone, the report reads them, and a
result from a commit whose learning code has changed is reported stale."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rewind.bench import store
from rewind.bench.report import build_report
from rewind.cli import bench as cli

RAW = {"name": "store", "agents": {"dqn": "dqn"}, "envs": ["CartPole-v1"], "seeds": [0, 1, 2],
       "config": {"agent": {"learning_starts": 200, "hidden": [32]},
                  "run": {"steps": 1500, "eval_every": 500, "eval_episodes": 2, "checkpoint_every": 250,
                          "torch_threads": 1}},
       "scores": {"CartPole-v1": {"random": 20.0, "reference": 500.0}}}


def test_killed_sweep_restarted_from_result_files_alone_redoes_only_unfinished_runs(tmp_path):
    path, out = tmp_path / "suite.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(RAW))
    cmd = [sys.executable, "-m", "rewind.cli.bench", "run", str(path), "--out", str(out), "--workers", "1",
           "--no-report"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    first = store.result_path(out, "dqn/CartPole-v1/s0")
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None and not first.exists():
            time.sleep(0.05)
        assert proc.poll() is None, "the sweep ended before it could be killed: " + proc.stderr.read().decode()
        assert first.exists()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    record = json.loads(first.read_text())
    assert record["final"]["step"] == 1500 and [c["step"] for c in record["curve"]] == [500, 1000, 1500]
    assert record["config"]["agent"] == "dqn" and record["cpu_s"] > 0 and record["wall_s"] > 0
    assert "cpu" in record["machine"] and "commit" in record and "bench" in record["command"]
    assert not store.result_path(out, "dqn/CartPole-v1/s2").exists()

    shutil.rmtree(out / "runs")              # what a fresh clone has: suite.json and results/*.json
    before = first.read_text()
    assert cli.main(["run", str(path), "--out", str(out), "--no-report", "--workers", "1"]) == 0
    assert first.read_text() == before                                   # not redone ...
    assert not (out / "runs" / "dqn" / "CartPole-v1" / "s0").exists()    # ... not even started
    for seed in (1, 2):
        assert store.result_path(out, f"dqn/CartPole-v1/s{seed}").exists()

    shutil.rmtree(out / "runs")
    report = build_report(out, reps=200, plots=False)                    # from the result files alone
    assert report["finished"] == 3 and not report["missing"]


def test_a_result_from_a_commit_with_other_learning_code_is_reported_stale(tmp_path):
    root = store._git("rev-list", "--max-parents=0", "HEAD")
    if not root or store.stale_files({"commit": root.split()[0]}) is None:
        pytest.skip("needs the repository's git history")
    assert store.stale_files({"commit": root.split()[0]})               # the first commit: code changed since
    head = store.code_version()["commit"]
    assert store.stale_files({"commit": head}) == []
