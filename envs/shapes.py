"""BasicShapes / GeomShapes (Bengio et al. 2009): 32x32 gray images of rectangles, ellipses, triangles.

The paper gives no numeric ranges; these are ours (all in pixels of a 32x32 image whose
pixel (i, j) has its centre at (j + 0.5, i + 0.5)):

- class 0 rectangle: half-sides a, b uniform in [3, 10]; BasicShapes: a square (a = b).
- class 1 ellipse: semi-axes a, b uniform in [3, 10]; BasicShapes: a circle (a = b).
- class 2 triangle: vertex k at polar angle theta + 2*pi*k/3 + d_k and radius r_k around the
  centre, d_k uniform in [-pi/6, pi/6], r_k uniform in [5, 12]; BasicShapes: an equilateral
  triangle (d_k = 0, r_0 = r_1 = r_2 uniform in [5, 12]).
- orientation theta uniform in [0, 2*pi) for every shape (a circle's is irrelevant).
- position: the centre is uniform over every point that keeps the shape's exact extent at
  least MARGIN = 1 pixel away from the image edge, so every shape lies fully inside the image
  and the outer ring of pixels is always background.
- gray levels: background and foreground uniform in [0, 1], redrawn until
  |foreground - background| >= MIN_CONTRAST = 0.2.  Pixels are either foreground or
  background (no anti-aliasing), so the contrast of every image is exactly |fg - bg|.

Classes are balanced (counts differ by at most one) and shuffled. Everything is drawn with
numpy in whole-array operations from one seed: 10,000 images take well under a second.

Use it as a dataset (`ShapesData.X`, `.y`), flat for a bandit env (`.flat()`), or as
(N, 1, 32, 32) tensors for the architecture search (`.images()`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rewind.errors import RewindError

SIZE = 32
CLASSES = ("rectangle", "ellipse", "triangle")
KINDS = ("basic", "geom")
MARGIN = 1.0
MIN_CONTRAST = 0.2
RECT_HALF_SIDE = (3.0, 10.0)
ELLIPSE_SEMI_AXIS = (3.0, 10.0)
TRIANGLE_RADIUS = (5.0, 12.0)
TRIANGLE_ANGLE_JITTER = np.pi / 6
# the paper's split sizes per set
SPLITS = {"train": 10_000, "valid": 5_000, "test": 5_000}


@dataclasses.dataclass
class ShapesData:
    """Images X (N, 32, 32) float32 in [0, 1], labels y (N,) int64, and the drawn parameters."""

    X: np.ndarray
    y: np.ndarray
    params: dict

    def __len__(self) -> int:
        return len(self.y)

    def flat(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, 1024) float32 features and labels, e.g. for `ClassificationBandit(X, y)`."""
        return self.X.reshape(len(self.y), -1), self.y

    def images(self) -> np.ndarray:
        """(N, 1, 32, 32) float32, channel-first for conv nets."""
        return self.X[:, None]


def _uniform(rng, lo_hi, n):
    return rng.uniform(lo_hi[0], lo_hi[1], n)


def _draw_gray(rng, n):
    bg, fg = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    bad = np.abs(fg - bg) < MIN_CONTRAST
    while bad.any():
        bg[bad], fg[bad] = rng.uniform(0, 1, bad.sum()), rng.uniform(0, 1, bad.sum())
        bad = np.abs(fg - bg) < MIN_CONTRAST
    return bg.astype(np.float32), fg.astype(np.float32)


def _place(rng, ext_x, ext_y):
    """Centres that keep half-extents (ext_x, ext_y) at least MARGIN inside the image."""
    cx = rng.uniform(ext_x + MARGIN, SIZE - ext_x - MARGIN)
    cy = rng.uniform(ext_y + MARGIN, SIZE - ext_y - MARGIN)
    return cx, cy


def _triangle_vertices(rng, n, basic):
    theta = rng.uniform(0, 2 * np.pi, n)
    if basic:
        jitter = np.zeros((n, 3))
        radius = np.repeat(_uniform(rng, TRIANGLE_RADIUS, n)[:, None], 3, axis=1)
    else:
        jitter = rng.uniform(-TRIANGLE_ANGLE_JITTER, TRIANGLE_ANGLE_JITTER, (n, 3))
        radius = rng.uniform(*TRIANGLE_RADIUS, (n, 3))
    ang = theta[:, None] + 2 * np.pi * np.arange(3) / 3 + jitter
    return radius * np.cos(ang), radius * np.sin(ang), theta   # offsets from the centre


def make_shapes(n: int, kind: str = "geom", seed: int = 0) -> ShapesData:
    """`n` images of BasicShapes (kind='basic') or GeomShapes (kind='geom'), deterministic in `seed`."""
    if kind not in KINDS:
        raise RewindError(f"shapes kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise RewindError(f"number of shape images must be a positive integer, got {n!r}")
    rng = np.random.default_rng(seed)
    basic = kind == "basic"
    y = np.arange(n) % 3
    rng.shuffle(y)
    theta = rng.uniform(0, 2 * np.pi, n)
    a = np.full(n, np.nan)   # NaN for triangles, which are given by their vertices
    b = np.full(n, np.nan)
    is_rect, is_ell = y == 0, y == 1
    for mask, rng_range in ((is_rect, RECT_HALF_SIDE), (is_ell, ELLIPSE_SEMI_AXIS)):
        m = int(mask.sum())
        a[mask] = _uniform(rng, rng_range, m)
        b[mask] = a[mask] if basic else _uniform(rng, rng_range, m)
    c, s = np.abs(np.cos(theta)), np.abs(np.sin(theta))
    ext_x = np.where(is_rect, a * c + b * s, np.sqrt((a * c) ** 2 + (b * s) ** 2))
    ext_y = np.where(is_rect, a * s + b * c, np.sqrt((a * s) ** 2 + (b * c) ** 2))
    is_tri = y == 2
    vx = np.zeros((n, 3))
    vy = np.zeros((n, 3))
    tvx, tvy, ttheta = _triangle_vertices(rng, int(is_tri.sum()), basic)
    vx[is_tri], vy[is_tri], theta[is_tri] = tvx, tvy, ttheta
    # a triangle's box is not centred on its centre: place it by its vertex extents
    lo_x, hi_x = vx.min(1), vx.max(1)
    lo_y, hi_y = vy.min(1), vy.max(1)
    ext_x = np.nan_to_num(ext_x)   # triangles: placeholder, replaced below
    ext_y = np.nan_to_num(ext_y)
    cx, cy = _place(rng, ext_x, ext_y)
    tcx = rng.uniform(MARGIN - lo_x, SIZE - MARGIN - hi_x)
    tcy = rng.uniform(MARGIN - lo_y, SIZE - MARGIN - hi_y)
    cx, cy = np.where(is_tri, tcx, cx), np.where(is_tri, tcy, cy)
    bg, fg = _draw_gray(rng, n)

    X = np.empty((n, SIZE, SIZE), np.float32)
    grid = np.arange(SIZE, dtype=np.float32) + 0.5
    chunk = 2048  # bounds the (chunk, 32, 32) temporaries
    for lo in range(0, n, chunk):
        sl = slice(lo, lo + chunk)
        inside = _inside(grid, y[sl], cx[sl], cy[sl], theta[sl], a[sl], b[sl], vx[sl] + cx[sl, None],
                         vy[sl] + cy[sl, None])
        X[sl] = np.where(inside, fg[sl, None, None], bg[sl, None, None])
    params = dict(cx=cx, cy=cy, theta=theta, a=a, b=b, vx=vx + cx[:, None], vy=vy + cy[:, None],
                  fg=fg, bg=bg, kind=kind)
    return ShapesData(X, y.astype(np.int64), params)


def _inside(grid, y, cx, cy, theta, a, b, vx, vy):
    """Boolean (n, 32, 32) masks: which pixel centres lie inside each shape."""
    px = grid[None, None, :] - cx[:, None, None]
    py = grid[None, :, None] - cy[:, None, None]
    cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    u, v = px * cos + py * sin, -px * sin + py * cos
    a3, b3 = np.nan_to_num(a, nan=1.0)[:, None, None], np.nan_to_num(b, nan=1.0)[:, None, None]
    rect = (np.abs(u) <= a3) & (np.abs(v) <= b3)
    ell = (u / a3) ** 2 + (v / b3) ** 2 <= 1.0
    gx, gy = grid[None, None, :], grid[None, :, None]
    cross = []
    for k in range(3):  # sign of the edge function for each of the three edges
        x0, y0 = vx[:, k, None, None], vy[:, k, None, None]
        x1, y1 = vx[:, (k + 1) % 3, None, None], vy[:, (k + 1) % 3, None, None]
        cross.append((x1 - x0) * (gy - y0) - (y1 - y0) * (gx - x0))
    tri = ((cross[0] >= 0) & (cross[1] >= 0) & (cross[2] >= 0)) | \
          ((cross[0] <= 0) & (cross[1] <= 0) & (cross[2] <= 0))
    cls = y[:, None, None]
    return np.where(cls == 0, rect, np.where(cls == 1, ell, tri))


def shapes_split(kind: str, split: str, seed: int = 0, n: int | None = None) -> ShapesData:
    """One split ('train', 'valid', 'test') of a set, with the paper's sizes unless `n` is given.

    Each (kind, split, seed) has its own random stream, so splits never share images.
    """
    if split not in SPLITS:
        raise RewindError(f"shapes split must be one of {tuple(SPLITS)}, got {split!r}")
    stream = np.random.SeedSequence([seed, KINDS.index(kind) if kind in KINDS else 0,
                                     tuple(SPLITS).index(split)])
    return make_shapes(SPLITS[split] if n is None else n, kind, int(stream.generate_state(1)[0]))
