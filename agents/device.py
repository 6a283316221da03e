"""Where a learner runs and in which precision: `agent.device` and `agent.precision`.

bf16 autocast is only fast where the hardware has bf16 arithmetic (CPU flags avx512_bf16 or
amx_bf16 on x86, bf16 on Arm; a CUDA GPU that reports bf16 support). Elsewhere PyTorch
emulates it and a DQN update is about 6x slower, so rewind refuses it instead of running slow.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from rewind.errors import RewindError


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when a GPU is visible, else cpu; `cuda` without a GPU is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RewindError(f"unknown device {name!r}; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RewindError(f"agent.device={name} but torch sees no CUDA GPU; use agent.device=auto or cpu")
    return device


def cpu_flags() -> set[str]:
    """The CPU feature flags the kernel reports (empty where /proc/cpuinfo is absent)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key = line.split(":", 1)[0].strip().lower()
        if key in ("flags", "features"):
            return set(line.split(":", 1)[1].split())
    return set()


def native_bf16(device: torch.device, flags: set[str] | None = None) -> bool:
    """True where bfloat16 matmuls run in hardware on `device`."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    flags = cpu_flags() if flags is None else flags
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "bf16" in flags
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse bf16 where it would be emulated (the refusal names the device and what to use)."""
    if precision == "bf16" and not native_bf16(device):
        where = "this CPU has no avx512_bf16/amx_bf16" if device.type == "cpu" else f"{device} has no bf16"
        raise RewindError(f"agent.precision=bf16: {where}, so bf16 would be emulated (~6x slower); "
                          "use agent.precision=fp32")
