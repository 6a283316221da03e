"""Baselines for the recommender bandit: uniform, and rewind's bandit learners behind candidates.

- recsys-random: a uniform item among the published ones (propensity 1 / n): the floor, and
  the logging policy of the off-policy-evaluation study.
- cg-eps-greedy-linear, cg-linucb, cg-bootstrap-ts: rewind's existing per-arm learners
  (agents/bandit_linear.py, agents/bandit_neural.py), one arm per item, on the context
  [demographics] (the item ids of the history mean nothing to a linear model). With thousands
  of arms they would spend most of their time on items nobody clicks, so a candidate
  generator stands in front (as the issue asks): the ``candidates - fresh`` items with the
  most recent clicks (click counts decayed by ``popularity_decay`` per step) plus the
  ``fresh`` newest published items. The learner picks among those; its reward is the env's
  reward / ``reward_scale`` (the neural learner's BCE wants [0, 1]; clipped at 1).
  Propensities: eps-greedy eps / C + (1 - eps) [greedy]; LinUCB is deterministic (1);
  bootstrap TS the share of ensemble members whose argmax is the chosen item.

Slates (env ``slate_size`` k): each recommends its top k, best first: eps-greedy with
probability eps a uniform ordered k-subset of the candidates (``explore_slate``), LinUCB the
k largest upper bounds (propensity 1), bootstrap TS one random member's top k (propensity:
the share of members with that slate; per position: the share showing that item there),
random a uniform ordered k-subset of the published items. Each shown item is one pull of
its arm: the clicked one gets the reward, the others 0.
"""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np
import torch

from rewind.agents.bandit_linear import EpsGreedyLinearAgent, LinUCBAgent
from rewind.agents.bandit_neural import BootstrapTSAgent
from rewind.agents.base import Agent
from rewind.agents.recsys import explore_slate, recsys_shapes, slate_feedback
from rewind.envs.recsys import N_DEMO, LoggedAction, LoggedSlate, split_obs
from rewind.errors import RewindError


class RandomRecAgent(Agent):
    """Uniform over the published items; learns nothing."""

    def __init__(self, observation_space, action_space, config=None, *, seed: int = 0, frame_stack: int = 1):
        super().__init__(observation_space, action_space, config, seed=seed, frame_stack=frame_stack)
        self.n_items, self.history_len, self.slate_size = recsys_shapes("recsys-random", observation_space,
                                                                        action_space)
        self.rng = np.random.default_rng(seed)

    def act(self, obs, explore: bool = True):
        n_avail = split_obs(obs, self.history_len, self.n_items)[3]
        k = self.slate_size
        if k:   # a uniform ordered k-subset
            return LoggedSlate(self.rng.choice(n_avail, k, replace=False), 1.0 / math.perm(n_avail, k),
                               np.full(k, 1.0 / n_avail))
        return LoggedAction(int(self.rng.integers(n_avail)), 1.0 / n_avail)

    def observe(self, obs, action, reward, next_obs, terminated, truncated, info) -> None:
        pass

    def update(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


@dataclasses.dataclass
class CandidateConfig:
    candidates: int = 50
    fresh: int = 10                  # newest published items always among the candidates
    popularity_decay: float = 0.999  # per-step decay of the click counts that rank the rest
    reward_scale: float = 20.0       # the inner learner sees min(reward / reward_scale, 1)

    def validate(self):
        if self.candidates < 1 or not 0 <= self.fresh <= self.candidates:
            raise RewindError(f"agent.candidates must be >= 1 and agent.fresh in [0, candidates], "
                              f"got {self.candidates} and {self.fresh}")
        if not 0.0 < self.popularity_decay <= 1.0 or self.reward_scale <= 0:
            raise RewindError("agent.popularity_decay must be in (0, 1] and agent.reward_scale > 0")


class _CandidateBandit(Agent):
    """Popularity + freshness candidates in front of one of rewind's per-arm bandit learners."""

    inner_class: type
    inner_keys: tuple[str, ...] = ()

    def __init__(self, observation_space, action_space, config=None, *, seed: int = 0, frame_stack: int = 1):
        super().__init__(observation_space, action_space, config, seed=seed, frame_stack=frame_stack)
        self.n_items, self.history_len, self.slate_size = recsys_shapes(type(self).__name__, observation_space,
                                                                        action_space)
        if self.slate_size > self.config.candidates:
            raise RewindError(f"agent.candidates={self.config.candidates} is fewer than the env's slate of "
                              f"{self.slate_size}")
        inner_cfg = self.inner_class.Config(**{k: getattr(self.config, k) for k in self.inner_keys})
        inner_cfg.validate()
        ctx = gym.spaces.Box(0.0, 1.0, shape=(N_DEMO,), dtype=np.float32)
        self.inner = self.inner_class(ctx, gym.spaces.Discrete(self.n_items), inner_cfg, seed=seed)
        self.rng = np.random.default_rng([seed, 7])
        self.clicks = np.zeros(self.n_items)
        self._prop = 1.0

    def candidate_set(self, n_avail: int) -> np.ndarray:
        c = self.config
        k = min(c.candidates, n_avail)
        fresh = np.arange(n_avail - min(c.fresh, k), n_avail)
        older = self.clicks[:fresh[0] if len(fresh) else n_avail]
        m = min(k - len(fresh), len(older))
        popular = np.argpartition(-older, m - 1)[:m] if 0 < m < len(older) else np.arange(m)
        return np.concatenate([popular, fresh]).astype(np.int64)

    def act(self, obs, explore: bool = True):
        _, demo, _, n_avail = split_obs(obs, self.history_len, self.n_items)
        cands = self.candidate_set(n_avail)
        if self.slate_size:
            slate = self._choose_slate(demo.astype(np.float32), cands, self.slate_size, explore)
            self._prop = slate.propensity
            return slate
        a, p = self._choose(demo.astype(np.float32), cands, explore)
        self._prop = p
        return LoggedAction(int(a), p)

    def _choose(self, x: np.ndarray, cands: np.ndarray, explore: bool) -> tuple[int, float]:
        raise NotImplementedError

    def _choose_slate(self, x: np.ndarray, cands: np.ndarray, k: int, explore: bool) -> LoggedSlate:
        """The inner learner's top k candidates, best first, with the slate's propensities."""
        raise NotImplementedError

    def observe(self, obs, action, reward, next_obs, terminated, truncated, info) -> None:
        _, demo, _, _ = split_obs(obs, self.history_len, self.n_items)
        self.clicks *= self.config.popularity_decay
        if self.slate_size:   # each shown item is one pull of its arm: the chosen one gets the reward, the others 0
            slate = np.asarray(action, dtype=np.int64).reshape(-1)
            click, _ = slate_feedback(slate, info or {})
            for i, item in enumerate(slate):
                self.clicks[item] += click[i]
                r = min(float(reward) / self.config.reward_scale, 1.0) if click[i] else 0.0
                self.inner.observe(demo, int(item), r, demo, terminated, truncated, {})
            return
        self.clicks[int(action)] += float((info or {}).get("click", reward > 0))
        r = min(float(reward) / self.config.reward_scale, 1.0)
        self.inner.observe(demo, int(action), r, demo, terminated, truncated, {})

    def update(self) -> dict[str, float]:
        return self.inner.update()

    def live_metrics(self) -> dict[str, float]:
        return {"propensity": self._prop}

    def state_dict(self) -> dict:
        return {"inner": self.inner.state_dict(), "clicks": self.clicks.copy(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state["inner"])
        self.clicks = np.array(state["clicks"], dtype=np.float64)
        self.rng.bit_generator.state = state["rng"]


def _top(scores: np.ndarray, cands: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """The k best-scored candidates, best first; ties broken at random (as ``_best``)."""
    order = np.lexsort((rng.random(len(scores)), -scores))
    return cands[order[:k]]


def _best(scores: np.ndarray, cands: np.ndarray, rng: np.random.Generator) -> int:
    top = np.flatnonzero(scores >= scores.max() - 1e-12)
    return int(cands[top[0] if len(top) == 1 else rng.choice(top)])


class CGEpsGreedyLinearAgent(_CandidateBandit):
    """Candidates + per-item ridge regression, epsilon-uniform over the candidates."""

    inner_class = EpsGreedyLinearAgent
    inner_keys = ("epsilon", "ridge")

    @dataclasses.dataclass
    class Config(CandidateConfig):
        epsilon: float = 0.05
        ridge: float = 1.0

    def _scores(self, x, cands) -> np.ndarray:
        """Each candidate's ridge estimate of the reward for context x."""
        return self.inner.arms.theta[cands] @ np.append(x.astype(np.float64), 1.0)

    def _choose(self, x, cands, explore):
        greedy = _best(self._scores(x, cands), cands, self.rng)
        eps = self.config.epsilon if explore else 0.0
        a = int(cands[self.rng.integers(len(cands))]) if self.rng.random() < eps else greedy
        return a, eps / len(cands) + (1 - eps) * (a == greedy)

    def _choose_slate(self, x, cands, k, explore):
        greedy = _top(self._scores(x, cands), cands, k, self.rng)
        return explore_slate(self.rng, cands, greedy, self.config.epsilon if explore else 0.0)


class CGLinUCBAgent(_CandidateBandit):
    """Candidates + disjoint LinUCB over them (deterministic: propensity 1)."""

    inner_class = LinUCBAgent
    inner_keys = ("alpha", "ridge")

    @dataclasses.dataclass
    class Config(CandidateConfig):
        alpha: float = 1.0
        ridge: float = 1.0

    def _scores(self, x, cands, explore) -> np.ndarray:
        """Each candidate's ridge estimate, plus alpha times its confidence width when exploring."""
        phi = np.append(x.astype(np.float64), 1.0)
        arms = self.inner.arms
        s = arms.theta[cands] @ phi
        if explore:
            var = np.einsum("kij,i,j->k", arms.A_inv[cands], phi, phi, optimize=True)
            s = s + self.config.alpha * np.sqrt(np.maximum(var, 0.0))
        return s

    def _choose(self, x, cands, explore):
        return _best(self._scores(x, cands, explore), cands, self.rng), 1.0

    def _choose_slate(self, x, cands, k, explore):
        return LoggedSlate(_top(self._scores(x, cands, explore), cands, k, self.rng), 1.0, np.ones(k))


class CGBootstrapTSAgent(_CandidateBandit):
    """Candidates + bootstrapped Thompson sampling (one random ensemble member's argmax)."""

    inner_class = BootstrapTSAgent
    inner_keys = ("ensemble", "hidden", "lr", "batch_size")

    @dataclasses.dataclass
    class Config(CandidateConfig):
        ensemble: int = 5
        hidden: tuple[int, ...] = (64,)
        lr: float = 1e-3
        batch_size: int = 32

    @torch.inference_mode()
    def _choose(self, x, cands, explore):
        q = self.inner.net(torch.from_numpy(x)[None])[:, 0, torch.from_numpy(cands)].numpy()   # (E, C)
        if not explore:
            return int(cands[np.argmax(q.mean(0))]), 1.0
        votes = cands[np.argmax(q, axis=1)]
        a = int(votes[self.rng.integers(len(votes))])
        return a, float(np.mean(votes == a))

    @torch.inference_mode()
    def _choose_slate(self, x, cands, k, explore):
        q = self.inner.net(torch.from_numpy(x)[None])[:, 0, torch.from_numpy(cands)].numpy()   # (E, C)
        if not explore:
            return LoggedSlate(cands[np.argsort(-q.mean(0), kind="stable")[:k]], 1.0, np.ones(k))
        tops = cands[np.argsort(-q, axis=1, kind="stable")[:, :k]]          # each member's slate (E, k)
        slate = tops[self.rng.integers(len(tops))]
        same = tops == slate
        return LoggedSlate(slate, float(np.mean(same.all(1))), same.mean(0))
