"""Prioritized Level Replay (Jiang, Grefenstette, Rocktaeschel 2021) as a curriculum teacher.

Each level (task) seen so far has a score S_i (its learning potential, by default the mean
positive GAE of its last episode, i.e. how much the value function is still wrong) and the
episode count C_i at which it was last played. Replay distribution:

    P_replay = (1 - rho) * P_S + rho * P_C
    P_S(i) ∝ h(S_i) ** (1 / beta),  h = 1 / rank(S_i)      (rank transform, temperature beta)
    P_C(i) ∝ c - C_i                                          (staleness, c = episodes so far)

An unseen level is drawn uniformly with probability 1 - replay_prob (always while none has
been seen, never once all have). Paper defaults for Procgen: beta 0.1, rho 0.1.

The score arrives as the Agent ``reward`` / Syllabus ``progress``. A value-based student has
no GAE; the curriculum wrapper then scores a level by the absolute change of its return
between two visits (documented fallback, see curriculum_env.py).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.signal import lfilter

from rewind.controllers.teacher_base import Teacher
from rewind.errors import RewindError

TRANSFORMS = ("rank", "power")


@dataclasses.dataclass
class PLRConfig:
    temperature: float = 0.1      # beta
    staleness_coef: float = 0.1   # rho
    replay_prob: float = 0.5      # probability of replaying a seen level while unseen ones remain
    score_transform: str = "rank"  # rank: h = 1/rank; power: h = S
    score_ema: float = 1.0        # new score weight (1: replace, as in the paper)

    def validate(self):
        if self.temperature <= 0:
            raise RewindError(f"plr temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.staleness_coef <= 1.0:
            raise RewindError(f"plr staleness_coef must be in [0, 1], got {self.staleness_coef}")
        if not 0.0 <= self.replay_prob <= 1.0:
            raise RewindError(f"plr replay_prob must be in [0, 1], got {self.replay_prob}")
        if self.score_transform not in TRANSFORMS:
            raise RewindError(f"plr score_transform must be one of {TRANSFORMS}, got {self.score_transform!r}")
        if not 0.0 < self.score_ema <= 1.0:
            raise RewindError(f"plr score_ema must be in (0, 1], got {self.score_ema}")


def gae(rewards, values, gamma: float = 0.99, lam: float = 0.95, last_value: float = 0.0) -> np.ndarray:
    """Generalised advantage estimates of one episode (vectorised with a linear filter)."""
    r = np.asarray(rewards, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if r.shape != v.shape or r.ndim != 1:
        raise RewindError("gae needs 1-d rewards and values of the same length")
    delta = r + gamma * np.append(v[1:], last_value) - v
    return lfilter([1.0], [1.0, -gamma * lam], delta[::-1])[::-1]


def positive_value_loss(rewards, values, gamma=0.99, lam=0.95, last_value=0.0) -> float:
    """PLR's default score: mean of max(GAE, 0) over the episode."""
    return float(np.maximum(gae(rewards, values, gamma, lam, last_value), 0).mean())


def l1_value_loss(rewards, values, gamma=0.99, lam=0.95, last_value=0.0) -> float:
    """Mean |GAE| over the episode."""
    return float(np.abs(gae(rewards, values, gamma, lam, last_value)).mean())


class PLRTeacher(Teacher):
    Config = PLRConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.config.validate()
        self.scores = np.zeros(self.n_tasks)
        self.seen = np.zeros(self.n_tasks, bool)
        self.last_played = np.zeros(self.n_tasks)
        self.episodes = 0

    def replay_distribution(self) -> np.ndarray:
        """P_replay over all tasks (zero for unseen ones)."""
        cfg = self.config
        p = np.zeros(self.n_tasks)
        idx = np.flatnonzero(self.seen)
        if len(idx) == 0:
            return p
        s = self.scores[idx]
        if cfg.score_transform == "rank":
            order = np.argsort(-s, kind="stable")
            rank = np.empty(len(s))
            rank[order] = np.arange(1, len(s) + 1)
            h = (1.0 / rank) ** (1.0 / cfg.temperature)
        else:
            h = np.maximum(s, 0) ** (1.0 / cfg.temperature)
        ps = h / h.sum() if h.sum() > 0 else np.full(len(s), 1.0 / len(s))
        stale = self.episodes - self.last_played[idx]
        pc = stale / stale.sum() if stale.sum() > 0 else np.full(len(s), 1.0 / len(s))
        p[idx] = (1 - cfg.staleness_coef) * ps + cfg.staleness_coef * pc
        return p

    def probabilities(self) -> np.ndarray:
        unseen = ~self.seen
        if not self.seen.any():
            return unseen / unseen.sum()
        replay = self.replay_distribution()
        if not unseen.any():
            return replay
        q = self.config.replay_prob
        return q * replay + (1 - q) * unseen / unseen.sum()

    def _choose(self, explore: bool) -> int:
        if not explore:
            p = self.replay_distribution() if self.seen.any() else np.ones(self.n_tasks)
            return int(np.argmax(p))
        task = int(self.rng.choice(self.n_tasks, p=self.probabilities()))
        self.episodes += 1
        self.last_played[task] = self.episodes
        return task

    def _learn(self, task, score):
        a = self.config.score_ema
        self.scores[task] = score if not self.seen[task] else (1 - a) * self.scores[task] + a * score
        self.seen[task] = True
        return {"teacher/task": float(task), "teacher/score": float(self.scores[task]),
                "teacher/seen": float(self.seen.sum())}

    def _extra_state(self):
        return {"scores": self.scores.copy(), "seen": self.seen.copy(), "last_played": self.last_played.copy(),
                "episodes": self.episodes}

    def _load_extra_state(self, state):
        self.scores, self.seen = np.array(state["scores"]), np.array(state["seen"])
        self.last_played, self.episodes = np.array(state["last_played"]), int(state["episodes"])
