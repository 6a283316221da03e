"""Training-method options in RL at a short horizon: DQN with a warmup + cosine lr vs the
constant-lr MinAtar preset (`--study cosine`), and EBU with the ST-DIM auxiliary loss vs plain
EBU (`--study dim`).

Not a suite: each arm is the preset (configs/dqn_minatar.yaml or configs/ebu_minatar.yaml)
with the same short-horizon overrides for both arms, and only the option under test differs.
Each run is an ordinary `rewind train` in a fresh process (one torch thread; finished runs in
--workdir are reused, so an interrupted study resumes). The score is the greedy eval return
at the last step (run.eval_episodes episodes, the run's own eval seeds); the CPU seconds of
each run (getrusage of the child) are recorded so the size of the study is known.

Short-horizon overrides (both arms; the preset trains 5M steps): run.steps = --steps,
agent.learning_starts = --learning-starts, agent.eps_decay_steps = --eps-decay (so the
policy is mostly greedy before the end), checkpoint only at the end. The cosine arm warms up
over --warmup gradient updates and decays to 0 at the last update (T = updates - warmup).

    python -m rewind.bench.studies.training_methods_rl --study cosine --seeds 5 --steps 15000
    python -m rewind.bench.studies.training_methods_rl --study dim --seeds 5 --steps 8000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from rewind.bench.stats import t_interval
from rewind.files import atomic_write_json, atomic_write_text

OUT = Path(__file__).resolve().parents[1] / "results" / "training_methods_rl"


def arms(study: str, steps: int, learning_starts: int, warmup: int) -> list[tuple[str, str, list[str]]]:
    """(arm name, preset, extra --set overrides) of a study."""
    if study == "cosine":
        updates = steps - learning_starts
        return [("constant lr (preset)", "dqn_minatar", []),
                ("warmup + cosine", "dqn_minatar", ["agent.lr_schedule=cosine", f"agent.lr_warmup_steps={warmup}",
                                                    f"agent.lr_decay_steps={updates - warmup}"])]
    if study == "dim":
        return [("ebu (preset)", "ebu_minatar", []), ("ebu + ST-DIM", "ebu_minatar", ["agent.aux_loss=dim"])]
    raise SystemExit(f"--study must be cosine or dim, got {study!r}")


def run_one(preset: str, env: str, seed: int, extra: list[str], logdir: Path, args) -> dict:
    common = [f"agent.learning_starts={args.learning_starts}", f"agent.eps_decay_steps={args.eps_decay}",
              f"run.eval_every={args.eval_every}", f"run.eval_episodes={args.eval_episodes}",
              f"run.checkpoint_every={args.steps}", "run.torch_threads=1"]
    cmd = [sys.executable, "-c", "import sys; from rewind.cli import main; sys.exit(main())", "train", "--config", preset, "--env", env, "--seed", str(seed),
           "--steps", str(args.steps), "--logdir", str(logdir), "--no-progress"]
    for s in common + extra:
        cmd += ["--set", s]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    evals = json.loads((logdir / "evaluations.json").read_text())
    return {"final_return": evals[-1]["return_mean"], "curve": [(e["step"], e["return_mean"]) for e in evals],
            "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "wall_s": time.perf_counter() - t0, "overrides": common + extra}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", required=True, help="cosine | dim")
    ap.add_argument("--envs", default=None, help="comma-separated (cosine: minatar-breakout; "
                    "dim: minatar-breakout,minatar-asterix)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=15000)
    ap.add_argument("--learning-starts", type=int, default=1000)
    ap.add_argument("--eps-decay", type=int, default=10000)
    ap.add_argument("--warmup", type=int, default=1000, help="cosine arm: warmup gradient updates")
    ap.add_argument("--eval-every", type=int, default=5000)
    ap.add_argument("--eval-episodes", type=int, default=20)
    ap.add_argument("--workdir", default="runs/training_methods_rl", help="run folders (not committed)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    envs = (args.envs or ("minatar-breakout" if args.study == "cosine" else "minatar-breakout,minatar-asterix")).split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.study}.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    # seeds outermost: an interrupted study still has paired arms for the seeds it finished
    for seed in range(args.seeds):
        for env in envs:
            for name, preset, extra in arms(args.study, args.steps, args.learning_starts, args.warmup):
                key = f"{env}|{name}|{seed}"
                if key in results:
                    continue
                tag = name.split(" (")[0].replace(" + ", "_").replace(" ", "_")
                logdir = Path(args.workdir) / args.study / f"{env}__{tag}__s{seed}"
                results[key] = {**run_one(preset, env, seed, extra, logdir, args), "steps": args.steps}
                print(key, results[key]["final_return"], f"{results[key]['cpu_s']:.0f} cpu-s", flush=True)
                atomic_write_json(path, results)
    report(args.study, results, out)


def report(study: str, results: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups: dict = {}
    for key, r in results.items():
        env, name, _ = key.split("|")
        groups.setdefault(env, {}).setdefault(name, []).append(r)
    lines = ["| env | arm | seeds | steps | final eval return (mean +- 95% t-CI) | difference to first arm "
             "(Welch 95% CI) | CPU s per run (mean) |", "|---|---|---|---|---|---|---|"]
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4), squeeze=False)
    for ax, (env, by_arm) in zip(axes[0], groups.items()):
        base = None
        for name, rs in by_arm.items():
            x = np.array([r["final_return"] for r in rs])
            m, h = t_interval(x)
            diff = "-"
            if base is None:
                base = x
            else:
                diff = welch(x, base)
            lines.append(f"| {env} | {name} | {len(rs)} | {rs[0]['steps']} | {m:.3f} +- {h:.3f} | {diff} | "
                         f"{np.mean([r['cpu_s'] for r in rs]):.0f} |")
            steps = [s for s, _ in rs[0]["curve"]]
            curves = np.array([[v for _, v in r["curve"]] for r in rs if len(r["curve"]) == len(steps)])
            cm = curves.mean(0)
            ch = np.array([t_interval(curves[:, i])[1] if len(curves) > 1 else 0.0 for i in range(len(steps))])
            ax.plot(steps, cm, marker="o", label=f"{name} (n={len(curves)})")
            ax.fill_between(steps, cm - ch, cm + ch, alpha=0.2)
        ax.set_title(f"{env}: greedy eval return, 95% CI")
        ax.set_xlabel("env steps")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"{study}.png", dpi=100)
    atomic_write_text(out / f"{study}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def welch(x: np.ndarray, y: np.ndarray) -> str:
    """Difference of means x - y with a Welch-Satterthwaite 95% interval."""
    from scipy import stats
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    d, se = x.mean() - y.mean(), np.sqrt(vx + vy)
    if se == 0:
        return f"{d:+.3f} +- 0"
    dof = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
    return f"{d:+.3f} +- {stats.t.ppf(0.975, dof) * se:.3f}"


if __name__ == "__main__":
    main()
