"""Deep InfoMax bounds (Hjelm et al., "Learning deep representations by mutual information
estimation and maximization", ICLR 2019) as pure functions.

A critic scores pairs (global representation of input i, local feature of input j):
scores[i, j, n] = T(g_i, l_{j,n}) for local positions n. Pairs i == j are drawn from the joint
("positive"), pairs i != j from the product of marginals (negatives: other inputs in the batch).

- JSD (their eq. 4, the Jensen-Shannon MI estimator of f-GAN / MINE):
  I_JSD = E_joint[-softplus(-T)] - E_marginals[softplus(T)].
- InfoNCE (their eq. 5, van den Oord et al. 2018):
  I_NCE = E_{i,n}[ T_{i,i,n} - log sum_j exp T_{i,j,n} ] + log B  (a lower bound on MI, <= log B).

Both return the bound averaged over positions (the quantity to maximise); the auxiliary loss
is minus it. ST-DIM (Anand et al. 2019) uses InfoNCE with the global vector of frame t+1
against the local features of frame t (global-local) and local-local at the same position.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rewind.errors import RewindError

DIM_ESTIMATORS = ("jsd", "infonce")


def dim_scores(global_feat: torch.Tensor, local_feat: torch.Tensor) -> torch.Tensor:
    """Dot-product critic: (B, D) globals and (B, N, D) or (B, D) locals -> (B, B, N) scores."""
    if local_feat.dim() == 2:
        local_feat = local_feat.unsqueeze(1)
    return torch.einsum("id,jnd->ijn", global_feat, local_feat)


def jsd_bound(scores: torch.Tensor) -> torch.Tensor:
    """scores (B, B, N) -> E_pos[-softplus(-T)] - E_neg[softplus(T)]."""
    b = scores.shape[0]
    pos = torch.eye(b, dtype=torch.bool, device=scores.device)
    e_pos = -F.softplus(-scores[pos]).mean()
    e_neg = F.softplus(scores[~pos]).mean() if b > 1 else scores.new_zeros(())
    return e_pos - e_neg


def infonce_bound(scores: torch.Tensor) -> torch.Tensor:
    """scores (B, B, N) -> mean_{i,n} log softmax_j(T[i, :, n])[i] + log B."""
    b = scores.shape[0]
    logp = torch.log_softmax(scores, dim=1)                     # over the candidates j
    idx = torch.arange(b, device=scores.device)
    return logp[idx, idx].mean() + math.log(b)


def dim_bound(scores: torch.Tensor, estimator: str = "jsd") -> torch.Tensor:
    if estimator == "jsd":
        return jsd_bound(scores)
    if estimator == "infonce":
        return infonce_bound(scores)
    raise RewindError(f"DIM estimator must be one of {', '.join(DIM_ESTIMATORS)}, got {estimator!r}")
