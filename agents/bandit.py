"""Contextual-bandit learners: shared base and the name -> class index.

The learners live in ``bandit_linear`` (eps-greedy, LinUCB, RegCB-opt on per-arm ridge
regression) and ``bandit_neural`` (eps-greedy MLP, bootstrapped Thompson sampling, softmax
policy gradient, the full-information supervised learner). All see one context per
one-step episode and learn, in ``update``, from what ``observe`` recorded; only the
supervised learner reads ``info["label"]``, so the others get nothing but the chosen arm's
reward.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from rewind.agents.base import Agent
from rewind.errors import RewindError


class BanditAgent(Agent):
    """Base: checks the spaces, seeds an RNG, queues observed (x, a, r, p, label) for ``update``."""

    uses_label = False   # only the full-information learner may read info["label"]

    def __init__(self, observation_space, action_space, config=None, *, seed: int = 0, frame_stack: int = 1):
        super().__init__(observation_space, action_space, config, seed=seed, frame_stack=frame_stack)
        if not isinstance(action_space, gym.spaces.Discrete):
            raise RewindError(f"{type(self).__name__} needs a Discrete action space (one arm per class), "
                              f"got {action_space}")
        shape = getattr(observation_space, "shape", None)
        if not isinstance(observation_space, gym.spaces.Box) or shape is None or len(shape) != 1:
            raise RewindError(f"{type(self).__name__} needs a flat Box observation (a feature vector), "
                              f"got {observation_space}; use a rewind/bandit-* env")
        self.n_arms = int(action_space.n)
        self.dim = int(shape[0])
        self.rng = np.random.default_rng(seed)
        self.t = 0                       # examples learned from
        self.reward_sum = 0.0            # of those examples' rewards: progressive validation
        self._last_prob = 1.0            # probability act() gave its last action
        self._pending: list[tuple] = []

    def _context(self, obs) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float32).reshape(-1)
        if x.shape[0] != self.dim:
            raise RewindError(f"{type(self).__name__} was built for {self.dim} features, got {x.shape[0]}")
        return x

    def observe(self, obs, action, reward, next_obs, terminated, truncated, info) -> None:
        label = None
        if self.uses_label:
            label = (info or {}).get("label")
            if label is None:
                raise RewindError(f"{type(self).__name__} is the full-information learner: it needs the "
                                  "true label, so make the env with full_feedback=true "
                                  "(--set env.full_feedback=true)")
        a = int(action)
        if not 0 <= a < self.n_arms:
            raise RewindError(f"action {action!r} outside the {self.n_arms} arms")
        self._pending.append((self._context(obs), a, float(reward), float(self._last_prob), label))

    def update(self) -> dict[str, float]:
        if not self._pending:
            return {}
        metrics: dict[str, float] = {}
        for x, a, r, p, label in self._pending:
            metrics = self._learn(x, a, r, p, label) or metrics
            self.t += 1
            self.reward_sum += r
        self._pending.clear()
        # each reward scored a prediction made before learning from its example, so this running
        # mean is the progressive validation loss; the run loop logs it as train/pv_loss
        return {**metrics, "pv_loss": 1.0 - self.reward_sum / self.t}

    def _learn(self, x, a, r, p, label) -> dict[str, float] | None:
        raise NotImplementedError

    def _base_state(self) -> dict:
        return {"t": self.t, "reward_sum": self.reward_sum, "rng": self.rng.bit_generator.state}

    def _load_base(self, state: dict) -> None:
        self.t = int(state["t"])
        self.reward_sum = float(state["reward_sum"])
        self.rng.bit_generator.state = state["rng"]
        self._pending.clear()
