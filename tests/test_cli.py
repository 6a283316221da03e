"""Bad input through the real `rewind` CLI: exit code 2, one error line, nothing overwritten.

Every bad command is pointed at the log directory of a real finished run, and every byte
and modification time in it is compared before and after.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from rewind.cli import main

SETTINGS = ["--set", "agent.learning_starts=100", "--set", "agent.hidden=[16]", "--set", "run.eval_episodes=1",
            "--set", "run.torch_threads=1"]


def snapshot(folder):
    return {p.relative_to(folder): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--env", "CartPole-v1", "--steps", "300", "--logdir", str(d), "--no-progress"]
                + SETTINGS) == 0
    assert (d / "checkpoint.pt").exists() and list(d.glob("events.out.tfevents.*"))
    return d


@pytest.fixture
def untouched(run_dir):
    """The run directory must come out of the test exactly as it went in."""
    before = snapshot(run_dir)
    yield run_dir
    assert snapshot(run_dir) == before


def assert_one_error_line(err, *fragments):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rewind: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def fails(capsys, argv, *fragments):
    capsys.readouterr()
    assert main(argv) == 2
    assert_one_error_line(capsys.readouterr().err, *fragments)


def train(run_dir, *extra):
    return ["train", "--env", "CartPole-v1", "--steps", "400", "--logdir", str(run_dir), "--no-progress",
            *SETTINGS, *extra]


def test_unknown_env_suggests_the_close_id(capsys, untouched):
    argv = train(untouched)
    argv[argv.index("CartPole-v1")] = "CartPole-v2"
    fails(capsys, argv, "unknown env 'CartPole-v2'", "did you mean", "CartPole-v1", "rewind envs")
    argv[argv.index("CartPole-v2")] = "pongg"
    fails(capsys, argv, "unknown env 'pongg'", "pong")


def test_unknown_agent_lists_the_choices(capsys, untouched):
    fails(capsys, train(untouched, "--agent", "dqnn"), "unknown agent 'dqnn'", "did you mean dqn", "ebu, ")


@pytest.mark.parametrize("setting,fragments", [
    ("agent.lrr=0.1", ("unknown config key 'agent.lrr'", "did you mean agent.lr", "valid keys")),
    ("run.stepz=5", ("unknown config key 'run.stepz'",)),
    ("agnet.lr=0.1", ("unknown config section", "agnet")),
    ("agent.lr=fast", ("agent.lr must be a number", "'fast'")),
    ("agent.double=maybe", ("agent.double must be true or false",)),
    ("run.eval_every=1.5", ("run.eval_every must be an integer",)),
    ("agent.lr", ("--set expects key=value",)),
])
def test_bad_set_values(capsys, untouched, setting, fragments):
    fails(capsys, train(untouched, "--set", setting, "--resume"), *fragments)
    fails(capsys, train(untouched, "--set", setting), *fragments)


def test_config_file_missing_or_invalid(capsys, untouched, tmp_path):
    fails(capsys, train(untouched, "--config", str(tmp_path / "nope.yaml")), "not found", "dqn_nature")
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent:\n  lr: [0.1\n")
    fails(capsys, train(untouched, "--config", str(bad)), "not valid YAML")
    key = tmp_path / "key.yaml"
    key.write_text("agent:\n  gama: 0.5\n")
    fails(capsys, train(untouched, "--config", str(key)), "unknown config key 'agent.gama'", "agent.gamma")


def test_training_into_an_existing_run_without_resume(capsys, untouched):
    fails(capsys, train(untouched), "already holds a run", "--resume")


@pytest.mark.parametrize("change,key", [
    (["--agent", "ebu"], "agent"),
    (["--env", "Acrobot-v1"], "env"),
    (["--set", "agent.lr=0.01"], "agent_config"),
    (["--seed", "1"], "seed"),
])
def test_resume_into_another_runs_directory(capsys, untouched, change, key):
    argv = train(untouched, "--resume")
    if change[0] == "--env":
        argv[argv.index("CartPole-v1")] = change[1]
    else:
        argv += change
    fails(capsys, argv, "holds a different run", f"({key}:")


def test_missing_checkpoint(capsys, untouched, tmp_path):
    fails(capsys, ["eval", str(tmp_path / "nowhere" / "checkpoint.pt")], "does not exist")
    fails(capsys, ["eval", str(tmp_path)], "does not exist")
    fails(capsys, train(tmp_path / "fresh", "--resume"), "does not exist", "start without --resume")
    assert not (tmp_path / "fresh").exists()


def test_corrupt_checkpoint_is_reported_and_left_alone(capsys, untouched, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(untouched, broken)
    ckpt = broken / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    before = snapshot(broken)
    fails(capsys, ["eval", str(ckpt)], "corrupt or unreadable")
    fails(capsys, ["eval", str(broken)], "corrupt or unreadable")
    fails(capsys, train(broken, "--resume"), "corrupt or unreadable")
    fails(capsys, train(broken), "already holds a run")
    assert snapshot(broken) == before
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    fails(capsys, ["eval", str(garbage)], "corrupt or unreadable")


def test_eval_of_a_real_checkpoint_and_bad_episode_count(capsys, untouched):
    capsys.readouterr()
    assert main(["eval", str(untouched), "--episodes", "2", "--max-steps", "50"]) == 0
    out = capsys.readouterr().out
    assert "dqn on CartPole-v1: 2 episodes" in out and "mean " in out
    fails(capsys, ["eval", str(untouched), "--episodes", "0"], "--episodes must be >= 1")


def test_help_and_envs(capsys):
    for argv in (["--help"], ["train", "--help"], ["eval", "--help"], ["envs", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in ("--agent", "--env", "--steps", "--logdir", "--seed", "--config", "--set", "--resume",
                   "--episodes", "--kind"):
        assert option in text
    assert main(["envs"]) == 0
    listing = capsys.readouterr().out
    for name in ("pong", "ALE/Pong-v5", "MinAtar/Breakout-v1", "CartPole-v1", "space_invaders"):
        assert name in listing


def test_real_subprocess_errors_are_one_line_without_traceback(untouched):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    unknown = subprocess.run(["rewind", "train", "--env", "pongg", "--logdir", str(untouched)],
                             capture_output=True, text=True, env=env, timeout=120)
    assert unknown.returncode == 2
    assert_one_error_line(unknown.stderr, "unknown env 'pongg'", "did you mean")
    existing = subprocess.run(["rewind", *train(untouched)], capture_output=True, text=True, env=env, timeout=120)
    assert existing.returncode == 2
    assert_one_error_line(existing.stderr, "already holds a run")
    assert existing.stdout == ""
