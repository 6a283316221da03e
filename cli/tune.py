"""`rewind tune`: hyperparameter search with Optuna; the library code is run/tune.py."""

from __future__ import annotations

import argparse
import sys
import time

from rewind.errors import RewindError

EPILOG = """\
The study lives in DIR: study.db (Optuna's SQLite storage; `optuna-dashboard sqlite:///DIR/study.db`
shows it), study.yaml (what every trial shares), trials/NNNN/ (each trial is an ordinary run
directory) and best.yaml (the best trial's complete config, a preset for `rewind train --config`).
Rerun the same command to resume after Ctrl-C, or to add trials with a larger --trials.
--trials counts finished trials (complete or pruned) of the whole study, over every invocation.

search space: configs/tune_AGENT.yaml (dqn, ebu) or --space FILE, one config key a line:
  agent.lr: {float: [1.0e-5, 1.0e-2], log: true}
  agent.batch_size: {choices: [32, 64, 128]}
  agent.target_update_every: {int: [100, 5000], log: true}

examples:
  rewind tune --agent dqn --env minatar-breakout --trials 20 --workers 2 --study studies/breakout --steps 30000
  rewind train --config studies/breakout/best.yaml --env minatar-breakout --steps 1000000
"""


def register(sub) -> None:
    p = sub.add_parser("tune", help="search hyperparameters with Optuna", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Tune an agent's hyperparameters on an env with Optuna: each trial is a short "
                                   "training run, pruned on its periodic evaluations; the best config is written "
                                   "as a preset. Needs rewind-rl[tune].")
    p.add_argument("--agent", default="dqn", help="agent to tune (default: dqn)")
    p.add_argument("--env", required=True, help="env id, as for `rewind train`")
    p.add_argument("--study", required=True, metavar="DIR", help="study folder (created, or resumed if it exists)")
    p.add_argument("--trials", type=int, default=20, help="finished trials the study should hold (default: 20)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes sharing the study (default: 1)")
    p.add_argument("--steps", type=int, default=None, help="env steps per trial (default: the preset's run.steps)")
    p.add_argument("--space", default=None, metavar="FILE", help="search-space YAML (default: configs/tune_AGENT.yaml)")
    p.add_argument("--config", default=None, help="fixed settings for every trial: YAML file or preset name")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="fix one setting for every trial, e.g. run.eval_every=10000 (repeatable)")
    p.add_argument("--sampler", default="tpe", choices=["tpe", "random"], help="Optuna sampler (default: tpe)")
    p.add_argument("--pruner", default="median",
                   help="median (Optuna's MedianPruner: a trial whose evaluation return is below the median of "
                        "earlier trials at the same step, judged after the first third of its steps), none, or "
                        "below:VALUE (prune a trial whose evaluation return is below VALUE) (default: median)")
    p.add_argument("--startup-trials", type=int, default=5,
                   help="trials sampled at random and never pruned before TPE and pruning start (default: 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of every trial's run and of the sampler (default: 0)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default: 1)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="another Optuna storage URL (e.g. postgresql://...) for workers on several machines "
                        "(default: sqlite:///DIR/study.db)")
    p.set_defaults(func=_cmd_tune)


def _cmd_tune(args) -> int:
    from rewind.config import load_yaml, merge, parse_set
    from rewind.run.tune import StudySpec, finished_trials, load_space, prepare, pruners, samplers, tune

    for name in ("trials", "workers", "threads"):
        if getattr(args, name) < 1:
            raise RewindError(f"--{name} must be >= 1")
    if args.startup_trials < 0:
        raise RewindError("--startup-trials must be >= 0")
    fixed = merge(load_yaml(args.config) if args.config else {}, parse_set(args.set))
    fixed.pop("algo", None)
    spec = StudySpec(agent=args.agent, env=args.env, space=load_space(args.agent, args.space), config=fixed,
                     steps=args.steps, seed=args.seed)
    samplers(args.sampler, 0, args.startup_trials), pruners(args.pruner, args.startup_trials)
    prepare(args.study, spec)   # every problem is one line before the banner
    print(f"rewind: tuning {args.agent} on {args.env}: {args.trials} trials, {args.workers} worker(s) -> {args.study}",
          file=sys.stderr)
    t0 = time.perf_counter()
    try:
        study = tune(args.study, spec, args.trials, args.workers, args.sampler, args.pruner, args.startup_trials,
                     args.storage, args.threads)
    except KeyboardInterrupt:
        print(f"rewind: tune interrupted; rerun the same command to continue the study in {args.study}",
              file=sys.stderr)
        return 130
    wall = time.perf_counter() - t0
    print(f"{'trial':>5}  {'state':8}  {'value':>9}  params")
    for t in study.get_trials(deepcopy=False):
        value = f"{t.value:9.3f}" if t.value is not None else (
            f"{max(t.intermediate_values.values()):9.3f}" if t.intermediate_values else f"{'-':>9}")
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items())
        print(f"{t.number:5d}  {t.state.name.lower():8}  {value}  {params}")
    done = finished_trials(study)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if complete:
        best = max(complete, key=lambda t: t.value)
        print(f"best: trial {best.number}, eval return {best.value:.3f}; preset {args.study}/best.yaml")
    print(f"{done} finished trials; this invocation took {wall:.0f} s")
    return 0
