"""Recommenders on rewind/recsys-v0: watch time, click rate and regret per 1k steps; steps/s at 10k items.

Not a suite: the numbers come from ``info`` every step (expected reward of the pick and of
the oracle's best item), which the harness's loop does not record. Each (learner, seed) run
drives the agent with the run loop's per-step calls (act, env.step, observe, update) on its
own env with world and stream seeded by the seed, so all learners of a seed face the same
catalogue, users and user order. Jobs run in a process pool, one torch thread each.

    python -m rewind.bench.studies.recsys_bandit --seeds 5 --steps 4000          # the table
    python -m rewind.bench.studies.recsys_bandit --speed --steps 1000 --workers 1  # steps/s, 10k items (+ slates of 5)

Each finished run is saved under results/recsys/runs/ and reused, so an interrupted sweep resumes.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from rewind.bench.stats import t_interval

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results" / "recsys"
SLATE_10K = "rewind/recsys-10k-slate5-v0"
LEARNERS = {   # label -> (agent, config overrides)
    "yt age, weighted LR": ("youtube-dnn", {}),
    "yt no age, weighted LR": ("youtube-dnn", {"example_age": False}),
    "yt age, click LR": ("youtube-dnn", {"ranking_loss": "click"}),
    "yt no age, click LR": ("youtube-dnn", {"example_age": False, "ranking_loss": "click"}),
    "yt shared-bottom": ("youtube-dnn", {"ranking_head": "shared-bottom"}),
    "yt omoe": ("youtube-dnn", {"ranking_head": "omoe"}),
    "yt mmoe": ("youtube-dnn", {"ranking_head": "mmoe"}),
    "cg eps-greedy-linear": ("cg-eps-greedy-linear", {}),
    "cg linucb": ("cg-linucb", {}),
    "cg bootstrap-ts": ("cg-bootstrap-ts", {"hidden": [16]}),
    "random": ("recsys-random", {}),
}


def cached(cache: str | None, key: str, fn, *args) -> dict:
    """fn(*args), or its result saved under cache/key.json by an earlier (interrupted) sweep."""
    from rewind.files import atomic_write_json

    path = Path(cache) / (key.replace(" ", "_").replace(",", "").replace("/", "-") + ".json") if cache else None
    if path is not None and path.exists():
        return json.loads(path.read_text())
    res = fn(*args)
    if path is not None:
        atomic_write_json(path, res)
    print(f"done {key}", flush=True)
    return res


def run_job(cache: str | None, label: str, env_id: str, seed: int, steps: int) -> dict:
    return cached(cache, f"{label}-{env_id}-s{seed}-{steps}", run_one, label, env_id, seed, steps)


def run_one(label: str, env_id: str, seed: int, steps: int, block: int = 1000) -> dict:
    """One learner on one seeded env: per-block watch, clicks, regret; and steps/s."""
    import torch

    from rewind.agents import make_agent
    from rewind.envs import make_env

    torch.set_num_threads(1)
    name, cfg = LEARNERS[label]
    env = make_env(env_id, {"world_seed": seed})
    agent = make_agent(name, env, cfg, seed=seed)
    watch, click, regret = (np.zeros(steps) for _ in range(3))
    obs, _ = env.reset(seed=seed)
    t0 = time.perf_counter()
    for t in range(steps):
        a = agent.act(obs)
        nxt, r, term, trunc, info = env.step(a)
        agent.observe(obs, a, r, nxt, term, trunc, info)
        agent.update()
        watch[t], click[t] = info["watch_time"], info["click"]
        regret[t] = info["best_expected_reward"] - info["expected_reward"]
        obs, _ = env.reset()
    secs = time.perf_counter() - t0
    nb = steps // block
    per = lambda x: x[:nb * block].reshape(nb, block).mean(1).tolist()   # noqa: E731
    return {"label": label, "env": env_id, "seed": seed, "watch": per(watch), "ctr": per(click), "regret": per(regret),
            "total_watch": float(watch.sum()), "sps": steps / secs}


t_ci = t_interval   # one seed-t interval for every study (bench/stats.py)

def _fmt(x, digits=2) -> str:
    m, h = t_ci(x)
    return f"{m:.{digits}f} +- {h:.{digits}f}"


def table(runs: list[dict], steps: int) -> str:
    by = {}
    for r in runs:
        by.setdefault(r["label"], []).append(r)
    seeds = len(next(iter(by.values())))
    lines = [f"rewind/recsys-v0 (2,000 items), {steps} steps, {seeds} seeds (world and user stream seeded per seed); "
             "mean +- 95% t-interval over seeds. Watch time in minutes; regret = oracle's best expected watch "
             "time minus the pick's, per step.", "",
             "| learner | total watch time | watch / step, last 1k | click rate, last 1k | regret / step, all | "
             "regret / step, last 1k |", "|---|---|---|---|---|---|"]
    for label, rs in by.items():
        lines.append(f"| {label} | {_fmt([r['total_watch'] for r in rs], 0)} | {_fmt([r['watch'][-1] for r in rs])} "
                     f"| {_fmt([r['ctr'][-1] for r in rs], 3)} | {_fmt([np.mean(r['regret']) for r in rs])} | "
                     f"{_fmt([r['regret'][-1] for r in rs])} |")
    lines += ["", "Per 1k-step block (mean over seeds): watch / step; click rate; regret / step.", "",
              "| learner | " + " | ".join(f"{k + 1}k" for k in range(len(runs[0]["watch"]))) + " |",
              "|---" * (len(runs[0]["watch"]) + 1) + "|"]
    for label, rs in by.items():
        cells = [f"{np.mean([r['watch'][k] for r in rs]):.2f}; {np.mean([r['ctr'][k] for r in rs]):.3f}; "
                 f"{np.mean([r['regret'][k] for r in rs]):.2f}" for k in range(len(rs[0]["watch"]))]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
    by = {}
    for r in runs:
        by.setdefault(r["label"], []).append(r)
    for label, rs in by.items():
        for k, key in enumerate(("watch", "regret")):
            y = np.array([r[key] for r in rs])
            x = np.arange(1, y.shape[1] + 1)
            m, s = y.mean(0), y.std(0, ddof=1) / np.sqrt(len(y)) if len(y) > 1 else 0 * y.mean(0)
            ax[k].plot(x, m, label=label)
            ax[k].fill_between(x, m - 1.96 * s, m + 1.96 * s, alpha=0.15)
    ax[0].set(xlabel="steps (thousands)", ylabel="watch time per step (min)", title="watch time per 1k steps")
    ax[1].set(xlabel="steps (thousands)", ylabel="regret per step (min)", title="regret vs the oracle")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _cell(sps: float | None) -> str:
    return "-" if sps is None else f"{sps:.0f}"


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> int:
    from rewind.bench.markdown import write_result
    from rewind.files import atomic_write_text

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--learners", nargs="+", default=list(LEARNERS), choices=list(LEARNERS))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--speed", action="store_true", help="steps/s on rewind/recsys-10k-v0, one seed per learner")
    p.add_argument("--slate-learners", nargs="*", default=list(LEARNERS), choices=list(LEARNERS),
                   help="with --speed: these learners also on rewind/recsys-10k-slate5-v0 (slates of 5)")
    p.add_argument("--out", default=str(RESULTS_DIR))
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env_id = "rewind/recsys-10k-v0" if args.speed else "rewind/recsys-v0"
    seeds = [0] if args.speed else list(range(args.seeds))
    cache = None if args.speed else str(out / "runs" / "recsys_bandit")
    jobs = [(cache, label, env_id, s, args.steps) for s in seeds for label in args.learners]
    if args.speed:   # each learner's slate run right after its one-item run, so both see about the same load
        for label in args.slate_learners:
            at = max((i for i, j in enumerate(jobs) if j[1] == label), default=len(jobs) - 1)
            jobs.insert(at + 1, (cache, label, SLATE_10K, 0, args.steps))
    with ProcessPoolExecutor(args.workers) as pool:
        runs = list(pool.map(run_job, *zip(*jobs)))
    for r in runs:
        print(f"{r['label']:24s} {r['env']:28s} seed {r['seed']}  watch {r['total_watch']:9.0f}  "
              f"{r['sps']:7.0f} steps/s", flush=True)
    if args.speed:
        sps = {(r["label"], r["env"]): r["sps"] for r in runs}
        body = (f"Steps/s of the whole per-step loop (agent act + env step + observe + update) on "
                f"rewind/recsys-10k-v0 (10,000 items, one item per step) and {SLATE_10K} (10,000 items, slates "
                f"of 5: the env computes the exact best slate every step, the learners log 5 impressions), "
                f"{args.steps} steps (learning starts inside), one torch thread, {args.workers} runs at a time; "
                f"CPU: {cpu_name()}; load average at the end: {_load()}.\n\n"
                "| learner | steps/s, one item | steps/s, slate of 5 |\n|---|---|---|\n" +
                "\n".join(f"| {label} | {_cell(sps.get((label, env_id)))} | {_cell(sps.get((label, SLATE_10K)))} |"
                          for label in dict.fromkeys(r["label"] for r in runs)))
        write_result(out / "speed_10k.md", "Recommender learners: steps/s with a 10k-item catalogue",
                     "rewind.bench.studies.recsys_bandit", argv, body)
        atomic_write_text(out / "speed_10k.json", json.dumps(runs, indent=1))
        return 0
    atomic_write_text(out / "recsys_bandit.json", json.dumps(runs, indent=1))
    plot(runs, out / "recsys_bandit.png")
    write_result(out / "recsys_bandit.md", "Recommenders on rewind/recsys-v0", "rewind.bench.studies.recsys_bandit",
                 argv, table(runs, args.steps) + f"\n\nCPU: {cpu_name()}; figure: recsys_bandit.png.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
