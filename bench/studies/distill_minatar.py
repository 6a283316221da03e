"""Distillation on MinAtar Breakout: quarter-parameter students by KD, policy distillation and RKD.

Not a suite: each student starts from a teacher checkpoint (one per teacher, not a seed of a
suite), and what it measures (teacher vs student on fixed seeds, greedy-action agreement on
held-out teacher states) is not the harness's evaluation return.

Run: `python -m rewind.bench.studies.distill_minatar` (defaults: the three 50k-step EBU breakout
checkpoints of bench/results/minatar as teachers, student size quarter = width 0.5, losses
kd / policy / rkd, teacher experience, 30k steps each, one torch thread).

Per teacher x loss it trains a student with `rewind distill`'s settings (an ordinary rewind
run in --workdir; finished runs are reused, so an interrupted bench resumes), then measures:
- eval return of teacher and student over --eval-episodes episodes with the same fixed seeds
  and the teacher's protocol (epsilon 0, sticky actions as in training), and the retained
  fraction student / teacher with its standard error (delta method over both means);
- greedy-action agreement on --heldout states visited by the teacher (epsilon 0.05) in fresh
  episodes with other seeds, and on the subset never stored in the student's replay (MinAtar
  states recur, e.g. the start screens).
Writes table.md, results.json and curves.png (eval return during distillation) to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from rewind.files import atomic_write, atomic_write_json
from rewind.run.checkpoint import load_checkpoint
from rewind.transfer.distill import agreement, collect_states, load_teacher
from rewind.transfer.distill_setup import prepare
from rewind.run.experiment import eval_protocol, finished, load_for_eval, run_or_resume
from rewind.run.loop import evaluate
from rewind.bench.markdown import write_result
from rewind.config import merge, parse_set
from rewind.errors import RewindError, exit_code, require

RUNS = Path(__file__).resolve().parents[1] / "results" / "minatar" / "runs"
DEFAULT_TEACHERS = [str(RUNS / f"ebu__minatar-breakout__s{s}") for s in range(3)]
EVAL_SEED = 500_000      # evaluation episodes of teacher and students
HELDOUT_SEED = 900_000   # episodes whose states measure agreement (never used for training)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--teachers", nargs="+", default=DEFAULT_TEACHERS, help="teacher checkpoints or run dirs")
    p.add_argument("--losses", nargs="+", default=["kd", "policy", "rkd"], help="losses to compare")
    p.add_argument("--experience", nargs="+", default=["teacher"], help="teacher and/or student")
    p.add_argument("--size", default="quarter", help="student size (as rewind distill --student)")
    p.add_argument("--steps", type=int, default=30_000, help="env steps of distillation per student")
    p.add_argument("--seed", type=int, default=0, help="student seed")
    p.add_argument("--eval-episodes", type=int, default=500, help="final evaluation episodes per model")
    p.add_argument("--heldout", type=int, default=5000, help="held-out states for the agreement rate")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a distillation setting (agent.*, run.*) for every student")
    p.add_argument("--workdir", default="runs/distill_minatar", help="where the student runs go (not committed)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "distill"),
                   help="folder for table.md, results.json, curves.png")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.eval_episodes < 2 or args.heldout < 1 or args.steps < 1:
        raise RewindError("--eval-episodes must be >= 2, --heldout and --steps >= 1")
    return args


def stats(returns) -> tuple[float, float]:
    r = np.asarray(returns, dtype=np.float64)
    return float(r.mean()), float(r.std(ddof=1) / np.sqrt(len(r)))


def retained(student, teacher) -> tuple[float, float]:
    (ms, ss), (mt, st) = student, teacher
    ratio = ms / mt
    return ratio, abs(ratio) * float(np.hypot(ss / ms if ms else 0.0, st / mt))


def run_one(teacher_path: str, loss: str, experience: str, args, overrides: dict, held_out: np.ndarray,
            t_eval: dict) -> dict:
    name = f"{Path(teacher_path).name}__{loss}__{experience}"
    logdir = Path(args.workdir) / name
    job = prepare(teacher_path, args.size, loss, experience, args.steps, args.seed,
                  merge({"run": {"eval_every": max(1, args.steps // 6), "eval_episodes": 30,
                                 "torch_threads": args.threads}}, overrides))
    if not finished(logdir):   # an interrupted student resumes; it is not evaluated half-trained
        print(f"distilling {name} ({args.steps} steps)", file=sys.stderr)
        run_or_resume(job["exp"], logdir, progress=not args.no_progress)
    student, env, _ = load_for_eval(logdir)
    run = job["exp"].run
    s_eval = evaluate(student, env, args.eval_episodes, run.eval_epsilon, run.eval_max_steps, seed=EVAL_SEED)
    seen_fraction, unseen_agreement = unseen(logdir, held_out, student.q, job["teacher"].q)
    curve = json.loads((logdir / "evaluations.json").read_text())
    return {"teacher": Path(teacher_path).name, "loss": loss, "experience": experience,
            "width": job["exp"].agent_config.width, "student_params": job["student_params"],
            "teacher_params": job["teacher_params"], "student_returns": s_eval["returns"],
            "teacher_returns": t_eval["returns"], "agreement": agreement(student.q, job["teacher"].q, held_out),
            "unseen_fraction": seen_fraction, "agreement_unseen": unseen_agreement,
            "curve": [(e["step"], e["return_mean"]) for e in curve], "logdir": str(logdir)}


def unseen(logdir: Path, held_out: np.ndarray, student_q, teacher_q):
    """(fraction of held-out states the student's replay never stored, agreement on those)."""
    replay = load_checkpoint(logdir).get("replay")
    if replay is None:
        return None, None
    seen = {f.tobytes() for f in replay["frames"].numpy()}
    mask = np.array([s.tobytes() not in seen for s in held_out])
    return float(mask.mean()), (agreement(student_q, teacher_q, held_out[mask]) if mask.any() else None)


def table(rows: list[dict]) -> str:
    lines = ["| teacher | loss | experience | params (student / teacher) | teacher return | student return | "
             "retained | agreement (held-out) | agreement (unseen states) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t, s = stats(r["teacher_returns"]), stats(r["student_returns"])
        ratio, se = retained(s, t)
        unseen = (f"{r['agreement_unseen']:.3f} ({r['unseen_fraction']:.0%} of states)"
                  if r.get("agreement_unseen") is not None else "n/a")
        lines.append(f"| {r['teacher']} | {r['loss']} | {r['experience']} | {r['student_params']:,} / "
                     f"{r['teacher_params']:,} ({r['student_params'] / r['teacher_params']:.1%}) | "
                     f"{t[0]:.2f} +- {t[1]:.2f} | {s[0]:.2f} +- {s[1]:.2f} | {ratio:.1%} +- {se:.1%} | "
                     f"{r['agreement']:.3f} | {unseen} |")
    lines += ["", "Mean over teachers (retained = mean over teachers of student / teacher return):", "",
              "| loss | experience | retained | min over teachers | agreement | >= 90% retained |", "|---|---|---|---|---|---|"]
    for key in dict.fromkeys((r["loss"], r["experience"]) for r in rows):
        group = [r for r in rows if (r["loss"], r["experience"]) == key]
        ratios = [retained(stats(r["student_returns"]), stats(r["teacher_returns"]))[0] for r in group]
        agree = np.mean([r["agreement"] for r in group])
        lines.append(f"| {key[0]} | {key[1]} | {np.mean(ratios):.1%} | {min(ratios):.1%} | {agree:.3f} | "
                     f"{'yes' if np.mean(ratios) >= 0.9 else 'no'} |")
    return "\n".join(lines)


def notes(rows: list[dict], heldout: int) -> str:
    """Numbers a reader needs to weigh the table (computed, not written by hand)."""
    fractions = [r["unseen_fraction"] for r in rows if r.get("unseen_fraction") is not None]
    first = [r["curve"][0] for r in rows if r["curve"]]
    first_ratio = np.mean([v / stats(r["teacher_returns"])[0] for r, (_, v) in zip(rows, first)]) if first else None
    out = [f"- Retained: standard error by the delta method over both {len(rows[0]['teacher_returns'])}-episode means."]
    if fractions:
        out.append(f"- Unseen states: on average {np.mean(fractions):.1%} of the {heldout} held-out states "
                   f"(~{np.mean(fractions) * heldout:.0f} states) were never stored in the student's replay; "
                   "the others recur in training (MinAtar screens repeat), so the first agreement column "
                   "mostly measures fit on visited states.")
    if first_ratio is not None:
        out.append(f"- At the first periodic evaluation (step {first[0][0]:,}; 30 episodes) students already had "
                   f"{first_ratio:.0%} of their teacher's final return on average (curves.png).")
    return "\n".join(out)


def plot(rows: list[dict], out: Path) -> None:
    matplotlib = require("matplotlib", "bench", "plotting")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key in dict.fromkeys((r["loss"], r["experience"]) for r in rows):
        group = [r for r in rows if (r["loss"], r["experience"]) == key]
        steps = [s for s, _ in group[0]["curve"]]
        mean = np.mean([[v for _, v in r["curve"]] for r in group], axis=0)
        ax.plot(steps, mean, marker="o", label=f"{key[0]} ({key[1]} experience)")
    teacher_mean = np.mean([stats(r["teacher_returns"])[0] for r in rows])
    ax.axhline(teacher_mean, color="k", ls="--", label="teachers (mean of final evaluations)")
    ax.axhline(0.9 * teacher_mean, color="gray", ls=":", label="90% of teachers")
    ax.set_xlabel("distillation env steps")
    ax.set_ylabel("eval return (30 episodes, mean over teachers)")
    ax.set_title("MinAtar Breakout: quarter-parameter students")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = parse_set(args.set)
    out = Path(args.out)
    rows = []
    for teacher_path in args.teachers:
        teacher, env, meta = load_teacher(teacher_path)
        eps, max_steps = eval_protocol(meta)
        t_eval = evaluate(teacher, env, args.eval_episodes, eps, max_steps, seed=EVAL_SEED)
        held_out = collect_states(teacher, env, args.heldout, seed=HELDOUT_SEED, epsilon=0.05)
        for loss in args.losses:
            for experience in args.experience:
                row = run_one(teacher_path, loss, experience, args, overrides, held_out, t_eval)
                rows.append(row)
                t, s = stats(row["teacher_returns"]), stats(row["student_returns"])
                print(f"{row['teacher']} {loss} {experience}: teacher {t[0]:.2f}, student {s[0]:.2f}, "
                      f"retained {s[0] / t[0]:.1%}, agreement {row['agreement']:.3f}", file=sys.stderr)
    settings = {k: v for k, v in vars(args).items() if k not in ("no_progress",)}
    atomic_write_json(out / "results.json", {"settings": settings, "rows": rows})
    plot(rows, out / "curves.png")
    body = (f"Students of size `{args.size}` distilled for {args.steps:,} env steps (one minibatch of 32 per step, "
            f"Adam 1e-3); returns over {args.eval_episodes} evaluation episodes (same seeds for every model, "
            "epsilon 0, sticky actions 0.1), +- one standard error. Agreement: greedy actions of student and "
            f"teacher on {args.heldout} states the teacher visited (epsilon 0.05) in episodes with seeds never "
            "used in training.\n\n" + table(rows) + "\n\n" + notes(rows, args.heldout)
            + "\n\n![eval return during distillation](curves.png)")
    write_result(out / "table.md", "Distillation on MinAtar Breakout", "rewind.bench.studies.distill_minatar",
                 argv, body)
    return 0


if __name__ == "__main__":
    sys.exit(exit_code(lambda: main()))
