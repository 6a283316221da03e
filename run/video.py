"""MP4 videos of evaluation episodes (gymnasium's RecordVideo; its encoder is `pip install rewind-rl[video]`).

The recording env is a fresh copy of the evaluation env made from its spec with
`render_mode="rgb_array"` (every rewind wrapper is recreatable from the spec), so the agent
plays exactly the evaluation protocol while frames are captured, one MP4 per episode.
Used by `rewind eval --video DIR` and by the run loop's `run.video_every`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import gymnasium as gym
import numpy as np

from rewind.envs import find_wrapper
from rewind.errors import RewindError, require


def require_encoder() -> None:
    """One-line error when the optional video encoder (moviepy) is missing."""
    require("moviepy", "video", "recording videos")


def rendering_copy(env: gym.Env) -> gym.Env:
    """A fresh copy of `env` (from its spec) that renders RGB frames."""
    if env.spec is None:
        raise RewindError(f"cannot record {env}: it has no gymnasium spec to rebuild it from")
    try:
        copy = env.spec.make(render_mode="rgb_array")
    except (TypeError, ValueError, gym.error.Error) as exc:
        raise RewindError(f"{env.spec.id} cannot render RGB frames for a video: {str(exc).splitlines()[0]}") from None
    if copy.render_mode != "rgb_array":
        raise RewindError(f"{env.spec.id} cannot render RGB frames for a video (render modes: "
                          f"{copy.metadata.get('render_modes')})")
    return copy


@contextlib.contextmanager
def recording(env: gym.Env, folder: str | Path, prefix: str = "eval"):
    """Yield a rendering copy of `env` that writes `folder/PREFIX-episode-I.mp4` for every episode played.

    The videos are complete when the block ends.
    """
    require_encoder()
    copy = rendering_copy(env)
    skip = getattr(find_wrapper(copy, gym.wrappers.AtariPreprocessing), "frame_skip", 1)
    fps = max(1, round(copy.metadata.get("render_fps", 30) / skip))   # real-time playback of agent steps
    rec = gym.wrappers.RecordVideo(VideoFrames(copy), str(folder), episode_trigger=lambda _: True, name_prefix=prefix,
                                   fps=fps)
    try:
        yield rec
    finally:
        rec.close()


class VideoFrames(gym.Wrapper):
    """Frames an MP4 shows: uint8 RGB, and tiny screens (MinAtar's 10x10 floats in [0, 1]) scaled up by
    whole pixels so the shorter side is at least MIN_SIDE."""

    MIN_SIDE = 160

    def render(self):
        frame = np.asarray(self.env.render())
        if frame.dtype != np.uint8:
            scale = 255.0 if frame.size and frame.max() <= 1.0 else 1.0
            frame = np.clip(frame * scale, 0, 255).astype(np.uint8)
        k = -(-self.MIN_SIDE // min(frame.shape[:2]))
        return frame.repeat(k, axis=0).repeat(k, axis=1) if k > 1 else frame


def videos_in(folder: str | Path) -> list[Path]:
    return sorted(Path(folder).glob("*.mp4"))

