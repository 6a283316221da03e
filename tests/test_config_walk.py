"""No silent settings: every field of every registered agent's Config is read by the agent while it
acts, learns and checkpoints, or a non-default value of it is refused by validate() with one line.

How "read" is proven: the agent gets a config object that records attribute reads (a subclass of its
Config, so isinstance and dataclasses still work), then runs a short real training in a small env.
validate() runs before recording starts, so a field that only validate() looks at counts as unread.
"""

from __future__ import annotations

import dataclasses

import pytest

import rewind
from rewind.agents import AGENTS, agent_class
from rewind.errors import RewindError
from rewind.run.loop import RunConfig, train

# the Bag of Tricks recipe keys (agents/recipes.py), all on
RECIPE = {"lr_schedule": "cosine", "lr_warmup_steps": 5, "lr_decay_steps": 50, "weight_decay": 1e-4, "no_bias_decay": True, "label_smoothing": 0.1, "mixup_alpha": 0.2}
DIM = {"hidden": (8, 8), "aux_loss": "dim", "aux_weight": 0.5, "dim_estimator": "infonce"}
Q_DIM = {"aux_loss": "dim", "aux_weight": 0.5, "dim_estimator": "jsd"}

# agent -> (env, base overrides so learning starts within the short run, variants whose reads are added:
# a field used only in one mode, e.g. the focal-loss gamma, must be read in that mode)
SETUPS = {
    "dqn": ("CartPole-v1", {"learning_starts": 50, "batch_size": 8}, [{}, {"n_step": 3}, Q_DIM]),
    "ebu": ("CartPole-v1", {"learning_starts": 50, "batch_size": 8}, [{}, Q_DIM]),
    "ebu-adaptive": ("CartPole-v1", {"learning_starts": 50, "batch_size": 8}, [{}, Q_DIM]),
    "tabular-ebu": (("rewind/maze-v0", {"observation": "index", "size": 4, "density": 0.0, "max_steps": 30}), {}, [{}]),
    "tabular-q": (("rewind/maze-v0", {"observation": "index", "size": 4, "density": 0.0, "max_steps": 30}), {}, [{}]),
    "eps-greedy-linear": ("rewind/bandit-iris-v0", {}, [{}]),
    "linucb": ("rewind/bandit-iris-v0", {}, [{}]),
    "regcb": ("rewind/bandit-iris-v0", {}, [{}]),
    "eps-greedy-neural": ("rewind/bandit-iris-v0", {"batch_size": 8}, [{}, {"cb_beta": 0.9, "cb_loss": "focal"}, RECIPE, DIM]),
    "bootstrap-ts": ("rewind/bandit-iris-v0", {"batch_size": 8}, [{}, {"cb_beta": 0.9, "cb_loss": "focal"}, RECIPE, DIM]),
    "softmax-pg": ("rewind/bandit-iris-v0", {}, [{}]),
    "youtube-dnn": ("rewind/recsys-v0", {"learning_starts": 100, "batch_size": 16}, [{}, {"example_age": False, "ranking_loss": "click"},
                                              {"ranking_head": "mmoe"}]),
    "cg-eps-greedy-linear": ("rewind/recsys-v0", {}, [{}]),
    "cg-linucb": ("rewind/recsys-v0", {}, [{}]),
    "cg-bootstrap-ts": ("rewind/recsys-v0", {}, [{}]),
    "mtl-bandit": ("rewind/mmoe-rho1.0-v0", {}, [{}, {"head": "omoe"}]),
    "supervised": (("rewind/bandit-iris-v0", {"full_feedback": True}), {"batch_size": 8},
                   [{}, {"cb_beta": 0.9, "cb_loss": "focal"}, RECIPE, {"local_loss": "predsim-bpf"}, DIM]),
}
NO_CONFIG = {"recsys-random"}   # no settings at all: nothing can be ignored
SPECIAL = {"enas", "distill"}   # their own envs: a NAS env over a shared-weight child; a teacher checkpoint


def recording(cfg):
    """A copy of dataclass instance `cfg` whose field reads are collected in the returned set."""
    reads: set[str] = set()
    names = {f.name for f in dataclasses.fields(cfg)}

    class Recording(type(cfg)):
        def __getattribute__(self, name):
            if name in names:
                reads.add(name)
            return object.__getattribute__(self, name)

    obj = object.__new__(Recording)
    obj.__dict__.update(cfg.__dict__)
    return obj, reads


def nas_env(space_name: str):
    from rewind.controllers.search_spaces import make_space
    from rewind.envs.nas import NASEnv
    from rewind.envs.nas_data import load_digits_data

    data = load_digits_data()
    space = make_space(space_name, **({"layers": 2, "widths": (8, 16)} if space_name == "mlp"
                                      else {"layers": 3, "channels": 4, "pools": 1}))
    return NASEnv(data, space.shared_model(**data.model_kwargs()), space.action_space(seed=0), seed=0)


def reads_while_training(name: str, env_id, overrides: dict, steps: int = 300) -> set[str]:
    cls = agent_class(name)
    cfg = dataclasses.replace(cls.Config(), **overrides)
    cfg.validate()
    rec, reads = recording(cfg)
    if callable(env_id):
        env = env_id()
    else:
        env_id, env_config = env_id if isinstance(env_id, tuple) else (env_id, None)
        env = rewind.make_env(env_id, env_config, seed=0)
    agent = cls(env.observation_space, env.action_space, rec, seed=0)
    train(agent, env, RunConfig(steps=steps, eval_every=0, eval_episodes=2, eval_max_steps=50, progress=False,
                                checkpoint_every=0), seed=0)
    agent.load_state_dict(agent.state_dict())
    return reads


def other_value(value):
    """A different value of the same type (for fields no run reads: validate() must refuse it)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1 if value == 0 else value * 0.5 + 0.01
    if isinstance(value, tuple):
        return value + value[-1:] if value else (1,)
    return None   # strings: no way to pick a valid other value, so a string field must be read


def test_every_registered_agent_is_walked():
    assert set(AGENTS) == set(SETUPS) | SPECIAL | NO_CONFIG
    assert all(agent_class(name).Config is None for name in NO_CONFIG)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    from rewind.run.experiment import resolve, run_experiment

    logdir = tmp_path_factory.mktemp("teacher")
    exp = resolve("dqn", "CartPole-v1", overrides={"agent": {"hidden": [16]}, "run": {
        "eval_every": 0, "eval_episodes": 0, "checkpoint_every": 0}}, steps=200, seed=0)
    run_experiment(exp, logdir, progress=False)
    return str(logdir)


def setup_of(name: str, request):
    if name == "enas":
        return (lambda: nas_env("macro")), {"samples_per_update": 2}, [{}, {"baseline_init": "first"}]
    if name == "distill":
        base = {"teacher": request.getfixturevalue("teacher_dir"), "network": "mlp", "hidden": (16,),
                "learning_starts": 50, "batch_size": 8}
        return "CartPole-v1", base, [{"loss": "kd"}, {"loss": "policy", "experience": "student"},
                                     {"loss": "rkd", "rkd_output": "policy"}]
    return SETUPS[name]


@pytest.mark.parametrize("name", sorted(set(SETUPS) | SPECIAL))
def test_every_config_field_is_read_or_refused(name, one_torch_thread, request):
    env_id, base, variants = setup_of(name, request)
    cls = agent_class(name)
    reads = set()
    for variant in variants:
        reads |= reads_while_training(name, env_id, {**base, **variant}, steps=40 if name == "enas" else 300)
    unread = [f for f in dataclasses.fields(cls.Config) if f.name not in reads]
    silent = []
    for field in unread:
        value = other_value(getattr(cls.Config(), field.name))
        if value is None:
            silent.append(field.name)
            continue
        try:
            dataclasses.replace(cls.Config(), **{field.name: value}).validate()
        except RewindError:
            continue
        silent.append(field.name)
    assert silent == [], f"{name} accepts and ignores: {silent}"


def test_the_walk_catches_an_ignored_field():
    # EBU reads neither `double` nor `n_step`: both must be refused, so the walk above can fail.
    cls = agent_class("ebu")
    reads = reads_while_training("ebu", "CartPole-v1", {"learning_starts": 50, "batch_size": 8})
    assert "double" not in reads and "n_step" not in reads
    with pytest.raises(RewindError):
        dataclasses.replace(cls.Config(), double=True).validate()
