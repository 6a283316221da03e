"""Peers in the harness: stable-baselines3 DQN (and sb3-contrib QR-DQN) driven like a rewind run.

A peer run is resolved as rewind's `dqn` on the same env, and its DQN settings are
translated to SB3's keyword arguments, so "EBU vs SB3 DQN" differs in the implementation and
not in the hyperparameters:

- the same env factory (rewind.make_env: same preprocessing, same evaluation env);
- the same Q-network: rewind's network body is SB3's features extractor, SB3 adds the last
  linear layer (`net_arch=[]`), images are scaled by the body as in rewind;
- the same optimizer (Adam / DeepMind RMSProp / torch RMSprop with rewind's alpha and eps);
- learning_rate, buffer_size, learning_starts, batch_size, gamma, n_steps, train_freq =
  update_every, target_update_interval = target_update_every * update_every (SB3 counts env
  steps, rewind counts updates), exploration 1 -> eps_end over eps_decay_steps (as a fraction
  of the run), max_grad_norm (rewind's 0 = off becomes 1e10).
- Differences SB3 cannot express, recorded in the run's status.json `notes`: no double-DQN
  (`double: true` is ignored) and Huber delta fixed at 1.

The same evaluation function and protocol as rewind runs (rewind.run.loop.evaluate), the
same evaluations.json / summary.json, TensorBoard scalars under the same names. `sb3:` in
the suite entry passes raw keyword arguments last (they win).

Resume: the model, its replay buffer (when run.save_buffer) and the harness state are saved
every run.checkpoint_every steps; a resumed peer continues its step count, schedules and
evaluation curve but restarts the current episode (SB3 cannot save an env mid-episode).
They are saved as data, not with SB3's `save` / `save_replay_buffer` (which pickle): the policy
and optimizer state dicts and SB3's counters in `sb3_checkpoint.pt`, the filled part of the
replay arrays in `sb3_replay.pt`, both read with torch.load(weights_only=True), so a run
folder from someone else is as safe to resume as a rewind checkpoint. A resumed peer is
built from the run's config, as a new one is, and then takes the saved state. (A peer folder
of an older rewind holds SB3's pickles, `sb3_model.zip`: it is not resumed, the run starts again.)
"""

from __future__ import annotations

import importlib
import inspect
import json
import signal
from collections import deque
from pathlib import Path

import numpy as np

from rewind.errors import RewindError

# suite agent name -> "module:Class" of the SB3-family peer it runs
PEERS = {"sb3-dqn": "stable_baselines3:DQN", "sb3-qrdqn": "sb3_contrib:QRDQN"}
EXTRAS = {"sb3_contrib": "sb3-contrib"}   # optional peer packages -> the rewind-rl extra that installs them
CHECKPOINT_FILE = "sb3_checkpoint.pt"
BUFFER_FILE = "sb3_replay.pt"
STATE_FILE = "sb3_state.json"
CHECKPOINT_FORMAT, BUFFER_FORMAT = "rewind-sb3-peer", "rewind-sb3-peer-replay"
COUNTERS = ("num_timesteps", "_n_calls", "_n_updates", "_episode_num")   # what SB3's learn() continues from
BUFFER_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def peer_class(agent: str):
    module, cls = PEERS[agent].split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError:
        raise RewindError(f"agent {agent!r} needs {module}: pip install 'rewind-rl[{EXTRAS.get(module, module)}]'") from None


def has_checkpoint(logdir: Path) -> bool:
    return (Path(logdir) / CHECKPOINT_FILE).exists() and (Path(logdir) / STATE_FILE).exists()


def _optimizer(cfg) -> tuple[type, dict]:
    import torch

    if cfg.optimizer == "adam":
        return torch.optim.Adam, {"eps": cfg.opt_eps}
    if cfg.optimizer == "rmsprop":
        from rewind.agents.optim import DeepMindRMSprop
        return DeepMindRMSprop, {"alpha": cfg.rmsprop_alpha, "eps": cfg.opt_eps}
    return torch.optim.RMSprop, {"alpha": cfg.rmsprop_alpha, "eps": cfg.opt_eps, "centered": True}


def sb3_kwargs(exp) -> tuple[dict, list[str]]:
    """SB3 DQN keyword arguments equivalent to the run's rewind DQN config, plus notes on differences."""
    cfg, steps = exp.agent_config, exp.run.steps
    grad_steps = int(getattr(cfg, "gradient_steps", 1))
    opt_cls, opt_kwargs = _optimizer(cfg)
    kwargs = dict(
        learning_rate=cfg.lr, buffer_size=cfg.buffer_size, learning_starts=cfg.learning_starts,
        batch_size=cfg.batch_size, gamma=cfg.gamma, train_freq=cfg.update_every, gradient_steps=grad_steps,
        n_steps=cfg.n_step,
        target_update_interval=max(1, round(cfg.target_update_every * cfg.update_every / grad_steps)),
        exploration_initial_eps=cfg.eps_start, exploration_final_eps=cfg.eps_end,
        exploration_fraction=min(1.0, cfg.eps_decay_steps / steps),
        max_grad_norm=cfg.max_grad_norm if cfg.max_grad_norm > 0 else 1e10,
        policy_kwargs=dict(features_extractor_class=RewindBody,
                           features_extractor_kwargs={"kind": cfg.network, "hidden": list(cfg.hidden)},
                           net_arch=[], normalize_images=False, optimizer_class=opt_cls,
                           optimizer_kwargs=opt_kwargs),
    )
    notes = []
    if cfg.double:
        notes.append("double-DQN targets are not available in SB3 DQN: plain DQN targets")
    if cfg.huber_delta != 1.0:
        notes.append(f"SB3 uses Huber delta 1, not {cfg.huber_delta}")
    return kwargs, notes


def _final_kwargs(spec, exp, cls) -> tuple[dict, list[str]]:
    kwargs, notes = sb3_kwargs(exp)
    accepted = set(inspect.signature(cls.__init__).parameters)
    for key in list(kwargs):
        if key not in accepted:
            notes.append(f"{cls.__name__} has no {key}: left at its default")
            kwargs.pop(key)
    for key, value in spec.sb3.items():
        if key not in accepted or key in ("policy", "env", "seed", "device", "verbose", "tensorboard_log"):
            raise RewindError(f"sb3.{key} is not a {cls.__name__} option the harness lets you set")
        if key == "policy_kwargs" and isinstance(value, dict):
            kwargs["policy_kwargs"] = {**kwargs.get("policy_kwargs", {}), **value}
        else:
            kwargs[key] = value
    return kwargs, notes


def check_peer(spec, exp) -> None:
    """Validate a peer entry before any run starts (package installed, options known)."""
    cls = peer_class(spec.agent)
    _final_kwargs(spec, exp, cls)


def _body_class():
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from torch import nn

    from rewind.agents.networks import build_q_network

    class _RewindBody(BaseFeaturesExtractor):
        """rewind's Q-network without its last linear layer, as SB3 features."""

        def __init__(self, observation_space, kind: str = "auto", hidden=(256, 256)):
            q = build_q_network(kind, observation_space, 1, tuple(hidden))
            name = [n for n, m in q.named_modules() if isinstance(m, nn.Linear)][-1]
            features_dim = q.get_submodule(name).in_features
            super().__init__(observation_space, features_dim)
            q.set_submodule(name, nn.Identity())
            self.body = q

        def forward(self, obs):
            return self.body(obs)

    return _RewindBody


class _LazyBody:
    """Stand-in resolved on first use, so importing this module does not import SB3."""

    _cls = None

    def __new__(cls, *args, **kwargs):
        if cls._cls is None:
            cls._cls = _body_class()
        return cls._cls(*args, **kwargs)


RewindBody = _LazyBody


class _GreedyActor:
    """The Agent-like face `evaluate` needs: act(obs, explore=False) from the SB3 policy."""

    def __init__(self, model):
        self.model = model

    def act(self, obs, explore: bool = False):
        action, _ = self.model.predict(obs, deterministic=True)
        return int(np.asarray(action).reshape(-1)[0])


def run_peer(spec, exp, logdir: str | Path, resume: bool = False) -> dict:
    """Train an SB3 peer with the run loop's protocol; writes the same files as run_experiment."""
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv
    from torch.utils.tensorboard import SummaryWriter

    from rewind.files import atomic_write_json, atomic_write_text, save_data
    from rewind.run.experiment import frames_per_step
    from rewind.run.loop import eval_seed, evaluate, seed_everything
    from rewind.envs import make_env

    logdir = Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    run, seed = exp.run, exp.seed
    cls = peer_class(spec.agent)
    kwargs, notes = _final_kwargs(spec, exp, cls)
    if run.torch_threads:
        torch.set_num_threads(run.torch_threads)
    seed_everything(seed)
    env = make_env(exp.env, exp.env_config, training=True, seed=seed)
    eval_env = make_env(exp.env, exp.env_config, training=False, seed=seed + 1)
    venv = DummyVecEnv([lambda: env])  # no Monitor: rewind's RecordEpisodeStatistics gives info["episode"]
    fps = frames_per_step(exp)
    state = {"step": 0, "episodes": 0, "evals": []}
    model = cls("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, **kwargs)
    if resume:
        state = json.loads((logdir / STATE_FILE).read_text())
        load_model_state(model, logdir / CHECKPOINT_FILE)
        if (logdir / BUFFER_FILE).exists():
            load_buffer_state(model.replay_buffer, logdir / BUFFER_FILE)
    atomic_write_text(logdir / "config.yaml", json.dumps({**exp.meta(), "agent": spec.agent, "sb3": spec.sb3,
                                                          "notes": notes}, indent=1, default=str))
    writer = SummaryWriter(str(logdir))
    stop = {"flag": False}

    def checkpoint(step):
        state["step"] = step
        save_data(logdir / CHECKPOINT_FILE, model_state(model))
        if run.save_buffer:
            save_data(logdir / BUFFER_FILE, buffer_state(model.replay_buffer))
        atomic_write_json(logdir / STATE_FILE, state)

    def do_eval(step):
        result = evaluate(_GreedyActor(model), eval_env, run.eval_episodes, run.eval_epsilon, run.eval_max_steps,
                          seed=eval_seed(seed))
        result.update(step=step, frames=step * fps, episodes=state["episodes"])
        state["evals"].append(result)
        for key in ("return_mean", "return_std", "length_mean"):
            writer.add_scalar(f"eval/{key}", result[key], step)
        atomic_write_json(logdir / "evaluations.json", state["evals"])

    class Harness(BaseCallback):
        def _on_step(self) -> bool:
            n = self.num_timesteps
            for info in self.locals.get("infos", []):
                if "episode" in info:
                    state["episodes"] += 1
                    writer.add_scalar("episode/return", float(np.asarray(info["episode"]["r"])), n)
                    writer.add_scalar("episode/length", float(np.asarray(info["episode"]["l"])), n)
            if n % run.log_every == 0:
                writer.add_scalar("train/epsilon", float(self.model.exploration_rate), n)
            if run.eval_every and n % run.eval_every == 0:
                do_eval(n)
            if run.checkpoint_every and n % run.checkpoint_every == 0:
                checkpoint(n)
            # SB3 checks its budget only between rollouts of train_freq steps: stop exactly here
            return not stop["flag"] and n < run.steps

    def on_sigint(signum, frame):  # Ctrl-C or SIGTERM: checkpoint at the next step
        if stop["flag"]:
            raise KeyboardInterrupt
        stop["flag"] = signal.Signals(signum).name

    try:
        previous = {s: signal.signal(s, on_sigint) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        previous = {}
    try:
        remaining = run.steps - model.num_timesteps
        if remaining > 0:
            model.learn(total_timesteps=remaining, callback=Harness(), reset_num_timesteps=not resume)
        step = model.num_timesteps
        if not stop["flag"] and (not state["evals"] or state["evals"][-1]["step"] != step) and run.eval_episodes:
            do_eval(step)
        checkpoint(step)
    finally:
        writer.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    returns = [e for e in model.ep_info_buffer] if model.ep_info_buffer else []
    summary = {"steps": int(model.num_timesteps), "episodes": state["episodes"], "interrupted": bool(stop["flag"]),
               "stopped_by": stop["flag"] or None,
               "return_mean_100": float(np.mean([e["r"] for e in returns])) if returns else float("nan"),
               "last_eval": state["evals"][-1] if state["evals"] else None, "notes": notes}
    atomic_write_json(logdir / "summary.json", summary)
    return summary


def _read_state(path: Path, what: str, fmt: str, fix: str) -> dict:
    """A file written by save_data with the given format tag (weights_only: nothing in it runs); else one line."""
    from rewind.files import load_data

    state = load_data(path, what, mmap=False)
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise RewindError(f"{path} is not an {what} written by rewind bench; {fix}")
    return state


def model_state(model) -> dict:
    """What a resumed SB3 DQN-family model needs, as data: weights, optimizer state, counters."""
    return {"format": CHECKPOINT_FORMAT, "policy": model.policy.state_dict(),
            "optimizer": model.policy.optimizer.state_dict(),
            "counters": {k: int(getattr(model, k)) for k in COUNTERS},
            "exploration_rate": float(model.exploration_rate),
            "episodes": [{k: float(v) for k, v in e.items()} for e in (model.ep_info_buffer or [])]}


def load_model_state(model, path: Path) -> None:
    """Put a state written by model_state into `model` (built from the same config); one line if it does not fit."""
    state = _read_state(path, "SB3 peer checkpoint", CHECKPOINT_FORMAT, "delete the run folder to start the run again")
    try:
        model.policy.load_state_dict(state["policy"])
        model.policy.optimizer.load_state_dict(state["optimizer"])
        for key in COUNTERS:
            setattr(model, key, int(state["counters"][key]))
        model.exploration_rate = float(state["exploration_rate"])
        model.ep_info_buffer = deque(state["episodes"], maxlen=model._stats_window_size)
        model.ep_success_buffer = deque(maxlen=model._stats_window_size)   # learn() makes neither once one is set
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise RewindError(f"{path} does not fit this run's SB3 model ({str(exc).splitlines()[0][:100]}); "
                          "delete the run folder to start the run again") from None


def buffer_state(buffer) -> dict:
    """The filled part of an SB3 ReplayBuffer's arrays, plus its write position."""
    n = buffer.buffer_size if buffer.full else buffer.pos
    arrays = {k: getattr(buffer, k)[:n] for k in BUFFER_ARRAYS if getattr(buffer, k, None) is not None}
    return {"format": BUFFER_FORMAT, "pos": int(buffer.pos), "full": bool(buffer.full), "arrays": arrays}


def load_buffer_state(buffer, path: Path) -> None:
    """Fill `buffer` from a file written by buffer_state; one line if its arrays do not fit this buffer."""
    state = _read_state(path, "SB3 peer replay", BUFFER_FORMAT, "delete it to resume with an empty replay")
    for key, saved in state["arrays"].items():
        target = getattr(buffer, key, None)
        if key not in BUFFER_ARRAYS or target is None or saved.shape[1:] != target.shape[1:] \
                or len(saved) > len(target) or saved.dtype != target.dtype:
            raise RewindError(f"{path}: replay array {key!r} {saved.dtype}{list(saved.shape)} does not fit this "
                              "run's replay; delete it to resume with an empty replay")
    for key, saved in state["arrays"].items():   # all checked first: a file that does not fit changes nothing
        getattr(buffer, key)[:len(saved)] = saved
    buffer.pos, buffer.full = int(state["pos"]), bool(state["full"])
