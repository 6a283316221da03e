"""EBU backward targets for one sampled episode (Lee, Choi, Chung, NeurIPS 2019, Algorithm 2).

Paper recursion (docs/ebu.md, issue 3 item 2), for transitions k = 0..T-1 with
``next_q`` = target-network Q of s_{k+1} (rows of terminal next states count as zero)::

    y_{T-1} = r_{T-1} + gamma * max_a Qt[T-1]
    for k = T-2 .. 0:
        Qt[k, a_{k+1}] <- beta * y_{k+1} + (1 - beta) * Qt[k, a_{k+1}]
        y_k = r_k + gamma * max_a Qt[k]

Why it is not a Python loop over rows: only one entry of row k changes, so with
``q_sel[k] = Qt[k, a_{k+1}]`` and ``m_other[k] = max_{a != a_{k+1}} Qt[k, a]`` (both computed
vectorised up front) each step is the scalar map

    y_k = f_k(y_{k+1}) = max(C_k, S_k * y_{k+1} + D_k),
    C_k = r_k + g_k m_other[k],  S_k = g_k beta,  D_k = r_k + g_k (1 - beta) q_sel[k],

with g_k = gamma * (1 - terminal_k).  Because S_k >= 0, a composition of two such maps is
again of the form max(C, S y + D), so all y_k follow from a suffix scan over compositions:
ceil(log2 T) vectorised passes instead of T interpreted steps, vectorised over K betas too.
Results agree with the sequential recursion up to float rounding (the order of additions
differs); beta = 0 reproduces the one-step DQN targets bit for bit.

Our choices (documented, not in the paper's text): a terminal in the middle of the input
(k < T-1) cuts the recursion there (y_k = r_k: the terminal state's value is zero, nothing
propagates across it); beta and gamma must lie in [0, 1]; the computation runs in the
floating dtype of ``next_q`` promoted with ``rewards``; the output is a numpy array when
``next_q`` is one, else a torch tensor on ``next_q``'s device.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rewind.errors import RewindError

__all__ = ["backward_targets"]


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _betas(beta) -> tuple[list[float], bool]:
    """beta as a list of floats, and whether the caller gave a sequence (-> (K, T) output)."""
    if isinstance(beta, (int, float, np.floating, np.integer)) and not isinstance(beta, bool):
        values, many = [float(beta)], False
    else:
        if _is_torch(beta):
            beta = beta.detach().cpu().numpy()
        arr = np.asarray(beta, dtype=np.float64)
        if arr.ndim == 0:
            values, many = [float(arr)], False
        elif arr.ndim == 1 and arr.size > 0:
            values, many = arr.tolist(), True
        else:
            raise RewindError(f"backward_targets: beta must be a float or a non-empty 1-D sequence, got shape {arr.shape}")
    for b in values:
        if not 0.0 <= b <= 1.0:
            raise RewindError(f"backward_targets: beta must lie in [0, 1], got {b}")
    return values, many


def _check_shapes(rewards, actions, next_q, terminals) -> tuple[int, int]:
    if len(next_q.shape) != 2:
        raise RewindError(f"backward_targets: next_q must be (T, A), got shape {tuple(next_q.shape)}")
    T, A = int(next_q.shape[0]), int(next_q.shape[1])
    for name, x in (("rewards", rewards), ("actions", actions), ("terminals", terminals)):
        if tuple(x.shape) != (T,):
            raise RewindError(f"backward_targets: {name} must have shape ({T},) like next_q's rows, "
                              f"got {tuple(x.shape)}")
    if A < 1:
        raise RewindError("backward_targets: next_q needs at least one action column")
    return T, A


def _suffix_scan(C, S, D, fmax):
    """In place along the last axis: per-step maps (C, S, D) -> their suffix compositions.

    Hillis-Steele doubling: after the pass with offset d, entry k holds f_k o ... o f_{k+2d-1}
    (clipped at the end).  o(i(y)) = max(C_o, S_o C_i + D_o, S_o S_i y + S_o D_i + D_o).
    fmax ignores the NaN of 0 * (-inf), which appears only where that term is dominated.
    """
    n = C.shape[-1]
    d = 1
    while d < n:
        So, Do = S[..., : n - d], D[..., : n - d]
        Ci, Si, Di = C[..., d:], S[..., d:], D[..., d:]
        newC = fmax(C[..., : n - d], So * Ci + Do)
        newD = So * Di + Do
        newS = So * Si
        C[..., : n - d] = newC
        D[..., : n - d] = newD
        S[..., : n - d] = newS
        d *= 2


_BLOCK = 16  # steps per block in the two-level scan (log2 of it passes over the full arrays)


def _apply_maps(C, S, D, y_last, fmax, full, copy):
    """y_k = (f_k o ... o f_{n-1})(y_last) for maps given as (K, n) arrays C, S, D.

    Two levels so that only log2(_BLOCK) + 1 passes touch all K*n entries: scan inside blocks
    of _BLOCK consecutive steps (laid out (K, _BLOCK, n_blocks) so every slice is long and
    contiguous), scan the n_blocks block totals, then apply each step's within-block map to
    the value entering its block.  Padding steps are identity maps (C=-inf, S=1, D=0).
    `copy` must always copy: a contiguity helper returns a view when K == 1.
    """
    K, n = S.shape
    if n <= 4 * _BLOCK:
        _suffix_scan(C, S, D, fmax)
        return fmax(C, S * y_last + D)
    B = _BLOCK
    nb = -(-n // B)

    def blocks(x, fill):
        padded = full((K, nb * B), fill)
        padded[:, :n] = x
        return copy(padded.reshape(K, nb, B).swapaxes(1, 2))   # (K, B, nb), C-contiguous

    Cb, Sb, Db = blocks(C, float("-inf")), blocks(S, 1.0), blocks(D, 0.0)
    # Views with the step axis last; the ufuncs iterate in memory order, so slices stay long.
    _suffix_scan(Cb.swapaxes(1, 2), Sb.swapaxes(1, 2), Db.swapaxes(1, 2), fmax)
    # Block totals (K, nb) -> suffix compositions over blocks -> value entering each block.
    Ct, St, Dt = (copy(x[:, 0]) for x in (Cb, Sb, Db))   # copies: scanned in place
    _suffix_scan(Ct, St, Dt, fmax)
    y_start = fmax(Ct, St * y_last + Dt)                       # y at each block's first step
    y_after = full((K, nb), 0.0)
    y_after[:, : nb - 1] = y_start[:, 1:]
    y_after[:, nb - 1] = y_last
    y = fmax(Cb, Sb * y_after[:, None, :] + Db)                 # (K, B, nb)
    return y.swapaxes(1, 2).reshape(K, nb * B)[:, :n]


def _numpy_targets(rewards, actions, next_q, terminals, gamma, betas):
    rewards = np.asarray(rewards)
    next_q = np.asarray(next_q)
    actions = np.asarray(actions)
    terminals = np.asarray(terminals)
    T, A = _check_shapes(rewards, actions, next_q, terminals)
    dtype = np.result_type(next_q.dtype, rewards.dtype, np.float32)
    K = len(betas)
    if T == 0:
        return np.zeros((K, 0), dtype)
    if not np.issubdtype(actions.dtype, np.integer):
        raise RewindError(f"backward_targets: actions must be integers, got dtype {actions.dtype}")
    if actions.min() < 0 or actions.max() >= A:
        raise RewindError(f"backward_targets: actions must lie in [0, {A}) for next_q with {A} columns")
    q = next_q.astype(dtype, copy=False)
    r = rewards.astype(dtype, copy=False)
    live = ~terminals.astype(bool, copy=False)
    g = np.where(live, dtype.type(gamma), dtype.type(0))
    zero = dtype.type(0)

    last_max = q[T - 1].max() if live[T - 1] else zero
    y_last = r[T - 1] + g[T - 1] * last_max
    out = np.empty((K, T), dtype)
    out[:, T - 1] = y_last
    if T == 1:
        return out

    n = T - 1
    idx = np.arange(n)
    a_next = actions[1:]
    q = np.ascontiguousarray(q)
    q_sel = q.reshape(-1)[idx * A + a_next]
    if A > 1:
        # (A, n) layout: numpy reduces over a short last axis slowly (about 5x here).
        masked = np.array(q[:-1].T, order="C", copy=True)  # never a view: we write into it
        masked.reshape(-1)[a_next * n + idx] = -np.inf
        m_other = masked.max(axis=0)
    else:
        m_other = np.full(n, -np.inf, dtype)
    gl = g[:-1]
    live_n = live[:-1]
    # Terminal rows count as zero: C = D = r, S = 0 (np.where avoids 0 * inf there).
    with np.errstate(invalid="ignore"):
        C1 = r[:-1] + np.where(live_n, gl * m_other, zero)
    q_term = np.where(live_n, q_sel, zero)
    b = np.asarray(betas, dtype)[:, None]                       # (K, 1)
    S = gl[None, :] * b                                         # (K, n)
    D = r[:-1][None, :] + gl[None, :] * ((1 - b) * q_term[None, :])
    C = np.broadcast_to(C1, (K, n)).copy()
    with np.errstate(invalid="ignore"):
        out[:, :n] = _apply_maps(C, S, D, y_last, np.fmax, lambda shape, v: np.full(shape, v, dtype),
                                 lambda x: np.array(x, order="C", copy=True))
    return out


def _torch_targets(rewards, actions, next_q, terminals, gamma, betas):
    import torch

    dev = next_q.device
    rewards = torch.as_tensor(rewards, device=dev)
    actions = torch.as_tensor(actions, device=dev)
    terminals = torch.as_tensor(terminals, device=dev)
    T, A = _check_shapes(rewards, actions, next_q, terminals)
    dtype = torch.promote_types(next_q.dtype, rewards.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float32
    K = len(betas)
    if T == 0:
        return torch.zeros((K, 0), dtype=dtype, device=dev)
    if actions.dtype.is_floating_point or actions.dtype == torch.bool:
        raise RewindError(f"backward_targets: actions must be integers, got dtype {actions.dtype}")
    lo, hi = torch.aminmax(actions)
    if int(lo) < 0 or int(hi) >= A:
        raise RewindError(f"backward_targets: actions must lie in [0, {A}) for next_q with {A} columns")
    with torch.no_grad():
        q = next_q.detach().to(dtype)
        r = rewards.to(dtype)
        live = ~terminals.to(torch.bool)
        zero = torch.zeros((), dtype=dtype, device=dev)
        g = torch.where(live, torch.full((), float(gamma), dtype=dtype, device=dev), zero)

        last_max = torch.where(live[T - 1], q[T - 1].max(), zero)
        y_last = r[T - 1] + g[T - 1] * last_max
        out = torch.empty((K, T), dtype=dtype, device=dev)
        out[:, T - 1] = y_last
        if T == 1:
            return out

        n = T - 1
        rows = q[:-1]
        a_next = actions[1:].long().unsqueeze(1)
        q_sel = rows.gather(1, a_next).squeeze(1)
        if A > 1:
            masked = rows.scatter(1, a_next, float("-inf"))
            m_other = masked.amax(dim=1)
        else:
            m_other = torch.full((n,), float("-inf"), dtype=dtype, device=dev)
        gl = g[:-1]
        live_n = live[:-1]
        C1 = r[:-1] + torch.where(live_n, gl * m_other, zero)
        q_term = torch.where(live_n, q_sel, zero)
        b = torch.tensor(betas, dtype=dtype, device=dev).unsqueeze(1)
        S = gl.unsqueeze(0) * b
        D = r[:-1].unsqueeze(0) + gl.unsqueeze(0) * ((1 - b) * q_term.unsqueeze(0))
        C = C1.unsqueeze(0).expand(K, n).clone()
        out[:, :n] = _apply_maps(C, S, D, y_last, torch.fmax,
                                 lambda shape, v: torch.full(shape, v, dtype=dtype, device=dev),
                                 lambda x: x.clone(memory_format=torch.contiguous_format))
    return out


def backward_targets(rewards, actions, next_q, terminals, gamma: float, beta: float | Sequence[float]):
    """EBU targets y_k for one episode of T transitions (s_k, a_k, r_k, s_{k+1}).

    rewards (T,), actions (T,) integer a_k, next_q (T, A) target-network Q of s_{k+1},
    terminals (T,) bool (s_{k+1} terminal: its row counts as zero), gamma in [0, 1],
    beta a float in [0, 1] -> (T,), or a sequence of K floats -> (K, T).
    numpy in, numpy out; torch in (next_q a tensor), torch out on next_q's device.
    """
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.floating, np.integer)):
        raise RewindError(f"backward_targets: gamma must be a float, got {gamma!r}")
    if not 0.0 <= float(gamma) <= 1.0:
        raise RewindError(f"backward_targets: gamma must lie in [0, 1], got {gamma}")
    betas, many = _betas(beta)
    if _is_torch(next_q):
        out = _torch_targets(rewards, actions, next_q, terminals, float(gamma), betas)
    else:
        if any(_is_torch(x) for x in (rewards, actions, terminals)):
            raise RewindError("backward_targets: pass next_q as a torch tensor too, or all inputs as numpy arrays")
        out = _numpy_targets(rewards, actions, next_q, terminals, float(gamma), betas)
    return out if many else out[0]
