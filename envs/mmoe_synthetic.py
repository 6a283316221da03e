"""The MMoE paper's synthetic two-task data (Ma et al., KDD 2018, section 3.2), and a bandit of it.

Generation, as in the paper: two orthogonal unit vectors u1, u2 in R^d; w1 = c u1,
w2 = c (rho u1 + sqrt(1 - rho^2) u2), so cos(w1, w2) = rho; x ~ N(0, I_d);
y_k = w_k.x + sum_{i=1..m} sin(alpha_i w_k.x + beta_i) + eps_k, eps_k ~ N(0, 0.01).
The paper leaves d, c, m, alpha, beta to the reader; our choices (docs/recsys.md):
d = 100, c = 1, m = 10, alpha_i, beta_i ~ N(0, 1), drawn once per seed. rho controls the
task relatedness: the labels' correlation falls as rho falls.

``MMoESyntheticBandit`` turns it into a contextual bandit with two feedback signals: each
step shows ``n_candidates`` inputs x (one flat vector), the agent picks one, and gets
reward y1 + y2 of that input; ``info["feedback"]`` carries (y1, y2) and the oracle values
(noise-free expected reward of the pick and of the best candidate).
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np

from rewind.errors import RewindError


@dataclasses.dataclass
class SyntheticTasks:
    """The fixed parameters of one draw of the benchmark."""

    w: np.ndarray        # (2, d)
    alpha: np.ndarray    # (m,)
    beta: np.ndarray     # (m,)
    noise_std: float

    def mean(self, x: np.ndarray) -> np.ndarray:
        """Noise-free labels (n, 2) for inputs x (n, d)."""
        wx = x @ self.w.T                                                # (n, 2)
        return wx + np.sin(wx[..., None] * self.alpha + self.beta).sum(-1)

    def sample(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.mean(x) + rng.normal(0.0, self.noise_std, (len(x), 2))


def synthetic_tasks(rho: float, dim: int = 100, c: float = 1.0, m: int = 10, seed: int = 0,
                    noise_std: float = 0.1) -> SyntheticTasks:
    """Draw the two tasks' parameters with cos(w1, w2) = rho (noise variance 0.01 as in the paper)."""
    if not -1.0 <= rho <= 1.0:
        raise RewindError(f"rho (cosine similarity of the task weights) must be in [-1, 1], got {rho}")
    if dim < 2 or m < 0 or c <= 0:
        raise RewindError(f"need dim >= 2, m >= 0, c > 0; got dim={dim}, m={m}, c={c}")
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, 2)))                       # two orthonormal columns
    u1, u2 = q[:, 0], q[:, 1]
    w = c * np.stack([u1, rho * u1 + np.sqrt(1.0 - rho ** 2) * u2])
    return SyntheticTasks(w, rng.normal(size=m), rng.normal(size=m), noise_std)


def synthetic_dataset(tasks: SyntheticTasks, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(x (n, d) float32, y (n, 2) float32) with x ~ N(0, I)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, tasks.w.shape[1]))
    return x.astype(np.float32), tasks.sample(x, rng).astype(np.float32)


class MMoESyntheticBandit(gym.Env):
    """Pick one of ``n_candidates`` inputs; two feedback signals y1, y2; reward y1 + y2."""

    metadata = {"render_modes": []}

    def __init__(self, rho: float = 0.5, dim: int = 100, n_candidates: int = 10, m: int = 10,
                 c: float = 1.0, task_seed: int = 0, render_mode=None):
        if n_candidates < 2:
            raise RewindError(f"env.n_candidates must be >= 2, got {n_candidates}")
        self.tasks = synthetic_tasks(rho, dim, c, m, task_seed)
        self.dim, self.k = dim, n_candidates
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(n_candidates * dim,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(n_candidates)
        self.render_mode = render_mode
        self._rng: np.random.Generator | None = None
        self._x: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        if seed is not None or self._rng is None:
            self._rng = np.random.default_rng(seed if seed is not None else int(self.np_random.integers(2**31)))
        self._x = self._rng.normal(size=(self.k, self.dim))
        return self._x.astype(np.float32).reshape(-1), {}

    def step(self, action):
        if self._x is None:
            raise RewindError("MMoESyntheticBandit: call reset() before step()")
        a = int(action)
        if not 0 <= a < self.k:
            raise RewindError(f"action {action!r} out of range: {self.k} candidates")
        mean = self.tasks.mean(self._x).sum(1)
        y = self.tasks.sample(self._x[a:a + 1], self._rng)[0]
        info = {"feedback": y.astype(np.float64), "expected_reward": float(mean[a]),
                "best_expected_reward": float(mean.max()), "best_action": int(np.argmax(mean))}
        if hasattr(action, "propensity"):   # only a LoggedAction knows it (a NaN would break gymnasium's check_env)
            info["propensity"] = float(action.propensity)
        obs = self._x.astype(np.float32).reshape(-1)
        self._x = None
        return obs, float(y.sum()), True, False, info
