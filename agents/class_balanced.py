"""Class-balanced loss (Cui, Jia, Lin, Song, Belongie, CVPR 2019) for long-tailed data.

A class seen n times has "effective number" E_n = (1 - beta**n) / (1 - beta); its examples
are weighted by 1 / E_n, normalised so the C weights sum to C. beta = 0 gives plain
(unweighted) losses; beta -> 1 approaches inverse class frequency. The weight of an
example's true class multiplies its whole softmax, sigmoid or focal loss, as in the paper.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rewind.errors import RewindError

LOSS_KINDS = ("softmax", "sigmoid", "focal")


def effective_number_weights(counts, beta: float) -> np.ndarray:
    """Per-class weights (1 - beta) / (1 - beta**n_c), normalised to sum to the number of classes.

    Counts below 1 (classes not seen yet in an online run) are treated as 1.
    """
    if not 0.0 <= beta < 1.0:
        raise RewindError(f"class-balanced beta must be in [0, 1), got {beta}")
    n = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    if beta == 0.0:
        return np.ones_like(n)
    w = (1.0 - beta) / (1.0 - np.power(beta, n))
    return w * (len(n) / w.sum())


def class_balanced_loss(logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None,
                        kind: str = "softmax", gamma: float = 2.0) -> torch.Tensor:
    """Mean over the batch of w[y] * loss(logits, y); `kind` is softmax CE, sigmoid BCE or focal."""
    if kind == "softmax":
        per = F.cross_entropy(logits, labels, reduction="none")
    else:
        onehot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
        if kind == "focal":
            p = torch.sigmoid(logits)
            pt = p * onehot + (1 - p) * (1 - onehot)
            bce = (1 - pt).pow(gamma) * bce
        elif kind != "sigmoid":
            raise RewindError(f"class-balanced loss kind must be one of {', '.join(LOSS_KINDS)}, got {kind!r}")
        per = bce.sum(1)
    if class_weights is not None:
        per = per * class_weights[labels]
    return per.mean()
