"""Linear contextual-bandit learners on per-arm ridge regression of the reward on [x, 1].

Each arm keeps A^-1 (Sherman-Morrison, O(d^2) per step) and b, so theta_a = A_a^-1 b_a is
exact ridge regression on that arm's history; no pass over past data per step.

- eps-greedy-linear: greedy on theta_a . x, uniform with probability epsilon
  (the bake-off's "greedy" is epsilon = 0).
- linucb: disjoint LinUCB (Li, Chu, Langford, Schapire 2010),
  argmax theta_a . x + alpha * sqrt(x' A_a^-1 x).
- regcb: RegCB-opt (Foster, Agarwal, Dudik, Luo, Schapire 2018; the bake-off's best):
  the largest prediction of any regressor whose cumulative squared loss is within
  c0 * log(K t) of the ridge fit. For ridge regression this maximum is exact:
  theta_a . x + sqrt(c0 * log(K t) * x' A_a^-1 x), clipped to the reward range [0, 1].
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rewind.agents.bandit import BanditAgent
from rewind.errors import RewindError


class RidgeArms:
    """Per-arm ridge regression with rank-one inverse updates (float64 for stability)."""

    def __init__(self, n_arms: int, dim: int, ridge: float):
        self.A_inv = np.repeat(np.eye(dim)[None] / ridge, n_arms, axis=0)
        self.b = np.zeros((n_arms, dim))
        self.theta = np.zeros((n_arms, dim))

    def mean(self, x: np.ndarray) -> np.ndarray:
        return self.theta @ x

    def variance(self, x: np.ndarray) -> np.ndarray:
        """x' A_a^-1 x for every arm a."""
        return np.einsum("kij,i,j->k", self.A_inv, x, x, optimize=True)

    def add(self, a: int, x: np.ndarray, r: float, weight: float = 1.0) -> None:
        Ai = self.A_inv[a]
        Ax = Ai @ x
        Ai -= np.outer(Ax, Ax) * (weight / (1.0 + weight * (x @ Ax)))
        self.b[a] += weight * r * x
        self.theta[a] = Ai @ self.b[a]

    def state_dict(self) -> dict:
        return {"A_inv": self.A_inv.copy(), "b": self.b.copy()}

    def load_state_dict(self, s: dict) -> None:
        self.A_inv = np.array(s["A_inv"], dtype=np.float64)
        self.b = np.array(s["b"], dtype=np.float64)
        self.theta = np.einsum("kij,kj->ki", self.A_inv, self.b)


class _LinearBandit(BanditAgent):
    def __init__(self, observation_space, action_space, config=None, *, seed=0, frame_stack=1):
        super().__init__(observation_space, action_space, config, seed=seed, frame_stack=frame_stack)
        self.arms = RidgeArms(self.n_arms, self.dim + 1, self.config.ridge)

    def _phi(self, obs) -> np.ndarray:
        return np.append(self._context(obs).astype(np.float64), 1.0)

    def _scores(self, x: np.ndarray, explore: bool) -> np.ndarray:
        return self.arms.mean(x)

    def _argmax(self, s: np.ndarray) -> int:
        best = np.flatnonzero(s >= s.max() - 1e-12)   # random tie-break: all-zero start is not arm 0 forever
        return int(best[0] if len(best) == 1 else self.rng.choice(best))

    def act(self, obs, explore: bool = True):
        x = self._phi(obs)
        a = self._argmax(self._scores(x, explore))
        self._last_prob = 1.0
        return a

    def _learn(self, x, a, r, p, label):
        self.arms.add(a, np.append(x.astype(np.float64), 1.0), r)
        return None

    def state_dict(self) -> dict:
        return {**self._base_state(), "arms": self.arms.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self._load_base(state)
        self.arms.load_state_dict(state["arms"])


class EpsGreedyLinearAgent(_LinearBandit):
    """Greedy on per-arm ridge predictions, uniform exploration with probability epsilon."""

    @dataclasses.dataclass
    class Config:
        epsilon: float = 0.05   # VW's --cb_explore default and the comparison setting
        ridge: float = 1.0

        def validate(self):
            if not 0.0 <= self.epsilon <= 1.0:
                raise RewindError(f"agent.epsilon must be in [0, 1], got {self.epsilon}")
            if self.ridge <= 0:
                raise RewindError(f"agent.ridge must be > 0, got {self.ridge}")

    def act(self, obs, explore: bool = True):
        x = self._phi(obs)
        greedy = self._argmax(self.arms.mean(x))
        eps = self.config.epsilon if explore else 0.0
        a = int(self.rng.integers(self.n_arms)) if self.rng.random() < eps else greedy
        self._last_prob = eps / self.n_arms + (1.0 - eps) * (a == greedy)
        return a


class LinUCBAgent(_LinearBandit):
    """Disjoint LinUCB: optimism in the face of uncertainty with a fixed confidence width alpha."""

    @dataclasses.dataclass
    class Config:
        alpha: float = 1.0      # width multiplier (Li et al. 2010 use 1 + sqrt(ln(2/delta)/2))
        ridge: float = 1.0

        def validate(self):
            if self.alpha < 0 or self.ridge <= 0:
                raise RewindError("agent.alpha must be >= 0 and agent.ridge > 0")

    def _scores(self, x, explore):
        mean = self.arms.mean(x)
        if not explore:
            return mean
        return mean + self.config.alpha * np.sqrt(np.maximum(self.arms.variance(x), 0.0))


class RegCBAgent(_LinearBandit):
    """RegCB-opt with a ridge-regression oracle; the confidence radius grows like log(K t)."""

    @dataclasses.dataclass
    class Config:
        c0: float = 1e-3        # bake-off grid {1e-1, 1e-2, 1e-3}; 1e-3 beat 1e-2 on every stream in bench/bandit_vw
        ridge: float = 1.0
        reward_min: float = 0.0
        reward_max: float = 1.0

        def validate(self):
            if self.c0 < 0 or self.ridge <= 0 or self.reward_max <= self.reward_min:
                raise RewindError("agent.c0 must be >= 0, agent.ridge > 0 and reward_max > reward_min")

    def _scores(self, x, explore):
        mean = np.clip(self.arms.mean(x), self.config.reward_min, self.config.reward_max)
        if not explore:
            return mean
        radius2 = self.config.c0 * np.log(self.n_arms * (self.t + 1.0))
        upper = mean + np.sqrt(radius2 * np.maximum(self.arms.variance(x), 0.0))
        return np.minimum(upper, self.config.reward_max)
