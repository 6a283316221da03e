"""EBU / DQN (minatar_250k) vs SB3 DQN (minatar_250k_sb3) on breakout and asterix, same normalisation."""
import glob, json
from rewind.bench.stats import iqm_with_ci, poi_with_ci
norm = {"minatar-breakout": (0.4, 30.0), "minatar-asterix": (0.5, 50.0)}
def scores(folder, agent):
    out = {}
    for g, (lo, hi) in norm.items():
        out[g] = [(json.load(open(f))["final"]["return_mean"] - lo) / (hi - lo)
                  for f in sorted(glob.glob(f"bench/results/{folder}/results/{agent}__{g}__s*.json"))]
    return out
s = {"ebu": scores("minatar_250k", "ebu"), "dqn": scores("minatar_250k", "dqn"), "sb3-dqn": scores("minatar_250k_sb3", "sb3-dqn")}
for a, v in s.items():
    print(a, "IQM %.3f [%.3f, %.3f]" % iqm_with_ci(v), {g: len(x) for g, x in v.items()})
for x, y in [("ebu", "sb3-dqn"), ("dqn", "sb3-dqn"), ("ebu", "dqn")]:
    print(f"P({x} > {y}) %.3f [%.3f, %.3f]" % poi_with_ci(s[x], s[y]))
