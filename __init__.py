"""rewind: reinforcement-learning agents behind one interface.

EBU for sample-efficient Atari, ENAS architecture search and curriculum
schedulers all implement :class:`rewind.agents.base.Agent` and are driven by
one run loop (:func:`rewind.train`).
"""

__version__ = "0.1.0"

from rewind.errors import RewindError  # noqa: E402


def _register_upper_layer_agents() -> None:
    # Strings only: nothing is imported until an agent of that name is built.
    from rewind.agents import register_agent

    register_agent("enas", "rewind.controllers.enas_controller:ENASController")
    register_agent("distill", "rewind.transfer.distill:DistillAgent")


_register_upper_layer_agents()

import rewind.envs  # noqa: E402,F401  registers rewind's env ids with gymnasium: gym.make("breakout") works


def __getattr__(name):
    # Lazy public API: `import rewind` stays cheap (no torch/ALE import) so the CLI starts fast.
    if name == "make_env":
        from rewind.envs import make_env
        return make_env
    if name == "make_agent":
        from rewind.agents import make_agent
        return make_agent
    if name in ("train", "evaluate", "RunConfig"):
        from rewind.run import loop
        return getattr(loop, name)
    raise AttributeError(f"module 'rewind' has no attribute {name!r}")


__all__ = ["RewindError", "RunConfig", "make_env", "make_agent", "train", "evaluate", "__version__"]
