"""rewind: reinforcement-learning agents behind one interface.

EBU for sample-efficient Atari, ENAS architecture search and curriculum
schedulers all implement :class:`rewind.agents.base.Agent` and are driven by
one run loop (:func:`rewind.train`).
"""

__version__ = "0.1.0"

from rewind.errors import RewindError  # noqa: E402


def __getattr__(name):
    # Lazy public API: `import rewind` stays cheap (no torch/ALE import) so the CLI starts fast.
    if name == "make_env":
        from rewind.envs import make_env
        return make_env
    if name == "make_agent":
        from rewind.agents import make_agent
        return make_agent
    if name in ("train", "evaluate"):
        from rewind.agents import loop
        return getattr(loop, name)
    raise AttributeError(f"module 'rewind' has no attribute {name!r}")


__all__ = ["RewindError", "make_env", "make_agent", "train", "evaluate", "__version__"]
