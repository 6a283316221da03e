"""Registration on import (envs/registry.py): a fresh interpreter finds rewind's ids with gym.make and
gym.make_vec, every wrapper rewind adds is recreatable from the env's spec, and gymnasium's check_env
passes on the training and evaluation env of every rewind id (one Atari game stands for all: the
Atari ids share one entry point; MinAtar fails only gymnasium's seeding assertion, see docs/envs.md)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rewind  # noqa: F401  registers the ids
from rewind.envs import make_env
from rewind.envs.atari import atari_names

FRESH = """
import gymnasium as gym
env = gym.make("rewind.envs:rewind/maze-v0")      # module prefix: works before rewind is imported
assert env.spec.id == "rewind/maze-v0"
import rewind
env = gym.make("rewind/maze-v0")
env.reset(seed=0)
vec = gym.make_vec("breakout", 2)
obs, _ = vec.reset(seed=0)
assert obs.shape == (2, 4, 84, 84), obs.shape
vec.step(np.zeros(2, dtype=np.int64))
vec = gym.make_vec("breakout", 2, vectorization_mode="sync", training=False, frame_stack=1)
assert vec.reset(seed=0)[0].shape == (2, 84, 84)
import importlib.util
if importlib.util.find_spec("minatar") is not None:
    assert gym.make_vec("minatar-breakout", 2).reset(seed=0)[0].shape == (2, 4, 10, 10)
    assert gym.make("MinAtar/Breakout-v1").reset(seed=0)[0].shape == (10, 10, 4)   # MinAtar's own id, raw
assert gym.make_vec("rewind/maze-d20-v0", 2).reset(seed=0)[0].shape[0] == 2
print("ok")
"""


def test_a_fresh_interpreter_makes_rewind_ids_with_gym_make_and_make_vec():
    out = subprocess.run([sys.executable, "-c", "import numpy as np\n" + FRESH], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_every_atari_short_name_and_minatar_name_is_registered():
    assert set(atari_names()) <= set(gym.registry)
    for game in ("asterix", "breakout", "freeway", "seaquest", "space_invaders"):
        assert f"minatar-{game}" in gym.registry
    assert gym.registry["breakout"].entry_point == "rewind.envs.atari:atari_env"


@pytest.mark.parametrize("name", ["breakout", "minatar-breakout", "MinAtar/Asterix-v1", "rewind/maze-d20-v0",
                                  "rewind/bandit-digits-v0", "CartPole-v1"])
@pytest.mark.parametrize("training", [True, False])
def test_spec_make_rebuilds_the_same_env(name, training):
    pytest.importorskip("minatar") if "inatar" in name else None
    env = make_env(name, training=training)
    again = env.spec.make()
    assert [w.name for w in again.spec.additional_wrappers] == [w.name for w in env.spec.additional_wrappers]
    a, _ = env.reset(seed=3)
    b, _ = again.reset(seed=3)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for _ in range(20):
        action = env.action_space.sample()
        sa, sb = env.step(action), again.step(action)
        np.testing.assert_array_equal(np.asarray(sa[0]), np.asarray(sb[0]))
        assert sa[1:4] == sb[1:4]
        if sa[2] or sa[3]:
            break


def _rewind_ids() -> list[str]:
    rewind_own = sorted(k for k in gym.registry if k.startswith("rewind/"))
    return ["breakout", "pong", *rewind_own]


@pytest.mark.parametrize("env_id", _rewind_ids())
@pytest.mark.parametrize("training", [True, False])
def test_check_env_passes_on_training_and_evaluation_env(env_id, training):
    kwargs = {"training": training} if env_id in atari_names() else {}
    env = gym.make(env_id, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # "not the unwrapped env": we check the env as users get it
        check_env(env, skip_render_check=True)


@pytest.mark.parametrize("game", ["breakout", "space_invaders"])
def test_minatar_fails_check_env_only_on_its_own_reset_seeding(game):
    pytest.importorskip("minatar")
    env = gym.make(f"minatar-{game}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(AssertionError, match="random number generator to have been generated given a seed"):
            check_env(env, skip_render_check=True)


@pytest.mark.parametrize("name", ["breakout", "minatar-space_invaders"])
def test_curriculum_stacks_are_recreatable_from_their_spec(name):
    pytest.importorskip("minatar") if "minatar" in name else None
    from rewind.controllers.curriculum_env import CurriculumWrapper, wrap_with_curriculum

    env = wrap_with_curriculum(name, make_env(name), "tscl-window", {"seed": 0})
    again = env.spec.make()
    assert isinstance(again, CurriculumWrapper) and type(again.env) is type(env.env)
    assert again.tasks == env.tasks and again.teacher is not env.teacher   # a copy of the teacher, not the same
    np.testing.assert_array_equal(np.asarray(again.reset(seed=1)[0]), np.asarray(env.reset(seed=1)[0]))
