"""The two training objectives of the YouTube DNN (Covington, Adams, Sargin, RecSys 2016).

- ``weighted_logistic_loss``: ranking. Clicked impressions are positives weighted by their
  watch time, unclicked ones negatives of weight 1. The learned odds e^z then estimate
  sum(T) / (N - k) = E[T] / (1 - P(click)), i.e. about E[T] (1 + P(click)): close to the
  expected watch time per impression when clicks are rare, which is what ranking sorts by.
- ``sampled_softmax_loss``: candidate generation. Softmax over the catalogue, estimated from
  the positive and a few sampled negatives, each logit corrected by -log q (the sampling
  probability; Jean et al. 2015), sampled negatives that hit the positive masked out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_logistic_loss(logits: torch.Tensor, clicked: torch.Tensor, watch_time: torch.Tensor) -> torch.Tensor:
    """Mean over impressions of -T log sigmoid(z) (clicked) or -log(1 - sigmoid(z)) (not clicked)."""
    clicked = clicked.to(logits.dtype)
    pos = watch_time.to(logits.dtype) * clicked * F.logsigmoid(logits)
    neg = (1.0 - clicked) * F.logsigmoid(-logits)
    return -(pos + neg).mean()


def sampled_softmax_loss(user: torch.Tensor, item_emb: torch.Tensor, item_bias: torch.Tensor,
                         positives: torch.Tensor, negatives: torch.Tensor,
                         log_q_pos: torch.Tensor, log_q_neg: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the positive among [positive, negatives] with logit u.e_i + b_i - log q_i.

    user (B, D); item_emb (N, D); item_bias (N,); positives (B,); negatives (B, S);
    log_q_pos (B,) and log_q_neg (B, S): log probability that the sampler draws each item.
    """
    ids = torch.cat([positives[:, None], negatives], 1)                       # (B, 1 + S)
    logits = torch.einsum("bd,bsd->bs", user, item_emb[ids]) + item_bias[ids]
    logits = logits - torch.cat([log_q_pos[:, None], log_q_neg], 1)
    hit = torch.zeros_like(ids, dtype=torch.bool)
    hit[:, 1:] = negatives == positives[:, None]
    logits = logits.masked_fill(hit, float("-inf"))
    return F.cross_entropy(logits, torch.zeros(len(ids), dtype=torch.long, device=logits.device))
