"""Teacher-Student Curriculum Learning (Matiisen, Oliver, Cohen, Schulman 2017).

The teacher is a non-stationary bandit whose arms are tasks. It estimates the slope of the
student's learning curve on each task and picks the task with the steepest *absolute* slope,
so it also comes back to a task whose score is falling (being forgotten).

- ``OnlineTeacher``: reward = score change since the task was last trained,
  Q <- alpha * reward + (1 - alpha) * Q.
- ``NaiveTeacher``: train the chosen task for K episodes, reward = slope of a line fitted to
  those K scores, same Q update.
- ``WindowTeacher``: Q = slope of a line fitted to the last K (time, score) pairs of the task.
- ``SamplingTeacher``: keep the last K score changes per task; sample one from each buffer and
  pick the largest absolute value (Thompson-like).

Policies over |Q|: ``eps_greedy`` (epsilon), ``boltzmann`` (temperature), ``thompson`` (sample
the estimate from a Gaussian with the estimate's standard error; for the Sampling teacher the
buffer draw is the sample). Our choice, documented: a task never scored is tried first (in
random order), since a slope cannot be estimated without data.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rewind.controllers.teacher_base import Teacher
from rewind.errors import RewindError

POLICIES = ("eps_greedy", "boltzmann", "thompson")


@dataclasses.dataclass
class TSCLConfig:
    policy: str = "eps_greedy"   # eps_greedy | boltzmann | thompson
    epsilon: float = 0.1          # eps_greedy exploration
    temperature: float = 0.0004   # boltzmann over |Q| (scale of the score slopes!)
    alpha: float = 0.1            # Online / Naive: step size of the Q update
    window: int = 10              # K: Window / Sampling buffer length, Naive episodes per choice
    absolute: bool = True         # pick by |slope|; false: by signed slope (ignores forgetting)

    def validate(self):
        if self.policy not in POLICIES:
            raise RewindError(f"teacher policy must be one of {POLICIES}, got {self.policy!r}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise RewindError(f"teacher epsilon must be in [0, 1], got {self.epsilon}")
        if self.temperature <= 0:
            raise RewindError(f"teacher temperature must be > 0, got {self.temperature}")
        if not 0.0 < self.alpha <= 1.0:
            raise RewindError(f"teacher alpha must be in (0, 1], got {self.alpha}")
        if self.window < 2:
            raise RewindError(f"teacher window must be >= 2 (a slope needs two points), got {self.window}")


class _TSCLTeacher(Teacher):
    Config = TSCLConfig
    min_tries = 1   # scores a task needs before its estimate is used (untried tasks go first)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.config is not None and hasattr(self.config, "validate"):
            self.config.validate()
        self.q = np.zeros(self.n_tasks)
        self.q_var = np.zeros(self.n_tasks)   # spread of the estimate (for thompson)

    def _estimates(self, explore: bool) -> tuple[np.ndarray, np.ndarray]:
        """Estimated slopes and their standard errors (EW variance of the mean for Online/Naive)."""
        a = self.config.alpha
        return self.q, np.sqrt(self.q_var * a / (2 - a))

    def _choose(self, explore: bool) -> int:
        cfg = self.config
        untried = np.flatnonzero(self.counts < self.min_tries)
        if explore and len(untried):
            return int(self.rng.choice(untried))
        mean, sd = self._estimates(explore)
        if explore and cfg.policy == "thompson":
            mean = mean + sd * self.rng.standard_normal(self.n_tasks)
        value = np.abs(mean) if cfg.absolute else mean
        if explore and cfg.policy == "eps_greedy" and self.rng.random() < cfg.epsilon:
            return int(self.rng.integers(self.n_tasks))
        if explore and cfg.policy == "boltzmann":
            return int(self.rng.choice(self.n_tasks, p=self._softmax(value)))
        best = np.flatnonzero(value == value.max())
        return int(self.rng.choice(best)) if explore else int(best[0])

    def _softmax(self, value):
        z = value / self.config.temperature
        p = np.exp(z - z.max())
        return p / p.sum()

    def probabilities(self) -> np.ndarray:
        cfg = self.config
        mean, _ = self._estimates(False)
        value = np.abs(mean) if cfg.absolute else mean
        if cfg.policy == "boltzmann":
            return self._softmax(value)
        p = np.zeros(self.n_tasks)
        p[int(np.argmax(value))] = 1.0
        if cfg.policy == "eps_greedy":
            p = (1 - cfg.epsilon) * p + cfg.epsilon / self.n_tasks
        return p

    def _q_update(self, task: int, reward: float) -> None:
        a = self.config.alpha
        delta = reward - self.q[task]
        self.q[task] += a * delta
        self.q_var[task] = (1 - a) * (self.q_var[task] + a * delta * delta)  # EW variance

    def _metrics(self, task: int) -> dict[str, float]:
        return {"teacher/task": float(task), "teacher/q": float(self.q[task])}

    def _extra_state(self) -> dict:
        return {"q": self.q.copy(), "q_var": self.q_var.copy()}

    def _load_extra_state(self, state: dict) -> None:
        self.q, self.q_var = np.array(state["q"]), np.array(state["q_var"])


class OnlineTeacher(_TSCLTeacher):
    """Online: exponentially weighted average of score changes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.last_score = np.zeros(self.n_tasks)

    def _learn(self, task, score):
        reward = score - self.last_score[task]
        self.last_score[task] = score
        self._q_update(task, reward)
        return self._metrics(task)

    def _extra_state(self):
        return {**super()._extra_state(), "last_score": self.last_score.copy()}

    def _load_extra_state(self, state):
        super()._load_extra_state(state)
        self.last_score = np.array(state["last_score"])


def _slope(t: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of x over t and its standard error."""
    n = len(t)
    if n < 2:
        return 0.0, 0.0
    tc = t - t.mean()
    sxx = float(tc @ tc)
    if sxx == 0:
        return 0.0, 0.0
    beta = float(tc @ (x - x.mean())) / sxx
    if n < 3:
        return beta, abs(beta)
    resid = x - x.mean() - beta * tc
    return beta, float(np.sqrt((resid @ resid) / (n - 2) / sxx))


class NaiveTeacher(_TSCLTeacher):
    """Naive: K episodes on one task, then Q update with the slope over those K scores."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.current: int | None = None
        self.scores: list[float] = []

    def _choose(self, explore):
        if explore and self.current is not None:
            return self.current
        choice = super()._choose(explore)
        if explore:
            self.current, self.scores = choice, []
        return choice

    def _learn(self, task, score):
        if task != self.current:   # a score for another task (e.g. from evaluation): record only
            return self._metrics(task)
        self.scores.append(score)
        if len(self.scores) >= self.config.window:
            beta, _ = _slope(np.arange(len(self.scores), dtype=float), np.array(self.scores))
            self._q_update(task, beta)
            self.current = None
        return self._metrics(task)

    def _extra_state(self):
        return {**super()._extra_state(), "current": self.current, "scores": list(self.scores)}

    def _load_extra_state(self, state):
        super()._load_extra_state(state)
        self.current, self.scores = state["current"], list(state["scores"])


class WindowTeacher(_TSCLTeacher):
    """Window: Q = slope of the last K (time, score) pairs of each task."""

    min_tries = 3   # two points give a slope, three its standard error

    def _estimates(self, explore):
        return self.q, np.sqrt(self.q_var)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        k = self.config.window
        self.buf_t = np.full((self.n_tasks, k), np.nan)
        self.buf_x = np.full((self.n_tasks, k), np.nan)

    def _learn(self, task, score):
        self.buf_t[task] = np.roll(self.buf_t[task], -1)
        self.buf_x[task] = np.roll(self.buf_x[task], -1)
        self.buf_t[task, -1], self.buf_x[task, -1] = self.t, score
        ok = ~np.isnan(self.buf_t[task])
        self.q[task], se = _slope(self.buf_t[task, ok], self.buf_x[task, ok])
        self.q_var[task] = se * se
        return self._metrics(task)

    def _extra_state(self):
        return {**super()._extra_state(), "buf_t": self.buf_t.copy(), "buf_x": self.buf_x.copy()}

    def _load_extra_state(self, state):
        super()._load_extra_state(state)
        self.buf_t, self.buf_x = np.array(state["buf_t"]), np.array(state["buf_x"])


class SamplingTeacher(_TSCLTeacher):
    """Sampling: draw one recent score change per task, pick the largest |change|."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.last_score = np.zeros(self.n_tasks)
        self.buf = np.full((self.n_tasks, self.config.window), np.nan)

    def _estimates(self, explore):
        if not explore:
            return np.nanmean(np.where(np.isnan(self.buf).all(1, keepdims=True), 0.0, self.buf), axis=1), \
                np.zeros(self.n_tasks)
        filled = (~np.isnan(self.buf)).sum(1)
        pick = (self.rng.random(self.n_tasks) * np.maximum(filled, 1)).astype(int)
        # entries are kept at the end of each row, newest last
        cols = self.buf.shape[1] - np.maximum(filled, 1) + pick
        draw = self.buf[np.arange(self.n_tasks), cols]
        return np.nan_to_num(draw), np.zeros(self.n_tasks)

    def _learn(self, task, score):
        reward = score - self.last_score[task]
        self.last_score[task] = score
        self.buf[task] = np.roll(self.buf[task], -1)
        self.buf[task, -1] = reward
        self.q[task] = float(np.nanmean(self.buf[task]))
        return self._metrics(task)

    def _extra_state(self):
        return {**super()._extra_state(), "last_score": self.last_score.copy(), "buf": self.buf.copy()}

    def _load_extra_state(self, state):
        super()._load_extra_state(state)
        self.last_score, self.buf = np.array(state["last_score"]), np.array(state["buf"])


TEACHERS = {"tscl-online": OnlineTeacher, "tscl-naive": NaiveTeacher, "tscl-window": WindowTeacher,
            "tscl-sampling": SamplingTeacher}


class UniformTeacher(Teacher):
    """Baseline: every task equally often, at random (no learning)."""

    def _choose(self, explore):
        return int(self.rng.integers(self.n_tasks)) if explore else 0

    def _learn(self, task, score):
        return {"teacher/task": float(task)}

    def probabilities(self):
        return np.full(self.n_tasks, 1.0 / self.n_tasks)


@dataclasses.dataclass
class FixedConfig:
    task: int = -1   # index of the only task trained on; -1 = the last (by convention the hardest)


class FixedTeacher(Teacher):
    """Baseline: always the same task (e.g. train on the hardest task only)."""

    Config = FixedConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not -self.n_tasks <= self.config.task < self.n_tasks:
            raise RewindError(f"fixed teacher task index must be in -{self.n_tasks}..{self.n_tasks - 1}, "
                              f"got {self.config.task}")
        self.fixed = self.config.task % self.n_tasks

    def _choose(self, explore):
        return self.fixed

    def _learn(self, task, score):
        return {"teacher/task": float(task)}


TEACHERS.update({"uniform": UniformTeacher, "fixed": FixedTeacher})
