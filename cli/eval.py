"""`rewind eval`: play a saved agent (checkpoint or .rwz) with its run's evaluation protocol."""

from __future__ import annotations

from rewind.errors import RewindError


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint",
                       description="Evaluate a saved agent with the fixed protocol (epsilon-greedy, no-op starts, "
                                   "episode cap) on the evaluation version of its env.")
    p.add_argument("checkpoint", help="checkpoint.pt or the run directory holding it")
    p.add_argument("--episodes", type=int, default=10, help="episodes to play (default: 10)")
    p.add_argument("--epsilon", type=float, default=None, help="evaluation epsilon (default: the run's eval_epsilon)")
    p.add_argument("--max-steps", type=int, default=None, help="steps per episode cap (default: the run's)")
    p.add_argument("--seed", type=int, default=12345, help="seed of the evaluation episodes")
    p.add_argument("--video", default=None, metavar="DIR",
                   help="also write one MP4 per episode to DIR (eval-episode-I.mp4; needs rewind-rl[video])")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: the run's run.torch_threads, else 1: acting is one state at "
                        "a time, and extra threads only contend on a busy machine)")
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args) -> int:
    import torch

    from rewind.run.experiment import eval_protocol
    from rewind.transfer import load_agent
    from rewind.run.loop import evaluate

    if args.episodes < 1:
        raise RewindError("--episodes must be >= 1")
    if args.threads is not None and args.threads < 1:
        raise RewindError("--threads must be >= 1")
    if args.epsilon is not None and not 0.0 <= args.epsilon <= 1.0:
        raise RewindError(f"--epsilon is a probability: it must be in [0, 1], got {args.epsilon}")
    if args.max_steps is not None and args.max_steps < 1:
        raise RewindError(f"--max-steps must be >= 1, got {args.max_steps}")
    if args.seed < 0:
        raise RewindError(f"--seed must be >= 0, got {args.seed}")
    agent, env, meta = load_agent(args.checkpoint)
    run = meta.get("run", {})
    torch.set_num_threads(args.threads or run.get("torch_threads") or 1)
    run_eps, run_max_steps = eval_protocol(meta)
    eps = args.epsilon if args.epsilon is not None else run_eps
    max_steps = args.max_steps if args.max_steps is not None else run_max_steps
    if args.video:
        from rewind.run.video import recording, videos_in

        with recording(env, args.video) as rec:
            result = evaluate(agent, rec, args.episodes, eps, max_steps, seed=args.seed)
    else:
        result = evaluate(agent, env, args.episodes, eps, max_steps, seed=args.seed)
    print(f"{meta['agent']} on {meta['env']}: {args.episodes} episodes, epsilon {eps}")
    print("episode  return")
    for i, r in enumerate(result["returns"]):
        print(f"{i:7d}  {r:.2f}")
    print(f"mean {result['return_mean']:.2f} +- {result['return_std']:.2f} (std), "
          f"mean length {result['length_mean']:.0f}")
    if args.video:
        print(f"videos: {', '.join(str(v) for v in videos_in(args.video))}")
    return 0
