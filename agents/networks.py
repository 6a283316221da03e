"""Q-networks: the Nature DQN CNN, the MinAtar CNN, an MLP, and a searched CNN given by an arch string."""

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


QNET_ACTIVATIONS = ("relu", "elu", "tanh")


def parse_qnet_arch(arch: str) -> dict:
    """A searched Q-network's architecture string -> {"convs": [(kernel, channels)], "pool", "hidden", "activation"}.

    Tokens joined by "-": zero or more convs ``c<k>x<channels>`` (k x k, stride 1, no padding, as
    MinAtar's own network), an optional ``pool`` (2x2 max pool after the convs), one hidden layer
    ``h<units>`` and an activation (relu, elu, tanh). MinAtar's preset network is ``c3x16-h128-relu``.
    A string (not a pickle or module) so a checkpoint's config rebuilds the network (agent.arch).
    """
    if not isinstance(arch, str) or not arch.strip():
        raise RewindError("agent.network=searched needs agent.arch, e.g. c3x16-h128-relu (convs c<k>x<channels>, "
                          "optional pool, h<units>, activation)")
    tokens = arch.strip().split("-")
    if len(tokens) < 2 or tokens[-1] not in QNET_ACTIVATIONS:
        raise RewindError(f"agent.arch {arch!r} must end with h<units>-<activation>, activation one of "
                          f"{', '.join(QNET_ACTIVATIONS)}")
    hidden, convs, pool = tokens[-2], [], False
    if not (hidden[:1] == "h" and hidden[1:].isdigit() and int(hidden[1:]) >= 1):
        raise RewindError(f"agent.arch {arch!r}: {hidden!r} is not a hidden layer h<units> with units >= 1")
    for i, tok in enumerate(tokens[:-2]):
        if tok == "pool":
            if i != len(tokens) - 3 or pool:
                raise RewindError(f"agent.arch {arch!r}: pool must come once, right after the convs")
            pool = True
            continue
        k, _, c = tok[1:].partition("x")
        if not (tok[:1] == "c" and k.isdigit() and c.isdigit() and int(k) % 2 == 1 and int(c) >= 1):
            raise RewindError(f"agent.arch {arch!r}: {tok!r} is not a conv c<odd kernel>x<channels> (e.g. c3x16)")
        convs.append((int(k), int(c)))
    return {"convs": convs, "pool": pool, "hidden": int(hidden[1:]), "activation": tokens[-1]}


def qnet_arch_string(convs, pool: bool, hidden: int, activation: str) -> str:
    """The inverse of parse_qnet_arch."""
    return "-".join([f"c{k}x{c}" for k, c in convs] + (["pool"] if pool else []) + [f"h{hidden}", activation])


def qnet_spatial(hw: int, convs, pool: bool) -> int:
    """Side of the last feature map: valid convs shrink it by k - 1, the pool halves it (floor)."""
    for k, _ in convs:
        hw -= k - 1
    return hw // 2 if pool else hw


def qnet_cost(arch: str, in_shape, n_actions: int) -> dict:
    """Parameters and multiply-accumulates per forward pass of one state, for equal-size comparisons."""
    spec = parse_qnet_arch(arch)
    c, side = in_shape[0], in_shape[1]
    params = macs = 0
    for k, out in spec["convs"]:
        side -= k - 1
        params += out * c * k * k + out
        macs += side * side * out * c * k * k
        c = out
    side = side // 2 if spec["pool"] else side
    h = spec["hidden"]
    params += (c * side * side + 1) * h + (h + 1) * n_actions
    macs += c * side * side * h + h * n_actions
    return {"params": params, "macs": macs}


def qnet_activation(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "relu":
        return torch.relu(x)
    if name == "elu":
        return nn.functional.elu(x)
    if name == "tanh":
        return torch.tanh(x)
    raise RewindError(f"unknown activation {name!r}; choose from: {', '.join(QNET_ACTIVATIONS)}")


class SearchedQNet(nn.Module):
    """convs (valid, stride 1) -> [2x2 max pool] -> flatten -> hidden -> Q; one activation throughout.

    The stand-alone form of an architecture from the ``qnet`` search space
    (controllers/search_spaces.py); its shared-weight supernet computes the same function with
    sliced weights (tests/test_qnet_search.py).
    """

    def __init__(self, arch: str, in_channels: int, n_actions: int, input_hw=(10, 10), scale: float = 1.0):
        super().__init__()
        spec = parse_qnet_arch(arch)
        self.arch, self.scale, self.activation = arch, scale, spec["activation"]
        h, w = input_hw
        if h != w:
            raise RewindError(f"agent.network=searched needs square observations, got {h}x{w}")
        side = qnet_spatial(h, spec["convs"], False)
        side_pooled = qnet_spatial(h, spec["convs"], spec["pool"])
        if side < 1 or side_pooled < 1:
            raise RewindError(f"agent.arch {arch!r}: the convs shrink the {h}x{w} input to nothing")
        self.convs = nn.ModuleList()
        c = in_channels
        for k, out in spec["convs"]:
            self.convs.append(nn.Conv2d(c, out, k))
            c = out
        self.pool = spec["pool"]
        self.hidden = nn.Linear(c * side_pooled * side_pooled, spec["hidden"])
        self.head = nn.Linear(spec["hidden"], n_actions)

    def act(self, x: torch.Tensor) -> torch.Tensor:
        return qnet_activation(self.activation, x)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = obs.float() * self.scale
        for conv in self.convs:
            h = self.act(conv(h))
        if self.pool:
            h = nn.functional.max_pool2d(h, 2)
        return self.head(self.act(self.hidden(h.flatten(1))))


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
        return build_q_network(cfg.network, observation_space, n_actions, cfg.hidden, cfg.width,
                               getattr(cfg, "arch", "")).to(device)


def n_discrete_actions(action_space: gym.Space, who: str) -> int:
    """Q-networks need a Discrete action space: its size, or a clear error naming the agent."""
    if not isinstance(action_space, gym.spaces.Discrete):
        raise RewindError(f"{who} needs a Discrete action space, got {action_space}")
    return int(action_space.n)


NETWORKS = ("auto", "nature", "minatar", "mlp", "searched")


def _scale_for(space: gym.spaces.Box) -> float:
    """uint8 pixels in [0, 255] are scaled to [0, 1]; anything else is fed as is."""
    if space.dtype == np.uint8 and np.all(space.high == 255):
        return 1 / 255
    return 1.0


def build_q_network(kind: str, observation_space: gym.Space, n_actions: int, hidden=(256, 256),
                    width: float = 1.0, arch: str = "") -> nn.Module:
    """A Q-network for this observation space. kind 'auto': image -> CNN by size, vector -> MLP.

    `width` multiplies every hidden layer's size (conv channels and hidden units; MLP hidden sizes).
    kind 'searched': the image CNN that `arch` describes (parse_qnet_arch; width must be 1).
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
    if kind == "searched":
        if len(shape) != 3 or width != 1.0:
            raise RewindError("agent.network=searched needs image observations (C, H, W) and agent.width 1")
        return SearchedQNet(arch, shape[0], n_actions, shape[1:], scale)
    if kind == "mlp":
        return MLP(int(np.prod(shape)), n_actions, tuple(_scaled(h, width) for h in hidden), scale)
    raise RewindError(f"unknown network {kind!r}; choose from: {', '.join(NETWORKS)}")
