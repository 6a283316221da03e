"""Microseconds per call of `backward_targets` (the EBU hot path) for Atari-sized episodes.

Not a suite: it times one function (microseconds per call); nothing is trained.

Run: `python3 -m rewind.bench.studies.backward_speed` (or `python3 bench/studies/backward_speed.py`).
Prints median microseconds for T in {1000, 10000}, A = 18 (full Atari action set), K in {1, 4},
numpy and torch (CPU, float32), and for comparison the same recursion as a scalar Python loop
(vectorised prep, then one interpreted step per k) -- the shape the scan replaces.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from rewind.buffers.backward import backward_targets


def scalar_loop(rewards, actions, next_q, terminals, gamma, betas):
    """Same targets with the k-recursion as a plain Python loop over floats (K loops)."""
    T = len(rewards)
    rows = next_q[:-1]
    idx = np.arange(T - 1)
    a_next = actions[1:]
    q_sel = rows[idx, a_next].tolist()
    masked = rows.copy()
    masked[idx, a_next] = -np.inf
    m_other = masked.max(axis=1).tolist()
    r = rewards.tolist()
    g = np.where(terminals, 0.0, gamma).tolist()
    y_last = r[-1] + g[-1] * float(next_q[-1].max())
    out = np.empty((len(betas), T), np.float64)
    for j, b in enumerate(betas):
        y = y_last
        ys = [0.0] * T
        ys[-1] = y
        ob = 1.0 - b
        for k in range(T - 2, -1, -1):
            v = b * y + ob * q_sel[k]
            m = m_other[k]
            y = r[k] + g[k] * (v if v > m else m)
            ys[k] = y
        out[j] = ys
    return out


def median_us(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e6 * float(np.median(times))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--actions", type=int, default=18)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    print(f"{'T':>6} {'K':>2} {'numpy us':>10} {'torch us':>10} {'py-loop us':>11}")
    for T in (1000, 10000):
        r = rng.normal(size=T).astype(np.float32)
        a = rng.integers(0, args.actions, size=T)
        q = rng.normal(size=(T, args.actions)).astype(np.float32)
        t = np.zeros(T, bool)
        t[-1] = True
        rt, at, qt, tt = map(torch.as_tensor, (r, a, q, t))
        for betas in ([0.5], [0.25, 0.5, 0.75, 1.0]):
            beta = betas[0] if len(betas) == 1 else betas
            us_np = median_us(lambda: backward_targets(r, a, q, t, 0.99, beta), args.repeat)
            us_t = median_us(lambda: backward_targets(rt, at, qt, tt, 0.99, beta), args.repeat)
            us_loop = median_us(lambda: scalar_loop(r, a, q, t, 0.99, betas), max(5, args.repeat // 5))
            print(f"{T:>6} {len(betas):>2} {us_np:>10.0f} {us_t:>10.0f} {us_loop:>11.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
