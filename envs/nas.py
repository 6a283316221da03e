"""The architecture-search env (ENAS, docs/enas.md).

One step = one architecture: the action is a flat vector of choices, the reward is the
shared-weight child's score with that architecture on one validation minibatch (accuracy,
or 80 / perplexity for language models), and the episode ends. Before every controller
phase of ``controller_steps`` rewards the env trains the shared weights for a phase of
``child_steps`` minibatches (0: one epoch), one architecture per minibatch drawn from the
``sampler`` callback: ``sampler(n)`` returns n architectures, one per minibatch of the phase
(the caller passes the current controller's sampler, or a uniform one for random search).
SGD with Nesterov momentum 0.9, cosine learning rate over the whole search, gradient-norm
clip 5, as in the paper.

Layering: envs never import controllers, so the caller hands over the shared model (any
module with ``forward(x, arch)``) and the action space (any ``MultiDiscrete``, usually the
search space's ``ArchitectureSpace``). Nothing here knows what an architecture means.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rewind.envs.nas_data import ImageData, QValueData, TextData
from rewind.errors import RewindError


Q_SCORES = ("r2", "agreement")


@dataclasses.dataclass
class NASEnvConfig:
    batch_size: int = 128           # shared-weight training minibatch (ENAS CNN: 128; PTB: 64)
    eval_batch_size: int = 128      # the validation minibatch a reward is computed on
    bptt: int = 35                  # language models: tokens per chunk (ENAS PTB: 35)
    child_steps: int = 0            # shared-weight minibatches per phase; 0 = one epoch
    controller_steps: int = 2000    # rewards per controller phase (paper: 2000)
    phases: int = 10                # phases in the search; sets the cosine schedule length
    budget_steps: int = 0           # > 0: the search's compute budget in shared-weight optimizer steps;
                                    # replaces `phases` (ceil(budget / steps per phase); the last phase is
                                    # cut to fit) so every strategy does exactly this many steps
    lr_max: float = 0.05            # ENAS CNN: 0.05
    lr_min: float = 0.0005
    momentum: float = 0.9
    weight_decay: float = 1e-4
    grad_clip: float = 5.0
    ppl_constant: float = 80.0      # language-model reward = c / perplexity (ENAS: 80)
    q_score: str = "r2"             # Q-value data (qnet space): r2 = 1 - SSE / SS of the (train-centred)
                                    # teacher Q-values, or agreement = share of states whose greedy action
                                    # matches the teacher's; the child always fits the Q-values (MSE)
    q_score_floor: float = -1.0     # Q-value rewards below this are raised to it: a shared-weight path
                                    # that diverges scores r2 of -30 and such outliers swamp REINFORCE
    device: str = "cpu"

    def validate(self):
        for name in ("batch_size", "eval_batch_size", "bptt", "controller_steps", "phases"):
            if getattr(self, name) < 1:
                raise RewindError(f"env.{name} must be >= 1")
        if self.child_steps < 0:
            raise RewindError("env.child_steps must be >= 0 (0 = one epoch)")
        if self.budget_steps < 0:
            raise RewindError(f"env.budget_steps must be >= 0 (0 = env.phases), got {self.budget_steps}")
        if self.q_score not in Q_SCORES:
            raise RewindError(f"env.q_score must be one of {', '.join(Q_SCORES)}, got {self.q_score!r}")
        if self.lr_max <= 0 or self.lr_min < 0 or self.lr_min > self.lr_max:
            raise RewindError("env.lr_max must be > 0 and 0 <= env.lr_min <= env.lr_max")


def batchify(stream: torch.Tensor, batch: int) -> torch.Tensor:
    """1-D token stream -> (T, batch) columns, the usual language-model layout."""
    t = stream.numel() // batch
    if t < 2:
        raise RewindError(f"text split of {stream.numel()} tokens is too short for batch size {batch}")
    return stream[: t * batch].view(batch, t).t().contiguous()


class Batches:
    """Endless minibatches of one split: shuffled epochs for images, chunks in order for text."""

    def __init__(self, data, split: str, batch: int, bptt: int, seed: int, device="cpu"):
        self.text = isinstance(data, TextData)
        self.rng = np.random.default_rng(seed)
        if self.text:
            self.stream = batchify(getattr(data, split), batch).to(device)
            self.starts = np.arange(0, self.stream.shape[0] - 1, bptt)
            self.bptt = bptt
            self.n = len(self.starts)
        else:
            x, y = data.split(split)
            self.x, self.y = x.to(device), y.to(device)
            self.batch = min(batch, len(y))
            self.n = max(len(y) // self.batch, 1)   # full batches per epoch (drop the ragged end)
        self.order, self.pos = None, self.n

    def __len__(self):
        return self.n

    def next(self):
        if self.pos >= self.n:
            self.order = np.arange(self.n) if self.text else self.rng.permutation(len(self.y))
            self.pos = 0
        i = self.pos
        self.pos += 1
        if self.text:
            s = int(self.starts[i])
            t = min(self.bptt, self.stream.shape[0] - 1 - s)
            return self.stream[s:s + t], self.stream[s + 1:s + 1 + t]
        idx = torch.from_numpy(self.order[i * self.batch:(i + 1) * self.batch]).to(self.x.device)
        return self.x[idx], self.y[idx]

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state, "order": self.order, "pos": self.pos}

    def load_state_dict(self, s):
        self.rng.bit_generator.state = s["rng"]
        self.order, self.pos = s["order"], s["pos"]


def q_scores(out: torch.Tensor, y: torch.Tensor) -> dict:
    """Sums over a batch of Q-value predictions: squared error, targets' sum of squares (their train
    mean is 0 after standardising), greedy-action matches."""
    return {"sse": float(((out - y) ** 2).sum()), "sst": float((y ** 2).sum()),
            "agree": float((out.argmax(-1) == y.argmax(-1)).sum())}


def q_score_of(sums: dict, n: int, q_score: str) -> float:
    return 1.0 - sums["sse"] / max(sums["sst"], 1e-12) if q_score == "r2" else sums["agree"] / n


def loss_and_score(model: nn.Module, x, y, arch, text: bool, ppl_constant: float = 80.0, q_score: str | None = None):
    """(loss, score): cross-entropy and accuracy for classifiers, c / perplexity for language models;
    with q_score (Q-value data): MSE to the teacher's Q-values and that score (r2 or agreement)."""
    out = model(x, arch)
    if q_score is not None:
        return F.mse_loss(out, y), q_score_of(q_scores(out.detach(), y), len(y), q_score)
    if text:
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        return loss, ppl_constant / math.exp(min(float(loss), 50.0))
    loss = F.cross_entropy(out, y)
    return loss, float((out.argmax(-1) == y).float().mean())


@torch.no_grad()
def evaluate_split(model: nn.Module, data, split: str, arch=None, batch: int = 512, bptt: int = 35,
                   ppl_constant: float = 80.0, q_score: str = "r2") -> dict:
    """Whole-split accuracy (images), perplexity (text) or r2 and agreement (Q-values) of `model` with `arch`."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    text = isinstance(data, TextData)
    total, n, correct = 0.0, 0, 0.0
    if isinstance(data, QValueData):
        x, y = data.split(split)
        sums = {"sse": 0.0, "sst": 0.0, "agree": 0.0}
        for s in range(0, len(y), batch):
            for k, v in q_scores(model(x[s:s + batch].to(device), arch), y[s:s + batch].to(device)).items():
                sums[k] += v
        model.train(was)
        n = len(y)
        r2, agree = q_score_of(sums, n, "r2"), q_score_of(sums, n, "agreement")
        return {"loss": sums["sse"] / (n * y.shape[1]), "r2": r2, "agreement": agree,
                "score": r2 if q_score == "r2" else agree}
    if text:
        stream = batchify(getattr(data, split), min(batch, max(getattr(data, split).numel() // 4, 1))).to(device)
        for s in range(0, stream.shape[0] - 1, bptt):
            t = min(bptt, stream.shape[0] - 1 - s)
            out = model(stream[s:s + t], arch)
            total += float(F.cross_entropy(out.reshape(-1, out.shape[-1]), stream[s + 1:s + 1 + t].reshape(-1),
                                           reduction="sum"))
            n += t * stream.shape[1]
        model.train(was)
        ppl = math.exp(min(total / n, 50.0))
        return {"loss": total / n, "perplexity": ppl, "score": ppl_constant / ppl}
    x, y = data.split(split)
    for s in range(0, len(y), batch):
        xb, yb = x[s:s + batch].to(device), y[s:s + batch].to(device)
        out = model(xb, arch)
        total += float(F.cross_entropy(out, yb, reduction="sum"))
        correct += float((out.argmax(-1) == yb).sum())
        n += len(yb)
    model.train(was)
    return {"loss": total / n, "accuracy": correct / n, "score": correct / n}


class NASEnv(gym.Env):
    """Contextual-bandit env over architectures; trains the shared weights between controller phases."""

    metadata = {"render_modes": []}

    def __init__(self, data, model: nn.Module, action_space: gym.spaces.MultiDiscrete,
                 sampler: Callable[[int], np.ndarray] | None = None, config: NASEnvConfig | None = None,
                 seed: int = 0):
        if not isinstance(data, (ImageData, TextData, QValueData)):
            raise RewindError("NASEnv needs data from rewind.envs.nas_data (ImageData, TextData or QValueData)")
        self.data, self.cfg = data, config or NASEnvConfig()
        self.cfg.validate()
        self.device = torch.device(self.cfg.device)
        self.model = model.to(self.device)
        self.action_space = action_space
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.sampler = sampler or (lambda n: np.stack([self.action_space.sample() for _ in range(n)]))
        self.text = isinstance(data, TextData)
        self.q_score = self.cfg.q_score if isinstance(data, QValueData) else None
        self.train_batches = Batches(data, "train", self.cfg.batch_size, self.cfg.bptt, seed, self.device)
        self.valid_batches = Batches(data, "valid", self.cfg.eval_batch_size, self.cfg.bptt, seed + 1, self.device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.cfg.lr_max, momentum=self.cfg.momentum,
                                         nesterov=self.cfg.momentum > 0, weight_decay=self.cfg.weight_decay)
        self.steps_per_phase = self.cfg.child_steps or len(self.train_batches)
        if self.cfg.budget_steps:
            self.phases = -(-self.cfg.budget_steps // self.steps_per_phase)
            self.total_child_steps = self.cfg.budget_steps
        else:
            self.phases = self.cfg.phases
            self.total_child_steps = self.steps_per_phase * self.cfg.phases
        self.child_steps_done = 0
        self.rewards_in_phase = self.cfg.controller_steps   # train the shared weights before the first reward
        self.phase = 0

    def set_sampler(self, sampler: Callable[[int], np.ndarray]) -> None:
        self.sampler = sampler

    def lr(self) -> float:
        frac = min(self.child_steps_done / max(self.total_child_steps, 1), 1.0)
        return self.cfg.lr_min + 0.5 * (self.cfg.lr_max - self.cfg.lr_min) * (1 + math.cos(math.pi * frac))

    def train_shared(self, steps: int | None = None) -> dict:
        """One phase of shared-weight training, one sampled architecture per minibatch."""
        if not steps and self.cfg.budget_steps:     # a compute budget: the last phase is cut to fit it
            steps = min(self.steps_per_phase, max(self.cfg.budget_steps - self.child_steps_done, 0))
        elif not steps:
            steps = self.steps_per_phase
        if steps < 1:
            raise RewindError(f"the shared-weight budget of {self.total_child_steps} optimizer steps is spent")
        self.model.train()
        t0, losses, scores = time.perf_counter(), [], []
        archs = self.sampler(steps)      # the policy is fixed during a phase: draw them all at once
        for arch in archs:
            for g in self.optimizer.param_groups:
                g["lr"] = self.lr()
            x, y = self.train_batches.next()
            loss, score = loss_and_score(self.model, x, y, arch, self.text, self.cfg.ppl_constant, self.q_score)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.optimizer.step()
            self.child_steps_done += 1
            losses.append(loss.item())
            scores.append(score)
        self.phase += 1
        return {"child_loss": float(np.mean(losses)), "child_score": float(np.mean(scores)), "child_lr": self.lr(),
                "child_seconds": time.perf_counter() - t0, "phase": self.phase}

    @torch.no_grad()
    def score(self, arch, batch=None) -> float:
        """Shared-weight score of `arch` on one validation minibatch (the next one, or `batch`)."""
        self.model.eval()   # disables dropout; shared BatchNorm always uses batch statistics
        x, y = batch if batch is not None else self.valid_batches.next()
        _, s = loss_and_score(self.model, x, y, arch, self.text, self.cfg.ppl_constant, self.q_score)
        self.model.train()
        return max(s, self.cfg.q_score_floor) if self.q_score is not None else s

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.action_space.seed(seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        info = {}
        if self.rewards_in_phase >= self.cfg.controller_steps:
            info["child"] = self.train_shared()
            self.rewards_in_phase = 0
        arch = np.asarray(action, dtype=np.int64)
        if arch.shape != self.action_space.shape or not self.action_space.contains(arch):
            raise RewindError(f"architecture {arch.tolist()} is not in the action space (nvec "
                              f"{self.action_space.nvec.tolist()})")
        reward = self.score(arch)
        self.rewards_in_phase += 1
        return np.zeros(1, dtype=np.float32), reward, True, False, info

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "train_batches": self.train_batches.state_dict(), "valid_batches": self.valid_batches.state_dict(),
                "child_steps_done": self.child_steps_done, "rewards_in_phase": self.rewards_in_phase,
                "phase": self.phase}

    def load_state_dict(self, s: dict) -> None:
        self.model.load_state_dict(s["model"])
        self.optimizer.load_state_dict(s["optimizer"])
        self.train_batches.load_state_dict(s["train_batches"])
        self.valid_batches.load_state_dict(s["valid_batches"])
        self.child_steps_done, self.rewards_in_phase, self.phase = (
            s["child_steps_done"], s["rewards_in_phase"], s["phase"])
