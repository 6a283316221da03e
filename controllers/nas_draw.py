"""Readable drawings of an architecture: a PNG (matplotlib) beside the text diagram of ``describe``."""

from __future__ import annotations

from pathlib import Path

from rewind.errors import require


def draw_png(space, flat, path: str | Path) -> Path:
    """Nodes top to bottom, one box each; the main path straight, other edges as arcs on the right."""
    matplotlib = require("matplotlib", "bench", "plotting")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, edges = space.graph(flat)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(6.5, 0.55 * n + 1.0))
    ys = {i: -i for i in range(n)}
    for i, label in enumerate(labels):
        ax.text(0, ys[i], label, ha="center", va="center", fontsize=9, family="monospace",
                bbox={"boxstyle": "round,pad=0.3", "fc": "#e8f0fb", "ec": "#3b6ea5"})
    for src, dst in edges:
        straight = abs(dst - src) == 1
        rad = 0.0 if straight else (-0.35 if dst > src else 0.35) * min(1.0, 0.4 + 0.15 * abs(dst - src))
        x = 0.0 if straight else 0.9
        ax.annotate("", xy=(x, ys[dst] + 0.25), xytext=(x, ys[src] - 0.25),
                    arrowprops={"arrowstyle": "->", "color": "#555555" if straight else "#c0504d",
                                "connectionstyle": f"arc3,rad={rad}"})
    ax.set_xlim(-3.2, 3.2)
    ax.set_ylim(-n, 1)
    ax.axis("off")
    ax.set_title(f"{space.name} architecture", fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
