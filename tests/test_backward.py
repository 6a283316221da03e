"""EBU backward targets: the defining properties (beta = 0 is DQN, beta = 1 propagates the
reward through the whole episode in one sweep) and agreement with a plain reference loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rewind.buffers.backward import backward_targets
from rewind.errors import RewindError


def reference(rewards, actions, next_q, terminals, gamma, beta):
    """The issue's recursion, written plainly: copy the table, loop k backward, edit one entry.

    A terminal next state is worth zero: its row is zeroed and y_k = r_k (in the middle of
    an episode this also cuts the recursion, rewind's documented choice).
    """
    r = np.asarray(rewards, np.float64)
    q = np.array(next_q, np.float64)              # a copy: the temporary table Q~
    T = len(r)
    q[np.asarray(terminals, bool)] = 0.0
    y = np.zeros(T)
    y[T - 1] = r[T - 1] + gamma * q[T - 1].max()
    for k in range(T - 2, -1, -1):
        if terminals[k]:
            y[k] = r[k]
            continue
        q[k, actions[k + 1]] = beta * y[k + 1] + (1 - beta) * q[k, actions[k + 1]]
        y[k] = r[k] + gamma * q[k].max()
    return y


def random_episode(rng, T, A, dtype, *, truncated=False, mid_terminals=0.0):
    rewards = rng.normal(size=T).astype(dtype) * (rng.random(T) < 0.3)
    actions = rng.integers(0, A, size=T)
    next_q = rng.normal(scale=2.0, size=(T, A)).astype(dtype)
    terminals = rng.random(T) < mid_terminals
    terminals[-1] = not truncated
    return rewards, actions, next_q, terminals


def one_step(rewards, next_q, terminals, gamma):
    """Ordinary DQN targets r + gamma * (1 - done) * max_a Q(s', a), in the input's dtype."""
    return rewards + gamma * (~terminals) * next_q.max(axis=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_beta_zero_is_exactly_one_step_dqn(dtype):
    rng = np.random.default_rng(1)
    for _ in range(50):
        T, A = int(rng.integers(1, 300)), int(rng.integers(1, 19))
        r, a, q, t = random_episode(rng, T, A, dtype, truncated=bool(rng.random() < 0.5), mid_terminals=0.05)
        want = one_step(r, q, t, dtype(0.99))
        got = backward_targets(r, a, q, t, 0.99, 0.0)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
        got_t = backward_targets(torch.from_numpy(r), torch.from_numpy(a), torch.from_numpy(q),
                                 torch.from_numpy(t), 0.99, [0.0, 0.5])
        np.testing.assert_array_equal(got_t[0].numpy(), want)


def test_beta_one_propagates_terminal_reward_through_chain_in_one_sweep():
    # Deterministic chain s_0 -> ... -> s_T (terminal), reward 1 on the last step only, Q
    # initialised to small negative noise (below every true return).  After one sweep with
    # beta = 1 every target is the discounted return gamma^(T-1-k).
    rng = np.random.default_rng(2)
    T, A, gamma = 40, 4, 0.9
    rewards = np.zeros(T)
    rewards[-1] = 1.0
    actions = np.full(T, 2)
    terminals = np.zeros(T, bool)
    terminals[-1] = True
    next_q = -rng.random((T, A)) * 0.1
    y = backward_targets(rewards, actions, next_q, terminals, gamma, 1.0)
    np.testing.assert_allclose(y, gamma ** np.arange(T - 1, -1, -1), rtol=1e-12)
    # beta < 1 does not reach the start in one sweep: the start's target stays far below.
    y_half = backward_targets(rewards, actions, next_q, terminals, gamma, 0.5)
    assert y_half[0] < 0.01 * gamma ** (T - 1)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_plain_reference_on_random_episodes(lib, dtype):
    rng = np.random.default_rng(3)
    betas = [0.0, 0.25, 0.5, 0.75, 1.0]
    tol = dict(rtol=1e-4, atol=1e-3) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-9)
    for i in range(60):
        T = int(rng.integers(1, 400)) if i < 55 else int(rng.integers(2000, 5000))
        A = int(rng.integers(1, 19))
        ep = random_episode(rng, T, A, dtype, truncated=bool(rng.random() < 0.4),
                            mid_terminals=0.02 if i % 3 == 0 else 0.0)
        want = np.stack([reference(*ep, 0.97, b) for b in betas])
        args = ep if lib == "numpy" else tuple(torch.from_numpy(x) for x in ep)
        many = backward_targets(*args, 0.97, betas)
        single = backward_targets(*args, 0.97, betas[2])
        if lib == "torch":
            assert isinstance(many, torch.Tensor) and many.device == args[2].device
            many, single = many.numpy(), single.numpy()
        assert many.shape == (len(betas), T) and single.shape == (T,)
        assert many.dtype == dtype
        np.testing.assert_allclose(many, want, **tol)
        np.testing.assert_allclose(single, want[2], **tol)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(4)
    for T in (1, 2, 100, 1000):
        ep = random_episode(rng, T, 6, np.float64)
        copies = [x.copy() for x in ep]
        backward_targets(*ep, 0.99, [0.5, 1.0])
        for x, c in zip(ep, copies):
            np.testing.assert_array_equal(x, c)


def test_truncated_episode_bootstraps_from_last_next_state():
    q = np.array([[0.0, 0.0], [3.0, 5.0]])
    r = np.array([0.0, 1.0])
    a = np.array([0, 1])
    y_trunc = backward_targets(r, a, q, np.array([False, False]), 0.5, 1.0)
    y_term = backward_targets(r, a, q, np.array([False, True]), 0.5, 1.0)
    np.testing.assert_allclose(y_trunc, [0.5 * (1 + 0.5 * 5.0), 1 + 0.5 * 5.0])
    np.testing.assert_allclose(y_term, [0.5, 1.0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_torch_cuda_stays_on_device():
    rng = np.random.default_rng(5)
    ep = random_episode(rng, 3000, 18, np.float32, mid_terminals=0.01)
    args = tuple(torch.from_numpy(x).cuda() for x in ep)
    got = backward_targets(*args, 0.99, [0.5, 1.0])
    assert got.device.type == "cuda"
    want = np.stack([reference(*ep, 0.99, b) for b in (0.5, 1.0)])
    np.testing.assert_allclose(got.cpu().numpy(), want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("bad", [
    dict(beta=1.5), dict(beta=-0.1), dict(beta=[]), dict(gamma=1.2),
    dict(actions=np.array([0, 7, 1])), dict(next_q=np.zeros(3)), dict(rewards=np.zeros(4)),
])
def test_bad_input_is_a_clear_rewind_error(bad):
    kwargs = dict(rewards=np.zeros(3), actions=np.array([0, 1, 1]), next_q=np.zeros((3, 2)),
                  terminals=np.array([False, False, True]), gamma=0.9, beta=0.5)
    kwargs.update(bad)
    with pytest.raises(RewindError) as info:
        backward_targets(**kwargs)
    assert "\n" not in str(info.value)
