"""ENAS vs random search with weight sharing vs random architectures without search, at equal compute.

Not a suite: search methods compared at equal shared-weight compute, derived architectures retrained
and tested on a dataset (test accuracy, Kendall tau); no agent is evaluated on an env.

For one dataset and space (issue 15, "Measure and report"), per seed:

- ``enas`` and ``random`` (random search with weight sharing): the same ``--budget`` of
  shared-weight optimizer steps and the same number of scored samples (phases x
  env.controller_steps), derive ``derive_samples`` candidates, retrain the best from scratch, test;
- ``none`` (no search): one uniformly drawn architecture retrained from scratch and tested.

Then the search signal of the task: the spread of stand-alone test accuracy over ``--tau-archs``
uniform architectures against the seed noise of one architecture retrained ``--noise-seeds``
times; and the proxy quality: Kendall tau (bootstrap 95% CI) between the shared-weight validation
accuracy (a supernet trained uniformly for the same budget) and that stand-alone accuracy.
Every finished run is appended to ``<out>.runs.jsonl`` at once, and a rerun skips runs already
there (resume after an interruption). Writes bench/results/enas/<name>.json.

    nice -n 10 python3 -m rewind.bench.studies.enas_study --data digits --space mlp \
        --set space.widths=[2,4,8,64] --budget 340 --seeds 10 --name digits_mlp_bottleneck
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parents[1] / "results" / "enas"
ARMS = ("enas", "random", "none")


def _boot_ci(x, n=5000, seed=0):
    x = np.asarray(x, float)
    rng = np.random.default_rng(seed)
    m = x[rng.integers(0, len(x), (n, len(x)))].mean(1)
    return [float(np.quantile(m, 0.025)), float(np.quantile(m, 0.975))]


def _plot(done, seeds, path):
    """Per-phase controller entropy (ENAS) and mean reward (ENAS, random), one thin line per seed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for arm, colour in (("enas", "C0"), ("random", "C1")):
        for s in seeds:
            h = done[(arm, s)].get("history", [])
            x = [e["phase"] for e in h]
            if arm == "enas":
                axes[0].plot(x, [e.get("controller_entropy", np.nan) for e in h], colour, lw=0.7, alpha=0.7)
            axes[1].plot(x, [e["mean_reward"] for e in h], colour, lw=0.7, alpha=0.7,
                         label=arm if s == seeds[0] else None)
    axes[0].set(xlabel="phase", ylabel="controller entropy (nats)", title="ENAS entropy per phase")
    axes[1].set(xlabel="phase", ylabel="mean shared-weight reward", title="reward per phase")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    from scipy.stats import wilcoxon

    from rewind.config import from_dict, load_yaml, merge, parse_set
    from rewind.controllers.enas_controller import ENASControllerConfig
    from rewind.controllers.search_spaces import make_space
    from rewind.envs.nas import NASEnvConfig
    from rewind.envs.nas_data import load_nas_data
    from rewind.run.search import SearchConfig, kendall_tau_ci, make_searcher, retrain, run_search

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--space", default="mlp")
    ap.add_argument("--preset", help="default enas_digits_<space>")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget", type=int, required=True, help="shared-weight optimizer steps per search (all arms)")
    ap.add_argument("--n-train", type=int, help="shapes: training images")
    ap.add_argument("--tau-archs", type=int, default=20)
    ap.add_argument("--noise-seeds", type=int, default=5)
    ap.add_argument("--name", help="result name (default <data>_<space>)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    preset = merge(load_yaml(args.preset or f"enas_digits_{args.space}"), parse_set(args.set))
    space = make_space(args.space, **preset.get("space", {}))
    agent_cfg = from_dict(ENASControllerConfig, preset.get("agent", {}), "agent")
    env_dict = {**preset.get("env", {}), "budget_steps": args.budget}
    search_cfg = from_dict(SearchConfig, preset.get("search", {}), "search")
    data = load_nas_data(args.data, n_train=args.n_train) if args.n_train else load_nas_data(args.data)
    name = args.name or f"{args.data}_{args.space}"
    out = RESULTS / f"{name}.json"
    log = RESULTS / f"{name}.runs.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if log.exists():
        for line in log.read_text().splitlines():
            r = json.loads(line)
            done[(r["arm"], r["seed"])] = r

    def record(r):
        done[(r["arm"], r["seed"])] = r
        with log.open("a") as f:
            f.write(json.dumps(r, default=float) + "\n")

    for seed in range(args.seeds):
        for arm in ARMS:
            if (arm, seed) in done:
                continue
            t0 = time.perf_counter()
            if arm == "none":
                arch = space.random(np.random.default_rng(10_000 + seed))
                r = retrain(space, arch, data, search_cfg, seed)
                r.update(arch=space.to_json(arch), shared_steps=0, controller_samples=0)
            else:
                r = run_search(space, data, strategy=arm, agent_cfg=agent_cfg,
                               env_cfg=from_dict(NASEnvConfig, env_dict, "env"), search_cfg=search_cfg, seed=seed)
            r.update(arm=arm, seed=seed, total_seconds=time.perf_counter() - t0)
            record(r)
            print(f"{name} seed {seed} {arm:6s} test {r['test_accuracy']:.4f} shared steps {r['shared_steps']} "
                  f"samples {r['controller_samples']} {r['total_seconds']:.0f}s", flush=True)
    seeds = [s for s in range(args.seeds) if all((a, s) in done for a in ARMS)]
    acc = {a: np.array([done[(a, s)]["test_accuracy"] for s in seeds]) for a in ARMS}
    stats = {a: {"mean": float(v.mean()), "ci95": _boot_ci(v) if len(v) > 1 else None,
                 "std": float(v.std(ddof=1)) if len(v) > 1 else None, "values": v.tolist()} for a, v in acc.items()}
    tests = {}
    for a, b in (("enas", "random"), ("enas", "none"), ("random", "none")):
        d = acc[a] - acc[b]
        tests[f"{a}-{b}"] = {"mean_diff": float(d.mean()) if len(d) else None,
                             "ci95": _boot_ci(d) if len(d) > 1 else None,
                             "wilcoxon_p": float(wilcoxon(acc[a], acc[b]).pvalue) if len(d) > 1 and np.any(d) else None}

    # signal and proxy: a uniformly trained supernet at the same budget; uniform archs retrained
    if ("tau", 0) not in done:
        t0 = time.perf_counter()
        env, _ = make_searcher(space, data, "random", agent_cfg, from_dict(NASEnvConfig, env_dict, "env"), seed=100)
        while env.child_steps_done < env.total_child_steps:
            env.train_shared()
        from rewind.envs.nas import evaluate_split
        rng = np.random.default_rng(1099)
        archs = [space.random(rng) for _ in range(args.tau_archs)]
        shared = [evaluate_split(env.model, data, "valid", a)["score"] for a in archs]
        alone = [retrain(space, a, data, search_cfg, 100 + i)["test_accuracy"] for i, a in enumerate(archs)]
        noise = [retrain(space, archs[0], data, search_cfg, 500 + i)["test_accuracy"] for i in range(args.noise_seeds)]
        record({"arm": "tau", "seed": 0, "shared": shared, "standalone": alone, "noise_arch": space.to_json(archs[0]),
                "noise": noise, "archs": [space.to_json(a)["arch"] for a in archs],
                "seconds": time.perf_counter() - t0})
    t = done[("tau", 0)]
    tau = kendall_tau_ci(t["shared"], t["standalone"])
    signal = {"standalone_std_over_archs": float(np.std(t["standalone"], ddof=1)),
              "standalone_range": [float(min(t["standalone"])), float(max(t["standalone"]))],
              "seed_noise_std_one_arch": float(np.std(t["noise"], ddof=1)), "noise": t["noise"]}
    entropy = {a: [[h.get("controller_entropy") for h in done[(a, s)].get("history", [])] for s in seeds]
               for a in ("enas",)}
    summary = {"data": args.data, "space": args.space, "space_params": space.params(), "budget_steps": args.budget,
               "sets": args.set, "seeds_complete": seeds, "test_accuracy": stats, "paired": tests,
               "kendall_tau": tau, "signal": signal, "torch_threads": 1, "controller_entropy_per_phase": entropy,
               "controller_samples": {a: done[(a, seeds[0])]["controller_samples"] for a in ARMS} if seeds else {}}
    out.write_text(json.dumps(summary, indent=1, default=float))
    _plot(done, seeds, RESULTS / f"{name}_phases.png")
    print(json.dumps({k: summary[k] for k in ("test_accuracy", "paired", "kendall_tau", "signal")}, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
