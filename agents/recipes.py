"""Training-recipe tricks of He et al., "Bag of Tricks for Image Classification with
Convolutional Neural Networks" (CVPR 2019), as pure functions.

- Learning-rate warmup (section 3.1): for the first m batches the lr grows linearly,
  eta_i = i * eta / m for batch i = 1..m.
- Cosine decay (section 5.1): eta_t = 1/2 (1 + cos(t pi / T)) eta, t counting batches after
  the warmup and T the number of batches after it ("ignoring the warmup stage"); eta_t = 0
  for t >= T.
- No bias decay (section 3.1): the L2 weight decay applies to the weights of convolutional
  and fully-connected layers only; biases and BatchNorm gamma/beta are not decayed.
- Zero gamma (section 3.1): gamma of the last BatchNorm of each residual block starts at 0.
- Label smoothing (section 5.2, eq. 3/4): q_i = 1 - eps if i = y, eps / (K - 1) otherwise.
  (torch's CrossEntropyLoss(label_smoothing=eps) uses 1 - eps + eps/K and eps/K instead;
  the paper's form is used here.)
- Mixup (section 5.3): x = lam x_i + (1 - lam) x_j, y = lam y_i + (1 - lam) y_j with
  lam ~ Beta(alpha, alpha); alpha = 0.2 in the paper.

Which learners honour which setting, and the config keys, are in docs/training_methods.md.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from rewind.errors import RewindError

LR_SCHEDULES = ("constant", "cosine")


def scheduled_lr(step: int, base_lr: float, warmup_steps: int = 0, schedule: str = "constant",
                 decay_steps: int = 0) -> float:
    """The lr of optimizer step `step` (0-based: the first step is batch i = 1 of the warmup).

    warmup: step < warmup_steps gives (step + 1) / warmup_steps * base_lr.
    cosine: with t = step - warmup_steps, 0.5 (1 + cos(pi t / decay_steps)) * base_lr, 0 once
    t >= decay_steps. constant: base_lr after the warmup.
    """
    if schedule not in LR_SCHEDULES:
        raise RewindError(f"lr schedule must be one of {', '.join(LR_SCHEDULES)}, got {schedule!r}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps * base_lr
    if schedule == "constant":
        return base_lr
    if decay_steps < 1:
        raise RewindError(f"a cosine lr schedule needs lr_decay_steps >= 1, got {decay_steps}")
    t = step - warmup_steps
    if t >= decay_steps:
        return 0.0
    return 0.5 * (1.0 + math.cos(math.pi * t / decay_steps)) * base_lr


def set_lr(optimizer, lr: float) -> None:
    """Set every param group's lr; wrappers holding the optimizer as `.inner` (transfer's
    MaskedOptimizer) are unwrapped."""
    while not hasattr(optimizer, "param_groups") and hasattr(optimizer, "inner"):
        optimizer = optimizer.inner
    for group in optimizer.param_groups:
        group["lr"] = lr


def validate_schedule(cfg) -> None:
    """One-line refusals for the lr-schedule keys of any agent Config that has them."""
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise RewindError(f"agent.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {cfg.lr_schedule!r}")
    if cfg.lr_warmup_steps < 0:
        raise RewindError(f"agent.lr_warmup_steps must be >= 0, got {cfg.lr_warmup_steps}")
    if cfg.lr_schedule == "cosine" and cfg.lr_decay_steps < 1:
        raise RewindError("agent.lr_schedule=cosine needs agent.lr_decay_steps >= 1 (the T of the cosine)")
    if cfg.lr_schedule == "constant" and cfg.lr_decay_steps != 0:
        raise RewindError(f"agent.lr_decay_steps={cfg.lr_decay_steps} applies only with agent.lr_schedule=cosine")


def smooth_labels(labels: torch.Tensor, n_classes: int, eps: float) -> torch.Tensor:
    """(B,) int labels -> (B, K) targets: 1 - eps on the label, eps / (K - 1) elsewhere (He et al. eq. 3)."""
    if n_classes < 2:
        raise RewindError(f"label smoothing needs at least 2 classes, got {n_classes}")
    q = torch.full((len(labels), n_classes), eps / (n_classes - 1))
    q.scatter_(1, labels.view(-1, 1).long(), 1.0 - eps)
    return q


def soft_cross_entropy(logits: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy -sum_i q_i log softmax(z)_i; logits (..., K), q broadcastable."""
    return -(q * torch.log_softmax(logits, dim=-1)).sum(-1)


def mixup(x: torch.Tensor, y: torch.Tensor, lam: float, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """lam * (x, y) + (1 - lam) * (x[perm], y[perm]) (He et al. section 5.3; Zhang et al. 2018)."""
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]


def mixup_lambda(alpha: float, rng: np.random.Generator) -> float:
    """lam ~ Beta(alpha, alpha); alpha = 0 means no mixup (lam = 1)."""
    return 1.0 if alpha <= 0 else float(rng.beta(alpha, alpha))


def decay_groups(named_params, weight_decay: float, no_bias_decay: bool) -> list[dict]:
    """Optimizer parameter groups: with no_bias_decay, 1-d parameters (biases, BatchNorm gamma and
    beta) and parameters named '*bias*' go to a group without weight decay."""
    decay, no_decay = [], []
    for name, p in named_params:
        if not p.requires_grad:
            continue
        (no_decay if no_bias_decay and (p.ndim <= 1 or "bias" in name) else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def zero_last_bn_gamma(blocks) -> int:
    """Zero the gamma of the last BatchNorm in each residual block of `blocks` (modules);
    returns how many were zeroed. A block without BatchNorm is an error: the trick has no target."""
    n = 0
    for block in blocks:
        bns = [m for m in block.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not bns:
            raise RewindError(f"zero_gamma: residual block {type(block).__name__} has no BatchNorm")
        nn.init.zeros_(bns[-1].weight)
        n += 1
    return n
