"""MinAtar (Young & Tian 2019) through its gymnasium ids, as channel-first uint8 observations.

MinAtar is GPL and optional (`pip install rewind-rl[minatar]`); its 10x10xC boolean
observations become (C, 10, 10) uint8 so the same conv nets and replay serve both it and Atari.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np

from rewind.errors import require

GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")


@dataclasses.dataclass
class MinAtarConfig:
    sticky_action_prob: float = 0.1   # MinAtar's own default
    difficulty_ramping: bool = True   # MinAtar's own default
    minimal_action_set: bool = True   # the -v1 ids; false gives all 6 actions (-v0)


def _title(game: str) -> str:
    return game.title().replace("_", "")


def minatar_ids() -> list[str]:
    return [f"MinAtar/{_title(g)}-v1" for g in GAMES] + [f"minatar-{g}" for g in GAMES]


def resolve_minatar_id(name: str) -> str | None:
    """'MinAtar/Breakout-v1', 'minatar-breakout' or 'minatar/breakout' -> game name, else None."""
    key = name.lower().replace("/", "-")
    for game in GAMES:
        if key in (f"minatar-{_title(game).lower()}-v1", f"minatar-{_title(game).lower()}-v0",
                   f"minatar-{game}", f"minatar-{_title(game).lower()}"):
            return game
    return None


class ChannelFirstUint8(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """(H, W, C) bool -> (C, H, W) uint8 in {0, 1}. Recorded in the spec, so `env.spec.make()` rebuilds it."""

    def __init__(self, env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        h, w, c = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 1, shape=(c, h, w), dtype=np.uint8)

    def observation(self, obs):
        return np.ascontiguousarray(np.moveaxis(obs, -1, 0), dtype=np.uint8)


def make_minatar(name: str, config: MinAtarConfig | None = None, render_mode=None) -> gym.Env:
    cfg = config or MinAtarConfig()
    game = resolve_minatar_id(name)
    BaseEnv = require("minatar.gym", "minatar", "MinAtar").BaseEnv
    env = BaseEnv(game, render_mode=render_mode, use_minimal_action_set=cfg.minimal_action_set,
                  sticky_action_prob=cfg.sticky_action_prob, difficulty_ramping=cfg.difficulty_ramping)
    env = ChannelFirstUint8(env)
    return gym.wrappers.RecordEpisodeStatistics(env)


def minatar_env(game: str, render_mode: str | None = None, **options) -> gym.Env:
    """gymnasium entry point of rewind's MinAtar ids (`gym.make("minatar-breakout", sticky_action_prob=0.1)`)."""
    from rewind.config import from_dict

    return make_minatar(f"minatar-{game}", from_dict(MinAtarConfig, options, "env"), render_mode=render_mode)
