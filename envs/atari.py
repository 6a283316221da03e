"""Atari through ale-py with the DQN preprocessing (Mnih et al. 2015), every step configurable.

Wrapper order (inner to outer):
ALE (frameskip 1, sticky actions off) -> AtariPreprocessing (no-op starts, frame skip with
max over the last 2 frames, 84x84 gray) -> RecordEpisodeStatistics (whole games, raw score)
-> [training] LifeLossTerminal -> [training] reward clipping -> frame stack.

Episode statistics sit below the life-loss and clipping wrappers, so the loop logs the
real game score even though training sees one life per episode and clipped rewards.
"""

from __future__ import annotations

import dataclasses
import re
import sys

import gymnasium as gym

from rewind.errors import RewindError


@dataclasses.dataclass
class AtariConfig:
    noop_max: int = 30               # up to this many no-ops at reset (0 disables)
    noop_in_training: bool = True    # no-op starts on training resets too (SB3, Dopamine); False: evaluation
                                     # only, as the EBU authors' ale_experiment._init_episode (`and testing`)
    frame_skip: int = 4              # agent step = this many frames, max over the last 2
    screen_size: int = 84
    grayscale: bool = True
    frame_stack: int = 4
    clip_rewards: bool = True        # training only: rewards clipped to [-1, 1]
    terminal_on_life_loss: bool = True   # training only: a lost life ends the episode (game continues)
    sticky_action_prob: float = 0.0  # ALE v5 defaults to 0.25; DQN/EBU papers use none
    full_action_space: bool = False
    max_episode_frames: int = 108_000  # 30 minutes of play; ALE truncates after this

    def validate(self):
        if self.frame_skip < 1 or self.frame_stack < 1 or self.screen_size < 8:
            raise RewindError("env: frame_skip and frame_stack must be >= 1 and screen_size >= 8")
        if not 0.0 <= self.sticky_action_prob <= 1.0:
            raise RewindError("env.sticky_action_prob must be in [0, 1]")


def _ale_ids() -> list[str]:
    import ale_py

    gym.register_envs(ale_py)
    return sorted(k for k in gym.registry if k.startswith("ALE/") and k.endswith("-v5"))


def _short(ale_id: str) -> str:
    """'ALE/SpaceInvaders-v5' -> 'space_invaders'."""
    name = ale_id[4:].rsplit("-", 1)[0]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def atari_names() -> dict[str, str]:
    """Short name -> ALE id, e.g. {'pong': 'ALE/Pong-v5', ...}."""
    return {_short(i): i for i in _ale_ids()}


def resolve_atari_id(name: str) -> str | None:
    """Map 'pong', 'Pong', 'space_invaders', 'SpaceInvaders' or 'ALE/Pong-v5' to an ALE id."""
    names = atari_names()
    if name.startswith("ALE/"):
        return name if name in gym.registry else None
    key = name.lower().replace("-", "_")
    if key in names:
        return names[key]
    squashed = {k.replace("_", ""): v for k, v in names.items()}
    return squashed.get(key.replace("_", ""))


class LifeLossTerminal(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Report a lost life as `terminated` without resetting the game (training only).

    reset() after a life loss plays one no-op step instead of restarting the game, so an
    "episode" for the agent is one life while the game runs on. info['life_loss'] marks it.
    RecordConstructorArgs puts it in the env's spec, so `env.spec.make()` rebuilds the stack.
    """

    def __init__(self, env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self._lives = 0
        self._game_over = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        life_lost = 0 < lives < self._lives
        self._lives = lives
        info["life_loss"] = life_lost
        return obs, reward, terminated or life_lost, truncated, info

    def reset(self, *, seed=None, options=None):
        if self._game_over or seed is not None:
            obs, info = self.env.reset(seed=seed, options=options)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:  # the no-op ended the game: start a new one
                obs, info = self.env.reset(options=options)
        self._game_over = False
        self._lives = self.env.unwrapped.ale.lives()
        return obs, info


_NOTED: set[str] = set()


def _has_noop(env, game: str) -> bool:
    """False for games whose minimal action set has no NOOP (backgammon, video_checkers): their no-op starts
    are skipped, with a one-line note, since gymnasium's preprocessing needs action 0 to be NOOP."""
    if env.unwrapped.get_action_meanings()[0] == "NOOP":
        return True
    if game not in _NOTED:
        _NOTED.add(game)
        print(f"rewind: note: {game} has no NOOP action; its episodes start without no-op starts", file=sys.stderr)
    return False


def make_atari(game: str, config: AtariConfig | None = None, *, training: bool = True,
               render_mode: str | None = None) -> gym.Env:
    """An ALE game with DQN preprocessing. `training=False` drops life-loss terminals and clipping."""
    cfg = config or AtariConfig()
    env_id = resolve_atari_id(game)
    if env_id is None:
        raise RewindError(f"unknown Atari game {game!r}; `rewind envs` lists the valid names")
    env = gym.make(env_id, frameskip=1, repeat_action_probability=cfg.sticky_action_prob,
                   full_action_space=cfg.full_action_space, max_num_frames_per_episode=cfg.max_episode_frames,
                   render_mode=render_mode)
    noop_max = cfg.noop_max if (cfg.noop_in_training or not training) else 0
    noop_max = noop_max if _has_noop(env, game) else 0
    env = gym.wrappers.AtariPreprocessing(env, noop_max=noop_max, frame_skip=cfg.frame_skip,
                                          screen_size=cfg.screen_size, grayscale_obs=cfg.grayscale)
    env = gym.wrappers.RecordEpisodeStatistics(env)
    if training and cfg.terminal_on_life_loss:
        env = LifeLossTerminal(env)
    if training and cfg.clip_rewards:
        env = gym.wrappers.ClipReward(env, -1.0, 1.0)
    if cfg.frame_stack > 1:
        env = gym.wrappers.FrameStackObservation(env, cfg.frame_stack)
    return env


def atari_env(game: str, training: bool = True, render_mode: str | None = None, **options) -> gym.Env:
    """gymnasium entry point of rewind's Atari ids (`gym.make("breakout", training=False, frame_stack=4)`).

    `options` are AtariConfig fields; the spec records them, so `env.spec.make()` rebuilds the env.
    """
    from rewind.config import from_dict

    return make_atari(game, from_dict(AtariConfig, options, "env"), training=training, render_mode=render_mode)
