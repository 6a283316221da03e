"""An architecture search run: search, derive, retrain from scratch, test; ENAS or random search.

Both strategies run the *same* loop over the *same* shared-weight model and env (so the same
compute): phases of shared-weight training then ``controller_steps`` scored architectures.
The budget is compute, never wall-clock: ``env.budget_steps`` (``--budget``) shared-weight
optimizer steps and ``phases x controller_steps`` scored samples for every strategy; the
wall-clock time is reported in the result.
ENAS samples from the controller and learns from the rewards; random search samples uniformly
and ignores them (random search with weight sharing, Li & Talwalkar 2019, the honest
baseline). Derive: ``derive_samples`` architectures from the final policy (uniform for random
search) scored on one fixed validation minibatch; the best is retrained from scratch and
tested. The run checkpoints atomically at every phase boundary and resumes from there.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rewind.agents.base import Agent
from rewind.agents.local_loss import LOCAL_LOSSES, LayerHeads
from rewind.agents.recipes import (decay_groups, mixup, mixup_lambda, scheduled_lr, set_lr, smooth_labels,
                                   soft_cross_entropy)
from rewind.files import atomic_write_json, atomic_write_text
from rewind.run.checkpoint import load_checkpoint, save_checkpoint
from rewind.files import remove_stale_tmp
from rewind.run.loop import _StopFlag, rng_states, seed_everything, set_rng_states
from rewind.run.runlog import RunLogger
from rewind.controllers.enas_controller import ENASController, ENASControllerConfig
from rewind.controllers.search_spaces import SearchSpace
from rewind.envs.nas import Batches, NASEnv, NASEnvConfig, evaluate_split
from rewind.envs.nas_data import QValueData, TextData
from rewind.errors import RewindError, require

STRATEGIES = ("enas", "random")


@dataclasses.dataclass
class SearchConfig:
    derive_samples: int = 100       # architectures scored in the derive step (paper: e.g. 100)
    retrain_epochs: int = 30
    retrain_lr: float = 0.05
    retrain_lr_min: float = 0.0
    retrain_batch: int = 128
    retrain_weight_decay: float = 1e-4
    retrain_grad_clip: float = 5.0
    retrain_channels: int = 0       # CNN spaces: channels of the retrained net (0 = as searched)
    # training recipe of the retraining (He et al. 2019, agents/recipes.py; docs/training_methods.md):
    retrain_warmup_epochs: int = 0  # linear lr warmup over this many epochs, then the cosine over the rest
    retrain_no_bias_decay: bool = False   # no weight decay on biases and other 1-d parameters
    retrain_label_smoothing: float = 0.0  # eps: 1 - eps on the label, eps / (K - 1) elsewhere
    retrain_mixup_alpha: float = 0.0      # mixup, lam ~ Beta(alpha, alpha) per batch (images only)
    # local error signals (Nokland & Eidnes 2019, agents/local_loss.py): macro, micro, mlp spaces
    retrain_local_loss: str = "none"      # none | pred | sim | predsim | pred-bpf | predsim-bpf
    retrain_local_beta: float = 0.99      # predsim weight of sim
    retrain_local_proj: int = 128         # -bpf: size of the fixed random target projection
    retrain_local_max_features: int = 2048  # conv pred heads: average-pool until C*H*W <= this (authors'
                                            # --dim-in-decoder); 1 = global average pool, as the child's own head
    log_arch_every: int = 0         # rewards between sampled-architecture TensorBoard texts (0 = per phase)

    def validate(self):
        if self.derive_samples < 1:
            raise RewindError("search.derive_samples must be >= 1")
        if self.retrain_epochs < 0 or self.retrain_batch < 1 or self.retrain_lr <= 0:
            raise RewindError("search.retrain_epochs >= 0, search.retrain_batch >= 1 and search.retrain_lr > 0")
        if not 0 <= self.retrain_warmup_epochs <= self.retrain_epochs:
            raise RewindError(f"search.retrain_warmup_epochs must be in [0, search.retrain_epochs="
                              f"{self.retrain_epochs}], got {self.retrain_warmup_epochs}")
        if not 0 <= self.retrain_label_smoothing < 1:
            raise RewindError(f"search.retrain_label_smoothing must be in [0, 1), got {self.retrain_label_smoothing}")
        if self.retrain_mixup_alpha < 0:
            raise RewindError(f"search.retrain_mixup_alpha must be >= 0, got {self.retrain_mixup_alpha}")
        kind = self.retrain_local_loss
        if kind not in LOCAL_LOSSES:
            raise RewindError(f"search.retrain_local_loss must be one of {', '.join(LOCAL_LOSSES)}, got {kind!r}")
        if kind != "none" and self.retrain_mixup_alpha > 0:
            raise RewindError("search.retrain_local_loss with retrain_mixup_alpha > 0 is not supported "
                              "(mixed targets for local losses)")
        if not kind.startswith("predsim") and self.retrain_local_beta != 0.99:
            raise RewindError(f"search.retrain_local_beta={self.retrain_local_beta} applies only with "
                              "retrain_local_loss predsim or predsim-bpf")
        if not 0.0 <= self.retrain_local_beta <= 1.0:
            raise RewindError(f"search.retrain_local_beta must be in [0, 1], got {self.retrain_local_beta}")
        if not kind.endswith("-bpf") and self.retrain_local_proj != 128:
            raise RewindError(f"search.retrain_local_proj={self.retrain_local_proj} applies only with a -bpf "
                              "retrain_local_loss")
        if self.retrain_local_proj < 1:
            raise RewindError(f"search.retrain_local_proj must be >= 1, got {self.retrain_local_proj}")
        if self.retrain_local_max_features < 1:
            raise RewindError(f"search.retrain_local_max_features must be >= 1, got {self.retrain_local_max_features}")
        if kind == "none" and self.retrain_local_max_features != 2048:
            raise RewindError("search.retrain_local_max_features applies only with a retrain_local_loss")


def retrain_lr(step: int, cfg: SearchConfig, steps: int) -> float:
    """The lr of retraining batch `step` (0-based) of `steps`: linear warmup over the first
    retrain_warmup_epochs (as a fraction of `steps`), then cosine from retrain_lr to retrain_lr_min
    over the remaining batches (without warmup: torch's CosineAnnealingLR, T = steps)."""
    warm = round(steps * cfg.retrain_warmup_epochs / cfg.retrain_epochs) if cfg.retrain_epochs else 0
    if step < warm:
        return scheduled_lr(step, cfg.retrain_lr, warm)
    return cfg.retrain_lr_min + scheduled_lr(step - warm, cfg.retrain_lr - cfg.retrain_lr_min, 0, "cosine",
                                             max(steps - warm, 1))


class RandomSearchAgent(Agent):
    """Uniform architectures; learns nothing (the random-search-with-weight-sharing baseline)."""

    def __init__(self, observation_space, action_space, config=None, *, seed=0, frame_stack=1):
        super().__init__(observation_space, action_space, config, seed=seed, frame_stack=frame_stack)
        self.rng = np.random.default_rng(seed)

    def act(self, obs=None, explore=True):
        return (self.rng.random(self.action_space.nvec.size) * self.action_space.nvec).astype(np.int64)

    def sample(self, n: int) -> np.ndarray:
        return np.stack([self.act() for _ in range(n)])

    def observe(self, *args, **kwargs):
        pass

    def update(self):
        return {}

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng"]


def make_searcher(space: SearchSpace, data, strategy: str, agent_cfg: ENASControllerConfig | None,
                  env_cfg: NASEnvConfig, seed: int):
    """(env, agent) wired together: the env trains the shared weights on the agent's samples."""
    if strategy not in STRATEGIES:
        raise RewindError(f"unknown search strategy {strategy!r}; choose from: {', '.join(STRATEGIES)}")
    seed_everything(seed)
    model = space.shared_model(**data.model_kwargs())
    aspace = space.action_space(seed=seed)
    env = NASEnv(data, model, aspace, None, env_cfg, seed=seed)
    cls = ENASController if strategy == "enas" else RandomSearchAgent
    agent = cls(env.observation_space, aspace, agent_cfg if strategy == "enas" else None, seed=seed)
    env.set_sampler(agent.sample)     # n architectures at once: one per shared-weight minibatch
    return env, agent


def fixed_valid_batch(env: NASEnv, seed: int):
    """One validation minibatch, the same for every candidate of the derive step."""
    b = Batches(env.data, "valid", env.cfg.eval_batch_size, env.cfg.bptt, seed + 12345, env.device)
    return b.next()


def derive(env: NASEnv, agent, n: int, seed: int) -> dict:
    """Sample n architectures, score each on one fixed validation minibatch, keep the best."""
    batch = fixed_valid_batch(env, seed)
    cands = agent.sample(n)
    scores = np.array([env.score(a, batch) for a in cands])
    best = int(np.argmax(scores))
    return {"arch": cands[best], "score": float(scores[best]), "scores": scores, "candidates": cands}


def local_heads(model: nn.Module, x: torch.Tensor, n_classes: int, cfg: SearchConfig) -> LayerHeads:
    """The local heads of a child for search.retrain_local_loss, sized by one probe forward of x."""
    shapes = []

    def record(k, h):
        shapes.append(tuple(h.shape[1:]))
        return h

    model.eval()
    with torch.no_grad():
        model(x, local=record)
    model.train()
    if cfg.retrain_local_max_features != 2048 and not any(len(shape) == 3 for shape in shapes):
        raise RewindError("search.retrain_local_max_features applies to conv children (macro, micro); "
                          "this child has dense layers only")
    return LayerHeads(shapes, n_classes, cfg.retrain_local_loss, cfg.retrain_local_beta,
                      cfg.retrain_local_proj, cfg.retrain_local_max_features).to(x.device)


def local_step(heads: LayerHeads, y: torch.Tensor):
    """forward's `local` hook: layer k's loss is backpropagated at once (its graph freed) and its
    output goes on detached, so nothing reaches layer k-1. CNN children: the loss sees relu(h),
    as the classifier head does (their layers end in BN; the next op starts with ReLU)."""
    def local(k, h):
        loss = heads.loss(k, F.relu(h) if h.dim() == 4 else h, y)
        if loss.requires_grad:
            loss.backward()
        return h.detach()
    return local


def retrain(space: SearchSpace, arch, data, cfg: SearchConfig, seed: int, device="cpu", bptt: int = 35,
            progress: bool = False) -> dict:
    """Train the stand-alone network of `arch` from scratch; validation and test scores at the end."""
    seed_everything(seed)
    kwargs = dict(data.model_kwargs())
    if cfg.retrain_channels and space.name in ("macro", "micro"):
        kwargs["channels"] = cfg.retrain_channels
    model = space.build(arch, **kwargs).to(device)
    text = isinstance(data, TextData)
    qvalues = isinstance(data, QValueData)
    batches = Batches(data, "train", cfg.retrain_batch, bptt, seed, device)
    steps = cfg.retrain_epochs * len(batches)
    if text and cfg.retrain_mixup_alpha > 0:
        raise RewindError("search.retrain_mixup_alpha applies to image data only (token ids cannot be mixed)")
    soft = cfg.retrain_label_smoothing > 0 or cfg.retrain_mixup_alpha > 0
    if qvalues and soft:
        raise RewindError("search.retrain_label_smoothing and retrain_mixup_alpha apply to classification; "
                          "the Q-value task regresses the teacher's Q-values")
    n_classes = None if qvalues else len(data.vocab) if text else data.n_classes
    heads = None
    if cfg.retrain_local_loss != "none":
        if not getattr(model, "takes_local_loss", False) or qvalues or text:
            raise RewindError(f"search.retrain_local_loss applies to image classifiers of the macro, micro and mlp "
                              f"spaces; the {space.name} space on this data has no per-layer class targets")
        heads = local_heads(model, data.train_x[:2].to(device), n_classes, cfg)
    named = list(model.named_parameters())
    if heads is not None:
        named += [("local." + n, p) for n, p in heads.named_parameters()]
    params = [p for _, p in named]
    opt = torch.optim.SGD(decay_groups(named, cfg.retrain_weight_decay, cfg.retrain_no_bias_decay),
                          lr=cfg.retrain_lr, momentum=0.9, nesterov=True)
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    model.train()
    it = range(steps)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="retrain", unit="batch", dynamic_ncols=True)
    for step in it:
        set_lr(opt, retrain_lr(step, cfg, steps))
        x, y = batches.next()
        opt.zero_grad(set_to_none=True)
        kw = {} if heads is None else {"local": local_step(heads, y.reshape(-1))}
        if qvalues:   # the Q-value task fits the teacher's Q-values, as the shared weights do
            loss = F.mse_loss(model(x), y)
        elif soft:   # the recipe's targets: smoothed one-hot (He et al. eq. 3), mixed with a shuffled batch
            q = smooth_labels(y.reshape(-1).cpu(), n_classes, cfg.retrain_label_smoothing).to(x.device)
            q = q.reshape(*y.shape, n_classes)
            if cfg.retrain_mixup_alpha > 0:
                perm = torch.randperm(len(x), generator=gen).to(x.device)
                x, q = mixup(x, q, mixup_lambda(cfg.retrain_mixup_alpha, rng), perm)
            out = model(x, **kw)
            loss = soft_cross_entropy(out.reshape(-1, out.shape[-1]), q.reshape(-1, q.shape[-1])).mean()
        else:
            out = model(x, **kw)
            loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(params, cfg.retrain_grad_clip)
        opt.step()
    valid = evaluate_split(model, data, "valid", bptt=bptt)
    test = evaluate_split(model, data, "test", bptt=bptt)
    keys = ("r2", "agreement") if qvalues else ("perplexity",) if text else ("accuracy",)
    out = {f"{split}_{k}": res[k] for k in keys for split, res in (("valid", valid), ("test", test))}
    return {**out, "retrain_seconds": time.perf_counter() - t0, "params": sum(p.numel() for p in model.parameters())}


def run_search(space: SearchSpace, data, *, strategy: str = "enas", agent_cfg: ENASControllerConfig | None = None,
               env_cfg: NASEnvConfig | None = None, search_cfg: SearchConfig | None = None, seed: int = 0,
               logdir: str | Path | None = None, resume: bool = False, progress: bool = False,
               do_retrain: bool = True, stop_after: int | None = None) -> dict | None:
    """Search, derive, retrain and test; writes arch.json / arch.txt / arch.png / result.json to logdir.

    stop_after: leave after this many rewards of this process at the next phase boundary,
    with a checkpoint, and return None (a pre-emptible job; resume=True continues it).
    Ctrl-C or SIGTERM: finish the reward, checkpoint, and return {"interrupted": True, "stopped_by": ...}.
    """
    env_cfg = env_cfg or NASEnvConfig()
    search_cfg = search_cfg or SearchConfig()
    agent_cfg = agent_cfg or ENASControllerConfig()
    for c in (env_cfg, search_cfg, agent_cfg):
        c.validate()
    if logdir is not None:   # arch.png is drawn at the end: refuse now rather than lose the search then
        require("matplotlib", "bench", "the architecture drawing (arch.png)")
    env, agent = make_searcher(space, data, strategy, agent_cfg, env_cfg, seed)
    total = env.phases * env_cfg.controller_steps
    logdir = Path(logdir) if logdir is not None else None
    ckpt = logdir / "checkpoint.pt" if logdir is not None else None
    step, elapsed, history = 0, 0.0, []
    if logdir is not None:
        remove_stale_tmp(logdir)  # temp files of a write that a kill interrupted
    if resume:
        if ckpt is None or not ckpt.exists():
            raise RewindError(f"nothing to resume in {logdir}: no checkpoint.pt (start without --resume)")
        state = load_checkpoint(ckpt)
        meta = state.get("meta") or {}
        if not {"space", "params", "strategy", "seed"} <= set(meta) or "env" not in state:
            raise RewindError(f"{ckpt} is not a search checkpoint (a `rewind train` run?); use another --logdir")
        if (meta["space"], meta["params"], meta["strategy"], meta["seed"]) != (
                space.name, space.params(), strategy, seed):
            raise RewindError(f"{ckpt} was written by a different search ({meta['space']} {meta['params']}, "
                              f"{meta['strategy']}, seed {meta['seed']}); use another --logdir")
        env.load_state_dict(state["env"])
        agent.load_state_dict(state["agent"])
        step, elapsed, history = state["step"], state["elapsed"], state["history"]
        set_rng_states(state["rng"])

    def checkpoint(done: bool):
        if ckpt is None:
            return
        save_checkpoint(ckpt, {
            "meta": {"space": space.name, "params": space.params(), "strategy": strategy, "seed": seed},
            "env": env.state_dict(), "agent": agent.state_dict(), "step": step, "elapsed": elapsed,
            "history": history, "done": done,
            "rng": rng_states()})

    log = RunLogger(logdir, total, step, progress, unit="arch", desc="search")
    log_every = search_cfg.log_arch_every or env_cfg.controller_steps
    done = bool(history) and history[-1].get("done", False)
    t_start, start_step = time.perf_counter() - elapsed, step
    phase_rewards, phase_entropy = [], []
    try:
        with _StopFlag() as flag:
            while step < total and not done:
                obs, _ = env.reset()
                action = agent.act(obs)
                _, reward, term, trunc, info = env.step(action)
                agent.observe(obs, action, reward, obs, term, trunc, info)
                metrics = agent.update()
                step += 1
                phase_rewards.append(reward)
                if metrics and "entropy" in metrics:
                    phase_entropy.append(metrics["entropy"])
                log.scalars("search", {"reward": reward}, step)
                if metrics:
                    log.scalars("controller", metrics, step)
                if "child" in info:
                    log.scalars("child", {k: v for k, v in info["child"].items() if k != "phase"}, step)
                if step % log_every == 0:
                    log.text("arch/sampled", space.describe(action), step)
                if log.bar is not None:
                    log.bar.update(1)
                    if metrics:
                        log.bar.set_postfix(reward=f"{metrics['reward']:.3f}", baseline=f"{metrics['baseline']:.3f}",
                                            entropy=f"{metrics['entropy']:.2f}")
                elapsed = time.perf_counter() - t_start
                if step % env_cfg.controller_steps == 0 or step == total:
                    per_phase = {"mean_reward": float(np.mean(phase_rewards))}
                    if phase_entropy:
                        per_phase["controller_entropy"] = float(np.mean(phase_entropy))
                    log.scalars("phase", per_phase, env.phase)     # proxy-quality curves, one point per phase
                    phase_rewards, phase_entropy = [], []
                    history.append({"step": step, "phase": env.phase, "elapsed": elapsed,
                                    "shared_steps": env.child_steps_done, **per_phase,
                                    "reward_mean_last": float(reward), **(metrics or {}),
                                    "done": bool(step == total)})
                    done = history[-1]["done"]
                    checkpoint(done)
                    if stop_after is not None and step - start_step >= stop_after and not done:
                        return None
                if flag.stop and not done:
                    checkpoint(False)
                    return {"interrupted": True, "rewards": step, "stopped_by": signal.Signals(flag.signum).name}
    finally:
        log.close()
    search_seconds = elapsed
    t0 = time.perf_counter()
    der = derive(env, agent, search_cfg.derive_samples, seed)
    derive_seconds = time.perf_counter() - t0
    arch = der["arch"]
    result = {"space": space.name, "space_params": space.params(), "data": data.name, "strategy": strategy,
              "seed": seed, "rewards": step, "phases": env.phase, "shared_steps": env.child_steps_done,
              "controller_samples": step, "derive_samples": search_cfg.derive_samples,
              "search_seconds": search_seconds,
              "derive_seconds": derive_seconds, "derive_best_score": der["score"],
              "derive_mean_score": float(der["scores"].mean()), "arch": space.to_json(arch),
              **({"arch_string": space.arch_string(arch)} if hasattr(space, "arch_string") else {}),
              "history": [{k: h[k] for k in ("phase", "shared_steps", "mean_reward", "controller_entropy") if k in h}
                          for h in history]}
    if isinstance(agent, ENASController):
        with torch.no_grad():
            result["controller_entropy"] = float(agent.policy.run(64, generator=agent.generator)[2].mean())
    if logdir is not None:
        from rewind.controllers.nas_draw import draw_png

        atomic_write_json(logdir / "arch.json", space.to_json(arch))
        atomic_write_text(logdir / "arch.txt", space.describe(arch) + "\n")
        draw_png(space, arch, logdir / "arch.png")
    if do_retrain:
        result.update(retrain(space, arch, data, search_cfg, seed, env.device, env_cfg.bptt, progress))
    if logdir is not None:
        atomic_write_json(logdir / "result.json", result)
    return result


def kendall_tau_ci(x, y, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Kendall tau-b of paired scores with a percentile bootstrap CI over the pairs.

    Resamples architectures (pairs) with replacement; resamples whose tau is undefined (all
    ties) are dropped. Returns {"tau", "p_value", "ci_low", "ci_high", "n"}.
    """
    from scipy.stats import kendalltau

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size < 3:
        raise RewindError(f"kendall_tau_ci needs two equal-length score lists of >= 3 entries, got {x.shape}, {y.shape}")
    tau, p = kendalltau(x, y)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, x.size, x.size)
        t = kendalltau(x[i], y[i])[0]
        if np.isfinite(t):
            boots.append(t)
    a = (1 - level) / 2
    lo, hi = (np.quantile(boots, [a, 1 - a]) if boots else (np.nan, np.nan))
    return {"tau": float(tau), "p_value": float(p), "ci_low": float(lo), "ci_high": float(hi), "n": int(x.size)}


def shared_vs_standalone(env: NASEnv, space: SearchSpace, data, n: int, search_cfg: SearchConfig, seed: int,
                         archs=None) -> dict:
    """Proxy quality: Kendall tau (bootstrap 95% CI) between the shared-weight validation accuracy
    and the stand-alone (retrained from scratch) test accuracy of n uniform architectures."""
    rng = np.random.default_rng(seed + 999)
    archs = list(archs) if archs is not None else [space.random(rng) for _ in range(n)]
    shared = [evaluate_split(env.model, data, "valid", a, bptt=env.cfg.bptt, q_score="r2")["score"] for a in archs]
    alone = []
    for i, a in enumerate(archs):
        r = retrain(space, a, data, search_cfg, seed + i, env.device, env.cfg.bptt)
        alone.append(r["test_accuracy"] if "test_accuracy" in r else r["test_r2"] if "test_r2" in r
                     else -r["test_perplexity"])   # higher is better
    return {**kendall_tau_ci(shared, alone, seed=seed), "shared": shared, "standalone": alone,
            "archs": [space.to_json(a)["arch"] for a in archs]}
