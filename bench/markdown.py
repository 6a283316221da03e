"""Result tables as Markdown files that say which command made them (written atomically)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from rewind.files import atomic_write_text


def write_result(out: str | Path, title: str, module: str, argv: list[str] | None, body: str) -> Path:
    """Write `# title`, the exact command (`python -m module args`) and `body` to `out`."""
    args = shlex.join(argv if argv is not None else sys.argv[1:])
    out = Path(out)
    atomic_write_text(out, f"# {title}\n\nCommand: `python -m {module} {args}`\n\n{body}\n")
    print(f"\nwritten: {out}")
    return out
