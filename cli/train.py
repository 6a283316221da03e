"""`rewind train`: resolve the config layers, run the experiment, print where it went."""

from __future__ import annotations

import argparse
import sys

EPILOG_TRAIN = """\
config layers (later wins): agent defaults < preset for agent+env family
(dqn on Atari -> dqn_nature, MinAtar -> dqn_minatar, classic control -> dqn_classic)
< --config FILE < --set section.key=value. Sections: agent, env, run.

examples:
  rewind train --env CartPole-v1 --steps 50000 --logdir runs/cartpole
  rewind train --agent dqn --env breakout --steps 1000000 --logdir runs/breakout --set agent.double=true
  rewind train --env breakout --logdir runs/breakout --steps 2000000 --resume
  rewind train --env minatar-breakout --steps 40000 --grow-at 20000 --widen 2 --logdir runs/grown
  rewind train --env breakout --logdir runs/breakout --video-every 250000     # MP4s of evaluations
  rewind train --config study/best.yaml --env minatar-breakout                # a `rewind tune` result
  tensorboard --logdir runs

every run directory holds: TensorBoard events, progress.csv (one row per log interval),
episodes.csv (step, return, length, time), evaluations.json, config.yaml, checkpoint.pt.
"""


def register(sub) -> None:
    from rewind.agents import AGENTS

    p = sub.add_parser("train", help="train an agent in an env", epilog=EPILOG_TRAIN,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train an agent; logs TensorBoard scalars, evaluations and checkpoints to --logdir.")
    p.add_argument("--agent", default=None, help=f"agent name (default: the config's algo, else dqn); one of: "
                   f"{', '.join(sorted(AGENTS))}")
    p.add_argument("--env", default="CartPole-v1",
                   help="env: Atari short name (pong, breakout) or ALE id, MinAtar id (minatar-breakout), "
                        "gymnasium id, rewind/... id; `rewind envs` lists them (default: CartPole-v1)")
    p.add_argument("--steps", type=int, default=None, help="total env steps (default: the preset's run.steps)")
    p.add_argument("--logdir", default=None, help="folder for TensorBoard events, evaluations.json, checkpoint.pt "
                   "(default: runs/<agent>-<env>-s<seed>)")
    p.add_argument("--seed", type=int, default=0, help="seed for python, numpy, torch and the env (default: 0)")
    p.add_argument("--config", default=None, help="YAML file or preset name from rewind/configs")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. agent.lr=1e-4 or run.eval_every=5000 (repeatable)")
    p.add_argument("--curriculum", default=None, metavar="NAME",
                   help="let a teacher pick the task of each training episode: tscl-window, tscl-online, "
                        "tscl-naive, tscl-sampling, plr, uniform (options via --set curriculum.options.KEY=V)")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --logdir")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--video-every", type=int, default=None, metavar="STEPS",
                   help="record the evaluation episodes as MP4 in LOGDIR/videos/ every STEPS env steps "
                        "(= run.video_every; needs rewind-rl[video])")
    p.add_argument("--track", nargs="?", const="rewind", default=None, metavar="PROJECT",
                   help="mirror the logs to Weights & Biases project PROJECT (default project: rewind; "
                        "= run.track; needs rewind-rl[wandb]; off by default)")
    p.add_argument("--grow-at", type=int, default=None, metavar="STEPS",
                   help="Net2Net: at this env step grow the agent's Q-networks (online, target) and optimizer "
                        "state without changing the Q-function (= --set run.grow_at=STEPS; dqn/ebu agents)")
    p.add_argument("--widen", type=float, default=None, metavar="FACTOR",
                   help="with --grow-at: multiply every hidden layer's width by FACTOR >= 1 (= run.widen)")
    p.add_argument("--deepen", type=int, default=None, metavar="N",
                   help="with --grow-at: insert N identity layers (+ReLU) after the last hidden layer (= run.deepen)")
    p.set_defaults(func=_cmd_train)


def _default_logdir(agent: str, env: str, seed: int) -> str:
    safe = env.replace("/", "_")
    return f"runs/{agent}-{safe}-s{seed}"


def _cmd_train(args) -> int:
    from rewind.run.experiment import exit_status, resolve, run_experiment
    from rewind.config import parse_set

    overrides = parse_set(args.set)
    for flag, key in ((args.grow_at, "grow_at"), (args.widen, "widen"), (args.deepen, "deepen"),
                      (args.video_every, "video_every"), (args.track, "track")):
        if flag is not None:
            overrides.setdefault("run", {})[key] = flag
    if args.curriculum:
        overrides.setdefault("curriculum", {})["name"] = args.curriculum
    exp = resolve(args.agent, args.env, args.config, overrides, args.steps, args.seed)
    logdir = args.logdir or _default_logdir(exp.agent, exp.env, exp.seed)
    summary = run_experiment(exp, logdir, resume=args.resume, progress=not args.no_progress, on_start=lambda: print(
        f"rewind: training {exp.agent} on {exp.env} for {exp.run.steps} steps -> {logdir}", file=sys.stderr))
    ev = summary.get("last_eval")
    tail = f", eval return {ev['return_mean']:.2f} +- {ev['return_std']:.2f}" if ev else ""
    state = "interrupted" if summary["interrupted"] else "done"
    print(f"rewind: {state} at step {summary['steps']} ({summary['episodes']} episodes{tail}); "
          f"checkpoint in {logdir}/checkpoint.pt")
    return exit_status(summary)
