"""Weighted logistic regression's odds estimate watch time; sampled softmax matches its definition."""

import math

import numpy as np
import pytest
import torch

from rewind.agents.recsys_losses import sampled_softmax_loss, weighted_logistic_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_weighted_lr_odds_approximate_expected_watch_time():
    rng = np.random.default_rng(0)
    p_click = np.array([0.02, 0.05, 0.10, 0.20])       # per group
    watch = np.array([10.0, 3.0, 6.0, 1.5])             # E[T | click] per group
    n = 200_000
    g = rng.integers(0, 4, n)
    clicked = rng.random(n) < p_click[g]
    t = np.where(clicked, rng.gamma(2.0, watch[g] / 2.0), 0.0)
    logits = torch.zeros(4, requires_grad=True, dtype=torch.float64)   # one logit per group (one-hot LR)
    opt = torch.optim.LBFGS([logits], max_iter=200, line_search_fn="strong_wolfe")
    gt, ct, tt = torch.as_tensor(g), torch.as_tensor(clicked), torch.as_tensor(t)

    def closure():
        opt.zero_grad()
        loss = weighted_logistic_loss(logits[gt], ct, tt)
        loss.backward()
        return loss

    opt.step(closure)
    odds = torch.exp(logits).detach().numpy()
    expected_t = p_click * watch                        # E[T] per impression
    # the fixed point is sum T / #negatives = E[T] / (1 - P): within 8% (sampling noise) of that,
    # and within P + 8% of E[T] itself, the paper's "approximately the expected watch time"
    for k in range(4):
        emp = t[g == k].sum() / (~clicked[g == k]).sum()
        assert abs(odds[k] / emp - 1) < 1e-3
        assert abs(odds[k] / (expected_t[k] / (1 - p_click[k])) - 1) < 0.08
        assert abs(odds[k] / expected_t[k] - 1) < p_click[k] + 0.08
    # a plain click LR's odds are P / (1 - P): they ignore watch time and rank group 3 first
    assert int(np.argmax(p_click)) == 3 and int(np.argmax(odds)) != 3


def test_sampled_softmax_equals_full_softmax_over_the_sampled_set():
    torch.manual_seed(0)
    u, emb, bias = torch.randn(3, 4), torch.randn(20, 4), torch.randn(20)
    pos = torch.tensor([1, 5, 7])
    neg = torch.tensor([[2, 3, 1], [6, 8, 9], [0, 7, 11]])   # row 0 and row 2 hit their positive
    lq = torch.full((3,), -math.log(20)), torch.full((3, 3), -math.log(20))
    loss = sampled_softmax_loss(u, emb, bias, pos, neg, *lq)
    ref = []
    for b in range(3):
        ids = [int(pos[b])] + [int(i) for i in neg[b] if i != pos[b]]
        z = torch.stack([u[b] @ emb[i] + bias[i] for i in ids])
        ref.append(-torch.log_softmax(z, 0)[0])
    assert torch.allclose(loss, torch.stack(ref).mean(), atol=1e-6)
