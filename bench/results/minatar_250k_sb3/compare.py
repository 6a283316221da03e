"""EBU and DQN (minatar_250k) beside SB3 DQN (this folder) on the games both suites ran.

Reads the committed result files through the report's own collector and normalises with this
suite's reference scores, so the figures match `rewind bench report`'s. Run from the repo root:
    python bench/results/minatar_250k_sb3/compare.py
"""
from pathlib import Path

from rewind.bench.report import collect
from rewind.bench.scores import normalize, reference_for
from rewind.bench.stats import iqm_with_ci, poi_with_ci

HERE = Path(__file__).resolve().parent


def final_scores(folder: Path) -> tuple[dict, dict]:
    """{agent: {env: [final return per seed]}} and the suite's reference scores."""
    data = collect(folder)
    finals = {agent: {env: [curve[-1]["return_mean"] for curve in seeds.values()] for env, seeds in envs.items()}
              for agent, envs in data["curves"].items()}
    return finals, data["suite"].scores


peer, refs = final_scores(HERE)
ours, _ = final_scores(HERE.parent / "minatar_250k")
games = sorted(next(iter(peer.values())))
scores = {agent: {g: normalize(runs[g], *reference_for(g, refs)[:2]) for g in games}
          for agent, runs in {**ours, **peer}.items()}
for agent, per_game in scores.items():
    print(f"{agent}: IQM %.3f [%.3f, %.3f]" % iqm_with_ci(per_game), {g: len(x) for g, x in per_game.items()})
for x, y in [("ebu", "sb3-dqn"), ("dqn", "sb3-dqn"), ("ebu", "dqn")]:
    print(f"P({x} > {y}) %.3f [%.3f, %.3f]" % poi_with_ci(scores[x], scores[y]))
