"""Optimizers for value-based agents, including DeepMind's RMSProp.

DeepMind's RMSProp (used by Nature DQN and the EBU authors' code) is centered and puts
epsilon inside the square root: theta -= lr * g / sqrt(E[g^2] - E[g]^2 + eps). torch's
RMSprop adds eps outside the root, which with eps = 0.01 is a different optimizer.
"""

from __future__ import annotations

import torch

from rewind.errors import RewindError


class DeepMindRMSprop(torch.optim.Optimizer):
    def __init__(self, params, lr=2.5e-4, alpha=0.95, eps=0.01):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            sq, avg = [], []
            for p in params:
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.zeros_like(p)
                    state["grad_avg"] = torch.zeros_like(p)
                sq.append(state["square_avg"])
                avg.append(state["grad_avg"])
            a = group["alpha"]
            torch._foreach_mul_(sq, a)
            torch._foreach_addcmul_(sq, grads, grads, value=1 - a)
            torch._foreach_mul_(avg, a)
            torch._foreach_add_(avg, grads, alpha=1 - a)
            denom = torch._foreach_addcmul(sq, avg, avg, value=-1)
            torch._foreach_add_(denom, group["eps"])
            torch._foreach_sqrt_(denom)
            torch._foreach_addcdiv_(params, grads, denom, value=-group["lr"])


OPTIMIZERS = ("adam", "rmsprop", "rmsprop-torch")


def make_optimizer(name: str, params, lr: float, eps: float, alpha: float = 0.95):
    """'rmsprop': DeepMind's; 'rmsprop-torch': torch's centered RMSprop; 'adam'."""
    if name == "adam":
        # fused: one kernel for all parameters; torch's default single-tensor Adam costs ~5 ms
        # per Nature-CNN update on CPU, a quarter of the whole update.
        return torch.optim.Adam(params, lr=lr, eps=eps, fused=True)
    if name == "rmsprop":
        return DeepMindRMSprop(params, lr=lr, alpha=alpha, eps=eps)
    if name == "rmsprop-torch":
        return torch.optim.RMSprop(params, lr=lr, alpha=alpha, eps=eps, centered=True, foreach=True)
    raise RewindError(f"unknown optimizer {name!r}; choose from: {', '.join(OPTIMIZERS)}")
