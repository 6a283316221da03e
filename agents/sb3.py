"""EBU as a stable-baselines3 algorithm: `EBU("CnnPolicy", env, beta=0.5).learn(n)`.

For SB3 users who want Episodic Backward Update (Lee, Choi, Chung 2019) with one changed
line. `EBU` subclasses SB3's `DQN`, so policies, exploration, target syncing
(`target_update_interval`, `tau`), callbacks, `save`/`load`, `predict` and the SB3 logger
(TensorBoard `train/loss`, `rollout/...`) behave as for DQN. Two things differ:

- the replay is `EpisodicSB3Buffer`: an SB3 `ReplayBuffer` subclass that stores each env's
  stream in rewind's `EpisodicReplayBuffer` (frames once, an O(1) index of complete
  episodes, torn episodes never sampled; SB3's `TimeLimit.truncated` kept apart from
  termination), so it still answers SB3's uniform `sample()`;
- `train()` takes minibatches from a queue filled with whole episodes: episodes are sampled
  uniformly until the minibatch is full (and at least `refill_min` transitions are queued, as
  the native agent's `refill_min`), the target network runs once over all their next states,
  the targets come
  from rewind's `backward_targets` (the same function as `rewind.agents.ebu`), and the
  transitions are trained in consecutive minibatches from each terminal backward; a short
  last minibatch is padded with the next sampled episode, as the authors do. With one-step
  episodes one target pass serves a whole minibatch of episodes, not one episode per pass.

SB3 code that reads the replay (`observations`, `next_observations`, `actions`, `rewards`,
`dones`, `timeouts`, e.g. after `load_replay_buffer`) gets read-only arrays in SB3's
(T, n_envs, ...) layout, rebuilt from the episodic storage. `optimize_memory_usage=True` is
accepted: every frame is stored once anyway; a new `learn()` closes the running episodes as
truncated and warns as SB3 does. Expected differences from SB3's DQN (docs/sb3.md): EBU
learns from complete episodes only, so `train()` does nothing before the first episode
ends; Dict observations, HER and `n_steps` > 1 are refused with one clear error each; the
TensorBoard run is named `EBU_1`, `EBU_2`, ... (`tb_log_name="EBU"`).

Loss and clipping follow SB3's DQN (smooth L1, `max_grad_norm`), not rewind's DQN config.
`n_steps` must stay 1 (EBU's backward sweep replaces n-step returns). The queue of
precomputed targets is not saved: after `load` the next update samples fresh episodes.
`save_replay_buffer` / `load_replay_buffer` write and read the episodic replay as data
(torch.load with weights_only), never as SB3's pickle. (SB3's model `.zip` itself still
unpickles some entries on `load`: load models only from sources you trust.)
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from torch.nn import functional as F

from stable_baselines3 import DQN
from stable_baselines3.common.buffers import BaseBuffer, ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from rewind.buffers.backward import backward_targets
from rewind.buffers.episodic import EpisodicReplayBuffer
from rewind.errors import RewindError

__all__ = ["EBU", "EpisodicSB3Buffer"]

REPLAY_FORMAT = "rewind-sb3-ebu-replay"


class EpisodicSB3Buffer(ReplayBuffer):
    """SB3 replay buffer API over one rewind `EpisodicReplayBuffer` per env.

    SB3 hands `add()` the last observation and the true next observation (the terminal one
    from `infos[i]["terminal_observation"]` when an env auto-resets), in time order per env,
    which is what the frame-once storage needs. `optimize_memory_usage` is accepted and
    ignored: every frame is stored once anyway. The SB3 arrays (`observations`, `dones`, ...)
    are read-only views rebuilt on access (see `sb3_arrays`).
    """

    def __init__(self, buffer_size: int, observation_space: spaces.Space, action_space: spaces.Space,
                 device: th.device | str = "auto", n_envs: int = 1, optimize_memory_usage: bool = False,
                 handle_timeout_termination: bool = True):
        # SB3's ReplayBuffer.__init__ would allocate obs and next_obs arrays we never use.
        BaseBuffer.__init__(self, buffer_size, observation_space, action_space, device, n_envs=n_envs)
        if not isinstance(action_space, spaces.Discrete):
            raise RewindError(f"EBU needs a Discrete action space, got {action_space}")
        if isinstance(observation_space, spaces.Dict):
            raise RewindError("EBU does not support Dict observations; flatten them (gymnasium FlattenObservation)")
        self.buffer_size = max(buffer_size // n_envs, 2)
        self.optimize_memory_usage = False
        self.handle_timeout_termination = handle_timeout_termination
        self.storages = [EpisodicReplayBuffer(self.buffer_size, self.obs_shape, observation_space.dtype,
                                              n_actions=int(action_space.n)) for _ in range(n_envs)]

    def add(self, obs, next_obs, action, reward, done, infos: list[dict[str, Any]]) -> None:
        obs = np.asarray(obs).reshape((self.n_envs, *self.obs_shape))
        next_obs = np.asarray(next_obs).reshape((self.n_envs, *self.obs_shape))
        action = np.asarray(action).reshape(self.n_envs)
        reward, done = np.asarray(reward).reshape(self.n_envs), np.asarray(done).reshape(self.n_envs)
        for i, storage in enumerate(self.storages):
            truncated = bool(done[i]) and self.handle_timeout_termination and bool(
                infos[i].get("TimeLimit.truncated", False))
            terminated = bool(done[i]) and not truncated
            storage.add(obs[i], int(action[i]), float(reward[i]), next_obs[i], terminated, truncated, infos[i])
        self.pos += 1
        if self.pos == self.buffer_size:
            self.full, self.pos = True, 0

    def state_dict(self) -> dict:
        """The buffer as data (arrays and numbers): what `EBU.save_replay_buffer` writes instead of a pickle."""
        return {"pos": self.pos, "full": self.full, "buffer_size": self.buffer_size, "n_envs": self.n_envs,
                "storages": [s.state_dict() for s in self.storages]}

    def load_state_dict(self, state: dict) -> None:
        if (state["buffer_size"], state["n_envs"]) != (self.buffer_size, self.n_envs):
            raise RewindError(f"saved EBU replay has {state['n_envs']} env(s) x {state['buffer_size']} slots; this "
                              f"model has {self.n_envs} x {self.buffer_size}")
        for storage, saved in zip(self.storages, state["storages"]):
            storage.load_state_dict(saved)
        self.pos, self.full = int(state["pos"]), bool(state["full"])

    # ------------------------------------------------------------------ what SB3 code reads
    def sb3_arrays(self) -> dict[str, np.ndarray]:
        """The stored transitions in SB3's ReplayBuffer layout, (T, n_envs, ...), oldest first.

        T is the number of complete transitions every env holds (the most recent T of each);
        `dones` is terminated or truncated and `timeouts` truncated, as SB3 stores them.
        """
        per_env = []
        for s in self.storages:
            p = np.arange(s.oldest, max(s.total - 1, s.oldest), dtype=np.int64)
            per_env.append(p[s.is_valid(p)] if len(p) else p)
        t = min(len(p) for p in per_env)
        per_env = [p[len(p) - t:] for p in per_env]
        cols: dict[str, list] = {k: [] for k in ("observations", "next_observations", "actions", "rewards", "dones",
                                                "timeouts")}
        for s, p in zip(self.storages, per_env):
            rows = p % s.capacity
            cols["observations"].append(s.states(p))
            cols["next_observations"].append(s.next_states(p))
            cols["actions"].append(s.actions[rows].astype(self.action_space.dtype).reshape(t, self.action_dim))
            cols["rewards"].append(s.rewards[rows])
            cols["dones"].append((s.terminated[rows] | s.truncated[rows]).astype(np.float32))
            cols["timeouts"].append(s.truncated[rows].astype(np.float32))
        out = {k: np.stack(v, axis=1) for k, v in cols.items()}
        for v in out.values():
            v.flags.writeable = False
        return out

    observations = property(lambda self: self.sb3_arrays()["observations"])
    next_observations = property(lambda self: self.sb3_arrays()["next_observations"])
    actions = property(lambda self: self.sb3_arrays()["actions"])
    rewards = property(lambda self: self.sb3_arrays()["rewards"])
    dones = property(lambda self: self.sb3_arrays()["dones"])
    timeouts = property(lambda self: self.sb3_arrays()["timeouts"])

    def truncate_last_trajectory(self) -> None:
        """End every running episode as truncated (SB3 resets the envs at a new `learn()`)."""
        for storage in self.storages:
            storage.truncate_running_episode()

    # ------------------------------------------------------------------ episodes
    @property
    def num_episodes(self) -> int:
        return sum(s.num_episodes for s in self.storages)

    def sample_episode(self, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        """(env index, absolute indexes) of one episode drawn uniformly among all complete ones."""
        counts = np.array([s.num_episodes for s in self.storages])
        if counts.sum() == 0:
            raise RewindError("EBU replay holds no complete episode yet; raise learning_starts")
        i = int(rng.choice(len(counts), p=counts / counts.sum())) if len(counts) > 1 else 0
        return i, self.storages[i].sample_episode(rng)

    # ------------------------------------------------------------------ SB3's uniform sampling
    def sample(self, batch_size: int, env=None) -> ReplayBufferSamples:
        """Uniform one-step transitions (SB3 API), e.g. for plain DQN on this buffer."""
        env_idx = np.random.randint(0, self.n_envs, size=batch_size)
        parts = []
        for i in range(self.n_envs):
            k = int((env_idx == i).sum())
            if k:
                parts.append((i, self._uniform(self.storages[i], k)))
        return self.samples(parts, env)

    @staticmethod
    def _uniform(storage: EpisodicReplayBuffer, k: int) -> np.ndarray:
        low, high = storage.oldest, storage.total - 1
        if high <= low:
            raise RewindError("replay holds no complete transition yet; raise learning_starts")
        p = np.random.randint(low, high, size=k)
        for _ in range(100):
            bad = ~storage.is_valid(p)
            if not bad.any():
                return p
            p[bad] = np.random.randint(low, high, size=int(bad.sum()))
        raise RewindError("replay could not find valid transitions; raise learning_starts")

    def obs_actions(self, parts: list[tuple[int, np.ndarray]], env=None) -> tuple[th.Tensor, th.Tensor]:
        """(observations, actions) for (env index, absolute indexes) groups: what EBU's precomputed targets need."""
        obs = np.concatenate([self.storages[i].states(p) for i, p in parts])
        act = np.concatenate([self.storages[i].actions[p % self.storages[i].capacity] for i, p in parts])
        return self.to_torch(self._normalize_obs(obs, env)), self.to_torch(act.astype(np.int64).reshape(-1, 1))

    def samples(self, parts: list[tuple[int, np.ndarray]], env=None) -> ReplayBufferSamples:
        """SB3 samples for transitions given as (env index, absolute indexes) groups, in that order."""
        obs, nxt, act, rew, done = [], [], [], [], []
        for i, p in parts:
            s = self.storages[i]
            rows = p % s.capacity
            obs.append(s.states(p))
            nxt.append(s.next_states(p))
            act.append(s.actions[rows].astype(np.int64))
            rew.append(s.rewards[rows])
            done.append(s.terminated[rows].astype(np.float32))
        data = (self._normalize_obs(np.concatenate(obs), env), np.concatenate(act).reshape(-1, 1),
                self._normalize_obs(np.concatenate(nxt), env), np.concatenate(done).reshape(-1, 1),
                self._normalize_reward(np.concatenate(rew).reshape(-1, 1), env))
        return ReplayBufferSamples(*tuple(map(self.to_torch, data)))


class EBU(DQN):
    """Episodic Backward Update on SB3's DQN. Extra arguments: beta (diffusion factor in [0, 1];
    0 = one-step DQN targets, 1 = the whole episode in one sweep; paper default 0.5),
    target_chunk (next states per target-network forward pass) and refill_min (episodes are
    sampled until the minibatch is full and this many transitions are queued, one target pass
    for all; the default 0 queues just a minibatch, so targets stay as fresh as the authors').
    Everything else is DQN's."""

    def __init__(self, policy, env, *args, beta: float = 0.5, target_chunk: int = 256, refill_min: int = 0,
                 **kwargs):
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 <= float(beta) <= 1.0:
            raise RewindError(f"EBU beta must be a number in [0, 1], got {beta!r}")
        if int(target_chunk) < 1:
            raise RewindError(f"EBU target_chunk must be >= 1, got {target_chunk!r}")
        if int(refill_min) < 0:
            raise RewindError(f"EBU refill_min must be >= 0, got {refill_min!r}")
        if kwargs.get("n_steps", 1) != 1:
            raise RewindError("EBU propagates rewards backward through whole episodes; leave n_steps at 1")
        buffer_cls = kwargs.get("replay_buffer_class")
        if buffer_cls is not None and not (isinstance(buffer_cls, type) and issubclass(buffer_cls, EpisodicSB3Buffer)):
            raise RewindError("EBU needs its episodic replay; leave replay_buffer_class unset")
        kwargs["replay_buffer_class"] = EpisodicSB3Buffer
        self.beta = float(beta)
        self.target_chunk = int(target_chunk)
        self.refill_min = int(refill_min)
        try:
            super().__init__(policy, env, *args, **kwargs)
        except AssertionError as exc:   # SB3 checks spaces with assert; make it a one-line user error
            if "action spaces" in str(exc):
                raise RewindError(f"EBU needs a Discrete action space, got {self.action_space}") from None
            raise

    def _setup_model(self) -> None:
        super()._setup_model()
        self._reset_queue()
        self._ebu_rng = np.random.default_rng(self.seed)

    def _reset_queue(self) -> None:
        self._queue_env = np.zeros(0, dtype=np.int64)   # env of each queued transition
        self._queue_idx = np.zeros(0, dtype=np.int64)   # absolute index, in training order
        self._queue_y = np.zeros(0, dtype=np.float32)   # its EBU target

    def _setup_learn(self, total_timesteps, callback=None, reset_num_timesteps=True, tb_log_name="run",
                     progress_bar=False):
        # A new learn() that resets the envs abandons the running episodes: close them as truncated.
        buf = self.replay_buffer
        if self.optimize_memory_usage and reset_num_timesteps and buf is not None and (buf.full or buf.pos > 0):
            warnings.warn(  # SB3's own warning for this case; SB3 then writes replay_buffer.dones, we truncate
                "The last trajectory in the replay buffer will be truncated, "
                "see https://github.com/DLR-RM/stable-baselines3/issues/46."
                "You should use `reset_num_timesteps=False` or `optimize_memory_usage=False`"
                "to avoid that issue."
            )
        if (reset_num_timesteps or self._last_obs is None) and buf is not None:
            buf.truncate_last_trajectory()
        optimize, self.optimize_memory_usage = self.optimize_memory_usage, False   # SB3 must not write dones
        try:
            return super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        finally:
            self.optimize_memory_usage = optimize

    # ------------------------------------------------------------------ targets
    def episode_targets(self, env_i: int, p: np.ndarray) -> np.ndarray:
        """(T,) EBU targets of one episode: target network over its next states, then the backward sweep."""
        return self.episodes_targets([(env_i, p)])[0]

    @th.no_grad()
    def episodes_targets(self, episodes: list[tuple[int, np.ndarray]]) -> list[np.ndarray]:
        """EBU targets of several episodes: one target-network pass over all their next states (in chunks of
        target_chunk), then each episode's backward sweep."""
        buf: EpisodicSB3Buffer = self.replay_buffer
        nxt = np.concatenate([buf.storages[i].next_states(p) for i, p in episodes])
        next_q = np.empty((len(nxt), int(self.action_space.n)), dtype=np.float32)
        for s in range(0, len(nxt), self.target_chunk):
            chunk = buf._normalize_obs(nxt[s:s + self.target_chunk], self._vec_normalize_env)
            next_q[s:s + self.target_chunk] = self.q_net_target(buf.to_torch(chunk, copy=False)).float().cpu().numpy()
        cols = [(s.rewards[p % s.capacity], s.actions[p % s.capacity], s.terminated[p % s.capacity])
                for s, p in ((buf.storages[i], p) for i, p in episodes)]
        rewards = buf._normalize_reward(np.concatenate([c[0] for c in cols]), self._vec_normalize_env)
        actions = np.concatenate([c[1] for c in cols]).astype(np.int64)
        terminated = np.concatenate([c[2] for c in cols])
        # A terminal cuts the backward recursion, so episodes ending in one share a sweep (as the native
        # agent); one cut by a time limit bootstraps from its last next state and closes its sweep.
        ends = np.cumsum([len(p) for _, p in episodes])
        cuts = [0] + [int(e) for e in ends[:-1] if not terminated[e - 1]] + [len(actions)]
        y = np.empty(len(actions), dtype=np.float32)
        for a, b in zip(cuts[:-1], cuts[1:]):
            y[a:b] = backward_targets(rewards[a:b], actions[a:b], next_q[a:b], terminated[a:b], float(self.gamma),
                                      self.beta)
        return np.split(y, ends[:-1])

    def next_minibatch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(env index, absolute index, target) of the next batch_size queued transitions."""
        buf: EpisodicSB3Buffer = self.replay_buffer
        envs, idx, ys = [], [], []
        have = 0
        while have < batch_size:
            if len(self._queue_idx) < batch_size - have:   # refill: whole episodes, each from its terminal
                goal = max(batch_size - have, self.refill_min) - len(self._queue_idx)
                episodes, queued = [], 0
                while queued < goal:
                    episodes.append(buf.sample_episode(self._ebu_rng))
                    queued += len(episodes[-1][1])
                targets = self.episodes_targets(episodes)
                self._queue_env = np.concatenate([self._queue_env, *(np.full(len(p), i) for i, p in episodes)])
                self._queue_idx = np.concatenate([self._queue_idx, *(p[::-1] for _, p in episodes)])
                self._queue_y = np.concatenate([self._queue_y, *(y[::-1] for y in targets)])
            k = batch_size - have
            e, p, y = self._queue_env[:k], self._queue_idx[:k], self._queue_y[:k]
            self._queue_env, self._queue_idx, self._queue_y = (self._queue_env[k:], self._queue_idx[k:],
                                                               self._queue_y[k:])
            ok = np.ones(k, dtype=bool)   # wraparound may have overwritten queued transitions
            for i in np.unique(e):
                ok[e == i] = buf.storages[int(i)].is_valid(p[e == i])
            envs.append(e[ok]), idx.append(p[ok]), ys.append(y[ok])
            have += int(ok.sum())
        return np.concatenate(envs), np.concatenate(idx), np.concatenate(ys)

    # ------------------------------------------------------------------ learning
    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        buf: EpisodicSB3Buffer = self.replay_buffer
        if buf.num_episodes == 0 and not len(self._queue_idx):
            return  # no complete episode yet: nothing to propagate
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        losses = []
        for _ in range(gradient_steps):
            envs, idx, y = self.next_minibatch(batch_size)
            # keep the queue's order inside each env group; groups in env order (one env: unchanged)
            order = np.argsort(envs, kind="stable")
            groups = [(int(i), idx[order][envs[order] == i]) for i in np.unique(envs)]
            obs, actions = buf.obs_actions(groups, self._vec_normalize_env)   # s' is not needed: targets are queued
            targets = th.as_tensor(y[order], device=self.device).reshape(-1, 1)
            current_q = th.gather(self.q_net(obs), dim=1, index=actions)
            loss = F.smooth_l1_loss(current_q, targets)
            losses.append(loss.item())
            self.policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", float(np.mean(losses)))
        self.logger.record("train/beta", self.beta)

    def learn(self, total_timesteps: int, callback=None, log_interval: int = 4, tb_log_name: str = "EBU",
              reset_num_timesteps: bool = True, progress_bar: bool = False):
        if self.replay_buffer is not None and (reset_num_timesteps or self._last_obs is None):
            self.replay_buffer.truncate_last_trajectory()   # SB3 resets the envs: close their running episodes
        return super().learn(total_timesteps=total_timesteps, callback=callback, log_interval=log_interval,
                             tb_log_name=tb_log_name, reset_num_timesteps=reset_num_timesteps,
                             progress_bar=progress_bar)

    def save_replay_buffer(self, path) -> None:
        """Write the episodic replay as data (tensors and numbers), never a pickle; `load_replay_buffer` reads it."""
        from rewind.files import save_data

        save_data(path, {"format": REPLAY_FORMAT, **self.replay_buffer.state_dict()})

    def load_replay_buffer(self, path, truncate_last_traj: bool = True) -> None:
        """Read a replay written by `save_replay_buffer` with torch.load(weights_only=True): nothing in it runs.

        SB3's own format is a pickle, which can run code; such a file is refused with one line.
        """
        from rewind.files import load_data

        state = load_data(path, "EBU replay", hint="EBU replays are written by EBU.save_replay_buffer",
                          mmap=False)
        if not isinstance(state, dict) or state.get("format") != REPLAY_FORMAT:
            raise RewindError(f"{path} is not an EBU replay written by EBU.save_replay_buffer")
        if self.replay_buffer is None:   # as SB3's load_replay_buffer, which builds the buffer from the file
            self.replay_buffer = self.replay_buffer_class(
                self.buffer_size, self.observation_space, self.action_space, device=self.device, n_envs=self.n_envs,
                optimize_memory_usage=self.optimize_memory_usage, **(self.replay_buffer_kwargs or {}))
        self.replay_buffer.load_state_dict(state)
        self.replay_buffer.device = self.device   # as SB3: the buffer follows the model's device
        # truncate_last_traj: SB3 applies it to HER buffers only; here the running episodes are closed when
        # learn() resets the envs, so the loaded arrays stay as saved

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_queue_env", "_queue_idx", "_queue_y", "_ebu_rng"]
