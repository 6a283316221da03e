"""Building blocks shared by the ENAS child networks (shared-weight and stand-alone alike).

One definition per op so that a searched architecture retrains with exactly the ops it was
scored with. Shared models pass ``track_stats=False`` (batch statistics always): their
BatchNorm sees a different sub-network on every minibatch, so running averages would mix
architectures (the usual choice in ENAS ports; the official code also evaluates the shared
child with batch statistics).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

CNN_ACTIVATIONS = ("relu",)
MACRO_OPS = ("conv3x3", "conv5x5", "sep3x3", "sep5x5", "avgpool", "maxpool")   # ENAS macro space
MICRO_OPS = ("sep3x3", "sep5x5", "avgpool", "maxpool", "identity")              # ENAS micro cell
RNN_ACTIVATIONS = ("tanh", "relu", "identity", "sigmoid")   # ENAS RNN cell functions
MLP_ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")
QNET_OPS = ("none", "conv3x3", "conv5x5")     # qnet space: a conv layer (valid padding) or none
QNET_POOLS = ("none", "max2x2")


def activation(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "relu":
        return F.relu(x)
    if name == "tanh":
        return torch.tanh(x)
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "identity":
        return x
    raise ValueError(name)


def bn(channels: int, track_stats: bool) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, affine=track_stats, track_running_stats=track_stats)


class ConvBN(nn.Sequential):
    """ReLU -> conv k x k -> BN (the ENAS conv branch, without its leading 1x1 conv)."""

    def __init__(self, c_in: int, c_out: int, k: int, track_stats: bool = True):
        super().__init__(nn.ReLU(), nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), bn(c_out, track_stats))


class SepConvBN(nn.Sequential):
    """ReLU -> depthwise k x k -> pointwise 1x1 -> BN (applied once; ENAS micro stacks two)."""

    def __init__(self, c: int, k: int, track_stats: bool = True):
        super().__init__(nn.ReLU(), nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False),
                         nn.Conv2d(c, c, 1, bias=False), bn(c, track_stats))


class Pool(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, x):
        if self.kind == "avg":
            return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        return F.max_pool2d(x, 3, stride=1, padding=1)


class Identity(nn.Module):
    def forward(self, x):
        return x


class FactorizedReduce(nn.Module):
    """Halve the spatial size with two offset stride-2 1x1 convs (ENAS/NASNet factorized reduction)."""

    def __init__(self, c_in: int, c_out: int, track_stats: bool = True):
        super().__init__()
        self.a = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.b = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.bn = bn(c_out, track_stats)

    def forward(self, x):
        x = F.relu(x)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.a(x), self.b(shifted)], dim=1))


def make_cnn_op(name: str, c: int, track_stats: bool = True) -> nn.Module:
    """An op of the macro or micro space; every op maps c channels to c channels at stride 1."""
    if name == "conv3x3":
        return ConvBN(c, c, 3, track_stats)
    if name == "conv5x5":
        return ConvBN(c, c, 5, track_stats)
    if name == "sep3x3":
        return SepConvBN(c, 3, track_stats)
    if name == "sep5x5":
        return SepConvBN(c, 5, track_stats)
    if name == "avgpool":
        return Pool("avg")
    if name == "maxpool":
        return Pool("max")
    if name == "identity":
        return Identity()
    raise ValueError(name)


def has_params(op_name: str) -> bool:
    return op_name in ("conv3x3", "conv5x5", "sep3x3", "sep5x5")
