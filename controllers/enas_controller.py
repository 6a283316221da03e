"""The ENAS controller (Pham et al. 2018): an LSTM policy over architectures, trained with REINFORCE.

It is an Agent like any other in rewind: ``act`` samples one architecture (a flat vector of
choices, the action of the architecture-search env), ``observe`` records its reward, and
``update`` takes a policy-gradient step once ``samples_per_update`` rewards are in.

Sampling follows the official code: the LSTM steps once per decision; an ``op`` decision
reads a softmax head and feeds the chosen option's embedding back; ``input`` and ``skip``
decisions attend over earlier anchors (v^T tanh(W1 h_j + W2 h)); logits are divided by the
temperature and squashed to c * tanh(.). The reward gets an entropy bonus, the advantage is
taken against an exponential-moving-average baseline, and macro-space skip probabilities
pay a KL penalty towards a target skip rate. Adam.

Any ``MultiDiscrete`` action space works: without decision metadata every entry is an
independent ``op`` decision with its own head.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

from rewind.agents.base import Agent
from rewind.errors import RewindError


@dataclasses.dataclass
class ENASControllerConfig:
    lstm_size: int = 64             # official code 64 (paper: 100)
    lstm_layers: int = 1
    temperature: float = 5.0        # logits / T (paper: 5); 0 or less disables
    tanh_constant: float = 2.5      # c * tanh(logits) (paper 2.5; code 1.1-1.5 for CNN spaces); 0 disables
    entropy_weight: float = 1e-4    # added to the reward (paper: 1e-4)
    baseline_decay: float = 0.99    # EMA baseline (paper: 0.99)
    baseline_init: str = "zero"     # "zero" (official code) or "first": start at the first batch's mean reward
    lr: float = 3.5e-4              # Adam (paper: 3.5e-4)
    skip_target: float = 0.4        # macro space: target skip-connection rate (paper: 0.4)
    skip_weight: float = 0.8        # weight of the KL penalty towards it (paper: 0.8)
    samples_per_update: int = 10    # REINFORCE samples aggregated per step (official scripts: 10-20)
    init_range: float = 0.1         # uniform init of all controller weights (official code)

    def validate(self):
        if self.lstm_size < 1 or self.lstm_layers < 1:
            raise RewindError("agent.lstm_size and agent.lstm_layers must be >= 1")
        if self.samples_per_update < 1:
            raise RewindError("agent.samples_per_update must be >= 1")
        if not 0.0 <= self.baseline_decay < 1.0:
            raise RewindError("agent.baseline_decay must be in [0, 1)")
        if not 0.0 < self.skip_target < 1.0:
            raise RewindError("agent.skip_target must be in (0, 1)")
        if self.baseline_init not in ("zero", "first"):
            raise RewindError("agent.baseline_init must be 'zero' or 'first'")
        if self.lr <= 0:
            raise RewindError("agent.lr must be > 0")


def _decisions_of(space: gym.Space):
    """(decisions, vocab sizes) from an ArchitectureSpace, or one op decision per MultiDiscrete entry."""
    from rewind.controllers.search_spaces import Decision

    if not isinstance(space, gym.spaces.MultiDiscrete) or space.nvec.ndim != 1:
        raise RewindError("the ENAS controller needs a 1-D MultiDiscrete action space (an architecture)")
    decisions = getattr(space, "decisions", None)
    if decisions is not None:
        return list(decisions)
    return [Decision("op", int(n), f"entry{i}") for i, n in enumerate(space.nvec)]


class ENASPolicy(nn.Module):
    """The LSTM and its heads. ``run(B, actions=None)`` samples B architectures or scores given ones."""

    def __init__(self, decisions, cfg: ENASControllerConfig):
        super().__init__()
        self.decisions, self.cfg = decisions, cfg
        h = cfg.lstm_size
        vocab = {}
        for d in decisions:
            if d.kind == "op":
                if vocab.setdefault(d.vocab, d.n) != d.n:
                    raise RewindError(f"decision table {d.vocab!r} used with different sizes")
        self.lstm = nn.ModuleList(nn.LSTMCell(h, h) for _ in range(cfg.lstm_layers))
        self.g_emb = nn.Parameter(torch.empty(1, h))
        self.emb = nn.ModuleDict({k: nn.Embedding(n, h) for k, n in vocab.items()})
        self.soft = nn.ModuleDict({k: nn.Linear(h, n, bias=False) for k, n in vocab.items()})
        self.attn1 = nn.Linear(h, h, bias=False)
        self.attn2 = nn.Linear(h, h, bias=False)
        self.v_attn = nn.Linear(h, 1, bias=False)
        for p in self.parameters():
            nn.init.uniform_(p, -cfg.init_range, cfg.init_range)

    def _squash(self, logits):
        if self.cfg.temperature > 0:
            logits = logits / self.cfg.temperature
        if self.cfg.tanh_constant > 0:
            logits = self.cfg.tanh_constant * torch.tanh(logits)
        return logits

    def _step(self, x, state):
        new = []
        for cell, (h, c) in zip(self.lstm, state):
            h, c = cell(x, (h, c))
            new.append((h, c))
            x = h
        return x, new

    def run(self, batch: int, actions: torch.Tensor | None = None, generator=None, greedy=False):
        """Returns (actions (B, n) int64, log_prob (B,), entropy (B,), skip_kl (B,), skip_count (B,))."""
        cfg, hsz = self.cfg, self.cfg.lstm_size
        zeros = lambda: [(self.g_emb.new_zeros(batch, hsz), self.g_emb.new_zeros(batch, hsz))
                         for _ in self.lstm]
        state, x = zeros(), self.g_emb.expand(batch, hsz)
        anchors, anchors_w1 = [], []
        chosen, logp, ent = [], 0.0, 0.0
        skip_kl, skips = self.g_emb.new_zeros(batch), self.g_emb.new_zeros(batch)
        col = 0

        def pick(logits):   # logits (B, k) or (B, n, k) -> choices (B,) / (B, n); adds log-prob and entropy
            nonlocal logp, ent, col
            lsm = torch.log_softmax(logits, dim=-1)
            width = 1 if logits.dim() == 2 else logits.shape[1]
            if actions is not None:
                a = actions[:, col:col + width]
            elif greedy:
                a = logits.argmax(-1).reshape(batch, width)
            else:
                a = torch.multinomial(lsm.exp().reshape(-1, logits.shape[-1]), 1,
                                      generator=generator).reshape(batch, width)
            lp = lsm.reshape(batch, width, -1).gather(-1, a.unsqueeze(-1)).squeeze(-1)      # (B, width)
            logp = logp + lp.sum(1)
            ent = ent - (lsm.exp() * lsm).sum(-1).reshape(batch, width).sum(1)
            chosen.append(a)
            col += width
            return a.squeeze(1) if logits.dim() == 2 else a

        for d in self.decisions:
            if d.kind == "reset":
                state, x, anchors, anchors_w1 = zeros(), self.g_emb.expand(batch, hsz), [], []
                continue
            h, state = self._step(x, state)
            if d.kind == "anchor":
                x = self.g_emb.expand(batch, hsz)
            elif d.kind == "op":
                a = pick(self._squash(self.soft[d.vocab](h)))
                x = self.emb[d.vocab](a)
            elif d.kind in ("input", "skip") and d.n > 0:
                w1 = torch.stack(anchors_w1[:d.n], dim=1)                     # (B, n, H)
                score = self.v_attn(torch.tanh(w1 + self.attn2(h).unsqueeze(1))).squeeze(-1)   # (B, n)
                anc = torch.stack(anchors[:d.n], dim=1)
                if d.kind == "input":
                    a = pick(self._squash(score))
                    x = anc[torch.arange(batch), a]
                else:
                    two = self._squash(torch.stack([-score, score], dim=-1))    # (B, n, 2)
                    f = pick(two).to(anc.dtype)                                  # (B, n)
                    p = torch.sigmoid(score)
                    t = cfg.skip_target
                    skip_kl = skip_kl + (p * torch.log(p / t) + (1 - p) * torch.log((1 - p) / (1 - t))).sum(1)
                    skips = skips + f.sum(1)
                    x = (f.unsqueeze(-1) * anc).sum(1) / (1.0 + f.sum(1, keepdim=True))
            elif d.kind == "skip":          # layer 0: nothing to connect to
                x = self.g_emb.expand(batch, hsz)
            if d.kind == "anchor" or d.anchor_after:
                anchors.append(h)
                anchors_w1.append(self.attn1(h))
        acts = torch.cat(chosen, dim=1) if chosen else torch.zeros(batch, 0, dtype=torch.long)
        zero = self.g_emb.new_zeros(batch)
        return acts, logp + zero, ent + zero, skip_kl, skips


class ENASController(Agent):
    """Agent: act = sample an architecture; observe = its reward; update = REINFORCE step."""

    Config = ENASControllerConfig

    def __init__(self, observation_space, action_space, config=None, *, seed=0, frame_stack=1):
        super().__init__(observation_space, action_space, config, seed=seed, frame_stack=frame_stack)
        self.decisions = _decisions_of(action_space)
        with torch.random.fork_rng():      # seeded init without touching the global RNG
            torch.manual_seed(seed)
            self.policy = ENASPolicy(self.decisions, self.config)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.config.lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.baseline = 0.0
        self.baseline_set = self.config.baseline_init == "zero"
        self.pending: list[tuple[np.ndarray, float]] = []
        self.last_log_prob = 0.0
        self.last_entropy = 0.0
        self.updates = 0

    @torch.no_grad()
    def act(self, obs=None, explore: bool = True) -> np.ndarray:
        acts, logp, ent, _, _ = self.policy.run(1, generator=self.generator, greedy=not explore)
        self.last_log_prob, self.last_entropy = float(logp[0]), float(ent[0])
        return acts[0].numpy().astype(np.int64)

    @torch.no_grad()
    def sample(self, n: int) -> np.ndarray:
        """n architectures at once (derive step, shared-weight training sampler)."""
        return self.policy.run(n, generator=self.generator)[0].numpy().astype(np.int64)

    def log_prob(self, actions) -> torch.Tensor:
        """Log-probability of each given architecture under the current policy (with gradient)."""
        a = torch.as_tensor(np.asarray(actions), dtype=torch.long).reshape(-1, int(self.action_space.nvec.size))
        return self.policy.run(a.shape[0], actions=a)[1]

    def observe(self, obs, action, reward, next_obs, terminated, truncated, info) -> None:
        self.pending.append((np.asarray(action, dtype=np.int64), float(reward)))

    def update(self) -> dict[str, float]:
        cfg = self.config
        if len(self.pending) < cfg.samples_per_update:
            return {}
        batch, self.pending = self.pending[:cfg.samples_per_update], self.pending[cfg.samples_per_update:]
        actions = torch.as_tensor(np.stack([a for a, _ in batch]), dtype=torch.long)
        rewards = torch.tensor([r for _, r in batch], dtype=torch.float32)
        _, logp, ent, skip_kl, skips = self.policy.run(len(batch), actions=actions)
        total = rewards + cfg.entropy_weight * ent.detach()
        if not self.baseline_set:
            self.baseline, self.baseline_set = float(total.mean()), True
        adv = torch.empty_like(total)
        for i, r in enumerate(total.tolist()):     # per-sample EMA, as the official code (baseline first)
            self.baseline -= (1.0 - cfg.baseline_decay) * (self.baseline - r)
            adv[i] = r - self.baseline
        loss = -(logp * adv).mean()
        n_skip = sum(d.n for d in self.decisions if d.kind == "skip")
        if n_skip:
            loss = loss + cfg.skip_weight * skip_kl.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        out = {"reward": rewards.mean().item(), "baseline": self.baseline, "entropy": ent.mean().item(),
               "advantage": adv.mean().item(), "loss": loss.item(), "log_prob": logp.mean().item()}
        if n_skip:
            out.update(skip_rate=skips.mean().item() / n_skip, skip_kl=skip_kl.mean().item())
        return out

    def state_dict(self) -> dict:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "baseline": self.baseline,
                "baseline_set": self.baseline_set, "pending": list(self.pending), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.baseline, self.baseline_set = state["baseline"], state["baseline_set"]
        self.pending, self.updates = list(state["pending"]), state["updates"]
