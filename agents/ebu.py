"""Episodic Backward Update (Lee, Choi, Chung, NeurIPS 2019), as in the authors' Atari code.

Per update: take the next `batch_size` transitions from a queue of (transition, target)
pairs. When the queue runs short, sample one whole episode uniformly from the episodic
replay, run the target network over all its next states (in chunks), compute all targets
at once with the backward recursion (`backward_targets`), and append the episode's
transitions to the queue *from the terminal backward*. Deviation (configurable): episodes
are sampled until at least `refill_min` transitions are queued and share one target-network
pass; the targets are the same as sampling them one by one unless the target network is
synced in between (every 10,000 updates vs a few updates per refill). refill_min=0 restores
the authors' one-episode-at-a-time sampling. Minibatches are therefore
consecutive transitions, nearest the terminal first, and the last partial minibatch of an
episode is padded with the first transitions of the next sampled episode, as the authors do.

Adaptive diffusion factor (`ebu-adaptive`): K learners with different beta share the
replay, the target network and one actor; the actor uses learner (episode index mod K)
for each episode; every target sync, the learner with the best mean training return since
the last sync is copied into all learners and into the target network. Our choices, since
the released code has none: betas (0.25, 0.5, 0.75, 1.0) by default; "training return" is
the undiscounted return of the agent's episodes (per life on Atari, clipped rewards);
optimizer states are copied with the parameters.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch

from rewind.agents.dqn import DQNAgent, DQNConfig
from rewind.agents.networks import q_values
from rewind.agents.optim import make_optimizer
from rewind.buffers.backward import backward_targets
from rewind.buffers.episodic import EpisodicReplayBuffer
from rewind.errors import RewindError


@dataclasses.dataclass
class EBUConfig(DQNConfig):
    beta: float = 0.5                # diffusion factor; 0 = one-step DQN targets, 1 = full backward sweep
    target_chunk: int = 256          # next states per target-network pass (1024 thrashes the CPU cache: +40%)
    refill_min: int = 256            # queue episodes until this many transitions, one target pass for all
                                     # (0: one episode at a time, as the authors' code)
    exclude_oldest: int = 0          # never sample the oldest / newest this many stored episodes
    exclude_newest: int = 0          # (authors' ale_data_set.random_episode: 5 and 3)
    skip_first: int = 0              # train on an episode without its first this many transitions (authors: 3,
                                     # so no 4-frame state reaches before the episode; rewind's replay pads
                                     # stacks with the first frame instead, so 0 loses nothing)

    def validate(self):
        super().validate()
        if not 0.0 <= self.beta <= 1.0:
            raise RewindError(f"agent.beta must be in [0, 1], got {self.beta}")
        if self.target_chunk < 1 or self.refill_min < 0:
            raise RewindError("agent.target_chunk must be >= 1 and agent.refill_min >= 0")
        for name in ("exclude_oldest", "exclude_newest", "skip_first"):
            if getattr(self, name) < 0:
                raise RewindError(f"agent.{name} must be >= 0, got {getattr(self, name)}")
        if self.double:
            raise RewindError("agent.double does not apply to EBU (its targets come from the backward sweep over "
                              "the target network's Q table); leave it false")
        if self.n_step != 1:
            raise RewindError("agent.n_step does not apply to EBU (its targets come from the backward sweep); "
                              "leave it at 1")


class EBUAgent(DQNAgent):
    Config = EBUConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._queue_idx = np.zeros(0, dtype=np.int64)      # absolute transition indexes, training order
        self._queue_y = np.zeros((0, self.n_learners), dtype=np.float32)

    @property
    def n_learners(self) -> int:
        return len(self.betas())

    def make_replay(self):
        return EpisodicReplayBuffer(self.config.buffer_size, self.observation_space.shape,
                                    self.observation_space.dtype, n_actions=self.n_actions,
                                    frame_stack=self.frame_stack)

    def betas(self) -> list[float]:
        return [self.config.beta]

    # ------------------------------------------------------------------ targets
    @torch.no_grad()
    def target_q(self, p: np.ndarray) -> np.ndarray:
        """(T, A) target-network Q of the next states of transitions p, in chunks."""
        chunk = self.config.target_chunk
        next_q = np.empty((len(p), self.n_actions), dtype=np.float32)
        for s in range(0, len(p), chunk):
            nxt = torch.from_numpy(self.replay.next_states(p[s:s + chunk])).to(self.device)
            with self.autocast():
                next_q[s:s + chunk] = self.q_target(nxt).float().cpu().numpy()
        return next_q

    def episode_targets(self, episodes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Indexes and (T, K) EBU targets of whole episodes, one column per beta.

        Episodes are concatenated: a terminal cuts the backward recursion, so episodes that
        end in a terminal share one backward_targets call; one that ends in a truncation
        (it bootstraps from its last next state) closes its call so nothing leaks across.
        """
        p = np.concatenate(episodes)
        next_q = self.target_q(p)
        i = p % self.replay.capacity
        rewards, actions = self.replay.rewards[i], self.replay.actions[i].astype(np.int64)
        terminated = self.replay.terminated[i]
        y = np.empty((len(p), self.n_learners), dtype=np.float32)
        ends = np.cumsum([len(e) for e in episodes])
        cuts = [0] + [int(e) for e in ends[:-1] if not terminated[e - 1]] + [len(p)]
        for a, b in zip(cuts[:-1], cuts[1:]):
            seg = backward_targets(rewards[a:b], actions[a:b], next_q[a:b], terminated[a:b], self.config.gamma,
                                   self.betas())
            y[a:b] = np.asarray(seg, dtype=np.float32).T
        return p, y

    def _refill(self, need: int) -> None:
        """Make sure at least `need` transitions are queued (sampling >= refill_min at a time)."""
        if len(self._queue_idx) >= need:
            return
        goal = max(need, self.config.refill_min) - len(self._queue_idx)
        episodes, queued = [], 0
        while queued < goal:
            cfg = self.config
            episodes.append(self.replay.sample_episode(self.rng, cfg.exclude_oldest, cfg.exclude_newest,
                                                       cfg.skip_first))
            queued += len(episodes[-1])
        p, y = self.episode_targets(episodes)
        # training order: every episode from its terminal backward (episodes were sampled i.i.d.)
        self._queue_idx = np.concatenate([self._queue_idx, p[::-1]])
        self._queue_y = np.concatenate([self._queue_y, y[::-1]])

    def next_minibatch(self):
        """The next batch_size (indexes, targets) from the backward queue; skips overwritten ones."""
        bs = self.config.batch_size
        idx = np.zeros(0, dtype=np.int64)
        ys = np.zeros((0, self.n_learners), dtype=np.float32)
        while len(idx) < bs:
            self._refill(bs - len(idx))
            take_i, take_y = self._queue_idx[: bs - len(idx)], self._queue_y[: bs - len(idx)]
            self._queue_idx, self._queue_y = self._queue_idx[len(take_i):], self._queue_y[len(take_i):]
            ok = self.replay.is_valid(take_i)  # wraparound may have overwritten queued transitions
            idx, ys = np.concatenate([idx, take_i[ok]]), np.concatenate([ys, take_y[ok]])
        return idx, ys

    # ------------------------------------------------------------------ learning
    def can_learn(self) -> bool:
        return self.replay.num_episodes > 0 or len(self._queue_idx) > 0

    def prepare_batch(self) -> dict:
        idx, y = self.next_minibatch()
        obs, actions = self.replay.obs_actions(idx, self.device)   # targets are precomputed: no s' needed
        return {"obs": obs, "actions": actions, "targets": torch.from_numpy(y).to(self.device)}

    def apply_batch(self, b: dict) -> dict[str, float]:
        return self.gradient_step(b["obs"], b["actions"], b["targets"][:, 0])

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        out = super().state_dict()
        out.update(queue_idx=self._queue_idx.copy(), queue_y=self._queue_y.copy())
        return out

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._queue_idx = np.asarray(state["queue_idx"], dtype=np.int64)
        self._queue_y = np.asarray(state["queue_y"], dtype=np.float32)


@dataclasses.dataclass
class AdaptiveEBUConfig(EBUConfig):
    betas: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)   # one learner per beta (our choice; see module doc)

    def validate(self):
        super().validate()
        if not self.betas or any(not 0.0 <= b <= 1.0 for b in self.betas):
            raise RewindError(f"agent.betas must be a non-empty list of values in [0, 1], got {list(self.betas)}")
        if self.beta != EBUConfig.beta:   # the presets shared with `ebu` set the default, which is harmless
            raise RewindError(f"agent.beta={self.beta} does not apply to ebu-adaptive: it learns with every value "
                              f"of agent.betas ({list(self.betas)}); set agent.betas instead")
        if self.overlap:
            raise RewindError("agent.overlap is not available for ebu-adaptive: its learners are chosen from the "
                              "actor's episode returns, which the learner thread would race with; use ebu or dqn")


class AdaptiveEBUAgent(EBUAgent):
    """K EBU learners with different beta, one actor cycling through them per episode."""

    Config = AdaptiveEBUConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.learners = [self.q] + [copy.deepcopy(self.q) for _ in range(self.n_learners - 1)]
        self.optimizers = [self.optimizer] + [
            make_optimizer(cfg.optimizer, q.parameters(), cfg.lr, cfg.opt_eps, cfg.rmsprop_alpha)
            for q in self.learners[1:]]
        self.actor = 0                                     # learner used by the actor this episode
        self.last_best = 0                                 # learner chosen at the last sync: evaluation acts with it
        self.env_actor: np.ndarray | None = None           # vector envs: learner of each env's episode
        self.env_return: np.ndarray | None = None
        self._ep_return = 0.0
        self._returns = [[] for _ in range(self.n_learners)]  # episode returns since the last sync

    def betas(self) -> list[float]:
        return list(self.config.betas)

    def learners_and_optimizers(self) -> list[tuple]:
        return list(zip(self.learners, self.optimizers))

    def replace_optimizers(self, optimizers: list) -> None:
        self.optimizers[:] = optimizers
        self.optimizer = optimizers[0]

    def greedy_action(self, obs, learner: int | None = None) -> int:
        k = self.actor if learner is None else learner
        return int(q_values(self.learners[k], obs, self.device).argmax())

    def act(self, obs, explore: bool = True):
        """Exploring: the learner whose turn this episode is. Greedy (evaluation): the learner chosen best
        at the last synchronisation (learner 0 before the first), which all learners then copied."""
        if explore:
            return super().act(obs, explore=True)
        return self.greedy_action(obs, learner=self.last_best)

    def act_batch(self, obs, explore: bool = True) -> np.ndarray:
        """Vector envs: env i acts with its episode's learner (one forward pass per learner in use);
        greedy acting uses the last sync's best learner, as act() does."""
        x = torch.as_tensor(np.asarray(obs), device=self.device)
        with torch.inference_mode():
            if not explore:
                return self.learners[self.last_best](x).argmax(1).cpu().numpy()
            actors = self._env_actors(len(x))
            greedy = np.empty(len(x), dtype=np.int64)
            for k in np.unique(actors):
                rows = actors == k
                greedy[rows] = self.learners[k](x[torch.from_numpy(rows)]).argmax(1).cpu().numpy()
        return self.explore_batch(greedy)

    def _env_actors(self, n: int) -> np.ndarray:
        """Learner of each vector env's running episode; new episodes take learners in turn."""
        if self.env_actor is None or len(self.env_actor) != n:
            self.env_actor = np.arange(n) % self.n_learners
            self.env_return = np.zeros(n)
            self.actor = n % self.n_learners
        return self.env_actor

    def observe_batch(self, obs, actions, rewards, next_obs, terminated, truncated, infos) -> None:
        super().observe_batch(obs, actions, rewards, next_obs, terminated, truncated, infos)
        actors = self._env_actors(len(actions))
        self.env_return += np.asarray(rewards, dtype=np.float64)
        for i in np.flatnonzero(np.asarray(terminated) | np.asarray(truncated)):
            self._returns[actors[i]].append(float(self.env_return[i]))
            self.env_return[i] = 0.0
            actors[i], self.actor = self.actor, (self.actor + 1) % self.n_learners

    def observe(self, obs, action, reward, next_obs, terminated, truncated, info) -> None:
        super().observe(obs, action, reward, next_obs, terminated, truncated, info)
        self._ep_return += float(reward)
        if terminated or truncated:
            self._returns[self.actor].append(self._ep_return)
            self._ep_return = 0.0
            self.actor = (self.actor + 1) % self.n_learners

    def apply_batch(self, b: dict) -> dict[str, float]:
        """One step of every learner on the same minibatch, each on its own beta's targets (column k)."""
        metrics = {}
        for k, (q, opt) in enumerate(zip(self.learners, self.optimizers)):
            m = self.gradient_step(b["obs"], b["actions"], b["targets"][:, k], net=q, optimizer=opt)
            metrics[f"loss_beta{self.config.betas[k]:g}"] = m["loss"]
        metrics["loss"] = float(np.mean([v for v in metrics.values()]))
        return metrics

    def best_learner(self) -> int:
        means = [np.mean(r) if r else -np.inf for r in self._returns]
        return int(np.argmax(means)) if np.isfinite(max(means)) else 0

    def sync_target(self) -> None:
        """Copy the best learner (by mean training return since the last sync) into all and the target."""
        best = self.best_learner()
        params = self.learners[best].state_dict()
        opt_state = self.optimizers[best].state_dict()
        for k, (q, opt) in enumerate(zip(self.learners, self.optimizers)):
            if k != best:
                q.load_state_dict(params)
                opt.load_state_dict(opt_state)
        self.q_target.load_state_dict(params)
        self.last_best = best
        self._returns = [[] for _ in range(self.n_learners)]

    def state_dict(self) -> dict:
        out = super().state_dict()
        out.update(learners=[q.state_dict() for q in self.learners],
                   optimizers=[o.state_dict() for o in self.optimizers],
                   actor=self.actor, ep_return=self._ep_return, returns=[list(r) for r in self._returns],
                   last_best=self.last_best)
        if self.env_actor is not None:
            out.update(env_actor=torch.from_numpy(self.env_actor.copy()), env_return=torch.from_numpy(self.env_return))
        return out

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for q, s in zip(self.learners, state["learners"]):
            q.load_state_dict(s)
        for o, s in zip(self.optimizers, state["optimizers"]):
            o.load_state_dict(s)
        self.actor, self._ep_return = int(state["actor"]), float(state["ep_return"])
        self._returns = [list(r) for r in state["returns"]]
        self.last_best = int(state.get("last_best", 0))   # checkpoints before this key: learner 0
        if state.get("env_actor") is not None:
            self.env_actor = np.asarray(state["env_actor"]).copy()
            self.env_return = np.asarray(state["env_return"], dtype=np.float64).copy()
