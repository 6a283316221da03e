"""Random-policy scores under the evaluation protocol: the `random:` entries of suites' `scores:`.

Atari games have DQN Zoo's random scores; other envs get theirs measured here, with the
same evaluation env and episode cap the suite uses, so a normalised 0 means "no better
than uniform random actions".

    python -m rewind.bench.random_scores CartPole-v1 rewind/maze-d20-v0 --episodes 200 --max-steps 1000
"""

from __future__ import annotations

import argparse

import numpy as np


class _Random:
    def __init__(self, space, seed):
        self.space = space
        self.space.seed(seed)

    def act(self, obs, explore=False):
        return self.space.sample()


def random_score(env_name: str, episodes: int, max_steps: int, seed: int = 0) -> tuple[float, float]:
    from rewind.run.loop import evaluate
    from rewind.envs import make_env

    env = make_env(env_name, training=False, seed=seed)
    r = evaluate(_Random(env.action_space, seed), env, episodes, 0.0, max_steps, seed=seed)
    return r["return_mean"], float(np.std(r["returns"]) / np.sqrt(episodes))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("envs", nargs="+")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--max-steps", type=int, default=1000)
    args = p.parse_args(argv)
    for env in args.envs:
        mean, se = random_score(env, args.episodes, args.max_steps)
        print(f"{env:28s} random {mean:10.3f} +- {se:.3f} (s.e., {args.episodes} episodes, cap {args.max_steps})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
