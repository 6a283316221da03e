"""DQN: targets (plain and double), DeepMind RMSProp, epsilon schedule, update cadence, learning."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rewind.agents.dqn import DQNAgent, DQNConfig
from rewind.run.experiment import resolve, run_experiment
from rewind.run.loop import evaluate
from rewind.agents.optim import DeepMindRMSprop
from rewind.config import from_dict

OBS = gym.spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32)


def linear_agent(**cfg):
    """Q(s) = W s with hidden=(): a Q-network whose values we set by hand."""
    config = from_dict(DQNConfig, {"network": "mlp", "hidden": [], "device": "cpu", **cfg}, "agent")
    return DQNAgent(OBS, gym.spaces.Discrete(3), config, seed=0)


def set_linear(net, weight):
    (layer,) = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        layer.bias.zero_()


def test_double_and_plain_targets_on_a_hand_made_batch():
    # next states are one-hot; column j of W is Q(e_j, .)
    online = [[1.0, 0.0, 7.0],   # action 0
              [5.0, 2.0, 1.0],   # action 1
              [2.0, 3.0, 0.0]]   # action 2
    target = [[3.0, 6.0, 2.0],
              [0.0, 1.0, 9.0],
              [4.0, 5.0, 8.0]]
    next_obs = torch.eye(3)
    rewards = torch.tensor([1.0, -1.0, 0.5])
    terminated = torch.tensor([False, False, True])
    gamma = 0.9
    plain, double = linear_agent(gamma=gamma), linear_agent(gamma=gamma, double=True)
    for agent in (plain, double):
        set_linear(agent.q, online)
        set_linear(agent.q_target, target)
    # plain: r + gamma * max_a Q_target(s', a); double: r + gamma * Q_target(s', argmax_a Q_online(s', a))
    want_plain = [1.0 + gamma * 4.0, -1.0 + gamma * 6.0, 0.5]
    want_double = [1.0 + gamma * 0.0, -1.0 + gamma * 5.0, 0.5]  # argmax online: a=1 then a=2
    with torch.no_grad():
        got_plain = plain.td_targets(rewards, next_obs, terminated)
        got_double = double.td_targets(rewards, next_obs, terminated)
    np.testing.assert_allclose(got_plain.numpy(), want_plain, rtol=1e-6)
    np.testing.assert_allclose(got_double.numpy(), want_double, rtol=1e-6)


def test_gradient_step_minimises_huber_loss_towards_the_target():
    agent = linear_agent(optimizer="adam", lr=0.05, huber_delta=1.0)
    obs = torch.eye(3)
    actions = torch.tensor([0, 1, 2])
    targets = torch.tensor([3.0, -2.0, 0.5])
    q0 = agent.q(obs).gather(1, actions.view(-1, 1)).squeeze(1).detach()
    first = agent.gradient_step(obs, actions, targets)
    want = torch.nn.functional.huber_loss(q0, targets, delta=1.0).item()
    assert first["loss"] == pytest.approx(want, rel=1e-5)
    for _ in range(400):
        last = agent.gradient_step(obs, actions, targets)
    assert last["loss"] < 1e-3 < first["loss"]
    q = agent.q(obs).gather(1, actions.view(-1, 1)).squeeze(1).detach()
    np.testing.assert_allclose(q.numpy(), targets.numpy(), atol=0.05)


def test_deepmind_rmsprop_step_equals_the_formula():
    lr, rho, eps = 0.1, 0.9, 0.01
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    opt = DeepMindRMSprop([p], lr=lr, alpha=rho, eps=eps)
    grads = [torch.tensor([0.3, -1.0, 2.0]), torch.tensor([-0.5, 0.2, 1.0]), torch.tensor([0.1, 0.1, -3.0])]
    theta, g_avg, sq_avg = p.detach().clone().double(), torch.zeros(3).double(), torch.zeros(3).double()
    for g in grads:
        p.grad = g.clone()
        opt.step()
        g = g.double()
        g_avg = rho * g_avg + (1 - rho) * g
        sq_avg = rho * sq_avg + (1 - rho) * g * g
        theta = theta - lr * g / torch.sqrt(sq_avg - g_avg ** 2 + eps)  # eps inside the root
        np.testing.assert_allclose(p.detach().numpy(), theta.numpy(), rtol=1e-5)
    # torch's centered RMSprop puts eps outside the root: a different optimizer with eps = 0.01
    q = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    torch_opt = torch.optim.RMSprop([q], lr=lr, alpha=rho, eps=eps, centered=True)
    for g in grads:
        q.grad = g.clone()
        torch_opt.step()
    assert not np.allclose(q.detach().numpy(), theta.numpy(), rtol=1e-3)


def test_epsilon_schedule_endpoints_and_acting():
    agent = linear_agent(eps_start=1.0, eps_end=0.1, eps_decay_steps=1000)
    for steps, want in [(0, 1.0), (500, 0.55), (1000, 0.1), (5000, 0.1)]:
        agent.steps = steps
        assert agent.epsilon() == pytest.approx(want)
    set_linear(agent.q, [[0, 0, 0], [0, 0, 1], [0, 0, 0]])  # action 1 is greedy for e_2
    s = np.array([0, 0, 1], dtype=np.float32)
    agent.steps = 0  # epsilon 1: uniform
    counts = np.bincount([agent.act(s) for _ in range(3000)], minlength=3)
    assert (np.abs(counts / 3000 - 1 / 3) < 0.04).all()
    assert all(agent.act(s, explore=False) == 1 for _ in range(50))
    agent.steps = 1000  # epsilon 0.1: greedy 90% + 1/3 of 10%
    share = np.mean([agent.act(s) == 1 for _ in range(3000)])
    assert abs(share - (0.9 + 0.1 / 3)) < 0.025


def test_updates_start_after_learning_starts_every_update_every_and_target_copies_on_schedule():
    env = gym.make("CartPole-v1")
    cfg = from_dict(DQNConfig, {"network": "mlp", "hidden": [16], "learning_starts": 50, "update_every": 4,
                                "target_update_every": 5, "batch_size": 8, "device": "cpu", "lr": 0.01}, "agent")
    agent = DQNAgent(env.observation_space, env.action_space, cfg, seed=0)
    obs, _ = env.reset(seed=0)
    snapshots = []
    for step in range(1, 251):
        a = agent.act(obs)
        nxt, r, term, trunc, info = env.step(a)
        agent.observe(obs, a, r, nxt, term, trunc, info)
        metrics = agent.update()
        due = step >= 50 and step % 4 == 0
        assert bool(metrics) == due
        if due:
            assert set(metrics) >= {"loss", "q_mean"}
            online = torch.cat([p.flatten() for p in agent.q.parameters()])
            target = torch.cat([p.flatten() for p in agent.q_target.parameters()])
            snapshots.append((agent.updates, torch.equal(online, target)))
        obs = env.reset()[0] if (term or trunc) else nxt
    assert agent.updates == len([s for s in range(50, 251) if s % 4 == 0])
    # the target equals the online net exactly after every 5th update, and lags behind otherwise
    assert [u for u, same in snapshots if same] == [u for u, _ in snapshots if u % 5 == 0]


def test_short_cartpole_run_with_the_classic_preset_beats_random():
    torch.set_num_threads(1)
    exp = resolve("dqn", "CartPole-v1", None, {"run": {"eval_every": 0, "eval_episodes": 5}}, steps=4000, seed=0)
    assert exp.agent_config.learning_starts == 1000  # the dqn_classic preset, not the defaults
    summary = run_experiment(exp, None, progress=False)
    trained = summary["last_eval"]["return_mean"]
    env = gym.make("CartPole-v1")
    untrained = DQNAgent(env.observation_space, env.action_space, exp.agent_config, seed=0)
    random = evaluate(untrained, env, episodes=20, epsilon=1.0, max_steps=500, seed=7)["return_mean"]
    assert random < 40
    assert trained > max(100.0, 4 * random)


def test_bf16_precision_autocasts_the_learner_but_stays_close_to_fp32():
    """precision=bf16 must really change the arithmetic (else the option is a no-op) yet give nearly the same targets."""
    import gymnasium as gym
    import numpy as np
    import torch

    import pytest

    from rewind.agents.device import native_bf16
    from rewind.agents.dqn import DQNAgent, DQNConfig

    if not native_bf16(torch.device("cpu")):
        pytest.skip("this CPU has no native bf16: rewind refuses precision=bf16 here")
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    agents = [DQNAgent(space, gym.spaces.Discrete(6), DQNConfig(network="nature", buffer_size=100, precision=p), seed=3)
              for p in ("fp32", "bf16")]
    next_obs = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (16, 4, 84, 84), dtype=np.uint8))
    rewards, terminated = torch.ones(16), torch.zeros(16, dtype=torch.bool)
    with torch.no_grad():
        y32, y16 = (a.td_targets(rewards, next_obs, terminated) for a in agents)
    assert y16.dtype == torch.float32
    assert not torch.equal(y32, y16)
    assert torch.allclose(y32, y16, atol=0.05, rtol=0.02)


def test_bf16_is_refused_with_one_line_where_the_cpu_would_emulate_it():
    import gymnasium as gym
    import numpy as np
    import pytest
    import torch

    from rewind.agents.device import native_bf16
    from rewind.agents.dqn import DQNAgent, DQNConfig
    from rewind.errors import RewindError

    cpu = torch.device("cpu")
    assert native_bf16(cpu, {"avx2", "avx512f", "avx512_bf16"}) or native_bf16(cpu, {"bf16"})
    assert not native_bf16(cpu, {"avx2", "avx512f", "avx512bw"})   # AVX-512 without BF16: emulated
    if native_bf16(cpu):
        pytest.skip("this CPU has native bf16")
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    with pytest.raises(RewindError, match="precision=bf16.*fp32"):
        DQNAgent(space, gym.spaces.Discrete(6), DQNConfig(network="nature", buffer_size=100, precision="bf16"))
