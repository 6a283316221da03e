"""Where a Breakout training step's time goes: rewind DQN/EBU vs SB3 DQN, per part (one gradient
update, one greedy action, one env step), medians over repeated calls after a 1,500-step fill.

Not a suite: it times parts of the learners, not learning outcomes. Compare ISAs by running it
twice, the second time under `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`:

    python -m rewind.bench.studies.update_parts dqn ebu sb3
"""
import os
import statistics
import time

import torch

from rewind.agents import make_agent
from rewind.envs import make_env

N_FILL, N_UPD = 1500, 150
CONFIG = dict(buffer_size=10_000, update_every=4, batch_size=32, eps_start=0.1, eps_end=0.1, optimizer="adam",
              lr=1e-4, target_update_every=10_000)


def timed(f, n: int) -> float:
    """Median milliseconds of n calls."""
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return 1e3 * statistics.median(ts)


def ours(name: str) -> None:
    env = make_env("breakout", seed=0)
    agent = make_agent(name, env, {**CONFIG, "learning_starts": 10**9}, seed=0)
    obs, _ = env.reset(seed=0)
    env_ms = []
    for _ in range(N_FILL):
        a = agent.act(obs)
        t = time.perf_counter()
        nobs, r, term, trunc, info = env.step(a)
        env_ms.append(1e3 * (time.perf_counter() - t))
        agent.observe(obs, a, r, nobs, term, trunc, info)
        obs = env.reset()[0] if term or trunc else nobs
    prepare = timed(agent.prepare_batch, N_UPD)
    update = timed(agent.gradient_update, N_UPD)
    act = timed(lambda: agent.greedy_action(obs), 300)
    print(f"{name}: gradient update {update:.2f} ms (of which minibatch {prepare:.2f}), greedy action {act:.2f}, "
          f"env step {statistics.median(env_ms):.2f}", flush=True)


def sb3() -> None:
    from stable_baselines3 import DQN
    model = DQN("CnnPolicy", make_env("breakout", seed=0), buffer_size=CONFIG["buffer_size"],
                learning_starts=N_FILL + 10, train_freq=4, gradient_steps=1, batch_size=32,
                target_update_interval=10_000, exploration_initial_eps=0.1, exploration_final_eps=0.1,
                learning_rate=1e-4, seed=0, verbose=0, device="cpu")
    model.learn(total_timesteps=N_FILL)   # fills the replay; no update yet (learning_starts)
    update = timed(lambda: model.train(gradient_steps=1, batch_size=32), N_UPD)
    sample = timed(lambda: model.replay_buffer.sample(32), N_UPD)
    obs = model.env.reset()
    act = timed(lambda: model.policy.predict(obs, deterministic=True), 300)
    print(f"sb3: gradient update {update:.2f} ms (of which minibatch {sample:.2f}), greedy action {act:.2f}",
          flush=True)


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parts", nargs="*", default=["dqn", "ebu", "sb3"], help="rewind agent names and/or sb3")
    args = ap.parse_args(argv)
    print("ISA:", torch.backends.cpu.get_cpu_capability(), "| env:", os.environ.get("ATEN_CPU_CAPABILITY"),
          os.environ.get("ONEDNN_MAX_CPU_ISA"))
    for part in args.parts:
        sb3() if part == "sb3" else ours(part)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
