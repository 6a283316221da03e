"""TensorBoard scalars/text and a tqdm progress bar for any long run (training loop, searches)."""

from __future__ import annotations

import numpy as np


class RunLogger:
    """Writes to TensorBoard when given a logdir and shows a bar when asked; otherwise a no-op."""

    def __init__(self, logdir, total: int, start: int = 0, progress: bool = True, unit: str = "step",
                 desc: str | None = None):
        self.writer = None
        if logdir is not None:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(logdir))
        self.bar = None
        if progress:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=start, unit=unit, desc=desc, dynamic_ncols=True, smoothing=0.05)

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{prefix}/{key}", float(value), step)

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
            self.writer.close()
        if self.bar is not None:
            self.bar.close()
