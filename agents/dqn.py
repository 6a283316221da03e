"""Nature DQN (Mnih et al. 2015) with the double-DQN option (van Hasselt et al. 2016).

The EBU agent subclasses this one and replaces only the replay and the learning step, so
acting, epsilon schedule, target syncing, optimizers and checkpoints are shared.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from rewind.agents import net2net
from rewind.agents.base import Agent
from rewind.agents.device import check_precision, resolve_device
from rewind.agents.networks import NETWORKS, n_discrete_actions, parse_qnet_arch, q_values, seeded_q_network
from rewind.agents.overlap import Overlap
from rewind.agents.optim import OPTIMIZERS, make_optimizer
from rewind.agents.recipes import scheduled_lr, set_lr, validate_schedule
from rewind.agents.stdim import STDIMAux
from rewind.buffers.replay import UniformReplay
from rewind.errors import RewindError


@dataclasses.dataclass
class DQNConfig:
    network: str = "auto"            # auto | nature | minatar | mlp | searched
    arch: str = ""                   # searched: the architecture string of an ENAS qnet search, e.g.
                                     # c5x16-pool-h256-elu (agents/networks.py: parse_qnet_arch)
    hidden: tuple[int, ...] = (256, 256)  # MLP hidden sizes
    width: float = 1.0               # multiplies every hidden layer's size (e.g. 0.5: a quarter-size MinAtar net)
    optimizer: str = "adam"          # adam | rmsprop (DeepMind's) | rmsprop-torch
    lr: float = 1e-4
    opt_eps: float = 1.5e-4          # Adam epsilon, or RMSProp epsilon (0.01 in Nature DQN)
    rmsprop_alpha: float = 0.95      # RMSProp decay (rho)
    gamma: float = 0.99
    batch_size: int = 32
    buffer_size: int = 100_000
    learning_starts: int = 10_000    # env steps before the first update
    update_every: int = 4            # env steps between learning phases (Nature DQN: 4)
    gradient_steps: int = 1          # gradient updates per learning phase (RL Zoo's CartPole: 128 every 256 steps)
    target_update_every: int = 1000  # gradient updates between target-network copies
    double: bool = False             # double-DQN targets
    n_step: int = 1                  # n-step returns (1 = Nature DQN); stop at episode ends; EBU refuses it
    huber_delta: float = 1.0
    loss_reduction: str = "mean"     # mean | sum over the minibatch. sum: DeepMind DQN and the EBU authors'
                                     # code (BATCH_ACCUMULATOR = 'sum'), whose RMSProp eps 0.01 sits inside
                                     # the square root, so the step size depends on it; mean: SB3, CleanRL
    max_grad_norm: float = 0.0       # 0 disables gradient clipping (deep_q_rl lineage: only the Huber clip)
    eps_start: float = 1.0
    eps_end: float = 0.1
    eps_decay_steps: int = 100_000   # linear decay over this many env steps
    eps_decay_after_warmup: bool = False  # start the decay at learning_starts (EBU authors' and deep_q_rl's
                                     # code) instead of at step 0 (SB3, CleanRL, Dopamine)
    device: str = "auto"             # auto | cpu | cuda
    precision: str = "fp32"          # fp32 | bf16: autocast the learner's forward passes to bfloat16
                                     # (~25% faster updates on CPUs with AVX512-BF16/AMX; loss stays fp32).
                                     # Refused where bf16 is not native (emulated bf16 is ~6x slower).
    compile: bool = False            # torch.compile the Q-network (opt-in; pays off on GPUs, see docs)
    lr_schedule: str = "constant"    # constant | cosine over gradient updates (He et al. 2019; agents/recipes.py)
    lr_warmup_steps: int = 0         # linear lr warmup over this many gradient updates
    lr_decay_steps: int = 0          # cosine: T, the gradient updates after the warmup until lr reaches 0
    aux_loss: str = "none"           # none | dim: ST-DIM auxiliary loss on replay pairs (agents/stdim.py)
    aux_weight: float = 0.1          # TD loss += aux_weight * (-bound)
    dim_estimator: str = "infonce"   # infonce (ST-DIM) | jsd
    overlap: bool = False            # act while the learner updates on a background thread; actions then come
                                     # from parameters one update old (Ape-X-like; agents/overlap.py). Off:
                                     # the papers' sequential loop

    def validate(self):
        if self.network not in NETWORKS:
            raise RewindError(f"agent.network must be one of {', '.join(NETWORKS)}, got {self.network!r}")
        if self.network == "searched":
            parse_qnet_arch(self.arch)
        elif self.arch:
            raise RewindError(f"agent.arch applies only with agent.network=searched (network is {self.network!r})")
        if self.optimizer not in OPTIMIZERS:
            raise RewindError(f"agent.optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        for name in ("batch_size", "buffer_size", "update_every", "gradient_steps", "target_update_every", "n_step"):
            if getattr(self, name) < 1:
                raise RewindError(f"agent.{name} must be >= 1")
        if self.precision not in ("fp32", "bf16"):
            raise RewindError(f"agent.precision must be fp32 or bf16, got {self.precision!r}")
        if self.loss_reduction not in ("mean", "sum"):
            raise RewindError(f"agent.loss_reduction must be mean or sum, got {self.loss_reduction!r}")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise RewindError(f"agent.device must be auto, cpu or cuda[:N], got {self.device!r}")
        if not 0 <= self.gamma <= 1:
            raise RewindError("agent.gamma must be in [0, 1]")
        if self.lr <= 0 or self.opt_eps <= 0 or self.width <= 0 or self.huber_delta <= 0:
            raise RewindError("agent.lr, agent.opt_eps, agent.width and agent.huber_delta must be > 0")
        if not 0 <= self.rmsprop_alpha < 1 or self.max_grad_norm < 0:
            raise RewindError("agent.rmsprop_alpha must be in [0, 1) and agent.max_grad_norm >= 0")
        if not 0 <= self.eps_end <= self.eps_start <= 1:
            raise RewindError(f"agent.eps_start and agent.eps_end must be in [0, 1] with eps_start >= eps_end, "
                              f"got {self.eps_start} and {self.eps_end}")
        if self.learning_starts < 0 or self.eps_decay_steps < 0:
            raise RewindError("agent.learning_starts and agent.eps_decay_steps must be >= 0")
        if any(h < 1 for h in self.hidden):
            raise RewindError(f"agent.hidden sizes must be >= 1, got {list(self.hidden)}")
        validate_schedule(self)
        if self.aux_loss not in ("none", "dim"):
            raise RewindError(f"agent.aux_loss must be none or dim, got {self.aux_loss!r}")
        if self.aux_loss == "none" and (self.aux_weight != 0.1 or self.dim_estimator != "infonce"):
            raise RewindError("agent.aux_weight and agent.dim_estimator apply only with agent.aux_loss=dim")
        if self.dim_estimator not in ("infonce", "jsd"):
            raise RewindError(f"agent.dim_estimator must be infonce or jsd, got {self.dim_estimator!r}")
        if self.overlap and self.aux_loss != "none":
            raise RewindError("agent.overlap does not combine with agent.aux_loss: the auxiliary loss samples the "
                              "replay inside the update; turn one of them off")


def learning_due(steps: int, cfg) -> bool:
    """A learning phase runs every `update_every` env steps once `learning_starts` steps are in."""
    return steps >= cfg.learning_starts and steps % cfg.update_every == 0


def learning_phases(before: int, now: int, cfg) -> int:
    """Learning phases due for env steps before+1 .. now: the multiples of `update_every` in that range
    from `learning_starts` on. One step at a time this is learning_due(now); with N vector envs the
    step count jumps by N, and update_every keeps counting env steps over all envs (SB3's train_freq)."""
    low = max(before, cfg.learning_starts - 1)
    return now // cfg.update_every - low // cfg.update_every if now > low else 0


class DQNAgent(Agent):
    Config = DQNConfig

    def __init__(self, observation_space, action_space, config=None, *, seed=0, frame_stack=1):
        super().__init__(observation_space, action_space, config, seed=seed, frame_stack=frame_stack)
        cfg = self.config
        self.n_actions = n_discrete_actions(action_space, type(self).__name__)
        self.device = resolve_device(cfg.device)
        check_precision(cfg.precision, self.device)
        self.q = seeded_q_network(cfg, observation_space, self.n_actions, seed, self.device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.optimizer = make_optimizer(cfg.optimizer, self.q.parameters(), cfg.lr, cfg.opt_eps, cfg.rmsprop_alpha)
        self._compiled = torch.compile(self.q) if cfg.compile else None   # shares self.q's parameters
        self.rng = np.random.default_rng(seed)
        self.replay = self.make_replay()
        self.steps = 0    # env steps observed
        self.last_observed = 1   # env steps the last observe call added: update() learns for those
        self.updates = 0  # gradient updates done
        self.growth: list[list] = []  # Net2Net steps done: ["widen", factor, noise] / ["deepen", layers, noise]
        self.stdim = STDIMAux(cfg, seed) if cfg.aux_loss == "dim" else None
        self.overlap = Overlap(self.q) if cfg.overlap else None

    def make_replay(self):
        return UniformReplay(self.config.buffer_size, self.observation_space.shape, self.observation_space.dtype,
                             n_actions=self.n_actions, frame_stack=self.frame_stack)

    # ------------------------------------------------------------------ acting
    def epsilon(self) -> float:
        cfg = self.config
        done = self.steps - cfg.learning_starts if cfg.eps_decay_after_warmup else self.steps
        frac = min(1.0, max(0, done) / max(1, cfg.eps_decay_steps))
        return cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)

    @property
    def acting_net(self) -> torch.nn.Module:
        """The network actions come from: the learner, or its one-update-old copy under agent.overlap."""
        return self.overlap.actor if self.overlap is not None else self.q

    def greedy_action(self, obs) -> int:
        return int(q_values(self.acting_net, obs, self.device).argmax())

    def act(self, obs, explore: bool = True):
        if not explore:   # evaluation: the newest parameters (under agent.overlap, once the update in flight is done)
            self.finish_update()
            return int(q_values(self.q, obs, self.device).argmax())
        if self.rng.random() < self.epsilon():
            return int(self.rng.integers(self.n_actions))  # skip the forward pass: it is not needed
        return self.greedy_action(obs)

    def act_batch(self, obs, explore: bool = True) -> np.ndarray:
        """One forward pass for all envs; each env explores with probability epsilon on its own."""
        if not explore:
            self.finish_update()
        with torch.inference_mode():
            greedy = (self.acting_net if explore else self.q)(torch.as_tensor(np.asarray(obs), device=self.device)).argmax(1).cpu().numpy()
        return self.explore_batch(greedy) if explore else greedy

    def explore_batch(self, greedy: np.ndarray) -> np.ndarray:
        """Replace each greedy action by a uniformly random one with probability epsilon."""
        random = self.rng.random(len(greedy)) < self.epsilon()
        return np.where(random, self.rng.integers(self.n_actions, size=len(greedy)), greedy)

    def observe(self, obs, action, reward, next_obs, terminated, truncated, info) -> None:
        self.replay.add(obs, action, reward, next_obs, terminated, truncated, info)
        self.last_observed = 1
        self.steps += 1

    def observe_batch(self, obs, actions, rewards, next_obs, terminated, truncated, infos) -> None:
        """Every env's transition goes to its own stage in the replay, stored whole when its episode ends."""
        for i in range(len(actions)):
            self.replay.add_staged(i, obs[i], actions[i], rewards[i], next_obs[i], terminated[i], truncated[i],
                                   infos[i])
        self.last_observed = len(actions)
        self.steps += len(actions)

    # ------------------------------------------------------------------ learning
    def can_learn(self) -> bool:
        """Whether the replay holds what a learning step samples (EBU: a complete episode)."""
        return True

    def update(self) -> dict[str, float]:
        cfg = self.config
        phases = learning_phases(self.steps - self.last_observed, self.steps, cfg)
        if not phases or not self.can_learn():
            return {}
        for _ in range(phases * cfg.gradient_steps):
            metrics = self.gradient_update()
        return metrics

    def gradient_update(self) -> dict[str, float]:
        """One learning step, counted, with the target network copied on its schedule. Under agent.overlap
        the step runs on the learner thread and the metrics returned are those of the step before."""
        if self.overlap is None:
            return self._apply_counted(self.prepare_batch())
        metrics = self.overlap.wait()
        self.overlap.refresh(self.q)   # the only place the actor's copy changes (and loading, growth)
        self.overlap.submit(self._apply_counted, self.prepare_batch())
        return metrics

    def _apply_counted(self, batch: dict) -> dict[str, float]:
        metrics = self.apply_batch(batch)
        self.updates += 1
        if self.updates % self.config.target_update_every == 0:
            self.sync_target()
        return metrics

    def finish_update(self) -> None:
        """agent.overlap: wait for the update in flight, so the networks may be read (no-op otherwise)."""
        if self.overlap is not None:
            self.overlap.wait()

    def autocast(self):
        """bfloat16 autocast for learner forward passes when precision is bf16 (no-op otherwise)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16")

    def sync_target(self) -> None:
        self.q_target.load_state_dict(self.q.state_dict())

    def learn(self) -> dict[str, float]:
        """One gradient step on a uniform minibatch with one-step or n-step (double) DQN targets."""
        return self.apply_batch(self.prepare_batch())

    def prepare_batch(self) -> dict:
        """What one gradient step needs from the replay, copied out of it (the caller's thread only)."""
        cfg = self.config
        idx = self.replay.sample_indices(cfg.batch_size, self.rng)
        if cfg.n_step > 1:
            return self.replay.n_step_batch(idx, cfg.n_step, cfg.gamma, self.device)
        return self.replay.batch(idx, self.device)

    def apply_batch(self, b: dict) -> dict[str, float]:
        """The gradient step on a prepared minibatch: targets from the target network, one optimizer step."""
        with torch.no_grad():
            targets = self.td_targets(b["rewards"], b["next_obs"], b["terminated"], b.get("discounts"))
        return self.gradient_step(b["obs"], b["actions"], targets)

    def td_targets(self, rewards, next_obs, terminated, discounts=None) -> torch.Tensor:
        """r + discount * (1 - terminal) * max_a Q_target(s', a); discount gamma, or gamma^m for n-step."""
        with self.autocast():
            next_q = self.q_target(next_obs).float()
            best = self.q(next_obs).argmax(dim=1, keepdim=True) if self.config.double else None
        if self.config.double:
            next_v = next_q.gather(1, best).squeeze(1)
        else:
            next_v = next_q.max(dim=1).values
        discount = self.config.gamma if discounts is None else discounts
        return rewards + discount * (~terminated).float() * next_v

    def gradient_step(self, obs, actions, targets, net=None, optimizer=None) -> dict[str, float]:
        """Huber loss between Q(s, a) and fixed targets; one optimizer step (of self.q, or `net`)."""
        net, optimizer = net or self.q, optimizer or self.optimizer
        forward = self._compiled if (net is self.q and self._compiled is not None) else net
        with self.autocast():
            q_all = forward(obs).float()
        q = q_all.gather(1, actions.view(-1, 1)).squeeze(1)
        loss = F.huber_loss(q, targets, delta=self.config.huber_delta, reduction=self.config.loss_reduction)
        td_loss = loss.item()
        if self.stdim is not None:   # ST-DIM auxiliary loss on consecutive replay observations
            loss = loss + self.stdim.term(net, self.replay, self.rng, self.device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        cfg = self.config   # lr schedule hook: the lr of gradient update number self.updates (0-based)
        set_lr(optimizer, scheduled_lr(self.updates, cfg.lr, cfg.lr_warmup_steps, cfg.lr_schedule, cfg.lr_decay_steps))
        if self.config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), self.config.max_grad_norm)
        optimizer.step()
        if self.stdim is not None:
            self.stdim.step()
        per_sample = td_loss / (len(q) if self.config.loss_reduction == "sum" else 1)
        return {"loss": per_sample, "q_mean": q.detach().mean().item()}   # loss logged per sample either way

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        self.finish_update()
        return {
            "q": self.q.state_dict(),
            "q_target": self.q_target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "steps": self.steps,
            "updates": self.updates,
            "rng": self.rng.bit_generator.state,
            "growth": [list(g) for g in self.growth],
            **({"stdim": self.stdim.state_dict()} if self.stdim is not None else {}),
            **({"q_actor": self.overlap.actor.state_dict()} if self.overlap is not None else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        self.finish_update()
        self.apply_growth(state.get("growth", []))   # rebuild the grown shapes, then load
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])
        self.updates = int(state["updates"])
        self.rng.bit_generator.state = state["rng"]
        if self.stdim is not None and "stdim" in state:
            self.stdim.load_state_dict(state["stdim"])
        if self.overlap is not None:
            self.overlap.refresh(self.q)
            if "q_actor" in state:   # the actor's one-update-old copy, for a bit-identical resume
                self.overlap.actor.load_state_dict(state["q_actor"])

    def live_metrics(self) -> dict[str, float]:
        return {"epsilon": self.epsilon()}

    # ------------------------------------------------------------------ Net2Net growth
    def grow(self, widen: float = 1.0, deepen: int = 0, noise: float = 0.0) -> dict[str, float]:
        """Net2Net (rewind.agents.net2net): widen every hidden layer by `widen`, then add `deepen` identity
        layers after the last hidden one, keeping the Q-function. Online, target (and every learner of
        ebu-adaptive) use the same mapping; the optimizer is rebuilt with its state mapped. The step is
        recorded in state_dict() so load_state_dict() (resume, eval) replays it on fresh networks."""
        if not widen >= 1.0 or deepen < 0 or noise < 0:
            raise RewindError(f"grow needs widen >= 1, deepen >= 0 and noise >= 0; got {widen}, {deepen}, {noise}")
        self.finish_update()
        if widen != 1.0:
            self._grow_step("widen", float(widen), float(noise))
        if deepen:
            self._grow_step("deepen", int(deepen), float(noise))
        return {"params": float(net2net.count_params(self.q))}

    def apply_growth(self, growth: list) -> None:
        """Replay recorded growth steps (state_dict()["growth"]) not done yet, so saved weights fit."""
        growth = [list(g) for g in growth]
        if growth[:len(self.growth)] != self.growth:
            raise RewindError(f"saved networks were grown by {growth}, this agent's by {self.growth}; "
                              "load them into a freshly built agent")
        for kind, amount, noise in growth[len(self.growth):]:
            self._grow_step(kind, amount, noise)

    def learners_and_optimizers(self) -> list[tuple]:
        """Every trained Q-network with its optimizer (one here; adaptive EBU has K)."""
        return [(self.q, self.optimizer)]

    def replace_optimizers(self, optimizers: list) -> None:
        self.optimizer = optimizers[0]

    def _grow_step(self, kind: str, amount, noise: float) -> None:
        widen, deepen = (amount, 0) if kind == "widen" else (1.0, amount)
        seed = [self.seed % 2**32, len(self.growth)]   # same mapping for every network, and on replay
        cfg, grown = self.config, []
        for net, opt in self.learners_and_optimizers():
            growth = net2net.grow_network(net, widen, deepen, np.random.default_rng(seed), noise)
            new = make_optimizer(cfg.optimizer, net.parameters(), cfg.lr, cfg.opt_eps, cfg.rmsprop_alpha)
            net2net.remap_optimizer(opt, new, growth)
            grown.append(new)
        net2net.grow_network(self.q_target, widen, deepen, np.random.default_rng(seed), noise)
        self.replace_optimizers(grown)
        self.growth.append([kind, amount, noise])
        if self.overlap is not None:
            self.overlap.refresh(self.q)
        if self._compiled is not None:   # new shapes: compile the grown network afresh
            self._compiled = torch.compile(self.q)
