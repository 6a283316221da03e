"""Datasets for architecture search: digits, shapes, CIFAR-10 and PTB from local files.

Every loader returns fixed train / valid / test splits as torch tensors. The split never
depends on the run seed, so searches with different seeds are scored on the same test set.

- ``digits``: scikit-learn's 1797 8x8 images, stratified 60/20/20, standardised on train.
- ``shapes`` / ``shapes-basic``: GeomShapes / BasicShapes 32x32 (``rewind.envs.shapes``).
- a CIFAR-10 directory in the python-pickle format (``data_batch_1``..``data_batch_5``,
  ``test_batch``: dicts with ``b"data"`` (N, 3072) uint8 and ``b"labels"``); the last
  ``valid_fraction`` of the training batches is the validation split (ENAS: 45k / 5k).
- a PTB directory with ``ptb.train.txt``, ``ptb.valid.txt``, ``ptb.test.txt`` (one sentence
  per line, words separated by spaces; ``<eos>`` ends each line; vocabulary from train).
- a Q-value file ``*.npz`` (``run/qdata.py`` writes it from a trained agent): ``obs`` (N, C, H, W)
  uint8, ``q`` (N, A) float32 teacher Q-values, ``env`` (the env id); loaded with
  ``allow_pickle=False``. Splits in collection order, 80/10/10: the held-out transitions come
  from later episodes than the training ones. Targets are standardised with the train split's
  scalar mean and std (differences between actions are kept).
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import torch

from rewind.errors import RewindError

CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
PTB_FILES = ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt")


@dataclasses.dataclass
class _XYSplits:
    """train/valid/test as `<split>_x` / `<split>_y` tensors: shared by the image and Q-value data."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    valid_x: torch.Tensor
    valid_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def split(self, name: str):
        return getattr(self, f"{name}_x"), getattr(self, f"{name}_y")


@dataclasses.dataclass
class ImageData(_XYSplits):
    """Classification splits: x (N, C, H, W) or (N, D) float32, y (N,) int64."""

    n_classes: int
    name: str = ""
    kind = "image"

    def model_kwargs(self) -> dict:
        return {"in_shape": self.in_shape, "n_classes": self.n_classes}


@dataclasses.dataclass
class TextData:
    """Language-model token streams (1-D int64) and the vocabulary."""

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    vocab: list
    name: str = ""
    kind = "text"

    def model_kwargs(self) -> dict:
        return {"vocab_size": len(self.vocab)}


@dataclasses.dataclass
class QValueData(_XYSplits):
    """Distillation targets for Q-network search: x (N, C, H, W) float32 observations, y (N, A)
    standardised teacher Q-values; q_mean / q_std undo the standardisation."""

    env_id: str
    q_mean: float
    q_std: float
    name: str = ""
    kind = "qvalues"

    @property
    def n_actions(self) -> int:
        return int(self.train_y.shape[1])

    def model_kwargs(self) -> dict:
        return {"in_shape": self.in_shape, "n_classes": self.n_actions}


Q_DATA_KEYS = ("obs", "q", "env")


def load_q_data(path: str | Path) -> QValueData:
    """A Q-value .npz (obs, q, env) as train / valid / test splits; every failure is one line."""
    import zipfile

    path = Path(path)
    what = f"Q-value data {path}"
    if not path.is_file():
        raise RewindError(f"{what} does not exist (write one with: python -m rewind.bench.studies.enas_qnet collect)")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in Q_DATA_KEYS if k not in f.files]
            if missing:
                raise RewindError(f"{what} lacks {', '.join(missing)}; it needs arrays obs (N, C, H, W), q (N, A), env")
            obs, q, env = f["obs"], f["q"], str(f["env"])
    except RewindError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        first = str(exc).splitlines()[0][:100] if str(exc) else ""
        raise RewindError(f"{what} is not a readable .npz ({type(exc).__name__}: {first})") from None
    if obs.ndim != 4 or q.ndim != 2 or len(obs) != len(q) or len(q) < 30 or q.shape[1] < 1:
        raise RewindError(f"{what}: obs must be (N, C, H, W) and q (N, A) with the same N >= 30; got "
                          f"{obs.shape} and {q.shape}")
    if not np.issubdtype(q.dtype, np.floating) or not np.isfinite(q).all():
        raise RewindError(f"{what}: q must hold finite floating-point values")
    n = len(q)
    a, b = int(0.8 * n), int(0.9 * n)
    mean, std = float(q[:a].mean()), float(max(q[:a].std(), 1e-6))
    x = torch.from_numpy(obs.astype(np.float32))
    y = torch.from_numpy(((q - mean) / std).astype(np.float32))
    return QValueData(x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:], env, mean, std, name=path.stem)


def _standardise(train, *others):
    dims = (0, 2, 3) if train.ndim == 4 else (0,)
    mean = train.mean(dim=dims, keepdim=True)
    std = train.std(dim=dims, keepdim=True).clamp_min(1e-3)
    return [(t - mean) / std for t in (train, *others)]


def _stratified(y: np.ndarray, fractions, seed: int):
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    a, rest = train_test_split(idx, train_size=fractions[0], stratify=y, random_state=seed)
    b, c = train_test_split(rest, train_size=fractions[1] / (1 - fractions[0]), stratify=y[rest],
                            random_state=seed)
    return a, b, c


def load_digits_data() -> ImageData:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1)
    y = np.asarray(d.target, dtype=np.int64)
    tr, va, te = _stratified(y, (0.6, 0.2), seed=0)
    yt = torch.from_numpy(y)
    xs = _standardise(x[tr], x[va], x[te])
    return ImageData(xs[0], yt[tr], xs[1], yt[va], xs[2], yt[te], 10, "digits")


def load_shapes_data(kind: str = "geom", n_train: int | None = None) -> ImageData:
    try:
        from rewind.envs import shapes
    except ImportError:
        raise RewindError("the shapes generator (rewind.envs.shapes) is not available in this install") from None
    n_eval = None if n_train is None else max(n_train // 2, 1)
    parts = [shapes.shapes_split(kind, s, seed=0, n=n_train if s == "train" else n_eval)
             for s in ("train", "valid", "test")]
    xs = [torch.from_numpy(np.ascontiguousarray(p.images(), dtype=np.float32)) for p in parts]
    xs = _standardise(*xs)
    ys = [torch.from_numpy(np.asarray(p.y, dtype=np.int64)) for p in parts]
    return ImageData(xs[0], ys[0], xs[1], ys[1], xs[2], ys[2], len(shapes.CLASSES), f"shapes-{kind}")


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles; allow only what a dict of numpy arrays needs, so a crafted file
    cannot name (and so call) any other function."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"),
                ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path):
    try:
        with open(path, "rb") as f:
            d = _ArrayOnlyUnpickler(f, encoding="bytes").load()
        data = np.asarray(d[b"data"], dtype=np.uint8)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise RewindError(f"{path} is not a CIFAR-10 python batch (dict with b'data' and b'labels'): "
                          f"{type(exc).__name__}") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise RewindError(f"{path}: expected data of shape (N, 3072) and N labels, got {data.shape} "
                          f"and {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise RewindError(f"{path}: CIFAR-10 labels must be in 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(directory: str | Path, valid_fraction: float = 0.1) -> ImageData:
    d = Path(directory)
    train_files = [d / n for n in CIFAR_TRAIN if (d / n).exists()]
    if not train_files or not (d / "test_batch").exists():
        raise RewindError(f"{d} is not a CIFAR-10 directory: need data_batch_1..5 and test_batch "
                          "(the python version, cifar-10-batches-py)")
    parts = [_read_cifar_batch(p) for p in train_files]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    tx, ty = _read_cifar_batch(d / "test_batch")
    n_valid = int(round(len(x) * valid_fraction))
    if n_valid < 1 or n_valid >= len(x):
        raise RewindError(f"CIFAR-10 in {d}: {len(x)} training images cannot give a validation split")
    conv = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0)
    xs = _standardise(conv(x[:-n_valid]), conv(x[-n_valid:]), conv(tx))
    yt = torch.from_numpy
    return ImageData(xs[0], yt(y[:-n_valid]), xs[1], yt(y[-n_valid:]), xs[2], yt(ty), 10, "cifar10")


def _ptb_words(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RewindError(f"{path} is not UTF-8 text; PTB files are plain text, one sentence per line") from None
    words = []
    for line in text.splitlines():
        toks = line.split()
        if toks:
            words += toks + ["<eos>"]
    return words


def load_ptb(directory: str | Path) -> TextData:
    d = Path(directory)
    missing = [n for n in PTB_FILES if not (d / n).exists()]
    if missing:
        raise RewindError(f"{d} is not a PTB directory: missing {', '.join(missing)}")
    train, valid, test = (_ptb_words(d / n) for n in PTB_FILES)
    if len(train) < 2 or len(valid) < 2 or len(test) < 2:
        raise RewindError(f"PTB files in {d} are empty; each split needs at least one sentence")
    vocab = sorted(set(train))
    index = {w: i for i, w in enumerate(vocab)}
    unk = index.get("<unk>")

    def ids(words, split):
        out = [index.get(w, unk) for w in words]
        if unk is None and None in out:
            bad = next(w for w in words if w not in index)
            raise RewindError(f"PTB {split} word {bad!r} is not in the training vocabulary and there is no <unk>")
        return torch.tensor(out, dtype=torch.long)

    return TextData(ids(train, "train"), ids(valid, "valid"), ids(test, "test"), vocab, "ptb")


def load_nas_data(spec: str, n_train: int | None = None):
    """ImageData or TextData from a name (digits, shapes, shapes-basic) or a CIFAR-10 / PTB directory;
    QValueData from a ``.npz`` file."""
    if spec == "digits":
        return load_digits_data()
    if spec in ("shapes", "shapes-geom", "shapes-basic"):
        return load_shapes_data("basic" if spec == "shapes-basic" else "geom", n_train)
    path = Path(spec)
    if path.suffix == ".npz":
        return load_q_data(path)
    if not path.exists():
        raise RewindError(f"data {spec!r} is neither digits, shapes, shapes-basic, a Q-value .npz nor an existing "
                          "directory")
    if not path.is_dir():
        raise RewindError(f"data {spec!r} is a file; give a CIFAR-10 or PTB directory")
    if (path / "ptb.train.txt").exists():
        return load_ptb(path)
    if (path / "data_batch_1").exists() or (path / "test_batch").exists():
        return load_cifar10(path)
    raise RewindError(f"{path} holds neither CIFAR-10 (data_batch_1..5, test_batch) nor PTB "
                      "(ptb.train.txt, ptb.valid.txt, ptb.test.txt)")
