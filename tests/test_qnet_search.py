"""Search over Q-networks (docs/enas.md): the qnet supernet computes exactly the stand-alone
network that DQN/EBU build from ``agent.network=searched``, that network comes back from a
checkpoint, the Q-value reward prefers a network that fits the teacher, and bad data files are
one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rewind.agents import make_agent
from rewind.agents.networks import qnet_cost
from rewind.cli.search import main as search_main
from rewind.controllers.search_spaces import make_space
from rewind.envs import make_env
from rewind.envs.nas import NASEnv, NASEnvConfig, evaluate_split
from rewind.envs.nas_data import load_q_data
from rewind.errors import RewindError
from rewind.run.experiment import load_for_eval, resolve, run_experiment
from rewind.run.qdata import collect_q_values, save_q_data

SHAPE, ACTIONS = (4, 10, 10), 3     # MinAtar breakout


def space(**params):
    return make_space("qnet", in_channels=SHAPE[0], side=SHAPE[1], n_actions=ACTIONS, **params)


def obs_batch(n=16, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 2, (n, *SHAPE)).astype(np.uint8))


def test_supernet_path_equals_the_dqn_network_built_from_the_arch_string():
    torch.manual_seed(0)
    sp = space()
    supernet = sp.shared_model(in_shape=SHAPE, n_classes=ACTIONS)
    env = make_env("minatar-breakout")
    x, rng = obs_batch(), np.random.default_rng(1)
    archs = [sp.random(rng) for _ in range(12)] + [np.array([1, 1, 0, 0, 0, 0])]   # ... and the preset
    for arch in archs:
        cfg = {"network": "searched", "arch": sp.arch_string(arch), "buffer_size": 100}
        agent = make_agent("dqn", env, cfg, seed=3)
        before = agent.q(x)
        agent.q.load_state_dict(supernet.export(arch))
        assert not torch.allclose(before, agent.q(x))      # the agent's own init differs: the copy matters
        torch.testing.assert_close(agent.q(x), supernet(x, arch), rtol=0, atol=1e-6)
        n = sum(p.numel() for p in agent.q.parameters())
        assert n == qnet_cost(sp.arch_string(arch), SHAPE, ACTIONS)["params"] <= sp.params_budget
    assert sp.arch_string(archs[-1]) == "c3x16-h128-relu"
    preset = make_agent("dqn", env, {"network": "minatar"}, seed=0)
    assert sum(p.numel() for p in preset.q.parameters()) == sp.params_budget


def test_searched_network_rebuilds_from_its_checkpoint(tmp_path):
    arch = "c5x8-pool-h64-elu"
    exp = resolve("dqn", "minatar-breakout", overrides={
        "agent": {"network": "searched", "arch": arch, "learning_starts": 50, "batch_size": 8},
        "run": {"eval_every": 0, "eval_episodes": 0, "checkpoint_every": 0, "save_buffer": False}},
        steps=120, seed=0)
    trained = run_experiment(exp, tmp_path / "run", progress=False)
    agent, _, meta = load_for_eval(tmp_path / "run")
    assert meta["agent_config"]["arch"] == arch and agent.q.arch == arch
    x = obs_batch()
    fresh = make_agent("dqn", make_env("minatar-breakout"), {"network": "searched", "arch": arch}, seed=0)
    assert not torch.allclose(fresh.q(x), agent.q(x))     # trained weights, not a fresh init
    if hasattr(trained, "q"):
        torch.testing.assert_close(agent.q(x), trained.q(x))


def _teacher_data(tmp_path, n=400):
    """A fixed random network's Q-values on random observations, saved and loaded like real data."""
    torch.manual_seed(5)
    teacher = make_agent("dqn", make_env("minatar-breakout"), {"network": "searched", "arch": "c3x8-h32-relu"},
                         seed=5)
    obs = obs_batch(n, seed=2)
    with torch.no_grad():
        q = teacher.q(obs).numpy()
    save_q_data(tmp_path / "q.npz", {"obs": obs.numpy(), "q": q, "episode": np.zeros(n, np.int32)},
                "minatar-breakout", "test", 0.0)
    return load_q_data(tmp_path / "q.npz")


class Constant(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c = torch.nn.Parameter(torch.zeros(ACTIONS))

    def forward(self, x, arch=None):
        return self.c.expand(len(x), ACTIONS)


@pytest.mark.parametrize("q_score", ["r2", "agreement"])
def test_reward_is_higher_for_a_network_that_fits_the_teacher_than_for_a_constant(tmp_path, q_score):
    data = _teacher_data(tmp_path)
    sp = space(channels=(4, 8), hidden_cap=64)     # small: fast
    arch = sp.encode({"layers": [{"op": "conv3x3", "channels": 8}, {"op": "none", "channels": 8}],
                      "pool": "none", "activation": "relu"})
    cfg = NASEnvConfig(batch_size=64, eval_batch_size=40, controller_steps=1, child_steps=200, phases=1,
                       lr_max=0.05, q_score=q_score)
    torch.manual_seed(0)
    env = NASEnv(data, sp.shared_model(**data.model_kwargs()), sp.action_space(), lambda n: [arch] * n, cfg)
    env.train_shared()
    fitted = evaluate_split(env.model, data, "valid", arch, q_score=q_score)["score"]
    const = evaluate_split(Constant(), data, "valid", q_score=q_score)["score"]
    assert fitted > const + 0.2, (fitted, const)
    assert env.score(arch) > NASEnv(data, Constant(), sp.action_space(), None, cfg).score(arch)
    wild = Constant()
    wild.c.data += 1e3           # r2 far below -1: the reward stops at the floor
    if q_score == "r2":
        assert NASEnv(data, wild, sp.action_space(), None, cfg).score(arch) == cfg.q_score_floor


def test_r2_is_one_for_the_targets_and_near_zero_for_their_train_mean(tmp_path):
    data = _teacher_data(tmp_path)

    class Lookup(torch.nn.Module):   # returns the held-out targets themselves
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, arch=None):
            return data.valid_y[:len(x)] + 0 * self.w

    assert evaluate_split(Lookup(), data, "valid", batch=10_000)["r2"] == pytest.approx(1.0)
    assert abs(evaluate_split(Constant(), data, "train")["r2"]) < 1e-6   # the train mean is 0 after standardising


def test_collect_records_the_agents_q_values_of_the_states_it_visits():
    env = make_env("minatar-breakout", training=False, seed=0)
    agent = make_agent("dqn", env, {"network": "minatar"}, seed=0)
    data = collect_q_values(agent, env, 60, epsilon=0.5, seed=0)
    assert data["obs"].shape == (60, *SHAPE) and data["q"].shape == (60, ACTIONS)
    with torch.no_grad():
        q = agent.q(torch.from_numpy(data["obs"])).numpy()
    np.testing.assert_allclose(data["q"], q, rtol=1e-5, atol=1e-6)
    assert len(np.unique(data["obs"].reshape(60, -1), axis=0)) > 10      # it moves through the game


def test_bad_q_data_files_and_arch_strings_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    np.savez(tmp_path / "nokeys.npz", obs=np.zeros((40, *SHAPE), np.uint8))
    np.savez(tmp_path / "shape.npz", obs=np.zeros((40, *SHAPE), np.uint8), q=np.zeros((39, 3), np.float32),
             env=np.str_("minatar-breakout"))
    np.savez(tmp_path / "nan.npz", obs=np.zeros((40, *SHAPE), np.uint8), q=np.full((40, 3), np.nan, np.float32),
             env=np.str_("minatar-breakout"))
    np.savez(tmp_path / "pickled.npz", obs=np.array([{"a": 1}] * 40, dtype=object), q=np.zeros((40, 3)),
             env=np.str_("x"))
    cases = [("missing.npz", "does not exist"), ("junk.npz", "not a readable .npz"), ("nokeys.npz", "lacks q, env"),
             ("shape.npz", "the same N"), ("nan.npz", "finite"), ("pickled.npz", "not a readable .npz")]
    for name, msg in cases:
        argv = ["search", "--space", "qnet", "--data", str(tmp_path / name), "--logdir", str(tmp_path / "r"),
                "--no-progress"]
        assert search_main(argv) == 2, name
        err = capsys.readouterr().err.strip()
        assert msg in err and err.count("\n") == 0, (name, err)
    np.savez(tmp_path / "ok.npz", obs=np.zeros((40, *SHAPE), np.uint8), q=np.zeros((40, 3), np.float32),
             env=np.str_("minatar-breakout"))
    assert search_main(["search", "--space", "mlp", "--data", str(tmp_path / "ok.npz")]) == 2
    assert "does not fit qvalues data" in capsys.readouterr().err
    assert search_main(["search", "--space", "qnet", "--data", "digits"]) == 2
    assert "does not fit image data" in capsys.readouterr().err
    env = make_env("minatar-breakout")
    for cfg, msg in [({"network": "searched"}, "needs agent.arch"),
                     ({"network": "searched", "arch": "c4x8-h32-relu"}, "not a conv"),
                     ({"network": "searched", "arch": "c5x8-c5x8-c5x8-h32-relu"}, "to nothing"),
                     ({"network": "minatar", "arch": "c3x16-h128-relu"}, "only with agent.network=searched")]:
        with pytest.raises(RewindError, match=msg):
            make_agent("dqn", env, cfg, seed=0)
