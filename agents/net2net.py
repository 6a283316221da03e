"""Net2Net (Chen, Goodfellow, Shlens, ICLR 2016): grow a trained network without changing its function.

Net2WiderNet (`widen_pair`, `widen_network`): a layer with n units gets n' >= n. The random
mapping g sends new unit j to old unit g(j): first the old units (g(j) = j for j < n), then
units drawn uniformly at random among the old ones (the paper's g). A new unit copies the
incoming weights (and bias, and the BatchNorm parameters and running statistics between
the two layers) of its source; the next layer's weights from unit j are the old ones from
g(j) divided by the replication count |{k: g(k) = g(j)}|, so the next layer sees exactly
the same sum. This holds for any elementwise activation. Conv2d widens channels; a
Conv2d -> Flatten -> Linear pair maps channel c to the H*W consecutive input columns it owns
in NCHW order.

Net2DeeperNet (`deepen_after`, `deepen_network`): insert, after a ReLU, a Linear initialised
to the identity (a Conv2d with an identity kernel, "same" padding, stride 1) followed by a
ReLU: ReLU(I ReLU(x)) = ReLU(x).

Choices (configurable, not in the paper's text as numbers):
- noise (default 0): the paper adds a small amount of noise to break the symmetry between
  replicas. Here noise > 0 adds Gaussian noise of std `noise * std(W)` to the copied incoming
  weights of the *new* units (widen) or to the whole identity layer (deepen); 0 keeps the
  function exact (up to float rounding).
- deepen_network inserts its identity layers after the last hidden layer (`after=-1`) with
  a 3x3 kernel for convolutions.

Every function returns (or fills) a `Growth`: which new parameter came from which old one
by which index maps, so `remap_optimizer` can carry Adam/RMSProp moments over consistently:
a replicated unit's incoming weights get gradient grad/count, so first moments scale by
1/count and second moments by 1/count^2; the next layer's columns keep their gradient, so
their moments are copied; step counters are kept; new (identity) layers start with no state.

ENAS stand-alone modules (rewind.controllers.shared_models, built with a fixed
architecture): `widen_enas_mlp` (MLPNet: Linear -> BatchNorm1d -> any elementwise
activation; its space is replaced by one that also lists the new widths, since MLPNet's
forward reads each layer's width from the architecture) and `widen_enas_macro` (MacroNet:
one channel count shared by every layer because of the skip sums, widened with one mapping).
Not supported: MicroNet (FactorizedReduce splits channels between two convs, cell outputs
concatenate), RNNNet (tied embedding/decoder weights cannot be both copied and divided),
and shared-weight (arch=None) models. They are handled by duck typing, without importing
rewind.controllers (agents and controllers are one layer).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import torch
from torch import nn

from rewind.errors import RewindError

# optimizer state key -> power of the 1/count factor it takes on a replicated unit's incoming weights
STATE_POWERS = {"exp_avg": 1, "grad_avg": 1, "exp_avg_sq": 2, "square_avg": 2, "max_exp_avg_sq": 2}
# layers that act per unit/channel and have no parameters: a replicated unit passes through unchanged
# (Dropout: exactly in eval mode; in training its masks differ between replicas)
PASS_THROUGH = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Identity, nn.Dropout,
                nn.MaxPool2d, nn.AvgPool2d, nn.Flatten)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclasses.dataclass
class IndexMap:
    """new = old.index_select(dim, index); `divides` marks the side whose parameter is divided by `scale`."""

    dim: int
    index: torch.Tensor    # new position -> old position
    scale: torch.Tensor    # per new position: the replication count of its source
    divides: bool          # True: outgoing side (next layer's inputs); False: incoming side (copied)

    def _scale(self, t: torch.Tensor) -> torch.Tensor:
        shape = [1] * t.dim()
        shape[self.dim] = -1
        return self.scale.to(device=t.device, dtype=t.dtype).view(shape)

    def param(self, t: torch.Tensor) -> torch.Tensor:
        out = t.index_select(self.dim, self.index.to(t.device))
        return out / self._scale(out) if self.divides else out

    def moment(self, t: torch.Tensor, power: int) -> torch.Tensor:
        out = t.index_select(self.dim, self.index.to(t.device))
        return out if self.divides else out / self._scale(out) ** power


@dataclasses.dataclass
class ParamChange:
    old: nn.Parameter
    maps: list


class Growth:
    """What a growth step did: new parameter -> (old parameter, index maps); brand-new parameters."""

    def __init__(self):
        self.changes: dict[int, ParamChange] = {}   # id(new parameter) -> change
        self.added: list[nn.Parameter] = []

    def replace(self, module: nn.Module, name: str, imap: IndexMap, noise_from: int | None = None,
                noise: float = 0.0, gen: torch.Generator | None = None) -> None:
        """module.name <- imap(module.name): a new Parameter (or buffer), chained to earlier changes."""
        old = getattr(module, name)
        if old is not None:
            setattr(module, name, self.mapped(old, imap, noise_from, noise, gen))

    def mapped(self, old: torch.Tensor, imap: IndexMap, noise_from: int | None = None, noise: float = 0.0,
               gen: torch.Generator | None = None) -> torch.Tensor:
        """imap(old) (+ noise on positions >= noise_from); a Parameter, recorded, if old is one."""
        new = imap.param(old.detach())
        if noise > 0 and noise_from is not None and new.shape[imap.dim] > noise_from:
            rows = new.narrow(imap.dim, noise_from, new.shape[imap.dim] - noise_from)
            rows.add_(_randn(rows.shape, gen, old) * noise * float(old.detach().float().std()))
        if old.dim() == 4 and old.is_contiguous(memory_format=torch.channels_last) and not old.is_contiguous():
            new = new.contiguous(memory_format=torch.channels_last)   # NatureCNN keeps channels_last weights
        else:
            new = new.contiguous()
        if not isinstance(old, nn.Parameter):   # BatchNorm running statistics
            return new
        param = nn.Parameter(new, requires_grad=old.requires_grad)
        prior = self.changes.pop(id(old), None)
        self.changes[id(param)] = ParamChange(prior.old if prior else old, (prior.maps if prior else []) + [imap])
        return param

    def add(self, module: nn.Module) -> None:
        self.added.extend(module.parameters())


def _randn(shape, gen, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(device=like.device, dtype=like.dtype)


def _generator(rng: np.random.Generator) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng.integers(2**62)))


def random_mapping(old: int, new: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's g: identity on the first `old` units, then uniform draws among them; and each
    new unit's replication count."""
    if new < old:
        raise RewindError(f"cannot widen {old} units to {new}: Net2WiderNet only adds units (give a width >= {old})")
    g = np.concatenate([np.arange(old), rng.integers(0, old, size=new - old)])
    counts = np.bincount(g, minlength=old)
    return torch.as_tensor(g, dtype=torch.long), torch.as_tensor(counts[g], dtype=torch.float32)


def _kind(layer) -> str:
    if isinstance(layer, nn.Linear):
        return "linear"
    if isinstance(layer, nn.Conv2d):
        if layer.groups == 1:
            return "conv"
        if layer.groups == layer.in_channels == layer.out_channels:
            return "depthwise"
        raise RewindError(f"unsupported layer: grouped Conv2d with groups={layer.groups}; Net2Net widens "
                          "ordinary and depthwise convolutions only")
    raise RewindError(f"unsupported layer type {type(layer).__name__}: Net2Net here widens Linear and Conv2d layers")


def width_of(layer) -> int:
    kind = _kind(layer)
    return layer.out_features if kind == "linear" else layer.out_channels


def widen_out(layer: nn.Module, g, scale, growth: Growth, noise: float = 0.0, gen=None) -> None:
    """Replicate output units/channels of a Linear, Conv2d (incl. depthwise) or BatchNorm by g."""
    imap = IndexMap(0, g, scale, divides=False)
    new_n = len(g)
    if isinstance(layer, NORMS):
        for name in ("weight", "bias", "running_mean", "running_var"):
            growth.replace(layer, name, imap)
        layer.num_features = new_n
        return
    kind, old_n = _kind(layer), width_of(layer)
    growth.replace(layer, "weight", imap, noise_from=old_n, noise=noise, gen=gen)
    growth.replace(layer, "bias", imap, noise_from=old_n, noise=noise, gen=gen)
    if kind == "linear":
        layer.out_features = new_n
    else:
        layer.out_channels = new_n
        if kind == "depthwise":   # each channel sees only itself: replicating it is the whole change
            layer.in_channels = layer.groups = new_n


def widen_in(layer: nn.Module, g, scale, growth: Growth, block: int = 1) -> None:
    """Widen the inputs of a Linear/Conv2d: column j is old column g(j) / count; `block` columns per unit."""
    kind = _kind(layer)
    if kind == "depthwise":
        raise RewindError("a depthwise Conv2d widens with its input channels: use widen_out on it")
    if block > 1:
        g = (g.view(-1, 1) * block + torch.arange(block)).reshape(-1)
        scale = scale.repeat_interleave(block)
    growth.replace(layer, "weight", IndexMap(1, g, scale, divides=True))
    if kind == "linear":
        layer.in_features = len(g)
    else:
        layer.in_channels = len(g)


def widen_pair(layer: nn.Module, next_layer: nn.Module, new_width: int, rng: np.random.Generator,
               noise: float = 0.0, norms: Sequence[nn.Module] = (), growth: Growth | None = None) -> Growth:
    """Net2WiderNet on one pair: `layer` gets `new_width` units, `next_layer` takes them in.

    Pairs: Linear -> Linear, Conv2d -> Conv2d, Conv2d -> (Flatten) -> Linear. `norms`: BatchNorm
    layers between the two (widened with the same mapping). Returns the Growth (or fills `growth`).
    """
    growth = growth if growth is not None else Growth()
    kind, next_kind = _kind(layer), _kind(next_layer)
    if kind == "depthwise" or next_kind == "depthwise":
        raise RewindError("widen_pair: depthwise convolutions are widened with their channel group "
                          "(see widen_enas_macro), not as a pair")
    old = width_of(layer)
    block = 1
    if kind == "linear" and next_kind == "conv":
        raise RewindError("unsupported pair Linear -> Conv2d: widen_pair handles Linear->Linear, "
                          "Conv2d->Conv2d and Conv2d->Flatten->Linear")
    if kind == "conv" and next_kind == "linear":
        if next_layer.in_features % old:
            raise RewindError(f"Conv2d with {old} channels cannot feed Linear with {next_layer.in_features} "
                              "inputs through a Flatten (not a multiple)")
        block = next_layer.in_features // old
    else:
        expects = next_layer.in_features if next_kind == "linear" else next_layer.in_channels
        if expects != old:
            raise RewindError(f"layers do not fit: {type(layer).__name__} has {old} outputs, "
                              f"{type(next_layer).__name__} expects {expects}")
    for norm in norms:
        if not isinstance(norm, NORMS):
            raise RewindError(f"unsupported layer type {type(norm).__name__} between widened layers: "
                              "only BatchNorm1d/2d (and parameter-free per-unit layers)")
        if norm.num_features != old:
            raise RewindError(f"BatchNorm with {norm.num_features} features sits after a layer of {old} units")
    if noise < 0:
        raise RewindError(f"noise must be >= 0, got {noise}")
    g, scale = random_mapping(old, int(new_width), rng)
    gen = _generator(rng) if noise > 0 else None
    widen_out(layer, g, scale, growth, noise, gen)
    for norm in norms:
        widen_out(norm, g, scale, growth)
    widen_in(next_layer, g, scale, growth, block)
    return growth


# ---------------------------------------------------------------------------- network level
def _slots(net: nn.Module) -> list[tuple[nn.Sequential, int]]:
    """(sequential, index) of every layer of rewind's Q-networks in forward order."""
    from rewind.agents.networks import MLP, MinAtarCNN, NatureCNN

    if isinstance(net, NatureCNN):
        seqs = [net.features, net.head]
    elif isinstance(net, (MLP, MinAtarCNN)):
        seqs = [net.net]
    elif isinstance(net, nn.Sequential):
        seqs = [net]
    else:
        raise RewindError(f"unsupported network {type(net).__name__}: widen_network/deepen_network handle "
                          "MLP, MinAtarCNN, NatureCNN and nn.Sequential (use widen_pair on other layers)")
    return [(s, i) for s in seqs for i in range(len(s))]


def _chain(net: nn.Module):
    """[(layer, [norms after it])] of the Linear/Conv2d layers in forward order; rejects anything else."""
    chain = []
    for seq, i in _slots(net):
        m = seq[i]
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            _kind(m)
            chain.append((m, []))
        elif isinstance(m, NORMS) and chain:
            chain[-1][1].append(m)
        elif not isinstance(m, PASS_THROUGH):
            raise RewindError(f"unsupported layer type {type(m).__name__} in {type(net).__name__}: Net2Net here "
                              "handles Linear, Conv2d, BatchNorm and per-unit activations/pooling")
    return chain


def widen_network(net: nn.Module, factor: float, rng: np.random.Generator, noise: float = 0.0,
                  growth: Growth | None = None) -> Growth:
    """Widen every hidden layer of an MLP / MinAtarCNN / NatureCNN / Sequential to round(width * factor).

    The output layer keeps its size (n_actions). One random mapping per hidden layer.
    """
    if not factor >= 1.0:
        raise RewindError(f"widen factor must be >= 1 (Net2WiderNet only adds units), got {factor}")
    growth = growth if growth is not None else Growth()
    chain = _chain(net)
    for (layer, norms), (nxt, _) in zip(chain[:-1], chain[1:]):
        widen_pair(layer, nxt, max(1, round(width_of(layer) * factor)), rng, noise, norms, growth)
    return growth


def identity_layer(like: nn.Module, kernel_size: int = 3, noise: float = 0.0, gen=None) -> nn.Module:
    """A Linear(n, n) = I or Conv2d(c, c, k, padding=k//2) with an identity kernel, on like's device/dtype."""
    w = like.weight
    if isinstance(like, nn.Linear):
        n = like.out_features
        layer = nn.Linear(n, n)
        weight = torch.eye(n)
    else:
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise RewindError(f"identity conv kernel size must be odd and >= 1, got {kernel_size}")
        c = like.out_channels
        layer = nn.Conv2d(c, c, kernel_size, padding=kernel_size // 2)
        weight = torch.zeros(c, c, kernel_size, kernel_size)
        weight[torch.arange(c), torch.arange(c), kernel_size // 2, kernel_size // 2] = 1.0
    with torch.no_grad():
        if noise > 0:
            weight = weight + torch.randn(weight.shape, generator=gen) * noise * float(w.detach().float().std())
        layer.weight.copy_(weight)
        layer.bias.zero_()
    layer = layer.to(device=w.device, dtype=w.dtype)
    if w.dim() == 4 and w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous():
        layer = layer.to(memory_format=torch.channels_last)
    return layer.requires_grad_(w.requires_grad)


def deepen_after(sequential: nn.Sequential, index: int, kernel_size: int = 3, noise: float = 0.0,
                 rng: np.random.Generator | None = None, growth: Growth | None = None) -> Growth:
    """Net2DeeperNet: after the ReLU that follows sequential[index] (a Linear/Conv2d, possibly with a
    BatchNorm between), insert an identity layer and a ReLU. sequential[index] may also be that ReLU."""
    growth = growth if growth is not None else Growth()
    mods = list(sequential)
    if not -len(mods) <= index < len(mods):
        raise RewindError(f"deepen_after: index {index} is outside the Sequential of {len(mods)} layers")
    index %= len(mods)
    if isinstance(mods[index], nn.ReLU):
        relu_at, source = index, None
        for j in range(index - 1, -1, -1):
            if isinstance(mods[j], (nn.Linear, nn.Conv2d)):
                source = mods[j]
                break
            if not isinstance(mods[j], NORMS + (nn.Dropout, nn.Identity)):
                break
        if source is None:
            raise RewindError(f"deepen_after: the ReLU at {index} does not follow a Linear or Conv2d layer")
    else:
        source = mods[index]
        _kind(source)
        relu_at = index + 1
        while relu_at < len(mods) and isinstance(mods[relu_at], NORMS):
            relu_at += 1
        if relu_at >= len(mods) or not isinstance(mods[relu_at], nn.ReLU):
            raise RewindError(f"cannot deepen after layer {index} ({type(source).__name__}): it is not followed "
                              "by a ReLU, and Net2DeeperNet needs ReLU(I ReLU(x)) = ReLU(x)")
    if _kind(source) == "depthwise":
        raise RewindError("deepen_after: insert after an ordinary Linear or Conv2d, not a depthwise conv")
    if noise < 0:
        raise RewindError(f"noise must be >= 0, got {noise}")
    gen = _generator(rng) if (noise > 0 and rng is not None) else None
    layer = identity_layer(source, kernel_size, noise, gen)
    mods[relu_at + 1:relu_at + 1] = [layer, nn.ReLU()]
    for key in list(sequential._modules):
        del sequential._modules[key]
    for i, m in enumerate(mods):
        sequential.add_module(str(i), m)
    growth.add(layer)
    return growth


def deepen_network(net: nn.Module, layers: int = 1, after: int = -1, kernel_size: int = 3, noise: float = 0.0,
                   rng: np.random.Generator | None = None, growth: Growth | None = None) -> Growth:
    """Insert `layers` identity layers (each followed by a ReLU) after hidden layer `after` (-1: the last)."""
    growth = growth if growth is not None else Growth()
    if layers < 0:
        raise RewindError(f"deepen: number of layers must be >= 0, got {layers}")
    for _ in range(layers):
        hidden = [(s, i) for s, i in _slots(net) if isinstance(s[i], (nn.Linear, nn.Conv2d))][:-1]
        if not hidden:
            raise RewindError(f"{type(net).__name__} has no hidden layer to deepen after")
        if not -len(hidden) <= after < len(hidden):
            raise RewindError(f"deepen: hidden layer {after} does not exist ({len(hidden)} hidden layers)")
        seq, i = hidden[after]
        deepen_after(seq, i, kernel_size, noise, rng, growth)
    return growth


def grow_network(net: nn.Module, widen: float = 1.0, deepen: int = 0, rng: np.random.Generator | None = None,
                 noise: float = 0.0) -> Growth:
    """Widen by `widen` (all hidden layers), then insert `deepen` identity layers after the last hidden one."""
    rng = rng if rng is not None else np.random.default_rng(0)
    growth = Growth()
    if widen != 1.0:
        widen_network(net, widen, rng, noise, growth)
    if deepen:
        deepen_network(net, deepen, noise=noise, rng=rng, growth=growth)
    return growth


# ---------------------------------------------------------------------------- optimizer state
def remap_optimizer(old: torch.optim.Optimizer, new: torch.optim.Optimizer, growth: Growth) -> None:
    """Fill `new` (built over the grown parameters) with `old`'s state mapped through `growth`."""
    for group in new.param_groups:
        for p in group["params"]:
            change = growth.changes.get(id(p))
            src = change.old if change is not None else p
            state = old.state.get(src)
            if not state:
                continue
            mapped = {}
            for key, value in state.items():
                if torch.is_tensor(value) and value.dim() > 0 and value.shape == src.shape:
                    if change is None:
                        mapped[key] = value.clone()
                    elif key in STATE_POWERS:
                        mapped[key] = value
                        for imap in change.maps:
                            mapped[key] = imap.moment(mapped[key], STATE_POWERS[key])
                    else:
                        raise RewindError(f"cannot carry optimizer state {key!r} through Net2Net growth; "
                                          "use adam, rmsprop or rmsprop-torch")
                else:
                    mapped[key] = value.clone() if torch.is_tensor(value) else value
            new.state[p] = mapped


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ---------------------------------------------------------------------------- ENAS stand-alone modules
def _require_fixed(net, name: str):
    if getattr(net, "fixed", None) is None:
        raise RewindError(f"{name}: only a stand-alone child (built with a fixed architecture) can be widened; "
                          "shared-weight supernets are not supported")


def widen_enas_mlp(net: nn.Module, factor: float, rng: np.random.Generator, noise: float = 0.0,
                   growth: Growth | None = None) -> Growth:
    """Widen every hidden layer of a stand-alone ENAS MLPNet by `factor` (Linear -> BatchNorm1d -> act).

    MLPNet reads its widths from (space, fixed architecture); the net gets a copy of its space
    whose width choices also hold the new widths, and its architecture re-encoded in it.
    """
    _require_fixed(net, "widen_enas_mlp")
    if not factor >= 1.0:
        raise RewindError(f"widen factor must be >= 1 (Net2WiderNet only adds units), got {factor}")
    growth = growth if growth is not None else Growth()
    space = net.space
    layers = space.decode(net.fixed)
    for i, layer in enumerate(layers):
        old = layer["width"]
        g, scale = random_mapping(old, max(1, round(old * factor)), rng)
        gen = _generator(rng) if noise > 0 else None
        out = IndexMap(0, g, scale, divides=False)
        net.weights[i] = growth.mapped(net.weights[i], out, old, noise, gen)
        net.biases[i] = growth.mapped(net.biases[i], out, old, noise, gen)
        widen_out(net.norms[i], g, scale, growth)
        if i + 1 < len(layers):
            net.weights[i + 1] = growth.mapped(net.weights[i + 1], IndexMap(1, g, scale, divides=True))
        else:
            widen_in(net.head, g, scale, growth)
        layer["width"] = len(g)
    widths = tuple(sorted(set(space.widths) | {layer["width"] for layer in layers}))
    net.space = type(space)(layers=space.layers, widths=widths, dropout=space.dropout)
    net.fixed = np.asarray(net.space.encode(layers), dtype=np.int64)
    return growth


def widen_enas_macro(net: nn.Module, factor: float, rng: np.random.Generator, noise: float = 0.0,
                     growth: Growth | None = None) -> Growth:
    """Widen a stand-alone ENAS MacroNet's channels by `factor` with ONE mapping for all layers.

    Every layer has the same channel count and skip connections add layers together, so all
    of them must replicate the same channels. Convs are widened on both sides, depthwise
    convs and BatchNorms replicated, the stem's output and the head's input widened.
    """
    _require_fixed(net, "widen_enas_macro")
    if not factor >= 1.0:
        raise RewindError(f"widen factor must be >= 1 (Net2WiderNet only adds units), got {factor}")
    growth = growth if growth is not None else Growth()
    stem_conv = net.stem[0]
    old = stem_conv.out_channels
    g, scale = random_mapping(old, max(1, round(old * factor)), rng)
    gen = _generator(rng) if noise > 0 else None
    widen_out(stem_conv, g, scale, growth, noise, gen)
    for m in list(net.stem)[1:]:
        _widen_channel_module(m, g, scale, growth, noise, gen)
    for op_dict in net.ops:
        for op in op_dict.values():
            for m in op.modules():
                if m is not op or not list(op.children()):
                    _widen_channel_module(m, g, scale, growth, noise, gen)
    for norm in net.norms:
        _widen_channel_module(norm, g, scale, growth, noise, gen)
    widen_in(net.head, g, scale, growth)
    return growth


def _widen_channel_module(m, g, scale, growth, noise, gen) -> None:
    """One module inside a macro layer: c -> c conv (both sides), depthwise conv, BatchNorm, or no params."""
    if isinstance(m, NORMS):
        widen_out(m, g, scale, growth)
    elif isinstance(m, nn.Conv2d):
        kind = _kind(m)
        widen_out(m, g, scale, growth, noise, gen)
        if kind == "conv":
            widen_in(m, g, scale, growth)
    elif isinstance(m, nn.Linear) or any(True for _ in m.parameters(recurse=False)):
        raise RewindError(f"unsupported layer type {type(m).__name__} in a macro child")
