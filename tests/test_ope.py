"""IPW / SNIPW / DR: against plainly written loops, and unbiased on a uniform log of the recsys env."""

import numpy as np
import pytest

from rewind.agents.ope import dr, interval, ipw, ipw_rounds, snipw
from rewind.envs import make_env
from rewind.envs.recsys import LoggedAction
from rewind.errors import RewindError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_estimators_match_plain_loops():
    rng = np.random.default_rng(0)
    n = 50
    r, p, q = rng.random(n), rng.uniform(0.1, 1, n), rng.random(n)
    qh, qt = rng.random(n), rng.random(n)
    w = [q[i] / p[i] for i in range(n)]
    assert ipw(r, p, q) == pytest.approx(sum(w[i] * r[i] for i in range(n)) / n)
    assert snipw(r, p, q) == pytest.approx(sum(w[i] * r[i] for i in range(n)) / sum(w))
    assert dr(r, p, q, qh, qt) == pytest.approx(sum(qt[i] + w[i] * (r[i] - qh[i]) for i in range(n)) / n)
    with pytest.raises(RewindError, match="pscore must be a probability > 0"):
        ipw(r, np.zeros(n), q)


def _uniform_log(seed: int, steps: int, eps: float):
    """A uniform-random log; the target is eps-greedy on the oracle (a known policy)."""
    env = make_env("rewind/recsys-v0", {"n_items": 30, "n_users": 20, "world_seed": 0, "publish_steps": 500})
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(steps):
        base = env.unwrapped
        er = base.expected_rewards()
        n = base.world.n_available(base.t)
        a = int(rng.integers(n))
        target = np.full(n, eps / n)
        target[int(np.argmax(er[:n]))] += 1 - eps
        _, r, _, _, info = env.step(LoggedAction(a, 1.0 / n))
        rows.append((r, info["propensity"], target[a], float(target @ er[:n])))
        env.reset()
    return np.array(rows).T


def test_ipw_on_a_uniform_log_is_unbiased_within_its_ci():
    errors, covered = [], 0
    for seed in range(16):
        r, p, q, truth = _uniform_log(seed, 600, eps=0.3)
        est, lo, hi = interval(ipw_rounds(r, p, q))
        errors.append(est - truth.mean())
        covered += lo <= truth.mean() <= hi
    errors = np.array(errors)
    assert abs(errors.mean()) < 3 * errors.std(ddof=1) / np.sqrt(len(errors))   # unbiased
    assert covered >= 12                                                         # 95% CI covers ~15/16
