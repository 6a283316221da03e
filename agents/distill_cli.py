"""`rewind distill`: train a smaller student from a trained teacher checkpoint.

    rewind distill runs/dqn-minatar-breakout-s0 --student quarter
    rewind distill runs/teacher/checkpoint.pt --student 0.5 --loss rkd --experience student --steps 100000
    rewind distill runs/teacher --student half --logdir runs/student --resume

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

SIZES = {"quarter": 0.25, "half": 0.5}


def register(subparsers) -> None:
    p = subparsers.add_parser("distill", help="distil a trained agent into a smaller student (KD, policy, RKD)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("teacher", metavar="TEACHER_CHECKPOINT",
                   help="teacher checkpoint.pt (or its run directory) written by `rewind train` (dqn, ebu, distill)")
    p.add_argument("--student", required=True, metavar="SIZE",
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


def canonical_env(name: str) -> str:
    """One spelling per env: minatar-breakout == MinAtar/Breakout-v1, pong == ALE/Pong-v5."""
    from rewind.envs import env_kind
    from rewind.envs.atari import resolve_atari_id
    from rewind.envs.minatar import resolve_minatar_id

    kind = env_kind(name)
    if kind == "minatar":
        return f"minatar-{resolve_minatar_id(name)}"
    if kind == "atari":
        return resolve_atari_id(name)
    return name


def student_width(size: str, teacher_agent_config: dict, observation_space, n_actions: int,
                  teacher_params: int) -> float:
    """Absolute width multiplier for SIZE (a multiplier of the teacher's width, or quarter/half)."""
    from rewind.agents.distill import count_parameters
    from rewind.agents.networks import build_q_network

    t_width = float(teacher_agent_config.get("width", 1.0))
    if size in SIZES:
        kind = teacher_agent_config.get("network", "auto")
        hidden = tuple(teacher_agent_config.get("hidden", (256, 256)))
        target = SIZES[size] * teacher_params
        best = None
        for k in range(1, 65):  # widths t_width * k/64: nearest parameter count to the target
            w = t_width * k / 64
            gap = abs(count_parameters(build_q_network(kind, observation_space, n_actions, hidden, w)) - target)
            if best is None or gap <= best[0]:
                best = (gap, w)
        return best[1]
    try:
        mult = float(size)
    except ValueError:
        mult = -1.0
    if not mult > 0:
        raise RewindError(f"--student must be a width multiplier > 0 (e.g. 0.5) or one of "
                          f"{', '.join(SIZES)}; got {size!r}")
    return t_width * mult


def prepare(teacher_path: str, size: str, loss: str = "policy", experience: str = "teacher", steps: int = 50_000,
            seed: int = 0, overrides: dict | None = None, env: str | None = None) -> dict:
    """Check the inputs and resolve the distillation run; returns the Experiment, the loaded teacher
    (agent, eval env, meta) and both parameter counts. Every problem is a one-line RewindError."""
    from rewind.agents.distill import EXPERIENCE, LOSSES, count_parameters, load_teacher
    from rewind.agents.experiment import resolve
    from rewind.agents.networks import build_q_network
    from rewind.config import merge

    if loss not in LOSSES:
        raise RewindError(f"unknown loss {loss!r}; choose from: {', '.join(LOSSES)}")
    if experience not in EXPERIENCE:
        raise RewindError(f"--experience must be teacher or student, got {experience!r}")
    if steps < 1:
        raise RewindError("--steps must be >= 1")
    teacher, teacher_env, tmeta = load_teacher(teacher_path)
    if env is not None and canonical_env(env) != canonical_env(tmeta["env"]):
        raise RewindError(f"teacher {teacher_path} was trained on {tmeta['env']}, not {env}; "
                          "give a teacher for that env or drop --env")
    t_cfg = tmeta.get("agent_config") or {}
    t_params = count_parameters(teacher.q)
    width = student_width(size, t_cfg, teacher_env.observation_space, teacher.n_actions, t_params)
    t_run = tmeta.get("run") or {}
    base = {
        "agent": {"teacher": str(Path(teacher_path).resolve()), "network": t_cfg.get("network", "auto"),
                  "hidden": list(t_cfg.get("hidden", (256, 256))), "width": width, "loss": loss,
                  "experience": experience},
        "env": dict(tmeta.get("env_config") or {}),
        "run": {k: t_run[k] for k in ("eval_episodes", "eval_epsilon", "eval_max_steps") if k in t_run},
    }
    exp = resolve("distill", tmeta["env"], None, merge(base, overrides or {}), steps, seed)
    cfg = exp.agent_config
    s_params = count_parameters(build_q_network(cfg.network, teacher_env.observation_space, teacher.n_actions,
                                                cfg.hidden, cfg.width))
    return {"exp": exp, "teacher": teacher, "teacher_env": teacher_env, "teacher_meta": tmeta,
            "teacher_params": t_params, "student_params": s_params}


def run(args) -> int:
    from rewind.agents.experiment import exit_status, run_experiment
    from rewind.agents.loop import eval_seed, evaluate
    from rewind.config import parse_set

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
    """Stand-alone entry (`python -m rewind.agents.distill_cli ...`); `rewind distill` is the same."""
    return standalone_main(register, argv)


if __name__ == "__main__":
    raise SystemExit(main())
