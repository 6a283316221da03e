"""Shared test fixtures."""

from pathlib import Path

import pytest
import torch
import yaml


@pytest.fixture
def one_torch_thread():
    """Tiny nets: one torch thread is fastest, and the CI machine has two shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def small_smoke(tmp_path: Path):
    """Path maker for the shipped smoke suite (every agent, every env) with one seed and a short budget."""
    from rewind.bench.suite import SUITE_DIR

    def make(steps: int = 600) -> Path:
        raw = yaml.safe_load((SUITE_DIR / "smoke.yaml").read_text())
        raw["seeds"] = [0]
        raw["config"]["agent"].update(learning_starts=200, eps_decay_steps=400)
        raw["config"]["run"].update(steps=steps, eval_every=steps // 2, checkpoint_every=steps // 2, eval_episodes=3)
        path = tmp_path / f"smoke_small_{steps}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    return make
