"""Run logs people load and videos: progress.csv and episodes.csv in every run directory (a resumed
run drops the rows past its checkpoint), `rewind eval RUN --video DIR` writes playable MP4s, and
run.video_every records the evaluation episodes during training."""

from __future__ import annotations

import csv
import json

import pytest

from rewind.cli import main
from rewind.run.runlog import CsvLog

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_every_run_writes_progress_and_episodes_csv(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--env", "CartPole-v1", "--steps", "600", "--logdir", str(run), "--no-progress",
                 "--set", "agent.learning_starts=100", "--set", "agent.update_every=4", "--set",
                 "agent.gradient_steps=1", "--set", "run.log_every=100", "--set", "run.eval_every=300",
                 "--set", "run.eval_episodes=2"]) == 0
    progress = rows(run / "progress.csv")
    assert [int(r["step"]) for r in progress] == list(range(100, 700, 100))   # one row per log interval
    assert all(r["perf/steps_per_s"] for r in progress) and any(r["train/loss"] for r in progress)
    assert [r["eval/return_mean"] != "" for r in progress] == [False, False, True, False, False, True]
    episodes = rows(run / "episodes.csv")
    summary = json.loads((run / "summary.json").read_text())
    assert len(episodes) == summary["episodes"] > 10
    steps = [int(r["step"]) for r in episodes]
    assert steps == sorted(steps) and sum(int(r["length"]) for r in episodes) == steps[-1]   # CartPole: every
    assert all(float(r["return"]) == int(r["length"]) for r in episodes)                      # step pays 1
    times = [float(r["time"]) for r in episodes]
    assert times == sorted(times)


def test_a_resumed_log_drops_the_rows_after_its_checkpoint_and_grows_its_header(tmp_path):
    log = CsvLog(tmp_path / "progress.csv", ["step", "time"])
    for step in (100, 200, 300):
        log.write({"step": step, "time": step / 100})
    log.write({"step": 400, "time": 4.0, "eval/return_mean": 7.5})        # a new column rewrites the header
    assert list(rows(tmp_path / "progress.csv")[0]) == ["step", "time", "eval/return_mean"]
    resumed = CsvLog(tmp_path / "progress.csv", ["step", "time"], keep_until=200)   # checkpoint at step 200
    resumed.write({"step": 300, "time": 3.5})
    assert [(r["step"], r["time"]) for r in rows(tmp_path / "progress.csv")] == [("100", "1.0"), ("200", "2.0"),
                                                                                ("300", "3.5")]


def read_mp4(path):
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    return meta["size"], sum(1 for _ in reader)


def test_eval_video_and_video_every_write_playable_mp4s(tmp_path, capsys):
    pytest.importorskip("moviepy")
    run = tmp_path / "run"
    assert main(["train", "--env", "breakout", "--steps", "60", "--logdir", str(run), "--no-progress",
                 "--set", "agent.learning_starts=1000", "--set", "agent.buffer_size=1000", "--set",
                 "run.eval_every=30", "--set", "run.eval_episodes=1", "--set", "run.eval_max_steps=25",
                 "--video-every", "50"]) == 0
    # evaluations at steps 30 and 60; a video set every 50 steps: only the one at step 60
    assert sorted(p.name for p in (run / "videos").iterdir()) == ["step-60"]
    evals = json.loads((run / "evaluations.json").read_text())
    assert "video" not in evals[0] and evals[1]["video"].endswith("step-60")
    size, frames = read_mp4(run / "videos" / "step-60" / "eval-episode-0.mp4")
    assert size == (160, 210) and frames >= 25          # ALE's RGB screen, every agent step (+ the reset frame)

    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "2", "--max-steps", "20", "--video", str(tmp_path / "vid")]) == 0
    videos = sorted((tmp_path / "vid").glob("*.mp4"))
    assert [v.name for v in videos] == ["eval-episode-0.mp4", "eval-episode-1.mp4"]
    for v in videos:
        size, frames = read_mp4(v)
        assert size == (160, 210) and frames >= 20
    assert "videos:" in capsys.readouterr().out


def test_minatar_videos_are_visible(tmp_path):
    pytest.importorskip("moviepy")
    pytest.importorskip("minatar")
    import imageio_ffmpeg
    import numpy as np

    run = tmp_path / "run"
    assert main(["train", "--env", "minatar-breakout", "--steps", "40", "--logdir", str(run), "--no-progress",
                 "--set", "agent.learning_starts=1000", "--set", "run.eval_episodes=1", "--set",
                 "run.eval_max_steps=10"]) == 0
    assert main(["eval", str(run), "--episodes", "1", "--max-steps", "10", "--video", str(tmp_path / "vid")]) == 0
    reader = imageio_ffmpeg.read_frames(str(tmp_path / "vid" / "eval-episode-0.mp4"))
    meta = next(reader)
    frames = [np.frombuffer(f, np.uint8) for f in reader]
    assert meta["size"] == (160, 160) and len(frames) >= 2    # 10x10 floats in [0, 1] -> 160x160 uint8
    assert max(int(f.max()) for f in frames) > 100             # not black: the paddle and ball show
