"""Env factories: one `make_env(name)` for Atari, MinAtar, classic control and rewind's own envs.

Names: Atari short names (`pong`, `space_invaders`) or ALE ids (`ALE/Pong-v5`); MinAtar ids
(`MinAtar/Breakout-v1`, or `minatar-breakout`); any registered gymnasium id
(`CartPole-v1`, `rewind/...`). Every env comes back wrapped in RecordEpisodeStatistics so
the run loop can log episode returns the same way everywhere.
"""

from __future__ import annotations

import dataclasses
import difflib

import gymnasium as gym

from rewind.errors import RewindError

MINATAR_GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")


def register_rewind_envs() -> None:
    """Register rewind's gymnasium ids (envs/registry.py). Safe to call many times; importing rewind does it."""
    from rewind.envs import registry

    registry.register_all()


def env_kind(name: str) -> str:
    """'atari', 'minatar' or 'gym' for an env name; raises RewindError for unknown names."""
    from rewind.envs.atari import resolve_atari_id
    from rewind.envs.minatar import resolve_minatar_id

    register_rewind_envs()
    if resolve_minatar_id(name) is not None:
        return "minatar"
    if resolve_atari_id(name) is not None:
        return "atari"
    if name in gym.registry:
        return "gym"
    choices = list_env_ids()
    close = difflib.get_close_matches(name, choices, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise RewindError(f"unknown env {name!r}{hint}; `rewind envs` lists the valid ids")


def env_config_class(name: str):
    """The dataclass holding the `env:` config section for this env (None: no options)."""
    kind = env_kind(name)
    if kind == "atari":
        from rewind.envs.atari import AtariConfig
        return AtariConfig
    if kind == "minatar":
        from rewind.envs.minatar import MinAtarConfig
        return MinAtarConfig
    return None


def make_env(name: str, config: dict | object | None = None, *, training: bool = True, seed: int | None = None,
             render_mode: str | None = None) -> gym.Env:
    """Make env `name` with options `config` (dict or the env's config dataclass).

    training=False gives the evaluation version (Atari: no life-loss terminals, raw rewards).
    """
    from rewind.config import from_dict

    kind = env_kind(name)
    cfg_cls = env_config_class(name)
    if cfg_cls is not None and not dataclasses.is_dataclass(config):
        config = from_dict(cfg_cls, config or {}, "env")
    elif cfg_cls is None and config:
        kwargs = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
        config = kwargs
    if kind == "atari":   # through gym.make, so env.spec.make() rebuilds exactly this env
        from rewind.envs.atari import atari_names, resolve_atari_id
        short = {v: k for k, v in atari_names().items()}[resolve_atari_id(name)]
        env = gym.make(short, training=training, render_mode=render_mode, **dataclasses.asdict(config))
    elif kind == "minatar":
        from rewind.envs.minatar import resolve_minatar_id
        env = gym.make(f"minatar-{resolve_minatar_id(name)}", render_mode=render_mode, **dataclasses.asdict(config))
    else:
        kwargs = dict(config or {})
        try:
            env = gym.make(name, render_mode=render_mode, **kwargs)
        except TypeError as exc:
            raise RewindError(f"env {name!r} rejected its options {sorted(kwargs)}: {exc}") from None
        env = gym.wrappers.RecordEpisodeStatistics(env)
    if seed is not None:
        env.action_space.seed(seed)
    return env


def find_wrapper(env: gym.Env, cls: type) -> gym.Env | None:
    """The outermost wrapper of type `cls` around `env`, or None."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, cls):
            return env
        env = env.env
    return None


def frame_stack_of(env: gym.Env) -> int:
    """How many frames each observation stacks (1 if the env does not stack)."""
    stack = find_wrapper(env, gym.wrappers.FrameStackObservation)
    return int(stack.stack_size) if stack is not None else 1


def list_env_ids() -> list[str]:
    """Every env name make_env accepts, short Atari names included."""
    from rewind.envs.atari import atari_names
    from rewind.envs.minatar import minatar_ids

    register_rewind_envs()
    classic = [k for k, spec in gym.registry.items()
               if isinstance(spec.entry_point, str)
               and spec.entry_point.startswith("gymnasium.envs.classic_control")]
    own = [k for k in gym.registry if k.startswith("rewind/")]
    return sorted(atari_names()) + sorted(atari_names().values()) + minatar_ids() + sorted(classic) + sorted(own)


def make_vector_env(name: str, config: dict | object | None, num_envs: int, *, seed: int = 0) -> gym.vector.VectorEnv:
    """`num_envs` training copies of env `name` stepped as one gymnasium SyncVectorEnv.

    Each copy is exactly what make_env(name, training=True) builds (same wrappers, life-loss
    terminals, clipping), so one env or N differ only in how steps interleave. Autoreset is
    SAME_STEP: a finished env's last observation is in info["final_obs"] and the returned one
    already starts the next episode, so every step is a real transition of every env.
    """
    if num_envs < 2:
        raise RewindError(f"make_vector_env needs num_envs >= 2, got {num_envs}")
    fns = [lambda i=i: make_env(name, config, training=True, seed=seed + i) for i in range(num_envs)]
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


register_rewind_envs()   # importing rewind.envs (so `import rewind`, or gym.make("rewind.envs:ID")) registers the ids
