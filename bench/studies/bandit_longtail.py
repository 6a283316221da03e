"""Class-balanced vs plain losses on the long-tailed digits bandit (Cui et al. 2019 protocol).

Not a suite: the score is the balanced accuracy of the greedy policy on the held-out balanced
split (acting on labelled examples), which the harness's evaluation (episode return) does not measure.

The training stream is digits' training split subsampled to the exponential profile with
imbalance factor 100 (about 124 examples of class 0 down to 1 of class 9); the score is
balanced accuracy (mean per-class recall) of the greedy policy on the balanced held-out
split, mean +- std over seeds. Learners: the full-information learner with softmax,
sigmoid and focal losses at beta in {0 (plain), 0.9, 0.99, 0.999, 0.9999}, and the neural
eps-greedy bandit learner (which sees only its chosen arm's reward) plain vs balanced.

    python -m rewind.bench.studies.bandit_longtail --seeds 5 --passes 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from rewind.bench.markdown import write_result

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results" / "bandit"
BETAS = (0.0, 0.9, 0.99, 0.999, 0.9999)


def balanced_accuracy(agent, X, y) -> float:
    pred = np.array([agent.act(x, explore=False) for x in X])
    classes = np.unique(y)
    return float(np.mean([np.mean(pred[y == c] == c) for c in classes]))


def runs():
    """(learner label, agent name, config) for every row of the table."""
    out = []
    for loss in ("softmax", "sigmoid", "focal"):
        for beta in BETAS:
            label = f"supervised {loss} " + ("plain" if beta == 0 else f"CB beta={beta}")
            out.append((label, "supervised", {"cb_loss": loss, "cb_beta": beta}))
    for beta in (0.0, 0.99, 0.999):
        label = "eps-greedy-neural sigmoid " + ("plain" if beta == 0 else f"CB beta={beta}")
        out.append((label, "eps-greedy-neural", {"cb_loss": "sigmoid", "cb_beta": beta}))
    return out


def main(argv=None) -> int:
    import torch

    from rewind.agents import make_agent
    from rewind.bench.studies.bandit_vw import run_stream
    from rewind.envs.bandit import ClassificationBandit, progressive_validation

    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--passes", type=float, default=5.0)
    p.add_argument("--imbalance", type=float, default=100.0)
    p.add_argument("--test-fraction", type=float, default=0.3)
    p.add_argument("--out", default=str(RESULTS_DIR / "longtail_cb.md"))
    args = p.parse_args(argv)

    common = dict(data="digits", imbalance=args.imbalance, test_fraction=args.test_fraction, split_seed=0)
    test = ClassificationBandit(**common, split="test")
    results: dict[str, dict[str, list]] = {}
    counts = None
    for label, name, cfg in runs():
        for seed in range(args.seeds):
            env = ClassificationBandit(**common, full_feedback=(name == "supervised"))
            counts = env.class_counts
            steps = int(round(args.passes * len(env.y)))
            agent = make_agent(name, env, cfg, seed=seed)
            t0 = time.perf_counter()
            rewards, _, _ = run_stream(agent, env, steps, seed)
            bacc = balanced_accuracy(agent, test.X, test.y)
            cell = results.setdefault(label, {"bacc": [], "pv": []})
            cell["bacc"].append(bacc)
            cell["pv"].append(progressive_validation(rewards))
            print(f"{label:45s} seed {seed} balanced acc {bacc:.4f}  PV loss {cell['pv'][-1]:.4f}  "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
    lines = [f"Long-tailed digits (imbalance {args.imbalance:g}; training class counts {counts.tolist()}), "
             f"{args.passes:g} passes over the stream, {args.seeds} seeds. Balanced accuracy on the balanced "
             f"held-out split ({len(test.y)} examples); PV loss on the long-tailed stream.", "",
             "| learner | balanced accuracy | PV loss (stream) |", "|---|---|---|"]
    for label, cell in results.items():
        lines.append(f"| {label} | {np.mean(cell['bacc']):.4f} +- {np.std(cell['bacc']):.4f} | "
                     f"{np.mean(cell['pv']):.4f} +- {np.std(cell['pv']):.4f} |")
    md = "\n".join(lines)
    print()
    print(md)
    if args.out:
        write_result(args.out, "Class-balanced loss on the long-tail bandit", "rewind.bench.studies.bandit_longtail", argv, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
