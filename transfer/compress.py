"""Deep Compression (Han, Mao, Dally, ICLR 2016) of a trained DQN/EBU Q-network, and its file format.

Three stages, each measured (bytes and ratio to the dense fp32 network) and evaluated:

1. Pruning: per layer, zero the weights of smallest magnitude (`prune_mode="fraction"`, the
   default: remove that fraction of each layer; `"std"`: remove |w| < prune x std(w), the
   paper's quality parameter; `conv_prune` / `output_prune` set other amounts for conv layers
   and the Q-value head, as the paper prunes its layers by their sensitivity), then retrain with the masks: pruned weights get no gradient
   and are re-zeroed after every optimizer step, so they stay exactly zero. Biases are not
   pruned (stored fp32; the paper prunes weights only).
2. Trained quantisation: per layer, k-means over the remaining weights with k = 2^bits
   centroids (conv layers `conv_bits`, default 8; fc layers `bits`, default 5, as the paper),
   initialised linearly between the layer's min and max (the paper's best), then the
   centroids are fine-tuned: a centroid's gradient is the sum of the gradients of the weights
   in its cluster; the cluster assignment stays fixed.
3. Huffman coding (`rewind.transfer.huffman`) of the cluster indices and of the sparse index
   gaps (relative positions: `gap_bits_conv` 8, `gap_bits_fc` 5 bits, as the paper).

Retraining and fine-tuning are the agent's own TD learning step (`agent.learn()`: DQN's
uniform minibatches, EBU's backward episodes) on the replay memory saved in the checkpoint,
with its own target-network schedule, for `retrain_steps` / `finetune_steps` gradient
steps. No new experience is collected: a checkpoint without its replay (run.save_buffer
false) is refused unless both step counts are 0. Our choices (configurable): retraining
continues the checkpoint's optimizer with its state; centroids (and biases) get a fresh
optimizer of the agent's kind (the paper used SGD in Caffe); both at `lr_scale` x the
agent's learning rate. Biases are trained in both phases.

Deviations, all in the coding and none changing the weights: a gap longer than the bound
is bridged by an escape symbol (the largest gap symbol means "skip 2^gap_bits - 1
positions, no weight here") instead of the paper's filler zero weight, so a filler costs
no cluster index and the codebook needs no zero; a layer with fewer remaining weights than
2^bits uses k = that number of centroids; the file stores only centroids that are used.

File format (`.rwz`, little-endian): magic b"RWZ\\x00", version u8, zlib-compressed JSON
of the run metadata (agent, env, configs: what `rewind eval` needs to rebuild the agent),
then one record per entry of the Q-network's state dict (coded weight matrices, raw fp32
for the rest), then a CRC32 of everything before it. `rewind eval model.rwz` reads it
through `rewind.transfer.load_agent`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rewind.transfer import huffman
from rewind.files import atomic_write
from rewind.agents.optim import make_optimizer
from rewind.errors import RewindError

MAGIC = b"RWZ\x00"
VERSION = 1


@dataclasses.dataclass
class CompressConfig:
    prune: float = 0.9               # fraction of each fc layer's weights removed (or std multiple, see prune_mode)
    conv_prune: float | None = None  # the same for conv layers (None: as prune)
    output_prune: float | None = None  # the same for the last weight matrix, the Q-value head (None: as prune)
    prune_mode: str = "fraction"     # fraction | std (threshold = prune x the layer's weight std, as the paper)
    bits: int = 5                    # cluster-index bits of fc layers (paper: 5)
    conv_bits: int = 8               # cluster-index bits of conv layers (paper: 8)
    gap_bits_fc: int = 5             # sparse index-gap bits of fc layers (paper: 5)
    gap_bits_conv: int = 8           # sparse index-gap bits of conv layers (paper: 8)
    retrain_steps: int = 2000        # TD gradient steps of masked retraining after pruning
    finetune_steps: int = 1000       # TD gradient steps of centroid fine-tuning after quantisation
    lr_scale: float = 1.0            # retraining / fine-tuning learning rate = this x the agent's lr
    kmeans_iters: int = 100          # Lloyd iterations at most (stops when assignments settle)
    seed: int = 0                    # seed of the minibatch sampling during retraining / fine-tuning

    def validate(self):
        if self.prune_mode not in ("fraction", "std"):
            raise RewindError(f"prune mode must be fraction or std, got {self.prune_mode!r}")
        for name, value in (("--prune", self.prune), ("--conv-prune", self.conv_prune),
                            ("--output-prune", self.output_prune)):
            if value is None:
                continue
            if self.prune_mode == "fraction" and not 0.0 <= value < 1.0:
                raise RewindError(f"{name} is the fraction of weights removed: it must be in [0, 1), got {value}")
            if self.prune_mode == "std" and not (value >= 0 and math.isfinite(value)):
                raise RewindError(f"{name} with --prune-mode std is a multiple of the weight std: must be >= 0")
        for name in ("bits", "conv_bits", "gap_bits_fc", "gap_bits_conv"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16:
                raise RewindError(f"--{name.replace('_', '-')} must be an integer in 1..16, got {value}")
        for name in ("retrain_steps", "finetune_steps"):
            if getattr(self, name) < 0:
                raise RewindError(f"--{name.replace('_', '-')} must be >= 0")
        if not self.lr_scale > 0:
            raise RewindError(f"--lr-scale must be > 0, got {self.lr_scale}")
        if self.kmeans_iters < 1:
            raise RewindError("kmeans_iters must be >= 1")
        return self


# ---------------------------------------------------------------------------- layers
def coded_layers(net: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The weight matrices and conv kernels (dim >= 2) that are pruned, quantised and coded."""
    return {name: p for name, p in net.named_parameters() if p.dim() >= 2}


def is_conv(p: torch.Tensor) -> bool:
    return p.dim() > 2


def _flat(p: torch.Tensor) -> torch.Tensor:
    """Weights in logical (row-major) order, whatever the memory format (channels_last)."""
    return p.detach().reshape(-1).contiguous()


def _set_flat(p: torch.Tensor, flat: torch.Tensor) -> None:
    with torch.no_grad():
        p.copy_(flat.view(p.shape))


# ---------------------------------------------------------------------------- stage 1: pruning
def prune_masks(net: torch.nn.Module, cfg: CompressConfig) -> dict[str, torch.Tensor]:
    """Zero the pruned weights of every coded layer; return the flat boolean keep-masks."""
    masks = {}
    layers = coded_layers(net)
    for name, p in layers.items():
        w = _flat(p)
        amount = cfg.prune
        if is_conv(p) and cfg.conv_prune is not None:
            amount = cfg.conv_prune
        if name == list(layers)[-1] and cfg.output_prune is not None:
            amount = cfg.output_prune
        if cfg.prune_mode == "fraction":
            n_drop = int(math.floor(amount * w.numel()))
            order = torch.argsort(w.abs(), stable=True)
            keep = torch.ones(w.numel(), dtype=torch.bool)
            keep[order[:n_drop]] = False
        else:
            keep = w.abs() >= amount * w.std()
        masks[name] = keep
        _set_flat(p, w * keep)
    return masks


class MaskedOptimizer:
    """Wraps the agent's optimizer: pruned weights get zero gradient and are re-zeroed after each step."""

    def __init__(self, inner: torch.optim.Optimizer, params: dict[str, torch.nn.Parameter],
                 masks: dict[str, torch.Tensor]):
        self.inner, self.params, self.masks = inner, params, masks

    def zero_grad(self, set_to_none: bool = True):
        self.inner.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self):
        for name, p in self.params.items():
            keep = self.masks[name].view(p.shape).to(p.dtype)
            if p.grad is not None:
                p.grad.mul_(keep)
        self.inner.step()
        for name, p in self.params.items():
            p.mul_(self.masks[name].view(p.shape).to(p.dtype))


# ---------------------------------------------------------------------------- stage 2: quantisation
def kmeans_1d(values: np.ndarray, k: int, iters: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means in one dimension, centroids initialised linearly over [min, max].

    Returns (centroids float32 (k,), index of each value's centroid). Empty clusters keep
    their centroid.
    """
    values = np.asarray(values, dtype=np.float64)
    centroids = np.linspace(values.min(), values.max(), k) if len(values) else np.zeros(k)
    idx = np.zeros(len(values), dtype=np.int64)
    for it in range(iters):
        order = np.argsort(centroids, kind="stable")
        cs = centroids[order]
        new_idx = order[np.searchsorted((cs[1:] + cs[:-1]) / 2, values)] if k > 1 else np.zeros(len(values), np.int64)
        if it and np.array_equal(new_idx, idx):
            break
        idx = new_idx
        sums = np.bincount(idx, weights=values, minlength=k)
        counts = np.bincount(idx, minlength=k)
        centroids = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
    return centroids.astype(np.float32), idx


@dataclasses.dataclass
class QuantisedLayer:
    """A pruned, weight-shared layer: value at flat position positions[i] is centroids[idx[i]]."""

    shape: tuple[int, ...]
    positions: np.ndarray   # int64, ascending flat positions of the kept weights
    idx: np.ndarray         # int64 cluster index per kept weight
    centroids: np.ndarray   # float32 (k,)
    bits: int
    gap_bits: int

    def dense(self) -> torch.Tensor:
        flat = np.zeros(int(np.prod(self.shape)), dtype=np.float32)
        flat[self.positions] = self.centroids[self.idx]
        return torch.from_numpy(flat).view(self.shape)


def quantise(net: torch.nn.Module, masks: dict[str, torch.Tensor], cfg: CompressConfig) -> dict[str, QuantisedLayer]:
    """k-means weight sharing per coded layer; the network's weights become their centroids."""
    layers = {}
    for name, p in coded_layers(net).items():
        w = _flat(p).cpu().numpy()
        positions = np.flatnonzero(masks[name].cpu().numpy())
        bits = cfg.conv_bits if is_conv(p) else cfg.bits
        k = max(1, min(2 ** bits, len(positions)))
        centroids, idx = kmeans_1d(w[positions], k, cfg.kmeans_iters)
        layers[name] = QuantisedLayer(tuple(p.shape), positions, idx, centroids, bits,
                                      cfg.gap_bits_conv if is_conv(p) else cfg.gap_bits_fc)
        _set_flat(p, layers[name].dense().reshape(-1).to(p.device))
    return layers


class CentroidOptimizer:
    """Fine-tunes shared weights: dL/dc_k = sum of dL/dw over the weights in cluster k.

    Stands in for the agent's optimizer during fine-tuning, so `agent.learn()` runs unchanged:
    after its backward pass, `step` gathers each layer's weight gradients into its centroids,
    steps an optimizer over centroids and the uncoded parameters (biases), and writes the
    centroids back into the weights (pruned positions stay zero).
    """

    def __init__(self, net: torch.nn.Module, layers: dict[str, QuantisedLayer], kind: str, lr: float,
                 eps: float, alpha: float):
        self.params = coded_layers(net)
        self.layers = layers
        device = next(net.parameters()).device
        self.centroids = {n: torch.nn.Parameter(torch.from_numpy(q.centroids.copy()).to(device))
                          for n, q in layers.items()}
        self.positions = {n: torch.from_numpy(q.positions).to(device) for n, q in layers.items()}
        self.idx = {n: torch.from_numpy(q.idx).to(device) for n, q in layers.items()}
        self.others = [p for n, p in net.named_parameters() if n not in self.params]
        self.net = net
        self.inner = make_optimizer(kind, list(self.centroids.values()) + self.others, lr, eps, alpha)

    def zero_grad(self, set_to_none: bool = True):
        self.net.zero_grad(set_to_none=set_to_none)
        self.inner.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self):
        for name, p in self.params.items():
            c = self.centroids[name]
            g = p.grad.reshape(-1)[self.positions[name]] if p.grad is not None else None
            c.grad = (torch.zeros_like(c).index_add_(0, self.idx[name], g) if g is not None else torch.zeros_like(c))
        self.inner.step()
        for name, p in self.params.items():
            flat = torch.zeros(p.numel(), dtype=p.dtype, device=p.device)
            flat[self.positions[name]] = self.centroids[name][self.idx[name]]
            _set_flat(p, flat)

    def result(self) -> dict[str, QuantisedLayer]:
        return {n: dataclasses.replace(q, centroids=self.centroids[n].detach().cpu().numpy().astype(np.float32))
                for n, q in self.layers.items()}


# ---------------------------------------------------------------------------- stage 3: coding
def gap_symbols(positions: np.ndarray, gap_bits: int) -> np.ndarray:
    """Relative index of each kept weight (gap d >= 1 from the previous one) as symbols < 2^gap_bits.

    Symbol s < M-1 (M = 2^gap_bits) means d = s + 1; the escape M-1 means "skip M-1
    positions without a weight" and is repeated as often as needed.
    """
    m1 = (1 << gap_bits) - 1
    d = np.diff(np.asarray(positions, dtype=np.int64), prepend=-1)
    fillers = (d - 1) // m1
    last = d - 1 - fillers * m1
    out = np.full(int(np.sum(fillers + 1)), m1, dtype=np.int64)
    out[np.cumsum(fillers + 1) - 1] = last
    return out


def positions_from_gaps(symbols: np.ndarray, gap_bits: int) -> np.ndarray:
    m1 = (1 << gap_bits) - 1
    symbols = np.asarray(symbols, dtype=np.int64)
    escape = symbols == m1
    return (np.cumsum(np.where(escape, m1, symbols + 1)) - 1)[~escape]


def _stream(symbols: np.ndarray) -> bytes:
    """count u32, alphabet u32, code length per symbol u8, payload length u32, payload."""
    counts = np.bincount(symbols, minlength=1) if len(symbols) else np.zeros(0, dtype=np.int64)
    lengths = huffman.code_lengths(counts)
    payload = huffman.encode(symbols, lengths)
    return (struct.pack("<II", len(symbols), len(lengths)) + lengths.astype(np.uint8).tobytes()
            + struct.pack("<I", len(payload)) + payload)


def _encode_layer(q: QuantisedLayer) -> bytes:
    used = np.unique(q.idx)                    # drop empty clusters: indices renumbered, values unchanged
    remap = np.zeros(len(q.centroids), dtype=np.int64)
    remap[used] = np.arange(len(used))
    return (struct.pack("<BBI", q.bits, q.gap_bits, len(used)) + q.centroids[used].astype("<f4").tobytes()
            + _stream(remap[q.idx]) + _stream(gap_symbols(q.positions, q.gap_bits)))


def encode_network(state: dict[str, torch.Tensor], layers: dict[str, QuantisedLayer]) -> list[tuple[str, bytes]]:
    """One record per state-dict entry: coded (kind 1) for quantised layers, raw fp32 (kind 0) otherwise."""
    records = []
    for name, t in state.items():
        shape = tuple(t.shape)
        head = struct.pack("<H", len(name.encode())) + name.encode() + struct.pack(f"<B{len(shape)}I", len(shape), *shape)
        if name in layers:
            body = b"\x01" + _encode_layer(layers[name])
        else:
            body = b"\x00" + _flat(t).cpu().numpy().astype("<f4").tobytes()
        records.append((name, head + body))
    return records


def write_compressed(path: str | Path, meta: dict, records: list[tuple[str, bytes]]) -> int:
    """Write the .rwz file atomically; returns its size in bytes."""
    meta_z = zlib.compress(json.dumps(meta, default=_json_default).encode(), 9)
    body = MAGIC + struct.pack("<BI", VERSION, len(meta_z)) + meta_z + struct.pack("<I", len(records))
    body += b"".join(r for _, r in records)
    blob = body + struct.pack("<I", zlib.crc32(body))
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(blob))
    return len(blob)


def _json_default(x):
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    if isinstance(x, (tuple, set)):
        return list(x)
    return str(x)


# ---------------------------------------------------------------------------- reading
def is_compressed(path: str | Path) -> bool:
    """True if `path` is a file that starts with the .rwz magic bytes."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


class _Reader:
    def __init__(self, data: bytes, path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise RewindError(f"{self.path} is truncated or corrupt; compress the checkpoint again")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))


def _read_stream(r: _Reader) -> np.ndarray:
    count, alphabet = r.unpack("<II")
    lengths = np.frombuffer(r.take(alphabet), dtype=np.uint8).astype(np.int64)
    (nbytes,) = r.unpack("<I")
    return huffman.decode(r.take(nbytes), lengths, count)


def read_compressed(path: str | Path) -> dict:
    """Decode a .rwz file to {"meta": dict, "network": state dict of fp32 tensors}; bad files -> RewindError."""
    path = Path(path)
    if not path.is_file():
        raise RewindError(f"compressed model {path} does not exist; write one with `rewind compress CHECKPOINT`")
    data = path.read_bytes()
    bad = f"{path} is truncated or corrupt (checksum mismatch); compress the checkpoint again"
    if len(data) < len(MAGIC) + 4 or data[:len(MAGIC)] != MAGIC:
        raise RewindError(f"{path} is not a rewind compressed model (.rwz)")
    if struct.unpack("<I", data[-4:])[0] != zlib.crc32(data[:-4]):
        raise RewindError(bad)
    r = _Reader(data[:-4], path)
    r.take(len(MAGIC))
    version, meta_len = r.unpack("<BI")
    if version != VERSION:
        raise RewindError(f"{path} has format version {version}; this rewind reads version {VERSION}")
    try:
        meta = json.loads(zlib.decompress(r.take(meta_len)))
        (n_records,) = r.unpack("<I")
        state = {}
        for _ in range(n_records):
            (name_len,) = r.unpack("<H")
            name = r.take(name_len).decode()
            (ndim,) = r.unpack("<B")
            shape = r.unpack(f"<{ndim}I")
            numel = int(np.prod(shape))
            (kind,) = r.unpack("<B")
            if kind == 0:
                flat = np.frombuffer(r.take(4 * numel), dtype="<f4").astype(np.float32)
            elif kind == 1:
                bits, gap_bits, k = r.unpack("<BBI")
                centroids = np.frombuffer(r.take(4 * k), dtype="<f4").astype(np.float32)
                idx = _read_stream(r)
                positions = positions_from_gaps(_read_stream(r), gap_bits)
                if len(idx) != len(positions) or (len(idx) and (idx.max() >= k or positions[-1] >= numel)):
                    raise RewindError(bad)
                flat = np.zeros(numel, dtype=np.float32)
                flat[positions] = centroids[idx]
            else:
                raise RewindError(bad)
            state[name] = torch.from_numpy(flat.copy()).view(shape)
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError, ValueError):
        raise RewindError(bad) from None
    if not isinstance(meta, dict) or "agent" not in meta or "env" not in meta:
        raise RewindError(f"{path} has no run metadata")
    return {"meta": meta, "network": state}


def compressed_meta(agent, meta: dict, compression: dict | None = None) -> dict:
    """The run metadata a .rwz file carries: the checkpoint's, its Net2Net growth, how it was compressed."""
    return {**meta, "growth": [list(g) for g in getattr(agent, "growth", [])], "compression": compression or {}}


def load_network(agent, state: dict[str, torch.Tensor], growth: list | None = None) -> None:
    """Put decoded weights into the agent's Q-network and its target network.

    `growth`: the Net2Net steps the source agent had taken, replayed first so the shapes fit.
    """
    if growth:
        agent.apply_growth(growth)
    agent.q.load_state_dict(state)
    agent.q_target.load_state_dict(state)


# ---------------------------------------------------------------------------- sizes
def stage_sizes(net: torch.nn.Module, masks, layers: dict[str, QuantisedLayer],
                records: list[tuple[str, bytes]]) -> dict[str, int]:
    """Bytes of the network at each stage; uncoded entries (biases) are fp32 in every stage.

    dense: fp32 everything. pruned: kept weights fp32 + gap symbols at gap_bits. quantised:
    kept weights at `bits` + gaps at gap_bits + fp32 codebook. huffman: the actual coded
    records (codes, code-length tables, codebooks, counts, names and shapes).
    """
    state = net.state_dict()
    dense_bits = sum(32 * t.numel() for t in state.values())
    other_bits = sum(32 * t.numel() for n, t in state.items() if n not in layers)
    pruned, quant = other_bits, other_bits
    for name, q in layers.items():
        gaps = len(gap_symbols(q.positions, q.gap_bits)) * q.gap_bits
        pruned += _ceil8(32 * len(q.positions) + gaps)
        quant += _ceil8(q.bits * len(q.positions) + gaps + 32 * len(np.unique(q.idx)))
    return {"dense": dense_bits // 8, "pruned": pruned // 8, "quantised": quant // 8,
            "huffman": sum(len(r) for _, r in records)}


def _ceil8(bits: int) -> int:
    return -(-bits // 8) * 8


# ---------------------------------------------------------------------------- the pipeline
def td_steps(agent, steps: int, desc: str, progress: bool) -> None:
    """`steps` of the agent's own learning step with its target-network schedule."""
    for _ in tqdm(range(steps), desc=desc, disable=not progress or steps == 0, leave=False, unit="step"):
        agent.gradient_update()


def prepare(checkpoint: str | Path, cfg: CompressConfig):
    """Load (agent, eval env, meta) with the checkpoint's replay memory; refuse what cannot be compressed."""
    from rewind.run.checkpoint import load_checkpoint
    from rewind.agents.dqn import DQNAgent
    from rewind.run.experiment import load_for_eval

    if is_compressed(checkpoint):
        raise RewindError(f"{checkpoint} is already compressed; give the checkpoint.pt written by `rewind train`")
    agent, env, meta = load_for_eval(checkpoint)
    if not isinstance(agent, DQNAgent) or hasattr(agent, "learners"):
        raise RewindError(f"rewind compress supports dqn and ebu checkpoints, not {meta['agent']!r}")
    if cfg.retrain_steps or cfg.finetune_steps:
        replay = load_checkpoint(checkpoint).get("replay")
        if replay is None:
            raise RewindError(f"{checkpoint} holds no replay memory (run.save_buffer was false), so it cannot be "
                              "retrained; use --retrain-steps 0 --finetune-steps 0 or a checkpoint with its replay")
        agent.replay.load_state_dict(replay)
    return agent, env, meta


def compress_agent(agent, meta: dict, cfg: CompressConfig, evaluate_fn=None, progress: bool = True) -> dict:
    """Run the three stages on agent.q in place. Returns the report (sizes, returns) and the coded records.

    `evaluate_fn(agent) -> dict` (return_mean, return_std, returns) is called before and after
    every training phase; None skips evaluation.
    """
    cfg.validate()
    torch.manual_seed(cfg.seed)
    agent.rng = np.random.default_rng(cfg.seed)
    net, acfg = agent.q, agent.config
    evals = {}

    def ev(key):
        if evaluate_fn is not None:
            evals[key] = evaluate_fn(agent)

    ev("dense")
    original_opt = agent.optimizer
    masks = prune_masks(net, cfg)
    ev("pruned")
    for g in original_opt.param_groups:
        g["lr"] = acfg.lr * cfg.lr_scale
    agent.optimizer = MaskedOptimizer(original_opt, coded_layers(net), masks)
    try:
        td_steps(agent, cfg.retrain_steps, "retrain pruned", progress)
    finally:
        agent.optimizer = original_opt
    ev("retrained")
    layers = quantise(net, masks, cfg)
    ev("quantised")
    centroid_opt = CentroidOptimizer(net, layers, acfg.optimizer, acfg.lr * cfg.lr_scale, acfg.opt_eps,
                                     acfg.rmsprop_alpha)
    agent.optimizer = centroid_opt
    try:
        td_steps(agent, cfg.finetune_steps, "fine-tune centroids", progress)
    finally:
        agent.optimizer = original_opt
    layers = centroid_opt.result()
    ev("finetuned")
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    records = encode_network(state, layers)
    sizes = stage_sizes(net, masks, layers, records)
    layer_info = {n: {"shape": list(q.shape), "kept": int(len(q.positions)), "bits": q.bits, "gap_bits": q.gap_bits,
                      "clusters_used": int(len(np.unique(q.idx))),
                      "gap_symbols": int(len(gap_symbols(q.positions, q.gap_bits))),
                      "coded_bytes": len(dict(records)[n])} for n, q in layers.items()}
    return {"settings": dataclasses.asdict(cfg), "sizes": sizes, "evals": evals, "layers": layer_info,
            "records": records}


def compress_checkpoint(checkpoint: str | Path, out: str | Path, cfg: CompressConfig, episodes: int = 100,
                        eval_seed: int = 12345, progress: bool = True) -> dict:
    """Compress a `rewind train` checkpoint into `out` (.rwz) and return the summary (no records)."""
    from rewind.run.experiment import eval_protocol
    from rewind.run.loop import evaluate

    cfg.validate()
    if episodes < 0:
        raise RewindError("--episodes must be >= 0")
    out = Path(out)
    if out.exists() and not is_compressed(out):
        raise RewindError(f"{out} exists and is not a compressed model; choose another --out")
    agent, env, meta = prepare(checkpoint, cfg)
    eps, max_steps = eval_protocol(meta)

    def evaluate_fn(a):
        r = evaluate(a, env, episodes, eps, max_steps, seed=eval_seed)
        return {"return_mean": r["return_mean"], "return_std": r["return_std"], "returns": r["returns"]}

    report = compress_agent(agent, meta, cfg, evaluate_fn if episodes else None, progress)
    records = report.pop("records")
    file_meta = compressed_meta(agent, meta, {"source": str(checkpoint), **report["settings"]})
    report["sizes"]["file"] = write_compressed(out, file_meta, records)
    decoded = read_compressed(out)["network"]
    for name, t in agent.q.state_dict().items():   # the file must hold exactly the in-memory weights
        if not torch.equal(decoded[name], t.detach().cpu()):
            raise RuntimeError(f"bug: {out} does not decode to the quantised weights of {name}")
    report.update(checkpoint=str(checkpoint), out=str(out), agent=meta["agent"], env=meta["env"],
                  eval={"episodes": episodes, "epsilon": eps, "max_steps": max_steps, "seed": eval_seed})
    return report
