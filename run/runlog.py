"""Run logs for any long run (training loop, searches): TensorBoard, CSV files, a progress bar, W&B.

Beside the TensorBoard events, a run directory gets the two CSV files people load into their
own plotting (SB3's `progress.csv` / `monitor.csv`, CleanRL's tags):

- `progress.csv`: one row per log interval (`row(step)`): step, seconds since the run started,
  and every scalar logged since the previous row, as `prefix/key` columns;
- `episodes.csv`: one row per finished episode (`episode(...)`): step, return, length, time.

A resumed run drops the rows past its checkpoint's step, so no step appears twice. Optional:
`track="PROJECT"` mirrors the TensorBoard scalars to Weights & Biases (`pip install rewind-rl[wandb]`).
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np

from rewind.errors import RewindError, require
from rewind.files import atomic_write


class CsvLog:
    """An append-only CSV whose header grows when a row brings new columns (the file is rewritten then)."""

    def __init__(self, path: Path, fields: list[str], keep_until: int | None = None):
        self.path = path
        self.fields: list[str] = list(fields)
        self.rows: list[dict] = []
        if path.exists():
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                self.fields = list(reader.fieldnames or [])
                self.rows = [r for r in reader if keep_until is None or float(r.get("step") or 0) <= keep_until]
        self._rewrite()

    def _rewrite(self) -> None:
        def write(tmp):
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, self.fields)
                w.writeheader()
                w.writerows(self.rows)
        atomic_write(self.path, write)

    def write(self, row: dict) -> None:
        row = {k: _plain(v) for k, v in row.items()}
        self.rows.append(row)
        new = [k for k in row if k not in self.fields]
        if new:
            self.fields += new
            self._rewrite()
            return
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.fields).writerow(row)

    def last(self, key: str, default: float = 0.0) -> float:
        return float(self.rows[-1].get(key) or default) if self.rows else default


def _plain(value):
    return float(value) if isinstance(value, (np.floating, np.integer)) else value


class RunLogger:
    """Writes TensorBoard and CSV files when given a logdir and shows a bar when asked; otherwise a no-op.

    `start` is the step a resumed run continues from; `track` a W&B project name (None: off).
    """

    def __init__(self, logdir, total: int, start: int = 0, progress: bool = True, unit: str = "step",
                 desc: str | None = None, track: str | None = None, config: dict | None = None):
        self.writer = None
        self.logdir = Path(logdir) if logdir is not None else None
        self.wandb = None
        if track:
            self.wandb = _start_wandb(self.logdir, track, config)
        if logdir is not None:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(logdir))
        self._csv: dict[str, CsvLog] = {}
        self._start = start
        self._row: dict = {}
        self._row_step: int | None = None   # a closed row waits for scalars of its own step (the evaluation)
        self.t0 = time.time()
        if self.logdir is not None:   # both files exist from the start, in every run directory
            self.t0 -= self._table("episodes.csv").last("time")
            self._table("progress.csv")
        self.bar = None
        if progress:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=start, unit=unit, desc=desc, dynamic_ncols=True, smoothing=0.05)

    def _table(self, name: str) -> CsvLog:
        if name not in self._csv:
            fields = ["step", "return", "length", "time"] if name == "episodes.csv" else ["step", "time"]
            self._csv[name] = CsvLog(self.logdir / name, fields, keep_until=self._start)
        return self._csv[name]

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        if self.writer is None:
            return
        if self._row_step is not None and step > self._row_step:
            self._flush()
        for key, value in values.items():
            if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{prefix}/{key}", float(value), step)
                self._row[f"{prefix}/{key}"] = float(value)

    def episode(self, step: int, ret: float, length: int) -> None:
        """One finished episode: TensorBoard `episode/return`, `episode/length` and a row of episodes.csv."""
        if self.writer is None:
            return
        self.writer.add_scalar("episode/return", float(ret), step)
        self.writer.add_scalar("episode/length", float(length), step)
        self._table("episodes.csv").write({"step": step, "return": float(ret), "length": int(length),
                                           "time": round(time.time() - self.t0, 3)})

    def row(self, step: int) -> None:
        """Close a log interval: one row of progress.csv with the scalars logged since the last row (and those
        logged later at this same step, such as an evaluation; it is written when a later step comes)."""
        if self.writer is None:
            return
        self._flush()
        self._row_step, self._row_time = step, round(time.time() - self.t0, 3)

    def _flush(self) -> None:
        if self._row_step is not None:
            self._table("progress.csv").write({"step": self._row_step, "time": self._row_time, **self._row})
            self._row, self._row_step = {}, None

    def text(self, tag: str, text: str, step: int) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, f"```\n{text}\n```", step)

    def progress(self, n: int, postfix: dict | None = None) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self.writer is not None:
            self._flush()
            self.writer.close()
        if self.bar is not None:
            self.bar.close()
        if self.wandb is not None:
            self.wandb.finish()


def _start_wandb(logdir: Path | None, project: str, config: dict | None):
    """W&B run mirroring this logdir's TensorBoard scalars (CleanRL's `--track`); resumes with the run."""
    if logdir is None:
        raise RewindError("--track needs a run directory (--logdir)")
    wandb = require("wandb", "wandb", "--track (Weights & Biases)")
    run_id = "".join(c if c.isalnum() else "-" for c in str(logdir.resolve()))[-64:]
    return wandb.init(project=project, name=logdir.name, id=run_id, resume="allow", dir=str(logdir),
                      config=config or {}, sync_tensorboard=True)
