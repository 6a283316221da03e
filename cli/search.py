"""`rewind search`: ENAS (or random search) over a space, then derive, retrain and test.

    rewind search --space mlp --data digits
    rewind search --space macro --data digits --strategy random --seed 3
    rewind search --space mlp --data digits --budget 340        # 340 shared-weight optimizer steps, any strategy
    rewind search --space micro --data ~/cifar-10-batches-py --config enas_micro --set env.phases=10
    rewind search --space macro --data digits --arch runs/x/arch.json     # retrain a given architecture
    rewind search --space qnet --data breakout_q.npz --budget 1500     # Q-network search on teacher Q-values

Settings come from a preset (default: ``enas_<data>_<space>`` if it exists, else
``enas_<space>``) with sections space / agent / env / search, then ``--set`` overrides and the
shortcut flags. Outputs in --logdir: checkpoint.pt, TensorBoard events, arch.json, arch.txt,
arch.png, result.json. ``--resume`` continues an interrupted search from its checkpoint.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rewind.errors import RewindError, standalone_main

SECTIONS = ("space", "agent", "env", "search")


def register(subparsers) -> None:
    p = subparsers.add_parser("search", help="architecture search (ENAS or random) with weight sharing",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", required=True, help="search space: macro, micro, rnn, mlp or qnet")
    p.add_argument("--data", required=True, help="digits, shapes, shapes-basic, a CIFAR-10 / PTB directory, or "
                                                 "a Q-value .npz of a trained agent (for --space qnet)")
    p.add_argument("--strategy", default="enas", help="enas (default) or random (random search, same budget)")
    p.add_argument("--config", help="preset name or YAML file (sections space, agent, env, search)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a setting")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logdir", help="output folder (default runs/search-<space>-<data>-<strategy>-s<seed>)")
    p.add_argument("--resume", action="store_true", help="continue the search checkpointed in --logdir")
    p.add_argument("--phases", type=int, help="budget: shared-weight epochs, each followed by a controller phase")
    p.add_argument("--budget", type=int,
                   help="compute budget: shared-weight optimizer steps, the same for every strategy (replaces "
                        "--phases; rewards = phases x env.controller_steps); wall-clock is reported, not a budget")
    p.add_argument("--derive-samples", type=int, help="architectures scored in the derive step")
    p.add_argument("--retrain-epochs", type=int, help="epochs of training from scratch (0: skip)")
    p.add_argument("--arch", help="skip the search: retrain this architecture JSON (written by a search); "
                                 "with --logdir the result is also written to LOGDIR/retrain.json")
    p.add_argument("--device", help="torch device for the child models (cpu, cuda)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: the small child models gain nothing from more on a shared CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def load_settings(args) -> dict:
    """Preset + --set + shortcut flags -> {section: dict}; unknown sections are errors."""
    from rewind.config import CONFIG_DIR, load_yaml, merge, parse_set

    if args.config:
        base = load_yaml(args.config)
    else:
        data_name = Path(args.data).name if Path(args.data).exists() else args.data
        specific = CONFIG_DIR / f"enas_{data_name}_{args.space}.yaml"
        generic = CONFIG_DIR / f"enas_{args.space}.yaml"
        base = load_yaml(specific if specific.exists() else generic) if (specific.exists() or generic.exists()) else {}
    cfg = merge(base, parse_set(args.set))
    shortcuts = {("env", "phases"): args.phases, ("env", "budget_steps"): args.budget,
                 ("search", "derive_samples"): args.derive_samples, ("search", "retrain_epochs"): args.retrain_epochs,
                 ("env", "device"): args.device}
    for (section, key), value in shortcuts.items():
        if value is not None:
            cfg.setdefault(section, {})[key] = value
    bad = sorted(set(cfg) - set(SECTIONS))
    if bad:
        raise RewindError(f"unknown settings section {bad[0]!r}; sections are: {', '.join(SECTIONS)}")
    if args.phases is not None and args.phases < 1:
        raise RewindError("--phases must be >= 1 (a budget of zero searches nothing)")
    if args.budget is not None and args.budget < 1:
        raise RewindError(f"--budget must be >= 1 shared-weight optimizer step, got {args.budget}")
    return {s: dict(cfg.get(s) or {}) for s in SECTIONS}


def run(args) -> int:
    import torch

    from rewind.config import from_dict
    from rewind.controllers.enas_controller import ENASControllerConfig
    from rewind.run.search import STRATEGIES, SearchConfig, retrain, run_search
    from rewind.controllers.search_spaces import SPACES, load_arch_json, make_space
    from rewind.envs.nas import NASEnvConfig
    from rewind.envs.nas_data import load_nas_data
    from rewind.files import writable_dir

    if args.space not in SPACES:
        raise RewindError(f"unknown search space {args.space!r}; choose from: {', '.join(SPACES)}")
    if args.strategy not in STRATEGIES:
        raise RewindError(f"unknown strategy {args.strategy!r}; choose from: {', '.join(STRATEGIES)}")
    if args.seed < 0:
        raise RewindError(f"--seed must be >= 0, got {args.seed}")
    if args.threads < 1:
        raise RewindError(f"--threads must be >= 1, got {args.threads}")
    settings = load_settings(args)
    agent_cfg = from_dict(ENASControllerConfig, settings["agent"], "agent")
    env_cfg = from_dict(NASEnvConfig, settings["env"], "env")
    search_cfg = from_dict(SearchConfig, settings["search"], "search")
    data = load_nas_data(args.data)
    want = {"text": "rnn", "qvalues": "qnet"}.get(data.kind)
    if (args.space == want) != (want is not None) or (want is None and args.space in ("rnn", "qnet")):
        raise RewindError(f"the {args.space} space does not fit {data.kind} data {args.data!r}: "
                          "use --space rnn for PTB, qnet for a Q-value .npz, macro/micro/mlp for images")
    if data.kind == "qvalues":   # the Q-network's input and outputs come from the data
        c, side, _ = data.in_shape
        settings["space"].update(in_channels=c, side=side, n_actions=data.n_actions)
    space = make_space(args.space, **settings["space"])
    torch.set_num_threads(args.threads)
    logdir = Path(args.logdir or f"runs/search-{space.name}-{data.name}-{args.strategy}-s{args.seed}")
    if args.arch:
        _, arch = load_arch_json(args.arch, space)
        if args.logdir:
            writable_dir(logdir, "--logdir")   # refused before the retraining, not after it
        result = retrain(space, arch, data, search_cfg, args.seed, env_cfg.device, env_cfg.bptt,
                         progress=not args.no_progress)
        print(json.dumps(result, indent=1))
        if args.logdir:   # kept next to the settings that produced it
            from rewind.files import atomic_write_json
            atomic_write_json(logdir / "retrain.json", {"arch": args.arch, "seed": args.seed, "settings": settings,
                                                       "result": result})
        return 0
    writable_dir(logdir, "--logdir")
    if not args.resume and (logdir / "checkpoint.pt").exists():
        raise RewindError(f"{logdir} already holds a search; pass --resume to continue it or another --logdir")
    result = run_search(space, data, strategy=args.strategy, agent_cfg=agent_cfg, env_cfg=env_cfg,
                        search_cfg=search_cfg, seed=args.seed, logdir=logdir, resume=args.resume,
                        progress=not args.no_progress, do_retrain=search_cfg.retrain_epochs > 0)
    if result.get("interrupted"):
        import sys
        print(f"rewind: search stopped by {result['stopped_by']} after {result['rewards']} rewards, checkpoint in "
              f"{logdir}; continue with the same command plus --resume", file=sys.stderr)
        return 143 if result["stopped_by"] == "SIGTERM" else 130
    print(space.describe(space.encode(result["arch"]["arch"])))
    keys = [k for k in ("search_seconds", "derive_best_score", "valid_accuracy", "test_accuracy",
                        "valid_perplexity", "test_perplexity", "valid_r2", "test_r2", "test_agreement",
                        "retrain_seconds") if k in result]
    print("  ".join(f"{k}={result[k]:.4g}" for k in keys))
    if "arch_string" in result:
        print(f"train it: rewind train --config dqn_minatar --env {data.env_id} --set agent.network=searched "
              f"--set agent.arch={result['arch_string']}")
    print(f"wrote {logdir}/arch.json, arch.txt, arch.png, result.json")
    return 0


def main(argv=None) -> int:
    """Stand-alone entry (`python -m rewind.cli.search ...`); `rewind search` is the same."""
    return standalone_main(register, argv)


if __name__ == "__main__":
    raise SystemExit(main())
