"""Q-value datasets for Q-network search: a trained agent's Q-values on the states it visits.

``collect_q_values`` plays the agent epsilon-greedily (so the data covers states a little off
its greedy path, as online training sees) and records every observation with the agent's Q
of all actions. ``save_q_data`` writes arrays only (``np.savez_compressed``, no pickles;
``envs/nas_data.py: load_q_data`` reads them with ``allow_pickle=False``), atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rewind.agents.networks import q_values
from rewind.errors import RewindError
from rewind.files import atomic_write


def collect_q_values(agent, env, steps: int, epsilon: float = 0.1, seed: int = 0,
                     max_episode_steps: int = 10_000) -> dict:
    """{"obs" (N, C, H, W) uint8, "q" (N, A) float32, "episode" (N,) int32} over `steps` env steps."""
    q_net = getattr(agent, "q", None)
    if q_net is None:
        raise RewindError(f"{type(agent).__name__} has no Q-network (.q): Q-value data needs a DQN/EBU agent")
    if steps < 30 or not 0.0 <= epsilon <= 1.0:
        raise RewindError(f"collecting Q-values needs steps >= 30 and epsilon in [0, 1], got {steps}, {epsilon}")
    rng = np.random.default_rng(seed)
    obs_list, q_list, episodes = [], [], []
    obs, _ = env.reset(seed=seed)
    episode, t = 0, 0
    for _ in range(steps):
        q = q_values(q_net, obs, agent.device).float().cpu().numpy()
        obs_list.append(np.asarray(obs, dtype=np.uint8))
        q_list.append(q)
        episodes.append(episode)
        action = int(rng.integers(len(q))) if rng.random() < epsilon else int(q.argmax())
        obs, _, terminated, truncated, _ = env.step(action)
        t += 1
        if terminated or truncated or t >= max_episode_steps:
            episode, t = episode + 1, 0
            obs, _ = env.reset(seed=seed + episode)
    return {"obs": np.stack(obs_list), "q": np.stack(q_list).astype(np.float32),
            "episode": np.asarray(episodes, dtype=np.int32)}


def save_q_data(path: str | Path, data: dict, env_id: str, teacher: str, epsilon: float) -> None:
    """Write the arrays and what made them (env id, teacher, epsilon) as one .npz, atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        raise RewindError(f"Q-value data goes in a .npz file, got {path}")

    def write(tmp):
        with open(tmp, "wb") as f:   # a file object: np.savez would append .npz to a path
            np.savez_compressed(f, obs=data["obs"], q=data["q"], episode=data["episode"], env=np.str_(env_id),
                                teacher=np.str_(teacher), epsilon=np.float64(epsilon))

    atomic_write(path, write)
