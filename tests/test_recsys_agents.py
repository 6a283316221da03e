"""The YouTube DNN agent: example age, propensities, heads, checkpoints, bad input."""

import numpy as np
import pytest

from rewind.agents import make_agent
from rewind.envs import make_env
from rewind.envs.recsys import N_DEMO
from rewind.errors import RewindError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_OLD, N_ITEMS, H = 40, 80, 5


def _obs(t: float, n_avail: int) -> np.ndarray:
    demo = np.zeros(N_DEMO, dtype=np.float32)
    demo[[0, 4]] = 1.0
    return np.concatenate([np.full(H, -1, np.float32), demo, [t, n_avail / N_ITEMS]]).astype(np.float32)


def _fresh_share(example_age: bool) -> float:
    """Train the candidate model on a log where fresh items take over at t = 0.7; serve at t = 1."""
    env = make_env("rewind/recsys-v0", {"n_items": N_ITEMS, "history_len": H})
    agent = make_agent("youtube-dnn", env, {"example_age": example_age, "learning_starts": 0,
                                            "train_every": 10 ** 9, "lr": 1e-2}, seed=0)
    rng = np.random.default_rng(0)
    old_pop = rng.dirichlet(np.ones(N_OLD))     # which old items users liked
    for i in range(3000):
        t = i / 3000
        n_avail = N_OLD if t < 0.7 else N_ITEMS
        if t < 0.7 or rng.random() < 0.1:
            item = int(rng.choice(N_OLD, p=old_pop))
        else:
            item = int(rng.integers(N_OLD, N_ITEMS))
        agent.observe(_obs(t, n_avail), item, 1.0, None, True, False, {"click": True, "watch_time": 1.0})
    for _ in range(800):
        agent.train_step()
    top = agent.candidates(_obs(1.0, N_ITEMS), 10)
    return float(np.mean(top >= N_OLD))


def test_example_age_lets_candidates_track_fresh_items():
    with_age, without = _fresh_share(True), _fresh_share(False)
    # the log's last 30% are 90% fresh items, but over the whole log old items dominate:
    # with example age the model serves "now" (mostly fresh); without it, the log's average (old)
    assert with_age >= 0.8, with_age
    assert without <= 0.3, without


def _small_env():
    return make_env("rewind/recsys-v0", {"n_items": 200, "n_users": 30, "publish_steps": 400})


@pytest.mark.parametrize("head", ["mlp", "shared-bottom", "omoe", "mmoe"])
def test_agent_runs_logs_propensities_and_resumes_exactly(head):
    env = _small_env()
    cfg = {"ranking_head": head, "learning_starts": 50, "epsilon": 0.2, "train_every": 5}
    agent = make_agent("youtube-dnn", env, cfg, seed=1)
    obs, _ = env.reset(seed=0)
    for _ in range(150):
        a = agent.act(obs)
        nxt, r, term, trunc, info = env.step(a)
        n_avail = env.unwrapped.world.n_available(info["t"])
        greedy_p = 0.2 / n_avail + 0.8
        assert info["propensity"] == pytest.approx(1 / n_avail if agent.log.size < 50 else
                                                   (greedy_p if info["propensity"] > 0.5 else 0.2 / n_avail))
        agent.observe(obs, a, r, nxt, term, trunc, info)
        agent.update()
        obs, _ = env.reset()
    assert agent.train_steps > 0 and np.allclose(agent.log.prop[:150], [p for p in agent.log.prop[:150]])
    twin = make_agent("youtube-dnn", env, cfg, seed=99)
    twin.load_state_dict(agent.state_dict())
    assert [int(agent.act(obs)) for _ in range(5)] == [int(twin.act(obs)) for _ in range(5)]


def test_bad_config_and_wrong_env_are_one_line_errors():
    env = _small_env()
    with pytest.raises(RewindError, match="agent.ranking_head must be one of"):
        make_agent("youtube-dnn", env, {"ranking_head": "moe"})
    with pytest.raises(RewindError, match="rewind/recsys"):
        make_agent("youtube-dnn", make_env("rewind/bandit-wine-v0"))


@pytest.mark.parametrize("name", ["cg-eps-greedy-linear", "cg-linucb", "cg-bootstrap-ts", "recsys-random"])
def test_baselines_pick_published_candidates_with_valid_propensities(name):
    env = _small_env()
    agent = make_agent(name, env, {} if name == "recsys-random" else {"candidates": 20, "fresh": 5}, seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(120):
        a = agent.act(obs)
        nxt, r, term, trunc, info = env.step(a)
        n_avail = env.unwrapped.world.n_available(info["t"])
        assert 0 <= int(a) < n_avail and 0 < info["propensity"] <= 1
        if name != "recsys-random":
            assert int(a) in set(agent.candidate_set(n_avail).tolist())
        agent.observe(obs, a, r, nxt, term, trunc, info)
        agent.update()
        obs, _ = env.reset()
    twin = make_agent(name, env, {} if name == "recsys-random" else {"candidates": 20, "fresh": 5}, seed=5)
    twin.load_state_dict(agent.state_dict())
    assert [int(agent.act(obs)) for _ in range(3)] == [int(twin.act(obs)) for _ in range(3)]


def test_run_loop_trains_the_recommender():
    import rewind
    from rewind import RunConfig

    env = _small_env()
    agent = rewind.make_agent("youtube-dnn", env, {"learning_starts": 50}, seed=0)
    summary = rewind.train(agent, env, RunConfig(steps=200, eval_every=100, eval_episodes=5))
    assert agent.train_steps > 0 and summary is not None
