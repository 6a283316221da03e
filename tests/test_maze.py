"""The digit maze: layout guarantees, dynamics and rewards, stochastic actions, digit observations."""

from __future__ import annotations

import pickle

from gymnasium.utils.env_checker import check_env
import numpy as np
import pytest
from scipy.sparse import lil_matrix
from scipy.sparse.csgraph import shortest_path
from sklearn.datasets import load_digits

from rewind.envs import make_env
from rewind.envs.maze import MOVES, DigitMazeEnv
from rewind.errors import RewindError


def grid_distance(walls: np.ndarray, a, b) -> float:
    """Shortest path length between cells a and b by scipy's graph search (independent of BFS)."""
    n = walls.shape[0]
    graph = lil_matrix((n * n, n * n))
    for r in range(n):
        for c in range(n):
            for dr, dc in ((1, 0), (0, 1)):
                rr, cc = r + dr, c + dc
                if rr < n and cc < n and not walls[r, c] and not walls[rr, cc]:
                    graph[r * n + c, rr * n + cc] = graph[rr * n + cc, r * n + c] = 1
    return shortest_path(graph.tocsr(), directed=False, indices=[a[0] * n + a[1]])[0, b[0] * n + b[1]]


@pytest.mark.parametrize("density", [0.2, 0.5])
def test_path_always_exists_and_shortest_path_matches_graph_search(density):
    wall_fraction = []
    for maze_seed in range(25):
        env = DigitMazeEnv(size=10, density=density, maze_seed=maze_seed, observation="index")
        _, info = env.reset(seed=0)
        assert not env.walls[env.start] and not env.walls[env.goal]
        want = grid_distance(env.walls, env.start, env.goal)
        assert np.isfinite(want)
        assert info["shortest_path"] == env.shortest_path == int(want)
        wall_fraction.append(env.walls.sum() / 98)
    if density == 0.2:  # conditioning on a path barely matters at 20%
        assert abs(np.mean(wall_fraction) - 0.2) < 0.03
    else:
        assert 0.3 < np.mean(wall_fraction) < 0.5


@pytest.mark.parametrize("maze_seed", [0, 1, 2])
def test_following_the_distance_map_reaches_goal_in_shortest_path_steps(maze_seed):
    env = DigitMazeEnv(density=0.5, maze_seed=maze_seed, observation="index")
    env.reset(seed=0)
    total, steps, done = 0.0, 0, False
    while not done:
        r, c = env.pos
        best = min(range(4), key=lambda a: _dist_after(env, r, c, a))
        _, reward, terminated, truncated, info = env.step(best)
        total += reward
        steps += 1
        done = terminated or truncated
    assert terminated and steps == env.shortest_path
    assert total == 1000.0
    assert info["relative_length"] == 1.0 and info["is_success"]


def _dist_after(env, r, c, a):
    rr, cc = r + MOVES[a][0], c + MOVES[a][1]
    if not (0 <= rr < env.size and 0 <= cc < env.size) or env.walls[rr, cc]:
        return np.inf
    return env.distance[rr, cc]


def test_wall_bump_costs_one_and_does_not_move():
    env = DigitMazeEnv(density=0.5, maze_seed=0, observation="index")
    env.reset(seed=0)
    # The border is a wall: up from the start corner.
    obs, reward, terminated, truncated, _ = env.step(0)
    assert (reward, env.pos, obs, terminated, truncated) == (-1.0, (0, 0), 0, False, False)
    # An inner wall next to a free cell.
    free_next_to_wall = [((r, c), a) for r in range(10) for c in range(10) for a in range(4)
                         if not env.walls[r, c] and 0 <= r + MOVES[a][0] < 10 and 0 <= c + MOVES[a][1] < 10
                         and env.walls[r + MOVES[a][0], c + MOVES[a][1]]]
    assert free_next_to_wall
    for (r, c), a in free_next_to_wall[:10]:
        env.pos = (r, c)
        obs, reward, terminated, _, _ = env.step(a)
        assert reward == -1.0 and env.pos == (r, c) and obs == r * 10 + c and not terminated


def test_goal_gives_1000_and_terminates():
    env = DigitMazeEnv(density=0.0, maze_seed=0)
    env.reset(seed=0)
    env.pos = (9, 8)
    _, reward, terminated, truncated, info = env.step(3)
    assert reward == 1000.0 and terminated and not truncated
    assert info["relative_length"] == env.steps / 18 and info["is_success"]
    # A plain free move gives 0.
    env.reset()
    _, reward, terminated, _, _ = env.step(1)
    assert reward == 0.0 and env.pos == (1, 0) and not terminated


def test_time_limit_truncates_with_relative_length():
    env = DigitMazeEnv(density=0.2, maze_seed=4, max_steps=7, observation="index")
    env.reset(seed=0)
    for i in range(7):
        _, _, terminated, truncated, info = env.step(0)   # bump the top border forever
    assert truncated and not terminated
    assert info["relative_length"] == 7 / env.shortest_path and not info["is_success"]


def test_stochastic_variant_changes_about_20_percent_of_actions():
    env = DigitMazeEnv(density=0.2, stochastic=True, maze_seed=1, max_steps=10**6, observation="index")
    env.reset(seed=123)
    rng = np.random.default_rng(0)
    n, changed = 4000, 0
    for _ in range(n):
        a = int(rng.integers(4))
        before = env.pos
        _, reward, terminated, _, info = env.step(a)
        done_a = info["executed_action"]
        changed += done_a != a
        # The move really follows the executed action.
        target = (before[0] + MOVES[done_a][0], before[1] + MOVES[done_a][1])
        assert env.pos == (target if reward >= 0 else before)
        if terminated:
            env.reset()
    rate = changed / n     # binomial sd about 0.0063 at 4000 draws
    assert abs(rate - 0.2) < 0.03, rate
    det = DigitMazeEnv(density=0.2, maze_seed=1, observation="index")
    det.reset(seed=0)
    assert all(det.step(a)[4]["executed_action"] == a for a in [0, 1, 2, 3] * 50)


def test_observation_digits_are_images_of_the_coordinates():
    data = load_digits()
    bank = np.round(data.images * (255 / 16)).clip(0, 255).astype(np.uint8).reshape(len(data.images), -1)
    env = DigitMazeEnv(density=0.2, maze_seed=2)
    obs, _ = env.reset(seed=5)
    assert obs.shape == (1, 8, 16) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
    rng = np.random.default_rng(1)
    seen_at_start = set()
    for _ in range(300):
        r, c = env.pos
        for half, coord in ((obs[0, :, :8], r), (obs[0, :, 8:], c)):
            matches = np.flatnonzero((bank == half.reshape(-1)).all(axis=1))
            assert len(matches) > 0, "observation half is not a load_digits image"
            assert set(data.target[matches]) == {coord}
        if env.pos == (0, 0):
            seen_at_start.add(obs.tobytes())
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(4)))
        if terminated or truncated:
            obs, _ = env.reset()
    assert len(seen_at_start) > 1, "each visit should draw a fresh random image of the digit"


def test_layout_is_fixed_by_maze_seed_not_reset_seed():
    a = DigitMazeEnv(density=0.5, maze_seed=7)
    b = DigitMazeEnv(density=0.5, maze_seed=7)
    a.reset(seed=1)
    b.reset(seed=2)
    np.testing.assert_array_equal(a.walls, b.walls)
    c = DigitMazeEnv(density=0.5, maze_seed=8)
    assert not np.array_equal(a.walls, c.walls)


def test_registered_ids_pass_gymnasium_checks_and_pickle():
    for env_id, density, stochastic in [("rewind/maze-d20-v0", 0.2, False), ("rewind/maze-d50-v0", 0.5, False),
                                        ("rewind/maze-d20-stoch-v0", 0.2, True),
                                        ("rewind/maze-d50-stoch-v0", 0.5, True)]:
        env = make_env(env_id, {"maze_seed": 3})
        inner = env.unwrapped
        assert (inner.density, inner.stochastic, inner.maze_seed) == (density, stochastic, 3)
    check_env(DigitMazeEnv(maze_seed=1), skip_render_check=True)
    env = make_env("rewind/maze-v0", {"observation": "index"})
    env.reset(seed=0)
    env.step(1)
    clone = pickle.loads(pickle.dumps(env))
    assert clone.unwrapped.pos == env.unwrapped.pos
    np.testing.assert_array_equal(clone.unwrapped.walls, env.unwrapped.walls)


def test_reward_scale_multiplies_bump_and_goal_rewards_only():
    env = DigitMazeEnv(density=0.0, maze_seed=0, observation="index", reward_scale=0.001)
    env.reset(seed=0)
    assert env.step(0)[1] == pytest.approx(-0.001)            # border bump
    assert env.step(1)[1] == 0.0 and env.pos == (1, 0)        # a free move stays 0
    env.pos = (9, 8)
    _, reward, terminated, _, info = env.step(3)
    assert reward == pytest.approx(1.0) and terminated and info["is_success"]


@pytest.mark.parametrize("kwargs", [dict(density=1.0), dict(size=1), dict(observation="pixels"),
                                    dict(max_steps=0), dict(random_action_prob=2.0, stochastic=True),
                                    dict(reward_scale=0), dict(reward_scale="big")])
def test_bad_options_are_rewind_errors(kwargs):
    with pytest.raises(RewindError):
        DigitMazeEnv(**kwargs)
