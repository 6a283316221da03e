"""Net2Net: widen/deepen keep the function; optimizer state follows; a running agent grows, resumes, evaluates."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rewind.agents import make_agent
from rewind.run.checkpoint import load_checkpoint
from rewind.run.experiment import load_for_eval, resolve, run_experiment
from rewind.run.loop import RunConfig, train
from rewind.agents.net2net import (count_params, deepen_after, deepen_network, remap_optimizer, widen_enas_macro,
                                   widen_enas_mlp, widen_network, widen_pair)
from rewind.agents.networks import MLP, MinAtarCNN, NatureCNN
from rewind.agents.optim import make_optimizer
from rewind.cli import main
from rewind.config import parse_set
from rewind.errors import RewindError

TOL = 1e-5


def outputs_kept(net, x, grow):
    """Max |f(x) - f'(x)| over a batch, with the net in eval mode (BatchNorm running statistics)."""
    net.eval()
    with torch.no_grad():
        before = net(x).clone()
        grow(net)
        after = net(x)
    assert after.shape == before.shape
    return float((after - before).abs().max())


def randomize_norms(net):
    """BatchNorms with non-trivial parameters and running statistics (fresh ones are the identity)."""
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            with torch.no_grad():
                n = m.num_features
                if m.weight is not None:
                    m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=g))
                if m.running_mean is not None:
                    m.running_mean.copy_(torch.randn(n, generator=g))
                    m.running_var.copy_(torch.rand(n, generator=g) + 0.5)


# ---------------------------------------------------------------------------- function preservation
def test_widen_pair_linear_keeps_outputs_and_replicates_units(one_torch_thread):
    torch.manual_seed(0)
    a, b = nn.Linear(6, 5), nn.Linear(5, 3)
    net = nn.Sequential(a, nn.Tanh(), b)
    old_w = a.weight.detach().clone()
    diff = outputs_kept(net, torch.randn(64, 6), lambda n: widen_pair(a, b, 12, np.random.default_rng(0)))
    assert diff < TOL
    assert a.weight.shape == (12, 6) and b.weight.shape == (3, 12) and a.out_features == b.in_features == 12
    assert torch.equal(a.weight[:5], old_w)   # g: the old units first
    rows = {tuple(r.tolist()) for r in old_w}
    assert all(tuple(r.tolist()) in rows for r in a.weight[5:])   # new units copy old ones
    # outgoing columns of a replicated unit sum to the old column
    assert not torch.allclose(b.weight[:, :5], nn.Linear(5, 3).weight)


def test_widen_pair_conv_with_batchnorm_and_conv_flatten_linear_keep_outputs(one_torch_thread):
    torch.manual_seed(0)
    c1, bn, c2, fc = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 5, 3), nn.Linear(5 * 6 * 6, 2)
    net = nn.Sequential(c1, bn, nn.ReLU(), c2, nn.ReLU(), nn.Flatten(), fc)
    randomize_norms(net)
    x = torch.randn(16, 3, 8, 8)
    rng = np.random.default_rng(1)
    assert outputs_kept(net, x, lambda n: widen_pair(c1, c2, 9, rng, norms=[bn])) < TOL
    assert outputs_kept(net, x, lambda n: widen_pair(c2, fc, 11, rng)) < TOL
    assert c1.out_channels == bn.num_features == c2.in_channels == 9
    assert c2.out_channels == 11 and fc.in_features == 11 * 36 and bn.running_mean.shape == (9,)


def test_deepen_after_linear_and_conv_keeps_outputs(one_torch_thread):
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 2))
    assert outputs_kept(mlp, torch.randn(32, 5), lambda n: deepen_after(n, 0)) < TOL
    assert [type(m) for m in mlp] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    cnn = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    assert outputs_kept(cnn, torch.randn(8, 2, 6, 6), lambda n: deepen_after(n, 1, kernel_size=3)) < TOL
    assert isinstance(cnn[2], nn.Conv2d) and cnn[2].padding == (1, 1) and isinstance(cnn[3], nn.ReLU)
    # a widened-then-deepened-then-widened stack still computes the same function
    assert outputs_kept(cnn, torch.randn(8, 2, 6, 6), lambda n: widen_network(n, 2.0, np.random.default_rng(2))) < TOL
    assert cnn[2].in_channels == cnn[2].out_channels == 8


@pytest.mark.parametrize("make,shape", [
    (lambda: MLP(8, 3, (16, 16)), (40, 8)),
    (lambda: MinAtarCNN(4, 3, (10, 10)), (20, 4, 10, 10)),
    (lambda: NatureCNN(4, 3).to(memory_format=torch.channels_last), (4, 4, 84, 84)),
], ids=["mlp", "minatar", "nature"])
def test_rewinds_q_networks_widen_and_deepen_with_the_same_outputs(one_torch_thread, make, shape):
    torch.manual_seed(0)
    net = make()
    x = torch.randint(0, 256, shape, dtype=torch.uint8) if shape[-1] == 84 else torch.randn(shape)
    n0 = count_params(net)
    assert outputs_kept(net, x, lambda n: widen_network(n, 2.0, np.random.default_rng(0))) < TOL
    n1 = count_params(net)
    assert n1 > 2.5 * n0   # hidden layers doubled on both sides
    assert outputs_kept(net, x, lambda n: deepen_network(n, 2)) < TOL
    assert count_params(net) > n1
    last = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    assert last.out_features == 3   # the output layer keeps n_actions


def test_noise_breaks_symmetry_only_when_asked(one_torch_thread):
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    exact = MLP(8, 3, (16, 16))
    noisy = copy.deepcopy(exact)
    assert outputs_kept(exact, x, lambda n: widen_network(n, 2.0, np.random.default_rng(0))) < TOL
    diff = outputs_kept(noisy, x, lambda n: widen_network(n, 2.0, np.random.default_rng(0), noise=0.05))
    assert 0 < diff < 0.5


def test_enas_standalone_children_widen_with_the_same_outputs(one_torch_thread):
    from rewind.controllers.search_spaces import MacroSpace, MLPSpace

    space = MLPSpace(layers=3, widths=(8, 16))
    arch = space.encode([{"width": 16, "activation": "tanh"}, {"width": 8, "activation": "relu"},
                         {"width": 16, "activation": "sigmoid"}])
    torch.manual_seed(0)
    net = space.build(arch, in_shape=(6,), n_classes=4)
    randomize_norms(net)
    assert outputs_kept(net, torch.randn(32, 6), lambda n: widen_enas_mlp(n, 1.5, np.random.default_rng(0))) < TOL
    assert [layer["width"] for layer in net.space.decode(net.fixed)] == [24, 12, 24]
    macro = MacroSpace(layers=4, channels=6, pools=1)
    arch = macro.encode([{"op": "conv3x3", "skip": []}, {"op": "sep5x5", "skip": [0]},
                         {"op": "maxpool", "skip": [1]}, {"op": "conv5x5", "skip": [0, 2]}])
    net = macro.build(arch, in_shape=(3, 12, 12), n_classes=4)
    randomize_norms(net)
    x = torch.randn(4, 3, 12, 12)
    assert outputs_kept(net, x, lambda n: widen_enas_macro(n, 2.0, np.random.default_rng(0))) < TOL
    assert net.stem[0].out_channels == 12 and net.head.in_features == 12



# ---------------------------------------------------------------------------- bad input
def test_bad_growth_requests_are_one_line_rewind_errors(one_torch_thread):
    rng = np.random.default_rng(0)
    cases = [
        (lambda: widen_pair(nn.Linear(4, 8), nn.Linear(8, 2), 5, rng), "only adds units"),
        (lambda: widen_network(MLP(4, 2, (8,)), 0.5, rng), "widen factor must be >= 1"),
        (lambda: deepen_after(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), 0), "not followed by a ReLU"),
        (lambda: deepen_after(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), 2), "not followed by a ReLU"),
        (lambda: widen_pair(nn.LSTM(4, 8), nn.Linear(8, 2), 10, rng), "unsupported layer type LSTM"),
        (lambda: widen_network(nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)), 2.0, rng),
         "unsupported layer type Conv1d"),
        (lambda: widen_pair(nn.Linear(4, 3), nn.Conv2d(3, 2, 1), 6, rng), "Linear -> Conv2d"),
    ]
    for call, match in cases:
        with pytest.raises(RewindError, match=match) as info:
            call()
        assert "\n" not in str(info.value)


def test_cli_and_loop_reject_bad_growth_settings_before_the_run(tmp_path, capsys, one_torch_thread):
    base = ["train", "--env", "CartPole-v1", "--steps", "100", "--no-progress", "--logdir", str(tmp_path / "r")]
    assert main(base + ["--grow-at", "50", "--widen", "0.5"]) == 2
    assert "run.widen must be >= 1" in capsys.readouterr().err
    assert main(base + ["--widen", "2"]) == 2          # widen without --grow-at
    assert "run.grow_at" in capsys.readouterr().err
    assert main(base + ["--grow-at", "500", "--widen", "2"]) == 2
    assert "after the end of the run" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    env = gym.make("FrozenLake-v1")
    agent = make_agent("tabular-q", env)
    with pytest.raises(RewindError, match="cannot grow"):
        train(agent, env, RunConfig(steps=10, grow_at=5, widen=2.0, progress=False))


# ---------------------------------------------------------------------------- optimizer state
@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "rmsprop-torch"])
def test_mapped_optimizer_state_moves_replicas_like_their_source(one_torch_thread, monkeypatch, optimizer):
    """After growth, one step moves each replica's incoming weights exactly as its source unit moves in
    the old network: the replica's gradient is grad/count, so its moments must be scaled the same way."""
    from rewind.agents import net2net

    torch.manual_seed(0)
    old = MLP(5, 2, (6, 6))
    x, y = torch.randn(64, 5), torch.randn(64, 2)
    opt = make_optimizer(optimizer, old.parameters(), lr=1e-2, eps=1e-12)

    def step(net, o):
        o.zero_grad()
        nn.functional.mse_loss(net(x), y).backward()
        o.step()

    for _ in range(5):
        step(old, opt)

    def grown(powers):
        monkeypatch.setattr(net2net, "STATE_POWERS", powers)
        new, its_opt = copy.deepcopy((old, opt))    # one deepcopy: the copied state is keyed by the copied params
        growth = widen_network(new, 2.0, np.random.default_rng(3))
        new_opt = make_optimizer(optimizer, new.parameters(), lr=1e-2, eps=1e-12)
        remap_optimizer(its_opt, new_opt, growth)
        step(new, new_opt)
        return new, growth.changes[id(new.net[1].weight)].maps[0].index

    right, g = grown(dict(net2net.STATE_POWERS))
    copied, _ = grown({k: 0 for k in net2net.STATE_POWERS})   # moments copied unscaled: the wrong mapping
    step(old, opt)
    torch.testing.assert_close(right.net[1].weight, old.net[1].weight[g], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(right.net[1].bias, old.net[1].bias[g], rtol=1e-4, atol=1e-6)
    replicated = torch.bincount(g)[g] > 1
    assert not torch.allclose(copied.net[1].weight[replicated], old.net[1].weight[g][replicated], rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------- a running agent
SETTINGS = ["agent.hidden=[16,16]", "agent.learning_starts=100", "agent.batch_size=16", "agent.update_every=2",
            "agent.gradient_steps=1", "agent.target_update_every=50", "agent.eps_decay_steps=300",
            "agent.buffer_size=2000", "run.eval_every=0", "run.eval_episodes=2", "run.eval_max_steps=100",
            "run.checkpoint_every=0", "run.log_every=100", "run.torch_threads=1"]


def cartpole_agent(name, **extra):
    env = gym.make("CartPole-v1")
    cfg = {"hidden": [16, 16], "learning_starts": 50, "batch_size": 16, "update_every": 1,
           "target_update_every": 20, "buffer_size": 1000, "device": "cpu", **extra}
    if name == "ebu-adaptive":
        cfg["betas"] = [0.25, 1.0]
    agent = make_agent(name, env, cfg, seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(300):
        a = agent.act(obs)
        nxt, r, term, trunc, info = env.step(a)
        agent.observe(obs, a, r, nxt, term, trunc, info)
        agent.update()
        obs = env.reset()[0] if term or trunc else nxt
    return agent


def all_q(agent, states):
    nets = getattr(agent, "learners", [agent.q]) + [agent.q_target]
    with torch.no_grad():
        return [net(states).clone() for net in nets]


@pytest.mark.parametrize("name", ["dqn", "ebu", "ebu-adaptive"])
def test_growing_a_running_agent_keeps_its_greedy_actions(one_torch_thread, name):
    agent = cartpole_agent(name, optimizer="adam")
    assert agent.updates > 100
    states = torch.as_tensor(np.random.default_rng(0).normal(0, 3.0, (256, 4)), dtype=torch.float32)
    before = all_q(agent, states)
    greedy = [agent.greedy_action(s) for s in states.numpy()]
    n0 = count_params(agent.q)
    metrics = agent.grow(widen=2.0, deepen=1)
    after = all_q(agent, states)
    assert metrics["params"] == count_params(agent.q) > 3 * n0
    for b, a in zip(before, after):      # online, target (and every learner) keep their function
        assert float((a - b).abs().max()) < TOL
    assert [agent.greedy_action(s) for s in states.numpy()] == greedy
    assert len(set(greedy)) == 2          # both actions occur: the check is not trivial
    # the optimizer holds exactly the grown parameters, with the moments carried over, and learning goes on
    assert {id(p) for g in agent.optimizer.param_groups for p in g["params"]} == {id(p) for p in agent.q.parameters()}
    first = agent.q.net[1].weight
    assert agent.optimizer.state[first]["exp_avg"].shape == first.shape
    agent.update()
    agent.sync_target()
    assert agent.growth == [["widen", 2.0, 0.0], ["deepen", 1, 0.0]]


def test_online_and_target_networks_grow_with_the_same_mapping(one_torch_thread):
    agent = cartpole_agent("dqn", optimizer="adam")
    agent.sync_target()
    agent.grow(widen=2.0, deepen=1, noise=0.01)   # noise too: both networks draw the same
    q, target = agent.q.state_dict(), agent.q_target.state_dict()
    assert q.keys() == target.keys()
    assert all(torch.equal(q[k], target[k]) for k in q)
    assert not any(p.requires_grad for p in agent.q_target.parameters())


def test_grown_state_dict_replays_the_growth_in_a_fresh_agent(one_torch_thread):
    agent = cartpole_agent("dqn", optimizer="rmsprop")
    agent.grow(widen=1.5)
    fresh = make_agent("dqn", gym.make("CartPole-v1"), {"hidden": [16, 16], "optimizer": "rmsprop", "device": "cpu"})
    fresh.load_state_dict(agent.state_dict())
    states = torch.randn(64, 4)
    for a, b in zip(all_q(agent, states), all_q(fresh, states)):
        assert torch.equal(a, b)
    with pytest.raises(RewindError, match="grown by"):
        fresh.load_state_dict(cartpole_agent("dqn", optimizer="rmsprop").state_dict())


def run_cartpole(logdir, steps, grow_at, resume=False):
    overrides = parse_set(SETTINGS + [f"run.grow_at={grow_at}", "run.widen=2"])
    exp = resolve("dqn", "CartPole-v1", None, overrides, steps=steps, seed=0)
    return run_experiment(exp, logdir, resume=resume, progress=False)


def test_resume_after_growth_does_not_grow_twice_and_eval_loads_the_grown_net(tmp_path, one_torch_thread):
    logdir = tmp_path / "run"
    # stop before the growth step, resume through it, then resume past it
    plain = resolve("dqn", "CartPole-v1", None, parse_set(SETTINGS), steps=200, seed=0)
    run_experiment(plain, logdir, progress=False)
    assert load_checkpoint(logdir)["agent"]["growth"] == []
    run_cartpole(logdir, 400, grow_at=300, resume=True)
    state = load_checkpoint(logdir)
    assert state["agent"]["growth"] == [["widen", 2.0, 0.0]]
    assert state["agent"]["q"]["net.1.weight"].shape == (32, 4)
    run_cartpole(logdir, 500, grow_at=300, resume=True)
    state = load_checkpoint(logdir)
    assert state["loop"]["step"] == 500
    assert state["agent"]["growth"] == [["widen", 2.0, 0.0]]          # not grown twice
    assert state["agent"]["q"]["net.1.weight"].shape == (32, 4)
    agent, env, meta = load_for_eval(logdir / "checkpoint.pt")
    assert agent.q.net[1].weight.shape == (32, 4) and meta["agent_config"]["width"] == 1.0
    assert torch.equal(agent.q.net[1].weight, state["agent"]["q"]["net.1.weight"])
    assert main(["eval", str(logdir), "--episodes", "2", "--max-steps", "50"]) == 0
