"""Acting while the learner updates (`agent.overlap`): one background learner thread, Ape-X-like.

Why: on a CPU a Nature-CNN update (~27 ms on 2 cores) and the four env steps with their batch-1
forward passes (~7 ms) run one after the other; with overlap the env steps run while the update
computes. The price, and the reason it is off by default: actions come from the parameters one
update old (Horgan et al. 2018 act from parameters refreshed periodically; here the lag is exactly
one update). What stays exact:
- only the calling thread touches the replay and the agent's rng: the minibatch is sampled and
  gathered (copied) before the update is handed over, so observe() may write while it runs;
- at most one update is in flight: the next one first waits for it, then copies the learner's
  parameters into the actor's network; that copy happens only there, so the actions do not depend
  on when checkpoints or evaluations happen, and runs are deterministic given the seed;
- whatever reads or changes the networks (checkpoints, evaluation, growth, loading) waits first;
  checkpoints hold the actor's copy, so a resumed run continues bit-identically.
"""

from __future__ import annotations

import copy
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from torch import nn


class Overlap:
    """The actor's copy of the Q-network and the one update in flight."""

    def __init__(self, net: nn.Module):
        self.actor = copy.deepcopy(net).requires_grad_(False)
        self.metrics: dict[str, float] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self._threads = torch.get_num_threads()   # the learner thread uses the caller's thread count

    def submit(self, fn, *args) -> None:
        if self._pending is not None:
            raise RuntimeError("an update is still in flight: wait() for it first")
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="rewind-learner",
                                            initializer=torch.set_num_threads, initargs=(self._threads,))
        self._pending = self._pool.submit(fn, *args)

    def wait(self) -> dict[str, float]:
        """Wait for the update in flight (re-raising its error here); its metrics, or the last ones."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.metrics = pending.result()
        return self.metrics

    def refresh(self, net: nn.Module) -> None:
        """Copy the learner's parameters and buffers into the actor's network (rebuilt if shapes changed)."""
        src = list(net.parameters()) + list(net.buffers())
        dst = list(self.actor.parameters()) + list(self.actor.buffers())
        if [t.shape for t in src] != [t.shape for t in dst]:   # Net2Net growth changed the shapes
            self.actor = copy.deepcopy(net).requires_grad_(False)
            return
        with torch.no_grad():
            for d, s in zip(dst, src):
                d.copy_(s)
