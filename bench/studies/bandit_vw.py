"""rewind's bandit agents and Vowpal Wabbit side by side on identical context streams.

Not a suite: half of the learners are Vowpal Wabbit reductions (neither rewind agents nor harness
peers), and the identical-stream check and the steps/s timing need every learner in one process.

For every dataset and seed, each learner (rewind agent or VW ``--cb_explore`` reduction)
drives its own copy of the same ClassificationBandit env reset with the same seed, so the
stream of contexts (order included) is identical; the script checks that it is. Reported:
progressive validation loss (1 - mean reward of predictions made before learning from
their example), mean +- std over seeds, and steps/s of the act/observe/update loop.

    python -m rewind.bench.studies.bandit_vw --seeds 5            # full table, writes Markdown
    python -m rewind.bench.studies.bandit_vw --seeds 1 --datasets wine --agents linucb
    python -m rewind.bench.studies.bandit_vw --tune                # both sides tuned alike (tuned.md)

``--tune``: rewind's linear learners and VW's reductions each get a small grid
(``REWIND_GRID``, ``VW_GRID``); per dataset each side's best setting is chosen on tuning
seeds 100-102 and then run on the reported seeds 0-4, so neither side is tuned on the
streams it is scored on.

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

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results" / "bandit"
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


REWIND_GRID = {   # family -> [(label, agent, config)]
    "linucb": [(f"linucb alpha={a}", "linucb", {"alpha": a}) for a in (0.01, 0.03, 0.1, 0.3, 1.0)],
    "regcb": [(f"regcb c0={c}", "regcb", {"c0": c}) for c in (1e-1, 1e-2, 1e-3)],
    "eps-greedy-linear": [(f"eps-greedy-linear eps={e}", "eps-greedy-linear", {"epsilon": e}) for e in (0.0, 0.05)],
}
VW_GRID = {   # family -> [(label, VW arguments)]: the bake-off's explorers x VW learning rates (-l, default 0.5)
    f"vw {name}": [(f"vw {name} -l {lr}", f"{args} -l {lr}") for lr in (0.1, 0.5, 2.0)]
    for name, args in (("greedy", "--epsilon 0"), ("epsilon", "--epsilon 0.05"), ("bag", "--bag 5"),
                       ("cover", "--cover 4 --psi 0.1 --nounif"))
}
TUNE_SEEDS = (100, 101, 102)
REPORT_SEEDS = (0, 1, 2, 3, 4)


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


def bench(datasets, agents, seeds, passes: float, log=print):
    """{(agent, dataset): {"pv": [...], "sps": [...]}}; checks every learner saw the same stream.

    seeds: a count (0..seeds-1) or a list of seeds.
    """
    from rewind.envs import make_env
    from rewind.envs.bandit import progressive_validation

    out = {}
    for ds in datasets:
        env_id = DATASETS[ds]
        for seed in (range(seeds) if isinstance(seeds, int) else seeds):
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
    lines.append("Bold: best bandit learner of rewind. supervised is a full-information reference (it learns "
                 "the true label every step), not a bandit learner and not an upper bound: on small streams "
                 "(wine, 178 examples) its one-pass MLP learns slower than per-arm ridge regression.")
    vw = [a for a in agents if a in VW_LEARNERS]
    if vw:
        for ds in datasets:
            vbest = min((np.mean(results[(a, ds)]["pv"]), a) for a in vw)
            lines.append(f"- {ds}: rewind best {best_rw[ds][1]} {best_rw[ds][0]:.4f} vs VW best {vbest[1]} "
                         f"{vbest[0]:.4f} -> {'rewind at or below VW' if best_rw[ds][0] <= vbest[0] else 'VW better'}")
    if vw_note:
        lines.append(f"- Vowpal Wabbit not run: {vw_note}")
    return "\n".join(lines)


def tune(datasets, passes: float, log=print) -> str:
    """Grid-search both sides on TUNE_SEEDS, run each side's best on REPORT_SEEDS; Markdown."""
    from scipy import stats

    for fam in REWIND_GRID.values():
        for label, agent, cfg in fam:
            REWIND_AGENTS[label] = (agent, cfg)
    for fam in VW_GRID.values():
        for label, args in fam:
            VW_LEARNERS[label] = args
    rewind_labels = [lab for fam in REWIND_GRID.values() for lab, *_ in fam]
    vw_labels = [lab for fam in VW_GRID.values() for lab, _ in fam]
    grid = bench(datasets, rewind_labels + vw_labels, list(TUNE_SEEDS), passes, log)
    mean = {k: float(np.mean(v["pv"])) for k, v in grid.items()}
    best = {ds: {"rewind": min(rewind_labels, key=lambda a: mean[(a, ds)]),
                 "vw": min(vw_labels, key=lambda a: mean[(a, ds)])} for ds in datasets}
    lines = [f"Tuning: each side's grid on seeds {list(TUNE_SEEDS)}; the best setting per dataset is then run "
             f"on seeds {list(REPORT_SEEDS)} (not used for tuning). Progressive validation loss, {passes:g} "
             "pass(es); lower is better.", "", "Grid (mean PV loss over the tuning seeds):", "",
             "| setting | " + " | ".join(datasets) + " |", "|---" * (len(datasets) + 1) + "|"]
    for a in rewind_labels + vw_labels:
        lines.append(f"| {a} | " + " | ".join(f"{mean[(a, ds)]:.4f}" for ds in datasets) + " |")
    lines += ["", "Reported seeds, each side at its tuned setting: mean +- 95% t-interval; difference paired by "
              "seed (same stream).", "", "| dataset | rewind (tuned) | VW (tuned) | rewind - VW |", "|---|---|---|---|"]
    for ds in datasets:
        res = bench([ds], [best[ds]["rewind"], best[ds]["vw"]], list(REPORT_SEEDS), passes, log)
        r = np.array(res[(best[ds]["rewind"], ds)]["pv"])
        v = np.array(res[(best[ds]["vw"], ds)]["pv"])
        t = stats.t.ppf(0.975, len(r) - 1) / np.sqrt(len(r))
        d = r - v
        lines.append(f"| {ds} | {best[ds]['rewind']}: {r.mean():.4f} +- {t * r.std(ddof=1):.4f} | {best[ds]['vw']}: "
                     f"{v.mean():.4f} +- {t * v.std(ddof=1):.4f} | {d.mean():+.4f} +- {t * d.std(ddof=1):.4f} |")
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
    p.add_argument("--tune", action="store_true", help="tune rewind's linear learners and VW alike (tuned.md)")
    args = p.parse_args(argv)
    if args.tune:
        note = vw_status()
        if note is not None:
            print(f"error: --tune compares with Vowpal Wabbit, which does not import ({note}); "
                  "pip install vowpalwabbit", file=sys.stderr)
            return 2
        md = tune(args.datasets, args.passes)
        print(md)
        out = args.out if args.out != str(RESULTS_DIR / "pv_loss.md") else str(RESULTS_DIR / "tuned.md")
        if out:
            write_result(out, "Bandit side by side, both sides tuned", "rewind.bench.studies.bandit_vw", argv, md)
        return 0
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
