"""ENAS search spaces: the decision sequence the controller samples, and what it means.

Every space turns an architecture into a flat vector of integer choices (one gymnasium
``MultiDiscrete`` action; the controller's action) and back into a readable structure that
serialises to JSON. The space also lists its *decisions* in sampling order, which tells the
controller how to sample each entry:

- ``op``: a categorical choice among ``n`` named options (``vocab`` names the table), one entry;
- ``input``: pick one of the first ``n`` anchors (earlier nodes) by attention, one entry;
- ``skip``: for each of the first ``n`` anchors, connect or not (attention + 2-way), ``n`` entries;
- ``anchor``: no choice; the LSTM steps once and its state becomes a new anchor (a node);
- ``reset``: no choice; a new cell (the micro space's normal, then reduction cell): the anchors
  start afresh and the LSTM state is carried over (official) or zeroed (``agent.cell_state``).

Spaces (docs/enas.md): ``macro`` (L layers, op + skip connections), ``micro`` (normal
and reduction cell of B nodes, two inputs and two ops each), ``rnn`` (N-node recurrent cell,
previous node + activation), ``mlp`` (L dense layers, width + activation; for tabular data),
``qnet`` (a MinAtar Q-network body: per layer none/conv3x3/conv5x5 and channels, pooling,
activation; the hidden width fills a parameter budget; docs/enas.md "Search over Q-networks").
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import gymnasium as gym
import numpy as np

from rewind.agents.networks import QNET_ACTIVATIONS, qnet_arch_string, qnet_spatial
from rewind.controllers.nas_ops import MACRO_OPS, MICRO_OPS, MLP_ACTIVATIONS, QNET_OPS, QNET_POOLS, RNN_ACTIVATIONS
from rewind.controllers.shared_models import build_network
from rewind.errors import RewindError



@dataclasses.dataclass(frozen=True)
class Decision:
    kind: str              # op | input | skip | anchor | reset
    n: int = 0             # options (op), anchors to choose from (input, skip)
    vocab: str = ""        # op: name of the option table (one embedding + softmax head per vocab)
    anchor_after: bool = False   # the LSTM state after this decision becomes an anchor
    input_anchor: bool = False   # anchor: a cell input (micro), whose anchor value is zeros officially

    @property
    def width(self) -> int:
        """How many entries of the flat action this decision fills."""
        return {"op": 1, "input": 1, "skip": self.n}.get(self.kind, 0)

    def nvec(self) -> list[int]:
        return {"op": [self.n], "input": [self.n], "skip": [2] * self.n}.get(self.kind, [])


class ArchitectureSpace(gym.spaces.MultiDiscrete):
    """MultiDiscrete action space that also carries the decision sequence and the search space."""

    def __init__(self, space: "SearchSpace", seed=None):
        self.search_space = space
        self.decisions = space.decisions()
        self.vocabs = space.vocabs()
        nvec = [v for d in self.decisions for v in d.nvec()]
        super().__init__(np.array(nvec, dtype=np.int64), seed=seed)


class SearchSpace:
    """Base: decisions, JSON, validation, drawings; subclasses define ``encode``/``decode``."""

    name = ""

    def params(self) -> dict:
        raise NotImplementedError

    def decisions(self) -> list[Decision]:
        raise NotImplementedError

    def vocabs(self) -> dict[str, tuple[str, ...]]:
        raise NotImplementedError

    def decode(self, flat: np.ndarray):
        """Flat choices -> readable structure (lists/dicts of names and indices)."""
        raise NotImplementedError

    def encode(self, arch) -> np.ndarray:
        """Readable structure -> flat choices; raises RewindError if it does not fit the space."""
        raise NotImplementedError

    def graph(self, flat) -> tuple[list[str], list[tuple[int, int]]]:
        """Node labels and (src, dst) edges, for drawings."""
        raise NotImplementedError

    # ---- generic ----
    def action_space(self, seed=None) -> ArchitectureSpace:
        return ArchitectureSpace(self, seed=seed)

    def size(self) -> int:
        return sum(d.width for d in self.decisions())

    def validate(self, flat) -> np.ndarray:
        """Return `flat` as an int64 vector, or raise a RewindError naming the bad entry."""
        try:
            arr = np.asarray(flat, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError):
            raise RewindError(f"{self.name} architecture must be a list of integers, got {flat!r}") from None
        nvec = np.array([v for d in self.decisions() for v in d.nvec()])
        if arr.size != nvec.size:
            raise RewindError(f"{self.name} architecture has {arr.size} choices; this space "
                              f"({self.params()}) needs {nvec.size}")
        bad = np.flatnonzero((arr < 0) | (arr >= nvec))
        if bad.size:
            i = int(bad[0])
            raise RewindError(f"{self.name} architecture choice #{i} is {arr[i]}, must be in [0, {nvec[i]})")
        return arr

    def random(self, rng: np.random.Generator) -> np.ndarray:
        nvec = np.array([v for d in self.decisions() for v in d.nvec()])
        return (rng.random(nvec.size) * nvec).astype(np.int64)

    def to_json(self, flat) -> dict:
        return {"space": self.name, "params": self.params(), "arch": self.decode(self.validate(flat))}

    def describe(self, flat) -> str:
        """A text diagram, one line per node."""
        labels, edges = self.graph(flat)
        lines = [f"{self.name} architecture ({self.params()})"]
        for i, label in enumerate(labels):
            srcs = [s for s, d in edges if d == i]
            src = ", ".join(labels[s].split(":")[0] for s in srcs) if srcs else "-"
            lines.append(f"  {label:<34s} <- {src}")
        return "\n".join(lines)

    def build(self, flat, **overrides):
        """A stand-alone torch module for this architecture (only the chosen ops' weights)."""
        return build_network(self, self.validate(flat), **overrides)

    def shared_model(self, **overrides):
        """The shared-weight child model over the whole space."""
        return build_network(self, None, **overrides)


def _name(options, value, where):
    if value not in options:
        raise RewindError(f"{where}: {value!r} is not one of {', '.join(map(str, options))}")
    return options.index(value)


def _as_list(obj, n, where):
    if not isinstance(obj, list) or len(obj) != n:
        raise RewindError(f"{where} must be a list of {n} entries")
    return obj


def _as_dict(obj, keys, where):
    if not isinstance(obj, dict) or set(obj) != set(keys):
        raise RewindError(f"{where} must be a mapping with keys {', '.join(keys)}, got {obj!r}")
    return obj


def _as_int(value, lo, hi, where):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value < hi:
        raise RewindError(f"{where} must be an integer in [{lo}, {hi}), got {value!r}")
    return value


class MacroSpace(SearchSpace):
    """L layers; each picks one of 6 ops and which earlier layers feed it by skip connections."""

    name = "macro"

    def __init__(self, layers: int = 12, channels: int = 36, pools: int = 2, dropout: float = 0.1):
        if layers < 1 or channels < 2 or pools < 0 or pools >= layers:
            raise RewindError("macro space needs layers >= 1, channels >= 2 and 0 <= pools < layers")
        self.layers, self.channels, self.pools, self.dropout = layers, channels, pools, dropout

    def params(self):
        return {"layers": self.layers, "channels": self.channels, "pools": self.pools, "dropout": self.dropout}

    def vocabs(self):
        return {"macro_op": MACRO_OPS}

    def pool_layers(self) -> list[int]:
        """Layers after which every feature map is halved (ENAS: pool_distance = L // (pools + 1))."""
        dist = self.layers // (self.pools + 1)
        return [dist * (k + 1) - 1 for k in range(self.pools)]

    def decisions(self):
        out = []
        for i in range(self.layers):
            out += [Decision("op", len(MACRO_OPS), "macro_op"), Decision("skip", i, anchor_after=True)]
        return out

    def split(self, flat):
        """[(op index, [skip flags]) per layer]."""
        out, k = [], 0
        for i in range(self.layers):
            out.append((int(flat[k]), [int(v) for v in flat[k + 1:k + 1 + i]]))
            k += 1 + i
        return out

    def decode(self, flat):
        return [{"op": MACRO_OPS[op], "skip": [j for j, s in enumerate(sk) if s]} for op, sk in self.split(flat)]

    def encode(self, arch):
        flat = []
        for i, layer in enumerate(_as_list(arch, self.layers, "macro arch (one entry per layer)")):
            layer = _as_dict(layer, ("op", "skip"), f"macro layer {i}")
            flat.append(_name(MACRO_OPS, layer["op"], f"macro layer {i} op"))
            skips = layer["skip"]
            if not isinstance(skips, list):
                raise RewindError(f"macro layer {i} skip must be a list of earlier layer indices")
            flags = [0] * i
            for j in skips:
                flags[_as_int(j, 0, i, f"macro layer {i} skip entry")] = 1
            flat += flags
        return np.array(flat, dtype=np.int64)

    def graph(self, flat):
        labels, edges = ["input: stem conv3x3"], []
        for i, (op, sk) in enumerate(self.split(self.validate(flat))):
            pool = " +pool" if i in self.pool_layers() else ""
            labels.append(f"L{i}: {MACRO_OPS[op]}{pool}")
            edges.append((i, i + 1))
            edges += [(j + 1, i + 1) for j, s in enumerate(sk) if s and j + 1 != i]
        return labels, edges


class MicroSpace(SearchSpace):
    """Normal and reduction cell of B nodes; node i takes two of the i+2 earlier states, one op each."""

    name = "micro"

    def __init__(self, nodes: int = 5, channels: int = 20, cells: int = 2, dropout: float = 0.1):
        if nodes < 1 or channels < 2 or cells < 1:
            raise RewindError("micro space needs nodes >= 1, channels >= 2 and cells >= 1")
        self.nodes, self.channels, self.cells, self.dropout = nodes, channels, cells, dropout

    def params(self):
        return {"nodes": self.nodes, "channels": self.channels, "cells": self.cells, "dropout": self.dropout}

    def vocabs(self):
        return {"micro_op": MICRO_OPS}

    def decisions(self):
        out = []
        for _cell in ("normal", "reduction"):
            out += [Decision("reset"), Decision("anchor", input_anchor=True), Decision("anchor", input_anchor=True)]
            for i in range(self.nodes):
                out += [Decision("input", i + 2), Decision("input", i + 2),
                        Decision("op", len(MICRO_OPS), "micro_op"), Decision("op", len(MICRO_OPS), "micro_op"),
                        Decision("anchor")]
        return out

    def split(self, flat):
        """{'normal': [(x, y, op_x, op_y) per node], 'reduction': [...]}."""
        flat = [int(v) for v in flat]
        half = 4 * self.nodes
        cell = lambda f: [tuple(f[4 * i:4 * i + 4]) for i in range(self.nodes)]
        return {"normal": cell(flat[:half]), "reduction": cell(flat[half:])}

    def decode(self, flat):
        return {c: [{"inputs": [x, y], "ops": [MICRO_OPS[ox], MICRO_OPS[oy]]} for x, y, ox, oy in nodes]
                for c, nodes in self.split(flat).items()}

    def encode(self, arch):
        arch = _as_dict(arch, ("normal", "reduction"), "micro arch")
        flat = []
        for c in ("normal", "reduction"):
            for i, node in enumerate(_as_list(arch[c], self.nodes, f"micro {c} cell (one entry per node)")):
                node = _as_dict(node, ("inputs", "ops"), f"micro {c} node {i}")
                ins = _as_list(node["inputs"], 2, f"micro {c} node {i} inputs")
                ops = _as_list(node["ops"], 2, f"micro {c} node {i} ops")
                flat += [_as_int(v, 0, i + 2, f"micro {c} node {i} input") for v in ins]
                flat += [_name(MICRO_OPS, v, f"micro {c} node {i} op") for v in ops]
        return np.array(flat, dtype=np.int64)

    def loose_ends(self, nodes) -> list[int]:
        used = {x for x, y, _, _ in nodes} | {y for x, y, _, _ in nodes}
        return [j for j in range(2, self.nodes + 2) if j not in used]

    def graph(self, flat):
        labels, edges = [], []
        for c, nodes in self.split(self.validate(flat)).items():
            base = len(labels)
            labels += [f"{c[0]}s0: prev-prev cell", f"{c[0]}s1: prev cell"]
            for i, (x, y, ox, oy) in enumerate(nodes):
                labels.append(f"{c[0]}s{i + 2}: {MICRO_OPS[ox]}(s{x}) + {MICRO_OPS[oy]}(s{y})")
                edges += [(base + x, base + i + 2), (base + y, base + i + 2)]
            labels.append(f"{c[0]}out: {c} cell output (concat)")
            edges += [(base + j, len(labels) - 1) for j in self.loose_ends(nodes)]
        return labels, edges


class RNNSpace(SearchSpace):
    """N-node recurrent cell: node 0 reads (x_t, h_{t-1}); node i reads one earlier node; each an activation."""

    name = "rnn"

    def __init__(self, nodes: int = 12, hidden: int = 200, dropout: float = 0.25):
        if nodes < 1 or hidden < 2:
            raise RewindError("rnn space needs nodes >= 1 and hidden >= 2")
        self.nodes, self.hidden, self.dropout = nodes, hidden, dropout

    def params(self):
        return {"nodes": self.nodes, "hidden": self.hidden, "dropout": self.dropout}

    def vocabs(self):
        return {"rnn_act": RNN_ACTIVATIONS}

    def decisions(self):
        out = [Decision("op", len(RNN_ACTIVATIONS), "rnn_act", anchor_after=True)]
        for i in range(1, self.nodes):
            out += [Decision("input", i), Decision("op", len(RNN_ACTIVATIONS), "rnn_act", anchor_after=True)]
        return out

    def split(self, flat):
        """[(previous node or -1 for (x, h), activation index) per node]."""
        flat = [int(v) for v in flat]
        out = [(-1, flat[0])]
        for i in range(1, self.nodes):
            out.append((flat[2 * i - 1], flat[2 * i]))
        return out

    def decode(self, flat):
        return [{"input": None if p < 0 else p, "activation": RNN_ACTIVATIONS[a]} for p, a in self.split(flat)]

    def encode(self, arch):
        flat = []
        for i, node in enumerate(_as_list(arch, self.nodes, "rnn arch (one entry per node)")):
            node = _as_dict(node, ("input", "activation"), f"rnn node {i}")
            if i == 0:
                if node["input"] is not None:
                    raise RewindError("rnn node 0 reads (x, h) and must have input null")
            else:
                flat.append(_as_int(node["input"], 0, i, f"rnn node {i} input"))
            flat.append(_name(RNN_ACTIVATIONS, node["activation"], f"rnn node {i} activation"))
        return np.array(flat, dtype=np.int64)

    def loose_ends(self, nodes) -> list[int]:
        used = {p for p, _ in nodes if p >= 0}
        return [i for i in range(self.nodes) if i not in used]

    def graph(self, flat):
        nodes = self.split(self.validate(flat))
        labels = ["input: x_t, h_t-1"] + [f"n{i}: {RNN_ACTIVATIONS[a]}" for i, (_, a) in enumerate(nodes)]
        edges = [(0 if p < 0 else p + 1, i + 1) for i, (p, _) in enumerate(nodes)]
        labels.append("h_t: mean of loose ends")
        edges += [(i + 1, len(labels) - 1) for i in self.loose_ends(nodes)]
        return labels, edges


class MLPSpace(SearchSpace):
    """L dense layers, each with a width and an activation (tabular and bandit data)."""

    name = "mlp"

    def __init__(self, layers: int = 3, widths: tuple = (32, 64, 128, 256), dropout: float = 0.0):
        widths = tuple(int(w) for w in widths)
        if layers < 1 or not widths or min(widths) < 1:
            raise RewindError("mlp space needs layers >= 1 and positive widths")
        self.layers, self.widths, self.dropout = layers, widths, dropout

    def params(self):
        return {"layers": self.layers, "widths": list(self.widths), "dropout": self.dropout}

    def vocabs(self):
        return {"mlp_width": tuple(str(w) for w in self.widths), "mlp_act": MLP_ACTIVATIONS}

    def decisions(self):
        return [d for _ in range(self.layers)
                for d in (Decision("op", len(self.widths), "mlp_width"),
                          Decision("op", len(MLP_ACTIVATIONS), "mlp_act", anchor_after=True))]

    def split(self, flat):
        """[(width, activation name) per layer]."""
        return [(self.widths[int(flat[2 * i])], MLP_ACTIVATIONS[int(flat[2 * i + 1])]) for i in range(self.layers)]

    def decode(self, flat):
        return [{"width": w, "activation": a} for w, a in self.split(flat)]

    def encode(self, arch):
        flat = []
        for i, layer in enumerate(_as_list(arch, self.layers, "mlp arch (one entry per layer)")):
            layer = _as_dict(layer, ("width", "activation"), f"mlp layer {i}")
            flat += [_name(self.widths, layer["width"], f"mlp layer {i} width"),
                     _name(MLP_ACTIVATIONS, layer["activation"], f"mlp layer {i} activation")]
        return np.array(flat, dtype=np.int64)

    def graph(self, flat):
        labels = ["input"] + [f"L{i}: dense {w} {a}" for i, (w, a) in enumerate(self.split(self.validate(flat)))]
        labels.append("output: linear")
        return labels, [(i, i + 1) for i in range(len(labels) - 1)]


class QNetSpace(SearchSpace):
    """A MinAtar Q-network: L conv layers (none / conv3x3 / conv5x5, valid padding, and channels),
    an optional 2x2 max pool, one hidden layer, one activation throughout.

    The hidden width is no decision: it is the largest (up to ``hidden_cap``) that keeps the whole
    network within ``params`` parameters (0: as many as MinAtar's preset network c3x16-h128-relu
    has for this input and action count), so every candidate has at most the preset's parameters
    and the comparison is at (nearly) equal parameters by construction. ``in_channels``, ``side``
    and ``n_actions`` come from the Q-value data (``rewind search --space qnet --data FILE.npz``).
    A layer whose op is ``none`` ignores its channels choice (redundant encodings).
    """

    name = "qnet"

    def __init__(self, layers: int = 2, channels: tuple = (8, 16, 32), hidden_cap: int = 512, params: int = 0,
                 in_channels: int = 4, side: int = 10, n_actions: int = 6):
        channels = tuple(int(c) for c in channels)
        if layers < 1 or not channels or min(channels) < 1 or hidden_cap < 1 or params < 0:
            raise RewindError("qnet space needs layers >= 1, positive channels, hidden_cap >= 1 and params >= 0")
        if in_channels < 1 or n_actions < 1 or qnet_spatial(side, [(5, 1)] * layers, True) < 1:
            raise RewindError(f"qnet space: {layers} conv5x5 layers and a pool do not fit a {side}x{side} input "
                              f"(or in_channels / n_actions < 1)")
        self.layers, self.channels, self.hidden_cap = layers, channels, hidden_cap
        self.in_channels, self.side, self.n_actions = in_channels, side, n_actions
        self.params_budget = params or self.preset_params()

    def params(self):
        return {"layers": self.layers, "channels": list(self.channels), "hidden_cap": self.hidden_cap,
                "params": self.params_budget, "in_channels": self.in_channels, "side": self.side,
                "n_actions": self.n_actions}

    def preset_params(self) -> int:
        """Parameters of MinAtar's network (one 16x3x3 conv, 128 hidden) for this input and action count."""
        return self._count([(3, 16)], False, 128)

    def _count(self, convs, pool, hidden) -> int:
        n, c = 0, self.in_channels
        for k, out in convs:
            n += out * c * k * k + out
            c = out
        s = qnet_spatial(self.side, convs, pool)
        return n + (c * s * s + 1) * hidden + (hidden + 1) * self.n_actions

    def vocabs(self):
        return {"qnet_op": QNET_OPS, "qnet_channels": tuple(str(c) for c in self.channels),
                "qnet_pool": QNET_POOLS, "qnet_act": QNET_ACTIVATIONS}

    def decisions(self):
        out = []
        for _ in range(self.layers):
            out += [Decision("op", len(QNET_OPS), "qnet_op"),
                    Decision("op", len(self.channels), "qnet_channels", anchor_after=True)]
        return out + [Decision("op", len(QNET_POOLS), "qnet_pool"), Decision("op", len(QNET_ACTIVATIONS), "qnet_act")]

    def split(self, flat):
        """(convs [(kernel, channels)], pool, hidden, activation): the network `flat` stands for."""
        flat = [int(v) for v in flat]
        convs = [(3 if QNET_OPS[flat[2 * i]] == "conv3x3" else 5, self.channels[flat[2 * i + 1]])
                 for i in range(self.layers) if QNET_OPS[flat[2 * i]] != "none"]
        pool = QNET_POOLS[flat[2 * self.layers]] == "max2x2"
        conv_n = self._count(convs, pool, 0) - self.n_actions   # convs alone
        s = qnet_spatial(self.side, convs, pool)
        flat_in = (convs[-1][1] if convs else self.in_channels) * s * s
        fit = (self.params_budget - conv_n - self.n_actions) // (flat_in + 1 + self.n_actions)
        return convs, pool, int(min(max(fit, 1), self.hidden_cap)), QNET_ACTIVATIONS[flat[2 * self.layers + 1]]

    def arch_string(self, flat) -> str:
        """The agent.arch string of `flat` (agent.network=searched rebuilds it)."""
        return qnet_arch_string(*self.split(self.validate(flat)))

    def decode(self, flat):
        flat = [int(v) for v in flat]
        convs, pool, hidden, act = self.split(flat)
        return {"layers": [{"op": QNET_OPS[flat[2 * i]], "channels": self.channels[flat[2 * i + 1]]}
                           for i in range(self.layers)],
                "pool": QNET_POOLS[flat[2 * self.layers]], "activation": act,
                "hidden": hidden, "string": qnet_arch_string(convs, pool, hidden, act)}

    def encode(self, arch):
        if not isinstance(arch, dict) or not {"layers", "pool", "activation"} <= set(arch):
            raise RewindError("qnet arch must be a mapping with keys layers, pool, activation "
                              "(hidden and string are derived)")
        flat = []
        for i, layer in enumerate(_as_list(arch["layers"], self.layers, "qnet arch layers (one entry per layer)")):
            layer = _as_dict(layer, ("op", "channels"), f"qnet layer {i}")
            flat += [_name(QNET_OPS, layer["op"], f"qnet layer {i} op"),
                     _name(self.channels, layer["channels"], f"qnet layer {i} channels")]
        flat += [_name(QNET_POOLS, arch["pool"], "qnet pool"),
                 _name(QNET_ACTIVATIONS, arch["activation"], "qnet activation")]
        return np.array(flat, dtype=np.int64)

    def graph(self, flat):
        convs, pool, hidden, act = self.split(self.validate(flat))
        labels = ["input"] + [f"L{i}: conv{k}x{k} {c} {act}" for i, (k, c) in enumerate(convs)]
        labels += ["pool: max 2x2"] if pool else []
        labels += [f"hidden: dense {hidden} {act}", "output: Q (linear)"]
        return labels, [(i, i + 1) for i in range(len(labels) - 1)]


SPACES = {"macro": MacroSpace, "micro": MicroSpace, "rnn": RNNSpace, "mlp": MLPSpace, "qnet": QNetSpace}


def make_space(name: str, **params) -> SearchSpace:
    if name not in SPACES:
        raise RewindError(f"unknown search space {name!r}; choose from: {', '.join(SPACES)}")
    import inspect

    valid = set(inspect.signature(SPACES[name]).parameters)
    unknown = sorted(set(params) - valid)
    if unknown:
        raise RewindError(f"{name} space has no parameter {unknown[0]!r}; valid: {', '.join(sorted(valid))}")
    try:
        return SPACES[name](**params)
    except (TypeError, ValueError) as exc:
        raise RewindError(f"bad {name} space parameters {params}: {exc}") from None


def space_from_json(doc: dict) -> tuple[SearchSpace, np.ndarray]:
    """(space, flat architecture) from a document written by ``SearchSpace.to_json``."""
    if not isinstance(doc, dict) or not {"space", "arch"} <= set(doc):
        raise RewindError("architecture JSON must be an object with keys space, params, arch")
    space = make_space(doc["space"], **dict(doc.get("params") or {}))
    return space, space.validate(space.encode(doc["arch"]))


def load_arch_json(path: str | Path, space: SearchSpace | None = None) -> tuple[SearchSpace, np.ndarray]:
    """Read an architecture file; if `space` is given it must be the same space."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise RewindError(f"architecture file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RewindError(f"architecture file {path} is not valid JSON ({exc})") from None
    got, flat = space_from_json(doc)
    if space is not None and (got.name, got.params()) != (space.name, space.params()):
        raise RewindError(f"architecture file {path} is for space {got.name} {got.params()}, "
                          f"not {space.name} {space.params()}")
    return got, flat
