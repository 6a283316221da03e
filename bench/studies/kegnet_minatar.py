"""KegNet on MinAtar Breakout Q-networks: a short-trained DQN teacher compressed by Tucker-2 at
several ratios; greedy eval return and action agreement after decomposition, after data-free
fine-tuning (KegNet generator: the actions are the classes, CE on the teacher's Q as logits
trains G; the student matches the teacher's Q by MSE on G's samples, as `rewind distill
--data-free`), and after the same fine-tuning on real observations (states the teacher visits,
epsilon 0.05; the upper reference).

Not a suite: it measures the compression of trained checkpoints, not training runs.

Teachers: the constant-lr DQN runs of the suite dqn_cosine_minatar (configs/dqn_minatar.yaml at
12k steps, one per seed: `rewind bench run dqn_cosine_minatar --out bench/results/dqn_cosine_minatar`;
the figures in bench/results/kegnet/ used the same runs made by the former training_methods_rl
study). The output layer (128 -> actions) is kept,
as in the digits study (ratio >= 2 would leave rank < the number of actions).

    python -m rewind.bench.studies.kegnet_minatar --seeds 5 --ratios 2,4
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch

from rewind.bench.stats import t_interval
from rewind.files import atomic_write_json, atomic_write_text

OUT = Path(__file__).resolve().parents[1] / "results" / "kegnet"
TEACHERS = "bench/results/dqn_cosine_minatar/runs/constant/minatar-breakout/s{seed}/checkpoint.pt"
REAL_SEED, HELDOUT_SEED = 700_000, 900_000


def main(argv=None):
    from rewind.run.loop import eval_seed, evaluate
    from rewind.transfer.distill import agreement, collect_states, load_teacher
    from rewind.transfer.kegnet import fine_tune, generator_sampler, n_params, train_generator, tucker_decompose

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--ratios", default="2,4")
    ap.add_argument("--teachers", default=TEACHERS, help="checkpoint path pattern with {seed}")
    ap.add_argument("--gen-steps", type=int, default=1000)
    ap.add_argument("--tune-steps", type=int, default=500)
    ap.add_argument("--episodes", type=int, default=30, help="eval episodes per model (fixed seeds)")
    ap.add_argument("--states", type=int, default=3000, help="real states for fine-tuning and for agreement")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    path = out / "results_minatar.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    for seed in range(args.seeds):
        todo = [float(r) for r in args.ratios.split(",") if f"{float(r):g}|{seed}" not in res]
        if not todo:
            continue
        agent, env, meta = load_teacher(args.teachers.format(seed=seed))
        teacher = agent.q
        run = meta.get("run") or {}
        protocol = dict(episodes=args.episodes, epsilon=float(run.get("eval_epsilon", 0.0)),
                        max_steps=int(run.get("eval_max_steps", 10_000)), seed=eval_seed(seed))

        def ret(net):
            agent.q = net.eval()
            r = evaluate(agent, env, **protocol)["return_mean"]
            agent.q = teacher
            return r

        real = torch.as_tensor(collect_states(agent, env, args.states, REAL_SEED + 1000 * seed), dtype=torch.float32)
        held = collect_states(agent, env, args.states, HELDOUT_SEED + 1000 * seed)
        space = env.observation_space
        t_ret = ret(teacher)
        for ratio in todo:
            g, _ = train_generator(teacher, agent.n_actions, space.shape, steps=args.gen_steps,
                                   out_range=(float(np.min(space.low)), float(np.max(space.high))), seed=seed)
            dec = tucker_decompose(teacher, ratio=ratio, skip_last=True)
            r = {"teacher": t_ret, "decomposed": ret(dec), "params": [n_params(teacher), n_params(dec)],
                 "agree_decomposed": agreement(dec, teacher, held)}
            free = fine_tune(copy.deepcopy(dec), teacher, generator_sampler(g, 64, seed), steps=args.tune_steps,
                             loss="mse")
            r["data_free"], r["agree_data_free"] = ret(free), agreement(free, teacher, held)
            gen = torch.Generator().manual_seed(seed)
            tuned = fine_tune(copy.deepcopy(dec), teacher, lambda: real[torch.randint(0, len(real), (64,), generator=gen)],
                              steps=args.tune_steps, loss="mse")
            r["real_data"], r["agree_real_data"] = ret(tuned), agreement(tuned, teacher, held)
            res[f"{ratio:g}|{seed}"] = r
            print(f"{ratio:g}|{seed}", r, flush=True)
            atomic_write_json(path, res)
    report(res, out)


def report(res: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratios = sorted({float(k.split("|")[0]) for k in res})
    cols = ("teacher", "decomposed", "data_free", "real_data")
    lines = ["| ratio (target) | params teacher -> student | seeds | " + " | ".join(f"return: {c}" for c in cols)
             + " | greedy-action agreement: decomposed / data_free / real_data |", "|---" * 8 + "|"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ratio in ratios:
        rs = [r for k, r in res.items() if float(k.split("|")[0]) == ratio]
        cells = ["{:.2f} +- {:.2f}".format(*t_interval([r[c] for r in rs])) for c in cols]
        agree = " / ".join("{:.3f} +- {:.3f}".format(*t_interval([r[f"agree_{c}"] for r in rs])) for c in cols[1:])
        lines.append(f"| {ratio:g} | {rs[0]['params'][0]:,} -> {rs[0]['params'][1]:,} | {len(rs)} | "
                     + " | ".join(cells) + f" | {agree} |")
    for ax, (fmt, keys) in zip(axes, (("return", cols), ("agreement", [f"agree_{c}" for c in cols[1:]]))):
        for c in keys:
            pts = [t_interval([r[c] for k, r in res.items() if float(k.split("|")[0]) == ratio]) for ratio in ratios]
            ax.errorbar(ratios, [m for m, _ in pts], yerr=[h for _, h in pts], marker="o", capsize=3, label=c)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("target compression ratio per layer")
        ax.set_ylabel(f"Breakout {fmt} (95% CI)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "minatar.png", dpi=100)
    atomic_write_text(out / "table_minatar.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
