"""Local error signals (Nokland & Eidnes, "Training Neural Networks with Local Error Signals",
ICML 2019; authors' code anokland/local-loss) as pure functions.

Each hidden layer k gets its own loss on its output h_k; its input is detached, so no gradient
reaches layer k-1 (the learner in agents/bandit_neural.py does the per-layer backward).

- pred: cross-entropy of a local linear classifier W_k on h_k (conv: on pooled h_k).
- sim: mean squared difference between the batch's adjusted-cosine similarity matrices of the
  layer's output (passed through one learned linear layer without bias, as in the authors'
  LocalLossBlockLinear) and of the one-hot targets (authors' `similarity_matrix`: each row
  centred, normalised, R = Xn Xn^T clamped to [-1, 1]; conv outputs reduced to the per-channel
  standard deviation over space).
- predsim: (1 - beta) pred + beta sim, beta = 0.99 in the paper.
- pred-bpf / predsim-bpf ("backprop free"): the targets are replaced by a fixed random
  projection P y of the one-hot y: pred uses binary cross-entropy of the local head against
  [P y > 0], sim uses the similarity matrix of P y and of h_k itself (no extra layer).

`LayerHeads` holds the local heads of one stand-alone network whose layers have arbitrary
shapes (the ENAS children in retraining, run/search.py); the ensemble MLP learners keep their
batched heads in agents/bandit_neural.py. Both pick the terms with `combine`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOCAL_LOSSES = ("none", "pred", "sim", "predsim", "pred-bpf", "predsim-bpf")


def similarity_matrix(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B, B) adjusted cosine similarity (authors' code). 4-d conv outputs with more
    than 3 channels and spatial size > 1 are reduced to the per-channel std over space first."""
    if x.dim() == 4:
        x = x.flatten(2).std(dim=2) if x.shape[1] > 3 and x.shape[2] > 1 else x.flatten(1)
    else:
        x = x.flatten(1)
    xc = x - x.mean(dim=1, keepdim=True)
    xn = xc / (1e-8 + xc.pow(2).sum(dim=1, keepdim=True).sqrt())
    return (xn @ xn.T).clamp(-1, 1)


def sim_loss(h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """mean (S(h) - S(targets))^2: zero when the two similarity matrices are equal."""
    return F.mse_loss(similarity_matrix(h), similarity_matrix(targets).detach())


def pred_loss(local_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the local linear classifier's logits against the labels."""
    return F.cross_entropy(local_logits, labels)


def pred_loss_bpf(local_logits: torch.Tensor, projected_targets: torch.Tensor) -> torch.Tensor:
    """Backprop-free pred: BCE of the local head against [P y > 0] (authors' `bio` variant)."""
    return F.binary_cross_entropy_with_logits(local_logits, (projected_targets > 0).float())


def predsim_loss(pred: torch.Tensor, sim: torch.Tensor, beta: float = 0.99) -> torch.Tensor:
    return (1 - beta) * pred + beta * sim


def combine(kind: str, beta: float, pred, sim) -> torch.Tensor:
    """The local loss of `kind` from zero-argument callables giving its pred and sim terms;
    only the terms `kind` uses are computed."""
    p = pred() if kind.startswith("pred") else None
    s = sim() if "sim" in kind else None
    if p is None:
        return s
    return p if s is None else predsim_loss(p, s, beta)


def pooled_size(c: int, h: int, w: int, max_features: int) -> tuple[int, int]:
    """Spatial size of a conv layer's pred input: halve H and W (rounding up) until C*H*W fits
    in max_features or the map is 1x1 (the authors' LocalLossBlockConv average pooling,
    `--dim-in-decoder`, default 2048)."""
    while c * h * w > max_features and (h > 1 or w > 1):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return h, w


class LayerHeads(nn.Module):
    """Local heads of one network's hidden layers, built from the layers' output shapes
    ((C, H, W) conv or (D,) dense): a local linear classifier on the output (conv: average-pooled
    to at most `max_features` features), for sim one learned layer without bias before the
    similarity matrix (conv 3x3 or linear, as the authors' blocks), and for -bpf a fixed random
    projection of the one-hot targets (a buffer, never trained)."""

    def __init__(self, shapes, n_classes: int, kind: str, beta: float = 0.99, proj: int = 128,
                 max_features: int = 2048):
        super().__init__()
        if kind not in LOCAL_LOSSES or kind == "none":
            raise ValueError(f"local loss kind must be one of {LOCAL_LOSSES[1:]}, got {kind!r}")
        self.kind, self.beta, self.n_classes = kind, beta, n_classes
        bpf = kind.endswith("-bpf")
        n_out = proj if bpf else n_classes
        self.pools, self.pred, self.sim = [], nn.ModuleList(), nn.ModuleList()
        for shape in shapes:
            if len(shape) == 3:
                size = pooled_size(*shape, max_features)
                self.pools.append(size)
                self.pred.append(nn.Linear(shape[0] * size[0] * size[1], n_out))
                self.sim.append(nn.Conv2d(shape[0], shape[0], 3, padding=1, bias=False)
                                if kind in ("sim", "predsim") else nn.Identity())
            else:
                self.pools.append(None)
                self.pred.append(nn.Linear(shape[0], n_out))
                self.sim.append(nn.Linear(shape[0], shape[0], bias=False)
                                if kind in ("sim", "predsim") else nn.Identity())
        bound = 1 / math.sqrt(n_classes)   # authors: nn.Linear(num_classes, target_proj_size) init
        self.register_buffer("proj", torch.empty(n_classes, proj).uniform_(-bound, bound) if bpf
                             else torch.zeros(0))

    def loss(self, k: int, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Layer k's local loss on its output h for integer labels y."""
        onehot = F.one_hot(y, self.n_classes).float()
        bpf = self.kind.endswith("-bpf")
        target = onehot @ self.proj if bpf else onehot

        def pred():
            z = h if self.pools[k] is None else F.adaptive_avg_pool2d(h, self.pools[k])
            logits = self.pred[k](z.flatten(1))
            return pred_loss_bpf(logits, target) if bpf else pred_loss(logits, y)

        return combine(self.kind, self.beta, pred, lambda: sim_loss(self.sim[k](h), target))
