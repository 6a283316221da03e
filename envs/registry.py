"""rewind's gymnasium ids, registered when `rewind` (or `rewind.envs`) is imported.

So `import rewind; gym.make("breakout")` works, and so does `gym.make("rewind.envs:rewind/maze-v0")`
in a script that never imports rewind (gymnasium imports the module before the `:`). Ids:

- `rewind/...`: the digit maze and the classification bandits;
- Atari short names (`breakout`, `space_invaders`): ALE with DQN preprocessing, options as kwargs
  (`gym.make("breakout", training=False, frame_stack=1)`; the fields of `envs.atari.AtariConfig`);
- `minatar-GAME`: MinAtar as channel-first uint8 (options: `envs.minatar.MinAtarConfig`), and
  MinAtar's own `MinAtar/Game-v0|v1` ids (its raw observations) when MinAtar has not registered them.

Every entry point is a string, so registering imports neither MinAtar nor the env modules.
"""

from __future__ import annotations

import gymnasium as gym

from rewind.envs.atari import atari_names
from rewind.envs.minatar import GAMES as MINATAR_GAMES


def _register(env_id: str, entry_point: str, **kwargs) -> None:
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=entry_point, **kwargs)


def register_all() -> None:
    """Register every rewind env id (idempotent)."""
    # Supervised datasets as contextual bandits (envs/bandit.py; issue 5).
    for name in ("digits", "wine", "iris", "breast_cancer"):
        _register(f"rewind/bandit-{name.replace('_', '-')}-v0", "rewind.envs.bandit:ClassificationBandit",
                  kwargs={"data": name})
    _register("rewind/bandit-digits-longtail-v0", "rewind.envs.bandit:ClassificationBandit",
              kwargs={"data": "digits", "imbalance": 100.0})
    # The EBU paper's digit maze (envs/maze.py; issue 3). Options via kwargs: size, density,
    # stochastic, random_action_prob, maze_seed, max_steps, observation ("digits" | "index"),
    # reward_scale.
    _register("rewind/maze-v0", "rewind.envs.maze:DigitMazeEnv")
    for density in (20, 50):
        _register(f"rewind/maze-d{density}-v0", "rewind.envs.maze:DigitMazeEnv",
                  kwargs={"density": density / 100})
        _register(f"rewind/maze-d{density}-stoch-v0", "rewind.envs.maze:DigitMazeEnv",
                  kwargs={"density": density / 100, "stochastic": True})
    # Atari short names (envs/atari.py): the training env by default, training=False for evaluation.
    for short in atari_names():
        _register(short, "rewind.envs.atari:atari_env", kwargs={"game": short})
    # MinAtar (envs/minatar.py; optional, GPL): rewind's channel-first version and MinAtar's own ids.
    for game in MINATAR_GAMES:
        _register(f"minatar-{game}", "rewind.envs.minatar:minatar_env", kwargs={"game": game})
        title = game.title().replace("_", "")
        for version, minimal in (("v0", False), ("v1", True)):
            _register(f"MinAtar/{title}-{version}", "minatar.gym:BaseEnv",
                      kwargs={"game": game, "use_minimal_action_set": minimal})
    # A YouTube-style recommender as a contextual bandit (envs/recsys.py; issue 16). Options via
    # kwargs: the fields of RecsysConfig (n_items, reward, world_seed, ...).
    _register("rewind/recsys-v0", "rewind.envs.recsys:RecsysEnv")
    _register("rewind/recsys-10k-v0", "rewind.envs.recsys:RecsysEnv", kwargs={"n_items": 10_000})
    _register("rewind/recsys-click-v0", "rewind.envs.recsys:RecsysEnv", kwargs={"reward": "click"})
    # Slates of 5 distinct items, multinomial-logit user choice with a no-click option (docs/recsys.md).
    _register("rewind/recsys-slate5-v0", "rewind.envs.recsys:RecsysEnv", kwargs={"slate_size": 5})
    _register("rewind/recsys-10k-slate5-v0", "rewind.envs.recsys:RecsysEnv",
              kwargs={"n_items": 10_000, "slate_size": 5})
    # The MMoE paper's synthetic two-task benchmark as a bandit (envs/mmoe_synthetic.py; issue 16).
    for rho in ("1.0", "0.9", "0.5", "0.0"):
        _register(f"rewind/mmoe-rho{rho}-v0", "rewind.envs.mmoe_synthetic:MMoESyntheticBandit",
                  kwargs={"rho": float(rho)})
