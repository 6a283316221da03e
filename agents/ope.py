"""Off-policy evaluation from a bandit log: IPW, SNIPW and DR, named as Open Bandit Pipeline does.

The log holds, per round i, the reward r_i of the logged action a_i and its logging
propensity pscore_i = pi_b(a_i | x_i) (the recsys env copies it into ``info["propensity"]``).
A target policy pi_e is described by ``target_pscore_i`` = pi_e(a_i | x_i) (OBP's
``action_dist[i, action[i]]``); DR also takes a reward model's estimate of the logged action,
q_hat(x_i, a_i), and its expectation under the target, sum_a pi_e(a | x_i) q_hat(x_i, a)
(OBP's ``estimated_rewards_by_reg_model`` averaged over ``action_dist``). With thousands of
actions these two vectors replace OBP's (n, K) arrays.

- ipw (OBP InverseProbabilityWeighting): mean of w_i r_i, w_i = target_pscore_i / pscore_i;
  unbiased when pi_b covers pi_e.
- snipw (OBP SelfNormalizedInverseProbabilityWeighting): sum w_i r_i / sum w_i; slightly
  biased, lower variance.
- dr (OBP DoublyRobust): mean of q_hat_target_i + w_i (r_i - q_hat_logged_i); unbiased if
  either the propensities or the reward model are right.

Each ``*_rounds`` gives the per-round terms whose mean is the estimate; ``interval`` turns
them into a normal-approximation confidence interval (OBP bootstraps the same terms).
"""

from __future__ import annotations

import math

import numpy as np

from rewind.errors import RewindError


def _weights(pscore, target_pscore) -> np.ndarray:
    p = np.asarray(pscore, dtype=np.float64)
    q = np.asarray(target_pscore, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1 or len(p) == 0:
        raise RewindError(f"pscore and target_pscore must be equal-length 1-D arrays, got {p.shape} and {q.shape}")
    if not np.all(p > 0) or not np.all(np.isfinite(p)):
        raise RewindError("every logged pscore must be a probability > 0 (was the log made by a deterministic "
                          "policy, or without propensities?)")
    return q / p


def ipw_rounds(reward, pscore, target_pscore) -> np.ndarray:
    return _weights(pscore, target_pscore) * np.asarray(reward, dtype=np.float64)


def snipw_rounds(reward, pscore, target_pscore) -> np.ndarray:
    w = _weights(pscore, target_pscore)
    return w * np.asarray(reward, dtype=np.float64) / w.mean()


def dr_rounds(reward, pscore, target_pscore, reward_hat_logged, reward_hat_target) -> np.ndarray:
    w = _weights(pscore, target_pscore)
    r = np.asarray(reward, dtype=np.float64)
    return np.asarray(reward_hat_target, dtype=np.float64) + w * (r - np.asarray(reward_hat_logged, dtype=np.float64))


def ipw(reward, pscore, target_pscore) -> float:
    return float(ipw_rounds(reward, pscore, target_pscore).mean())


def snipw(reward, pscore, target_pscore) -> float:
    return float(snipw_rounds(reward, pscore, target_pscore).mean())


def dr(reward, pscore, target_pscore, reward_hat_logged, reward_hat_target) -> float:
    return float(dr_rounds(reward, pscore, target_pscore, reward_hat_logged, reward_hat_target).mean())


def interval(rounds, z: float = 1.96) -> tuple[float, float, float]:
    """(estimate, low, high): mean of the per-round terms +- z standard errors."""
    x = np.asarray(rounds, dtype=np.float64)
    m = float(x.mean())
    half = z * float(x.std(ddof=1)) / math.sqrt(len(x)) if len(x) > 1 else math.inf
    return m, m - half, m + half
