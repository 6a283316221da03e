"""The one run loop: drives any Agent in any gymnasium env.

It owns what every run needs and no algorithm should rewrite: seeding, a progress bar,
TensorBoard scalars, periodic evaluation with a fixed protocol, atomic checkpoints and
exact resume (agent, replay, env state and every RNG are saved together).
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import signal
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from rewind.agents.base import Agent
from rewind.run.runlog import RunLogger
from rewind.files import atomic_write_json, remove_stale_tmp
from rewind.run.checkpoint import load_checkpoint, save_checkpoint
from rewind.envs import find_wrapper
from rewind.envs.state import env_state, set_env_state
from rewind.errors import RewindError, require
from rewind.run.video import recording, videos_in


MAX_STEPS = 10**12   # env steps of one run; far beyond any real run, it catches run.steps=1e99


@dataclasses.dataclass
class RunConfig:
    steps: int = 100_000            # total env (agent) steps of the run
    eval_every: int = 10_000        # env steps between evaluations; 0 = only at the end
    eval_episodes: int = 10
    eval_epsilon: float = 0.05      # the evaluation protocol's epsilon (DQN/EBU papers: 0.05)
    eval_max_steps: int = 27_000    # agent steps per evaluation episode (4,500 in the EBU paper)
    checkpoint_every: int = 50_000  # env steps between checkpoints; 0 = only at the end
    save_buffer: bool = True        # put the replay memory in checkpoints (exact resume; large for Atari)
    log_every: int = 1_000          # env steps between TensorBoard writes of training scalars
    progress: bool = True           # tqdm progress bar
    torch_threads: int = 0          # 0 keeps torch's default
    grow_at: int = 0                # Net2Net: grow the agent's networks at this env step (0: never)
    widen: float = 1.0              # ... widening every hidden layer by this factor (>= 1)
    deepen: int = 0                 # ... and adding this many identity layers after the last hidden one
    grow_noise: float = 0.0         # ... with this relative noise on new units (0: function kept exactly)
    num_envs: int = 1               # training envs stepped together (a gymnasium SyncVectorEnv); the agent
                                    # acts on all in one forward pass; steps and every *_every count env
                                    # steps over all envs
    video_every: int = 0            # env steps between MP4s of the evaluation episodes (0: none; needs rewind-rl[video])
    track: str = ""                 # Weights & Biases project to mirror the logs to ("": off; needs rewind-rl[wandb])

    def validate(self):
        if not 1 <= self.steps <= MAX_STEPS:
            raise RewindError(f"run.steps must be in [1, {MAX_STEPS:.0e}], got {self.steps}")
        if not 0.0 <= self.eval_epsilon <= 1.0 or self.eval_max_steps < 1:
            raise RewindError("run.eval_epsilon must be in [0, 1] and run.eval_max_steps >= 1")
        if self.num_envs < 1:
            raise RewindError(f"run.num_envs must be >= 1, got {self.num_envs}")
        for name in ("eval_every", "checkpoint_every", "eval_episodes", "log_every", "torch_threads", "video_every"):
            if getattr(self, name) < 0:
                raise RewindError(f"run.{name} must be >= 0")
        if self.log_every == 0:
            raise RewindError("run.log_every must be >= 1")
        if self.grow_at < 0 or self.deepen < 0 or self.grow_noise < 0:
            raise RewindError("run.grow_at, run.deepen and run.grow_noise must be >= 0")
        if self.widen < 1.0:
            raise RewindError(f"run.widen must be >= 1 (Net2Net only widens), got {self.widen}")
        growing = self.widen != 1.0 or self.deepen > 0
        if growing != (self.grow_at > 0):
            raise RewindError("Net2Net growth needs both run.grow_at (--grow-at) and run.widen > 1 or run.deepen > 0")
        if self.grow_at > self.steps:
            raise RewindError(f"run.grow_at ({self.grow_at}) is after the end of the run (run.steps {self.steps})")
        if self.video_every:   # optional packages: one line now, not a traceback at the first evaluation
            require("moviepy", "video", "run.video_every (videos)")
        if self.track:
            require("wandb", "wandb", "--track (Weights & Biases)")


def check_growth(agent: Agent, run: RunConfig) -> None:
    if run.grow_at and not callable(getattr(agent, "grow", None)):
        raise RewindError(f"run.grow_at: agent {type(agent).__name__} cannot grow its networks (Net2Net needs "
                          "dqn, ebu or ebu-adaptive)")


def snapshot_env(env) -> dict | None:
    """The env's state as plain data (rewind.envs.state); a vector env's sub-env by sub-env (its own
    env_fns are closures). None: some part is not data, and the run resumes with fresh episodes."""
    if isinstance(env, gym.vector.SyncVectorEnv):
        states = [env_state(e) for e in env.envs]
        return None if any(s is None for s in states) else {"vector": states}
    return env_state(env)


def restore_env(env, data: dict) -> None:
    """Write a snapshot_env() state back into a freshly built env of the same kind."""
    if isinstance(env, gym.vector.SyncVectorEnv):
        for sub, state in zip(env.envs, data["vector"]):
            set_env_state(sub, state)
    else:
        set_env_state(env, data)


def per_env_infos(info: dict, done: np.ndarray) -> list[dict]:
    """A vector env's batched info as one dict per env; a finished env's comes from its final step."""
    final = info.get("final_info") or {}
    out = []
    for i in range(len(done)):
        source = final if done[i] else info
        out.append({k: _item(v, i) for k, v in source.items()
                    if not k.startswith("_") and source.get(f"_{k}", np.ones(len(done), bool))[i]})
    return out


def _item(value, i):
    return {k: _item(v, i) for k, v in value.items() if not k.startswith("_")} if isinstance(value, dict) else value[i]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_states() -> dict:
    """The global python/numpy/torch RNG states, for checkpoints that resume exactly."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])


def eval_seed(run_seed: int) -> int:
    """Seed of a run's evaluation episodes: the same at every evaluation, apart from training seeds."""
    return run_seed + 1_000_003


def evaluate(agent: Agent, env: gym.Env, episodes: int = 10, epsilon: float = 0.05,
             max_steps: int = 27_000, seed: int = 0) -> dict:
    """Fixed protocol: `episodes` episodes, epsilon-greedy with `epsilon`, at most `max_steps` each.

    Episode i is reset with seed+i, so every evaluation sees the same starts.
    """
    rng = np.random.default_rng(seed)
    returns, lengths = [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, steps, done = 0.0, 0, False
        while not done and steps < max_steps:
            if rng.random() < epsilon:
                action = env.action_space.sample()
            else:
                action = agent.act(obs, explore=False)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            steps += 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(steps)
    return {"return_mean": float(np.mean(returns)), "return_std": float(np.std(returns)),
            "length_mean": float(np.mean(lengths)), "returns": returns}


def video_folder(run: RunConfig, logdir: Path | None, step: int, evals: list[dict]) -> Path | None:
    """Where this evaluation's videos go (logdir/videos/step-N), or None: one video set per run.video_every steps."""
    if not run.video_every or logdir is None:
        return None
    last = max((e["step"] // run.video_every for e in evals if e.get("video")), default=0)
    return logdir / "videos" / f"step-{step}" if step // run.video_every > last else None


class _StopFlag:
    """First Ctrl-C or SIGTERM asks the loop to checkpoint and stop at the next step; a second one aborts.

    Batch schedulers and containers stop jobs with SIGTERM, so it is handled like Ctrl-C;
    `signum` says which came (the CLI exits 130 for SIGINT, 143 for SIGTERM).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.stop = False
        self.signum = None
        self._previous = {}

    def __enter__(self):
        try:
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        except ValueError:  # not the main thread: no handler, Ctrl-C behaves as usual
            self._previous = {}
        return self

    def _handle(self, signum, frame):
        if self.stop:
            raise KeyboardInterrupt
        self.stop, self.signum = True, signum

    def __exit__(self, *exc):
        for s, previous in self._previous.items():
            signal.signal(s, previous)


def train(agent: Agent, env: gym.Env, run: RunConfig | None = None, *, eval_env: gym.Env | None = None,
          logdir: str | Path | None = None, seed: int = 0, resume: bool = False, meta: dict | None = None,
          frames_per_step: int = 1, on_eval=None) -> dict:
    """Run `agent` in `env` for run.steps env steps; returns a summary dict.

    With a logdir: TensorBoard events, `evaluations.json` and `checkpoint.pt` go there.
    resume=True continues from logdir/checkpoint.pt (the env continues too, when its state is
    plain data: rewind.envs.state). `meta` (agent/env names and configs) is stored in checkpoints. `on_eval(result)` sees
    every evaluation (`rewind tune` reports it to Optuna, whose pruning raises out of the loop).
    """
    run = run or RunConfig()
    logdir = Path(logdir) if logdir is not None else None
    ckpt_path = logdir / "checkpoint.pt" if logdir is not None else None
    if run.torch_threads:
        torch.set_num_threads(run.torch_threads)
    check_growth(agent, run)
    vector = isinstance(env, gym.vector.VectorEnv)
    if vector and eval_env is None:
        raise RewindError("a vector env needs a separate eval_env (evaluation plays one env)")
    if not vector and find_wrapper(env, gym.wrappers.RecordEpisodeStatistics) is None:
        env = gym.wrappers.RecordEpisodeStatistics(env)

    step, episodes, evals = 0, 0, []
    obs = None
    if logdir is not None:
        remove_stale_tmp(logdir)  # temp files of a write that a kill interrupted
    if resume:
        if ckpt_path is None or not ckpt_path.exists():
            raise RewindError(f"nothing to resume: {ckpt_path} does not exist")
        state = load_checkpoint(ckpt_path)
        agent.load_state_dict(state["agent"])
        if state.get("replay") is not None and getattr(agent, "replay", None) is not None:
            agent.replay.load_state_dict(state["replay"])
        loop = state["loop"]
        step, episodes, evals = loop["step"], loop["episodes"], loop["evals"]
        if loop.get("env") is not None:
            restore_env(env, loop["env"])
            obs = loop["obs"]
        set_rng_states(loop["rng"])
    if obs is None:
        obs, _ = env.reset(seed=seed if not resume else seed + step)
        env.action_space.seed(seed)
    n_envs = env.num_envs if vector else 1

    def checkpoint():
        if ckpt_path is None:
            return
        replay = getattr(agent, "replay", None)
        env_data = snapshot_env(env)  # None: an env whose state is not plain data resumes with a fresh episode
        save_checkpoint(ckpt_path, {
            "meta": meta or {},
            "agent": agent.state_dict(),
            "replay": replay.state_dict() if (run.save_buffer and replay is not None) else None,
            "loop": {"step": step, "episodes": episodes, "evals": evals, "obs": obs, "env": env_data,
                     "rng": rng_states()},
        })

    def do_eval():
        target = eval_env if eval_env is not None else env
        folder = video_folder(run, logdir, step, evals)
        with (recording(target, folder) if folder else contextlib.nullcontext(target)) as played:
            result = evaluate(agent, played, run.eval_episodes, run.eval_epsilon, run.eval_max_steps,
                              seed=eval_seed(seed))
        result.update(step=step, frames=step * frames_per_step, episodes=episodes)
        if folder:
            result["video"] = str(folder)
            log.text("video", "\n".join(str(v) for v in videos_in(folder)), step)
        evals.append(result)
        log.scalars("eval", {k: v for k, v in result.items() if k != "returns"}, step)
        if logdir is not None:
            atomic_write_json(logdir / "evaluations.json", evals)
        if on_eval is not None:
            on_eval(result)
        if eval_env is None:  # evaluation played in the training env: start a fresh episode
            return env.reset()[0]
        return None

    def log_episode(ep_info: dict) -> None:
        nonlocal episodes, recent_returns
        episodes += 1
        ep_return = float(np.asarray(ep_info["r"]))
        recent_returns = (recent_returns + [ep_return])[-100:]
        log.episode(step, ep_return, int(np.asarray(ep_info["l"])))
        log.scalars("train", agent.live_metrics(), step)

    def log_interval(n_steps: int) -> None:
        nonlocal t_last, s_last
        now = time.perf_counter()
        rate = (step - s_last) / max(now - t_last, 1e-9)
        t_last, s_last = now, step
        log.scalars("train", {**last_metrics, **agent.live_metrics()}, step)
        log.scalars("perf", {"steps_per_s": rate}, step)
        log.row(step)
        postfix = {"sps": f"{rate:.0f}"}
        if recent_returns:
            postfix["ret100"] = f"{np.mean(recent_returns):.2f}"
        log.progress(n_steps, postfix)

    def due(every: int) -> bool:
        """An every-`every`-steps event falls in the last n_envs steps (exactly at it when n_envs is 1)."""
        return bool(every) and step // every != (step - n_envs) // every

    log = RunLogger(logdir, run.steps, step, run.progress, track=run.track or None, config=meta)
    recent_returns: list[float] = []
    last_metrics: dict = {}
    t_last, s_last = time.perf_counter(), step
    interrupted, stopped_by = False, None
    try:
        with _StopFlag() as flag:
            while vector and step < run.steps:
                actions = agent.act_batch(obs)
                next_obs, rewards, terminated, truncated, info = env.step(actions)
                done = terminated | truncated
                final = info.get("final_obs")
                real_next = np.stack([final[i] if done[i] else next_obs[i] for i in range(n_envs)])
                infos = per_env_infos(info, done)
                agent.observe_batch(obs, actions, rewards, real_next, terminated, truncated, infos)
                metrics = agent.update()
                if metrics:
                    last_metrics = metrics
                step += n_envs
                if run.grow_at and due(run.grow_at) and step - n_envs < run.grow_at:
                    grown = agent.grow(widen=run.widen, deepen=run.deepen, noise=run.grow_noise)
                    log.scalars("train", grown, step)
                    log.text("net2net", f"step {step}: widen x{run.widen}, deepen +{run.deepen} -> {grown}", step)
                for i in np.flatnonzero(done):
                    if "episode" in infos[i]:
                        log_episode(infos[i]["episode"])
                obs = next_obs                     # SAME_STEP autoreset: finished envs already restarted
                if due(run.log_every) or step >= run.steps:
                    log_interval(step - s_last)
                if due(run.eval_every):
                    do_eval()
                if due(run.checkpoint_every):
                    checkpoint()
                if flag.stop:
                    interrupted = True
                    stopped_by = signal.Signals(flag.signum).name if flag.signum else None
                    break
            while not vector and step < run.steps:
                action = agent.act(obs)
                next_obs, reward, terminated, truncated, info = env.step(action)
                agent.observe(obs, action, reward, next_obs, terminated, truncated, info)
                metrics = agent.update()
                if metrics:
                    last_metrics = metrics
                step += 1
                if run.grow_at and step == run.grow_at:   # once: a resumed run starts past its growth step
                    grown = agent.grow(widen=run.widen, deepen=run.deepen, noise=run.grow_noise)
                    log.scalars("train", grown, step)
                    log.text("net2net", f"step {step}: widen x{run.widen}, deepen +{run.deepen} -> {grown}", step)
                if "episode" in info:
                    log_episode(info["episode"])
                if isinstance(info.get("curriculum"), dict):
                    log.scalars("curriculum", info["curriculum"], step)
                obs = env.reset()[0] if (terminated or truncated) else next_obs

                if step % run.log_every == 0 or step == run.steps:
                    log_interval(run.log_every if step % run.log_every == 0 else step % run.log_every)
                if run.eval_every and step % run.eval_every == 0:
                    fresh = do_eval()
                    obs = fresh if fresh is not None else obs
                if run.checkpoint_every and step % run.checkpoint_every == 0:
                    checkpoint()
                if flag.stop:
                    interrupted = True
                    stopped_by = signal.Signals(flag.signum).name if flag.signum else None
                    break
            if not interrupted and (not evals or evals[-1]["step"] != step):
                do_eval() if run.eval_episodes else None
            checkpoint()
    finally:
        log.close()
    return {
        "steps": step,
        "episodes": episodes,
        "interrupted": interrupted,
        "stopped_by": stopped_by,   # "SIGINT" / "SIGTERM" when a signal stopped the run
        "return_mean_100": float(np.mean(recent_returns)) if recent_returns else float("nan"),
        "last_eval": evals[-1] if evals else None,
    }
