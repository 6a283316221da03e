"""Bag of Tricks ablation and local error signals vs backprop for the supervised learner.

Not a suite: it measures held-out test accuracy after epoch-based minibatch training of the
`supervised` learner (SupervisedAgent.fit_batch) on a fixed split, and wall time per epoch;
suites score agents on env streams (the bandit stream's metric is progressive accuracy).

Tricks are added cumulatively in He et al.'s order (their Table 6 / sections 3-5): baseline
(Adam, L2 1e-4 on every parameter, constant lr), + warmup (5 epochs), + no bias decay,
+ cosine decay, + label smoothing (eps 0.1), + mixup (alpha 0.2). Zero-gamma is not
applicable (the MLP body has no BatchNorm). Local losses run on the baseline recipe.

    python -m rewind.bench.studies.training_methods --seeds 5

Cost of local losses vs backprop (`--cost`): each (dataset, setting, seed) trains --cost-epochs
epochs in a fresh process on the same data (saved once to a .npy file, so the child's peak RSS
is not the data generator's) and reports wall time per epoch and two peak-memory figures:
- peak saved activations: the most bytes autograd held at once for backward
  (torch.autograd.graph.saved_tensors_hooks; storages counted once, parameters left out): the
  memory local losses free layer by layer. Exact and load-independent; proportional to the batch.
- peak RSS growth: the process's RSS high-water mark during training (VmHWM of
  /proc/self/status, reset by writing 5 to /proc/self/clear_refs just before the first batch)
  minus the RSS at that moment (data loaded, learner built): the whole process, including
  optimizer state, allocator caching and first-call initialisation, at page resolution.
  (getrusage's ru_maxrss cannot be reset: the transient peak of loading the data hid the
  training's growth on GeomShapes.)
tracemalloc is not used: it sees Python allocations only, not torch's tensor memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from rewind.bench.stats import t_interval as ci95   # one seed-t interval for every study
from rewind.files import atomic_write_json, atomic_write_text

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
    wall = fit_epochs(agent, xtr, ytr, epochs, batch, seed)
    return float((agent.predict(xte) == yte).float().mean()), wall


def fit_epochs(agent, xtr, ytr, epochs: int, batch: int, seed: int) -> float:
    """Train on shuffled minibatches (the last partial one dropped); wall seconds per epoch."""
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(ytr), generator=g)
        for i in range(0, len(ytr) - batch + 1, batch):
            j = perm[i:i + batch]
            agent.fit_batch(xtr[j], ytr[j])
    return (time.perf_counter() - t0) / epochs


class SavedActivationPeak:
    """Peak bytes of the tensors autograd saves for backward, as a saved_tensors_hooks pair.

    Each saved tensor is wrapped in a holder whose finalizer runs when autograd drops it (after
    backward, or when the graph is freed); storages are counted once however often they are
    saved, and the storages of `params` (alive anyway) are not counted."""

    class _Held:
        __slots__ = ("t", "__weakref__")

        def __init__(self, t):
            self.t = t

    def __init__(self, params):
        self.skip = {p.untyped_storage().data_ptr() for p in params}
        self.count: dict[int, int] = {}
        self.live = self.peak = 0

    def pack(self, t):
        st = t.untyped_storage()
        key, size = st.data_ptr(), st.nbytes()
        if key in self.skip:
            return t
        if self.count.get(key, 0) == 0:
            self.live += size
            self.peak = max(self.peak, self.live)
        self.count[key] = self.count.get(key, 0) + 1
        held = self._Held(t)
        weakref.finalize(held, self._release, key, size)
        return held

    def _release(self, key, size):
        self.count[key] -= 1
        if self.count[key] == 0:
            del self.count[key]
            self.live -= size

    @staticmethod
    def unpack(h):
        return h.t if isinstance(h, SavedActivationPeak._Held) else h

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)


def proc_status_kib(field: str) -> int:
    """A kB field of /proc/self/status (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def cost_one(npz: str, cfg: dict, hidden, epochs: int, batch: int, lr: float, seed: int) -> dict:
    """Train `epochs` epochs on the arrays in `npz` (x, y, k); wall s/epoch and the peak memory
    figures of the module docstring. Meant for a fresh process (see --cost)."""
    from rewind.agents.bandit_neural import SupervisedAgent
    d = np.load(npz)
    xtr, ytr, k = torch.from_numpy(d["x"]), torch.from_numpy(d["y"]), int(d["k"])
    c = SupervisedAgent.Config(hidden=tuple(hidden), lr=lr, batch_size=batch, **cfg)
    c.validate()
    agent = SupervisedAgent(gym.spaces.Box(-np.inf, np.inf, (xtr.shape[1],), np.float32), gym.spaces.Discrete(k),
                            c, seed=seed)
    meter = SavedActivationPeak([p for m in vars(agent).values() if isinstance(m, torch.nn.Module)
                                 for p in m.parameters()])
    Path("/proc/self/clear_refs").write_text("5")     # reset the RSS high-water mark (Linux >= 4.0)
    rss0 = proc_status_kib("VmRSS")
    with meter.hooks():
        wall = fit_epochs(agent, xtr, ytr, epochs, batch, seed)
    return {"epoch_s": wall, "saved_peak_bytes": meter.peak, "rss_growth_kib": proc_status_kib("VmHWM") - rss0, "batch": batch,
            "epochs": epochs}


def cost(args, out: Path) -> None:
    """Fresh process per (dataset, setting, seed): backprop (the baseline recipe) vs the local losses."""
    path = out / "cost.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for ds in args.datasets.split(","):
            xtr, ytr, _, _, k = load(ds, args.shapes_train)
            npz = f"{tmp}/{ds}.npz"
            np.savez(npz, x=xtr.numpy(), y=ytr.numpy(), k=k)
            hidden, batch, lr = ((64, 64), 32, 1e-3) if ds == "digits" else ((128, 128), 32, 1e-3)
            for name, cfg in recipes(len(ytr) // batch, args.epochs):
                if name != "baseline" and not name.startswith("local"):
                    continue
                for seed in range(args.seeds):
                    key = f"{ds}|{'backprop' if name == 'baseline' else name}|{seed}"
                    if key in results:
                        continue
                    code = ("import json, sys; from rewind.bench.studies.training_methods import cost_one; "
                            "print(json.dumps(cost_one(*json.loads(sys.argv[1]))))")
                    arg = json.dumps([npz, cfg, hidden, args.cost_epochs, batch, lr, seed])
                    r = subprocess.run([sys.executable, "-c", code, arg], check=True, capture_output=True, text=True)
                    results[key] = json.loads(r.stdout.strip().splitlines()[-1])
                    print(key, results[key], flush=True)
                    atomic_write_json(path, results)
    report_cost(results, out)


def report_cost(results: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups: dict = {}
    for key, r in results.items():
        ds, name, _ = key.split("|")
        groups.setdefault((ds, name), []).append(r)
    lines = ["| dataset | training | seeds | epochs timed | wall s/epoch (mean +- 95% t-CI; shared loaded machine) "
             "| peak saved activations, KiB per batch of 32 (mean +- CI) | peak RSS growth, MiB (mean +- CI) |",
             "|---|---|---|---|---|---|---|"]
    rows = []
    for (ds, name), rs in groups.items():
        w = ci95([r["epoch_s"] for r in rs])
        a = ci95([r["saved_peak_bytes"] / 1024 for r in rs])
        m = ci95([r["rss_growth_kib"] / 1024 for r in rs])
        lines.append(f"| {ds} | {name} | {len(rs)} | {rs[0]['epochs']} | {w[0]:.3f} +- {w[1]:.3f} | "
                     f"{a[0]:.1f} +- {a[1]:.1f} | {m[0]:.2f} +- {m[1]:.2f} |")
        rows.append((ds, name, w, a, m))
    atomic_write_text(out / "cost.md", "\n".join(lines) + "\n")
    dss = sorted({r[0] for r in rows})
    fig, axes = plt.subplots(len(dss), 3, figsize=(15, 3.6 * len(dss)), squeeze=False)
    for row, ds in zip(axes, dss):
        rr = [r for r in rows if r[0] == ds]
        for ax, i, title in zip(row, (2, 3, 4), ("wall s/epoch (loaded machine)", "peak saved activations, KiB",
                                                 "peak RSS growth, MiB")):
            ax.bar(range(len(rr)), [r[i][0] for r in rr], yerr=[r[i][1] for r in rr], capsize=3)
            ax.set_xticks(range(len(rr)), [r[1] for r in rr], rotation=45, ha="right", fontsize=8)
            ax.set_title(f"{ds}: {title}, 95% CI", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "cost.png", dpi=100)
    print("\n".join(lines))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--datasets", default="digits,shapes")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--shapes-train", type=int, default=2000)
    ap.add_argument("--configs", default="all", help="all | recipe | local")
    ap.add_argument("--tag", default="", help="suffix of the dataset name in the results (e.g. a smaller budget)")
    ap.add_argument("--out", default=str(RESULTS_DIR))
    ap.add_argument("--cost", action="store_true", help="measure wall time and peak memory of backprop vs the "
                    "local losses (fresh process per run) instead of accuracy")
    ap.add_argument("--cost-epochs", type=int, default=3, help="--cost: epochs timed per run")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.cost:
        return cost(args, out)
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
