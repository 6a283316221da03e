"""`rewind distill`: train a smaller student from a trained teacher checkpoint.

    rewind distill runs/dqn-minatar-breakout-s0 --student quarter
    rewind distill runs/teacher/checkpoint.pt --student 0.5 --loss rkd --experience student --steps 100000
    rewind distill runs/teacher --student half --logdir runs/student --resume
    rewind distill runs/teacher --data-free --ratio 4          # KegNet: no env data, Tucker-2 student

The student is the teacher's network (same kind, same hidden sizes) with every hidden layer
scaled: SIZE is a width multiplier of the teacher's width (0.5) or a name (quarter, half: the
width whose student has the parameter count nearest 1/4 or 1/2 of the teacher's; on MinAtar,
quarter is width 0.5). Env, env options and the evaluation protocol are the teacher's. The run
is an ordinary rewind run (agent `distill`): TensorBoard, evaluations.json, checkpoint.pt,
--resume, and `rewind eval LOGDIR` evaluates the student. At the end both parameter counts and
both final evaluation returns (same protocol, same episode seeds) are printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rewind.errors import RewindError, standalone_main

def register(subparsers) -> None:
    p = subparsers.add_parser("distill", help="distil a trained agent into a smaller student (KD, policy, RKD)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("teacher", metavar="TEACHER_CHECKPOINT",
                   help="teacher checkpoint.pt (or its run directory) written by `rewind train` (dqn, ebu, distill)")
    p.add_argument("--data-free", action="store_true",
                   help="KegNet (Yoo et al. 2019): train a generator against the teacher, Tucker-2 decompose it "
                        "(--tucker-ranks or --ratio) and fine-tune the student on generated samples only; "
                        "needs pip install rewind-rl[tucker]")
    p.add_argument("--tucker-ranks", default=None, metavar="R_OUT,R_IN",
                   help="--data-free: Tucker-2 ranks for every layer")
    p.add_argument("--ratio", type=float, default=None, help="--data-free: target compression ratio per layer")
    p.add_argument("--generator-steps", type=int, default=2000, help="--data-free: generator steps (default 2000)")
    p.add_argument("--student", default=None, metavar="SIZE",
                   help="student size: width multiplier of the teacher's layers (e.g. 0.5) or quarter / half "
                        "(width giving ~1/4 or ~1/2 of the teacher's parameters)")
    p.add_argument("--loss", default="policy", metavar="LOSS",
                   help="kd (Hinton, Q-values as logits, temperature agent.kd_temperature), policy (Rusu et al. "
                        "KL with teacher temperature agent.policy_tau=0.01) or rkd (Park et al. distance + angle "
                        "losses on embeddings, plus the kd output term) (default: policy)")
    p.add_argument("--experience", default="teacher", metavar="WHO",
                   help="whose epsilon-greedy policy collects the states: teacher (Rusu et al.) or student "
                        "(default: teacher)")
    p.add_argument("--env", default=None,
                   help="check the teacher was trained on this env (default: the teacher's env is used)")
    p.add_argument("--steps", type=int, default=50_000, help="env steps of distillation (default: 50000)")
    p.add_argument("--logdir", default=None,
                   help="run folder (default: runs/distill-<env>-<loss>-s<seed>)")
    p.add_argument("--seed", type=int, default=0, help="seed of the student, the env and the sampling (default: 0)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. agent.lr=5e-4, agent.kd_temperature=2, run.eval_episodes=100 "
                        "(repeatable; sections agent, env, run)")
    p.add_argument("--resume", action="store_true", help="continue the distillation saved in --logdir")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run_data_free(args) -> int:
    import torch

    from rewind.transfer.kegnet import data_free_q_distill

    if args.student is not None:
        raise RewindError("--data-free makes a Tucker-2 student: give --tucker-ranks or --ratio, not --student")
    ranks = None
    if args.tucker_ranks is not None:
        try:
            ranks = tuple(int(r) for r in args.tucker_ranks.split(","))
        except ValueError:
            ranks = ()
        if len(ranks) != 2:
            raise RewindError(f"--tucker-ranks must be R_OUT,R_IN (two integers), got {args.tucker_ranks!r}")
    if (ranks is None) == (args.ratio is None):
        raise RewindError("--data-free needs exactly one of --tucker-ranks R_OUT,R_IN or --ratio X")
    res = data_free_q_distill(args.teacher, ranks=ranks, ratio=args.ratio, gen_steps=args.generator_steps,
                              tune_steps=args.steps, seed=args.seed)
    logdir = Path(args.logdir or f"runs/kegnet-s{args.seed}")
    logdir.mkdir(parents=True, exist_ok=True)
    torch.save(res["student"], logdir / "student_tucker.pt")
    print(f"teacher: {res['teacher_params']:,} parameters, eval return {res['teacher_return']:.2f}")
    print(f"Tucker-2 student: {res['student_params']:,} parameters "
          f"({res['student_params'] / res['teacher_params']:.1%}); eval return after decomposition "
          f"{res['decomposed_return']:.2f}, after data-free fine-tuning {res['finetuned_return']:.2f}")
    print(f"rewind: student module in {logdir}/student_tucker.pt (torch.load; not a `rewind eval` checkpoint)")
    return 0


def run(args) -> int:
    if args.data_free:
        return run_data_free(args)
    if args.student is None:
        raise RewindError("--student SIZE is required (or --data-free)")
    from rewind.run.experiment import exit_status, run_experiment
    from rewind.run.loop import eval_seed, evaluate
    from rewind.config import parse_set

    from rewind.files import writable_dir
    from rewind.transfer.distill_setup import prepare

    if args.seed < 0:
        raise RewindError(f"--seed must be >= 0, got {args.seed}")
    if args.logdir is not None:
        writable_dir(args.logdir, "--logdir")
    job = prepare(args.teacher, args.student, args.loss, args.experience, args.steps, args.seed,
                  parse_set(args.set), args.env)
    exp, teacher, tmeta = job["exp"], job["teacher"], job["teacher_meta"]
    t_params, s_params, cfg = job["teacher_params"], job["student_params"], job["exp"].agent_config
    logdir = args.logdir or f"runs/distill-{exp.env.replace('/', '_')}-{cfg.loss}-s{exp.seed}"

    def banner():
        print(f"rewind: distilling {tmeta['agent']} teacher ({t_params:,} parameters) on {exp.env} into a width-"
              f"{cfg.width:g} student ({s_params:,} parameters, {s_params / t_params:.1%}) with loss {cfg.loss}, "
              f"{cfg.experience} experience, {exp.run.steps} steps -> {logdir}", file=sys.stderr)

    summary = run_experiment(exp, logdir, resume=args.resume, progress=not args.no_progress, on_start=banner)
    run_cfg = exp.run
    t_eval = evaluate(teacher, job["teacher_env"], run_cfg.eval_episodes, run_cfg.eval_epsilon,
                      run_cfg.eval_max_steps, seed=eval_seed(exp.seed))  # the loop's: same episode starts
    s_eval = summary.get("last_eval")
    print(f"teacher: {t_params:>10,} parameters  eval return {t_eval['return_mean']:.2f} +- "
          f"{t_eval['return_std']:.2f} ({run_cfg.eval_episodes} episodes)")
    if s_eval:
        ratio = s_eval["return_mean"] / t_eval["return_mean"] if t_eval["return_mean"] else float("nan")
        print(f"student: {s_params:>10,} parameters  eval return {s_eval['return_mean']:.2f} +- "
              f"{s_eval['return_std']:.2f} ({run_cfg.eval_episodes} episodes); {ratio:.0%} of the teacher's")
    print(f"rewind: {'interrupted' if summary['interrupted'] else 'done'} at step {summary['steps']}; "
          f"student checkpoint in {logdir}/checkpoint.pt (`rewind eval {logdir}`)")
    return exit_status(summary)


def main(argv=None) -> int:
    """Stand-alone entry (`python -m rewind.cli.distill ...`); `rewind distill` is the same."""
    return standalone_main(register, argv)


if __name__ == "__main__":
    raise SystemExit(main())
