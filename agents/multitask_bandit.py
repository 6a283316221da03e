"""A two-task bandit learner for the MMoE synthetic bandit (envs/mmoe_synthetic.py).

Each step shows K candidate inputs; a multi-task head (shared-bottom, OMoE or MMoE,
agents/multitask.py) predicts both feedback signals of every candidate, the agent picks the
candidate with the largest predicted sum (epsilon-uniform otherwise; the propensity rides on
a LoggedAction) and learns both tasks by MSE from ``info["feedback"]`` = (y1, y2) of its
pick, on minibatches of its history (the newest example always included).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from rewind.agents.base import Agent
from rewind.agents.multitask import HEADS, make_head
from rewind.envs.recsys import LoggedAction
from rewind.errors import RewindError


class MultiTaskBanditAgent(Agent):
    @dataclasses.dataclass
    class Config:
        head: str = "mmoe"          # "shared-bottom" | "omoe" | "mmoe" (equal parameter counts)
        n_candidates: int = 10      # must match the env's
        n_experts: int = 8
        expert_units: int = 16
        tower: int = 8
        epsilon: float = 0.05
        lr: float = 1e-3
        batch_size: int = 64
        buffer_size: int = 100_000

        def validate(self):
            if self.head not in HEADS:
                raise RewindError(f"agent.head must be one of {', '.join(HEADS)}, got {self.head!r}")
            if min(self.n_candidates, self.n_experts, self.expert_units, self.tower, self.batch_size,
                   self.buffer_size) < 1 or self.lr <= 0 or not 0 <= self.epsilon <= 1:
                raise RewindError("agent sizes must be >= 1, agent.lr > 0 and agent.epsilon in [0, 1]")

    def __init__(self, observation_space, action_space, config=None, *, seed: int = 0, frame_stack: int = 1):
        super().__init__(observation_space, action_space, config, seed=seed, frame_stack=frame_stack)
        c = self.config
        k = getattr(action_space, "n", None)
        size = int(np.prod(getattr(observation_space, "shape", (0,)) or (0,)))
        if k != c.n_candidates or size % c.n_candidates:
            raise RewindError(f"mtl-bandit: agent.n_candidates={c.n_candidates} but the env has {k} actions and "
                              f"{size} observation values; use a rewind/mmoe-* env and set agent.n_candidates")
        self.dim = size // c.n_candidates
        self.rng = np.random.default_rng(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.head = make_head(c.head, self.dim, 2, n_experts=c.n_experts, expert_units=c.expert_units,
                                  tower=c.tower)
        self.opt = torch.optim.Adam(self.head.parameters(), lr=c.lr)
        self.x = np.zeros((c.buffer_size, self.dim), dtype=np.float32)
        self.y = np.zeros((c.buffer_size, 2), dtype=np.float32)
        self.size = self.pos = 0
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []

    def act(self, obs, explore: bool = True):
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(self.config.n_candidates, self.dim))
        with torch.no_grad():
            greedy = int(torch.argmax(self.head(x).sum(1)))
        eps = self.config.epsilon if explore else 0.0
        k = self.config.n_candidates
        a = int(self.rng.integers(k)) if self.rng.random() < eps else greedy
        return LoggedAction(a, eps / k + (1 - eps) * (a == greedy))

    def observe(self, obs, action, reward, next_obs, terminated, truncated, info) -> None:
        fb = (info or {}).get("feedback")
        if fb is None:
            raise RewindError("mtl-bandit learns from info['feedback'] (two signals); use a rewind/mmoe-* env")
        x = np.asarray(obs, dtype=np.float32).reshape(self.config.n_candidates, self.dim)[int(action)]
        self._pending.append((x, np.asarray(fb, dtype=np.float32)))

    def update(self) -> dict[str, float]:
        out = {}
        for x, y in self._pending:
            i = self.pos
            self.x[i], self.y[i] = x, y
            self.pos = (i + 1) % len(self.x)
            self.size = min(self.size + 1, len(self.x))
            idx = np.concatenate(([i], self.rng.integers(0, self.size, self.config.batch_size - 1)))
            pred = self.head(torch.from_numpy(self.x[idx]))
            loss = ((pred - torch.from_numpy(self.y[idx])) ** 2).mean(0).sum()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            out = {"loss": loss.item()}
        self._pending.clear()
        return out

    def state_dict(self) -> dict:
        return {"head": self.head.state_dict(), "opt": self.opt.state_dict(), "x": self.x[:self.size].copy(),
                "y": self.y[:self.size].copy(), "pos": self.pos, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.head.load_state_dict(state["head"])
        self.opt.load_state_dict(state["opt"])
        n = len(state["x"])
        self.x[:n], self.y[:n], self.size, self.pos = state["x"], state["y"], n, int(state["pos"])
        self.rng.bit_generator.state = state["rng"]
