"""Tabular Episodic Backward Update (the EBU paper's Algorithm 1) and its uniform-replay baseline.

Lee, Choi, Chung 2019, Algorithm 1: store every transition; whenever an episode ends,
sample one stored episode uniformly and update Q backward from its last transition,
    Q(s_k, a_k) <- Q(s_k, a_k) + alpha * (r_k + gamma * max_a Q(s_{k+1}, a) - Q(s_k, a_k)),
k = T-1 .. 0, in place, so each update already sees the fresh value of the next state.  In a
deterministic env with alpha = 1 one sweep carries the terminal reward to the episode's start.

The baseline (`tabular-q`) is one-step Q-learning on uniformly sampled stored transitions,
`updates_per_step` of them after every env step (1 matches EBU's average of one update per
env step: a sweep of a T-step episode is T updates).

Our choices: epsilon-greedy exploration (linear decay, like rewind's DQN) with ties in Q broken
uniformly at random; truncated episodes bootstrap from their last next state (only true
terminals count as zero); the replay keeps `buffer_size` transitions and drops the oldest
whole episodes when full.  For envs with a Discrete observation space only (e.g. the digit
maze with observation="index").
"""

from __future__ import annotations

import dataclasses
from collections import deque

import gymnasium as gym
import numpy as np

from rewind.agents.base import Agent
from rewind.errors import RewindError


@dataclasses.dataclass
class TabularEBUConfig:
    gamma: float = 0.99
    alpha: float = 1.0               # step size; 1 suits deterministic envs (the paper's example)
    buffer_size: int = 1_000_000     # transitions kept
    learning_starts: int = 0         # env steps before the first update
    q_init: float = 0.0
    eps_start: float = 1.0
    eps_end: float = 0.1
    eps_decay_steps: int = 10_000    # linear decay over this many env steps

    def validate(self):
        if not 0 <= self.gamma <= 1:
            raise RewindError(f"agent.gamma must be in [0, 1], got {self.gamma}")
        if not 0 < self.alpha <= 1:
            raise RewindError(f"agent.alpha must be in (0, 1], got {self.alpha}")
        if self.buffer_size < 1:
            raise RewindError("agent.buffer_size must be >= 1")
        for name in ("eps_start", "eps_end"):
            if not 0 <= getattr(self, name) <= 1:
                raise RewindError(f"agent.{name} must be in [0, 1]")
        if self.learning_starts < 0 or self.eps_decay_steps < 0:
            raise RewindError("agent.learning_starts and agent.eps_decay_steps must be >= 0")


@dataclasses.dataclass
class TabularQConfig(TabularEBUConfig):
    updates_per_step: int = 1        # uniformly sampled one-step updates after each env step

    def validate(self):
        super().validate()
        if self.updates_per_step < 1:
            raise RewindError("agent.updates_per_step must be >= 1")


class TransitionStore:
    """Ring buffer of discrete transitions with an index of complete episodes.

    Episodes are recorded as (start, length) when they end; an episode is dropped from the
    index as soon as its first slot is overwritten, so a sampled episode is never torn.
    """

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.s = np.zeros(capacity, np.int64)
        self.a = np.zeros(capacity, np.int64)
        self.r = np.zeros(capacity, np.float64)
        self.s2 = np.zeros(capacity, np.int64)
        self.term = np.zeros(capacity, bool)
        self.pos = 0          # next slot to write
        self.size = 0
        self.written = 0      # transitions ever written (absolute index of the next one)
        self.episode_start = 0
        self.episodes: deque[tuple[int, int]] = deque()   # (absolute start, length)

    def add(self, s: int, a: int, r: float, s2: int, terminated: bool, truncated: bool) -> None:
        i = self.pos
        self.s[i], self.a[i], self.r[i], self.s2[i], self.term[i] = s, a, r, s2, terminated
        self.written += 1
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        oldest_kept = self.written - self.size
        while self.episodes and self.episodes[0][0] < oldest_kept:
            self.episodes.popleft()
        if terminated or truncated:
            length = self.written - self.episode_start
            if length <= self.capacity:
                self.episodes.append((self.episode_start, length))
            self.episode_start = self.written

    def episode(self, start: int, length: int):
        idx = (start + np.arange(length)) % self.capacity
        return self.s[idx], self.a[idx], self.r[idx], self.s2[idx], self.term[idx]

    def state_dict(self) -> dict:
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(self).items()
                if k != "episodes"} | {"episodes": list(self.episodes)}

    def load_state_dict(self, state: dict) -> None:
        if int(state["capacity"]) != self.capacity:
            raise RewindError(f"replay capacity {state['capacity']} in the checkpoint differs from "
                              f"agent.buffer_size {self.capacity}; use the same buffer_size")
        for k, v in state.items():
            setattr(self, k, deque(tuple(e) for e in v) if k == "episodes" else v)


class _TabularAgent(Agent):
    """Q table, epsilon-greedy acting, the transition store and checkpoints."""

    def __init__(self, observation_space, action_space, config=None, *, seed=0, frame_stack=1):
        super().__init__(observation_space, action_space, config, seed=seed, frame_stack=frame_stack)
        name = type(self).__name__
        if not isinstance(observation_space, gym.spaces.Discrete):
            raise RewindError(f"{name} needs a Discrete observation space (e.g. rewind/maze-v0 with "
                              f"observation=index), got {observation_space}")
        if not isinstance(action_space, gym.spaces.Discrete):
            raise RewindError(f"{name} needs a Discrete action space, got {action_space}")
        if frame_stack != 1:
            raise RewindError(f"{name} cannot use frame stacking (got frame_stack={frame_stack})")
        self.obs_start = int(observation_space.start)
        self.act_start = int(action_space.start)
        self.n_actions = int(action_space.n)
        self.q = np.full((int(observation_space.n), self.n_actions), float(self.config.q_init))
        self.rng = np.random.default_rng(seed)
        self.replay = TransitionStore(self.config.buffer_size)
        self.steps = 0
        self.updates = 0

    def _state(self, obs) -> int:
        s = int(np.asarray(obs)) - self.obs_start
        if not 0 <= s < self.q.shape[0]:
            raise RewindError(f"observation {obs!r} is outside {self.observation_space}")
        return s

    def epsilon(self) -> float:
        cfg = self.config
        frac = min(1.0, self.steps / max(1, cfg.eps_decay_steps))
        return cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)

    def act(self, obs, explore: bool = True):
        if explore and self.rng.random() < self.epsilon():
            return int(self.rng.integers(self.n_actions)) + self.act_start
        row = self.q[self._state(obs)]
        best = np.flatnonzero(row == row.max())
        return int(best[0] if len(best) == 1 else self.rng.choice(best)) + self.act_start

    def observe(self, obs, action, reward, next_obs, terminated, truncated, info) -> None:
        self.replay.add(self._state(obs), int(action) - self.act_start, float(reward), self._state(next_obs),
                        bool(terminated), bool(truncated))
        self.steps += 1

    def _td_update(self, s, a, r, s2, term) -> float:
        target = r if term else r + self.config.gamma * self.q[s2].max()
        td = target - self.q[s, a]
        self.q[s, a] += self.config.alpha * td
        self.updates += 1
        return abs(td)

    def live_metrics(self) -> dict[str, float]:
        return {"epsilon": self.epsilon()}

    def state_dict(self) -> dict:
        return {"q": self.q.copy(), "steps": self.steps, "updates": self.updates,
                "rng": self.rng.bit_generator.state, **self._extra_state()}

    def load_state_dict(self, state: dict) -> None:
        if state["q"].shape != self.q.shape:
            raise RewindError(f"checkpoint Q table {state['q'].shape} does not fit this env {self.q.shape}")
        self.q = state["q"].copy()
        self.steps, self.updates = int(state["steps"]), int(state["updates"])
        self.rng.bit_generator.state = state["rng"]
        self._load_extra_state(state)

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass


class TabularEBUAgent(_TabularAgent):
    """Algorithm 1: after each finished episode, one backward sweep over a uniformly sampled episode."""

    Config = TabularEBUConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.episodes_seen = 0    # finished episodes observed
        self.sweeps = 0           # backward sweeps done

    def observe(self, obs, action, reward, next_obs, terminated, truncated, info) -> None:
        super().observe(obs, action, reward, next_obs, terminated, truncated, info)
        if terminated or truncated:
            self.episodes_seen += 1

    def update(self) -> dict[str, float]:
        if self.sweeps >= self.episodes_seen or self.steps < self.config.learning_starts:
            return {}
        self.sweeps = self.episodes_seen
        if not self.replay.episodes:
            return {}
        start, length = self.replay.episodes[int(self.rng.integers(len(self.replay.episodes)))]
        s, a, r, s2, term = (x.tolist() for x in self.replay.episode(start, length))
        td = [self._td_update(s[k], a[k], r[k], s2[k], term[k]) for k in range(length - 1, -1, -1)]
        return {"td_abs": float(np.mean(td)), "sweep_length": float(length), "epsilon": self.epsilon()}

    def _extra_state(self) -> dict:
        return {"episodes_seen": self.episodes_seen, "sweeps": self.sweeps}

    def _load_extra_state(self, state: dict) -> None:
        self.episodes_seen, self.sweeps = int(state["episodes_seen"]), int(state["sweeps"])


class TabularQAgent(_TabularAgent):
    """One-step Q-learning on uniformly sampled stored transitions (the uniform-replay baseline)."""

    Config = TabularQConfig

    def update(self) -> dict[str, float]:
        if self.steps < self.config.learning_starts or self.replay.size == 0:
            return {}
        idx = self.rng.integers(self.replay.size, size=self.config.updates_per_step)
        rp = self.replay
        td = [self._td_update(int(rp.s[i]), int(rp.a[i]), float(rp.r[i]), int(rp.s2[i]), bool(rp.term[i]))
              for i in idx]
        return {"td_abs": float(np.mean(td)), "epsilon": self.epsilon()}
