"""Agents and the registry that maps CLI names (`--agent dqn`) to classes.

Each entry is "module:Class" and is imported only when asked for, so adding an agent is
one line here and `rewind --help` does not import torch-heavy modules it does not need.
"""

from __future__ import annotations

import difflib
import importlib

from rewind.errors import RewindError

# Learners defined in this folder. Agents of higher layers (the ENAS controller in controllers/,
# the distillation student in transfer/) are added by rewind/__init__.py through register_agent,
# so this registry never names a module above it.
AGENTS: dict[str, str] = {
    "dqn": "rewind.agents.dqn:DQNAgent",
    "ebu": "rewind.agents.ebu:EBUAgent",
    "ebu-adaptive": "rewind.agents.ebu:AdaptiveEBUAgent",
    "tabular-ebu": "rewind.agents.tabular:TabularEBUAgent",
    "tabular-q": "rewind.agents.tabular:TabularQAgent",
    "eps-greedy-linear": "rewind.agents.bandit_linear:EpsGreedyLinearAgent",
    "linucb": "rewind.agents.bandit_linear:LinUCBAgent",
    "regcb": "rewind.agents.bandit_linear:RegCBAgent",
    "eps-greedy-neural": "rewind.agents.bandit_neural:EpsGreedyNeuralAgent",
    "bootstrap-ts": "rewind.agents.bandit_neural:BootstrapTSAgent",
    "softmax-pg": "rewind.agents.bandit_neural:SoftmaxPGAgent",
    "supervised": "rewind.agents.bandit_neural:SupervisedAgent",
    "youtube-dnn": "rewind.agents.recsys:YouTubeDNNAgent",
    "recsys-random": "rewind.agents.recsys_baselines:RandomRecAgent",
    "cg-eps-greedy-linear": "rewind.agents.recsys_baselines:CGEpsGreedyLinearAgent",
    "cg-linucb": "rewind.agents.recsys_baselines:CGLinUCBAgent",
    "cg-bootstrap-ts": "rewind.agents.recsys_baselines:CGBootstrapTSAgent",
    "mtl-bandit": "rewind.agents.multitask_bandit:MultiTaskBanditAgent",
}


def register_agent(name: str, target: str) -> None:
    """Make `--agent name` build the class at "module:Class" (imported only when first used)."""
    AGENTS[name] = target


def agent_class(name: str):
    """The Agent class registered under `name`, or a RewindError listing the valid names."""
    if name not in AGENTS:
        close = difflib.get_close_matches(name, AGENTS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise RewindError(f"unknown agent {name!r}{hint}; choose from: {', '.join(sorted(AGENTS))}")
    module, cls = AGENTS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_agent(name: str, env, config: dict | None = None, *, seed: int = 0):
    """Build agent `name` for `env` with hyperparameters `config` (dict of overrides)."""
    from rewind.config import from_dict
    from rewind.envs import frame_stack_of

    cls = agent_class(name)
    cfg = from_dict(cls.Config, config or {}, "agent") if cls.Config is not None else None
    return cls(env.observation_space, env.action_space, cfg, seed=seed, frame_stack=frame_stack_of(env))
