"""Training throughput of rewind agents against stable-baselines3 DQN, in one process and one run.

Both learners get the same preprocessed env (rewind.make_env), the same network shape,
batch size, train frequency, buffer size and a fixed exploration epsilon, and are timed
only after learning has started. Each is measured `--repeats` times, alternating, and the
median is reported, so background load hits both alike.

    python -m rewind.bench.studies.throughput --env breakout --update-every 4
    python -m rewind.bench.studies.throughput --env minatar-breakout --update-every 1 --agents dqn,ebu,sb3
    python -m rewind.bench.studies.throughput --env breakout --agents dqn,dqn:n4,dqn:n8,sb3

Agent names take options after colons: `:bf16` (bfloat16 autocast), `:nN` (N envs stepped as one
vector env, acted on in one forward pass; update_every still counts env steps over all envs), `:ov`
(agent.overlap: the learner updates on a background thread while the agent acts).

An AVX2-only CPU can be imitated on an AVX-512 one: `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`
restrict torch's kernels and oneDNN's convolutions to AVX2 code (same cores and caches, so this
isolates the instruction set, not the whole machine); the printout names the ISA torch used.
Not a suite: it times the learners' inner loop, not learning outcomes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from rewind.agents import make_agent
from rewind.envs import make_env


def _options(name: str, args) -> tuple[str, dict, int]:
    """`dqn:bf16:n4:ov` -> ("dqn", the agent config of the measurement, 4)."""
    agent, *opts = name.split(":")
    envs = [int(o[1:]) for o in opts if o.startswith("n") and o[1:].isdigit()]
    cfg = dict(precision="bf16" if "bf16" in opts else "fp32", overlap="ov" in opts, buffer_size=args.buffer,
               learning_starts=args.learning_starts, update_every=args.update_every, batch_size=32,
               eps_start=args.epsilon, eps_end=args.epsilon, optimizer="adam", lr=1e-4, target_update_every=10_000)
    return agent, cfg, envs[0] if envs else 1


def _rewind_rate(agent_name, env_name, args) -> float:
    agent_name, cfg, n_envs = _options(agent_name, args)
    if n_envs > 1:
        return _rewind_vector_rate(agent_name, cfg, n_envs, env_name, args)
    env = make_env(env_name, seed=0)
    agent = make_agent(agent_name, env, cfg, seed=0)
    obs, _ = env.reset(seed=0)
    t0, counted = None, 0
    for step in range(args.learning_starts + args.steps):
        if step == args.learning_starts:
            t0 = time.perf_counter()
        action = agent.act(obs)
        next_obs, reward, term, trunc, info = env.step(action)
        agent.observe(obs, action, reward, next_obs, term, trunc, info)
        agent.update()
        obs = env.reset()[0] if (term or trunc) else next_obs
        counted += step >= args.learning_starts
    return counted / (time.perf_counter() - t0)


def _rewind_vector_rate(agent_name, cfg, n_envs, env_name, args) -> float:
    import numpy as np

    from rewind.envs import make_vector_env
    from rewind.run.loop import per_env_infos

    env = make_vector_env(env_name, None, n_envs, seed=0)
    agent = make_agent(agent_name, make_env(env_name, seed=0), cfg, seed=0)
    obs, _ = env.reset(seed=0)
    step, t0, start = 0, None, 0
    while step < args.learning_starts + args.steps:
        if t0 is None and step >= args.learning_starts:
            t0, start = time.perf_counter(), step
        actions = agent.act_batch(obs)
        next_obs, rewards, term, trunc, info = env.step(actions)
        done = term | trunc
        real = np.stack([info["final_obs"][i] if done[i] else next_obs[i] for i in range(n_envs)])
        agent.observe_batch(obs, actions, rewards, real, term, trunc, per_env_infos(info, done))
        agent.update()
        obs = next_obs
        step += n_envs
    return (step - start) / (time.perf_counter() - t0)


def _sb3_rate(env_name, args) -> float:
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    class Clock(BaseCallback):
        def __init__(self):
            super().__init__()
            self.t0 = None

        def _on_step(self):
            if self.num_timesteps == args.learning_starts:
                self.t0 = time.perf_counter()
            return True

    env = make_env(env_name, seed=0)
    policy_kwargs = {}
    policy = "CnnPolicy"
    if env.observation_space.shape[-1] < 36:  # MinAtar: the same small CNN as rewind's MinAtarCNN
        policy_kwargs = dict(features_extractor_class=_minatar_extractor(), net_arch=[128])
    model = DQN(policy, env, buffer_size=args.buffer, learning_starts=args.learning_starts,
                train_freq=args.update_every, gradient_steps=1, batch_size=32, target_update_interval=10_000,
                exploration_initial_eps=args.epsilon, exploration_final_eps=args.epsilon, learning_rate=1e-4,
                policy_kwargs=policy_kwargs, seed=0, verbose=0, device="cpu")
    clock = Clock()
    model.learn(total_timesteps=args.learning_starts + args.steps, callback=clock)
    return args.steps / (time.perf_counter() - clock.t0)


def _minatar_extractor():
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from torch import nn

    class MinAtarExtractor(BaseFeaturesExtractor):
        def __init__(self, observation_space):
            c, h, w = observation_space.shape
            super().__init__(observation_space, features_dim=16 * (h - 2) * (w - 2))
            self.net = nn.Sequential(nn.Conv2d(c, 16, 3), nn.ReLU(), nn.Flatten())

        def forward(self, obs):
            return self.net(obs.float())

    return MinAtarExtractor


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="breakout")
    p.add_argument("--agents", default="dqn,sb3", help="comma list of rewind agent names with options "
                   "(NAME:bf16 bfloat16 autocast, NAME:nN N vector envs, NAME:ov overlapped learner) and/or sb3")
    p.add_argument("--steps", type=int, default=3000, help="timed env steps per measurement (after learning starts)")
    p.add_argument("--learning-starts", type=int, default=1000)
    p.add_argument("--update-every", type=int, default=4, help="env steps per gradient update, for all learners")
    p.add_argument("--buffer", type=int, default=100_000)
    p.add_argument("--epsilon", type=float, default=0.1, help="fixed exploration epsilon for all learners")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = args.agents.split(",")
    rates: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.repeats):
        for name in names:
            rate = _sb3_rate(args.env, args) if name == "sb3" else _rewind_rate(name, args.env, args)
            rates[name].append(rate)
            print(f"repeat {r}: {name:6s} {rate:8.1f} steps/s", flush=True)
    med = {n: statistics.median(v) for n, v in rates.items()}
    ref = med.get("sb3")
    from rewind.bench.store import machine
    m = machine()
    isa = torch.backends.cpu.get_cpu_capability()
    print(f"\nCPU: {m['cpu']} ({m['cores']} cores; {' '.join(m['flags']) or 'no AVX2/AVX-512/AMX'}); "
          f"torch kernels: {isa}, oneDNN ISA cap: {os.environ.get('ONEDNN_MAX_CPU_ISA', 'none')}")
    print(f"{args.env}, update every {args.update_every}, batch 32, eps {args.epsilon}, "
          f"{args.steps} timed steps x {args.repeats}, torch threads {args.threads}")
    print("| learner | steps/s (median) | vs sb3 |\n|---|---|---|")
    for n in names:
        ratio = f"{med[n] / ref:.2f}x" if ref else "-"
        print(f"| {n} | {med[n]:.1f} | {ratio} |")
    if args.out:
        from rewind.files import atomic_write_json
        from rewind.bench.store import code_version, machine
        atomic_write_json(args.out, {"args": vars(args), "rates": rates, "median": med, "machine": machine(),
                                     "torch_cpu_capability": isa, "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
                                     **code_version(), "torch": torch.__version__})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
