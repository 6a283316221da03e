"""A curriculum teacher is an Agent whose action is a task and whose reward is the student's score.

Agent surface (driven by the run loop over a task-selection env): ``act`` picks a task index,
``observe`` takes the student's score on that task as ``reward``, ``update`` does the teacher's
learning. Syllabus surface (for a TaskWrapper-style integration): ``sample(k)`` returns task
values, ``update_on_episode(episode_return, length, task, progress)`` reports a result,
``task_space`` is the gymnasium space the task values live in.

Tasks are a finite list of values (a bandit's arms): ``range(n)`` for a Discrete action space,
or explicit values (e.g. points of a Box task space) given as ``tasks=[...]``.
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from rewind.agents.base import Agent
from rewind.errors import RewindError


def _as_space(tasks: Sequence, task_space: gym.Space | None) -> gym.Space:
    if task_space is not None:
        for t in tasks:
            if not task_space.contains(np.asarray(t, dtype=task_space.dtype) if isinstance(task_space, gym.spaces.Box)
                                       else t):
                raise RewindError(f"task {t!r} is outside the task space {task_space}")
        return task_space
    return gym.spaces.Discrete(len(tasks))


class Teacher(Agent):
    """Base of every teacher: task bookkeeping, Syllabus surface, RNG state."""

    Config = None

    def __init__(self, observation_space: gym.Space | None = None, action_space: gym.Space | None = None,
                 config: Any = None, *, seed: int = 0, frame_stack: int = 1,
                 tasks: Sequence | None = None, task_space: gym.Space | None = None):
        if tasks is None:
            if not isinstance(action_space, gym.spaces.Discrete):
                raise RewindError("a teacher needs a Discrete action space (one action per task) or tasks=[...]")
            tasks = list(range(int(action_space.start), int(action_space.start + action_space.n)))
        tasks = list(tasks)
        if len(tasks) == 0:
            raise RewindError("the task space is empty: give the teacher at least one task")
        self.tasks = tasks
        self.task_space = _as_space(tasks, task_space)
        n = len(tasks)
        action_space = action_space or gym.spaces.Discrete(n)
        if not isinstance(action_space, gym.spaces.Discrete) or action_space.n != n:
            raise RewindError(f"teacher action space must be Discrete({n}), one action per task")
        observation_space = observation_space or gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)
        super().__init__(observation_space, action_space, config, seed=seed, frame_stack=frame_stack)
        self.n_tasks = n
        self.rng = np.random.default_rng(seed)
        self.t = 0                     # scores recorded so far (the teacher's clock)
        self.counts = np.zeros(n, np.int64)
        self._pending: list[tuple[int, float]] = []

    # ---- task values <-> indices ---------------------------------------------------------------
    def task_index(self, task) -> int:
        """Index of a task value (or an index itself for integer tasks)."""
        for i, t in enumerate(self.tasks):
            if np.array_equal(np.asarray(t), np.asarray(task)):
                return i
        raise RewindError(f"task {task!r} is not one of this teacher's {self.n_tasks} tasks")

    # ---- Agent interface -----------------------------------------------------------------------
    def act(self, obs=None, explore: bool = True) -> int:
        return int(self._choose(explore))

    def observe(self, obs, action, reward, next_obs=None, terminated=True, truncated=False, info=None) -> None:
        action = int(action)
        if not 0 <= action < self.n_tasks:
            raise RewindError(f"task index {action} outside 0..{self.n_tasks - 1}")
        self._pending.append((action, float(reward)))

    def update(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for task, score in self._pending:
            self.t += 1
            self.counts[task] += 1
            metrics = self._learn(task, score) or {}
        self._pending.clear()
        return metrics

    # ---- Syllabus-like surface -----------------------------------------------------------------
    def sample(self, k: int = 1) -> list:
        """k task values to train on next."""
        return [self.tasks[self.act()] for _ in range(k)]

    def update_on_episode(self, episode_return: float, length: int | None = None, task=None,
                          progress: float | None = None, env_id=None) -> None:
        """The student finished an episode of `task`; its score is `progress` if given, else the return."""
        if task is None:
            raise RewindError("update_on_episode needs the task the episode was played on")
        self.observe(None, self.task_index(task), episode_return if progress is None else progress)
        self.update()

    def update_task_progress(self, task, progress: float) -> None:
        self.update_on_episode(progress, task=task)

    # ---- to implement --------------------------------------------------------------------------
    def _choose(self, explore: bool) -> int:
        raise NotImplementedError

    def _learn(self, task: int, score: float) -> dict[str, float] | None:
        raise NotImplementedError

    def probabilities(self) -> np.ndarray:
        """Current task distribution if the teacher has one (for logging); else one-hot of greedy."""
        p = np.zeros(self.n_tasks)
        p[self._choose(False)] = 1.0
        return p

    def state_dict(self) -> dict:
        return {"t": self.t, "counts": self.counts.copy(), "rng": self.rng.bit_generator.state,
                **self._extra_state()}

    def load_state_dict(self, state: dict) -> None:
        self.t, self.counts = int(state["t"]), np.array(state["counts"])
        self.rng.bit_generator.state = state["rng"]
        self._load_extra_state(state)

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass
