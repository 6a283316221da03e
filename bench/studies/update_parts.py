"""Where a Breakout training step's time goes: rewind DQN/EBU vs SB3 DQN, per part (one gradient
update, one greedy action, one env step), medians over repeated calls after a 1,500-step fill.

Not a suite: it times parts of the learners, not learning outcomes. Compare ISAs by running it
twice, the second time under `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`:

    python -m rewind.bench.studies.update_parts dqn ebu sb3
"""
import os, sys, time, statistics
import numpy as np, torch
torch.set_num_threads(2)
from rewind.agents import make_agent
from rewind.envs import make_env

N_FILL, N_UPD = 1500, 150

def med(f, n):
    ts = []
    for _ in range(n):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return 1e3 * statistics.median(ts), 1e3 * statistics.mean(ts)

def ours(name):
    env = make_env("breakout", seed=0)
    cfg = dict(buffer_size=10000, learning_starts=10**9, update_every=4, batch_size=32, eps_start=0.1, eps_end=0.1,
               optimizer="adam", lr=1e-4, target_update_every=10000)
    agent = make_agent(name, env, cfg, seed=0)
    obs, _ = env.reset(seed=0)
    te = []
    for step in range(N_FILL):
        a = agent.act(obs)
        t = time.perf_counter(); nobs, r, term, trunc, info = env.step(a); te.append(time.perf_counter() - t)
        agent.observe(obs, a, r, nobs, term, trunc, info)
        obs = env.reset()[0] if term or trunc else nobs
    prep = med(agent.prepare_batch, N_UPD)
    b = agent.prepare_batch()
    apply = med(lambda: agent.apply_batch(b), N_UPD)
    full = med(agent.gradient_update, N_UPD)
    act = med(lambda: agent.greedy_action(obs), 300)
    print(f"{name}: prepare {prep[0]:.2f} ms, apply {apply[0]:.2f}, gradient_update {full[0]:.2f} (mean {full[1]:.2f}), "
          f"greedy act {act[0]:.2f}, env step {1e3*statistics.median(te):.2f}", flush=True)

def sb3():
    from stable_baselines3 import DQN
    env = make_env("breakout", seed=0)
    model = DQN("CnnPolicy", env, buffer_size=10000, learning_starts=N_FILL + 10, train_freq=4, gradient_steps=1,
                batch_size=32, target_update_interval=10000, exploration_initial_eps=0.1, exploration_final_eps=0.1,
                learning_rate=1e-4, seed=0, verbose=0, device="cpu")
    model.learn(total_timesteps=N_FILL)
    upd = med(lambda: model.train(gradient_steps=1, batch_size=32), N_UPD)
    samp = med(lambda: model.replay_buffer.sample(32), N_UPD)
    obs = model.env.reset()
    act = med(lambda: model.policy.predict(obs, deterministic=True), 300)
    print(f"sb3: train(1) {upd[0]:.2f} ms (mean {upd[1]:.2f}), of which sample {samp[0]:.2f}, predict {act[0]:.2f}", flush=True)

print("ISA:", torch.backends.cpu.get_cpu_capability(), "| env:", os.environ.get("ATEN_CPU_CAPABILITY"), os.environ.get("ONEDNN_MAX_CPU_ISA"))
for part in sys.argv[1:] or ["dqn", "ebu", "sb3"]:
    sb3() if part == "sb3" else ours(part)
