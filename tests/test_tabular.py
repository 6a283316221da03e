"""Tabular EBU (the paper's Algorithm 1) against uniform one-step Q-learning.

The paper's motivating example (Figure 1): a short navigation task with one rewarded
transition.  After one episode, a single backward sweep learns the optimal path; uniform
one-step updates, just as many, almost never do (they must happen to come in backward order).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rewind.agents import make_agent
from rewind.run.loop import RunConfig, train
from rewind.agents.tabular import TabularEBUAgent, TabularQAgent, TransitionStore
from rewind.envs import make_env
from rewind.errors import RewindError

LEFT, RIGHT = 0, 1


class TinyNav(gym.Env):
    """States 0..3 in a row, goal beyond state 3 (obs 4): RIGHT from 3 gives reward 1 and ends."""

    observation_space = gym.spaces.Discrete(5)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.s = 0
        return self.s, {}

    def step(self, action):
        if action == RIGHT:
            self.s += 1
        else:
            self.s = max(0, self.s - 1)
        done = self.s == 4
        return self.s, float(done), done, False, {}


# A wandering first episode (behaviour actions), 8 steps: 0 1 0 1 2 1 2 3 goal.
EPISODE = [RIGHT, LEFT, RIGHT, RIGHT, LEFT, RIGHT, RIGHT, RIGHT]


def play_scripted_episode(agent) -> int:
    """Drive `agent` through EPISODE the way the run loop does (observe, then update, per step)."""
    env = TinyNav()
    obs, _ = env.reset(seed=0)
    for a in EPISODE:
        next_obs, r, term, trunc, info = env.step(a)
        agent.observe(obs, a, r, next_obs, term, trunc, info)
        agent.update()
        obs = next_obs
    assert term
    return agent.updates


def follows_optimal_path(q: np.ndarray) -> bool:
    """RIGHT strictly preferred in every state 0..3 (ties do not count: they carry no knowledge)."""
    return all(q[s, RIGHT] > q[s, LEFT] for s in range(4))


def make(cls, seed, **cfg):
    env = TinyNav()
    return cls(env.observation_space, env.action_space, cls.Config(gamma=0.9, alpha=1.0, **cfg), seed=seed)


def test_one_backward_sweep_learns_the_optimal_path():
    agent = make(TabularEBUAgent, seed=0)
    n_updates = play_scripted_episode(agent)
    assert n_updates == len(EPISODE)
    assert follows_optimal_path(agent.q)
    # alpha = 1 in a deterministic env: the start's value is the discounted return 0.9^3.
    np.testing.assert_allclose(agent.q[:4, RIGHT], [0.9 ** 3, 0.9 ** 2, 0.9, 1.0])


def test_uniform_one_step_q_learning_with_as_many_updates_does_not():
    seeds = range(300)
    ebu = [follows_optimal_path(_trained(TabularEBUAgent, s).q) for s in seeds]
    assert all(ebu)
    # Online: one uniform update after each step (only the last comes after the reward).
    online = [follows_optimal_path(_trained(TabularQAgent, s).q) for s in seeds]
    # As in the paper's figure: all 8 uniform updates after the episode (about 3% succeed:
    # they must happen to include the 4 rewarding-path transitions in backward order).
    after = [follows_optimal_path(_trained(TabularQAgent, s, learning_starts=8, updates_per_step=8).q)
             for s in seeds]
    assert np.mean(online) < 0.05 and np.mean(after) < 0.1, (np.mean(online), np.mean(after))
    # Not a broken baseline: with many more uniform updates it does learn the path.
    many = [follows_optimal_path(_trained(TabularQAgent, s, learning_starts=8, updates_per_step=200).q)
            for s in range(20)]
    assert all(many)


def _trained(cls, seed, **cfg):
    agent = make(cls, seed, **cfg)
    play_scripted_episode(agent)
    return agent


def test_tabular_ebu_solves_the_deterministic_digit_maze_through_the_run_loop():
    env = make_env("rewind/maze-d20-v0", {"observation": "index", "maze_seed": 1})
    agent = make_agent("tabular-ebu", env, {"eps_decay_steps": 3000}, seed=0)
    train(agent, env, RunConfig(steps=6000, eval_every=0, eval_episodes=0, progress=False), seed=0)
    obs, info = env.reset(seed=0)
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(agent.act(obs, explore=False))
        done = term or trunc
    assert term and info["relative_length"] == 1.0


def test_replay_never_returns_a_torn_episode_after_wraparound():
    rng = np.random.default_rng(0)
    store = TransitionStore(50)
    t = 0
    for _ in range(2000):
        length = int(rng.integers(1, 30))
        for k in range(length):   # states count up within an episode so tears are visible
            store.add(t + k, 0, 0.0, t + k + 1, k == length - 1 and rng.random() < 0.5, k == length - 1)
        t += 1000
        for start, n in store.episodes:
            s, _, _, s2, term = store.episode(start, n)
            assert np.all(s[1:] == s2[:-1]) and np.all(np.diff(s) == 1)
            assert s[0] % 1000 == 0, "episode does not start at its first transition"
        assert sum(n for _, n in store.episodes) <= store.capacity


def test_state_dict_resumes_exactly():
    env = make_env("rewind/maze-d20-v0", {"observation": "index", "maze_seed": 2})
    for name in ("tabular-ebu", "tabular-q"):
        a = make_agent(name, env, {}, seed=3)
        run = RunConfig(steps=1500, eval_every=0, eval_episodes=0, progress=False)
        train(a, env, run, seed=0)
        b = make_agent(name, env, {}, seed=99)
        b.load_state_dict(a.state_dict())
        b.replay.load_state_dict(a.replay.state_dict())
        obs = 5
        for _ in range(300):   # identical decisions and learning from here on
            act_a, act_b = a.act(obs), b.act(obs)
            assert act_a == act_b
            for agent in (a, b):
                agent.observe(obs, act_a, 0.0, (obs + 1) % 100, False, obs % 17 == 0, {})
                agent.update()
            obs = (obs + 1) % 100
        np.testing.assert_array_equal(a.q, b.q)


def test_bad_spaces_and_config_are_rewind_errors():
    box = gym.spaces.Box(0, 1, (3,))
    with pytest.raises(RewindError, match="Discrete observation"):
        TabularEBUAgent(box, gym.spaces.Discrete(2))
    env = make_env("rewind/maze-d20-v0", {"observation": "index"})
    with pytest.raises(RewindError):
        make_agent("tabular-q", env, {"alpha": 0.0})
    with pytest.raises(RewindError):
        make_agent("tabular-ebu", env, {"updates_per_step": 2})
