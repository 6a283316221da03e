"""Search over Q-networks on MinAtar: teacher Q-values -> ENAS / random search -> online DQN.

Not a suite: a pipeline whose arms are decided by its own searches (collect from a trained
checkpoint, search, then train the derived architectures), not a fixed agents x envs x seeds grid.

Issue 15 ("Search over Q-networks"). Three steps, each a subcommand, run one at a time:

1. ``collect``: play a trained DQN/EBU checkpoint epsilon-greedily and save its observations and
   Q-values of all actions as a .npz (arrays only) -- the search's fixed dataset.
2. the search itself is ``rewind search --space qnet --data FILE.npz`` (preset enas_qnet).
3. ``train``: DQN online from scratch with the preset network (``agent.network=minatar``), the
   ENAS-derived one (``derived``: ``agent.network=searched agent.arch=...``) and random search's
   (``random``), same settings and steps, N seeds, one ``rewind train`` at a time; ``report``: final
   greedy-eval return per arm with 95% t-intervals, parameters and MACs of each network ->
   ``bench/results/enas/qnet/results.json`` and ``returns.png``.

    python -m rewind.bench.studies.enas_qnet collect --teacher RUN/checkpoint.pt --out breakout_q.npz
    rewind search --space qnet --data breakout_q.npz --budget 2000 --seed 0 --logdir runs/qnet-breakout-enas
    python -m rewind.bench.studies.enas_qnet train --env minatar-breakout --arch c5x32-h111-relu \\
        --steps 30000 --seeds 3 --runs /tmp/qnet_runs
    python -m rewind.bench.studies.enas_qnet report --runs /tmp/qnet_runs --search breakout=runs/qnet-breakout-enas
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parents[1] / "results" / "enas" / "qnet"
# The online runs' settings beside the preset dqn_minatar (both arms): a 30k-step run cannot use
# the preset's 100k-step epsilon decay, so epsilon reaches 0.1 at 20k; one greedy evaluation at
# the end (30 episodes); no replay in the checkpoint.
TRAIN_SETS = ("agent.eps_decay_steps=20000", "run.eval_episodes=30", "run.save_buffer=false")
ARMS = ("preset", "derived", "random")   # preset network, ENAS-derived, random-search-derived


def cmd_collect(args) -> int:
    from rewind.run.qdata import collect_q_values, save_q_data
    from rewind.transfer import load_agent

    agent, env, meta = load_agent(args.teacher)
    data = collect_q_values(agent, env, args.steps, args.epsilon, args.seed)
    save_q_data(args.out, data, meta["env"], str(args.teacher), args.epsilon)
    q = data["q"]
    print(f"{args.out}: {len(q)} states of {meta['env']} from {meta['agent']} ({data['episode'][-1] + 1} episodes), "
          f"Q mean {q.mean():.3f} std {q.std():.3f}")
    return 0


def run_dir(runs: Path, env: str, arm: str, seed: int) -> Path:
    return runs / env.removeprefix("minatar-") / arm / f"s{seed}"


def cmd_train(args) -> int:
    searched = ["agent.network=searched", f"agent.arch={args.arch}"]
    arms = {"preset": ["agent.network=minatar"], "derived": searched, "random": searched}
    for arm in args.arms:
        for seed in range(args.seeds):
            d = run_dir(Path(args.runs), args.env, arm, seed)
            if (d / "evaluations.json").exists() and json.loads((d / "evaluations.json").read_text()):
                continue
            cmd = [sys.executable, "-c", "import sys; from rewind.cli import main; sys.exit(main())",
                   "train", "--config", "dqn_minatar", "--env", args.env,
                   "--steps", str(args.steps), "--seed", str(seed), "--logdir", str(d), "--no-progress",
                   "--set", f"run.eval_every={args.steps}", "--set", f"run.checkpoint_every={args.steps}"]
            for s in (*TRAIN_SETS, *arms[arm]):
                cmd += ["--set", s]
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
    return 0


def final_return(d: Path) -> float:
    evals = json.loads((d / "evaluations.json").read_text())
    return float(evals[-1]["return_mean"])


def cmd_report(args) -> int:
    import yaml

    from rewind.agents.networks import qnet_cost
    from rewind.bench.stats import t_interval

    runs = Path(args.runs)
    rows, curves = [], {}
    for game_dir in sorted(p for p in runs.iterdir() if p.is_dir()):
        game = game_dir.name
        per_arm = {}
        for arm in ARMS:
            seeds = sorted((game_dir / arm).glob("s*"))
            done = [s for s in seeds if (s / "evaluations.json").exists()]
            if not done:
                continue
            cfg = yaml.safe_load((done[0] / "config.yaml").read_text())
            arch = cfg["agent_config"].get("arch") or "c3x16-h128-relu"   # the MinAtar preset = this string
            rets = [final_return(s) for s in done]
            steps = json.loads((done[0] / "evaluations.json").read_text())[-1]["step"]
            per_arm[arm] = {"arch": arch, "returns": rets, "seeds": len(rets), "steps": steps}
            curves[(game, arm)] = [np.loadtxt(s / "episodes.csv", delimiter=",", skiprows=1, usecols=(0, 1),
                                              ndmin=2) for s in done]
        if not per_arm:
            continue
        from rewind.envs import make_env   # the observation shape and action count of the game
        env = make_env(f"minatar-{game}")
        shape, n_actions = env.observation_space.shape, int(env.action_space.n)
        env.close()
        for arm, r in per_arm.items():
            mean, half = t_interval(r["returns"])
            rows.append({"game": game, "arm": arm, **r, **qnet_cost(r["arch"], shape, n_actions),
                         "mean": mean, "ci95": half})
    diffs = [_difference(rows, game, arm) for game in sorted({r["game"] for r in rows}) for arm in ARMS[1:]]
    diffs = [d for d in diffs if d is not None]
    searches = {}
    for spec in args.search:
        game, _, folder = spec.partition("=")
        res = json.loads((Path(folder) / "result.json").read_text())
        searches.setdefault(game, []).append({k: res.get(k) for k in (
            "strategy", "seed", "shared_steps", "arch_string", "derive_best_score", "valid_r2", "test_r2",
            "test_agreement", "params", "search_seconds")})
    RESULTS.mkdir(parents=True, exist_ok=True)
    from rewind.files import atomic_write_json
    atomic_write_json(RESULTS / "results.json", {"rows": rows, "differences": diffs, "searches": searches,
                                                 "train_sets": TRAIN_SETS})
    for r in rows:
        print(f"{r['game']:15s} {r['arm']:8s} {r['arch']:28s} params {r['params']:7d} MACs {r['macs']:7d} "
              f"return {r['mean']:.2f} +- {r['ci95']:.2f} (n={r['seeds']}, {r['steps']} steps) {r['returns']}")
    for d in diffs:
        print(f"{d['game']:15s} {d['arm']} - preset: {d['diff']:+.2f} [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}] "
              f"(Welch p {d['p_value']:.2f})")
    chance = {g: float(v) for g, _, v in (x.partition("=") for x in args.random_return)}
    _plot(rows, curves, RESULTS / "returns.png", chance)
    return 0


def _difference(rows, game, arm):
    """Mean return of `arm` minus the preset's with a Welch 95% interval (seeds are independent runs)."""
    from scipy import stats

    a = next((r["returns"] for r in rows if r["game"] == game and r["arm"] == arm), None)
    b = next((r["returns"] for r in rows if r["game"] == game and r["arm"] == "preset"), None)
    if a is None or b is None or len(a) < 2 or len(b) < 2:
        return None
    a, b = np.asarray(a), np.asarray(b)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = np.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se > 0 else 1.0
    half = float(stats.t.ppf(0.975, dof) * se)
    diff = float(a.mean() - b.mean())
    return {"game": game, "arm": arm, "diff": diff, "ci_low": diff - half, "ci_high": diff + half,
            "p_value": float(stats.ttest_ind(a, b, equal_var=False).pvalue)}


def _plot(rows, curves, path, chance):
    """Left: final greedy-eval return per seed and the mean with its 95% t-interval; right: training
    episode returns (moving average over 50 episodes) per seed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games = sorted({r["game"] for r in rows})
    fig, axes = plt.subplots(2, len(games), figsize=(4.5 * len(games), 6.5), squeeze=False)
    for j, game in enumerate(games):
        ax = axes[0, j]
        for i, arm in enumerate(ARMS):
            r = next((r for r in rows if r["game"] == game and r["arm"] == arm), None)
            if r is None:
                continue
            ax.scatter([i] * len(r["returns"]), r["returns"], color=f"C{i}", alpha=0.6)
            ax.errorbar([i + 0.15], [r["mean"]], yerr=[r["ci95"]], fmt="o", color="k", capsize=4)
        ax.set_xticks(range(len(ARMS)), [f"{a}\n{_arch(rows, game, a)}" for a in ARMS], fontsize=7)
        if game in chance:
            ax.axhline(chance[game], color="grey", ls="--", lw=0.8, label="uniform random policy")
            ax.legend(fontsize=8)
        ax.set(title=f"{game}: greedy eval return at the end", ylabel="return (30 episodes)")
        ax = axes[1, j]
        for i, arm in enumerate(ARMS):
            for k, c in enumerate(curves.get((game, arm), [])):
                if len(c) > 50:
                    ma = np.convolve(c[:, 1], np.ones(50) / 50, mode="valid")
                    ax.plot(c[49:, 0], ma, color=f"C{i}", lw=0.8, label=arm if k == 0 else None)
        ax.set(xlabel="env step", ylabel="training return (MA 50)", title=f"{game}: training episodes")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _arch(rows, game, arm):
    return next((r["arch"] for r in rows if r["game"] == game and r["arm"] == arm), "")


def main(argv=None) -> int:
    from rewind.errors import RewindError

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("collect", help="teacher checkpoint -> Q-value .npz")
    p.add_argument("--teacher", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--epsilon", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_collect)
    p = sub.add_parser("train", help="online DQN runs: preset and derived network")
    p.add_argument("--env", required=True)
    p.add_argument("--arch", required=True, help="the derived agent.arch string")
    p.add_argument("--steps", type=int, default=30000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--runs", required=True)
    p.add_argument("--arms", nargs="+", default=["preset", "derived"], choices=ARMS,
                   help="derived: --arch is ENAS's; random: --arch is random search's")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("report", help="table and plot of finished runs")
    p.add_argument("--runs", required=True)
    p.add_argument("--search", action="append", default=[], metavar="GAME=SEARCH_LOGDIR")
    p.add_argument("--random-return", action="append", default=[], metavar="GAME=RETURN",
                   help="a uniform random policy's mean return, drawn as a line (rewind eval RUN --epsilon 1)")
    p.set_defaults(func=cmd_report)
    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except RewindError as exc:
        print(f"rewind: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
