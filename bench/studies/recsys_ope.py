"""Off-policy evaluation on the recommender: IPW / SNIPW / DR estimates against the env's ground truth.

Per seed: a uniform-random logger (``recsys-random``, propensities 1 / published items,
copied by the env into ``info["propensity"]``) runs ``--steps`` steps of
rewind/recsys-v0 with ``--items`` items. Three target policies are then evaluated from
that log alone:

- ``eps-greedy on P(click)``: eps 0.3 uniform, else the item with the highest true click
  probability (a clickbait-leaning policy);
- ``softmax on watch``: pi(a|x) proportional to exp(E[watch | x, a] / 1 minute);
- ``youtube-dnn``: a YouTube DNN agent trained for ``--train-steps`` steps on the same world
  with another stream seed, then frozen and run with epsilon 0.05.

Ground truth: the mean over the logged contexts of sum_a pi(a|x) E[r | x, a] (the oracle).
DR's reward model: per (item, demographic cell) mean reward, shrunk towards the item's and
the global mean, cross-fitted on the other half of the log (as OBP's cross-fitting does).

Not a suite: nothing here is an agents x envs x seeds training sweep.

    python -m rewind.bench.studies.recsys_ope --seeds 5
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from rewind.bench.studies.recsys_bandit import RESULTS_DIR, cached, cpu_name, t_ci

TARGETS = ("eps-greedy on P(click)", "softmax on watch", "youtube-dnn")
ESTIMATORS = ("ipw", "snipw", "dr")


def _cell(obs, hist_len: int) -> int:
    demo = obs[hist_len:hist_len + 6]
    return int(np.argmax(demo[:4]) * 2 + np.argmax(demo[4:]))


def reward_model(items, cells, rewards, n_items: int, prior: float = 5.0) -> np.ndarray:
    """q_hat[item, cell]: shrunk means (cell -> item -> global)."""
    g = rewards.mean()
    cnt_i = np.bincount(items, minlength=n_items)
    item_mean = (np.bincount(items, rewards, minlength=n_items) + prior * g) / (cnt_i + prior)
    flat = items * 8 + cells
    cnt = np.bincount(flat, minlength=n_items * 8).reshape(n_items, 8)
    tot = np.bincount(flat, rewards, minlength=n_items * 8).reshape(n_items, 8)
    return (tot + prior * item_mean[:, None]) / (cnt + prior)


def one_seed(seed: int, steps: int, items: int, train_steps: int) -> dict:
    import torch

    from rewind.agents import make_agent
    from rewind.agents.ope import dr_rounds, interval, ipw_rounds, snipw_rounds
    from rewind.envs import make_env

    torch.set_num_threads(1)
    opts = {"n_items": items, "world_seed": 1000 + seed}
    # the target youtube-dnn: trained on its own stream of the same world, then frozen
    train_env = make_env("rewind/recsys-v0", opts)
    yt = make_agent("youtube-dnn", train_env, {"learning_starts": 300}, seed=seed)
    obs, _ = train_env.reset(seed=50_000 + seed)
    for _ in range(train_steps):
        a = yt.act(obs)
        nxt, r, term, trunc, info = train_env.step(a)
        yt.observe(obs, a, r, nxt, term, trunc, info)
        yt.update()
        obs, _ = train_env.reset()
    env = make_env("rewind/recsys-v0", opts)
    logger = make_agent("recsys-random", env, seed=seed)
    hist_len = env.unwrapped.cfg.history_len
    rows = {k: [] for k in ("r", "p", "a", "cell", "n")}
    target_p = {t: [] for t in TARGETS}
    target_er = {t: [] for t in TARGETS}
    target_dist = {t: [] for t in TARGETS}
    obs, _ = env.reset(seed=seed)
    for _ in range(steps):
        base = env.unwrapped
        er = base.expected_rewards()
        n = base.world.n_available(base.t)
        click = base.world.click_prob(base.user, base.t)[:n]
        dists = {}
        d = np.full(n, 0.3 / n)
        d[int(np.argmax(click))] += 0.7
        dists["eps-greedy on P(click)"] = d
        z = np.exp(er[:n] - er[:n].max())
        dists["softmax on watch"] = z / z.sum()
        d = np.full(n, 0.05 / n)
        d[int(yt.act(obs, explore=False))] += 0.95
        dists["youtube-dnn"] = d
        a = logger.act(obs)
        _, r, _, _, info = env.step(a)
        for t in TARGETS:
            target_p[t].append(dists[t][int(a)])
            target_er[t].append(float(dists[t] @ er[:n]))
            target_dist[t].append((dists[t], _cell(obs, hist_len)))
        rows["r"].append(r), rows["p"].append(info["propensity"]), rows["a"].append(int(a))
        rows["cell"].append(_cell(obs, hist_len)), rows["n"].append(n)
        obs, _ = env.reset()
    r, p, a, cell = (np.asarray(rows[k]) for k in ("r", "p", "a", "cell"))
    half = np.arange(steps) < steps // 2
    q_hat = np.empty(steps)
    q_models = {}
    for part in (True, False):   # cross-fitting: the model for one half is fit on the other
        q = reward_model(a[half != part], cell[half != part], r[half != part], items)
        q_models[part] = q
        q_hat[half == part] = q[a[half == part], cell[half == part]]
    out = {"seed": seed, "logged_value": float(r.mean())}
    for t in TARGETS:
        tp = np.asarray(target_p[t])
        q_target = np.array([dist @ q_models[bool(half[i])][:len(dist), c]
                             for i, (dist, c) in enumerate(target_dist[t])])
        truth = float(np.mean(target_er[t]))
        ests = {"ipw": interval(ipw_rounds(r, p, tp)), "snipw": interval(snipw_rounds(r, p, tp)),
                "dr": interval(dr_rounds(r, p, tp, q_hat, q_target))}
        out[t] = {"truth": truth, **{k: list(v) for k, v in ests.items()}}
    return out


def seed_job(cache: str, seed: int, steps: int, items: int, train_steps: int) -> dict:
    return cached(cache, f"ope-s{seed}-{steps}-{items}-{train_steps}", one_seed, seed, steps, items, train_steps)


def report(runs: list[dict], args) -> str:
    lines = [f"Log: uniform-random logger, rewind/recsys-v0 with {args.items} items, {args.steps} steps per seed, "
             f"{len(runs)} seeds (a new world per seed). Error = estimate - ground truth (watch minutes per step); "
             "mean +- 95% t-interval over seeds; |rel| = mean |error| / truth; coverage = seeds whose 95% CI "
             "(normal, from the per-round terms) holds the truth.", "",
             "| target policy | true value | estimator | error | abs error | |rel| | CI coverage |",
             "|---|---|---|---|---|---|---|"]
    for t in TARGETS:
        truth = [run[t]["truth"] for run in runs]
        for e in ESTIMATORS:
            err = [run[t][e][0] - run[t]["truth"] for run in runs]
            m, h = t_ci(err)
            cover = sum(run[t][e][1] <= run[t]["truth"] <= run[t][e][2] for run in runs)
            lines.append(f"| {t} | {np.mean(truth):.3f} | {e} | {m:+.3f} +- {h:.3f} | {np.mean(np.abs(err)):.3f} "
                         f"| {np.mean(np.abs(err) / np.asarray(truth)):.1%} | {cover}/{len(runs)} |")
    lines.append(f"\nLogging policy's own value (on-policy mean reward): "
                 f"{np.mean([run['logged_value'] for run in runs]):.3f}. CPU: {cpu_name()}.")
    return "\n".join(lines)


def main(argv=None) -> int:
    from rewind.bench.markdown import write_result

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--items", type=int, default=200)
    p.add_argument("--train-steps", type=int, default=3000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS_DIR))
    args = p.parse_args(argv)
    with ProcessPoolExecutor(args.workers) as pool:
        runs = list(pool.map(seed_job, [str(Path(args.out) / "runs" / "recsys_ope")] * args.seeds, range(args.seeds),
                             [args.steps] * args.seeds, [args.items] * args.seeds, [args.train_steps] * args.seeds))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ope.json").write_text(json.dumps(runs, indent=1))
    write_result(out / "ope.md", "Off-policy evaluation on the recommender", "rewind.bench.studies.recsys_ope",
                 argv, report(runs, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
