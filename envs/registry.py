"""rewind's own gymnasium ids. Each module with envs adds one `_register(...)` block here."""

from __future__ import annotations

import gymnasium as gym


def _register(env_id: str, entry_point: str, **kwargs) -> None:
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=entry_point, **kwargs)


def register_all() -> None:
    """Register every rewind env id (idempotent)."""
