"""The MMoE paper's synthetic benchmark: shared-bottom vs OMoE vs MMoE against task correlation rho.

Two modes, both over rho in {1, 0.9, 0.5, 0}, the three heads at (about) equal parameter
counts, and seeds (each seed draws new task parameters, data and initial weights):

- regression (the paper's experiment): train on ``--train`` examples with Adam, report the
  test MSE of each task;
- bandit: the same tasks as rewind/mmoe-rho*-v0 (10 candidates per step, two feedback
  signals, reward y1 + y2), learned online by ``mtl-bandit``; report regret per step.

Not a suite: the regression mode is plain supervised training, and the bandit numbers come
from ``info`` (oracle values), which the harness does not record.

    python -m rewind.bench.studies.mmoe_synthetic --seeds 5
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from rewind.bench.studies.recsys_bandit import RESULTS_DIR, cached, cpu_name, t_ci

RHOS = (1.0, 0.9, 0.5, 0.0)
HEADS = ("shared-bottom", "omoe", "mmoe")


def regression_run(head: str, rho: float, seed: int, n_train: int, steps: int, dim: int) -> dict:
    import torch

    from rewind.agents.multitask import make_head, param_count, task_mse, train_regression
    from rewind.envs.mmoe_synthetic import synthetic_dataset, synthetic_tasks

    torch.set_num_threads(1)
    tasks = synthetic_tasks(rho, dim=dim, seed=seed)
    x, y = synthetic_dataset(tasks, n_train, seed=10_000 + seed)
    xt, yt = synthetic_dataset(tasks, 2000, seed=20_000 + seed)
    torch.manual_seed(seed)
    model = train_regression(make_head(head, dim), x, y, steps=steps, lr=1e-3, seed=seed)
    return {"mode": "regression", "head": head, "rho": rho, "seed": seed, "mse": task_mse(model, xt, yt),
            "params": param_count(model)}


def bandit_run(head: str, rho: float, seed: int, steps: int, dim: int, blocks: int = 10) -> dict:
    """mtl-bandit with one head on one seeded task draw: regret per step, per block, and uniform's regret."""
    import torch

    from rewind.agents import make_agent
    from rewind.envs import make_env

    torch.set_num_threads(1)
    env = make_env(f"rewind/mmoe-rho{rho:.1f}-v0", {"dim": dim, "task_seed": seed})
    tasks, k = env.unwrapped.tasks, env.unwrapped.k
    agent = make_agent("mtl-bandit", env, {"head": head}, seed=seed)
    regret, uniform = np.zeros(steps), np.zeros(steps)
    obs, _ = env.reset(seed=seed)
    for t in range(steps):
        mean = tasks.mean(obs.reshape(k, dim).astype(np.float64)).sum(1)
        uniform[t] = mean.max() - mean.mean()          # the expected regret of a uniform pick
        a = agent.act(obs)
        nxt, r, term, trunc, info = env.step(a)
        agent.observe(obs, a, r, nxt, term, trunc, info)
        agent.update()
        regret[t] = info["best_expected_reward"] - info["expected_reward"]
        obs, _ = env.reset()
    nb = steps // blocks
    return {"mode": "bandit", "head": head, "rho": rho, "seed": seed, "regret_all": float(regret.mean()),
            "regret_last": float(regret[-steps // 4:].mean()), "uniform": float(uniform.mean()),
            "regret_blocks": regret[:nb * blocks].reshape(blocks, nb).mean(1).tolist()}


def _job(args):
    cache, kind, *rest = args
    key = f"{kind}-" + "-".join(str(a) for a in rest)
    return cached(cache, key, regression_run if kind == "regression" else bandit_run, *rest)


def _ci(x, sign: bool = False) -> str:
    m, hw = t_ci(list(x))
    return f"{m:+.3f} +- {hw:.3f}" if sign else f"{m:.3f} +- {hw:.3f}"


def report(runs: list[dict], args) -> str:
    reg = [r for r in runs if r["mode"] == "regression"]
    ban = [r for r in runs if r["mode"] == "bandit"]
    lines = []
    if reg:
        params = {h: next(r["params"] for r in reg if r["head"] == h) for h in HEADS}
        lines += [f"Regression: d = {args.dim}, {args.train} training and 2,000 test examples, Adam lr 1e-3, "
                  f"{args.reg_steps} steps of batch 128; test MSE per task, mean +- 95% t-interval over "
                  f"{args.seeds} seeds. Parameters: " + ", ".join(f"{h} {n}" for h, n in params.items()) + ".", "",
                  "| rho | " + " | ".join(f"{h} task 1 | {h} task 2" for h in HEADS) + " |",
                  "|---" * (1 + 2 * len(HEADS)) + "|"]
        for rho in RHOS:
            cells = []
            for h in HEADS:
                rs = [r for r in reg if r["head"] == h and r["rho"] == rho]
                for k in range(2):
                    m, hw = t_ci([r["mse"][k] for r in rs])
                    cells.append(f"{m:.3f} +- {hw:.3f}")
            lines.append(f"| {rho} | " + " | ".join(cells) + " |")
        lines += ["", "MMoE minus shared-bottom, and MMoE minus OMoE, in summed test MSE (both tasks), "
                  "paired by seed (same data), mean +- 95% t-interval:", "", "| rho | mmoe - shared-bottom | "
                  "mmoe - omoe |", "|---|---|---|"]
        for rho in RHOS:
            tot = {h: np.array([sum(r["mse"]) for r in sorted((r for r in reg if r["head"] == h and r["rho"] == rho),
                                                              key=lambda r: r["seed"])]) for h in HEADS}
            d1, d2 = t_ci(tot["mmoe"] - tot["shared-bottom"]), t_ci(tot["mmoe"] - tot["omoe"])
            lines.append(f"| {rho} | {d1[0]:+.3f} +- {d1[1]:.3f} | {d2[0]:+.3f} +- {d2[1]:.3f} |")
    if ban:
        lines += ["", f"Bandit (rewind/mmoe-rho*-v0, 10 candidates per step, d = {args.dim}, mtl-bandit epsilon "
                  f"0.05, one Adam step of batch 64 per env step, {args.bandit_steps} steps): regret per step "
                  "(oracle's best expected y1 + y2 minus the pick's) over the last quarter, mean +- 95% "
                  f"t-interval over {args.seeds} seeds; uniform = the expected regret of a uniform pick.", "",
                  "| rho | " + " | ".join(HEADS) + " | uniform | mmoe - shared-bottom (paired) | "
                  "mmoe - omoe (paired) |",
                  "|---" * (len(HEADS) + 4) + "|"]
        for rho in RHOS:
            by = {h: np.array([r["regret_last"] for r in sorted((r for r in ban if r["head"] == h and r["rho"] == rho),
                                                                key=lambda r: r["seed"])]) for h in HEADS}
            cells = [_ci(by[h]) for h in HEADS]
            cells.append(_ci([r["uniform"] for r in ban if r["head"] == "mmoe" and r["rho"] == rho]))
            cells += [_ci(by["mmoe"] - by["shared-bottom"], sign=True), _ci(by["mmoe"] - by["omoe"], sign=True)]
            lines.append(f"| {rho} | " + " | ".join(cells) + " |")
    lines.append(f"\nCPU: {cpu_name()}; figure: mmoe_synthetic.png.")
    return "\n".join(lines)


def _regret(ban: list[dict], head: str, rho: float, seed: int) -> float:
    return next(r["regret_last"] for r in ban if r["head"] == head and r["rho"] == rho and r["seed"] == seed)


def plot(runs: list[dict], path: Path) -> None:
    """Test MSE per task against rho (regression); MMoE's paired regret differences against rho (bandit), if run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ban = [r for r in runs if r["mode"] == "bandit"]
    fig, ax = plt.subplots(1, 3 if ban else 2, figsize=(15 if ban else 10, 4))
    for k in range(2):
        for h in HEADS:
            ms, hs = zip(*[t_ci([r["mse"][k] for r in runs if r["mode"] == "regression" and r["head"] == h
                                 and r["rho"] == rho]) for rho in RHOS])
            ax[k].errorbar(RHOS, ms, yerr=hs, marker="o", capsize=3, label=h)
        ax[k].set(xlabel="rho (cosine of the task weights)", ylabel="test MSE", title=f"regression: task {k + 1}")
        ax[k].invert_xaxis()
    ax[0].legend()
    if ban:   # paired by seed: the seeds' task draws differ in difficulty far more than the heads do
        for other, style in (("shared-bottom", "o"), ("omoe", "s")):
            ms, hs = zip(*[t_ci([_regret(ban, "mmoe", rho, s) - _regret(ban, other, rho, s)
                                 for s in sorted({r["seed"] for r in ban})]) for rho in RHOS])
            ax[2].errorbar(RHOS, ms, yerr=hs, marker=style, capsize=3, label=f"mmoe - {other}")
        ax[2].axhline(0.0, color="grey", lw=0.8)
        ax[2].set(xlabel="rho (cosine of the task weights)", ylabel="regret difference, last quarter (paired)",
                  title="bandit: MMoE minus the others (< 0: MMoE better)")
        ax[2].invert_xaxis()
        ax[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    from rewind.bench.markdown import write_result
    from rewind.files import atomic_write_text

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--train", type=int, default=10_000)
    p.add_argument("--reg-steps", type=int, default=3000)
    p.add_argument("--bandit-steps", type=int, default=1500)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS_DIR))
    args = p.parse_args(argv)
    cache = str(Path(args.out) / "runs" / "mmoe_synthetic")
    jobs = [(cache, "regression", h, rho, s, args.train, args.reg_steps, args.dim) for s in range(args.seeds)
            for rho in RHOS for h in HEADS]
    if args.bandit_steps > 0:
        jobs += [(cache, "bandit", h, rho, s, args.bandit_steps, args.dim) for s in range(args.seeds)
                 for rho in RHOS for h in HEADS]
    with ProcessPoolExecutor(args.workers) as pool:
        runs = list(pool.map(_job, jobs))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "mmoe_synthetic.json", json.dumps(runs, indent=1))
    plot(runs, out / "mmoe_synthetic.png")
    write_result(out / "mmoe_synthetic.md", "MMoE synthetic benchmark", "rewind.bench.studies.mmoe_synthetic",
                 argv, report(runs, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
