"""Switch-epoch experiment of Bengio et al. 2009 on BasicShapes -> GeomShapes.

Not a suite: supervised training of an MLP on image datasets (every condition x seed as one
batched network), with no env and no agent.

Train a 3-hidden-layer MLP by SGD on the NLL: BasicShapes before the switch epoch, GeomShapes
after it; report the GeomShapes test error. Controls:

- ``mixed``: the union of BasicShapes and GeomShapes, shuffled, from the first step.
- ``random``: the same two-phase schedule as the largest switch epoch, but phase 1 draws from
  a random half of the union instead of the easy half (random-order control, Wu et al. 2021).

Every condition makes the same number of SGD updates (an "epoch" is 10,000 examples, the
size of one training set). Models of one seed start from the same weights in every
condition, so conditions are compared pairwise by seed. All models (conditions x seeds) are
trained at once as one batched network (torch.bmm), which is what makes this fit on a CPU.

The reported error is the test error at the epoch of best validation error (early stopping,
as in the paper); the final-epoch test error is in the CSV too.

    python -m rewind.bench.studies.curriculum_shapes --seeds 10 --scale 4 --out bench/results/curriculum
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch

from rewind.envs.shapes import shapes_split
from rewind.errors import RewindError, require

EPOCH = 10_000  # examples per epoch: one training set


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="python -m rewind.bench.studies.curriculum_shapes",
                                          description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=10, help="seeds per condition (paper: 20)")
    p.add_argument("--epochs", type=int, default=256, help="total epochs before scaling (paper: 256)")
    p.add_argument("--switch", type=int, nargs="+", default=[0, 2, 8, 32, 128],
                   help="switch epochs before scaling (paper: 0, 2, 4, ..., 128)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="divide --epochs and --switch by this factor to fit the compute budget")
    p.add_argument("--controls", nargs="*", default=["mixed", "random"], choices=["mixed", "random"])
    p.add_argument("--hidden", type=int, nargs=3, default=[64, 64, 64], help="widths of the 3 hidden layers")
    p.add_argument("--activation", choices=["tanh", "relu"], default="tanh")
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (no momentum)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--input-norm", choices=["none", "center", "image"], default="image",
                   help="center: x - 0.5; image: each image standardised to mean 0, sd 1")
    p.add_argument("--eval-every", type=float, default=1.0, help="evaluate every this many (scaled) epochs")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the generated datasets")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench/results/curriculum", help="table, CSV and PNG go here")
    p.add_argument("--logdir", default=None, help="TensorBoard directory (default: <out>/tb)")
    p.add_argument("--no-progress", action="store_true")
    return p


def _conditions(args) -> list[tuple[str, float, str]]:
    """(name, switch epoch after scaling, phase-1 pool) for every condition."""
    conds = [(f"switch-{s}", s / args.scale, "basic") for s in args.switch]
    if "mixed" in args.controls:
        conds.append(("mixed", 0.0, "mixed"))
    if "random" in args.controls:
        s = max(args.switch)
        conds.append((f"random-{s}", s / args.scale, "random"))
    return conds


def _norm(x: np.ndarray, how: str) -> np.ndarray:
    if how == "center":
        return x - 0.5
    if how == "image":
        return (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-6)
    return x


class _Stream:
    """Endless shuffled passes over an index pool (one per model and phase)."""

    def __init__(self, pool: np.ndarray, rng: np.random.Generator):
        self.pool, self.rng, self.buf = pool, rng, np.empty(0, np.int64)

    def take(self, k: int) -> np.ndarray:
        while len(self.buf) < k:
            self.buf = np.concatenate([self.buf, self.rng.permutation(self.pool)])
        out, self.buf = self.buf[:k], self.buf[k:]
        return out


def next_chunk(streams1, streams2, switch_at, pos: int, chunk: int) -> np.ndarray:
    """(M, chunk) example indices for sample positions pos .. pos+chunk-1 of every model:
    phase-1 stream before the model's switch position, phase-2 stream from it on."""
    rows = []
    for s1, s2, sw in zip(streams1, streams2, switch_at):
        n1 = int(np.clip(sw - pos, 0, chunk))
        rows.append(np.concatenate([s1.take(n1), s2.take(chunk - n1)]))
    return np.stack(rows)


class BatchedMLP:
    """M independent MLPs evaluated with bmm; weights (M, fan_in, fan_out), Glorot-uniform init."""

    def __init__(self, n_models: int, sizes: list[int], init_seeds: list[int], activation: str):
        self.act = torch.tanh if activation == "tanh" else torch.relu
        self.W, self.b = [], []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            w = torch.empty(n_models, fan_in, fan_out)
            for m, s in enumerate(init_seeds):
                g = torch.Generator().manual_seed(int(s) * 1000 + len(self.W))
                w[m].uniform_(-bound, bound, generator=g)
            self.W.append(w.requires_grad_())
            self.b.append(torch.zeros(n_models, 1, fan_out, requires_grad=True))

    def params(self):
        return self.W + self.b

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for i, (w, b) in enumerate(zip(self.W, self.b)):
            x = torch.baddbmm(b, x, w)
            if i < len(self.W) - 1:
                x = self.act(x)
        return x


def run(args) -> dict:
    if args.scale <= 0 or args.seeds < 1 or args.epochs < 1 or args.batch < 1 or args.lr <= 0:
        raise RewindError("--scale, --seeds, --epochs, --batch and --lr must be positive")
    if any(s < 0 or s > args.epochs for s in args.switch):
        raise RewindError(f"--switch epochs must lie in [0, --epochs={args.epochs}]")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    writer = SummaryWriter(args.logdir or str(out / "tb"))
    basic = shapes_split("basic", "train", args.data_seed)
    geom = shapes_split("geom", "train", args.data_seed)
    valid = shapes_split("geom", "valid", args.data_seed)
    test = shapes_split("geom", "test", args.data_seed)
    pool_x = torch.from_numpy(_norm(np.concatenate([basic.flat()[0], geom.flat()[0]]), args.input_norm))
    pool_y = torch.from_numpy(np.concatenate([basic.y, geom.y]))
    n_b = len(basic)
    basic_idx, geom_idx, all_idx = np.arange(n_b), np.arange(n_b, len(pool_y)), np.arange(len(pool_y))

    conds = _conditions(args)
    models = [(c, s) for c in conds for s in range(args.seeds)]
    M = len(models)
    streams1, streams2, switch_at = [], [], []
    for (name, sw, pool), seed in models:
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        if pool == "basic":
            p1, p2 = basic_idx, geom_idx
        elif pool == "mixed":
            p1, p2 = all_idx, all_idx
        else:  # random half of the union, same size as BasicShapes
            p1, p2 = np.random.default_rng([seed, 7]).permutation(all_idx)[:n_b], geom_idx
        streams1.append(_Stream(p1, rng))
        streams2.append(_Stream(p2, rng))
        switch_at.append(int(round(sw * EPOCH)) if pool != "mixed" else 0)

    net = BatchedMLP(M, [pool_x.shape[1], *args.hidden, 3], [s for _, s in models], args.activation)
    opt = torch.optim.SGD(net.params(), lr=args.lr)
    total_epochs = args.epochs / args.scale
    n_steps = int(round(total_epochs * EPOCH)) // args.batch
    eval_every = max(1, int(round(args.eval_every * EPOCH)) // args.batch)
    best_valid = np.full(M, np.inf)
    test_at_best = np.full(M, np.nan)
    last_test = np.full(M, np.nan)
    vx, vy = torch.from_numpy(_norm(valid.flat()[0], args.input_norm)), torch.from_numpy(valid.y)
    tx, ty = torch.from_numpy(_norm(test.flat()[0], args.input_norm)), torch.from_numpy(test.y)
    chunk = 4096  # examples per step fetched ahead, so index generation is not per step

    def errors(x, y):
        with torch.no_grad():
            wrong = torch.zeros(M)
            for lo in range(0, len(y), 1000):
                xb = x[lo:lo + 1000].unsqueeze(0).expand(M, -1, -1)
                wrong += (net(xb).argmax(-1) != y[lo:lo + 1000]).float().sum(1)
        return (wrong / len(y)).numpy()

    t0 = time.time()
    pos = 0  # samples consumed so far per model (same for all)
    idx_buf = np.empty((M, 0), np.int64)
    bar = tqdm(total=n_steps, desc="switch-epoch", unit="step", disable=args.no_progress, mininterval=2)
    for step in range(n_steps):
        if idx_buf.shape[1] < args.batch:
            idx_buf = np.concatenate([idx_buf, next_chunk(streams1, streams2, switch_at, pos, chunk)], axis=1)
            pos += chunk
        idx, idx_buf = torch.from_numpy(idx_buf[:, :args.batch]), idx_buf[:, args.batch:]
        logits = net(pool_x[idx])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 3), pool_y[idx].reshape(-1),
                                                 reduction="sum") / args.batch
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.update(1)
        if (step + 1) % eval_every == 0 or step + 1 == n_steps:
            epoch = (step + 1) * args.batch / EPOCH
            ve, te = errors(vx, vy), errors(tx, ty)
            better = ve < best_valid
            best_valid[better], test_at_best[better] = ve[better], te[better]
            last_test = te
            for c in conds:
                sel = [i for i, (cc, _) in enumerate(models) if cc == c]
                writer.add_scalar(f"valid_error/{c[0]}", float(ve[sel].mean()), step + 1)
                writer.add_scalar(f"test_error/{c[0]}", float(te[sel].mean()), step + 1)
            bar.set_postfix(epoch=f"{epoch:.1f}", loss=f"{loss.item() / M:.3f}")
    bar.close()
    writer.close()
    elapsed = time.time() - t0
    rows = [dict(condition=c[0], seed=s, best_valid_error=float(best_valid[i]),
                 test_error=float(test_at_best[i]), final_test_error=float(last_test[i]))
            for i, (c, s) in enumerate(models)]
    return dict(rows=rows, conditions=[c[0] for c in conds], seconds=elapsed, n_models=M, n_steps=n_steps,
                args=vars(args))


def report(result: dict, out: Path) -> str:
    """Write results.csv, table.md, summary.json and the box plot; return the table."""
    pd = require("pandas", "bench", "this study")
    from scipy import stats

    df = pd.DataFrame(result["rows"])
    df.to_csv(out / "shapes_switch_results.csv", index=False)
    conds = result["conditions"]
    lines = ["| condition | n | test error mean ± sd (%) | median (%) | final-epoch test error mean (%) |",
             "|---|---|---|---|---|"]
    for c in conds:
        d = df[df.condition == c]
        lines.append(f"| {c} | {len(d)} | {100 * d.test_error.mean():.2f} ± {100 * d.test_error.std():.2f} | "
                     f"{100 * d.test_error.median():.2f} | {100 * d.final_test_error.mean():.2f} |")
    switches = [c for c in conds if c.startswith("switch-")]
    tests = {}

    def compare(a, b):
        xa = df[df.condition == a].sort_values("seed").test_error.to_numpy()
        xb = df[df.condition == b].sort_values("seed").test_error.to_numpy()
        w = stats.wilcoxon(xa, xb) if np.any(xa != xb) else None
        u = stats.mannwhitneyu(xa, xb, alternative="two-sided")
        tests[f"{a} vs {b}"] = dict(mean_diff=float(np.mean(xa - xb)),
                                    wilcoxon_signed_rank_p=None if w is None else float(w.pvalue),
                                    mann_whitney_p=float(u.pvalue))

    last, first = switches[-1], switches[0]
    if len(switches) > 1:
        compare(last, first)
    for c in conds:
        if c == "mixed" or c.startswith("random-"):
            compare(last, c)
    lines.append("")
    lines.append("| comparison | mean difference (pp) | paired Wilcoxon p | Mann-Whitney p |")
    lines.append("|---|---|---|---|")
    for k, v in tests.items():
        wp = "n/a" if v["wilcoxon_signed_rank_p"] is None else f"{v['wilcoxon_signed_rank_p']:.3g}"
        lines.append(f"| {k} | {100 * v['mean_diff']:+.2f} | {wp} | {v['mann_whitney_p']:.3g} |")
    table = "\n".join(lines)
    (out / "shapes_switch_table.md").write_text(table + "\n")
    summary = {k: v for k, v in result.items() if k != "rows"}
    summary["tests"] = tests
    (out / "shapes_switch_summary.json").write_text(json.dumps(summary, indent=2, default=str))

    matplotlib = require("matplotlib", "bench", "plotting")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 * len(conds) + 2, 4))
    ax.boxplot([100 * df[df.condition == c].test_error.to_numpy() for c in conds])
    ax.set_xticks(range(1, len(conds) + 1), conds, rotation=20)
    a = result["args"]
    ax.set_ylabel("GeomShapes test error (%)")
    ax.set_title(f"switch epoch (paper units), {a['seeds']} seeds, schedule / {a['scale']:g}")
    fig.tight_layout()
    fig.savefig(out / "shapes_switch_boxplot.png", dpi=110)
    plt.close(fig)
    return table


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except RewindError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report(result, Path(args.out)))
    print(f"{result['n_models']} models, {result['n_steps']} SGD steps each, {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
