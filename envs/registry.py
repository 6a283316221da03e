"""rewind's own gymnasium ids. Each module with envs adds one `_register(...)` block here."""

from __future__ import annotations

import gymnasium as gym


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
    # stochastic, random_action_prob, maze_seed, max_steps, observation ("digits" | "index").
    _register("rewind/maze-v0", "rewind.envs.maze:DigitMazeEnv")
    for density in (20, 50):
        _register(f"rewind/maze-d{density}-v0", "rewind.envs.maze:DigitMazeEnv",
                  kwargs={"density": density / 100})
        _register(f"rewind/maze-d{density}-stoch-v0", "rewind.envs.maze:DigitMazeEnv",
                  kwargs={"density": density / 100, "stochastic": True})
    # A YouTube-style recommender as a contextual bandit (envs/recsys.py; issue 16). Options via
    # kwargs: the fields of RecsysConfig (n_items, reward, world_seed, ...).
    _register("rewind/recsys-v0", "rewind.envs.recsys:RecsysEnv")
    _register("rewind/recsys-10k-v0", "rewind.envs.recsys:RecsysEnv", kwargs={"n_items": 10_000})
    _register("rewind/recsys-click-v0", "rewind.envs.recsys:RecsysEnv", kwargs={"reward": "click"})
    # The MMoE paper's synthetic two-task benchmark as a bandit (envs/mmoe_synthetic.py; issue 16).
    for rho in ("1.0", "0.9", "0.5", "0.0"):
        _register(f"rewind/mmoe-rho{rho}-v0", "rewind.envs.mmoe_synthetic:MMoESyntheticBandit",
                  kwargs={"rho": float(rho)})
