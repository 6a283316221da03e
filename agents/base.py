"""The one Agent interface every learner in rewind implements (docs/interface.md).

DQN, EBU, the bandit learners, the ENAS controller and the curriculum teachers are
all Agents, so one run loop (`rewind.run.loop.train`) drives any of them in any
gymnasium env and owns seeding, logging, evaluation and checkpoints.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import gymnasium as gym


class Agent(abc.ABC):
    """A learner driven by the run loop.

    Per env step the loop calls ``act`` then ``observe`` then ``update``; the agent
    decides inside ``update`` whether a learning step is due (train frequency,
    learning starts) and returns the metrics of what it did (empty dict if nothing).

    Subclasses set ``Config`` to a dataclass of their hyperparameters; the config
    system fills it from presets and ``--set`` overrides.
    """

    Config: ClassVar[type | None] = None

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: Any = None,
                 *, seed: int = 0, frame_stack: int = 1):
        self.observation_space = observation_space
        self.action_space = action_space
        if config is None and self.Config is not None:
            config = self.Config()
        self.config = config
        self.seed = seed
        self.frame_stack = frame_stack

    @abc.abstractmethod
    def act(self, obs, explore: bool = True):
        """Return an action for `obs`. explore=False asks for the greedy/deterministic choice."""

    @abc.abstractmethod
    def observe(self, obs, action, reward: float, next_obs, terminated: bool, truncated: bool,
                info: dict) -> None:
        """Record one transition (store it, update counters)."""

    @abc.abstractmethod
    def update(self) -> dict[str, float]:
        """Do the learning step(s) that are due now; return metrics to log."""

    @abc.abstractmethod
    def state_dict(self) -> dict:
        """Everything needed to resume exactly: networks, optimizers, counters, RNG states.

        Replay memory is not included; agents that have one expose it as ``self.replay``
        (with its own state_dict) and the loop saves it when asked to. Data only: tensors, numpy
        arrays and scalars, numbers, strings, bytes, lists/tuples/dicts of those (a Generator as
        its ``bit_generator.state``), since checkpoints load with ``weights_only=True``.
        """

    @abc.abstractmethod
    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned."""

    def live_metrics(self) -> dict[str, float]:
        """Scalars that describe the agent now (e.g. epsilon); the loop logs them at episode ends and log intervals."""
        return {}

    # ------------------------------------------------------------------ vector envs (run.num_envs > 1)
    def act_batch(self, obs, explore: bool = True):
        """Actions for a batch of observations, one per env. Agents that can should answer with one
        forward pass; this default asks ``act`` once per env."""
        import numpy as np

        return np.array([self.act(o, explore) for o in obs])

    def observe_batch(self, obs, actions, rewards, next_obs, terminated, truncated, infos: list[dict]) -> None:
        """Record one step of every env (``next_obs`` holds the final observation where an episode
        ended). Agents with a replay override this to keep each env's episodes contiguous."""
        raise NotImplementedError(f"{type(self).__name__} does not support run.num_envs > 1; use run.num_envs=1")
