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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
