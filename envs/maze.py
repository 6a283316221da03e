"""The EBU paper's digit maze (Lee, Choi, Chung 2019, "MNIST Maze"; docs/ebu.md).

Follows the paper: a size x size grid (10 x 10), walls at random with a wall density
(20% or 50%), start in one corner (0, 0) and goal in the opposite one (size-1, size-1),
reward -1 for bumping into a wall (the agent stays), +1000 for reaching the goal (terminal),
0 otherwise; the observation shows the agent's coordinates as digit images, a random image
of each digit every step; the stochastic variant randomizes 20% of the actions; the metric
is the relative length = steps taken / shortest path.

Our choices (all keyword options of the env, registered as `rewind/maze-*`):
- Digits come from scikit-learn's bundled `load_digits` (8x8, values 0..16, about 180 images
  per class; no network), scaled to uint8 0..255.  Observation: a (1, 8, 16 * n) uint8 image,
  row digit(s) left, column digit(s) right, channel first like rewind's Atari/MinAtar
  observations (n = digits per coordinate: 1 up to size 10).  `observation="index"` gives
  Discrete(size * size) cell indices instead, for tabular agents.
- Walls: each cell other than start and goal is a wall with probability `density`
  (independently); the layout is redrawn until breadth-first search finds a start-goal path.
  The grid border also counts as a wall (-1, no move).
- The layout depends only on `maze_seed` (default 0), never on reset seeds, so a run trains
  and evaluates on the same maze, as in the paper; use one maze_seed per run seed.
- Stochastic variant: with probability `random_action_prob` (0.2) the action is replaced by
  one of the *other* three actions, uniformly, so 20% of actions really change.
- Time limit inside the env: `max_steps` (1000) then truncated, so the episode-end info
  carries `relative_length` also for episodes that never reach the goal.
- `reward_scale` (default 1, the paper's rewards) multiplies every reward: the digit-maze suite
  (`bench/suites/maze_ebu.yaml`) uses 1/1000 (goal +1, wall -0.001), the same optimal policy
  with Q-values near 1, which Adam's fixed step size fits in a 20k-step budget.
- `info`: position, shortest_path (BFS steps from start to goal), executed_action; at the
  end of an episode also relative_length and is_success.
"""

from __future__ import annotations

import functools
from collections import deque

import gymnasium as gym
import numpy as np

from rewind.errors import RewindError

# up, down, left, right as (d_row, d_col)
MOVES = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)], dtype=np.int64)
_MAX_LAYOUT_TRIES = 100_000


@functools.lru_cache(maxsize=1)
def digit_bank() -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """(images (N, 8, 8) uint8 0..255, per-class index arrays) from sklearn's load_digits."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.round(data.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    images.setflags(write=False)
    by_class = tuple(np.flatnonzero(data.target == d) for d in range(10))
    return images, by_class


def bfs_distances(walls: np.ndarray, source: tuple[int, int]) -> np.ndarray:
    """Steps from `source` to every cell through free cells (4-neighbour moves); -1 = unreachable."""
    n_rows, n_cols = walls.shape
    dist = np.full(walls.shape, -1, dtype=np.int64)
    dist[source] = 0
    queue = deque([source])
    while queue:
        r, c = queue.popleft()
        for dr, dc in MOVES.tolist():
            nr, nc = r + dr, c + dc
            if 0 <= nr < n_rows and 0 <= nc < n_cols and not walls[nr, nc] and dist[nr, nc] < 0:
                dist[nr, nc] = dist[r, c] + 1
                queue.append((nr, nc))
    return dist


def random_layout(size: int, density: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Walls (size, size) bool with a guaranteed start-goal path, and BFS distances to the goal."""
    rng = np.random.default_rng(seed)
    start, goal = (0, 0), (size - 1, size - 1)
    for _ in range(_MAX_LAYOUT_TRIES):
        walls = rng.random((size, size)) < density
        walls[start] = walls[goal] = False
        dist = bfs_distances(walls, goal)
        if dist[start] > 0:
            return walls, dist
    raise RewindError(f"no {size}x{size} maze with wall density {density} and a start-goal path found in "
                      f"{_MAX_LAYOUT_TRIES} tries; use a lower density")


class DigitMazeEnv(gym.Env):
    """Grid maze with digit-image observations of the agent's (row, col); see the module doc."""

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, size: int = 10, density: float = 0.2, stochastic: bool = False,
                 random_action_prob: float = 0.2, maze_seed: int = 0, max_steps: int = 1000,
                 observation: str = "digits", render_mode: str | None = None, reward_scale: float = 1.0):
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:
            raise RewindError(f"maze size must be an integer >= 2, got {size!r}")
        if not 0.0 <= float(density) < 1.0:
            raise RewindError(f"maze density must lie in [0, 1), got {density!r}")
        if not 0.0 <= float(random_action_prob) <= 1.0:
            raise RewindError(f"maze random_action_prob must lie in [0, 1], got {random_action_prob!r}")
        if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
            raise RewindError(f"maze max_steps must be an integer >= 1, got {max_steps!r}")
        if isinstance(reward_scale, bool) or not isinstance(reward_scale, (int, float)) or not reward_scale > 0:
            raise RewindError(f"maze reward_scale must be a number > 0, got {reward_scale!r}")
        if observation not in ("digits", "index"):
            raise RewindError(f"maze observation must be 'digits' or 'index', got {observation!r}")
        if render_mode not in (None, "ansi"):
            raise RewindError(f"maze render_mode must be None or 'ansi', got {render_mode!r}")
        self.size = int(size)
        self.density = float(density)
        self.stochastic = bool(stochastic)
        self.random_action_prob = float(random_action_prob) if stochastic else 0.0
        self.maze_seed = int(maze_seed)
        self.max_steps = int(max_steps)
        self.observation_mode = observation
        self.reward_scale = float(reward_scale)
        self.render_mode = render_mode

        self.start = (0, 0)
        self.goal = (self.size - 1, self.size - 1)
        self.walls, self.distance = random_layout(self.size, self.density, self.maze_seed)
        self.shortest_path = int(self.distance[self.start])
        self.n_digits = len(str(self.size - 1))

        self.action_space = gym.spaces.Discrete(4)
        if observation == "index":
            self.observation_space = gym.spaces.Discrete(self.size * self.size)
        else:
            self.observation_space = gym.spaces.Box(0, 255, shape=(1, 8, 16 * self.n_digits), dtype=np.uint8)
        self._images, self._by_class = digit_bank() if observation == "digits" else (None, None)
        self.pos = self.start
        self.steps = 0

    # -- observation -------------------------------------------------------------------
    def _obs(self):
        r, c = self.pos
        if self.observation_mode == "index":
            return int(r * self.size + c)
        digits = [int(ch) for ch in f"{r:0{self.n_digits}d}{c:0{self.n_digits}d}"]
        picks = [int(self.np_random.choice(self._by_class[d])) for d in digits]
        return np.concatenate([self._images[i] for i in picks], axis=1)[None]

    def _info(self, executed_action=None) -> dict:
        info = {"position": self.pos, "shortest_path": self.shortest_path}
        if executed_action is not None:
            info["executed_action"] = executed_action
        return info

    # -- gymnasium API ---------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.pos = self.start
        self.steps = 0
        return self._obs(), self._info()

    def step(self, action):
        if not self.action_space.contains(action):
            raise RewindError(f"maze action must be an integer in 0..3, got {action!r}")
        action = int(action)
        if self.random_action_prob > 0 and self.np_random.random() < self.random_action_prob:
            action = (action + int(self.np_random.integers(1, 4))) % 4
        dr, dc = MOVES[action]
        r, c = self.pos[0] + int(dr), self.pos[1] + int(dc)
        terminated = False
        if not (0 <= r < self.size and 0 <= c < self.size) or self.walls[r, c]:
            reward = -1.0
        else:
            self.pos = (r, c)
            terminated = self.pos == self.goal
            reward = 1000.0 if terminated else 0.0
        reward *= self.reward_scale
        self.steps += 1
        truncated = not terminated and self.steps >= self.max_steps
        info = self._info(action)
        if terminated or truncated:
            info["relative_length"] = self.steps / self.shortest_path
            info["is_success"] = terminated
        return self._obs(), reward, terminated, truncated, info

    def render(self):
        if self.render_mode != "ansi":
            return None
        rows = []
        for r in range(self.size):
            row = ""
            for c in range(self.size):
                row += "A" if (r, c) == self.pos else "G" if (r, c) == self.goal else "#" if self.walls[r, c] else "."
            rows.append(row)
        return "\n".join(rows)
