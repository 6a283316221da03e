"""Retraining an ENAS-derived architecture with and without the Bag of Tricks recipe, or with
local error signals instead of backprop (digits).

Not a suite: supervised retraining of fixed architectures (no env, no agent loop).

The architectures are the ones ENAS derived in seed 0 of the digits studies
(bench/results/enas/digits_macro.json and digits_mlp.json, arm "enas"); each is retrained
from scratch by `rewind.run.search.retrain` with the search section of its preset
(configs/enas_digits_macro.yaml, enas_digits_mlp.yaml: SGD Nesterov, cosine lr, L2 1e-4 on
every parameter), for --seeds seeds per arm:

- baseline: the preset (already a cosine schedule, as the ENAS code retrains);
- recipe without mixup: + linear warmup over 10% of the epochs (paper: 5 of 120), no bias
  decay, label smoothing eps 0.1;
- recipe: the same + mixup alpha 0.2.

    python -m rewind.bench.studies.enas_recipe --seeds 5

With ``--compare local`` the arms are instead global backprop (the preset) against each local
error signal (`search.retrain_local_loss`: pred, sim, predsim, pred-bpf, predsim-bpf; every
stem/layer/cell trained by its own loss, the head by the global loss), and for the macro CNN the
pred kinds again with global-average-pooled local heads (`retrain_local_max_features: 1`, the
pooling of the child's own classifier head, instead of the authors' pooling to <= 2048 features):

    python -m rewind.bench.studies.enas_recipe --seeds 5 --compare local
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from rewind.bench.stats import t_interval
from rewind.files import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).resolve().parents[1] / "results"
OUT = RESULTS / "training_methods"


COMPARISONS = ("recipe", "local")


def arms(epochs: int, compare: str = "recipe", space: str = "macro") -> list[tuple[str, dict]]:
    """(name, search.* overrides) per arm; the first arm is the reference of the paired differences."""
    if compare == "local":
        kinds = [(k, {"retrain_local_loss": k}) for k in ("pred", "sim", "predsim", "pred-bpf", "predsim-bpf")]
        gap = [(f"{k}, GAP head", {"retrain_local_loss": k, "retrain_local_max_features": 1})
               for k in ("pred", "predsim", "pred-bpf")]
        return [("backprop", {})] + kinds + (gap if space == "macro" else [])
    warm = max(1, round(0.1 * epochs))
    tricks = {"retrain_warmup_epochs": warm, "retrain_no_bias_decay": True, "retrain_label_smoothing": 0.1}
    return [("baseline", {}), ("recipe without mixup", tricks), ("recipe", {**tricks, "retrain_mixup_alpha": 0.2})]


def main(argv=None):
    from rewind.config import CONFIG_DIR, from_dict, load_yaml
    from rewind.controllers.search_spaces import make_space
    from rewind.envs.nas_data import load_nas_data
    from rewind.run.search import SearchConfig, retrain

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--spaces", default="macro,mlp")
    ap.add_argument("--compare", choices=COMPARISONS, default="recipe",
                    help="recipe: Bag of Tricks arms; local: local error signals vs backprop")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    path = out / f"enas_{args.compare}.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    data = load_nas_data("digits")
    for space_name in args.spaces.split(","):
        derived = next(r for r in json.loads((RESULTS / "enas" / f"digits_{space_name}.json").read_text())["runs"]
                       if r["strategy"] == "enas" and r["seed"] == 0)["arch"]
        space = make_space(space_name, **derived["params"])
        arch = space.encode(derived["arch"])
        base = load_yaml(CONFIG_DIR / f"enas_digits_{space_name}.yaml")["search"]
        epochs = base.get("retrain_epochs", SearchConfig.retrain_epochs)
        for name, extra in arms(epochs, args.compare, space_name):
            cfg = from_dict(SearchConfig, {**base, **extra}, "search")
            cfg.validate()
            for seed in range(args.seeds):
                key = f"{space_name}|{name}|{seed}"
                if key in results:
                    continue
                r = retrain(space, arch, data, cfg, seed)
                results[key] = {"test_accuracy": r["test_accuracy"], "valid_accuracy": r["valid_accuracy"],
                                "retrain_seconds": r["retrain_seconds"], "epochs": epochs, "search": {**base, **extra},
                                "arch": derived["arch"]}
                print(key, f"{r['test_accuracy']:.4f}", f"{r['retrain_seconds']:.1f}s", flush=True)
                atomic_write_json(path, results)
    report(results, out, args.compare)


def report(results: dict, out: Path, compare: str = "recipe") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups: dict = {}
    for key, r in results.items():
        space, name, _ = key.split("|")
        groups.setdefault(space, {}).setdefault(name, []).append(r)
    ref = arms(1, compare)[0][0]
    lines = ["| derived arch | retraining | seeds | test accuracy (mean +- 95% t-CI) | valid accuracy (mean +- CI) "
             f"| paired difference to {ref} (mean +- t-CI) | retrain s | s per epoch |",
             "|---|---|---|---|---|---|---|---|"]
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.6), squeeze=False)
    for ax, (space, by_arm) in zip(axes[0], groups.items()):
        base = np.array([r["test_accuracy"] for r in by_arm[ref]])
        pts = []
        for name, rs in by_arm.items():
            x = np.array([r["test_accuracy"] for r in rs])
            m, h = t_interval(x)
            vm, vh = t_interval([r["valid_accuracy"] for r in rs])
            diff = "-" if name == ref or len(x) != len(base) else "{:+.4f} +- {:.4f}".format(*t_interval(x - base))
            secs = np.mean([r["retrain_seconds"] for r in rs])
            per_epoch = np.mean([r["retrain_seconds"] / r["epochs"] for r in rs]) if "epochs" in rs[0] else float("nan")
            lines.append(f"| {space} | {name} | {len(rs)} | {m:.4f} +- {h:.4f} | {vm:.4f} +- {vh:.4f} | {diff} | "
                         f"{secs:.1f} | {per_epoch:.2f} |")
            pts.append((name, m, h))
        ax.errorbar(range(len(pts)), [p[1] for p in pts], yerr=[p[2] for p in pts], fmt="o", capsize=3)
        ax.set_xticks(range(len(pts)), [p[0] for p in pts], rotation=20, ha="right", fontsize=8)
        ax.set_title(f"ENAS-derived {space} on digits: test acc, 95% CI", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / f"enas_{compare}.png", dpi=100)
    atomic_write_text(out / f"enas_{compare}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
