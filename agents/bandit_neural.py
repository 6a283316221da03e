"""Neural contextual-bandit learners and a full-information reference learner.

All keep the history of (x, a, r) in a preallocated ring (``self.replay``) and take
``updates_per_step`` Adam steps per example on a minibatch that always holds the newest
example plus uniform draws from the history (Riquelme, Tucker, Snoek 2018 train neural
bandits on their whole history the same way).

- eps-greedy-neural: an MLP predicts every arm's reward; greedy with uniform exploration.
- bootstrap-ts: an ensemble of MLPs, each trained on a Poisson(1) (or Bernoulli) bootstrap
  of the history; each step acts greedily on one member drawn at random, i.e. Thompson
  sampling from the bootstrap posterior (Osband et al. 2016; the bake-off's "bag").
- softmax-pg: a softmax policy trained on-policy by REINFORCE with a moving-average baseline.
- supervised: the full-information learner; reads info["label"] (env full_feedback=true)
  and minimises cross-entropy (or a class-balanced loss) on the true class. A reference for
  what this MLP learns with full information, not an upper bound on bandit learners: on a
  short stream (wine, 178 examples, one pass) it loses to per-arm ridge regression
  (bench/results/bandit/pv_loss.md: 0.1225 vs 0.066-0.098), because the model class and its
  online fitting matter more there than the feedback.

Class-balanced weighting (``cb_beta`` > 0, Cui et al. 2019) uses the class counts seen so
far. The supervised learner knows them. A bandit learner only learns the class when its
choice was right, so it counts confirmed classes (count[a] += r) and weights the examples
whose reward says "a is the class" (r > 0) by w[a]; examples with r = 0 do not reveal the
class and keep weight 1. (Inverse-propensity counts, r / p(a), were tried and were worse:
one lucky exploratory hit at p = eps/K makes a rare class look common.) Measured on the
long-tail digits bandit this does not help the bandit learner (bench/studies/bandit_longtail.py);
it is offered as an option, off by default.

Training recipe (He et al. 2019, agents/recipes.py; keys and deviations in
docs/training_methods.md): lr warmup and cosine decay per optimizer step (``lr_schedule``,
``lr_warmup_steps``, ``lr_decay_steps``), L2 weight decay with ``no_bias_decay``, label smoothing
and mixup. Bandit learners see only the chosen arm's reward r in {0, 1}: label smoothing there is
the paper's formula with K = 2 (target 1 - eps or eps), and mixup mixes the contexts and takes
lam * loss(arm_i, r_i) + (1 - lam) * loss(arm_j, r_j) on the mixed context (for a loss linear in
its target, as softmax CE, this equals mixing the targets). ``zero_gamma`` is refused: these MLP
bodies have no BatchNorm and no residual blocks.

Local error signals (Nokland & Eidnes 2019, agents/local_loss.py): ``local_loss`` trains each
hidden layer by its own loss on a detached input; each layer's loss is backpropagated during the
forward pass (its graph freed before the next layer runs), and one Adam step then updates all
layers, which for a per-parameter optimizer is the same update as one optimizer per layer. The
supervised learner takes every kind; bandit learners only ``pred`` (a local head predicting the
chosen arm's reward with the learner's own loss): ``sim`` and ``-bpf`` need the class label.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rewind.agents.bandit import BanditAgent
from rewind.agents.class_balanced import LOSS_KINDS, class_balanced_loss, effective_number_weights
from rewind.agents.infomax import DIM_ESTIMATORS, dim_bound, dim_scores
from rewind.agents.local_loss import LOCAL_LOSSES, combine, pred_loss_bpf, sim_loss
from rewind.agents.recipes import (decay_groups, mixup_lambda, scheduled_lr, set_lr, smooth_labels,
                                   soft_cross_entropy, validate_schedule)
from rewind.errors import RewindError


class History:
    """Ring of (x, a, r, label, bootstrap weights); the agent's replay memory."""

    def __init__(self, capacity: int, dim: int, n_heads: int = 0):
        self.x = np.zeros((capacity, dim), dtype=np.float32)
        self.a = np.zeros(capacity, dtype=np.int64)
        self.r = np.zeros(capacity, dtype=np.float32)
        self.label = np.zeros(capacity, dtype=np.int64)
        self.w = np.zeros((capacity, n_heads), dtype=np.float32)
        self.capacity, self.size, self.pos = capacity, 0, 0

    def add(self, x, a, r, label=0, w=None) -> int:
        i = self.pos
        self.x[i], self.a[i], self.r[i], self.label[i] = x, a, r, label
        if w is not None:
            self.w[i] = w
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        return i

    def batch_indices(self, newest: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """The newest example plus batch_size - 1 uniform draws from the history."""
        if self.size <= 1 or batch_size <= 1:
            return np.array([newest])
        return np.concatenate(([newest], rng.integers(0, self.size, batch_size - 1)))

    def state_dict(self) -> dict:
        n = self.size
        return {"x": self.x[:n].copy(), "a": self.a[:n].copy(), "r": self.r[:n].copy(),
                "label": self.label[:n].copy(), "w": self.w[:n].copy(), "pos": self.pos}

    def load_state_dict(self, s: dict) -> None:
        n = len(s["a"])
        self.x[:n], self.a[:n], self.r[:n], self.label[:n], self.w[:n] = s["x"], s["a"], s["r"], s["label"], s["w"]
        self.size, self.pos = n, int(s["pos"])


class EnsembleMLP(nn.Module):
    """E independent MLPs evaluated in one batched matmul per layer (E = 1: a plain MLP)."""

    def __init__(self, n_in: int, hidden: tuple[int, ...], n_out: int, members: int = 1):
        super().__init__()
        sizes = [n_in, *hidden, n_out]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)   # nn.Linear's default init range
            self.weights.append(nn.Parameter(torch.empty(members, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(members, 1, fan_out).uniform_(-bound, bound)))

    def forward(self, x: torch.Tensor, hidden: list | None = None) -> torch.Tensor:
        """x: (B, n_in) -> (E, B, n_out); appends each hidden layer's output to `hidden` if given."""
        weights, biases = list(self.weights), list(self.biases)   # one lookup, not one per layer
        h = x.unsqueeze(0).expand(weights[0].shape[0], -1, -1)
        last = len(weights) - 1
        for i, (w, b) in enumerate(zip(weights, biases)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = torch.relu(h)
                if hidden is not None:
                    hidden.append(h)
        return h


class LocalHeads(nn.Module):
    """Per hidden layer of an EnsembleMLP: a local linear classifier (pred), a linear layer
    without bias before the similarity matrix (sim), and for -bpf a fixed random projection of
    the one-hot targets (a buffer, never trained). Batched over the E ensemble members."""

    def __init__(self, hidden: tuple[int, ...], n_classes: int, members: int, kind: str, proj: int):
        super().__init__()
        bpf = kind.endswith("-bpf")
        n_out = proj if bpf else n_classes
        self.pred_w, self.pred_b, self.sim_w = nn.ParameterList(), nn.ParameterList(), nn.ParameterList()
        for h in hidden:
            bound = 1.0 / math.sqrt(h)
            self.pred_w.append(nn.Parameter(torch.empty(members, h, n_out).uniform_(-bound, bound)))
            self.pred_b.append(nn.Parameter(torch.empty(members, 1, n_out).uniform_(-bound, bound)))
            if kind in ("sim", "predsim"):   # -bpf: sim on h itself (authors' bio variant)
                self.sim_w.append(nn.Parameter(torch.empty(members, h, h).uniform_(-bound, bound)))
        # fixed random target projection (authors: nn.Linear(num_classes, target_proj_size) init)
        self.register_buffer("proj", torch.empty(n_classes, proj).uniform_(-1 / math.sqrt(n_classes),
                                                                           1 / math.sqrt(n_classes)) if bpf
                             else torch.zeros(0))

    def pred(self, k: int, h: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.pred_b[k], h, self.pred_w[k])


@dataclasses.dataclass
class NeuralConfig:
    hidden: tuple[int, ...] = (64,)
    lr: float = 1e-3
    batch_size: int = 32
    updates_per_step: int = 1
    buffer_size: int = 100_000
    cb_beta: float = 0.0        # class-balanced weights (Cui et al. 2019); 0 = plain loss
    cb_loss: str = "sigmoid"    # bandit learners: "sigmoid" (BCE on the chosen arm) or "focal"
    focal_gamma: float = 2.0
    # training recipe (He et al. 2019; agents/recipes.py)
    lr_schedule: str = "constant"   # constant | cosine (per optimizer step)
    lr_warmup_steps: int = 0        # linear warmup over this many optimizer steps
    lr_decay_steps: int = 0         # T of the cosine (steps after the warmup); cosine only
    weight_decay: float = 0.0       # L2 (torch Adam's coupled weight_decay)
    no_bias_decay: bool = False     # no weight decay on biases (and 1-d parameters)
    zero_gamma: bool = False        # refused: no BatchNorm / residual blocks in these bodies
    label_smoothing: float = 0.0    # eps of He et al. eq. 3
    mixup_alpha: float = 0.0        # lam ~ Beta(alpha, alpha); 0 = off (paper: 0.2)
    # local error signals (Nokland & Eidnes 2019; agents/local_loss.py)
    local_loss: str = "none"        # none | pred | sim | predsim | pred-bpf | predsim-bpf
    local_beta: float = 0.99        # predsim weight of sim
    local_proj: int = 128           # -bpf: size of the fixed random target projection
    # Deep InfoMax auxiliary loss (Hjelm et al. 2019; agents/infomax.py)
    aux_loss: str = "none"          # none | dim
    aux_weight: float = 0.1         # loss += aux_weight * (-bound)
    dim_estimator: str = "jsd"      # jsd | infonce

    _loss_kinds = ("sigmoid", "focal")   # class attribute, not a field: kinds this learner supports
    _local_kinds = ("none", "pred")      # bandit learners: sim and -bpf need the class label

    def validate(self):
        if any(h < 1 for h in self.hidden):
            raise RewindError(f"agent.hidden sizes must be >= 1, got {list(self.hidden)}")
        if self.lr <= 0 or self.batch_size < 1 or self.updates_per_step < 0 or self.buffer_size < 1:
            raise RewindError("agent.lr must be > 0, batch_size and buffer_size >= 1, updates_per_step >= 0")
        if not 0.0 <= self.cb_beta < 1.0:
            raise RewindError(f"agent.cb_beta must be in [0, 1) (0 = no class balancing), got {self.cb_beta}")
        if self.cb_loss not in self._loss_kinds:
            raise RewindError(f"agent.cb_loss must be one of {', '.join(self._loss_kinds)}, got {self.cb_loss!r}")
        validate_schedule(self)
        if self.weight_decay < 0:
            raise RewindError(f"agent.weight_decay must be >= 0, got {self.weight_decay}")
        if self.no_bias_decay and self.weight_decay == 0:
            raise RewindError("agent.no_bias_decay needs agent.weight_decay > 0 (nothing is decayed otherwise)")
        if self.zero_gamma:
            raise RewindError("agent.zero_gamma: this learner's MLP body has no BatchNorm in residual blocks")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise RewindError(f"agent.label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.mixup_alpha < 0:
            raise RewindError(f"agent.mixup_alpha must be >= 0 (0 = off), got {self.mixup_alpha}")
        if self.local_loss not in self._local_kinds:
            extra = "" if self.local_loss not in LOCAL_LOSSES else " for this learner (sim and -bpf need class labels)"
            raise RewindError(f"agent.local_loss must be one of {', '.join(self._local_kinds)}{extra}, "
                              f"got {self.local_loss!r}")
        if self.local_loss != "none" and self.mixup_alpha > 0:
            raise RewindError("agent.local_loss with agent.mixup_alpha > 0 is not supported (mixed targets for local losses)")
        if not self.local_loss.startswith("predsim") and self.local_beta != 0.99:
            raise RewindError(f"agent.local_beta={self.local_beta} applies only with local_loss predsim or predsim-bpf")
        if not 0.0 <= self.local_beta <= 1.0:
            raise RewindError(f"agent.local_beta must be in [0, 1], got {self.local_beta}")
        if not self.local_loss.endswith("-bpf") and self.local_proj != 128:
            raise RewindError(f"agent.local_proj={self.local_proj} applies only with a -bpf local_loss")
        if self.local_proj < 1:
            raise RewindError(f"agent.local_proj must be >= 1, got {self.local_proj}")
        if self.aux_loss not in ("none", "dim"):
            raise RewindError(f"agent.aux_loss must be none or dim, got {self.aux_loss!r}")
        if self.aux_loss == "dim":
            if len(self.hidden) < 2:
                raise RewindError("agent.aux_loss=dim needs >= 2 hidden layers (local: the first, global: the last)")
            if self.local_loss != "none":
                raise RewindError("agent.aux_loss=dim with a local_loss is not supported")
            if self.dim_estimator not in DIM_ESTIMATORS:
                raise RewindError(f"agent.dim_estimator must be one of {', '.join(DIM_ESTIMATORS)}, got {self.dim_estimator!r}")
        elif self.aux_weight != 0.1:
            raise RewindError(f"agent.aux_weight={self.aux_weight} applies only with agent.aux_loss=dim")


class _NeuralBandit(BanditAgent):
    members = 1

    def __init__(self, observation_space, action_space, config=None, *, seed=0, frame_stack=1):
        super().__init__(observation_space, action_space, config, seed=seed, frame_stack=frame_stack)
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = EnsembleMLP(self.dim, tuple(cfg.hidden), self.n_arms, self._members())
            self.local = (LocalHeads(tuple(cfg.hidden), self.n_arms, self._members(), cfg.local_loss, cfg.local_proj)
                          if cfg.local_loss != "none" else None)
            # DIM critic: bilinear T(g, l) = g^T W l between the last and the first hidden layer
            self.critic = (nn.Parameter(torch.randn(self._members(), cfg.hidden[-1], cfg.hidden[0])
                                        / math.sqrt(cfg.hidden[0])) if cfg.aux_loss == "dim" else None)
        params = list(self.net.named_parameters())
        if self.critic is not None:
            params.append(("critic", self.critic))
        if self.local is not None:
            params += [("local." + n, p) for n, p in self.local.named_parameters()]
        self.opt = torch.optim.Adam(decay_groups(params, cfg.weight_decay, cfg.no_bias_decay), lr=cfg.lr, foreach=True)
        self.updates = 0   # optimizer steps: the lr schedule's clock
        self.replay = History(cfg.buffer_size, self.dim, self._members())
        self.counts = np.zeros(self.n_arms)   # (estimated) class counts for class balancing

    def _members(self) -> int:
        return 1

    @torch.inference_mode()
    def _predict(self, obs) -> torch.Tensor:
        return self.net(torch.from_numpy(self._context(obs)).unsqueeze(0))[:, 0]   # (E, K)

    def _class_weights(self) -> torch.Tensor | None:
        if self.config.cb_beta == 0.0:
            return None
        return torch.as_tensor(effective_number_weights(self.counts, self.config.cb_beta), dtype=torch.float32)

    def _step(self, x: torch.Tensor, out_loss, layer_loss=None) -> float:
        """One optimizer step at the scheduled lr. out_loss(logits (E, B, K)) -> scalar; with a
        local loss, layer_loss(k, h_k (E, B, H_k)) -> scalar trains hidden layer k on a detached
        input and the output layer sees the last hidden layer detached."""
        cfg = self.config
        set_lr(self.opt, scheduled_lr(self.updates, cfg.lr, cfg.lr_warmup_steps, cfg.lr_schedule, cfg.lr_decay_steps))
        self.opt.zero_grad(set_to_none=True)
        if cfg.local_loss == "none" and cfg.aux_loss == "dim":
            hidden: list = []
            loss = out_loss(self.net(x, hidden))
            bound = torch.stack([dim_bound(dim_scores(g @ w, l), cfg.dim_estimator)
                                 for g, l, w in zip(hidden[-1], hidden[0], self.critic)]).mean()
            (loss - cfg.aux_weight * bound).backward()
            self.last_bound = bound.item()
        elif cfg.local_loss == "none":
            loss = out_loss(self.net(x))
            loss.backward()
        else:
            weights, biases = list(self.net.weights), list(self.net.biases)
            h = x.unsqueeze(0).expand(weights[0].shape[0], -1, -1)
            for k in range(len(weights) - 1):
                h = torch.relu(torch.baddbmm(biases[k], h.detach(), weights[k]))
                layer_loss(k, h).backward()   # frees layer k's graph; nothing reaches layer k-1
            loss = out_loss(torch.baddbmm(biases[-1], h.detach(), weights[-1]))
            loss.backward()
        self.opt.step()
        self.updates += 1
        return loss.item()

    def _chosen_arm_loss(self, logits, a, r, sample_w):
        """Loss of the chosen arm's predicted reward; logits (E, B, K), sample_w (E, B)."""
        z = logits.gather(2, a.expand(logits.shape[0], -1).unsqueeze(2)).squeeze(2)
        eps = self.config.label_smoothing          # He et al. eq. 3 with K = 2: 1 - eps or eps
        target = (r * (1 - 2 * eps) + eps).expand_as(z)
        loss = F.binary_cross_entropy_with_logits(z, target, reduction="none")
        if self.config.cb_loss == "focal":
            p = torch.sigmoid(z)
            pt = p * target + (1 - p) * (1 - target)
            loss = (1 - pt).pow(self.config.focal_gamma) * loss
        return (loss * sample_w).sum() / sample_w.shape[1] / sample_w.shape[0]

    def _train(self, newest: int) -> dict[str, float]:
        loss_val = 0.0
        w_cls = self._class_weights()
        for _ in range(self.config.updates_per_step):
            idx = self.replay.batch_indices(newest, self.config.batch_size, self.rng)
            x = torch.from_numpy(self.replay.x[idx])
            a = torch.from_numpy(self.replay.a[idx]).unsqueeze(0)
            r = torch.from_numpy(self.replay.r[idx]).unsqueeze(0)
            sw = torch.from_numpy(self.replay.w[idx].T) if self._members() > 1 else torch.ones(1, len(idx))
            if w_cls is not None:
                sw = sw * torch.where(r > 0, w_cls[a], torch.ones_like(r))
            lam = mixup_lambda(self.config.mixup_alpha, self.rng)
            if lam < 1.0:
                perm = torch.from_numpy(self.rng.permutation(len(idx)))
                x = lam * x + (1 - lam) * x[perm]

                def out_loss(z, a=a, r=r, sw=sw, perm=perm, lam=lam):
                    return (lam * self._chosen_arm_loss(z, a, r, sw)
                            + (1 - lam) * self._chosen_arm_loss(z, a[:, perm], r[:, perm], sw[:, perm]))
            else:
                def out_loss(z, a=a, r=r, sw=sw):
                    return self._chosen_arm_loss(z, a, r, sw)

            def layer_loss(k, h, a=a, r=r, sw=sw):   # local pred: the learner's own loss from layer k
                return self._chosen_arm_loss(self.local.pred(k, h), a, r, sw)

            loss_val = self._step(x, out_loss, layer_loss)
        return {"loss": loss_val, "lr": self.opt.param_groups[0]["lr"]}

    def _learn(self, x, a, r, p, label):
        if r > 0:
            self.counts[a] += r
        i = self.replay.add(x, a, r, 0, self._bootstrap_weights())
        return self._train(i)

    def _bootstrap_weights(self):
        return None

    def state_dict(self) -> dict:
        return {**self._base_state(), "net": self.net.state_dict(), "opt": self.opt.state_dict(),
                "counts": self.counts.copy(), "updates": self.updates,
                "local": None if self.local is None else self.local.state_dict(),
                "critic": None if self.critic is None else self.critic.detach().clone()}

    def load_state_dict(self, state: dict) -> None:
        self._load_base(state)
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.counts = np.array(state["counts"], dtype=np.float64)
        self.updates = int(state.get("updates", 0))
        if self.local is not None:
            self.local.load_state_dict(state["local"])
        if self.critic is not None:
            with torch.no_grad():
                self.critic.copy_(state["critic"])


class EpsGreedyNeuralAgent(_NeuralBandit):
    """An MLP predicts each arm's reward (sigmoid outputs); greedy plus epsilon-uniform."""

    @dataclasses.dataclass
    class Config(NeuralConfig):
        epsilon: float = 0.05

        def validate(self):
            super().validate()
            if not 0.0 <= self.epsilon <= 1.0:
                raise RewindError(f"agent.epsilon must be in [0, 1], got {self.epsilon}")

    def act(self, obs, explore: bool = True):
        q = self._predict(obs)[0].numpy()
        greedy = int(np.argmax(q))
        eps = self.config.epsilon if explore else 0.0
        a = int(self.rng.integers(self.n_arms)) if self.rng.random() < eps else greedy
        self._last_prob = eps / self.n_arms + (1.0 - eps) * (a == greedy)
        return a


class BootstrapTSAgent(_NeuralBandit):
    """Thompson sampling from a bootstrapped ensemble: act greedily on one random member."""

    @dataclasses.dataclass
    class Config(NeuralConfig):
        ensemble: int = 5             # VW's --bag 5 in the comparison
        bootstrap: str = "poisson"    # online bootstrap weights: Poisson(1) (Oza 2005) or Bernoulli(0.5)

        def validate(self):
            super().validate()
            if self.ensemble < 1:
                raise RewindError(f"agent.ensemble must be >= 1, got {self.ensemble}")
            if self.bootstrap not in ("poisson", "bernoulli"):
                raise RewindError(f"agent.bootstrap must be 'poisson' or 'bernoulli', got {self.bootstrap!r}")

    def _members(self) -> int:
        return self.config.ensemble

    def _bootstrap_weights(self):
        e = self.config.ensemble
        if self.config.bootstrap == "poisson":
            return self.rng.poisson(1.0, e).astype(np.float32)
        return (self.rng.random(e) < 0.5).astype(np.float32) * 2.0

    def act(self, obs, explore: bool = True):
        q = torch.sigmoid(self._predict(obs)).numpy()     # (E, K)
        if not explore:
            self._last_prob = 1.0
            return int(np.argmax(q.mean(0)))
        votes = np.argmax(q, axis=1)
        a = int(votes[self.rng.integers(len(votes))])
        self._last_prob = float(np.mean(votes == a))
        return a


class SoftmaxPGAgent(BanditAgent):
    """Softmax policy pi(a|x) trained on-policy by REINFORCE: grad (r - b) log pi(a|x) + entropy."""

    @dataclasses.dataclass
    class Config:
        hidden: tuple[int, ...] = (64,)
        lr: float = 3e-3
        baseline_decay: float = 0.99   # moving-average baseline b
        entropy_coef: float = 0.0

        def validate(self):
            if self.lr <= 0 or not 0.0 <= self.baseline_decay < 1.0 or self.entropy_coef < 0:
                raise RewindError("agent.lr must be > 0, baseline_decay in [0, 1), entropy_coef >= 0")

    def __init__(self, observation_space, action_space, config=None, *, seed=0, frame_stack=1):
        super().__init__(observation_space, action_space, config, seed=seed, frame_stack=frame_stack)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = EnsembleMLP(self.dim, tuple(self.config.hidden), self.n_arms, 1)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.config.lr, foreach=True)
        self.baseline = 0.0

    def act(self, obs, explore: bool = True):
        with torch.no_grad():
            logits = self.net(torch.from_numpy(self._context(obs)).unsqueeze(0))[0, 0]
        if not explore:
            self._last_prob = 1.0
            return int(torch.argmax(logits))
        p = torch.softmax(logits.double(), 0).numpy()
        a = int(self.rng.choice(self.n_arms, p=p / p.sum()))
        self._last_prob = float(p[a])
        return a

    def _learn(self, x, a, r, p, label):
        logits = self.net(torch.from_numpy(x).unsqueeze(0))[0, 0]
        logp = torch.log_softmax(logits, 0)
        adv = r - self.baseline
        loss = -adv * logp[a]
        if self.config.entropy_coef:
            loss = loss + self.config.entropy_coef * (logp.exp() * logp).sum()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.baseline = self.config.baseline_decay * self.baseline + (1 - self.config.baseline_decay) * r
        return {"loss": loss.item(), "baseline": self.baseline}

    def state_dict(self) -> dict:
        return {**self._base_state(), "net": self.net.state_dict(), "opt": self.opt.state_dict(),
                "baseline": self.baseline}

    def load_state_dict(self, state: dict) -> None:
        self._load_base(state)
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.baseline = float(state["baseline"])


class SupervisedAgent(_NeuralBandit):
    """Full information: learns from the true label (env full_feedback=true), acts greedily."""

    uses_label = True

    @dataclasses.dataclass
    class Config(NeuralConfig):
        cb_loss: str = "softmax"    # "softmax" CE, "sigmoid" one-vs-all BCE, or "focal"

        _loss_kinds = LOSS_KINDS
        _local_kinds = LOCAL_LOSSES

        def validate(self):
            super().validate()
            if (self.label_smoothing > 0 or self.mixup_alpha > 0) and self.cb_loss != "softmax":
                raise RewindError(f"agent.label_smoothing and agent.mixup_alpha need cb_loss=softmax, got {self.cb_loss!r}")

    def act(self, obs, explore: bool = True):
        self._last_prob = 1.0
        return int(torch.argmax(self._predict(obs)[0]))

    def _learn(self, x, a, r, p, label):
        label = int(label)
        if not 0 <= label < self.n_arms:
            raise RewindError(f"label {label} outside the {self.n_arms} arms: dataset and action space disagree")
        self.counts[label] += 1
        i = self.replay.add(x, a, r, label)
        loss_val = 0.0
        for _ in range(self.config.updates_per_step):
            idx = self.replay.batch_indices(i, self.config.batch_size, self.rng)
            loss_val = self._supervised_step(torch.from_numpy(self.replay.x[idx]),
                                             torch.from_numpy(self.replay.label[idx]))
        return {"loss": loss_val, "lr": self.opt.param_groups[0]["lr"]}

    def fit_batch(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One optimizer step on a labelled minibatch, outside the bandit stream (epoch-based
        training, e.g. bench/studies/training_methods.py); the same recipe and local losses."""
        return self._supervised_step(x.float().flatten(1), y.long())

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted classes of a batch of contexts."""
        return self.net(x.float().flatten(1))[0].argmax(1)

    def _supervised_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One step on (x, y) with the recipe (smoothing, mixup) and the local losses, if set."""
        cfg = self.config
        w_cls = self._class_weights()
        lam = mixup_lambda(cfg.mixup_alpha, self.rng)
        if cfg.label_smoothing == 0 and lam == 1.0:
            def out_loss(z):
                return class_balanced_loss(z[0], y, w_cls, cfg.cb_loss, cfg.focal_gamma)
        else:   # softmax CE against smoothed (and mixed) targets
            q = smooth_labels(y, self.n_arms, cfg.label_smoothing)
            w = torch.ones(len(y)) if w_cls is None else w_cls[y]
            if lam < 1.0:
                perm = torch.from_numpy(self.rng.permutation(len(y)))
                x, q, w = lam * x + (1 - lam) * x[perm], lam * q + (1 - lam) * q[perm], lam * w + (1 - lam) * w[perm]

            def out_loss(z):
                return (soft_cross_entropy(z[0], q) * w).mean()

        kind = cfg.local_loss
        if kind == "none":
            return self._step(x, out_loss)
        onehot = F.one_hot(y, self.n_arms).float()
        target = onehot @ self.local.proj if kind.endswith("-bpf") else onehot

        def layer_loss(k, h):   # the supervised learner is one member: h (1, B, H_k)
            def pred():
                logits = self.local.pred(k, h)[0]
                return (pred_loss_bpf(logits, target) if kind.endswith("-bpf")
                        else class_balanced_loss(logits, y, w_cls, "softmax"))

            def sim():
                hs = h[0] if kind.endswith("-bpf") else torch.bmm(h, self.local.sim_w[k])[0]
                return sim_loss(hs, target)
            return combine(kind, cfg.local_beta, pred, sim)

        return self._step(x, out_loss, layer_loss)
