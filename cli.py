"""The `rewind` command line: train, eval, envs, plus the commands other modules register.

Every user error is a RewindError: printed as one line, exit code 2, nothing overwritten.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rewind.errors import RewindError, exit_code

# Modules that add subcommands: each exposes register(subparsers) and sets func on its parser.
EXTENSIONS: list[str] = [
    "rewind.controllers.search_cli",   # rewind search (ENAS / random search)
    "rewind.bench.curriculum_cli",     # rewind curriculum shapes|maze
    "rewind.bench.cli",                # rewind bench run|report|list
    "rewind.agents.compress_cli",      # rewind compress CHECKPOINT --prune 0.9 --bits 5
    "rewind.agents.distill_cli",       # rewind distill TEACHER --student SIZE
]

EPILOG_TRAIN = """\
config layers (later wins): agent defaults < preset for agent+env family
(dqn on Atari -> dqn_nature, MinAtar -> dqn_minatar, classic control -> dqn_classic)
< --config FILE < --set section.key=value. Sections: agent, env, run.

examples:
  rewind train --env CartPole-v1 --steps 50000 --logdir runs/cartpole
  rewind train --agent dqn --env breakout --steps 1000000 --logdir runs/breakout --set agent.double=true
  rewind train --env breakout --logdir runs/breakout --steps 2000000 --resume
  rewind train --env minatar-breakout --steps 40000 --grow-at 20000 --widen 2 --logdir runs/grown
  tensorboard --logdir runs
"""


def _add_train(sub) -> None:
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
    from rewind.agents.experiment import exit_status, resolve, run_experiment
    from rewind.config import parse_set

    overrides = parse_set(args.set)
    for flag, key in ((args.grow_at, "grow_at"), (args.widen, "widen"), (args.deepen, "deepen")):
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


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint",
                       description="Evaluate a saved agent with the fixed protocol (epsilon-greedy, no-op starts, "
                                   "episode cap) on the evaluation version of its env.")
    p.add_argument("checkpoint", help="checkpoint.pt or the run directory holding it")
    p.add_argument("--episodes", type=int, default=10, help="episodes to play (default: 10)")
    p.add_argument("--epsilon", type=float, default=None, help="evaluation epsilon (default: the run's eval_epsilon)")
    p.add_argument("--max-steps", type=int, default=None, help="steps per episode cap (default: the run's)")
    p.add_argument("--seed", type=int, default=12345, help="seed of the evaluation episodes")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: the run's run.torch_threads, else 1: acting is one state at "
                        "a time, and extra threads only contend on a busy machine)")
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args) -> int:
    import torch

    from rewind.agents.experiment import eval_protocol, load_for_eval
    from rewind.agents.loop import evaluate

    if args.episodes < 1:
        raise RewindError("--episodes must be >= 1")
    if args.threads is not None and args.threads < 1:
        raise RewindError("--threads must be >= 1")
    agent, env, meta = load_for_eval(args.checkpoint)
    run = meta.get("run", {})
    torch.set_num_threads(args.threads or run.get("torch_threads") or 1)
    run_eps, run_max_steps = eval_protocol(meta)
    eps = args.epsilon if args.epsilon is not None else run_eps
    max_steps = args.max_steps or run_max_steps
    result = evaluate(agent, env, args.episodes, eps, max_steps, seed=args.seed)
    print(f"{meta['agent']} on {meta['env']}: {args.episodes} episodes, epsilon {eps}")
    print("episode  return")
    for i, r in enumerate(result["returns"]):
        print(f"{i:7d}  {r:.2f}")
    print(f"mean {result['return_mean']:.2f} +- {result['return_std']:.2f} (std), "
          f"mean length {result['length_mean']:.0f}")
    return 0


def _add_envs(sub) -> None:
    p = sub.add_parser("envs", help="list the env ids rewind can make")
    p.add_argument("--kind", choices=["all", "atari", "minatar", "gym", "rewind"], default="all",
                   help="only this family")
    p.set_defaults(func=_cmd_envs)


def _cmd_envs(args) -> int:
    from rewind.envs import list_env_ids
    from rewind.envs.atari import atari_names
    from rewind.envs.minatar import minatar_ids

    ids = list_env_ids()
    groups = {
        "atari": [f"{k:20s} {v}" for k, v in sorted(atari_names().items())],
        "minatar": minatar_ids(),
        "rewind": [i for i in ids if i.startswith("rewind/")],
    }
    groups["gym"] = [i for i in ids if i not in set(atari_names()) | set(atari_names().values())
                     and i not in groups["minatar"] and i not in groups["rewind"]]
    for kind, items in groups.items():
        if args.kind in ("all", kind):
            print(f"# {kind} ({len(items)})")
            print("\n".join(items))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from rewind import __version__

    parser = argparse.ArgumentParser(prog="rewind", description="rewind: EBU, DQN, ENAS and curriculum agents "
                                     "behind one interface. `rewind COMMAND --help` explains each command.")
    parser.add_argument("--version", action="version", version=f"rewind {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    _add_eval(sub)
    _add_envs(sub)
    for module in EXTENSIONS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return exit_code(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
