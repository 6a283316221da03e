"""Files and paths from others: checkpoints are data (never unpickled), suites never write outside --out."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import yaml

from rewind.bench.runner import MARKER, prepare_out, run_suite
from rewind.bench.suite import build_suite
from rewind.cli import main
from rewind.errors import RewindError
from rewind.files import remove_stale_tmp
from rewind.run.checkpoint import FORMAT, from_plain, load_checkpoint, save_checkpoint

TRAIN = ["train", "--env", "CartPole-v1", "--no-progress", "--set", "agent.learning_starts=20",
         "--set", "agent.buffer_size=500", "--set", "run.eval_episodes=1", "--set", "run.torch_threads=1"]


def test_checkpoint_holds_only_data_and_round_trips_numpy_exactly(tmp_path):
    state = {"replay": {"frames": np.arange(24, dtype=np.uint8).reshape(2, 3, 4), "r": np.float32(1.5),
                        "empty": np.zeros((0, 3)), "flags": np.array([True, False])},
             "rng": np.random.RandomState(3).get_state(), "gen": np.random.default_rng(5).bit_generator.state,
             "python": (3, tuple(range(5)), None), "blob": b"\x00ale", "t": torch.arange(3)}
    save_checkpoint(tmp_path / "c.pt", state)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "c.pt") == []
    back = load_checkpoint(tmp_path / "c.pt")
    for k, v in state["replay"].items():
        assert back["replay"][k].dtype == np.asarray(v).dtype and np.array_equal(back["replay"][k], v)
    assert isinstance(back["replay"]["r"], np.float32)
    back["replay"]["frames"][0, 0, 0] = 99  # writable, as the replay needs
    np.random.set_state(back["rng"])
    assert np.random.randint(1 << 30) == np.random.RandomState(3).randint(1 << 30)
    assert back["gen"] == state["gen"] and back["python"] == state["python"] and back["blob"] == b"\x00ale"


def test_an_object_array_is_refused_on_load(tmp_path):
    torch.save({"format": FORMAT, "x": {"__rewind_plain__": "ndarray", "dtype": "|O", "shape": [1], "scalar": False,
                                        "data": torch.zeros(8, dtype=torch.uint8)}}, tmp_path / "c.pt")
    with pytest.raises(RewindError, match="Python objects"):
        load_checkpoint(tmp_path / "c.pt")


def old_format(logdir):
    """Rewrite a run's checkpoint as rewind wrote it before: numpy pickled, the env pickled."""
    from rewind.envs import make_env

    state = from_plain(torch.load(logdir / "checkpoint.pt", weights_only=True))
    env = make_env("CartPole-v1", None, training=True, seed=0)
    env.reset(seed=0)
    state["loop"]["env"] = pickle.dumps(env)
    torch.save(state, logdir / "checkpoint.pt")


def test_an_older_pickled_checkpoint_is_refused_until_converted_with_trust(tmp_path, capsys):
    logdir = tmp_path / "run"
    assert main(TRAIN + ["--steps", "100", "--logdir", str(logdir)]) == 0
    old_format(logdir)
    resume = TRAIN + ["--steps", "150", "--logdir", str(logdir), "--resume"]
    capsys.readouterr()
    assert main(resume) == 2
    err = capsys.readouterr().err
    assert f"rewind convert-checkpoint {logdir}/checkpoint.pt --trust" in err and len(err.splitlines()) == 1
    assert main(["convert-checkpoint", str(logdir)]) == 2  # not without --trust
    assert main(["convert-checkpoint", str(logdir), "--trust"]) == 0
    assert torch.serialization.get_unsafe_globals_in_checkpoint(logdir / "checkpoint.pt") == []
    assert load_checkpoint(logdir)["loop"]["env"] is not None  # the pickled env became plain env state
    assert main(resume) == 0
    assert load_checkpoint(logdir)["loop"]["step"] == 150


def test_a_crafted_checkpoint_in_a_real_run_never_runs_its_payload(tmp_path, capsys):
    """The realistic attack: a working checkpoint with one extra pickled object inside."""
    logdir = tmp_path / "shared"
    assert main(TRAIN + ["--steps", "60", "--logdir", str(logdir)]) == 0
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    state = from_plain(torch.load(logdir / "checkpoint.pt", weights_only=True))
    state["meta"]["note"] = Payload()
    torch.save(state, logdir / "checkpoint.pt")
    capsys.readouterr()
    for argv in (["eval", str(logdir), "--episodes", "1"], TRAIN + ["--steps", "80", "--logdir", str(logdir),
                                                                     "--resume"],
                 ["distill", str(logdir), "--student", "half", "--steps", "10", "--logdir", str(tmp_path / "d")],
                 ["compress", str(logdir), "--episodes", "0", "--out", str(tmp_path / "m.rwz")]):
        assert main(argv) == 2, argv
        assert "refused" in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "d").exists() and not (tmp_path / "m.rwz").exists()


def test_atari_env_state_is_the_emulator_bytes_and_continues_identically():
    from rewind.envs import make_env
    from rewind.envs.state import env_state, set_env_state

    env = make_env("ALE/Pong-v5", None, training=True, seed=0)
    env.reset(seed=0)
    for _ in range(40):
        env.step(env.action_space.sample())
    state = env_state(env)
    assert state is not None
    blob = torch.load(_roundtrip(state), weights_only=True)
    other = make_env("ALE/Pong-v5", None, training=True, seed=9)
    set_env_state(other, from_plain(blob))
    for i in range(60):
        a, b = env.step(i % 6), other.step(i % 6)
        assert np.array_equal(a[0], b[0]) and a[1:4] == b[1:4]
    with pytest.raises(RewindError, match="does not fit"):
        set_env_state(make_env("CartPole-v1", None, training=True, seed=0), state)


def _roundtrip(obj):
    import io
    from rewind.run.checkpoint import to_plain

    buf = io.BytesIO()
    torch.save(to_plain(obj), buf)
    buf.seek(0)
    return buf


def test_stale_temp_files_of_a_killed_write_are_removed_at_the_next_start(tmp_path):
    logdir = tmp_path / "run"
    assert main(TRAIN + ["--steps", "50", "--logdir", str(logdir)]) == 0
    stale = logdir / ".checkpoint.pt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    keep = logdir / "notes.tmp"  # not a name atomic_write makes
    keep.write_text("mine")
    assert main(TRAIN + ["--steps", "60", "--logdir", str(logdir), "--resume"]) == 0
    assert not stale.exists() and keep.read_text() == "mine"
    assert remove_stale_tmp(tmp_path / "missing") == []


SUITE = {"name": "t", "agents": {"dqn": "dqn"}, "envs": ["CartPole-v1"], "seeds": [0],
         "config": {"run": {"steps": 40, "eval_every": 0, "eval_episodes": 1, "eval_max_steps": 20},
                    "agent": {"learning_starts": 10, "buffer_size": 200}}}


@pytest.mark.parametrize("label", ["/abs/x", "../x", "a/b", ".", ".."])
def test_a_suite_label_that_is_not_a_plain_name_is_refused_before_any_run(tmp_path, label, capsys):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({**SUITE, "agents": {label: "dqn"}}))
    out = tmp_path / "out"
    assert main(["bench", "run", str(path), "--out", str(out), "--workers", "1"]) == 2
    assert "not a plain name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["suite.yaml"]


def test_a_run_folder_the_harness_did_not_create_is_never_deleted(tmp_path):
    suite, out = build_suite(dict(SUITE)), tmp_path / "out"
    prepare_out(out, suite)
    mine = out / "runs" / "dqn" / "CartPole-v1" / "s0"
    mine.mkdir(parents=True)
    (mine / "keep.txt").write_text("years of notes")
    result = run_suite(suite, out, workers=1)
    assert [r["state"] for r in result["results"]] == ["failed"]
    assert "not created by rewind bench" in result["failed"][0]["error"]
    assert (mine / "keep.txt").read_text() == "years of notes"
    # a folder the harness made itself (its marker, no checkpoint: killed early) is cleaned and rerun
    (mine / "keep.txt").unlink()
    (mine / "status.json").unlink(missing_ok=True)
    (mine / MARKER).write_text("dqn/CartPole-v1/s0\n")
    (mine / "half.log").write_text("from the killed attempt")
    result = run_suite(suite, out, workers=1)
    assert [r["state"] for r in result["results"]] == ["done"] and not (mine / "half.log").exists()


def test_a_symlink_inside_out_cannot_lead_the_suite_elsewhere(tmp_path):
    suite, out, elsewhere = build_suite(dict(SUITE)), tmp_path / "out", tmp_path / "elsewhere"
    prepare_out(out, suite)
    elsewhere.mkdir()
    (out / "runs").symlink_to(elsewhere)
    with pytest.raises(RewindError, match="outside"):
        run_suite(suite, out, workers=1)
    assert list(elsewhere.iterdir()) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 1 MiB filesystem (tmpfs); skipped where mounting is not allowed."""
    import subprocess

    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_a_full_disk_at_checkpoint_time_is_one_line_and_the_previous_checkpoint_is_kept(tiny_disk, capsys):
    logdir = tiny_disk / "run"
    assert main(TRAIN + ["--steps", "100", "--logdir", str(logdir)]) == 0
    before = (logdir / "checkpoint.pt").read_bytes()
    filler = tiny_disk / "filler"
    with open(filler, "wb", buffering=0) as f:  # fill the disk, then free room for the small files only
        try:
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass
        f.truncate(max(0, f.tell() - 16 * 4096))
    assert len(before) > 16 * 4096  # the checkpoint cannot fit
    capsys.readouterr()
    assert main(TRAIN + ["--steps", "200", "--logdir", str(logdir), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("rewind: error: could not write") and "checkpoint.pt" in err[-1], err
    assert "No space left" in err[-1] and len([e for e in err if "error" in e]) == 1
    assert (logdir / "checkpoint.pt").read_bytes() == before
    assert not list(logdir.glob(".*.tmp"))
    assert load_checkpoint(logdir)["loop"]["step"] == 100
