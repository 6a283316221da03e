"""ENAS vs random search with weight sharing at equal wall-clock (issue 7, "Measure and report").

For one dataset and space: for each seed, run both strategies with the same time budget over
the same shared-weight model (derive 100, retrain from scratch, test accuracy); then the
Kendall tau between shared-weight validation accuracy and stand-alone test accuracy of 20
uniformly sampled architectures. Writes bench/results/enas/<data>_<space>.json.

    nice -n 10 python3 -m rewind.bench.studies.enas_study --data digits --space mlp --seeds 5 --budget 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results" / "enas"


def main(argv=None) -> int:
    from scipy.stats import mannwhitneyu, ttest_ind, wilcoxon

    from rewind.config import from_dict, load_yaml
    from rewind.controllers.enas_controller import ENASControllerConfig
    from rewind.run.search import SearchConfig, make_searcher, run_search, shared_vs_standalone
    from rewind.controllers.search_spaces import make_space
    from rewind.envs.nas import NASEnvConfig
    from rewind.envs.nas_data import load_nas_data

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="digits")
    ap.add_argument("--space", default="mlp")
    ap.add_argument("--preset", help="default enas_digits_<space>")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=20.0, help="search seconds per run (both strategies)")
    ap.add_argument("--n-train", type=int, help="shapes: training images (valid/test: half)")
    ap.add_argument("--tau-archs", type=int, default=20)
    ap.add_argument("--out", help="result file (default bench/results/enas/<data>_<space>.json)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    preset = load_yaml(args.preset or f"enas_digits_{args.space}")
    space = make_space(args.space, **preset.get("space", {}))
    agent_cfg = from_dict(ENASControllerConfig, preset.get("agent", {}), "agent")
    env_cfg = from_dict(NASEnvConfig, {**preset.get("env", {}), "phases": 10_000}, "env")
    search_cfg = from_dict(SearchConfig, {**preset.get("search", {}), "time_budget": args.budget}, "search")
    data = load_nas_data(args.data, n_train=args.n_train)
    runs = []
    for seed in range(args.seeds):
        for strategy in ("enas", "random"):
            t0 = time.perf_counter()
            r = run_search(space, data, strategy=strategy, agent_cfg=agent_cfg, env_cfg=env_cfg,
                           search_cfg=search_cfg, seed=seed)
            r["total_seconds"] = time.perf_counter() - t0
            runs.append(r)
            print(f"{args.data} {args.space} seed {seed} {strategy:6s} test {r['test_accuracy']:.4f} "
                  f"rewards {r['rewards']} phases {r['phases']} search {r['search_seconds']:.1f}s "
                  f"derive-best {r['derive_best_score']:.3f}", flush=True)
    acc = {s: np.array([r["test_accuracy"] for r in runs if r["strategy"] == s]) for s in ("enas", "random")}
    stats = {s: {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
                 "values": a.tolist()} for s, a in acc.items()}
    tests = {}
    if args.seeds > 1:
        tests["welch_t_p"] = float(ttest_ind(acc["enas"], acc["random"], equal_var=False).pvalue)
        tests["mann_whitney_p"] = float(mannwhitneyu(acc["enas"], acc["random"], alternative="two-sided").pvalue)
        if np.any(acc["enas"] != acc["random"]):
            tests["wilcoxon_paired_p"] = float(wilcoxon(acc["enas"], acc["random"]).pvalue)
    # Kendall tau: the supernet of a random-search run (uniform sampling, like Yu et al.) at the same budget.
    t0 = time.perf_counter()
    env, agent = make_searcher(space, data, "random", agent_cfg, env_cfg, seed=100)
    deadline = time.perf_counter() + args.budget
    while time.perf_counter() < deadline:
        env.train_shared()
    tau = shared_vs_standalone(env, space, data, args.tau_archs, search_cfg, seed=100)
    tau["seconds"] = time.perf_counter() - t0
    summary = {"data": args.data, "space": args.space, "space_params": space.params(), "budget_seconds": args.budget,
               "n_train": int(len(data.train_y)), "seeds": args.seeds, "test_accuracy": stats, "tests": tests,
               "kendall_tau": tau, "runs": runs, "torch_threads": 1}
    out = Path(args.out) if args.out else RESULTS / f"{args.data}_{args.space}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1, default=float))
    print(json.dumps({k: summary[k] for k in ("data", "space", "test_accuracy", "tests")}, default=float))
    print(f"kendall tau {tau['tau']:.3f} (p {tau['p_value']:.3g}) over {args.tau_archs} archs; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
