"""ST-DIM auxiliary loss for Q-networks (Anand et al., "Unsupervised State Representation
Learning in Atari", NeurIPS 2019), on the Deep InfoMax bounds of agents/infomax.py.

For consecutive observations (s_t, s_{t+1}) drawn uniformly from the replay:
- global-local: the encoder's global vector of s_{t+1} (the Q-network's last hidden layer),
  projected by W_gl, scores every local feature of s_t (each position of the last conv map);
- local-local: the local feature of s_{t+1} at position n, projected by W_ll, scores the local
  feature of s_t at the same position n.
Negatives are the other observations of the batch; the bound (InfoNCE as in ST-DIM, or JSD)
is averaged over the two terms and positions, and the TD loss gets `aux_weight * (-bound)`.

Deviations from ST-DIM, and why: ST-DIM pretrains an encoder without rewards and evaluates it by
linear probes; here it is an auxiliary loss on the Q-network's own encoder during RL (the use
the issue asks for). The pairs come from a second uniform draw of the replay (for EBU too, whose
TD minibatch is a backward run of one episode), so the TD minibatch and its sampling are unchanged.
Bodies without spatial maps (the MLP) use one "position": the first hidden layer's output.
Net2Net growth after the critic is built is not supported (its shapes are fixed at build).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rewind.agents.infomax import dim_bound, dim_scores
from rewind.agents.networks import MLP, MinAtarCNN, NatureCNN
from rewind.errors import RewindError


def encoder_features(net: nn.Module, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(local (B, N, C), global (B, D)) of a rewind Q-network body."""
    x = obs.float() * net.scale
    if isinstance(net, MinAtarCNN):
        local = net.net[1](net.net[0](x))
        glob = net.net[-2](net.net[-3](net.net[2](local)))
    elif isinstance(net, NatureCNN):
        local = net.features[:-1](x)
        glob = net.head[:-1](net.features[-1](local))
    elif isinstance(net, MLP):
        local = net.net[:3](x)
        glob = net.net[:-1](x)
        return local.unsqueeze(1), glob
    else:
        raise RewindError(f"agent.aux_loss=dim: no encoder split for {type(net).__name__}")
    return local.flatten(2).transpose(1, 2), glob


class STDIMCritic(nn.Module):
    def __init__(self, local_dim: int, global_dim: int):
        super().__init__()
        self.w_gl = nn.Linear(global_dim, local_dim, bias=False)
        self.w_ll = nn.Linear(local_dim, local_dim, bias=False)


def stdim_bound(critic: STDIMCritic, local_t, local_t1, global_t1, estimator: str = "infonce") -> torch.Tensor:
    """Mean of the global-local and local-local bounds (each over positions)."""
    gl = dim_scores(critic.w_gl(global_t1), local_t)                     # (B, B, N)
    ll = torch.einsum("ind,jnd->ijn", critic.w_ll(local_t1), local_t)    # same position n
    return 0.5 * (dim_bound(gl, estimator) + dim_bound(ll, estimator))


def consecutive_pairs(replay, batch_size: int, rng: np.random.Generator, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(s_t, s_{t+1}) for batch_size uniform valid transitions of any rewind replay."""
    low, high = replay.oldest, replay.total - 1
    p = rng.integers(low, max(high, low + 1), size=batch_size)
    for _ in range(100):
        bad = ~replay.is_valid(p)
        if not bad.any():
            break
        p[bad] = rng.integers(low, max(high, low + 1), size=int(bad.sum()))
    else:
        raise RewindError("agent.aux_loss=dim: the replay holds no valid consecutive observations yet")
    return (torch.as_tensor(replay.states(p), device=device), torch.as_tensor(replay.next_states(p), device=device))


class STDIMAux:
    """One critic (and its Adam) per Q-network learner, built on first use; the agent's hook calls
    term(net) before backward and step() after its optimizer step."""

    def __init__(self, cfg, seed: int):
        self.cfg, self.seed = cfg, seed
        self.critics: list[STDIMCritic] = []
        self.opts: list[torch.optim.Optimizer] = []
        self.nets: list[int] = []
        self.last_bound = 0.0
        self._pending = None
        self._saved: dict = {"critics": [], "opts": []}   # a checkpoint's critics, loaded as they are built

    def _critic_of(self, net, local, glob) -> int:
        if id(net) not in self.nets:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed + 7919 * (len(self.nets) + 1))
                critic = STDIMCritic(local.shape[-1], glob.shape[-1]).to(local.device)
            opt = torch.optim.Adam(critic.parameters(), lr=self.cfg.lr)
            k = len(self.nets)
            if k < len(self._saved["critics"]):
                critic.load_state_dict(self._saved["critics"][k])
                opt.load_state_dict(self._saved["opts"][k])
            self.critics.append(critic)
            self.opts.append(opt)
            self.nets.append(id(net))
        return self.nets.index(id(net))

    def term(self, net, replay, rng, device) -> torch.Tensor:
        obs, nxt = consecutive_pairs(replay, self.cfg.batch_size, rng, device)
        local_t, _ = encoder_features(net, obs)
        local_t1, glob_t1 = encoder_features(net, nxt)
        k = self._critic_of(net, local_t, glob_t1)
        self.opts[k].zero_grad(set_to_none=True)
        bound = stdim_bound(self.critics[k], local_t, local_t1, glob_t1, self.cfg.dim_estimator)
        self.last_bound = bound.item()
        self._pending = k
        return -self.cfg.aux_weight * bound

    def step(self) -> None:
        if self._pending is not None:
            self.opts[self._pending].step()
            self._pending = None

    def state_dict(self) -> dict:
        return {"critics": [c.state_dict() for c in self.critics], "opts": [o.state_dict() for o in self.opts]}

    def load_state_dict(self, state: dict) -> None:
        self._saved = state
        for k, (c, o) in enumerate(zip(self.critics, self.opts)):
            if k < len(state["critics"]):
                c.load_state_dict(state["critics"][k])
                o.load_state_dict(state["opts"][k])
