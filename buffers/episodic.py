"""Episodic replay for EBU: the frame-once storage plus an index of complete episodes.

The index is a ring of (first slot, last transition) pairs appended when an episode ends
and trimmed from the front when wraparound overwrites an episode's first slot, so
sampling an episode uniformly is O(1), never scans the buffer, and never returns a torn
(partly overwritten) episode. Episode boundaries are whatever ended the episode:
termination (with Atari's training env, a lost life), or a time-limit truncation; the
storage keeps the three flags apart (terminated, life_loss, truncated).
"""

from __future__ import annotations

import numpy as np

from rewind.buffers.replay import ReplayStorage
from rewind.errors import RewindError


class EpisodicReplayBuffer(ReplayStorage):
    def __init__(self, capacity: int, obs_shape: tuple, obs_dtype, n_actions: int | None = None,
                 frame_stack: int = 1, **kwargs):
        super().__init__(capacity, obs_shape, obs_dtype, n_actions, frame_stack, **kwargs)
        ring = capacity // 2 + 1  # every episode takes at least 2 slots (a transition + its final frame)
        self._ep_first = np.zeros(ring, dtype=np.int64)
        self._ep_last = np.zeros(ring, dtype=np.int64)
        self._ep_head = 0  # absolute count of episodes dropped
        self._ep_tail = 0  # absolute count of episodes completed

    def _on_episode_end(self, start: int, last: int) -> None:
        self._drop_overwritten()  # frees ring entries first: at most capacity // 2 episodes are intact
        j = self._ep_tail % len(self._ep_first)
        self._ep_first[j] = start
        self._ep_last[j] = last
        self._ep_tail += 1

    def _drop_overwritten(self) -> None:
        ring, oldest = len(self._ep_first), self.oldest
        while self._ep_head < self._ep_tail and self._ep_first[self._ep_head % ring] < oldest:
            self._ep_head += 1

    @property
    def num_episodes(self) -> int:
        """Complete, intact episodes available for sampling."""
        self._drop_overwritten()
        return self._ep_tail - self._ep_head

    def sample_episode(self, rng: np.random.Generator, exclude_oldest: int = 0, exclude_newest: int = 0,
                       skip_first: int = 0) -> np.ndarray:
        """Absolute indexes of the transitions of one uniformly chosen complete episode, in time order.

        exclude_oldest/exclude_newest leave out that many of the oldest/newest stored episodes, and
        skip_first drops an episode's first transitions, resampling episodes too short to keep any (the
        EBU authors' random_episode: 5, 3 and 3). While fewer episodes than the exclusions are stored,
        every stored episode is eligible.
        """
        n = self.num_episodes
        if n == 0:
            raise RewindError("episodic replay holds no complete episode yet; raise learning_starts")
        lo, hi = (exclude_oldest, n - exclude_newest) if n > exclude_oldest + exclude_newest else (0, n)
        for _ in range(100):
            j = (self._ep_head + int(rng.integers(lo, hi))) % len(self._ep_first)
            first, last = self._ep_first[j], self._ep_last[j]
            if last - first >= skip_first:
                return np.arange(first + skip_first, last + 1, dtype=np.int64)
        return np.arange(first, last + 1, dtype=np.int64)   # only very short episodes stored: keep this one

    def episode(self, p: np.ndarray) -> dict[str, np.ndarray]:
        """Contiguous arrays of one episode's transitions (from sample_episode)."""
        i = p % self.capacity
        return {"obs": self.states(p), "actions": self.actions[i].astype(np.int64), "rewards": self.rewards[i],
                "next_obs": self.next_states(p), "terminated": self.terminated[i], "truncated": self.truncated[i],
                "life_loss": self.life_loss[i]}

    def state_dict(self) -> dict:
        out = super().state_dict()
        ring = len(self._ep_first)
        idx = np.arange(self._ep_head, self._ep_tail) % ring
        out.update(ep_first=self._ep_first[idx].copy(), ep_last=self._ep_last[idx].copy())
        return out

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        first, last = np.asarray(state["ep_first"]), np.asarray(state["ep_last"])
        self._ep_head, self._ep_tail = 0, len(first)
        self._ep_first[: len(first)] = first
        self._ep_last[: len(last)] = last
