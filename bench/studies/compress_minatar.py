"""Deep Compression of trained MinAtar DQN/EBU agents: size ratio per stage and return retained.

Not a suite: it transforms and measures already trained checkpoints (file size per stage, return
retained on fixed evaluation seeds, a dense control); it starts no agents x envs x seeds training.

For every checkpoint and every setting (prune fraction : fc bits), the agent is compressed
with `rewind.transfer.compress` (the code behind `rewind compress`), the .rwz file is written
and its real size measured, and the greedy return is evaluated over the same fixed
evaluation seeds at every stage. A control per checkpoint trains the *dense* network for the
same number of TD steps on the same replay, so the table separates what compression costs
from what extra offline training does. Noise: `se` is the standard error of the
per-episode paired difference to the dense network (same seeds), over the episodes.

    python -m rewind.bench.studies.compress_minatar --episodes 500 --settings 0.9:5
    python -m rewind.bench.studies.compress_minatar --settings 0.9:5 0.9:5:0.5:0.5 --report-only

Results: bench/results/compress/{results.json, table.md, ratio_vs_return.png}; resumable
(finished (checkpoint, setting) pairs are kept in results.json and skipped).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rewind.files import atomic_write, atomic_write_text
from rewind.transfer.compress import CompressConfig, compress_agent, prepare, write_compressed
from rewind.run.experiment import eval_protocol
from rewind.run.loop import evaluate
from rewind.bench.markdown import write_result
from rewind.errors import require

RUNS = Path(__file__).resolve().parents[1] / "results" / "minatar" / "runs"
DEFAULT_RUNS = [f"{a}__minatar-breakout__s{s}" for a in ("dqn", "ebu") for s in (0, 1, 2)]
STAGES = ("pruned", "retrained", "quantised", "finetuned")


def save(path: Path, results: dict) -> None:
    """Compact JSON (per-episode returns make it long): one line per result."""
    lines = ",\n".join(f"{json.dumps(k)}: {json.dumps(v, separators=(',', ':'), default=float)}"
                        for k, v in sorted(results.items()))
    atomic_write_text(path, "{\n" + lines + "\n}\n")


def parse_setting(text: str) -> dict:
    """'prune:bits[:conv_prune[:output_prune]]' -> CompressConfig fields."""
    parts = text.split(":")
    out = {"prune": float(parts[0]), "bits": int(parts[1])}
    if len(parts) > 2:
        out["conv_prune"] = float(parts[2])
    if len(parts) > 3:
        out["output_prune"] = float(parts[3])
    return out


def key(run: str, setting: str, args) -> str:
    return f"{run}|{setting}|r{args.retrain_steps}|f{args.finetune_steps}|lr{args.lr_scale:g}"


def eval_fn(env, meta, args):
    eps, max_steps = eval_protocol(meta)

    def fn(agent):
        r = evaluate(agent, env, args.episodes, eps, max_steps, seed=args.eval_seed)
        return {"return_mean": r["return_mean"], "return_std": r["return_std"], "returns": r["returns"]}
    return fn


def control(path: Path, args) -> dict:
    """The dense agent trained the same number of TD steps on its replay, no compression."""
    from rewind.transfer.compress import td_steps

    cfg = CompressConfig(retrain_steps=args.retrain_steps + args.finetune_steps, finetune_steps=0)
    agent, env, meta = prepare(path, cfg)
    fn = eval_fn(env, meta, args)
    dense = fn(agent)
    torch.manual_seed(args.seed)
    agent.rng = np.random.default_rng(args.seed)
    for g in agent.optimizer.param_groups:
        g["lr"] = agent.config.lr * args.lr_scale
    td_steps(agent, cfg.retrain_steps, "dense control", progress=False)
    return {"dense": dense, "control": fn(agent)}


def compress_one(path: Path, setting: dict, args) -> dict:
    cfg = CompressConfig(**setting, conv_bits=args.conv_bits, retrain_steps=args.retrain_steps,
                         finetune_steps=args.finetune_steps, lr_scale=args.lr_scale, seed=args.seed)
    agent, env, meta = prepare(path, cfg)
    t0 = time.perf_counter()
    report = compress_agent(agent, meta, cfg, eval_fn(env, meta, args), progress=False)
    records = report.pop("records")
    with tempfile.TemporaryDirectory() as tmp:
        report["sizes"]["file"] = write_compressed(Path(tmp) / "model.rwz", meta, records)
    report["seconds"] = time.perf_counter() - t0
    return report


def paired(a: dict, b: dict) -> tuple[float, float]:
    """Mean and standard error of the per-episode difference b - a (same evaluation seeds)."""
    d = np.asarray(b["returns"]) - np.asarray(a["returns"])
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))


def report(results: dict, args) -> str:
    lines = [f"## Retrain {args.retrain_steps} + fine-tune {args.finetune_steps} TD steps at {args.lr_scale:g} x lr",
             "", "### Per checkpoint", "",
             "Return: mean over the same evaluation episodes; `Δ ± se`: paired difference to the dense network "
             "(same seeds) and its standard error. Retained = final (quantised + fine-tuned, = the file) / dense.", "",
             "| checkpoint | prune:bits | pruned x | quantised x | huffman x | file x | file bytes | dense | "
             "dense+TD control | pruned | +retrain | quantised | +fine-tune | retained | Δ ± se |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    summary: dict[str, list] = {}
    for k in sorted(results):
        r = results[k]
        if "setting" not in r:
            continue
        run, setting = r["run"], r["setting"]
        base = results[f"control|{run}|r{args.retrain_steps}|f{args.finetune_steps}|lr{args.lr_scale:g}"]
        s, e = r["sizes"], r["evals"]
        d0 = base["dense"]["return_mean"]
        ctrl = base["control"]["return_mean"]
        fin = e["finetuned"]["return_mean"]
        diff, se = paired(base["dense"], e["finetuned"])
        ratio = {st: s["dense"] / s[st] for st in ("pruned", "quantised", "huffman", "file")}
        lines.append(f"| {run} | {setting} | {ratio['pruned']:.1f} | {ratio['quantised']:.1f} | "
                     f"{ratio['huffman']:.1f} | {ratio['file']:.1f} | {s['file']:,d} | {d0:.2f} | {ctrl:.2f} | "
                     + " | ".join(f"{e[st]['return_mean']:.2f}" for st in STAGES)
                     + f" | {100 * fin / d0:.0f}% | {diff:+.2f} ± {se:.2f} |")
        summary.setdefault(setting, []).append((ratio, d0, ctrl, fin, diff, se))
    lines += ["", "### Per setting (mean over checkpoints)", "",
              "| prune:bits | checkpoints | pruned x | quantised x | huffman x | file x | dense | dense+TD control | "
              "final | retained | mean Δ ± se |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for setting, rows in summary.items():
        n = len(rows)
        rat = {st: np.mean([r[0][st] for r in rows]) for st in ("pruned", "quantised", "huffman", "file")}
        d0, ctrl, fin = (np.mean([r[i] for r in rows]) for i in (1, 2, 3))
        diff = np.mean([r[4] for r in rows])
        se = np.sqrt(np.sum([r[5] ** 2 for r in rows])) / n
        lines.append(f"| {setting} | {n} | {rat['pruned']:.1f} | {rat['quantised']:.1f} | {rat['huffman']:.1f} | "
                     f"{rat['file']:.1f} | {d0:.2f} | {ctrl:.2f} | {fin:.2f} | {100 * fin / d0:.1f}% | "
                     f"{diff:+.3f} ± {se:.3f} |")
    lines += ["", f"Settings: conv bits {args.conv_bits}, gap bits 8 conv / 5 fc, retrain {args.retrain_steps} + "
              f"fine-tune {args.finetune_steps} TD steps at {args.lr_scale:g} x the agent's lr, seed {args.seed}; "
              f"{args.episodes} evaluation episodes from seed {args.eval_seed}, the run's eval epsilon; "
              "dense+TD control = the uncompressed net trained the same total TD steps."]
    return "\n".join(lines)


def plot(results: dict, out: Path) -> None:
    matplotlib = require("matplotlib", "bench", "plotting")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    settings = sorted({r["setting"] for r in results.values() if "setting" in r})
    for k, r in sorted(results.items()):
        if "setting" not in r:
            continue
        color = f"C{settings.index(r['setting']) % 10}"
        base = next(v for kk, v in results.items() if kk.startswith(f"control|{r['run']}|"))
        x = r["sizes"]["dense"] / r["sizes"]["file"]
        y = 100 * r["evals"]["finetuned"]["return_mean"] / base["dense"]["return_mean"]
        marker = "o" if r["run"].startswith("dqn") else "s"
        ax.scatter(x, y, marker=marker, color=color, label=f"{r['run'].split('__')[0]} {r['setting']}")
    ax.axhline(95, color="gray", ls="--", lw=0.8)
    ax.axvline(20, color="gray", ls="--", lw=0.8)
    ax.set_xlabel("compression ratio (dense fp32 / .rwz file)")
    ax.set_ylabel("return retained (%), final / dense")
    ax.set_title("prune:bits[:conv prune[:head prune]]; o dqn, s ebu", fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), fontsize=7)
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help="run folders under bench/results/minatar/runs")
    p.add_argument("--settings", nargs="+", default=["0.9:5"],
                   help="prune:bits[:conv_prune[:output_prune]] (fc prune fraction and bits; default 0.9:5)")
    p.add_argument("--conv-bits", type=int, default=8)
    p.add_argument("--retrain-steps", type=int, default=2000)
    p.add_argument("--finetune-steps", type=int, default=1000)
    p.add_argument("--lr-scale", type=float, default=1.0)
    p.add_argument("--episodes", type=int, default=500, help="evaluation episodes per stage (fixed seeds)")
    p.add_argument("--eval-seed", type=int, default=12345)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "compress"))
    p.add_argument("--report-only", action="store_true", help="rewrite table and plot from results.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    res_path = out / "results.json"
    results = json.loads(res_path.read_text()) if res_path.exists() else {}
    save(res_path, results)
    if not args.report_only:
        for run in args.runs:
            path = RUNS / run / "checkpoint.pt"
            ck = f"control|{run}|r{args.retrain_steps}|f{args.finetune_steps}|lr{args.lr_scale:g}"
            if ck not in results:
                results[ck] = {"run": run, **control(path, args)}
                save(res_path, results)
            for setting in args.settings:
                k = key(run, setting, args)
                if k in results:
                    continue
                r = compress_one(path, parse_setting(setting), args)
                results[k] = {"run": run, "setting": setting, **r}
                save(res_path, results)
                e = r["evals"]
                print(f"{run} {setting}: x{r['sizes']['dense'] / r['sizes']['file']:.1f}, return "
                      f"{results[ck]['dense']['return_mean']:.2f} -> {e['finetuned']['return_mean']:.2f} "
                      f"({r['seconds']:.0f} s)", flush=True)
    configs = sorted({k.split("|", 2)[2] for k in results},  # "r..|f..|lr.." of every stored result
                     key=lambda c: (c != f"r{args.retrain_steps}|f{args.finetune_steps}|lr{args.lr_scale:g}", c))
    sections = []
    for c in configs:  # the asked-for training config first, then any other found in results.json
        r, f, lr = c.split("|")
        a = argparse.Namespace(**{**vars(args), "retrain_steps": int(r[1:]), "finetune_steps": int(f[1:]),
                                  "lr_scale": float(lr[2:])})
        sections.append(report({k: v for k, v in results.items() if k.endswith("|" + c)}, a))
    body = ("Rows: every result stored in results.json (the bench is resumable: each invocation adds its "
            "settings; the command below is the last one).\n\n" + "\n\n".join(sections))
    write_result(out / "table.md", "Deep Compression of MinAtar Breakout agents", "rewind.bench.studies.compress_minatar",
                 argv, body)
    plot({k: v for k, v in results.items()
          if k.endswith(f"|r{args.retrain_steps}|f{args.finetune_steps}|lr{args.lr_scale:g}")},
         out / "ratio_vs_return.png")
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
