"""Distillation as an Agent: a smaller Q-network student learns a trained teacher's outputs.

The run loop drives it like any agent: per env step the acting policy (the teacher's or the
student's, epsilon-greedy) picks an action, the teacher labels the state with its Q-values,
and (state, teacher Q) goes to a replay memory, as Rusu et al. (2016) store the teacher's
Q-values; minibatches from it train the student with one of three losses (`agent.loss`):

- ``kd``: Hinton et al. (2015), KL(softmax(z_t/T) || softmax(z_s/T)) * T^2, with the Q-values
  as logits (T = ``kd_temperature``, default 4 as in Park et al.'s released KD term).
- ``policy``: Rusu et al. (2016), KL(softmax(Q_t/tau) || softmax(Q_s)): a sharpened teacher
  (tau = ``policy_tau``, their best 0.01), the student at temperature 1.
- ``rkd``: Park et al. (2019) relational KD on the penultimate embeddings (the input of the
  last linear layer; teacher and student widths may differ): distance-wise loss (pairwise
  distances divided by their mean, Huber) weighted 25, angle-wise loss (cosines of all
  triplet angles, Huber) weighted 50, the weights of their classification experiments and
  released code. RKD alone transfers no outputs, so (as Park et al. add it to a task/KD
  loss) ``rkd`` = the output term ``rkd_output`` (kd by default, their released recipe)
  + the two RKD terms.

The student acts greedily on its own outputs (argmax, which is the same for Q-values and
logits). Checkpoints hold only the student: `rewind eval` rebuilds this agent from the run
metadata and never loads the teacher, which is loaded lazily on the first training step.

Documented choices (all configurable):
- experience ``teacher`` (Rusu et al.: the teacher acts and fills the memory) or ``student``
  (on-policy: the student acts, the teacher labels its states); both act epsilon-greedily
  with ``collect_epsilon`` (0.05, the usual DQN evaluation epsilon).
- Teacher embeddings for RKD are recomputed on each minibatch (the teacher is frozen, so this
  equals storing them) instead of being stored beside the Q-values.
- Optimizer Adam lr 1e-3 with one minibatch of 32 every env step (Rusu et al. used RMSProp;
  `agent.optimizer=rmsprop` selects DeepMind's).
- Student architecture: the teacher's network kind and hidden sizes with ``width`` as the
  width multiplier (`rewind distill` fills these from the teacher; 0.5 on MinAtar gives a
  quarter of the parameters). RKD uses raw embeddings (Park et al.'s classification code
  L2-normalises them first; the distance and angle terms are scale-invariant either way).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rewind.agents.base import Agent
from rewind.agents.device import resolve_device
from rewind.agents.dqn import learning_due
from rewind.agents.networks import NETWORKS, n_discrete_actions, q_values, seeded_q_network
from rewind.agents.optim import OPTIMIZERS, make_optimizer
from rewind.buffers.replay import UniformReplay
from rewind.errors import RewindError

LOSSES = ("kd", "policy", "rkd")
EXPERIENCE = ("teacher", "student")


@dataclasses.dataclass
class DistillConfig:
    teacher: str = ""                # teacher checkpoint (written by `rewind train`); loaded lazily
    network: str = "auto"            # student network kind (rewind distill copies the teacher's)
    hidden: tuple[int, ...] = (256, 256)  # MLP hidden sizes before `width` (copied from the teacher)
    width: float = 0.5               # student width multiplier of every hidden layer
    loss: str = "policy"             # kd | policy | rkd
    kd_temperature: float = 4.0      # Hinton KD temperature T (teacher and student softened, loss * T^2)
    policy_tau: float = 0.01         # Rusu et al. teacher temperature; the student's is 1
    rkd_output: str = "kd"           # output term added to the RKD terms: kd | policy
    rkd_distance_weight: float = 25.0  # Park et al. lambda_D (classification)
    rkd_angle_weight: float = 50.0     # Park et al. lambda_A (classification)
    experience: str = "teacher"      # whose epsilon-greedy policy acts while collecting: teacher | student
    collect_epsilon: float = 0.05    # epsilon of the acting policy
    optimizer: str = "adam"          # adam | rmsprop (DeepMind's) | rmsprop-torch
    lr: float = 1e-3
    opt_eps: float = 1e-8
    rmsprop_alpha: float = 0.95
    batch_size: int = 32
    buffer_size: int = 100_000       # (state, teacher Q) pairs kept
    learning_starts: int = 1_000     # env steps before the first update
    update_every: int = 1            # env steps between learning phases
    gradient_steps: int = 1          # minibatches per learning phase
    max_grad_norm: float = 0.0       # 0 disables gradient clipping
    device: str = "auto"             # auto | cpu | cuda

    def validate(self):
        if not self.teacher:
            raise RewindError("agent.teacher is required: the teacher's checkpoint.pt or run directory")
        if self.loss not in LOSSES:
            raise RewindError(f"agent.loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.rkd_output not in ("kd", "policy"):
            raise RewindError(f"agent.rkd_output must be kd or policy, got {self.rkd_output!r}")
        if self.experience not in EXPERIENCE:
            raise RewindError(f"agent.experience must be teacher or student, got {self.experience!r}")
        if self.network not in NETWORKS:
            raise RewindError(f"agent.network must be one of {', '.join(NETWORKS)}, got {self.network!r}")
        if self.optimizer not in OPTIMIZERS:
            raise RewindError(f"agent.optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.width <= 0:
            raise RewindError(f"agent.width must be > 0, got {self.width}")
        for name in ("kd_temperature", "policy_tau", "lr"):
            if getattr(self, name) <= 0:
                raise RewindError(f"agent.{name} must be > 0")
        for name in ("batch_size", "buffer_size", "update_every", "gradient_steps"):
            if getattr(self, name) < 1:
                raise RewindError(f"agent.{name} must be >= 1")
        if self.loss == "rkd" and self.batch_size < 3:
            raise RewindError("agent.batch_size must be >= 3 for rkd (angles need triplets)")
        if not 0 <= self.collect_epsilon <= 1:
            raise RewindError("agent.collect_epsilon must be in [0, 1]")


# ---------------------------------------------------------------------- losses
def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton KD: KL(softmax(t/T) || softmax(s/T)) * T^2, mean over the batch."""
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean") * temperature ** 2


def policy_distillation_loss(student_q: torch.Tensor, teacher_q: torch.Tensor, tau: float) -> torch.Tensor:
    """Rusu et al. 2016: KL(softmax(Q_t/tau) || softmax(Q_s)), mean over the batch."""
    log_p_t = F.log_softmax(teacher_q / tau, dim=1)
    return F.kl_div(F.log_softmax(student_q, dim=1), log_p_t, log_target=True, reduction="batchmean")


def _normalized_distances(e: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances divided by their mean over the N(N-1) off-diagonal pairs."""
    n = len(e)
    d = torch.cdist(e, e)
    return d / (d.sum() / (n * (n - 1))).clamp(min=1e-12)


def rkd_distance_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    """Park et al. RKD-D: Huber between pairwise distances, each set divided by its mean."""
    with torch.no_grad():
        t = _normalized_distances(teacher_emb.float())
    return F.smooth_l1_loss(_normalized_distances(student_emb.float()), t)


def _angles(e: torch.Tensor) -> torch.Tensor:
    """cos of the angle at j in every triplet (i, j, k): <e_i - e_j, e_k - e_j> of unit vectors."""
    d = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)   # d[j, i] = unit(e_i - e_j)
    return torch.bmm(d, d.transpose(1, 2)).reshape(-1)


def rkd_angle_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    """Park et al. RKD-A: Huber between the cosines of all triplet angles."""
    with torch.no_grad():
        t = _angles(teacher_emb.float())
    return F.smooth_l1_loss(_angles(student_emb.float()), t)


# ---------------------------------------------------------------------- helpers
def last_linear(net: nn.Module) -> nn.Linear:
    layers = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise RewindError(f"{type(net).__name__} has no linear output layer; RKD needs one")
    return layers[-1]


def forward_with_embedding(net: nn.Module, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(outputs, penultimate embedding = the input of the last linear layer), any Q-network."""
    store = {}

    def grab(module, inputs, output):  # returns None: the output is left as it is
        store["e"] = inputs[0]

    hook = last_linear(net).register_forward_hook(grab)
    try:
        out = net(obs)
    finally:
        hook.remove()
    return out, store["e"]


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def load_teacher(path: str | Path):
    """(teacher agent, its eval env, meta) from a checkpoint; the agent must hold a Q-network `.q`."""
    from rewind.transfer import load_agent

    agent, env, meta = load_agent(path)
    if not isinstance(getattr(agent, "q", None), nn.Module):
        raise RewindError(f"teacher {path} is a {meta['agent']!r} agent without a Q-network; "
                          "distil from a dqn, ebu or distill checkpoint")
    agent.q.eval().requires_grad_(False)
    return agent, env, meta


def agreement(student: nn.Module, teacher: nn.Module, states: np.ndarray, batch: int = 1024) -> float:
    """Fraction of `states` on which student and teacher pick the same greedy action."""
    same = 0
    device = next(student.parameters()).device
    with torch.inference_mode():
        for i in range(0, len(states), batch):
            x = torch.as_tensor(states[i:i + batch], device=device)
            same += int((student(x).argmax(1) == teacher(x.to(next(teacher.parameters()).device))
                         .argmax(1).to(device)).sum())
    return same / max(1, len(states))


def collect_states(agent: Agent, env, n: int, seed: int, epsilon: float = 0.05) -> np.ndarray:
    """n states visited by `agent` (epsilon-greedy) in episodes reset with seeds seed, seed+1, ..."""
    rng = np.random.default_rng(seed)
    states, episode = [], 0
    obs, _ = env.reset(seed=seed)
    while len(states) < n:
        states.append(np.asarray(obs))
        action = env.action_space.sample() if rng.random() < epsilon else agent.act(obs, explore=False)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            episode += 1
            obs, _ = env.reset(seed=seed + episode)
    return np.stack(states)


class DistillReplay(UniformReplay):
    """Replay of states with the teacher's Q-values of each (Rusu et al.'s memory)."""

    _ARRAYS = UniformReplay._ARRAYS + ("teacher_q",)

    def __init__(self, capacity, obs_shape, obs_dtype, n_actions, frame_stack=1):
        super().__init__(capacity, obs_shape, obs_dtype, n_actions=n_actions, frame_stack=frame_stack)
        self.teacher_q = np.zeros((self.capacity, n_actions), dtype=np.float32)

    def add_labeled(self, obs, action, reward, next_obs, terminated, truncated, info, teacher_q) -> int:
        p = self.add(obs, action, reward, next_obs, terminated, truncated, info)
        self.teacher_q[p % self.capacity] = teacher_q
        return p

    def nbytes(self) -> int:
        return super().nbytes() + self.teacher_q.nbytes


# ---------------------------------------------------------------------- agent
class DistillAgent(Agent):
    Config = DistillConfig

    def __init__(self, observation_space, action_space, config=None, *, seed=0, frame_stack=1):
        super().__init__(observation_space, action_space, config, seed=seed, frame_stack=frame_stack)
        cfg = self.config
        cfg.validate()
        self.n_actions = n_discrete_actions(action_space, "DistillAgent")
        self.device = resolve_device(cfg.device)
        self.q = seeded_q_network(cfg, observation_space, self.n_actions, seed, self.device)
        self.optimizer = make_optimizer(cfg.optimizer, self.q.parameters(), cfg.lr, cfg.opt_eps, cfg.rmsprop_alpha)
        self.rng = np.random.default_rng(seed)
        self.replay = DistillReplay(cfg.buffer_size, observation_space.shape, observation_space.dtype,
                                    self.n_actions, frame_stack)
        self.teacher_q = None       # the teacher's Q-network, loaded on first use
        self._labeled = (None, None)  # (obs object, teacher Q) cached between act and observe
        self.steps = 0
        self.updates = 0

    # ------------------------------------------------------------------ teacher
    def teacher(self) -> nn.Module:
        """The frozen teacher Q-network; checks it fits this env the first time."""
        if self.teacher_q is None:
            agent, _, meta = load_teacher(self.config.teacher)
            t_shape = tuple(agent.observation_space.shape)
            if t_shape != tuple(self.observation_space.shape) or agent.n_actions != self.n_actions:
                raise RewindError(
                    f"teacher {self.config.teacher} was trained on {meta['env']} (observations {t_shape}, "
                    f"{agent.n_actions} actions); this env has observations {tuple(self.observation_space.shape)}"
                    f" and {self.n_actions} actions")
            self.teacher_q = agent.q.to(self.device)
        return self.teacher_q

    def label(self, obs) -> np.ndarray:
        """Teacher Q-values of one observation (reused if act just computed them)."""
        cached_obs, q = self._labeled
        if cached_obs is obs:
            return q
        q = q_values(self.teacher(), obs, self.device).float().cpu().numpy()
        self._labeled = (obs, q)
        return q

    # ------------------------------------------------------------------ acting
    def greedy_action(self, obs) -> int:
        return int(q_values(self.q, obs, self.device).argmax())

    def act(self, obs, explore: bool = True):
        if not explore:
            return self.greedy_action(obs)
        if self.rng.random() < self.config.collect_epsilon:
            return int(self.rng.integers(self.n_actions))
        if self.config.experience == "teacher":
            return int(np.argmax(self.label(obs)))
        return self.greedy_action(obs)

    def observe(self, obs, action, reward, next_obs, terminated, truncated, info) -> None:
        self.replay.add_labeled(obs, action, reward, next_obs, terminated, truncated, info, self.label(obs))
        self._labeled = (None, None)
        self.steps += 1

    # ------------------------------------------------------------------ learning
    def update(self) -> dict[str, float]:
        cfg = self.config
        if not learning_due(self.steps, cfg):
            return {}
        for _ in range(cfg.gradient_steps):
            metrics = self.learn()
            self.updates += 1
        return metrics

    def output_loss(self, student_out, teacher_q, kind: str) -> torch.Tensor:
        if kind == "kd":
            return kd_loss(student_out, teacher_q, self.config.kd_temperature)
        return policy_distillation_loss(student_out, teacher_q, self.config.policy_tau)

    def learn(self) -> dict[str, float]:
        """One minibatch of (state, teacher Q) pairs; one optimizer step on the chosen loss."""
        cfg = self.config
        idx = self.replay.sample_indices(cfg.batch_size, self.rng)
        obs = torch.from_numpy(self.replay.states(idx)).to(self.device)
        teacher_q = torch.from_numpy(self.replay.teacher_q[idx % self.replay.capacity]).to(self.device)
        metrics = {}
        if cfg.loss == "rkd":
            out, emb = forward_with_embedding(self.q, obs)
            with torch.no_grad():
                _, t_emb = forward_with_embedding(self.teacher(), obs)
            term = self.output_loss(out, teacher_q, cfg.rkd_output)
            dist = rkd_distance_loss(emb, t_emb)
            angle = rkd_angle_loss(emb, t_emb)
            loss = term + cfg.rkd_distance_weight * dist + cfg.rkd_angle_weight * angle
            metrics.update(output_loss=term.item(), rkd_distance=dist.item(), rkd_angle=angle.item())
        else:
            out = self.q(obs)
            loss = self.output_loss(out, teacher_q, cfg.loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.q.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        agree = (out.detach().argmax(1) == teacher_q.argmax(1)).float().mean().item()
        return {"loss": loss.item(), "batch_agreement": agree, **metrics}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {"q": self.q.state_dict(), "optimizer": self.optimizer.state_dict(), "steps": self.steps,
                "updates": self.updates, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.q.load_state_dict(state["q"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])
        self.updates = int(state["updates"])
        self.rng.bit_generator.state = state["rng"]

    def live_metrics(self) -> dict[str, float]:
        return {"epsilon": self.config.collect_epsilon}
