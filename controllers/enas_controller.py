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

As the official code (melodyguan/enas, src/cifar10/general_controller.py and
micro_controller.py; docs/enas.md lists every value and its file):

- skip penalty (``skip_penalty``): p = sigmoid of the *squashed* skip score, KL towards the
  target summed over a layer's anchors, then *averaged* over layers;
- micro space: the reduction cell starts from the normal cell's last LSTM state
  (``agent.cell_state``), the two cell-input anchors are zeros (``agent.input_anchors``; their
  attention keys come from the LSTM), op logits carry a learned bias initialised to
  [10, 10, 0, 0, 0] and, in the normal cell, a fixed [0.25, 0.25, -0.25, ...] after the squash
  (``agent.op_bias``), and the op squash uses tanh_constant / op_tanh_reduce.

Deviations (named choices): ``baseline_init: first`` (official: zero); the entropy bonus uses
each decision's full entropy, where the macro controller uses -p(a) log p(a) of the sampled
choice; ``op_tanh_reduce`` applies to every op head (the official macro controller ignores the
flag, so macro presets leave it at 1).

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
    op_tanh_reduce: float = 1.0     # op logits use tanh_constant / op_tanh_reduce (micro_controller.py;
                                    # main.py default 1.0, cifar10_micro_search.sh 2.5)
    op_bias: str = "official"       # "official": micro op heads get the learned bias of micro_controller.py
                                    # (init [10, 10, 0, ...]) and, in the normal cell only, the fixed
                                    # [0.25, 0.25, -0.25, ...] after the squash; "none": no op bias
    cell_state: str = "carry"       # micro: the reduction cell starts from the normal cell's last LSTM
                                    # state ("carry", micro_controller.py) or from zeros ("fresh")
    input_anchors: str = "zeros"    # micro: the two cell inputs' anchor values are zeros ("zeros",
                                    # micro_controller.py; attention keys still from the LSTM) or the
                                    # LSTM hidden states ("lstm")

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
        if self.op_tanh_reduce <= 0:
            raise RewindError(f"agent.op_tanh_reduce must be > 0, got {self.op_tanh_reduce}")
        for key, allowed in (("op_bias", ("official", "none")), ("cell_state", ("carry", "fresh")),
                             ("input_anchors", ("zeros", "lstm"))):
            if getattr(self, key) not in allowed:
                raise RewindError(f"agent.{key} is {getattr(self, key)!r}; allowed: {', '.join(allowed)}")


# Official op-logit biases per option table (micro_controller.py, _create_params): a learned bias
# initialised to `learned`, and a constant `fixed` added after the squash in the first (normal)
# cell only. MICRO_OPS lists the ops in the official order (sep3x3, sep5x5, avgpool, maxpool, identity).
OFFICIAL_OP_BIAS = {"micro_op": {"learned": (10.0, 10.0), "fixed": (0.25, 0.25), "rest": (0.0, -0.25)}}


def official_op_bias(vocab: str, n: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(learned-bias init, fixed normal-cell bias), each (n,), for an option table; None if it has none."""
    spec = OFFICIAL_OP_BIAS.get(vocab)
    if spec is None:
        return None
    learned = list(spec["learned"]) + [spec["rest"][0]] * (n - len(spec["learned"]))
    fixed = list(spec["fixed"]) + [spec["rest"][1]] * (n - len(spec["fixed"]))
    return torch.tensor(learned[:n]), torch.tensor(fixed[:n])


def skip_penalty(squashed: list[torch.Tensor], target: float) -> torch.Tensor:
    """The official skip-connection KL penalty (general_controller.py, _build_sampler).

    squashed: one (B, n_l) tensor per layer with skip decisions (layer l > 0), holding the
    squashed score s = c * tanh(q / T) of each earlier layer (the sampling logits are [-s, s]).
    Per layer: sum over anchors of KL(Bernoulli(sigmoid(s)) || Bernoulli(target)); then the mean
    over layers (``tf.reduce_mean(skip_penaltys)``). Returns (B,).
    """
    if not squashed:
        raise ValueError("skip_penalty needs at least one layer of skip scores")
    per_layer = []
    for s in squashed:
        p = torch.sigmoid(s)
        kl = p * torch.log(p / target) + (1 - p) * torch.log((1 - p) / (1 - target))
        per_layer.append(kl.sum(-1))
    return torch.stack(per_layer, dim=0).mean(0)


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
        cells = any(d.kind == "reset" for d in decisions)
        for key, default in (("cell_state", "carry"), ("input_anchors", "zeros")):
            if getattr(cfg, key) != default and not cells:
                raise RewindError(f"agent.{key}={getattr(cfg, key)!r} applies to spaces with cells (micro) only; "
                                  f"this space has none")
        self.lstm = nn.ModuleList(nn.LSTMCell(h, h) for _ in range(cfg.lstm_layers))
        self.g_emb = nn.Parameter(torch.empty(1, h))
        self.emb = nn.ModuleDict({k: nn.Embedding(n, h) for k, n in vocab.items()})
        self.soft = nn.ModuleDict({k: nn.Linear(h, n, bias=False) for k, n in vocab.items()})
        self.op_bias = nn.ParameterDict()
        self.fixed_bias: dict[str, torch.Tensor] = {}
        self.attn1 = nn.Linear(h, h, bias=False)
        self.attn2 = nn.Linear(h, h, bias=False)
        self.v_attn = nn.Linear(h, 1, bias=False)
        for p in self.parameters():
            nn.init.uniform_(p, -cfg.init_range, cfg.init_range)
        if cfg.op_bias == "official":
            for k, n in vocab.items():
                b = official_op_bias(k, n)
                if b is not None:
                    self.op_bias[k] = nn.Parameter(b[0].clone())
                    self.fixed_bias[k] = b[1]

    def _squash(self, logits, reduce: float = 1.0):
        if self.cfg.temperature > 0:
            logits = logits / self.cfg.temperature
        if self.cfg.tanh_constant > 0:
            logits = self.cfg.tanh_constant / reduce * torch.tanh(logits)
        return logits

    def _op_logits(self, vocab: str, h, first_cell: bool):
        """Op head as micro_controller.py: (h W + b) / T, (c / op_tanh_reduce) tanh, + fixed bias (normal cell)."""
        logits = self.soft[vocab](h)
        if vocab in self.op_bias:
            logits = logits + self.op_bias[vocab]
        logits = self._squash(logits, self.cfg.op_tanh_reduce)
        if first_cell and vocab in self.fixed_bias:
            logits = logits + self.fixed_bias[vocab]
        return logits

    def _step(self, x, state):
        new = []
        for cell, (h, c) in zip(self.lstm, state):
            h, c = cell(x, (h, c))
            new.append((h, c))
            x = h
        return x, new

    def run(self, batch: int, actions: torch.Tensor | None = None, generator=None, greedy=False):
        """Returns (actions (B, n) int64, log_prob (B,), entropy (B,), skip_kl (B,), skip_count (B,)).

        Also keeps ``self.trace``: the LSTM state at each ``reset`` and at the end, and the anchor
        values of each cell (for tests against the official sampler's structure).
        """
        cfg, hsz = self.cfg, self.cfg.lstm_size
        zeros = lambda: [(self.g_emb.new_zeros(batch, hsz), self.g_emb.new_zeros(batch, hsz))
                         for _ in self.lstm]
        state, x = zeros(), self.g_emb.expand(batch, hsz)
        anchors, anchors_w1 = [], []
        chosen, logp, ent = [], 0.0, 0.0
        skips = self.g_emb.new_zeros(batch)
        skip_scores = []
        col, cells = 0, 0
        self.trace = {"reset_state": [], "anchors": []}

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
            if d.kind == "reset":      # a new cell: fresh anchors; LSTM state carried (official) or zeroed
                if cells:
                    self.trace["anchors"].append(anchors)
                cells += 1
                if cfg.cell_state == "fresh":
                    state = zeros()
                self.trace["reset_state"].append([(h_.clone(), c_.clone()) for h_, c_ in state])
                x, anchors, anchors_w1 = self.g_emb.expand(batch, hsz), [], []
                continue
            h, state = self._step(x, state)
            if d.kind == "anchor":
                x = self.g_emb.expand(batch, hsz)
            elif d.kind == "op":
                a = pick(self._op_logits(d.vocab, h, cells <= 1))
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
                    skip_scores.append(two[..., 1])                             # squashed s
                    skips = skips + f.sum(1)
                    x = (f.unsqueeze(-1) * anc).sum(1) / (1.0 + f.sum(1, keepdim=True))
            elif d.kind == "skip":          # layer 0: nothing to connect to
                x = self.g_emb.expand(batch, hsz)
            if d.kind == "anchor" or d.anchor_after:
                zero_value = d.input_anchor and cfg.input_anchors == "zeros"
                anchors.append(torch.zeros_like(h) if zero_value else h)
                anchors_w1.append(self.attn1(h))
        self.trace["anchors"].append(anchors)
        self.trace["final_state"] = state
        skip_kl = skip_penalty(skip_scores, cfg.skip_target) if skip_scores else self.g_emb.new_zeros(batch)
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
