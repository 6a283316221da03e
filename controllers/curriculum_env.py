"""Connect a teacher to a task-settable env: `rewind train --curriculum NAME`.

`CurriculumWrapper` asks the teacher for a task before each episode, sets it on the TaskEnv,
and at the episode's real end (gymnasium's RecordEpisodeStatistics reports it; under Atari's
life-loss terminals that is game over, not a lost life) reports the score to the teacher.
The student and the run loop see an ordinary env; `info["curriculum"]` at episode end carries
the task and the teacher's metrics, and `info["task"]` is the current task on every step.

Scores: the episode return (RecordEpisodeStatistics' raw return), or `info[score]` for
`options["score"]` (e.g. "is_success" for the maze). PLR wants a value-loss score: the
student may put `info["plr_score"]` in; otherwise the wrapper uses |return - previous
return on that task| (|return| on a first visit), a documented fallback for value-based
students without GAE.
"""

from __future__ import annotations

import dataclasses
import difflib

import gymnasium as gym
import numpy as np

from rewind.controllers.plr import PLRTeacher
from rewind.controllers.teachers import TEACHERS
from rewind.envs import find_wrapper
from rewind.envs.tasks import ALETaskEnv, MinAtarTaskEnv, RebuildTaskEnv, TaskEnv, maze_task_env
from rewind.errors import RewindError

CURRICULA = {**TEACHERS, "plr": PLRTeacher}


class CurriculumWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Teacher-driven task per episode over a TaskEnv (Syllabus' TaskWrapper + curriculum).

    Recorded in the spec (with a copy of the teacher as it was then), so `env.spec.make()`
    rebuilds the stack over ALE and MinAtar task envs.
    """

    def __init__(self, env: TaskEnv, teacher, tasks: list, score: str = "return"):
        gym.utils.RecordConstructorArgs.__init__(self, teacher=teacher, tasks=tasks, score=score)
        if not isinstance(env, TaskEnv):
            raise RewindError("CurriculumWrapper needs a task-settable env (rewind.envs.tasks.TaskEnv)")
        super().__init__(env)
        for t in tasks:
            env.check_task(t)
        if len(tasks) != teacher.n_tasks:
            raise RewindError(f"the teacher has {teacher.n_tasks} tasks but {len(tasks)} task values were given")
        self.teacher, self.tasks, self.score_key = teacher, list(tasks), score
        self._stats = find_wrapper(env, gym.wrappers.RecordEpisodeStatistics) is not None
        self._need_task = True
        self._task_idx = None
        self._return = 0.0
        self._last_score: dict[int, float] = {}
        self.episodes_per_task = np.zeros(len(tasks), np.int64)

    @property
    def task_space(self):
        return self.env.task_space

    def get_task(self):
        return self.env.get_task()

    def reset(self, *, seed=None, options=None):
        if self._need_task:
            self._task_idx = self.teacher.act()
            self.env.set_task(self.tasks[self._task_idx])
            self._need_task = False
            self._return = 0.0
        obs, info = self.env.reset(seed=seed, options=options)
        info["task"] = self._task_idx
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._return += float(reward)
        info["task"] = self._task_idx
        if "episode" in info or (not self._stats and (terminated or truncated)):
            self._end_episode(info)
        return obs, reward, terminated, truncated, info

    def _end_episode(self, info) -> None:
        task = self._task_idx
        if self.score_key == "return":
            score = float(np.asarray(info["episode"]["r"]).item()) if "episode" in info else self._return
        elif self.score_key in info:
            score = float(info[self.score_key])
        else:
            raise RewindError(f"curriculum score {self.score_key!r} is not in the env's info at episode end")
        if isinstance(self.teacher, PLRTeacher):
            if "plr_score" in info:
                raw, score = score, float(info["plr_score"])
            else:
                raw = score
                score = abs(raw - self._last_score[task]) if task in self._last_score else abs(raw)
            self._last_score[task] = raw
        self.teacher.observe(None, task, score)
        metrics = self.teacher.update()
        self.episodes_per_task[task] += 1
        info["curriculum"] = {"task": task, "score": score, **metrics}
        self._need_task = True


# ---- building one from a name and options ---------------------------------------------------

def _split(options: dict, cfg_cls, allowed: set[str]) -> tuple[dict, dict]:
    fields = {f.name for f in dataclasses.fields(cfg_cls)} if cfg_cls is not None else set()
    teacher_opts, env_opts = {}, {}
    for key, value in options.items():
        if key in fields:
            teacher_opts[key] = value
        elif key in allowed:
            env_opts[key] = value
        else:
            valid = sorted(fields | allowed)
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise RewindError(f"unknown curriculum option {key!r}{hint}; valid: {', '.join(valid)}")
    return teacher_opts, env_opts


def _task_env(env_name: str, env: gym.Env, opts: dict) -> tuple[TaskEnv, list]:
    """Wrap `env` in the TaskEnv that fits it; return it and the teacher's task values."""
    if isinstance(env, TaskEnv):
        task_env = env
    elif hasattr(env.unwrapped, "ale"):
        task_env = ALETaskEnv(env, opts.get("modes"), opts.get("difficulties"))
    elif hasattr(env.unwrapped, "game") and hasattr(env.unwrapped.game, "env_name"):
        task_env = MinAtarTaskEnv(env, opts.get("max_level"))
    elif type(env.unwrapped).__name__ == "DigitMazeEnv":
        maze = env.unwrapped
        kwargs = dict(stochastic=maze.stochastic, random_action_prob=maze.random_action_prob or 0.2,
                      maze_seed=maze.maze_seed, max_steps=maze.max_steps, observation=maze.observation_mode,
                      reward_scale=maze.reward_scale)
        env.close()
        sizes = [int(s) for s in opts.get("sizes", [maze.size])]
        task_env = maze_task_env(env_name if env_name.startswith("rewind/maze") else "rewind/maze-v0",
                                 size=max(sizes), density=maze.density, max_size=max(sizes), **kwargs)
    else:
        raise RewindError(f"env {env_name!r} has no curriculum tasks; curricula work on ALE games "
                          f"(modes/difficulties), MinAtar (difficulty levels) and the digit maze")
    if "tasks" in opts:
        tasks = list(opts["tasks"])
    elif isinstance(task_env.task_space, gym.spaces.Discrete):
        sp = task_env.task_space
        tasks = list(range(int(sp.start), int(sp.start + sp.n)))
    elif isinstance(task_env, RebuildTaskEnv) and type(task_env).__name__ == "MazeTaskEnv":
        sizes = [int(s) for s in opts.get("sizes", [int(task_env.get_task()[0])])]
        densities = [float(d) for d in opts.get("densities", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5])]
        tasks = [[s, d] for s in sorted(sizes) for d in sorted(densities)]  # easy -> hard
    else:
        raise RewindError("give the curriculum its task values: options['tasks'] = [...]")
    if not tasks:
        raise RewindError("the curriculum task list is empty: give at least one task")
    return task_env, tasks


ENV_OPTIONS = {"tasks", "modes", "difficulties", "max_level", "sizes", "densities", "score", "seed"}


def wrap_with_curriculum(env_name: str, env: gym.Env, curriculum_name: str, options: dict | None = None
                         ) -> CurriculumWrapper:
    """The env `rewind train --curriculum NAME` trains on.

    env_name: the name given to make_env; env: what make_env returned (training version);
    curriculum_name: one of CURRICULA (tscl-window, tscl-online, tscl-naive, tscl-sampling, plr,
    uniform, fixed); options: teacher config keys (policy, epsilon, temperature, alpha, window,
    absolute; PLR: temperature, staleness_coef, replay_prob, ...) plus task keys: tasks (explicit
    task values), modes / difficulties (ALE), max_level (MinAtar), sizes / densities (maze),
    score ("return" or an info key), seed.
    """
    from rewind.config import from_dict

    if curriculum_name not in CURRICULA:
        close = difflib.get_close_matches(curriculum_name, CURRICULA, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise RewindError(f"unknown curriculum {curriculum_name!r}{hint}; choose from: {', '.join(sorted(CURRICULA))}")
    cls = CURRICULA[curriculum_name]
    teacher_opts, env_opts = _split(dict(options or {}), cls.Config, ENV_OPTIONS)
    task_env, tasks = _task_env(env_name, env, env_opts)
    config = from_dict(cls.Config, teacher_opts, "curriculum") if cls.Config is not None else None
    teacher = cls(None, gym.spaces.Discrete(len(tasks)), config, seed=int(env_opts.get("seed", 0)), tasks=None)
    return CurriculumWrapper(task_env, teacher, tasks, score=str(env_opts.get("score", "return")))
