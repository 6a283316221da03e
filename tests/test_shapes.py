"""BasicShapes / GeomShapes generator (issue 6)."""

import time

import numpy as np
import pytest

from rewind.envs import shapes
from rewind.envs.shapes import MIN_CONTRAST, make_shapes, shapes_split
from rewind.errors import RewindError


@pytest.fixture(scope="module")
def geom():
    return make_shapes(3000, "geom", seed=3)


@pytest.fixture(scope="module")
def basic():
    return make_shapes(3000, "basic", seed=3)


def test_ten_thousand_images_in_seconds_and_deterministic():
    t0 = time.perf_counter()
    a = make_shapes(10_000, "geom", seed=11)
    assert time.perf_counter() - t0 < 5.0
    b = make_shapes(10_000, "geom", seed=11)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.X, make_shapes(10_000, "geom", seed=12).X)
    assert a.X.shape == (10_000, 32, 32) and a.X.dtype == np.float32


@pytest.mark.parametrize("kind", ["basic", "geom"])
def test_classes_balanced(kind):
    for n in (3000, 3001, 3002):
        counts = np.bincount(make_shapes(n, kind, seed=0).y, minlength=3)
        assert counts.max() - counts.min() <= 1 and counts.sum() == n


@pytest.mark.parametrize("which", ["basic", "geom"])
def test_every_shape_fully_inside_with_minimum_size_and_contrast(which, request):
    d = request.getfixturevalue(which)
    fg, bg = d.params["fg"], d.params["bg"]
    assert np.all(np.abs(fg - bg) >= MIN_CONTRAST)
    is_fg = np.isclose(d.X, fg[:, None, None])
    is_bg = np.isclose(d.X, bg[:, None, None])
    assert np.all(is_fg | is_bg)                            # two gray levels per image
    ring = np.ones((32, 32), bool)
    ring[1:-1, 1:-1] = False
    assert not is_fg[:, ring].any()                         # the outer pixel ring is background
    assert is_fg.sum((1, 2)).min() >= 20                    # minimum size
    contrast = d.X.reshape(len(d), -1).max(1) - d.X.reshape(len(d), -1).min(1)
    assert np.all(contrast >= MIN_CONTRAST - 1e-6)
    # exact extents inside too (triangles: their vertices; rectangles, ellipses: rotated half-widths)
    p, tri = d.params, d.y == 2
    for v in (p["vx"][tri], p["vy"][tri]):
        assert v.min() >= 1 - 1e-9 and v.max() <= 31 + 1e-9
    c, s = np.abs(np.cos(p["theta"])), np.abs(np.sin(p["theta"]))
    a, b = p["a"], p["b"]
    ext_x = np.where(d.y == 0, a * c + b * s, np.hypot(a * c, b * s))[~tri]
    ext_y = np.where(d.y == 0, a * s + b * c, np.hypot(a * s, b * c))[~tri]
    for centre, ext in ((p["cx"][~tri], ext_x), (p["cy"][~tri], ext_y)):
        assert np.all(centre - ext >= 1 - 1e-9) and np.all(centre + ext <= 31 + 1e-9)


def test_basic_shapes_are_the_special_cases(basic, geom):
    for d, special in ((basic, True), (geom, False)):
        rect_or_ell = d.y < 2
        equal_sides = np.isclose(d.params["a"][rect_or_ell], d.params["b"][rect_or_ell])
        assert equal_sides.all() == special
        vx, vy = d.params["vx"][d.y == 2], d.params["vy"][d.y == 2]
        sides = np.stack([np.hypot(vx[:, k] - vx[:, (k + 1) % 3], vy[:, k] - vy[:, (k + 1) % 3])
                          for k in range(3)], 1)
        equilateral = np.isclose(sides.min(1), sides.max(1), rtol=1e-6)
        assert equilateral.all() == special
        if not special:
            assert equal_sides.mean() < 0.01 and equilateral.mean() < 0.01
    # a square's pixel mask has aspect ratio 1 (axis-aligned ones: equal height and width)
    sq = (basic.y == 0) & (np.abs(np.sin(2 * basic.params["theta"])) < 0.02)
    m = np.isclose(basic.X[sq], basic.params["fg"][sq, None, None])
    h, w = m.any(2).sum(1), m.any(1).sum(1)
    assert np.abs(h - w).max() <= 1


def test_shape_classes_are_what_they_claim(geom):
    """Fill ratio of the bounding box separates the classes: rectangle > ellipse > triangle."""
    fg = np.isclose(geom.X, geom.params["fg"][:, None, None])
    rect = (geom.y == 0) & (np.abs(np.sin(2 * geom.params["theta"])) < 0.05)  # axis-aligned rectangles
    fill = fg.sum((1, 2)) / (fg.any(2).sum(1) * fg.any(1).sum(1))
    assert fill[rect].mean() > 0.9
    assert 0.65 < fill[geom.y == 1].mean() < 0.85
    assert fill[geom.y == 2].mean() < 0.55


def test_splits_and_consumers():
    tr, te = shapes_split("geom", "train", seed=0, n=300), shapes_split("geom", "test", seed=0, n=300)
    assert not np.array_equal(tr.X, te.X)
    X, y = tr.flat()
    assert X.shape == (300, 1024) and y.dtype == np.int64
    assert tr.images().shape == (300, 1, 32, 32)
    assert shapes.SPLITS == {"train": 10_000, "valid": 5_000, "test": 5_000}


def test_bad_input():
    with pytest.raises(RewindError, match="kind"):
        make_shapes(10, "fancy")
    with pytest.raises(RewindError, match="positive"):
        make_shapes(0)
    with pytest.raises(RewindError, match="split"):
        shapes_split("geom", "dev")
