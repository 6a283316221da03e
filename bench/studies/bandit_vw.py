"""rewind's bandit agents and Vowpal Wabbit side by side on identical context streams.

For every dataset and seed, each learner (rewind agent or VW ``--cb_explore`` reduction)
drives its own copy of the same ClassificationBandit env reset with the same seed, so the
stream of contexts (order included) is identical; the script checks that it is. Reported:
progressive validation loss (1 - mean reward of predictions made before learning from
their example), mean +- std over seeds, and steps/s of the act/observe/update loop.

    python -m rewind.bench.studies.bandit_vw --seeds 5            # full table, writes Markdown
    python -m rewind.bench.studies.bandit_vw --seeds 1 --datasets wine --agents linucb

VW is optional (``pip install 'rewind-rl[vw]'``); without it the script says so and runs
rewind's agents only.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from rewind.agents.base import Agent
from rewind.errors import RewindError
from rewind.bench.markdown import write_result

RESULTS_DIR = Path(__file__).resolve().parent / "results" / "bandit"
DATASETS = {   # table column -> env id
    "digits": "rewind/bandit-digits-v0",
    "wine": "rewind/bandit-wine-v0",
    "breast_cancer": "rewind/bandit-breast-cancer-v0",
    "digits-longtail": "rewind/bandit-digits-longtail-v0",
}
REWIND_AGENTS = {   # table row -> (agent name, config overrides); defaults unless the label says
    "greedy-linear": ("eps-greedy-linear", {"epsilon": 0.0}),
    "eps-greedy-linear": ("eps-greedy-linear", {}),
    "linucb": ("linucb", {}),
    "linucb alpha=0.1": ("linucb", {"alpha": 0.1}),
    "regcb": ("regcb", {}),
    "eps-greedy-neural": ("eps-greedy-neural", {}),
    "bootstrap-ts": ("bootstrap-ts", {}),
    "softmax-pg": ("softmax-pg", {}),
    "supervised": ("supervised", {}),
}
VW_LEARNERS = {   # table row -> VW arguments after "--cb_explore K"
    "vw-greedy": "--epsilon 0",
    "vw-epsilon": "--epsilon 0.05",
    "vw-bag": "--bag 5",
    "vw-cover": "--cover 4 --psi 0.1 --nounif",   # the bake-off's cover setting; VW's psi=1 default is far worse here
}


def vw_status() -> str | None:
    """None if vowpalwabbit imports, else the reason it does not."""
    try:
        import vowpalwabbit  # noqa: F401
    except Exception as exc:  # ImportError or a broken binary wheel
        return f"{type(exc).__name__}: {exc}"
    return None


class VWAgent(Agent):
    """Vowpal Wabbit's ``--cb_explore K`` behind the Agent interface (costs = 1 - reward)."""

    @dataclasses.dataclass
    class Config:
        args: str = "--epsilon 0.05"

    def __init__(self, observation_space, action_space, config=None, *, seed=0, frame_stack=1):
        super().__init__(observation_space, action_space, config, seed=seed, frame_stack=frame_stack)
        import vowpalwabbit

        self.k = int(action_space.n)
        self.vw = vowpalwabbit.Workspace(f"--cb_explore {self.k} {self.config.args} --quiet --random_seed {seed}")
        self.rng = np.random.default_rng(seed)
        self._pending = []
        self._p = 1.0

    @staticmethod
    def _features(obs) -> str:
        x = np.asarray(obs, dtype=np.float64).reshape(-1)
        nz = np.flatnonzero(x)
        return "| " + " ".join(f"f{j}:{x[j]:.6g}" for j in nz)

    def act(self, obs, explore: bool = True):
        pmf = np.asarray(self.vw.predict(self._features(obs)), dtype=np.float64)
        if not explore:
            self._p = 1.0
            return int(np.argmax(pmf))
        a = int(self.rng.choice(self.k, p=pmf / pmf.sum()))
        self._p = float(pmf[a])
        return a

    def observe(self, obs, action, reward, next_obs, terminated, truncated, info):
        self._pending.append(f"{int(action) + 1}:{1.0 - float(reward):.6g}:{self._p:.6g} {self._features(obs)}")

    def update(self):
        for ex in self._pending:
            self.vw.learn(ex)
        self._pending.clear()
        return {}

    def state_dict(self):
        raise RewindError("VWAgent is a benchmark peer; it does not checkpoint")

    def load_state_dict(self, state):
        raise RewindError("VWAgent is a benchmark peer; it does not checkpoint")


def run_stream(agent, env, steps: int, seed: int):
    """The run loop's per-step calls (act, observe, update) on one-step episodes.

    Returns (rewards, row indices shown, seconds). Same order of calls as run/loop.py.
    """
    rewards = np.empty(steps, dtype=np.float64)
    rows = np.empty(steps, dtype=np.int64)
    base = env.unwrapped
    t0 = time.perf_counter()
    obs, _ = env.reset(seed=seed)
    for t in range(steps):
        rows[t] = base.current_index
        a = agent.act(obs)
        next_obs, r, term, trunc, info = env.step(a)
        agent.observe(obs, a, r, next_obs, term, trunc, info)
        agent.update()
        rewards[t] = r
        if t + 1 < steps:
            obs, _ = env.reset()
    return rewards, rows, time.perf_counter() - t0


def make_learner(name: str, env, seed: int):
    from rewind.agents import make_agent

    if name in VW_LEARNERS:
        return VWAgent(env.observation_space, env.action_space, VWAgent.Config(VW_LEARNERS[name]), seed=seed)
    agent, cfg = REWIND_AGENTS[name]
    return make_agent(agent, env, cfg, seed=seed)


def bench(datasets, agents, seeds: int, passes: float, log=print):
    """{(agent, dataset): {"pv": [...], "sps": [...]}}; checks every learner saw the same stream."""
    from rewind.envs import make_env
    from rewind.envs.bandit import progressive_validation

    out = {}
    for ds in datasets:
        env_id = DATASETS[ds]
        for seed in range(seeds):
            reference = None
            for name in agents:
                env = make_env(env_id, {"full_feedback": name == "supervised"})
                steps = max(1, int(round(passes * len(env.unwrapped.y))))
                agent = make_learner(name, env, seed)
                rewards, rows, secs = run_stream(agent, env, steps, seed)
                if reference is None:
                    reference = rows
                elif not np.array_equal(rows, reference):
                    raise RuntimeError(f"{name} saw a different stream on {ds} seed {seed}")
                cell = out.setdefault((name, ds), {"pv": [], "sps": []})
                cell["pv"].append(progressive_validation(rewards))
                cell["sps"].append(steps / secs)
                log(f"{ds:16s} seed {seed} {name:18s} PV loss {cell['pv'][-1]:.4f}  {steps / secs:8.0f} steps/s")
    return out


def table(results, datasets, agents, seeds: int, passes: float, vw_note: str | None) -> str:
    lines = [f"Progressive validation loss (lower is better), mean +- std over {seeds} seeds, "
             f"{passes:g} pass(es) over each stream; last column: steps/s on digits (mean over seeds).", ""]
    lines.append("| agent | " + " | ".join(datasets) + " | steps/s |")
    lines.append("|---" * (len(datasets) + 2) + "|")
    best_rw = {ds: min((np.mean(results[(a, ds)]["pv"]), a) for a in agents
                       if (a, ds) in results and a not in VW_LEARNERS and a != "supervised") for ds in datasets}
    for a in agents:
        cells = []
        for ds in datasets:
            pv = results[(a, ds)]["pv"]
            s = f"{np.mean(pv):.4f} +- {np.std(pv):.4f}"
            cells.append(f"**{s}**" if best_rw[ds][1] == a else s)
        ref = "digits" if "digits" in datasets else datasets[0]
        cells.append(f"{np.mean(results[(a, ref)]['sps']):.0f}")
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Bold: best bandit learner of rewind (supervised is the full-information upper bound, "
                 "not a bandit learner).")
    vw = [a for a in agents if a in VW_LEARNERS]
    if vw:
        for ds in datasets:
            vbest = min((np.mean(results[(a, ds)]["pv"]), a) for a in vw)
            lines.append(f"- {ds}: rewind best {best_rw[ds][1]} {best_rw[ds][0]:.4f} vs VW best {vbest[1]} "
                         f"{vbest[0]:.4f} -> {'rewind at or below VW' if best_rw[ds][0] <= vbest[0] else 'VW better'}")
    if vw_note:
        lines.append(f"- Vowpal Wabbit not run: {vw_note}")
    return "\n".join(lines)


def main(argv=None) -> int:
    import torch

    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--passes", type=float, default=1.0, help="passes over each dataset (1 = bake-off protocol)")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--agents", nargs="+", default=list(REWIND_AGENTS) + list(VW_LEARNERS))
    p.add_argument("--out", default=str(RESULTS_DIR / "pv_loss.md"), help="Markdown file ('' to skip)")
    args = p.parse_args(argv)
    for a in args.agents:
        if a not in REWIND_AGENTS and a not in VW_LEARNERS:
            print(f"error: unknown learner {a!r}; choose from {', '.join(list(REWIND_AGENTS) + list(VW_LEARNERS))}",
                  file=sys.stderr)
            return 2
    note = vw_status()
    agents = list(args.agents)
    if note is not None:
        print(f"Vowpal Wabbit unavailable ({note}); running rewind's agents only. "
              "Install it with: pip install vowpalwabbit", file=sys.stderr)
        agents = [a for a in agents if a not in VW_LEARNERS]
    results = bench(args.datasets, agents, args.seeds, args.passes)
    md = table(results, args.datasets, agents, args.seeds, args.passes, note)
    print()
    print(md)
    if args.out:
        write_result(args.out, "Bandit side by side", "rewind.bench.studies.bandit_vw", argv, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
