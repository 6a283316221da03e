"""The bench harness on the local pool: smoke end to end, kill and resume, failing runs, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from rewind.cli import bench as cli
from rewind.bench.suite import build_suite, load_suite
from rewind.errors import RewindError
from rewind.files import load_data, save_data

EVAL_KEYS = {"step", "frames", "episodes", "return_mean", "return_std", "returns"}
CI = re.compile(r"-?\d+\.\d{3} \[-?\d+\.\d{3}, -?\d+\.\d{3}\]")


def check_finished_run(run: Path, steps: int, episodes_per_eval: int) -> list[dict]:
    """A finished run holds its evaluation curve in the shared format, and TensorBoard events."""
    evals = json.loads((run / "evaluations.json").read_text())
    assert evals and all(set(e) >= EVAL_KEYS for e in evals)
    assert evals[-1]["step"] == steps
    assert all(len(e["returns"]) == episodes_per_eval for e in evals)
    assert list(run.glob("events.out.tfevents.*")), f"no TensorBoard events in {run}"
    return evals


def status(out: Path, run_id: str) -> dict:
    return json.loads((out / "runs" / run_id / "status.json").read_text())


def write_suite(tmp_path: Path, raw: dict, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def test_shipped_suites_load_and_validate():
    sizes = {name: len(load_suite(name).runs) for name in ("smoke", "maze", "minatar", "atari100k", "atari-ebu10m")}
    assert sizes["atari100k"] == 3 * 26 * 5 and sizes["atari-ebu10m"] == 3 * 49 * 3
    assert sizes["minatar"] == 3 * 5 * 5


def test_smoke_suite_end_to_end_local(tmp_path, small_smoke, capsys):
    suite_path, out = small_smoke(), tmp_path / "out"
    assert cli.main(["run", str(suite_path), "--out", str(out), "--workers", "2", "--reps", "300"]) == 0
    suite = load_suite(suite_path)
    assert len(suite.runs) == 9
    for spec in suite.runs:
        assert status(out, spec.run_id)["state"] == "done"
        check_finished_run(out / "runs" / spec.run_id, 600, 3)
    # the SB3 peer ran with the translated rewind settings (2 workers: both processes used)
    peer = json.loads((out / "runs" / "sb3-dqn" / "CartPole-v1" / "s0" / "config.yaml").read_text())
    assert peer["agent"] == "sb3-dqn" and peer["agent_config"]["learning_starts"] == 200
    assert len({status(out, s.run_id)["pid"] for s in suite.runs}) == 2
    # the report: one aggregate row per agent, each metric with its CI, and the plots
    report = (out / "report.md").read_text()
    for label in ("dqn", "ebu", "sb3-dqn"):
        row = next(line for line in report.splitlines() if line.startswith(f"| {label} | "))
        assert len(CI.findall(row)) == 4, row
    data = json.loads((out / "report.json").read_text())
    for agg in data["aggregates"].values():
        for point, lo, hi in agg.values():
            assert lo <= hi
    assert "dqn > ebu" in data["probability_of_improvement"]
    for png in ("curves.png", "profiles.png", "per_game.png"):
        assert (out / png).stat().st_size > 1000
    # re-running the same suite skips every finished run
    before = {s.run_id: status(out, s.run_id) for s in suite.runs}
    capsys.readouterr()
    assert cli.main(["run", str(suite_path), "--out", str(out), "--no-report"]) == 0
    assert "9 already done" in capsys.readouterr().err
    assert before == {s.run_id: status(out, s.run_id) for s in suite.runs}


def test_killed_suite_resumes_without_redoing_finished_runs(tmp_path):
    raw = {"name": "resume", "agents": {"dqn": "dqn"}, "envs": ["CartPole-v1"], "seeds": [0, 1],
           "config": {"agent": {"learning_starts": 200},
                      "run": {"steps": 2000, "eval_every": 500, "eval_episodes": 2, "checkpoint_every": 250}}}
    path, out = write_suite(tmp_path, raw), tmp_path / "out"
    cmd = [sys.executable, "-m", "rewind.cli.bench", "run", str(path), "--out", str(out), "--workers", "1",
           "--no-report"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first, second = out / "runs" / "dqn" / "CartPole-v1" / "s0", out / "runs" / "dqn" / "CartPole-v1" / "s1"
    deadline = time.time() + 90
    try:
        while time.time() < deadline and proc.poll() is None:
            done = (first / "status.json").exists()
            if done and (second / "checkpoint.pt").exists():
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the suite finished before it could be killed: " + proc.stderr.read().decode()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the harness and its worker: no chance to clean up
        proc.wait()
    assert not (second / "status.json").exists()
    finished = (first / "status.json").read_text()
    finished_mtime = (first / "summary.json").stat().st_mtime_ns

    assert cli.main(["run", str(path), "--out", str(out), "--no-report"]) == 0
    assert (first / "status.json").read_text() == finished            # not redone
    assert (first / "summary.json").stat().st_mtime_ns == finished_mtime
    resumed = status(out, "dqn/CartPole-v1/s1")
    assert resumed["state"] == "done" and resumed["resumed_from"] >= 250
    evals = check_finished_run(second, 2000, 2)
    assert [e["step"] for e in evals] == [500, 1000, 1500, 2000]     # the curve before the kill is kept


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_a_suite_like_ctrl_c_with_a_checkpoint_and_exit_143(tmp_path, workers):
    """Batch schedulers stop jobs with SIGTERM: the running runs checkpoint, the suite exits 143."""
    raw = {"name": "term", "agents": {"dqn": "dqn"}, "envs": ["CartPole-v1"], "seeds": [0],
           "config": {"agent": {"learning_starts": 50, "hidden": [16]},
                      "run": {"steps": 1_000_000, "eval_every": 0, "eval_episodes": 1, "checkpoint_every": 200}}}
    path, out = write_suite(tmp_path, raw), tmp_path / "out"
    cmd = [sys.executable, "-m", "rewind.cli.bench", "run", str(path), "--out", str(out), "--workers", str(workers),
           "--no-report"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run = out / "runs" / "dqn" / "CartPole-v1" / "s0"
    try:
        deadline = time.time() + 120
        while not (run / "checkpoint.pt").exists():
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() else "slow"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # to the harness only, as a scheduler does
        err = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "re-run the same command" in err
    assert status(out, "dqn/CartPole-v1/s0")["state"] == "interrupted"  # a rerun resumes it (test above)
    from rewind.run.checkpoint import load_checkpoint
    assert load_checkpoint(run)["loop"]["step"] >= 200
    assert not list(run.glob(".*.tmp"))


def test_failing_run_is_reported_and_the_others_finish(tmp_path, capsys):
    # CartPole has no `bogus` option: gymnasium rejects it when the run builds its env
    raw = {"name": "fail", "agents": {"dqn": "dqn"}, "seeds": [0],
           "envs": {"CartPole-v1": {}, "Acrobot-v1": {"env": {"bogus": 1}}},
           "config": {"agent": {"learning_starts": 100}, "run": {"steps": 300, "eval_every": 0, "eval_episodes": 2}}}
    path, out = write_suite(tmp_path, raw), tmp_path / "out"
    assert cli.main(["run", str(path), "--out", str(out), "--workers", "2", "--reps", "100"]) == 1
    err = capsys.readouterr().err
    assert "FAILED dqn/Acrobot-v1/s0" in err and "bogus" in err
    assert status(out, "dqn/CartPole-v1/s0")["state"] == "done"
    bad = status(out, "dqn/Acrobot-v1/s0")
    assert bad["state"] == "failed" and "bogus" in bad["error"]
    assert "Traceback" in (out / "runs" / "dqn" / "Acrobot-v1" / "s0" / "error.log").read_text()
    assert "dqn/Acrobot-v1/s0: failed" in (out / "report.md").read_text()


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(capsys, argv) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rewind: error:") and "\n" not in err, err
    return err


def test_bad_input_is_one_line_before_any_run(tmp_path, capsys):
    out = tmp_path / "out"
    base = {"name": "a", "agents": {"dqn": "dqn"}, "envs": ["CartPole-v1"], "seeds": 1,
            "config": {"run": {"steps": 100}}}
    err = _one_line_error(capsys, ["run", str(write_suite(tmp_path, {**base, "agents": {"x": "dqnn"}})),
                                   "--out", str(out)])
    assert "unknown agent 'dqnn'" in err and "did you mean dqn" in err
    err = _one_line_error(capsys, ["run", str(write_suite(tmp_path, {**base, "envs": ["pongg"]})), "--out", str(out)])
    assert "unknown env 'pongg'" in err
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("agents: {dqn: dqn\nenvs: [CartPole-v1]\n")
    assert "not valid YAML" in _one_line_error(capsys, ["run", str(bad_yaml), "--out", str(out)])
    err = _one_line_error(capsys, ["run", str(write_suite(tmp_path, {**base, "config": {"agent": {"lrr": 1}}})),
                                   "--out", str(out)])
    assert "agent.lrr" in err
    assert not out.exists()  # nothing was created by any of these

    # a folder of another suite (or of anything else) is refused and left as it was
    from rewind.bench.runner import prepare_out
    prepare_out(out, build_suite(base))
    (out / "notes.txt").write_text("mine")
    before = _tree(out)
    other = write_suite(tmp_path, {**base, "config": {"run": {"steps": 200}}})
    assert "holds results of suite 'a'" in _one_line_error(capsys, ["run", str(other), "--out", str(out)])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.csv").write_text("1,2")
    assert "holds no rewind bench results" in _one_line_error(capsys, ["run", str(other), "--out", str(foreign)])
    assert "no suite results" in _one_line_error(capsys, ["report", str(foreign)])
    # an unreachable Ray cluster is refused before the folder is touched
    err = _one_line_error(capsys, ["run", str(write_suite(tmp_path, base)), "--out", str(out),
                                   "--ray-address", "127.0.0.1:1"])
    assert "unreachable" in err or "needs ray" in err
    assert _tree(out) == before and (foreign / "data.csv").read_text() == "1,2"


def test_peer_gets_rewinds_settings_in_sb3_units():
    from rewind.bench.peers import sb3_kwargs
    from rewind.bench.suite import resolve_run

    suite = build_suite({"agents": {"p": "sb3-dqn"}, "envs": ["minatar-breakout"], "seeds": 1,
                         "config": {"agent": {"update_every": 4, "target_update_every": 250, "eps_decay_steps": 2500,
                                              "double": True}, "run": {"steps": 10000}}})
    exp = resolve_run(suite.runs[0])
    kwargs, notes = sb3_kwargs(exp)
    assert kwargs["train_freq"] == 4 and kwargs["target_update_interval"] == 1000   # SB3 counts env steps
    assert kwargs["gradient_steps"] == exp.agent_config.gradient_steps
    assert kwargs["exploration_fraction"] == pytest.approx(0.25)
    assert kwargs["learning_rate"] == exp.agent_config.lr and kwargs["buffer_size"] == exp.agent_config.buffer_size
    assert any("double" in n for n in notes)
    # the same Q-network: rewind's MinAtar body as SB3's features, SB3 adds the last layer
    import torch
    from stable_baselines3 import DQN

    from rewind.agents.networks import build_q_network
    from rewind.envs import make_env

    env = make_env("minatar-breakout")
    model = DQN("MlpPolicy", env, **{**kwargs, "buffer_size": 100}, device="cpu")
    ours = build_q_network(exp.agent_config.network, env.observation_space, env.action_space.n)
    assert sum(p.numel() for p in model.q_net.parameters()) == sum(p.numel() for p in ours.parameters())
    assert isinstance(model.policy.optimizer, torch.optim.RMSprop)          # the preset's optimizer


def _peer_run(tmp_path, steps: int):
    from rewind.bench.suite import resolve_run

    raw = {"name": "peer", "agents": {"p": "sb3-dqn"}, "envs": ["CartPole-v1"], "seeds": [0],
           "config": {"agent": {"learning_starts": 100, "hidden": [16]},
                      "run": {"steps": steps, "eval_every": 200, "eval_episodes": 2, "checkpoint_every": 200}}}
    spec = build_suite(raw).runs[0]
    return spec, resolve_run(spec), tmp_path / "run"


def test_peer_checkpoint_is_data_and_restores_the_model_and_replay(tmp_path):
    """The SB3 peer's checkpoint loads with weights_only and gives back weights, optimizer, counters, replay."""
    import torch
    from stable_baselines3 import DQN

    from rewind.bench import peers

    spec, exp, logdir = _peer_run(tmp_path, 400)
    summary = peers.run_peer(spec, exp, logdir)
    assert summary["steps"] == 400
    saved = torch.load(logdir / peers.CHECKPOINT_FILE, weights_only=True)     # plain data: no pickle globals
    kwargs, _ = peers._final_kwargs(spec, exp, DQN)

    def fresh(seed):
        from rewind.envs import make_env
        return DQN("MlpPolicy", make_env("CartPole-v1"), seed=seed, device="cpu", **kwargs)

    model = fresh(1)
    weights = {k: v.clone() for k, v in model.policy.state_dict().items()}
    assert any(not torch.equal(weights[k], v) for k, v in saved["policy"].items())   # the check below can fail
    peers.load_model_state(model, logdir / peers.CHECKPOINT_FILE)
    for key, value in saved["policy"].items():
        assert torch.equal(model.policy.state_dict()[key], value), key
    assert {k: getattr(model, k) for k in peers.COUNTERS} == saved["counters"]
    assert model.num_timesteps == 400 and model._n_updates > 0
    assert model.exploration_rate == saved["exploration_rate"] < 1.0
    adam = model.policy.optimizer.state_dict()["state"]
    assert adam and all(int(s["step"]) == model._n_updates for s in adam.values())
    peers.load_buffer_state(model.replay_buffer, logdir / peers.BUFFER_FILE)
    # SB3 calls the callback before it stores the step's transition: the last one is not in the replay yet
    assert model.replay_buffer.pos == 399 and not model.replay_buffer.full
    assert len(load_data(logdir / peers.BUFFER_FILE)["arrays"]["observations"]) == 399   # the filled part only
    obs = model.replay_buffer.observations[:399, 0]
    assert np.count_nonzero(obs) > 0.9 * obs.size                     # real CartPole states, not zeros
    # a replay whose arrays do not fit: one line, the buffer untouched
    other = fresh(2)
    before = other.replay_buffer.observations.copy()
    bad = peers.buffer_state(model.replay_buffer)
    bad["arrays"]["timeouts"] = np.zeros((10, 7), np.float32)     # the last array: the others must not be written
    save_data(tmp_path / "bad.pt", bad)
    with pytest.raises(RewindError, match="does not fit"):
        peers.load_buffer_state(other.replay_buffer, tmp_path / "bad.pt")
    assert np.array_equal(other.replay_buffer.observations, before)


def test_peer_resumes_from_its_checkpoint_and_refuses_a_pickle(tmp_path):
    import pickle

    from rewind.bench import peers

    spec, exp, logdir = _peer_run(tmp_path, 400)
    peers.run_peer(spec, exp, logdir)
    spec, exp, _ = _peer_run(tmp_path, 800)                 # the same run, a longer budget: it continues
    summary = peers.run_peer(spec, exp, logdir, resume=True)
    assert summary["steps"] == 800
    evals = check_finished_run(logdir, 800, 2)
    assert [e["step"] for e in evals] == [200, 400, 600, 800]        # the curve before the stop is kept
    # a checkpoint that needs unpickling is refused with one line, and nothing in it runs
    (logdir / peers.CHECKPOINT_FILE).write_bytes(pickle.dumps(Path("x")))
    with pytest.raises(RewindError, match="needs unpickling"):
        peers.run_peer(spec, exp, logdir, resume=True)


def test_qrdqn_peer_when_installed(tmp_path):
    pytest.importorskip("sb3_contrib")
    import dataclasses

    from rewind.bench.runner import execute_run

    raw = {"name": "qr", "agents": {"qr": "sb3-qrdqn"}, "envs": ["CartPole-v1"], "seeds": [0],
           "config": {"agent": {"learning_starts": 100}, "run": {"steps": 300, "eval_every": 150, "eval_episodes": 2}}}
    spec = build_suite(raw).runs[0]
    result = execute_run(dataclasses.asdict(spec), str(tmp_path))    # the worker entry point, in this process
    assert result["state"] == "done", result
    check_finished_run(tmp_path / "runs" / spec.run_id, 300, 2)
