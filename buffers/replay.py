"""Replay memory that stores every frame once and rebuilds frame stacks by index.

Layout: slot p (absolute index; array row p % capacity) holds the newest frame of state
s_t together with a_t, r_t and the flags of that transition. s_{t+1} is slot p+1. When an
episode ends, one extra slot holds the newest frame of the final observation and is
marked invalid as a transition start. Every slot also records the absolute index where
its episode began, so a stack of k frames is slots max(p-k+1 .. p, start): frames before
the episode start repeat the first frame (as gymnasium's FrameStackObservation pads), and
a stack never mixes two episodes.

Memory for 84x84 Atari frames: one uint8 frame per transition plus ~15 bytes of
metadata (action, reward, flags, episode start), not 2 x 4 stacked frames.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from rewind.errors import RewindError


def to_device(array: np.ndarray, device) -> torch.Tensor:
    """A gathered minibatch as a tensor on `device`; for CUDA through pinned memory, copied asynchronously."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if torch.device(device).type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def check_memory(capacity: int, frame_shape: tuple, obs_dtype, action_shape: tuple, action_dtype) -> int:
    """Bytes a full replay will take; RewindError with the estimate if this machine's RAM cannot hold it.

    np.zeros maps pages lazily, so an impossible buffer would otherwise start and be killed hours later.
    """
    per_slot = (int(np.prod(frame_shape, dtype=np.int64)) * np.dtype(obs_dtype).itemsize
                + int(np.prod(action_shape, dtype=np.int64)) * np.dtype(action_dtype).itemsize
                + 4 + 4 + 8 + 8)   # reward, four flags, episode start, episodic ring (upper bound)
    need = int(capacity) * per_slot
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return need
    if need > ram:
        raise RewindError(f"a replay of {capacity:,} transitions needs about {need / 2**30:.1f} GiB when full; this "
                          f"machine has {ram / 2**30:.1f} GiB of RAM: lower agent.buffer_size")
    return need


class ReplayStorage:
    """Circular transition storage shared by the uniform and the episodic buffers."""

    def __init__(self, capacity: int, obs_shape: tuple, obs_dtype, n_actions: int | None = None,
                 frame_stack: int = 1, action_shape: tuple = (), action_dtype=None):
        if capacity < 2:
            raise RewindError(f"replay capacity must be >= 2, got {capacity}")
        self.capacity = int(capacity)
        self.frame_stack = int(frame_stack)
        obs_shape = tuple(obs_shape)
        if self.frame_stack > 1:
            if obs_shape[0] != self.frame_stack:
                raise RewindError(f"frame_stack={frame_stack} but observations have shape {obs_shape}")
            self.frame_shape = obs_shape[1:]
        else:
            self.frame_shape = obs_shape
        self.obs_shape = obs_shape
        if action_dtype is None:
            action_dtype = np.uint8 if (n_actions is not None and n_actions <= 255) else np.int64
        n = self.capacity
        check_memory(n, self.frame_shape, obs_dtype, action_shape, action_dtype)
        # np.zeros maps pages lazily: a 1M-frame Atari buffer costs memory only as it fills.
        self.frames = np.zeros((n, *self.frame_shape), dtype=obs_dtype)
        self.actions = np.zeros((n, *action_shape), dtype=action_dtype)
        self.rewards = np.zeros(n, dtype=np.float32)
        self.terminated = np.zeros(n, dtype=bool)   # s_{t+1} is terminal: no bootstrap
        self.truncated = np.zeros(n, dtype=bool)    # episode cut by a time limit: bootstrap
        self.life_loss = np.zeros(n, dtype=bool)    # terminated because a life was lost (Atari)
        self.valid = np.zeros(n, dtype=bool)        # slot starts a transition (not a final-obs slot)
        self.start = np.zeros(n, dtype=np.int64)    # absolute index of the episode's first slot
        self.total = 0            # absolute slots written so far
        self.transitions = 0      # transitions added so far
        self._episode_start = -1  # absolute start of the running episode, -1 between episodes
        self._staged: dict[int, list] = {}   # vector envs: each env's running episode, stored when it ends

    # ------------------------------------------------------------------ writing
    def _frame(self, obs) -> np.ndarray:
        obs = np.asarray(obs)
        return obs[-1] if self.frame_stack > 1 else obs

    def _write(self, frame, action, reward, terminated, truncated, life_loss, valid) -> int:
        p = self.total
        i = p % self.capacity
        self.frames[i] = frame
        self.actions[i] = action
        self.rewards[i] = reward
        self.terminated[i] = terminated
        self.truncated[i] = truncated
        self.life_loss[i] = life_loss
        self.valid[i] = valid
        self.start[i] = self._episode_start
        self.total = p + 1
        return p

    def add(self, obs, action, reward, next_obs, terminated, truncated, info=None) -> int:
        """Store one transition; returns its absolute index."""
        if self._episode_start < 0:
            self._episode_start = self.total
        life_loss = bool(info.get("life_loss", False)) if info else False
        p = self._write(self._frame(obs), action, reward, terminated, truncated, life_loss, True)
        self.transitions += 1
        if terminated or truncated:
            self._write(self._frame(next_obs), 0, 0.0, False, False, False, False)
            self._episode_start = -1
            self._on_episode_end(self._episode_start_of(p), p)
        return p

    def add_staged(self, env_index: int, obs, action, reward, next_obs, terminated, truncated, info=None) -> None:
        """Store one transition of env `env_index` of a vector env.

        Transitions wait in a per-env stage and enter the storage when their episode ends, all at
        once, so every stored episode is contiguous (frame stacks and EBU's backward sweep need
        that) however the envs' steps interleave. Only the newest frame of each state is kept.
        """
        stage = self._staged.setdefault(int(env_index), [])
        life_loss = bool(info.get("life_loss", False)) if info else False
        stage.append((np.array(self._frame(obs)), action, float(reward), bool(terminated), bool(truncated), life_loss))
        if terminated or truncated:
            final = np.array(self._frame(next_obs))
            for frame, a, r, term, trunc, lost in stage:
                if self._episode_start < 0:
                    self._episode_start = self.total
                p = self._write(frame, a, r, term, trunc, lost, True)
                self.transitions += 1
            self._write(final, 0, 0.0, False, False, False, False)
            self._episode_start = -1
            self._on_episode_end(self._episode_start_of(p), p)
            del self._staged[int(env_index)]

    @property
    def staged(self) -> int:
        """Transitions waiting for their episode to end (vector envs)."""
        return sum(len(s) for s in self._staged.values())

    def truncate_running_episode(self) -> None:
        """Close an episode the caller abandons (e.g. an env reset mid-episode) as truncated.

        The next observation of the newest transition was never stored, so that transition is
        dropped: its slot becomes the final-observation slot of the one before, which is marked
        truncated (it bootstraps). A one-transition episode just disappears.
        """
        if self._episode_start < 0 or self.total == 0:
            return
        p, start = self.total - 1, self._episode_start
        self.valid[p % self.capacity] = False
        self.transitions -= 1
        self._episode_start = -1
        if p > start and p - 1 >= self.oldest:
            self.truncated[(p - 1) % self.capacity] = True
            self._on_episode_end(start, p - 1)

    def _episode_start_of(self, p: int) -> int:
        return int(self.start[p % self.capacity])

    def _on_episode_end(self, start: int, last: int) -> None:
        """Hook for the episodic buffer: an episode spanning slots start..last was completed."""

    # ------------------------------------------------------------------ reading
    @property
    def oldest(self) -> int:
        """Smallest absolute index still stored."""
        return max(0, self.total - self.capacity)

    def __len__(self) -> int:
        return min(self.total, self.capacity)

    def is_valid(self, p: np.ndarray) -> np.ndarray:
        """Which absolute indexes p are sampleable transitions (next frame stored, stack intact)."""
        i = p % self.capacity
        first_needed = np.maximum(p - (self.frame_stack - 1), self.start[i])
        return (self.valid[i] & (p + 1 < self.total) & (p >= self.oldest) & (first_needed >= self.oldest))

    def _stack_index(self, p: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Row indexes of the frames that make up the state at absolute index p: (B, k) or (B,)."""
        if self.frame_stack == 1:
            return p % self.capacity
        offsets = np.arange(-(self.frame_stack - 1), 1)
        q = np.maximum(p[:, None] + offsets[None, :], start[:, None])
        return q % self.capacity

    def states(self, p: np.ndarray) -> np.ndarray:
        """Observations s_t for absolute indexes p, rebuilt from single frames."""
        p = np.asarray(p, dtype=np.int64)
        return self.frames[self._stack_index(p, self.start[p % self.capacity])]

    def next_states(self, p: np.ndarray) -> np.ndarray:
        """Observations s_{t+1} for absolute indexes p (same episode, so same start)."""
        p = np.asarray(p, dtype=np.int64)
        return self.frames[self._stack_index(p + 1, self.start[p % self.capacity])]

    def obs_actions(self, p: np.ndarray, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(s_t, a_t) at absolute indexes p: all a learner with precomputed targets needs."""
        p = np.asarray(p, dtype=np.int64)
        return (to_device(self.states(p), device),
                to_device(self.actions[p % self.capacity].astype(np.int64), device))

    def batch(self, p: np.ndarray, device="cpu") -> dict[str, torch.Tensor]:
        """Transitions at absolute indexes p as torch tensors (obs stay in their stored dtype).

        With stacked frames, s_t and s_{t+1} share k-1 frames: one gather of k+1 frames per
        transition serves both (as views), half the copying of two separate gathers.
        """
        p = np.asarray(p, dtype=np.int64)
        i = p % self.capacity
        if self.frame_stack > 1:
            offsets = np.arange(-(self.frame_stack - 1), 2)
            rows = np.maximum(p[:, None] + offsets[None, :], self.start[i][:, None]) % self.capacity
            frames = to_device(self.frames[rows], device)
            obs, next_obs = frames[:, :-1], frames[:, 1:]
        else:
            obs = to_device(self.frames[i], device)
            next_obs = to_device(self.frames[(p + 1) % self.capacity], device)
        return {
            "obs": obs,
            "actions": to_device(self.actions[i].astype(np.int64), device),
            "rewards": to_device(self.rewards[i], device),
            "next_obs": next_obs,
            "terminated": to_device(self.terminated[i], device),
        }

    def nbytes(self) -> int:
        arrays = (self.frames, self.actions, self.rewards, self.terminated, self.truncated,
                  self.life_loss, self.valid, self.start)
        return sum(a.nbytes for a in arrays)

    # ------------------------------------------------------------------ checkpoints
    _ARRAYS = ("frames", "actions", "rewards", "terminated", "truncated", "life_loss", "valid", "start")

    def state_dict(self) -> dict:
        n = len(self)  # only the filled part; tensors share memory with the arrays (no copy)
        out = {name: torch.from_numpy(getattr(self, name)[:n]) for name in self._ARRAYS}
        out.update(total=self.total, transitions=self.transitions, episode_start=self._episode_start,
                   capacity=self.capacity)
        if self._staged:
            out["staged"] = {str(i): _stage_to_arrays(s) for i, s in self._staged.items()}
        return out

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity:
            raise RewindError(f"checkpoint replay has capacity {state['capacity']}, config asks {self.capacity}")
        for name in self._ARRAYS:
            data = state[name]
            data = data.numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
            getattr(self, name)[: len(data)] = data
        self.total = int(state["total"])
        self.transitions = int(state["transitions"])
        self._episode_start = int(state["episode_start"])
        self._staged = {int(i): _stage_from_arrays(s) for i, s in (state.get("staged") or {}).items()}


def _stage_to_arrays(stage: list) -> dict:
    """A staged episode as plain arrays (checkpoints hold data, not pickled tuples)."""
    cols = list(zip(*stage))
    return {"frames": torch.from_numpy(np.stack(cols[0])), "actions": torch.as_tensor(np.asarray(cols[1])),
            "rewards": torch.tensor(cols[2], dtype=torch.float64), "flags": torch.tensor(np.array(cols[3:6]).T)}


def _stage_from_arrays(d: dict) -> list:
    frames, actions = d["frames"].numpy(), d["actions"].numpy()
    rewards, flags = d["rewards"].tolist(), d["flags"].numpy()
    return [(frames[k], actions[k], rewards[k], bool(flags[k, 0]), bool(flags[k, 1]), bool(flags[k, 2]))
            for k in range(len(frames))]


class UniformReplay(ReplayStorage):
    """Uniform sampling over stored transitions (Nature DQN), with optional n-step returns."""

    def n_step_batch(self, p: np.ndarray, n: int, gamma: float, device="cpu") -> dict[str, torch.Tensor]:
        """Transitions at absolute indexes p with n-step returns, computed by index (no loops).

        For each p: R = sum_{j<m} gamma^j r_{p+j} over the m <= n transitions that follow p in
        its episode: the window stops after an episode end (terminated or truncated) and, in
        the running episode, at the newest stored transition. `next_obs` is s_{p+m},
        `terminated` says s_{p+m} is terminal (no bootstrap; a truncated end bootstraps from
        the final observation), `discounts` is gamma^m. n = 1 gives `batch(p)` exactly, with
        discounts = gamma.
        """
        if n < 1:
            raise RewindError(f"n-step returns need n >= 1, got {n}")
        p = np.asarray(p, dtype=np.int64)
        if n == 1:
            b = self.batch(p, device)
            b["discounts"] = torch.full(p.shape, gamma, dtype=torch.float32, device=device)
            return b
        obs, actions = self.obs_actions(p, device)   # the rest is computed over the n-step window
        q = p[:, None] + np.arange(n)[None, :]                      # (B, n) absolute indexes
        rows = q % self.capacity
        ends = self.terminated[rows] | self.truncated[rows]
        stored = q + 1 < self.total                                 # s_{q+1} has been written
        inc = np.ones(q.shape, dtype=bool)                          # transition p+j is in p's window
        inc[:, 1:] = np.logical_and.accumulate(~ends[:, :-1] & stored[:, 1:], axis=1)
        m = inc.sum(axis=1)                                         # >= 1
        powers = gamma ** np.arange(n, dtype=np.float64)
        ret = (self.rewards[rows] * inc) @ powers                    # float64 sum, cast below
        last = p + m - 1
        return {
            "obs": obs,
            "actions": actions,
            "rewards": to_device(ret.astype(np.float32), device),
            "next_obs": to_device(self.next_states(last), device),
            "terminated": to_device(self.terminated[last % self.capacity], device),
            "discounts": to_device((gamma ** m.astype(np.float64)).astype(np.float32), device),
        }

    def sample_indices(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        low, high = self.oldest, self.total - 1  # p + 1 must exist
        if high <= low:
            raise RewindError("replay holds no complete transition yet; raise learning_starts")
        p = rng.integers(low, high, size=batch_size)
        bad = ~self.is_valid(p)
        for _ in range(100):  # invalid slots are rare (episode ends, stacks cut by wraparound)
            if not bad.any():
                return p
            p[bad] = rng.integers(low, high, size=int(bad.sum()))
            bad = ~self.is_valid(p)
        raise RewindError("replay could not find valid transitions; is learning_starts larger than one episode?")
