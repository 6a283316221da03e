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
    # only the files the run loaded count: a result that used none of the changed files is current
    full = store.stale_files({"commit": root.split()[0]})
    only = store.stale_files({"commit": root.split()[0], "code_files": ["files.py"]})
    assert any(f != "files.py" for f in full) and set(only) <= {"files.py"}
    assert "bench/store.py" in store.loaded_code_files()


def test_only_learning_code_whose_parsed_code_changed_makes_a_result_stale():
    before = 'def f(x):\n    """Doc."""\n    return x + 1  # note\n'
    reworded = 'def f(x):\n    """Other words."""\n\n    return (x\n            + 1)\n'
    changed = 'def f(x):\n    """Doc."""\n    return x + 2\n'
    assert store._code_only(before) == store._code_only(reworded)
    assert store._code_only(before) != store._code_only(changed)
    assert store._is_learning_code("agents/dqn.py") and store._is_learning_code("configs/ebu_atari.yaml")
    assert not store._is_learning_code("bench/report.py") and not store._is_learning_code("cli/train.py")
    root = store._git("rev-list", "--max-parents=0", "HEAD")
    if root and store.stale_files({"commit": root.split()[0]}) is not None:   # the harness never counts
        assert store.stale_files({"commit": root.split()[0], "code_files": ["bench/report.py"]}) == []
        # except the SB3 translation, for a peer's run: its settings come from there
        first = store._git("log", "--format=%H", "--diff-filter=A", "--", "bench/peers.py").split()[-1]
        loaded = {"commit": first, "code_files": ["bench/peers.py"]}
        assert store.stale_files({**loaded, "config": {"agent": "sb3-dqn"}}) == ["bench/peers.py"]
        assert store.stale_files({**loaded, "config": {"agent": "dqn"}}) == []


def test_report_puts_published_atari100k_scores_beside_ours(tmp_path):
    from rewind.bench.runner import prepare_out
    from rewind.bench.scores import atari_table
    from rewind.bench.suite import build_suite

    raw = {"name": "pub", "agents": {"ebu": "ebu"}, "envs": ["krull", "road_runner"], "seeds": [0, 1],
           "config": {"run": {"steps": 100}}, "report": {"published": "atari100k"}}
    suite = build_suite(raw, validate=False)
    out = tmp_path / "out"
    prepare_out(out, suite)
    for spec in suite.runs:   # committed result files only, as a fresh clone has them
        score = 3000.0 + 100 * spec.seed
        curve = [{"step": 100, "frames": 400, "return_mean": score, "return_std": 0.0}]
        store.write_result(out, spec.run_id, {}, curve, {"steps": 100}, 1.0, 1.0, {"commit": None, "dirty": None})
    report = build_report(out, reps=100, plots=False)
    rows = {r["env"]: r for r in report["published"]["rows"]}
    assert rows["krull"]["DrQ_eps"] == 4402.1 and rows["road_runner"]["SPR"] == 12213.1
    assert rows["krull"]["rewind ebu"] == 3050.0
    h = atari_table()
    hns = [(v - h[g]["random"]) / (h[g]["human"] - h[g]["random"]) for g, v in (("krull", 4402.1),
                                                                                 ("road_runner", 11211.4))]
    assert report["published"]["median_normalized_same_games"]["DrQ_eps"] == pytest.approx(sum(hns) / 2)
    assert "Beside published results" in (out / "report.md").read_text()


def test_report_puts_published_minatar_dqn_beside_ours_normalised_as_ours(tmp_path):
    from rewind.bench.runner import prepare_out
    from rewind.bench.scores import published_scores
    from rewind.bench.suite import build_suite

    scores = {"minatar-breakout": {"random": 0.4, "reference": 30.0}, "minatar-freeway": {"random": 0.4, "reference": 60.0}}
    raw = {"name": "pub", "agents": {"dqn": "dqn"}, "envs": list(scores), "seeds": [0],
           "config": {"run": {"steps": 100}}, "scores": scores, "report": {"published": "minatar"}}
    suite = build_suite(raw, validate=False)
    out = tmp_path / "out"
    prepare_out(out, suite)
    for spec in suite.runs:
        curve = [{"step": 100, "frames": 100, "return_mean": 5.0, "return_std": 0.0}]
        store.write_result(out, spec.run_id, {}, curve, {"steps": 100}, 1.0, 1.0, {"commit": None, "dirty": None})
    report = build_report(out, reps=100, plots=False)
    table = published_scores("minatar")["DQN_5M_Xu"]
    rows = {r["env"]: r for r in report["published"]["rows"]}
    assert rows["minatar-breakout"]["DQN_5M_Xu"] == table["breakout"] == 27.76
    assert rows["minatar-freeway"]["rewind dqn"] == 5.0
    # normalised with the suite's random/reference, as our own scores are (not a human table)
    expected = [(table["breakout"] - 0.4) / 29.6, (table["freeway"] - 0.4) / 59.6]
    assert report["published"]["median_normalized_same_games"]["DQN_5M_Xu"] == pytest.approx(sum(expected) / 2)
    assert "Published median normalized score" in (out / "report.md").read_text()
