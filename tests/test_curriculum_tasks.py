"""RL task curricula: the task wrapper applies the task the teacher chose, read back from the env (issue 6)."""

import gymnasium as gym
import numpy as np
import pytest

from rewind.controllers.curriculum_env import CurriculumWrapper, wrap_with_curriculum
from rewind.controllers.teacher_base import Teacher
from rewind.envs import make_env
from rewind.envs.tasks import ALETaskEnv, MinAtarTaskEnv, maze_task_env
from rewind.errors import RewindError


def native_ram(mode, difficulty):
    import ale_py
    gym.register_envs(ale_py)
    env = gym.make("ALE/Breakout-v5", mode=mode, difficulty=difficulty, frameskip=1, repeat_action_probability=0.0)
    env.reset(seed=3)
    ram = env.unwrapped.ale.getRAM().copy()
    env.close()
    return ram


def test_ale_mode_and_difficulty_are_applied():
    env = ALETaskEnv(make_env("breakout", {"noop_max": 0}))
    assert (4, 1) in env.pairs and (0, 0) in env.pairs
    task = env.pairs.index((4, 1))
    env.set_task(task)
    env.reset(seed=0)
    assert env.get_task() == task and env.describe(task) == {"mode": 4, "difficulty": 1}
    ram = env.unwrapped.ale.getRAM()
    assert np.array_equal(ram, native_ram(4, 1))             # the emulator runs that mode
    assert not np.array_equal(ram, native_ram(0, 0))
    # after a lost life (no real game reset under life-loss terminals) a new task still applies
    done, steps = False, 0
    while not done and steps < 5000:
        _, _, term, trunc, info = env.step(env.action_space.sample())
        done, steps = term or trunc, steps + 1
    assert info.get("life_loss") or trunc or term
    back = env.pairs.index((0, 0))
    env.reset(options={"task": back})
    assert env.get_task() == back
    assert np.array_equal(env.unwrapped.ale.getRAM(), native_ram(0, 0))
    with pytest.raises(RewindError, match="outside the task space"):
        env.set_task(len(env.pairs))
    with pytest.raises(RewindError, match="modes"):
        ALETaskEnv(make_env("breakout"), modes=[3])


@pytest.mark.parametrize("game", ["asterix", "seaquest", "space_invaders"])
def test_minatar_start_level_is_applied(game):
    env = MinAtarTaskEnv(make_env(f"minatar-{game}", {"sticky_action_prob": 0.0, "difficulty_ramping": False}))
    top = env.task_space.n - 1
    assert top >= 5
    speeds = {}
    for level in (0, 3, top):
        env.set_task(level)
        env.reset(seed=0)
        g = env.unwrapped.game.env
        assert env.get_task() == level == g.ramp_index
        speeds[level] = {k: v for k, v in vars(g).items() if "speed" in k or "interval" in k}
    for key in speeds[0]:  # every speed/interval is non-increasing with the level (faster game)
        assert speeds[0][key] >= speeds[3][key] >= speeds[top][key]
    assert any(speeds[0][k] > speeds[top][k] for k in speeds[0])
    with pytest.raises(RewindError):
        env.set_task(top + 1)


def test_minatar_hard_level_really_plays_harder():
    """Asterix at its top level spawns an entity every step: more on screen after 12 steps."""
    counts = []
    for level in (0, 9):
        env = MinAtarTaskEnv(make_env("minatar-asterix", {"sticky_action_prob": 0.0, "difficulty_ramping": False}))
        env.reset(seed=0, options={"task": level})
        for _ in range(12):
            env.step(0)
        counts.append(sum(e is not None for e in env.unwrapped.game.env.entities))
    assert counts[1] > counts[0]


def test_minatar_game_without_ramp_has_one_task():
    env = MinAtarTaskEnv(make_env("minatar-breakout"))
    assert env.task_space.n == 1


def test_maze_size_and_density_are_applied():
    env = maze_task_env(max_steps=50)
    assert isinstance(env.task_space, gym.spaces.Box)
    env.set_task([6, 0.3])
    obs, _ = env.reset(seed=0)
    assert env.get_task() == pytest.approx([6, 0.3])
    maze = env.unwrapped
    assert maze.walls.shape == (6, 6) and maze.density == pytest.approx(0.3)
    assert env.observation_space.contains(obs)
    env.reset(options={"task": [10, 0.0]})
    assert env.unwrapped.walls.shape == (10, 10) and not env.unwrapped.walls.any()
    for bad in ([12, 0.2], [6, 0.95], [1, 0.2], [6]):
        with pytest.raises(RewindError, match="outside the task space"):
            env.set_task(bad)


class Scripted(Teacher):
    """Chooses tasks from a fixed list, to check the wrapper obeys it."""

    def __init__(self, order, n):
        super().__init__(None, gym.spaces.Discrete(n))
        self.order, self.i, self.seen = list(order), 0, []

    def _choose(self, explore):
        task = self.order[self.i % len(self.order)]
        self.i += 1
        return task

    def _learn(self, task, score):
        self.seen.append((task, score))
        return {}


def test_curriculum_wrapper_applies_the_teachers_task_and_reports_returns():
    tasks = [[4, 0.0], [6, 0.2], [8, 0.4]]
    teacher = Scripted([2, 0, 1, 1, 2], 3)
    env = CurriculumWrapper(maze_task_env(max_steps=15), teacher, tasks)
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=0)
    for episode in range(5):
        want = teacher.order[episode]
        assert info["task"] == want
        assert env.get_task() == pytest.approx(tasks[want])          # read back from the maze itself
        assert env.unwrapped.walls.shape == (tasks[want][0],) * 2
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, info = env.step(int(rng.integers(4)))
            total += r
            done = term or trunc
        assert info["curriculum"]["task"] == want
        assert teacher.seen[-1] == (want, pytest.approx(total))
        obs, info = env.reset()


def test_wrap_with_curriculum_by_name():
    env = wrap_with_curriculum("minatar-asterix", make_env("minatar-asterix"), "tscl-window",
                               {"policy": "boltzmann", "max_level": 4, "seed": 3})
    assert env.teacher.n_tasks == 5 and env.teacher.config.policy == "boltzmann"
    env.reset(seed=0)
    assert env.get_task() == env.tasks[env._task_idx]
    maze = wrap_with_curriculum("rewind/maze-v0", make_env("rewind/maze-v0", {"max_steps": 10}), "plr",
                                {"densities": [0.0, 0.5]})
    assert maze.tasks == [[10, 0.0], [10, 0.5]]
    with pytest.raises(RewindError, match="unknown curriculum"):
        wrap_with_curriculum("minatar-asterix", make_env("minatar-asterix"), "tscl-windw", {})
    with pytest.raises(RewindError, match="unknown curriculum option"):
        wrap_with_curriculum("minatar-asterix", make_env("minatar-asterix"), "tscl-window", {"polcy": "x"})
    with pytest.raises(RewindError, match="no curriculum tasks"):
        wrap_with_curriculum("CartPole-v1", make_env("CartPole-v1"), "plr", {})
    with pytest.raises(RewindError, match="empty"):
        wrap_with_curriculum("minatar-asterix", make_env("minatar-asterix"), "plr", {"tasks": []})
    with pytest.raises(RewindError, match="outside the task space"):
        wrap_with_curriculum("minatar-asterix", make_env("minatar-asterix"), "plr", {"tasks": [0, 99]})
