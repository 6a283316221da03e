"""The run loop: exact resume (in process and after Ctrl-C), TensorBoard tags, atomic checkpoints."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import torch

from rewind.run.checkpoint import load_checkpoint, save_checkpoint
from rewind.run.experiment import resolve, run_experiment
from rewind.cli import main
from rewind.config import parse_set

# CartPole with learning on from step 100, a small net, replay in every checkpoint
SETTINGS = ["agent.hidden=[32,32]", "agent.learning_starts=100", "agent.batch_size=16", "agent.update_every=1",
            "agent.gradient_steps=1",
            "agent.target_update_every=50", "agent.eps_decay_steps=400", "run.eval_every=0",
            "run.eval_episodes=2", "run.eval_max_steps=200", "run.checkpoint_every=200", "run.save_buffer=true",
            "run.log_every=50", "run.torch_threads=1"]


def experiment(steps, seed=0):
    return resolve("dqn", "CartPole-v1", None, parse_set(SETTINGS), steps=steps, seed=seed)


def final_state(logdir):
    return load_checkpoint(logdir / "checkpoint.pt")


def assert_same_agent(a, b):
    for net in ("q", "q_target"):
        assert a["agent"][net].keys() == b["agent"][net].keys()
        for k in a["agent"][net]:
            assert torch.equal(a["agent"][net][k], b["agent"][net][k]), f"{net}.{k} differs"
    opt_a, opt_b = a["agent"]["optimizer"]["state"], b["agent"]["optimizer"]["state"]
    for i in opt_a:
        for k in opt_a[i]:
            assert torch.equal(opt_a[i][k], opt_b[i][k]), f"optimizer state {i}.{k} differs"
    for k in ("steps", "updates", "rng"):
        assert a["agent"][k] == b["agent"][k]
    for k in ("frames", "actions", "rewards", "terminated", "truncated", "start", "total"):
        va, vb = a["replay"][k], b["replay"][k]
        assert torch.equal(va, vb) if isinstance(va, torch.Tensor) else va == vb, f"replay {k} differs"


def params(state):
    return torch.cat([v.flatten() for v in state["agent"]["q"].values()])


def test_stop_and_resume_ends_with_exactly_the_uninterrupted_parameters(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    run_experiment(experiment(600), full, progress=False)
    run_experiment(experiment(250), part, progress=False)
    mid = final_state(part)
    assert mid["loop"]["step"] == 250 and mid["loop"]["env"] is not None and mid["replay"] is not None
    assert mid["agent"]["updates"] > 100  # learning was on before the stop
    run_experiment(experiment(600), part, resume=True, progress=False)
    a, b = final_state(full), final_state(part)
    assert a["loop"]["step"] == b["loop"]["step"] == 600
    assert a["loop"]["episodes"] == b["loop"]["episodes"]
    assert_same_agent(a, b)
    assert a["loop"]["evals"][-1]["returns"] == b["loop"]["evals"][-1]["returns"]
    # the comparison is not vacuous: the parameters moved, and another seed ends elsewhere
    assert not torch.equal(params(a), params(mid))
    other = tmp_path / "other"
    run_experiment(experiment(600, seed=1), other, progress=False)
    assert not torch.equal(params(a), params(final_state(other)))
    assert not [p for p in full.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_checkpoints_exits_and_resume_reaches_the_same_parameters(tmp_path, sig, code):
    """Ctrl-C (130) and SIGTERM from a batch scheduler or container (143) stop the same way."""
    logdir = tmp_path / "run"
    cmd = ["rewind", "train", "--env", "CartPole-v1", "--steps", "1000000", "--seed", "3", "--logdir", str(logdir),
           "--no-progress"] + [x for s in SETTINGS for x in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not (logdir / "checkpoint.pt").exists():  # the loop runs (and has its Ctrl-C handler)
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint after 60 s"
            time.sleep(0.05)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err and "--resume" in err
    assert "interrupted at step" in out
    stopped = final_state(logdir)["loop"]["step"]
    assert 200 <= stopped < 1_000_000
    assert not [p for p in logdir.iterdir() if p.name.endswith(".tmp")]

    total = stopped + 150
    resumed = [a if a != "1000000" else str(total) for a in cmd[1:]] + ["--resume"]
    assert main(resumed) == 0
    reference = tmp_path / "reference"
    run_experiment(experiment(total, seed=3), reference, progress=False)
    a, b = final_state(reference), final_state(logdir)
    assert a["loop"]["step"] == b["loop"]["step"] == total
    assert_same_agent(a, b)


def test_tensorboard_event_files_hold_the_expected_tags(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = tmp_path / "tb"
    args = ["train", "--env", "CartPole-v1", "--steps", "1200", "--logdir", str(logdir), "--no-progress",
            "--set", "agent.learning_starts=200", "--set", "agent.hidden=[32]", "--set", "run.log_every=100",
            "--set", "run.eval_every=600", "--set", "run.eval_episodes=2", "--set", "run.torch_threads=1",
            "--set", "agent.eps_decay_steps=1000", "--set", "agent.eps_end=0.05"]
    assert main(args) == 0
    assert list(logdir.glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    want = {"episode/return", "episode/length", "train/loss", "train/q_mean", "train/epsilon",
            "perf/steps_per_s", "eval/return_mean"}
    assert want <= tags, f"missing {want - tags}"

    def values(tag):
        return [(e.step, e.value) for e in acc.Scalars(tag)]
    returns, lengths = values("episode/return"), values("episode/length")
    summary = load_checkpoint(logdir / "checkpoint.pt")["loop"]
    assert len(returns) == summary["episodes"] > 10
    assert [v for _, v in returns] == [v for _, v in lengths]  # CartPole pays 1 per step
    assert sum(v for _, v in lengths) <= 1200
    assert [s for s, _ in values("eval/return_mean")] == [600, 1200]
    assert min(s for s, _ in values("train/loss")) >= 200  # no loss before learning starts
    eps = [v for _, v in values("train/epsilon")]
    assert eps == sorted(eps, reverse=True) and eps[-1] == pytest.approx(0.05)
    assert all(v > 0 for _, v in values("perf/steps_per_s"))


def test_checkpoint_write_is_atomic(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"agent": {"w": torch.arange(5)}})
    before = path.read_bytes()
    unpicklable = {"agent": {"w": torch.arange(1000)}, "oops": lambda: None}
    with pytest.raises(Exception):
        save_checkpoint(path, unpicklable)  # fails halfway through writing
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temp file left
    assert torch.equal(load_checkpoint(path)["agent"]["w"], torch.arange(5))
    # the same failure written in place would have destroyed the old checkpoint
    direct = tmp_path / "direct.pt"
    direct.write_bytes(before)
    with pytest.raises(Exception):
        torch.save(unpicklable, direct)
    assert direct.read_bytes() != before


def test_a_checkpoint_older_than_a_setting_resumes_only_if_the_setting_has_its_default(tmp_path):
    from rewind.errors import RewindError

    logdir = tmp_path / "old"
    run_experiment(experiment(150), logdir, progress=False)
    state = final_state(logdir)
    del state["meta"]["agent_config"]["width"]   # as written before agent.width existed
    save_checkpoint(logdir / "checkpoint.pt", state)
    run_experiment(experiment(200), logdir, resume=True, progress=False)
    assert final_state(logdir)["loop"]["step"] == 200
    wider = resolve("dqn", "CartPole-v1", None, parse_set(SETTINGS + ["agent.width=2"]), steps=250)
    with pytest.raises(RewindError, match="holds a different run"):
        run_experiment(wider, logdir, resume=True, progress=False)


def test_run_or_resume_skips_a_finished_run_and_resumes_an_interrupted_one(tmp_path):
    import json

    from rewind.run.experiment import finished, run_or_resume

    logdir = tmp_path / "r"
    assert run_or_resume(experiment(150), logdir, progress=False) and finished(logdir)
    before = (logdir / "checkpoint.pt").stat().st_mtime_ns
    assert not run_or_resume(experiment(150), logdir, progress=False)
    assert (logdir / "checkpoint.pt").stat().st_mtime_ns == before
    summary = json.loads((logdir / "summary.json").read_text())
    (logdir / "summary.json").write_text(json.dumps({**summary, "interrupted": True}))  # as Ctrl-C leaves it
    assert not finished(logdir)
    assert run_or_resume(experiment(200), logdir, progress=False)
    assert final_state(logdir)["loop"]["step"] == 200 and finished(logdir)
