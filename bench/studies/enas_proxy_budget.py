"""Proxy quality against supernet training length (issue 15): Kendall tau (bootstrap 95% CI) between
shared-weight validation accuracy and the stand-alone test accuracy that ``enas_study`` stored for
its uniform architectures, for supernets trained uniformly for several budgets of optimizer steps.

Not a suite: ENAS proxy quality against supernet budget (Kendall tau of shared-weight vs stored
stand-alone accuracies); no agent is evaluated on an env.

    nice -n 10 python3 -m rewind.bench.studies.enas_proxy_budget --name digits_mlp_bottleneck \
        --set space.widths=[2,4,8,64] --budgets 340 1360 2720
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from rewind.bench.studies.enas_study import RESULTS


def main(argv=None) -> int:
    from rewind.config import from_dict, load_yaml, merge, parse_set
    from rewind.controllers.enas_controller import ENASControllerConfig
    from rewind.controllers.search_spaces import make_space
    from rewind.envs.nas import NASEnvConfig, evaluate_split
    from rewind.envs.nas_data import load_nas_data
    from rewind.run.search import kendall_tau_ci, make_searcher

    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--space", default="mlp")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--budgets", type=int, nargs="+", required=True)
    ap.add_argument("--seeds", type=int, default=3, help="supernet seeds per budget")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rec = [json.loads(line) for line in (RESULTS / f"{args.name}.runs.jsonl").read_text().splitlines()]
    tau_rec = next(r for r in rec if r["arm"] == "tau")
    preset = merge(load_yaml(f"enas_{args.data}_{args.space}"), parse_set(args.set))
    space = make_space(args.space, **preset.get("space", {}))
    data = load_nas_data(args.data)
    archs = [space.encode(a) for a in tau_rec["archs"]]
    out = []
    for budget in args.budgets:
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            env_cfg = from_dict(NASEnvConfig, {**preset.get("env", {}), "budget_steps": budget}, "env")
            env, _ = make_searcher(space, data, "random", ENASControllerConfig(), env_cfg, seed=200 + seed)
            while env.child_steps_done < env.total_child_steps:
                env.train_shared()
            shared = [evaluate_split(env.model, data, "valid", a)["score"] for a in archs]
            t = kendall_tau_ci(shared, tau_rec["standalone"], seed=seed)
            out.append({"budget_steps": budget, "seed": 200 + seed, **t, "shared": shared,
                        "seconds": time.perf_counter() - t0})
            print(f"budget {budget} seed {seed}: tau {t['tau']:.3f} [{t['ci_low']:.3f}, {t['ci_high']:.3f}]", flush=True)
    (RESULTS / f"{args.name}_proxy_budget.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
