"""Q-networks: the Nature DQN CNN, the MinAtar CNN and an MLP, picked from the observation space."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rewind.errors import RewindError


class NatureCNN(nn.Module):
    """Mnih et al. 2015: 32x8x8/4, 64x4x4/2, 64x3x3/1, 512 hidden; uint8 frames scaled by 1/255."""

    def __init__(self, in_channels: int, n_actions: int, input_hw=(84, 84), scale: float = 1 / 255,
                 width: float = 1.0):
        super().__init__()
        self.scale = scale
        c1, c2, c3, hidden = (_scaled(n, width) for n in (32, 64, 64, 512))
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 8, stride=4), nn.ReLU(),
            nn.Conv2d(c1, c2, 4, stride=2), nn.ReLU(),
            nn.Conv2d(c2, c3, 3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flat = self.features(torch.zeros(1, in_channels, *input_hw)).shape[1]
        self.head = nn.Sequential(nn.Linear(n_flat, hidden), nn.ReLU(), nn.Linear(hidden, n_actions))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(obs.float() * self.scale))


class MinAtarCNN(nn.Module):
    """Young & Tian 2019: one 16x3x3 conv, 128 hidden units."""

    def __init__(self, in_channels: int, n_actions: int, input_hw=(10, 10), scale: float = 1.0,
                 width: float = 1.0):
        super().__init__()
        self.scale = scale
        h, w = input_hw
        channels, hidden = _scaled(16, width), _scaled(128, width)
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, stride=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(channels * (h - 2) * (w - 2), hidden), nn.ReLU(), nn.Linear(hidden, n_actions),
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.float() * self.scale)


class MLP(nn.Module):
    """Fully connected Q-network for vector (or flattened) observations."""

    def __init__(self, in_features: int, n_actions: int, hidden=(256, 256), scale: float = 1.0):
        super().__init__()
        self.scale = scale
        layers, width = [nn.Flatten()], in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, n_actions))
        self.net = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.float() * self.scale)


def _scaled(n: int, width: float) -> int:
    """Layer size n times the width multiplier (students, Net2Net targets), at least 1."""
    return max(1, round(n * width))


def q_values(net: nn.Module, obs, device: torch.device) -> torch.Tensor:
    """The network's outputs (A,) for one observation, without autograd: what acting needs."""
    with torch.inference_mode():
        return net(torch.as_tensor(np.asarray(obs), device=device).unsqueeze(0))[0]


def seeded_q_network(cfg, observation_space: gym.Space, n_actions: int, seed: int, device) -> nn.Module:
    """The Q-network a config asks for (network, hidden, width), its init drawn from `seed` alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_q_network(cfg.network, observation_space, n_actions, cfg.hidden, cfg.width).to(device)


def n_discrete_actions(action_space: gym.Space, who: str) -> int:
    """Q-networks need a Discrete action space: its size, or a clear error naming the agent."""
    if not isinstance(action_space, gym.spaces.Discrete):
        raise RewindError(f"{who} needs a Discrete action space, got {action_space}")
    return int(action_space.n)


NETWORKS = ("auto", "nature", "minatar", "mlp")


def _scale_for(space: gym.spaces.Box) -> float:
    """uint8 pixels in [0, 255] are scaled to [0, 1]; anything else is fed as is."""
    if space.dtype == np.uint8 and np.all(space.high == 255):
        return 1 / 255
    return 1.0


def build_q_network(kind: str, observation_space: gym.Space, n_actions: int, hidden=(256, 256),
                    width: float = 1.0) -> nn.Module:
    """A Q-network for this observation space. kind 'auto': image -> CNN by size, vector -> MLP.

    `width` multiplies every hidden layer's size (conv channels and hidden units; MLP hidden sizes).
    """
    if width <= 0:
        raise RewindError(f"agent.width must be > 0, got {width}")
    if not isinstance(observation_space, gym.spaces.Box):
        raise RewindError(f"Q-networks need Box observations, got {observation_space}")
    shape = observation_space.shape
    scale = _scale_for(observation_space)
    if kind == "auto":
        kind = ("nature" if shape[-1] >= 36 else "minatar") if len(shape) == 3 else "mlp"
    if kind == "nature":
        # channels_last weights: conv backward on CPU runs ~15% faster; inputs stay NCHW.
        return NatureCNN(shape[0], n_actions, shape[1:], scale, width).to(memory_format=torch.channels_last)
    if kind == "minatar":
        return MinAtarCNN(shape[0], n_actions, shape[1:], scale, width)
    if kind == "mlp":
        return MLP(int(np.prod(shape)), n_actions, tuple(_scaled(h, width) for h in hidden), scale)
    raise RewindError(f"unknown network {kind!r}; choose from: {', '.join(NETWORKS)}")
