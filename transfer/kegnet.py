"""KegNet data-free distillation (Yoo, Cho, Kim, Kang, "Knowledge Extraction with No Observable
Data", NeurIPS 2019) with Tucker-2 compression of the teacher's layers.

1. Knowledge extraction: a generator G(y, z) (y a one-hot class, z ~ N(0, I)) and a decoder
   D(x) -> z are trained against the fixed teacher M:
       L = CE(M(G(y, z)), y) + alpha * ||D(G(y, z)) - z||^2 + beta * L_div,
   L_div = exp(-mean_{i,j} ||x_i - x_j|| * ||z_i - z_j||) over the batch (diversity: samples
   whose noises differ must differ). No training data is used.
2. Compression: every nn.Linear / nn.Conv2d of M is replaced by its Tucker-2 decomposition
   (tensorly's partial_tucker on the output and input modes; Kim et al. 2016, used by KegNet):
   conv W (O, I, k, k) -> 1x1 conv I->r_in, kxk conv r_in->r_out (the core, original stride and
   padding), 1x1 conv r_out->O with the bias; linear W (O, I) -> I->r_in, r_in->r_out, r_out->O.
3. Fine-tuning: the student is trained on G's samples to match the teacher's outputs
   (KL between softmax outputs at temperature T, or MSE on raw outputs for Q-networks, whose
   actions are the classes and whose Q-values are the soft targets).

Deviations (documented in docs/training_methods.md): MLP generator and decoder for every input
shape (the authors use MLPs for tabular data and DCGAN-style conv generators for images); the
loss weights alpha = beta = 1 are our defaults; one generator instead of their ensemble of
generators.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rewind.errors import RewindError


def _tensorly():
    try:
        import tensorly as tl
        from tensorly.decomposition import partial_tucker
    except ImportError:
        raise RewindError("Tucker decomposition needs tensorly: pip install rewind-rl[tucker]") from None
    tl.set_backend("numpy")
    return tl, partial_tucker


def tucker2(weight: torch.Tensor, ranks: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tucker-2 of a (O, I, ...) weight on modes 0 and 1: (core (r_out, r_in, ...), U_out (O, r_out),
    U_in (I, r_in)) with weight ~= core x_0 U_out x_1 U_in."""
    tl, partial_tucker = _tensorly()
    r_out, r_in = ranks
    if not (1 <= r_out <= weight.shape[0] and 1 <= r_in <= weight.shape[1]):
        raise RewindError(f"Tucker ranks {ranks} outside 1..{tuple(weight.shape[:2])}")
    cap_out, cap_in = max_ranks(weight.shape)   # a mode's rank is at most the rank of its unfolding
    r_out, r_in = min(r_out, cap_out), min(r_in, cap_in)
    (core, (u_out, u_in)), _ = partial_tucker(weight.detach().cpu().double().numpy(), rank=[r_out, r_in],
                                              modes=[0, 1], init="svd", n_iter_max=50)
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(weight.dtype)
    return as_t(core), as_t(u_out), as_t(u_in)


def max_ranks(shape) -> tuple[int, int]:
    """Largest useful Tucker-2 ranks of a (O, I, ...) weight: each mode's unfolding rank bound."""
    o, i = shape[:2]
    k = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return min(o, i * k), min(i, o * k)


def tucker_reconstruct(core: torch.Tensor, u_out: torch.Tensor, u_in: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ab...,oa,ib->oi...", core, u_out, u_in)


def decompose_layer(layer: nn.Module, ranks: tuple[int, int]) -> nn.Sequential:
    """A Linear or Conv2d replaced by three layers computing its Tucker-2 approximation."""
    core, u_out, u_in = tucker2(layer.weight, ranks)
    r_out, r_in = core.shape[:2]
    if isinstance(layer, nn.Linear):
        first, mid = nn.Linear(layer.in_features, r_in, bias=False), nn.Linear(r_in, r_out, bias=False)
        last = nn.Linear(r_out, layer.out_features, bias=layer.bias is not None)
        first.weight.data, mid.weight.data, last.weight.data = u_in.T.contiguous(), core, u_out
    elif isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            raise RewindError("Tucker-2 of grouped convolutions is not supported")
        first = nn.Conv2d(layer.in_channels, r_in, 1, bias=False)
        mid = nn.Conv2d(r_in, r_out, layer.kernel_size, stride=layer.stride, padding=layer.padding,
                        dilation=layer.dilation, bias=False)
        last = nn.Conv2d(r_out, layer.out_channels, 1, bias=layer.bias is not None)
        first.weight.data = u_in.T.reshape(r_in, layer.in_channels, 1, 1).contiguous()
        mid.weight.data = core.contiguous()
        last.weight.data = u_out.reshape(layer.out_channels, r_out, 1, 1).contiguous()
    else:
        raise RewindError(f"Tucker-2 decomposes Linear and Conv2d layers, not {type(layer).__name__}")
    if layer.bias is not None:
        last.bias.data = layer.bias.detach().clone()
    return nn.Sequential(first, mid, last)


def ranks_for_ratio(layer: nn.Module, ratio: float) -> tuple[int, int]:
    """Ranks so that the three layers hold about 1/ratio of the layer's weights (at least rank 1).

    Linear layers: equal ranks r (Tucker-2 of a matrix is a truncated SVD, and equal ranks keep
    the most rank per parameter: a 1024 -> 128 layer at ratio 2 keeps rank 55, where the same
    fraction of both sides would keep 8 x 62). Conv layers: the same fraction of O and I.
    """
    o, i = layer.weight.shape[:2]
    k = int(np.prod(layer.weight.shape[2:])) if layer.weight.dim() > 2 else 1
    cap_o, cap_i = max_ranks(layer.weight.shape)
    target = o * i * k / ratio
    if k == 1:
        for r in range(min(cap_o, cap_i), 0, -1):
            if r * (o + i) + r * r <= target:
                return r, r
        return 1, 1
    best = (1, 1)
    for f in np.linspace(1.0, 0.0, 201)[:-1]:
        ro, ri = max(1, min(cap_o, round(f * o))), max(1, min(cap_i, round(f * i)))
        if i * ri + ri * ro * k + ro * o <= target:
            return ro, ri
        best = (ro, ri)
    return best


def tucker_decompose(net: nn.Module, ranks=None, ratio: float | None = None, skip_last: bool = False) -> nn.Module:
    """A copy of `net` with every Linear/Conv2d replaced by its Tucker-2 layers. ranks: one
    (r_out, r_in) for all layers, or a list per layer in module order; or a target ratio."""
    if (ranks is None) == (ratio is None):
        raise RewindError("give Tucker ranks or a compression ratio, not both")
    if ratio is not None and ratio < 1:
        raise RewindError(f"compression ratio must be >= 1, got {ratio}")
    student = copy.deepcopy(net)
    targets = [(parent, name, m) for parent in student.modules() for name, m in parent.named_children()
               if isinstance(m, (nn.Linear, nn.Conv2d))]
    if skip_last and targets:
        targets = targets[:-1]
    for n, (parent, name, layer) in enumerate(targets):
        r = (ranks_for_ratio(layer, ratio) if ratio is not None
             else tuple(ranks[n]) if isinstance(ranks, list) else tuple(ranks))
        setattr(parent, name, decompose_layer(layer, r))
    return student


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ---------------------------------------------------------------------- knowledge extraction
class Generator(nn.Module):
    """G(y, z): one-hot class and noise -> an input of `in_shape` (MLP with BatchNorm)."""

    def __init__(self, n_classes: int, in_shape: tuple[int, ...], noise_dim: int = 10, hidden: int = 128,
                 out_range: tuple[float, float] | None = None):
        super().__init__()
        self.n_classes, self.in_shape, self.noise_dim, self.out_range = n_classes, tuple(in_shape), noise_dim, out_range
        d = int(np.prod(in_shape))
        self.net = nn.Sequential(nn.Linear(n_classes + noise_dim, hidden), nn.BatchNorm1d(hidden), nn.ELU(),
                                 nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ELU(), nn.Linear(hidden, d))

    def forward(self, y_onehot: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = self.net(torch.cat([y_onehot, z], 1)).view(-1, *self.in_shape)
        if self.out_range is None:
            return x
        lo, hi = self.out_range      # bounded observations (MinAtar 0/1, Atari 0..255): squash into the box
        return lo + (hi - lo) * torch.sigmoid(x)


class Decoder(nn.Module):
    """D(x) -> z."""

    def __init__(self, in_shape: tuple[int, ...], noise_dim: int = 10, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(in_shape)), hidden), nn.ELU(),
                                 nn.Linear(hidden, noise_dim))

    def forward(self, x):
        return self.net(x)


def diversity_loss(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """exp(-mean_{i,j} ||x_i - x_j|| ||z_i - z_j||) (KegNet's diversity term)."""
    dx = torch.cdist(x.flatten(1), x.flatten(1))
    dz = torch.cdist(z, z)
    return torch.exp(-(dx * dz).mean())


def kegnet_loss(teacher_out, y, z, z_hat, x, alpha: float = 1.0, beta: float = 1.0):
    """(total, parts): CE(M(x), y) + alpha MSE(D(x), z) + beta L_div."""
    cls = F.cross_entropy(teacher_out, y)
    dec = F.mse_loss(z_hat, z)
    div = diversity_loss(x, z)
    return cls + alpha * dec + beta * div, {"cls": cls.item(), "dec": dec.item(), "div": div.item()}


def sample_inputs(n: int, n_classes: int, noise_dim: int, gen: torch.Generator):
    y = torch.randint(0, n_classes, (n,), generator=gen)
    z = torch.randn(n, noise_dim, generator=gen)
    return y, F.one_hot(y, n_classes).float(), z


def train_generator(teacher: nn.Module, n_classes: int, in_shape, steps: int = 500, batch: int = 64,
                    lr: float = 1e-3, noise_dim: int = 10, alpha: float = 1.0, beta: float = 1.0,
                    out_range: tuple[float, float] | None = None, seed: int = 0) -> tuple[Generator, list[dict]]:
    """Knowledge extraction: train G and D against the frozen teacher; returns G and the losses."""
    torch.manual_seed(seed)
    g = Generator(n_classes, in_shape, noise_dim, out_range=out_range)
    d = Decoder(in_shape, noise_dim)
    teacher = teacher.eval().requires_grad_(False)
    opt = torch.optim.Adam(list(g.parameters()) + list(d.parameters()), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    log = []
    for _ in range(steps):
        y, yo, z = sample_inputs(batch, n_classes, noise_dim, gen)
        x = g(yo, z)
        loss, parts = kegnet_loss(teacher(x), y, z, d(x), x, alpha, beta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log.append(parts)
    return g.eval(), log


def fine_tune(student: nn.Module, teacher: nn.Module, sampler, steps: int = 500, lr: float = 1e-3,
              loss: str = "kl", temperature: float = 1.0) -> nn.Module:
    """Train `student` to match `teacher` on inputs from sampler() (generated or real)."""
    teacher = teacher.eval().requires_grad_(False)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    student.train()
    for _ in range(steps):
        x = sampler()
        with torch.no_grad():
            t = teacher(x)
        s = student(x)
        if loss == "kl":
            lt = F.log_softmax(t / temperature, 1)
            ls = F.log_softmax(s / temperature, 1)
            obj = F.kl_div(ls, lt, log_target=True, reduction="batchmean") * temperature ** 2
        elif loss == "mse":
            obj = F.mse_loss(s, t)
        else:
            raise RewindError(f"fine-tuning loss must be kl or mse, got {loss!r}")
        opt.zero_grad(set_to_none=True)
        obj.backward()
        opt.step()
    return student.eval()


def generator_sampler(g: Generator, batch: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)

    def sample():
        _, yo, z = sample_inputs(batch, g.n_classes, g.noise_dim, gen)
        with torch.no_grad():
            return g(yo, z)
    return sample


# ---------------------------------------------------------------------- Q-network teachers
def data_free_q_distill(teacher_path: str, ranks=None, ratio: float | None = None, gen_steps: int = 1000,
                        tune_steps: int = 1000, batch: int = 64, lr: float = 1e-3, eval_episodes: int | None = None,
                        seed: int = 0) -> dict:
    """KegNet for a rewind Q-network checkpoint: actions are the classes (CE on the teacher's Q as
    logits trains G), the student is the Tucker-2 teacher, fine-tuned on G's samples with MSE to the
    teacher's Q-values. Returns parameter counts, evaluation returns (teacher, decomposed, fine-tuned;
    the teacher's protocol) and the student module."""
    import gymnasium as gym

    from rewind.run.loop import eval_seed, evaluate
    from rewind.transfer.distill import load_teacher

    agent, env, meta = load_teacher(teacher_path)
    space = env.observation_space
    if not isinstance(space, gym.spaces.Box):
        raise RewindError(f"--data-free needs Box observations, the teacher's env has {space}")
    lo, hi = float(np.min(space.low)), float(np.max(space.high))
    out_range = (lo, hi) if np.isfinite(lo) and np.isfinite(hi) else None
    teacher = agent.q
    g, log = train_generator(teacher, agent.n_actions, space.shape, steps=gen_steps, batch=batch, lr=lr,
                             out_range=out_range, seed=seed)
    student = tucker_decompose(teacher, ranks=ranks, ratio=ratio)
    t_run = meta.get("run") or {}
    episodes = eval_episodes if eval_episodes is not None else int(t_run.get("eval_episodes", 10))
    protocol = dict(episodes=episodes, epsilon=float(t_run.get("eval_epsilon", 0.05)),
                    max_steps=int(t_run.get("eval_max_steps", 27_000)), seed=eval_seed(seed))

    def returns(net):
        agent.q = net.eval()
        return evaluate(agent, env, **protocol)["return_mean"]

    out = {"teacher_params": n_params(teacher), "student_params": n_params(student),
           "teacher_return": returns(teacher), "decomposed_return": returns(student),
           "generator_final": log[-1]}
    student = fine_tune(student, teacher, generator_sampler(g, batch, seed), steps=tune_steps, lr=lr, loss="mse")
    out["finetuned_return"] = returns(student)
    agent.q = teacher
    out["student"] = student
    return out
