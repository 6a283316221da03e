"""Multi-task heads: shared-bottom, OMoE and MMoE (Ma et al., KDD 2018), one output per task.

- shared-bottom: one ReLU layer shared by all tasks, then a tower per task (Caruana 1997).
- omoe: n experts (one ReLU layer each) mixed by ONE softmax gate shared by all tasks.
- mmoe: the same experts, one softmax gate per task: task k's tower sees sum_i g_k(x)_i f_i(x).

Gates are linear-softmax in the input, as in the paper. ``shared_bottom_units`` sizes the
shared bottom so the baseline has the MMoE's parameter count (the paper compares at equal
parameter counts); ``param_count`` reports what each head really has.
"""

from __future__ import annotations

import torch
from torch import nn

HEADS = ("shared-bottom", "omoe", "mmoe")


class _Towers(nn.Module):
    def __init__(self, n_in: int, tower: int, n_tasks: int):
        super().__init__()
        self.towers = nn.ModuleList(nn.Sequential(nn.Linear(n_in, tower), nn.ReLU(), nn.Linear(tower, 1))
                                    for _ in range(n_tasks))


class SharedBottom(_Towers):
    def __init__(self, n_in: int, n_tasks: int = 2, units: int = 64, tower: int = 8):
        super().__init__(units, tower, n_tasks)
        self.bottom = nn.Sequential(nn.Linear(n_in, units), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, n_in) -> (B, n_tasks)."""
        h = self.bottom(x)
        return torch.cat([t(h) for t in self.towers], 1)


class MixtureOfExperts(_Towers):
    """n_gates = n_tasks: MMoE; n_gates = 1: OMoE (every task gets the same mixture)."""

    def __init__(self, n_in: int, n_tasks: int = 2, n_experts: int = 8, expert_units: int = 16,
                 tower: int = 8, n_gates: int | None = None):
        super().__init__(expert_units, tower, n_tasks)
        self.n_tasks = n_tasks
        n_gates = n_tasks if n_gates is None else n_gates
        bound = n_in ** -0.5   # nn.Linear's default init range, per expert
        self.expert_w = nn.Parameter(torch.empty(n_experts, n_in, expert_units).uniform_(-bound, bound))
        self.expert_b = nn.Parameter(torch.empty(n_experts, 1, expert_units).uniform_(-bound, bound))
        self.gates = nn.ModuleList(nn.Linear(n_in, n_experts) for _ in range(n_gates))

    def gate_weights(self, x: torch.Tensor) -> torch.Tensor:
        """(n_tasks, B, n_experts): the softmax mixture each task's tower receives."""
        g = torch.stack([torch.softmax(gate(x), -1) for gate in self.gates])
        return g.expand(self.n_tasks, -1, -1) if len(self.gates) == 1 else g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        experts = torch.relu(torch.matmul(x.unsqueeze(0), self.expert_w) + self.expert_b)   # (E, B, U)
        mixed = torch.einsum("tbe,ebu->tbu", self.gate_weights(x), experts)
        return torch.cat([tower(mixed[k]) for k, tower in enumerate(self.towers)], 1)


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def shared_bottom_units(n_in: int, n_tasks: int, target_params: int, tower: int = 8) -> int:
    """Bottom width whose shared-bottom head has about `target_params` parameters."""
    # params = (n_in + 1) u + n_tasks ((u + 1) tower + tower + 1)
    per_unit = n_in + 1 + n_tasks * tower
    fixed = n_tasks * (2 * tower + 1)
    return max(1, round((target_params - fixed) / per_unit))


def make_head(kind: str, n_in: int, n_tasks: int = 2, *, n_experts: int = 8, expert_units: int = 16,
              tower: int = 8) -> nn.Module:
    """A head of `kind`; shared-bottom is sized to the MMoE's parameter count."""
    if kind == "mmoe":
        return MixtureOfExperts(n_in, n_tasks, n_experts, expert_units, tower)
    if kind == "omoe":
        return MixtureOfExperts(n_in, n_tasks, n_experts, expert_units, tower, n_gates=1)
    if kind == "shared-bottom":
        target = param_count(MixtureOfExperts(n_in, n_tasks, n_experts, expert_units, tower))
        return SharedBottom(n_in, n_tasks, shared_bottom_units(n_in, n_tasks, target, tower), tower)
    raise ValueError(f"head must be one of {', '.join(HEADS)}, got {kind!r}")


def train_regression(head: nn.Module, x, y, *, steps: int = 2000, batch_size: int = 128, lr: float = 1e-3,
                     seed: int = 0) -> nn.Module:
    """Plain supervised training of a multi-task head: Adam on the sum of the tasks' MSE."""
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch_size,), generator=gen)
        loss = ((head(x[idx]) - y[idx]) ** 2).mean(0).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return head


@torch.no_grad()
def task_mse(head: nn.Module, x, y) -> list[float]:
    """Test MSE of each task."""
    err = (head(torch.as_tensor(x)) - torch.as_tensor(y)) ** 2
    return err.mean(0).tolist()
