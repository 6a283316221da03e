"""Bag of Tricks ablation and local error signals vs backprop for the supervised learner.

Not a suite: it measures held-out test accuracy after epoch-based minibatch training of the
`supervised` learner (SupervisedAgent.fit_batch) on a fixed split, and wall time per epoch;
suites score agents on env streams (the bandit stream's metric is progressive accuracy).

Tricks are added cumulatively in He et al.'s order (their Table 6 / sections 3-5): baseline
(Adam, L2 1e-4 on every parameter, constant lr), + warmup (5 epochs), + no bias decay,
+ cosine decay, + label smoothing (eps 0.1), + mixup (alpha 0.2). Zero-gamma is not
applicable (the MLP body has no BatchNorm). Local losses run on the baseline recipe.

    python -m rewind.bench.studies.training_methods --seeds 5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from rewind.bench.stats import t_interval as ci95   # one seed-t interval for every study

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results" / "training_methods"


def recipes(steps_per_epoch: int, epochs: int) -> list[tuple[str, dict]]:
    warm = 5 * steps_per_epoch
    cfgs, cur = [], {"weight_decay": 1e-4}
    cfgs.append(("baseline", dict(cur)))
    for name, extra in [("+warmup", {"lr_warmup_steps": warm}), ("+no bias decay", {"no_bias_decay": True}),
                        ("+cosine", {"lr_schedule": "cosine", "lr_decay_steps": (epochs - 5) * steps_per_epoch}),
                        ("+label smoothing", {"label_smoothing": 0.1}), ("+mixup", {"mixup_alpha": 0.2})]:
        cur = {**cur, **extra}
        cfgs.append((name, dict(cur)))
    locals_ = [(f"local {k}", {"weight_decay": 1e-4, "local_loss": k})
               for k in ("pred", "sim", "predsim", "pred-bpf", "predsim-bpf")]
    return cfgs + locals_


def load(name: str, n_train: int):
    from rewind.envs.nas_data import load_digits_data, load_shapes_data
    d = load_digits_data() if name == "digits" else load_shapes_data("geom", n_train=n_train)
    return d.train_x.flatten(1), d.train_y, d.test_x.flatten(1), d.test_y, d.n_classes


def run_one(data, cfg: dict, hidden, epochs: int, batch: int, lr: float, seed: int) -> tuple[float, float]:
    from rewind.agents.bandit_neural import SupervisedAgent
    xtr, ytr, xte, yte, k = data
    c = SupervisedAgent.Config(hidden=tuple(hidden), lr=lr, batch_size=batch, **cfg)
    c.validate()
    agent = SupervisedAgent(gym.spaces.Box(-np.inf, np.inf, (xtr.shape[1],), np.float32), gym.spaces.Discrete(k),
                            c, seed=seed)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(ytr), generator=g)
        for i in range(0, len(ytr) - batch + 1, batch):
            j = perm[i:i + batch]
            agent.fit_batch(xtr[j], ytr[j])
    wall = (time.perf_counter() - t0) / epochs
    return float((agent.predict(xte) == yte).float().mean()), wall


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--datasets", default="digits,shapes")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--shapes-train", type=int, default=2000)
    ap.add_argument("--configs", default="all", help="all | recipe | local")
    ap.add_argument("--tag", default="", help="suffix of the dataset name in the results (e.g. a smaller budget)")
    ap.add_argument("--out", default=str(RESULTS_DIR))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for ds in args.datasets.split(","):
        data = load(ds, args.shapes_train)
        hidden, batch, lr = ((64, 64), 32, 1e-3) if ds == "digits" else ((128, 128), 32, 1e-3)
        spe = len(data[1]) // batch
        for name, cfg in recipes(spe, args.epochs):
            if args.configs != "all" and name.startswith("local") != (args.configs == "local"):
                continue
            for seed in range(args.seeds):
                key = f"{ds}{args.tag}|{name}|{seed}"
                if key in results:
                    continue
                acc, wall = run_one(data, cfg, hidden, args.epochs, batch, lr, seed)
                results[key] = {"acc": acc, "epoch_s": wall, "config": cfg}
                print(key, f"{acc:.4f} {wall:.3f}s/epoch", flush=True)
                path.write_text(json.dumps(results, indent=1))
    report(results, out)


def report(results: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows, groups = [], {}
    for key, r in results.items():
        ds, name, _ = key.split("|")
        groups.setdefault((ds, name), []).append(r)
    lines = ["| dataset | setting | seeds | test accuracy (mean +- 95% t-CI) | wall s/epoch (mean +- CI) |",
             "|---|---|---|---|---|"]
    for (ds, name), rs in groups.items():
        m, h = ci95([r["acc"] for r in rs])
        wm, wh = ci95([r["epoch_s"] for r in rs])
        lines.append(f"| {ds} | {name} | {len(rs)} | {m:.4f} +- {h:.4f} | {wm:.3f} +- {wh:.3f} |")
        rows.append((ds, name, m, h))
    (out / "table.md").write_text("\n".join(lines) + "\n")
    dss = sorted({r[0] for r in rows})
    fig, axes = plt.subplots(1, len(dss), figsize=(6 * len(dss), 4), squeeze=False)
    for ax, ds in zip(axes[0], dss):
        rr = [r for r in rows if r[0] == ds]
        ax.errorbar(range(len(rr)), [r[2] for r in rr], yerr=[r[3] for r in rr], fmt="o", capsize=3)
        ax.set_xticks(range(len(rr)), [r[1] for r in rr], rotation=60, ha="right", fontsize=8)
        ax.set_title(f"{ds}: test accuracy, 95% CI")
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=100)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
