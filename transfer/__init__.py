"""Transfer and compression of trained agents: Net2Net growth runs, distillation, Deep Compression.

These modules use agents/ and run/; only cli/ and bench/ use them.
"""

from __future__ import annotations

from pathlib import Path


def load_agent(path: str | Path):
    """(agent, eval env, meta) from a `rewind train` checkpoint or a `rewind compress` file (.rwz)."""
    from rewind.errors import RewindError
    from rewind.run.experiment import agent_from_meta, load_for_eval
    from rewind.transfer.compress import is_compressed, load_network, read_compressed

    if not is_compressed(path):  # detected by its magic bytes
        return load_for_eval(path)
    state = read_compressed(path)
    meta = state.get("meta") or {}
    agent, env = agent_from_meta(path, meta)
    try:
        load_network(agent, state["network"], meta.get("growth"))
    except (KeyError, RuntimeError, AttributeError) as exc:
        raise RewindError(f"{path} does not fit agent {meta['agent']!r}: {str(exc).splitlines()[0]}") from None
    return agent, env, meta
