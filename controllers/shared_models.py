"""Child networks for each search space: one class per space, shared-weight or stand-alone.

Built with ``arch=None`` a network holds the weights of *every* op at every place (ENAS
parameter sharing) and ``forward(x, arch)`` runs the path that `arch` selects, so two
architectures that pick the same op at the same place use the same parameter tensors.
Built with a fixed ``arch`` it holds only the chosen ops' weights (the stand-alone network
that is retrained from scratch) and ``forward(x)`` ignores any arch argument.

Local error signals (retraining, run/search.py): the macro, micro and MLP children take
``forward(x, local=fn)``; ``fn(k, h)`` is called on the output of hidden unit k (macro: the stem
and each layer; micro: the stem and each cell; MLP: each layer) and returns it detached, so
every unit is trained by its own loss and the classifier head by the global loss.

Data-dependent sizes come as keyword arguments: ``in_shape`` (C, H, W) or (D,) and
``n_classes`` for classifiers, ``vocab_size`` for the RNN language model.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rewind.agents.networks import SearchedQNet, qnet_activation, qnet_spatial
from rewind.controllers.nas_ops import (MACRO_OPS, MICRO_OPS, MLP_ACTIVATIONS, QNET_OPS, RNN_ACTIVATIONS,
                                        FactorizedReduce, activation, bn, make_cnn_op)
from rewind.errors import RewindError


def _no_local(k, h):
    return h


class ChildNet(nn.Module):
    """Common part: keeps the space and the fixed architecture (None when shared)."""

    takes_local_loss = False   # forward(x, local=fn) supported (see the module docstring)

    def __init__(self, space, fixed):
        super().__init__()
        self.space = space
        self.fixed = None if fixed is None else np.asarray(fixed, dtype=np.int64)

    @property
    def shared(self) -> bool:
        return self.fixed is None

    def _arch(self, arch):
        if self.fixed is not None:
            return self.fixed
        if arch is None:
            raise RewindError("a shared-weight child model needs an architecture: model(x, arch)")
        return np.asarray(arch, dtype=np.int64)

    def _want(self, fixed_choice, option) -> bool:
        """Build option's weights? (all of them when shared, only the chosen one otherwise)."""
        return self.fixed is None or fixed_choice == option


class MacroNet(ChildNet):
    """ENAS macro CNN: stem, L layers (op on the previous layer + sum of skip-connected layers, BN)."""

    takes_local_loss = True

    def __init__(self, space, fixed=None, *, in_shape, n_classes, channels=None):
        super().__init__(space, fixed)
        c = channels or space.channels
        track = fixed is not None
        self.stem = nn.Sequential(nn.Conv2d(in_shape[0], c, 3, padding=1, bias=False), bn(c, track))
        layers = space.split(self.fixed) if fixed is not None else [(None, None)] * space.layers
        self.ops = nn.ModuleList(
            nn.ModuleDict({str(k): make_cnn_op(name, c, track) for k, name in enumerate(MACRO_OPS)
                           if self._want(op, k)})
            for op, _ in layers)
        self.norms = nn.ModuleList(bn(c, track) for _ in range(space.layers))
        self.pool_layers = set(space.pool_layers())
        self.dropout = nn.Dropout(space.dropout)
        self.head = nn.Linear(c, n_classes)

    def forward(self, x, arch=None, local=_no_local):
        layers = self.space.split(self._arch(arch))
        outs, h = [], local(0, self.stem(x))
        for i, (op, skips) in enumerate(layers):
            out = self.ops[i][str(op)](h)
            for j, s in enumerate(skips):
                if s:
                    out = out + outs[j]
            h = local(i + 1, self.norms[i](out))
            outs.append(h)
            if i in self.pool_layers:   # ENAS reduces every earlier layer too (here: 2x2 average pool)
                outs = [F.avg_pool2d(o, 2) for o in outs]
                h = outs[-1]
        h = F.adaptive_avg_pool2d(F.relu(h), 1).flatten(1)
        return self.head(self.dropout(h))


class _Cell(nn.Module):
    """One micro cell. Shared: an op module per (node, slot, op, input) as in ENAS's `_enas_cell`."""

    def __init__(self, net: "MicroNet", nodes_fixed, c_pp, c_p, c, reduction, reduce_prev, track):
        super().__init__()
        self.reduction = reduction
        if reduction:
            self.pre0, self.pre1 = FactorizedReduce(c_pp, c, track), FactorizedReduce(c_p, c, track)
        else:
            self.pre0 = FactorizedReduce(c_pp, c, track) if reduce_prev else _ReluConvBN(c_pp, c, track)
            self.pre1 = _ReluConvBN(c_p, c, track)
        b = net.space.nodes
        self.ops = nn.ModuleDict()
        for i in range(b):
            fx = nodes_fixed[i] if nodes_fixed is not None else None
            for slot in (0, 1):
                for k, name in enumerate(MICRO_OPS):
                    for inp in range(i + 2):
                        if fx is None or (fx[slot] == inp and fx[2 + slot] == k):
                            key = f"{i}_{slot}_{k}_{inp}" if name in ("sep3x3", "sep5x5") else f"p{k}"
                            if key not in self.ops:
                                self.ops[key] = make_cnn_op(name, c, track)
        # Output 1x1 conv over the concatenated loose ends: one (c x c) block per possible state.
        self.out_w = nn.Parameter(torch.randn(b + 2, c, c, 1, 1) * (2.0 / c) ** 0.5)
        self.out_bn = bn(c, track)

    def forward(self, s0, s1, nodes, loose):
        states = [self.pre0(s0), self.pre1(s1)]
        for i, (x, y, ox, oy) in enumerate(nodes):
            terms = []
            for slot, (inp, op) in enumerate(((x, ox), (y, oy))):
                key = f"{i}_{slot}_{op}_{inp}" if MICRO_OPS[op] in ("sep3x3", "sep5x5") else f"p{op}"
                terms.append(self.ops[key](states[inp]))
            states.append(terms[0] + terms[1])
        out = sum(F.conv2d(F.relu(states[j]), self.out_w[j]) for j in loose)
        return self.out_bn(out)


class _ReluConvBN(nn.Sequential):
    def __init__(self, c_in, c_out, track):
        super().__init__(nn.ReLU(), nn.Conv2d(c_in, c_out, 1, bias=False), bn(c_out, track))


class MicroNet(ChildNet):
    """ENAS micro CNN: stem, then [N normal, reduction] x 2 and N normal cells (channels double at reductions).
    Local losses train each cell as one unit (its nodes take inputs from several earlier states)."""

    takes_local_loss = True

    def __init__(self, space, fixed=None, *, in_shape, n_classes, channels=None):
        super().__init__(space, fixed)
        c = channels or space.channels
        track = fixed is not None
        cells = space.split(self.fixed) if fixed is not None else {"normal": None, "reduction": None}
        self.stem = nn.Sequential(nn.Conv2d(in_shape[0], c, 3, padding=1, bias=False), bn(c, track))
        kinds = (["normal"] * space.cells + ["reduction"]) * 2 + ["normal"] * space.cells
        self.kinds = kinds
        self.cells = nn.ModuleList()
        c_pp = c_p = c
        prev_red = False
        for kind in kinds:
            red = kind == "reduction"
            c_cur = c * 2 if red else c
            self.cells.append(_Cell(self, cells[kind], c_pp, c_p, c_cur, red, prev_red, track))
            c_pp, c_p, c, prev_red = c_p, c_cur, c_cur, red
        self.dropout = nn.Dropout(space.dropout)
        self.head = nn.Linear(c, n_classes)

    def forward(self, x, arch=None, local=_no_local):
        cells = self.space.split(self._arch(arch))
        loose = {k: self.space.loose_ends(v) for k, v in cells.items()}
        s0 = s1 = local(0, self.stem(x))
        for k, (kind, cell) in enumerate(zip(self.kinds, self.cells)):
            s0, s1 = s1, local(k + 1, cell(s0, s1, cells[kind], loose[kind]))
        h = F.adaptive_avg_pool2d(F.relu(s1), 1).flatten(1)
        return self.head(self.dropout(h))


class RNNNet(ChildNet):
    """ENAS recurrent cell language model: embedding, the searched cell, tied softmax.

    Node 0: c = sigmoid(x W_xc + h W_hc), h0 = c * f(x W_xh + h W_hh) + (1 - c) * h_prev.
    Node i from node j: c = sigmoid(h_j W_c[i,j]), h_i = c * f(h_j W_h[i,j]) + (1 - c) * h_j.
    Output: mean of the loose ends. Weights per (i, j) edge, shared across activations (ENAS).
    """

    def __init__(self, space, fixed=None, *, vocab_size, hidden=None, in_shape=None, n_classes=None):
        super().__init__(space, fixed)
        d = hidden or space.hidden
        self.d = d
        self.embed = nn.Embedding(vocab_size, d)
        self.w_x = nn.Linear(d, 2 * d, bias=False)
        self.w_h = nn.Linear(d, 2 * d, bias=False)
        nodes = space.split(self.fixed) if fixed is not None else None
        self.edges = nn.ParameterDict()
        for i in range(1, space.nodes):
            for j in range(i):
                if nodes is None or nodes[i][0] == j:
                    self.edges[f"{i}_{j}"] = nn.Parameter(torch.empty(2 * d, d).uniform_(-0.04, 0.04))
        self.drop = nn.Dropout(space.dropout)
        self.decoder = nn.Linear(d, vocab_size)
        self.decoder.weight = self.embed.weight   # tied input/output embeddings (ENAS PTB)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)

    def forward(self, x, arch=None):
        """x: (T, B) token ids -> logits (T, B, V). The hidden state starts at zero for each chunk."""
        nodes = self.space.split(self._arch(arch))
        loose = self.space.loose_ends(nodes)
        emb = self.drop(self.embed(x))
        xw = self.w_x(emb)                                # all time steps at once
        h = emb.new_zeros(x.shape[1], self.d)
        outs = []
        for t in range(x.shape[0]):
            c, hh = (xw[t] + self.w_h(h)).chunk(2, dim=-1)
            c = torch.sigmoid(c)
            states = [c * activation(RNN_ACTIVATIONS[nodes[0][1]], hh) + (1 - c) * h]
            for i in range(1, len(nodes)):
                j, a = nodes[i]
                c, hh = F.linear(states[j], self.edges[f"{i}_{j}"]).chunk(2, dim=-1)
                c = torch.sigmoid(c)
                states.append(c * activation(RNN_ACTIVATIONS[a], hh) + (1 - c) * states[j])
            h = torch.stack([states[i] for i in loose]).mean(0)
            outs.append(h)
        return self.decoder(self.drop(torch.stack(outs)))


class MLPNet(ChildNet):
    """Dense -> BatchNorm -> activation layers; shared: per (layer, activation) one max-width weight,
    sliced to the chosen widths. The BatchNorm (batch statistics, no affine, when shared) keeps the
    inputs of a layer on one scale whichever activation the layer before chose; without it the
    shared weights hardly train (about 50% validation accuracy on digits instead of 90%+).
    """

    def __init__(self, space, fixed=None, *, in_shape, n_classes, widths=None):
        super().__init__(space, fixed)
        d_in = int(np.prod(in_shape))
        layers = space.split(self.fixed) if fixed is not None else None
        w_max = max(space.widths)
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        self.keys = []
        prev = d_in
        for i in range(space.layers):
            for a in MLP_ACTIVATIONS:
                if layers is None or layers[i][1] == a:
                    rows = w_max if layers is None else layers[i][0]
                    lin = nn.Linear(prev if layers is not None else (d_in if i == 0 else w_max), rows)
                    self.weights.append(lin.weight)
                    self.biases.append(lin.bias)
                    self.keys.append((i, a))
            if layers is not None:
                prev = layers[i][0]
        self.norms = nn.ModuleList(nn.BatchNorm1d(w) for w, _ in layers) if layers is not None else None
        self.index = {k: n for n, k in enumerate(self.keys)}
        self.dropout = nn.Dropout(space.dropout)
        self.head = nn.Linear(w_max if layers is None else prev, n_classes)

    takes_local_loss = True

    def forward(self, x, arch=None, local=_no_local):
        h = x.flatten(1)
        for i, (w, a) in enumerate(self.space.split(self._arch(arch))):
            n = self.index[(i, a)]
            z = F.linear(h, self.weights[n][:w, :h.shape[1]], self.biases[n][:w])
            z = self.norms[i](z) if self.norms is not None else F.batch_norm(z, None, None, training=True)
            h = local(i, activation(a, z))
            h = self.dropout(h)
        return F.linear(h, self.head.weight[:, :h.shape[1]], self.head.bias)


class QNetNet(ChildNet):
    """A MinAtar Q-network (qnet space). Shared: one max-size weight per (layer, kernel, input source)
    for the convs and per (final side, source) for the hidden layer, sliced to the chosen channels and
    width (source: raw observation or conv features, whose channel counts differ); no BatchNorm, so a
    sliced path is exactly a stand-alone ``SearchedQNet`` (``export`` gives its weights). Stand-alone:
    ``self.net`` is the agents' SearchedQNet of the arch string, the network DQN/EBU train.
    """

    def __init__(self, space, fixed=None, *, in_shape, n_classes):
        super().__init__(space, fixed)
        if tuple(in_shape) != (space.in_channels, space.side, space.side) or n_classes != space.n_actions:
            raise RewindError(f"qnet space is for inputs {(space.in_channels, space.side, space.side)} and "
                              f"{space.n_actions} actions, the data has {tuple(in_shape)} and {n_classes}")
        if fixed is not None:
            self.net = SearchedQNet(space.arch_string(self.fixed), space.in_channels, n_classes, in_shape[1:])
            return
        c_max, h_max = max(space.channels), space.hidden_cap
        self.conv_w, self.conv_b = nn.ParameterDict(), nn.ParameterDict()
        for i in range(space.layers):
            for src, c_in in (("x", space.in_channels), ("f", c_max)):
                for k in (3, 5):
                    conv = nn.Conv2d(c_in, c_max, k)
                    self.conv_w[f"{i}_{k}_{src}"], self.conv_b[f"{i}_{k}_{src}"] = conv.weight, conv.bias
        self.dense_w, self.dense_b = nn.ParameterDict(), nn.ParameterDict()
        for flat in self._all_archs():
            convs, pool, _, _ = space.split(flat)
            key, n_in = self._dense_key(convs, pool)
            if key not in self.dense_w:
                lin = nn.Linear(n_in, h_max)
                self.dense_w[key], self.dense_b[key] = lin.weight, lin.bias
        head = nn.Linear(h_max, n_classes)
        self.head_w, self.head_b = head.weight, head.bias

    def _all_archs(self):
        """One architecture per (conv ops, pool) pattern, max channels: enough to list the dense shapes."""
        import itertools
        sp = self.space
        for ops in itertools.product(range(len(QNET_OPS)), repeat=sp.layers):
            for pool in (0, 1):
                yield [v for op in ops for v in (op, len(sp.channels) - 1)] + [pool, 0]

    def _dense_key(self, convs, pool):
        s = qnet_spatial(self.space.side, convs, pool)
        src = "f" if convs else "x"
        return f"{s}_{src}", (max(self.space.channels) if convs else self.space.in_channels) * s * s

    def forward(self, x, arch=None):
        if self.fixed is not None:
            return self.net(x)
        flat = self._arch(arch)
        convs, pool, hidden, act = self.space.split(flat)
        h, c_in, i_conv = x.float(), self.space.in_channels, 0
        for i, op in enumerate(int(v) for v in flat[0:2 * self.space.layers:2]):
            if op == 0:      # none
                continue
            k, c = convs[i_conv]
            key = f"{i}_{k}_{'f' if i_conv else 'x'}"
            h = qnet_activation(act, F.conv2d(h, self.conv_w[key][:c, :c_in], self.conv_b[key][:c]))
            c_in, i_conv = c, i_conv + 1
        if pool:
            h = F.max_pool2d(h, 2)
        key, _ = self._dense_key(convs, pool)
        n_in = c_in * h.shape[-1] * h.shape[-2]
        h = qnet_activation(act, F.linear(h.flatten(1), self.dense_w[key][:hidden, :n_in], self.dense_b[key][:hidden]))
        return F.linear(h, self.head_w[:, :hidden], self.head_b)

    @torch.no_grad()
    def export(self, arch) -> dict:
        """The state dict of the stand-alone SearchedQNet of `arch`: this model's sliced weights."""
        flat = self.space.validate(arch)
        convs, pool, hidden, _ = self.space.split(flat)
        out, c_in, i_conv = {}, self.space.in_channels, 0
        for i, op in enumerate(int(v) for v in flat[0:2 * self.space.layers:2]):
            if op == 0:
                continue
            k, c = convs[i_conv]
            key = f"{i}_{k}_{'f' if i_conv else 'x'}"
            out[f"convs.{i_conv}.weight"] = self.conv_w[key][:c, :c_in].clone()
            out[f"convs.{i_conv}.bias"] = self.conv_b[key][:c].clone()
            c_in, i_conv = c, i_conv + 1
        key, _ = self._dense_key(convs, pool)
        s = qnet_spatial(self.space.side, convs, pool)
        out["hidden.weight"] = self.dense_w[key][:hidden, :c_in * s * s].clone()
        out["hidden.bias"] = self.dense_b[key][:hidden].clone()
        out["head.weight"] = self.head_w[:, :hidden].clone()
        out["head.bias"] = self.head_b.clone()
        return out


NETWORKS = {"macro": MacroNet, "micro": MicroNet, "rnn": RNNNet, "mlp": MLPNet, "qnet": QNetNet}


def build_network(space, fixed, **kwargs) -> ChildNet:
    """The child network class of `space`, shared (fixed=None) or stand-alone."""
    try:
        return NETWORKS[space.name](space, fixed, **kwargs)
    except TypeError as exc:
        raise RewindError(f"cannot build a {space.name} network with {sorted(kwargs)}: {exc}") from None
