"""KegNet on digits (or GeomShapes, --data shapes): a trained MLP classifier compressed by Tucker-2 at several ratios; test
accuracy after decomposition, after data-free fine-tuning on generated samples, and after
fine-tuning on the real training images (the upper reference), over seeds (each seed: teacher,
generator and fine-tuning). Not a suite: it trains classifiers outside any env.

    python -m rewind.bench.studies.kegnet_digits --seeds 5
    python -m rewind.bench.studies.kegnet_digits --data shapes --seeds 5 --ratios 2,4

GeomShapes: 2000 training images (32x32x3 flattened, standardised), 1000 test; the results go
to results_shapes.json, table_shapes.md, accuracy_shapes.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rewind.files import atomic_write_json, atomic_write_text

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results" / "kegnet"


def teacher_of(d, seed: int, steps: int = 1500):
    torch.manual_seed(seed)
    n_in = d.train_x.flatten(1).shape[1]
    net = nn.Sequential(nn.Linear(n_in, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, d.n_classes))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    x, y = d.train_x.flatten(1), d.train_y
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(0, len(y), (64,), generator=g)
        loss = F.cross_entropy(net(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def accuracy(net, d) -> float:
    with torch.no_grad():
        return float((net(d.test_x.flatten(1)).argmax(1) == d.test_y).float().mean())


def main(argv=None):
    from rewind.envs.nas_data import load_digits_data, load_shapes_data
    from rewind.transfer.kegnet import fine_tune, generator_sampler, n_params, train_generator, tucker_decompose

    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--ratios", default="2,4,8")
    ap.add_argument("--gen-steps", type=int, default=1000)
    ap.add_argument("--tune-steps", type=int, default=500)
    ap.add_argument("--compress-last", action="store_true",
                    help="also decompose the output layer (default: keep it; 128->10 at ratio >= 2 leaves rank < 10)")
    ap.add_argument("--data", default="digits", help="digits | shapes (GeomShapes, 2000 training images)")
    ap.add_argument("--out", default=str(RESULTS_DIR))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.data == "digits" else f"_{args.data}"
    path = out / f"results{suffix}.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    d = load_digits_data() if args.data == "digits" else load_shapes_data("geom", n_train=2000)
    xtr = d.train_x.flatten(1)
    for seed in range(args.seeds):
        teacher = None
        for ratio in [float(r) for r in args.ratios.split(",")]:
            key = f"{ratio:g}|{seed}"
            if key in res:
                continue
            teacher = teacher or teacher_of(d, seed)
            g, _ = train_generator(teacher, d.n_classes, (xtr.shape[1],), steps=args.gen_steps, seed=seed)
            skip = not args.compress_last
            student = tucker_decompose(teacher, ratio=ratio, skip_last=skip)
            r = {"teacher": accuracy(teacher, d), "decomposed": accuracy(student, d),
                 "params": [n_params(teacher), n_params(student)]}
            free = fine_tune(student, teacher, generator_sampler(g, 64, seed), steps=args.tune_steps)
            r["data_free"] = accuracy(free, d)
            gen = torch.Generator().manual_seed(seed)
            real = fine_tune(tucker_decompose(teacher, ratio=ratio, skip_last=skip), teacher,
                             lambda: xtr[torch.randint(0, len(xtr), (64,), generator=gen)], steps=args.tune_steps)
            r["real_data"] = accuracy(real, d)
            res[key] = r
            print(key, r, flush=True)
            atomic_write_json(path, res)
    report(res, out, suffix, args.data)


def report(res: dict, out: Path, suffix: str = "", data: str = "digits") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rewind.bench.studies.training_methods import ci95

    ratios = sorted({float(k.split("|")[0]) for k in res})
    cols = ("teacher", "decomposed", "data_free", "real_data")
    lines = ["| ratio (target) | params teacher -> student | seeds | " + " | ".join(cols) +
             " | recovered by data-free, of the means: (df - dec) / (teacher - dec) |", "|---" * 8 + "|"]
    plot = {c: [] for c in cols}
    for ratio in ratios:
        rs = [r for k, r in res.items() if float(k.split("|")[0]) == ratio]
        cells = []
        for c in cols:
            m, h = ci95([r[c] for r in rs])
            cells.append(f"{m:.4f} +- {h:.4f}")
            plot[c].append((m, h))
        t, dec, df = (np.mean([r[c] for r in rs]) for c in ("teacher", "decomposed", "data_free"))
        rec = f"{(df - dec) / (t - dec):.2f}" if t - dec >= 0.01 else "n/a (decomposition lost < 1 point)"
        lines.append(f"| {ratio:g} | {rs[0]['params'][0]:,} -> {rs[0]['params'][1]:,} | {len(rs)} | "
                     + " | ".join(cells) + f" | {rec} |")
    atomic_write_text(out / f"table{suffix}.md", "\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(6, 4))
    for c in cols:
        ax.errorbar(ratios, [m for m, _ in plot[c]], yerr=[h for _, h in plot[c]], marker="o", capsize=3, label=c)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("target compression ratio per layer")
    ax.set_ylabel(f"{data} test accuracy (95% CI)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"accuracy{suffix}.png", dpi=100)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
