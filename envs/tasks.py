"""Task-settable envs: a gymnasium wrapper through which a curriculum sets the task per episode.

Same surface as RLlib's TaskSettableEnv: ``task_space`` (a gymnasium space: Discrete or Box),
``set_task(task)`` (takes effect at the next reset), ``get_task()`` (read back from the env).
``reset(options={"task": t})`` also sets it. A task outside ``task_space`` is a RewindError.

- ``ALETaskEnv``: ALE game mode and difficulty (ale-py's ``mode`` / ``difficulty``); task =
  index into ``pairs``, the (mode, difficulty) combinations the ROM offers. The ALE applies a
  mode at its next game reset, so a task change also forces a real game reset under
  rewind's life-loss wrapper.
- ``MinAtarTaskEnv``: the difficulty level an episode starts at (MinAtar's ramp index: faster
  enemies, faster spawning). With the env's difficulty_ramping on the game ramps on from that
  level; with it off the level stays fixed for the whole episode.
- ``RebuildTaskEnv`` / ``maze_task_env``: tasks that are constructor options (digit-maze size
  and wall density); each task's env is built once by a factory and cached.

This module never imports a controller: teachers are connected in controllers/curriculum_env.py.
"""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np

from rewind.errors import RewindError


class TaskEnv(gym.Wrapper):
    """Base: validation, pending task, `options={"task": ...}` on reset."""

    task_space: gym.Space

    def __init__(self, env: gym.Env, task_space: gym.Space):
        super().__init__(env)
        if isinstance(task_space, gym.spaces.Discrete) and task_space.n < 1:
            raise RewindError("the task space is empty: it needs at least one task")
        self.task_space = task_space
        self._pending = None
        self._active = None

    def check_task(self, task):
        """The task as a value of task_space, or a RewindError naming the space."""
        space = self.task_space
        if isinstance(space, gym.spaces.Discrete):
            if isinstance(task, (bool, np.bool_)) or not isinstance(task, (int, np.integer)) \
                    or not space.contains(int(task)):
                raise RewindError(f"task {task!r} is outside the task space {space} "
                                  f"(an integer in {space.start}..{space.start + space.n - 1})")
            return int(task)
        value = np.asarray(task, dtype=space.dtype)
        if value.shape != space.shape or not space.contains(value):
            raise RewindError(f"task {task!r} is outside the task space: Box low={space.low.tolist()} "
                              f"high={space.high.tolist()}")
        return value

    def set_task(self, task) -> None:
        """Set the task of the next episode (applied at the next reset)."""
        self._pending = self.check_task(task)

    def get_task(self):
        """The task the env is running now, read back from the env itself."""
        raise NotImplementedError

    def reset(self, *, seed=None, options=None):
        options = dict(options or {})
        if "task" in options:
            self.set_task(options.pop("task"))
        if self._pending is not None:
            task, self._pending = self._pending, None
            changed = self._active is None or not np.array_equal(np.asarray(task), np.asarray(self._active))
            self._active = task
            return self._reset_with(task, changed, seed=seed, options=options or None)
        return self.env.reset(seed=seed, options=options or None)

    def _reset_with(self, task, changed: bool, *, seed, options):
        raise NotImplementedError


def _force_game_reset(env: gym.Env) -> None:
    """Make rewind's LifeLossTerminal (if any) start a new game at the next reset."""
    while isinstance(env, gym.Wrapper):
        if hasattr(env, "_game_over"):
            env._game_over = True
        env = env.env


class ALETaskEnv(TaskEnv, gym.utils.RecordConstructorArgs):
    """Task = index into `pairs`, the (mode, difficulty) pairs of the ROM (or the ones given)."""

    def __init__(self, env: gym.Env, modes=None, difficulties=None):
        gym.utils.RecordConstructorArgs.__init__(self, modes=modes, difficulties=difficulties)
        ale_env = env.unwrapped
        if not hasattr(ale_env, "ale"):
            raise RewindError("ALETaskEnv needs an ALE env (ale-py's AtariEnv inside)")
        ale = ale_env.ale
        avail_m, avail_d = [int(m) for m in ale.getAvailableModes()], [int(d) for d in ale.getAvailableDifficulties()]
        modes = avail_m if modes is None else [int(m) for m in modes]
        diffs = avail_d if difficulties is None else [int(d) for d in difficulties]
        bad = [m for m in modes if m not in avail_m] + [d for d in diffs if d not in avail_d]
        if bad or not modes or not diffs:
            raise RewindError(f"this game offers modes {avail_m} and difficulties {avail_d}; "
                              f"got modes {modes} and difficulties {diffs}")
        self.pairs = [(m, d) for m in modes for d in diffs]
        super().__init__(env, gym.spaces.Discrete(len(self.pairs)))

    def describe(self, task) -> dict:
        mode, difficulty = self.pairs[self.check_task(task)]
        return {"mode": mode, "difficulty": difficulty}

    def get_task(self):
        ale_env = self.env.unwrapped
        pair = (ale_env._game_mode, ale_env._game_difficulty)
        pair = (pair[0] if pair[0] is not None else self.pairs[0][0], pair[1] if pair[1] is not None else 0)
        return self.pairs.index(pair) if pair in self.pairs else None

    def _reset_with(self, task, changed, *, seed, options):
        if changed:
            mode, difficulty = self.pairs[task]
            ale_env = self.env.unwrapped
            ale_env._game_mode, ale_env._game_difficulty = mode, difficulty  # survives a re-seed
            ale_env.ale.setMode(mode)
            ale_env.ale.setDifficulty(difficulty)
            _force_game_reset(self.env)
        return self.env.reset(seed=seed, options=options)


# MinAtar ramps: one step of each game's difficulty ramp, as in minatar/environments/*.py
def _ramp_asterix(g) -> bool:
    if not (g.spawn_speed > 1 or g.move_speed > 1):
        return False
    if g.move_speed > 1 and g.ramp_index % 2:
        g.move_speed -= 1
    if g.spawn_speed > 1:
        g.spawn_speed -= 1
    g.ramp_index += 1
    g.spawn_timer, g.move_timer = g.spawn_speed, g.move_speed
    return True


def _ramp_seaquest(g) -> bool:
    if not (g.e_spawn_speed > 1 or g.move_speed > 2):
        return False
    if g.move_speed > 2 and g.ramp_index % 2:
        g.move_speed -= 1
    if g.e_spawn_speed > 1:
        g.e_spawn_speed -= 1
    g.ramp_index += 1
    g.e_spawn_timer = g.e_spawn_speed
    return True


def _ramp_space_invaders(g) -> bool:
    if not g.enemy_move_interval > 6:
        return False
    g.enemy_move_interval -= 1
    g.ramp_index += 1
    g.alien_move_timer = g.enemy_move_interval
    return True


MINATAR_RAMPS = {"asterix": _ramp_asterix, "seaquest": _ramp_seaquest, "space_invaders": _ramp_space_invaders}


class MinAtarTaskEnv(TaskEnv, gym.utils.RecordConstructorArgs):
    """Task = the difficulty level (ramp index) each episode starts at; Discrete(max level + 1)."""

    def __init__(self, env: gym.Env, max_level: int | None = None):
        gym.utils.RecordConstructorArgs.__init__(self, max_level=max_level)
        base = env.unwrapped
        if not hasattr(base, "game") or not hasattr(base.game, "env_name"):
            raise RewindError("MinAtarTaskEnv needs a MinAtar env (minatar.gym.BaseEnv inside)")
        self.game_name = base.game.env_name
        self._ramp = MINATAR_RAMPS.get(self.game_name)
        top = self._max_level(base.game.env)
        if max_level is not None:
            if max_level < 0 or max_level > top:
                raise RewindError(f"MinAtar {self.game_name}: max_level must be in 0..{top}, got {max_level}")
            top = max_level
        super().__init__(env, gym.spaces.Discrete(top + 1))

    def _max_level(self, game) -> int:
        """How many ramp steps until the game is at its hardest (0: the game does not ramp)."""
        if self._ramp is None:
            return 0
        scratch = type(game)(ramping=True)
        scratch.reset()
        level = 0
        while self._ramp(scratch):
            level += 1
        return level

    def get_task(self):
        level = getattr(self.env.unwrapped.game.env, "ramp_index", 0)
        return int(level) if level is not None else 0

    def _reset_with(self, task, changed, *, seed, options):
        out = self.env.reset(seed=seed, options=options)
        game = self.env.unwrapped.game.env
        for _ in range(task):
            self._ramp(game)
        return out


class RebuildTaskEnv(TaskEnv):
    """Tasks that are constructor options: `make(task) -> env`, built once per task and cached.

    It builds its own envs, one per task, so it is not a spec wrapper: `env.spec` describes the
    env of the current task, and recreating the task env means calling its constructor again.

    Every task's env must have the same observation and action spaces. A task's env is reset
    with `seed + hash of the task` the first time, so runs are reproducible.
    """

    def __init__(self, make: Callable[[object], gym.Env], task_space: gym.Space, first_task):
        self._make, self._cache = make, {}
        self._seed = 0
        probe = self._build(first_task, task_space)
        super().__init__(probe, task_space)
        self._active = self.check_task(first_task)

    @staticmethod
    def _key(task):
        return tuple(np.atleast_1d(np.asarray(task)).tolist())

    def _build(self, task, task_space=None) -> gym.Env:
        key = self._key(task)
        if key not in self._cache:
            env = self._make(task)
            ref = getattr(self, "env", None)
            if ref is not None and (env.observation_space != ref.observation_space
                                    or env.action_space != ref.action_space):
                raise RewindError(f"task {task!r} changes the observation or action space "
                                  f"({env.observation_space} vs {ref.observation_space}); "
                                  f"pick tasks with equal spaces (e.g. maze observation='digits')")
            self._cache[key] = [env, False]
        return self._cache[key][0]

    def get_task(self):
        return self._read(self.env)

    def _read(self, env):
        raise NotImplementedError

    def _reset_with(self, task, changed, *, seed, options):
        if seed is not None:
            self._seed = int(seed)
        self._build(task)
        entry = self._cache[self._key(task)]
        self.env = entry[0]
        if seed is None and not entry[1]:
            seed = self._seed + 7919 * (1 + hash(self._key(task)) % 100_003)
        entry[1] = True
        return self.env.reset(seed=seed, options=options)

    def close(self):
        for env, _ in self._cache.values():
            env.close()


class MazeTaskEnv(RebuildTaskEnv):
    """Digit maze with task = (size, wall density) in a Box; size is rounded to an integer."""

    def __init__(self, make_maze: Callable[..., gym.Env], min_size: int = 2, max_size: int = 10,
                 max_density: float = 0.9, first_task=(10, 0.2)):
        if not 2 <= min_size <= max_size:
            raise RewindError(f"maze task sizes need 2 <= min_size <= max_size, got {min_size}, {max_size}")
        space = gym.spaces.Box(np.array([min_size, 0.0], np.float32), np.array([max_size, max_density], np.float32))
        super().__init__(lambda t: make_maze(size=int(round(float(t[0]))), density=float(t[1])), space,
                         np.asarray(first_task, np.float32))

    def _read(self, env):
        maze = env.unwrapped
        return np.array([maze.size, maze.density], np.float32)


def maze_task_env(env_id: str = "rewind/maze-v0", **maze_kwargs) -> MazeTaskEnv:
    """A MazeTaskEnv over gymnasium id `env_id` (other maze options fixed by `maze_kwargs`)."""
    first = (maze_kwargs.pop("size", 10), maze_kwargs.pop("density", 0.2))
    max_size = maze_kwargs.pop("max_size", 10)

    def make(size, density):
        from rewind.envs import register_rewind_envs
        register_rewind_envs()
        return gym.wrappers.RecordEpisodeStatistics(gym.make(env_id, size=size, density=density, **maze_kwargs))

    return MazeTaskEnv(make, max_size=max_size, first_task=first)
