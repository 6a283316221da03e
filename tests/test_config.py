"""Typed config: unknown keys and wrong types are refused, layers merge in the documented order."""

from __future__ import annotations

import pytest

from rewind.agents.dqn import DQNConfig
from rewind.run.experiment import resolve
from rewind.run.loop import RunConfig
from rewind.config import from_dict, load_yaml, merge, parse_set, preset_names
from rewind.envs.atari import AtariConfig
from rewind.errors import RewindError


def test_parse_set_reads_yaml_scalars_into_nested_sections():
    got = parse_set(["agent.lr=0.001", "agent.double=true", "agent.hidden=[64, 32]", "run.steps=500",
                     "agent.optimizer=rmsprop", "agent.lr=2.5e-4"])
    assert got == {"agent": {"lr": 2.5e-4, "double": True, "hidden": [64, 32], "optimizer": "rmsprop"},
                   "run": {"steps": 500}}
    for bad in ("agent.lr", "=3", "agent.lr.x=1"):
        with pytest.raises(RewindError, match="--set"):
            parse_set(["agent.lr=1", bad])


def test_exponent_notation_is_a_number():
    # PyYAML reads "1e-4" as a string; the CLI help's own example `--set agent.lr=1e-4` must work
    cfg = from_dict(DQNConfig, parse_set(["agent.lr=1e-4", "agent.buffer_size=1e5"])["agent"], "agent")
    assert cfg.lr == 1e-4 and cfg.buffer_size == 100_000 and isinstance(cfg.buffer_size, int)
    with pytest.raises(RewindError, match="must be an integer"):
        from_dict(RunConfig, {"steps": "1.5e0"}, "run")


def test_unknown_keys_are_refused_with_a_suggestion_and_the_valid_keys():
    with pytest.raises(RewindError, match=r"unknown config key 'agent.lrr' \(did you mean agent.lr\?\).*valid keys"):
        from_dict(DQNConfig, {"lrr": 0.1}, "agent")


@pytest.mark.parametrize("key,value,message", [
    ("lr", "fast", "agent.lr must be a number"),
    ("lr", True, "agent.lr must be a number"),
    ("batch_size", 3.5, "agent.batch_size must be an integer"),
    ("batch_size", "32", "agent.batch_size must be an integer"),
    ("double", "maybe", "agent.double must be true or false"),
    ("double", 1, "agent.double must be true or false"),
    ("optimizer", 3, "agent.optimizer must be a string"),
    ("optimizer", "sgd", "agent.optimizer must be one of"),
    ("hidden", "wide", "agent.hidden must be a list"),
    ("gamma", 1.5, r"agent.gamma must be in \[0, 1\]"),
])
def test_wrong_types_and_values_are_refused(key, value, message):
    with pytest.raises(RewindError, match=message):
        from_dict(DQNConfig, {key: value}, "agent")


def test_accepted_coercions():
    cfg = from_dict(DQNConfig, {"lr": 1, "batch_size": 64.0, "hidden": 32}, "agent")
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.batch_size == 64 and isinstance(cfg.batch_size, int)
    assert cfg.hidden == (32,)


def test_merge_overrides_recursively_without_touching_the_inputs():
    base = {"agent": {"lr": 1, "gamma": 0.9}, "run": {"steps": 5}}
    over = {"agent": {"lr": 2}, "env": {"noop_max": 0}}
    assert merge(base, over) == {"agent": {"lr": 2, "gamma": 0.9}, "run": {"steps": 5}, "env": {"noop_max": 0}}
    assert base["agent"]["lr"] == 1


def test_layers_defaults_then_preset_then_file_then_set(tmp_path):
    default = DQNConfig()
    exp = resolve("dqn", "CartPole-v1")
    preset = load_yaml("dqn_classic")["agent"]
    assert exp.agent_config.lr == preset["lr"] != default.lr                       # preset beats defaults
    assert exp.agent_config.huber_delta == default.huber_delta                    # not in preset: default
    f = tmp_path / "c.yaml"
    f.write_text("agent:\n  lr: 0.002\n  gamma: 0.5\nrun:\n  eval_every: 7\n")
    exp = resolve("dqn", "CartPole-v1", str(f))
    assert (exp.agent_config.lr, exp.agent_config.gamma, exp.run.eval_every) == (0.002, 0.5, 7)  # file beats preset
    assert exp.agent_config.batch_size == preset["batch_size"]
    exp = resolve("dqn", "CartPole-v1", str(f), parse_set(["agent.lr=0.003"]), steps=123)
    assert (exp.agent_config.lr, exp.agent_config.gamma, exp.run.steps) == (0.003, 0.5, 123)  # --set beats file


def test_the_preset_follows_the_env_family():
    atari = resolve("dqn", "pong")
    assert atari.agent_config.network == "nature" and atari.agent_config.optimizer == "rmsprop"
    assert isinstance(atari.env_config, AtariConfig) and atari.env_config.frame_stack == 4
    minatar = resolve("dqn", "minatar-breakout")
    assert minatar.agent_config.network == "minatar" and minatar.agent_config.update_every == 1
    assert resolve("dqn", "CartPole-v1").agent_config.network == "mlp"


def test_config_file_errors(tmp_path):
    with pytest.raises(RewindError, match="not found.*preset: .*dqn_nature"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent: [unclosed\n")
    with pytest.raises(RewindError, match="not valid YAML"):
        load_yaml(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(RewindError, match="must be a mapping"):
        load_yaml(listy)
    wrong_section = tmp_path / "sec.yaml"
    wrong_section.write_text("agnet:\n  lr: 1\n")
    with pytest.raises(RewindError, match="unknown config section"):
        resolve("dqn", "CartPole-v1", str(wrong_section))
    env_key = tmp_path / "env.yaml"
    env_key.write_text("env:\n  frame_skp: 3\n")
    with pytest.raises(RewindError, match="env.frame_skp.*did you mean env.frame_skip"):
        resolve("dqn", "pong", str(env_key))


@pytest.mark.parametrize("preset,env", [("dqn_nature", "pong"), ("dqn_minatar", "minatar-breakout"),
                                        ("dqn_classic", "CartPole-v1")])
def test_dqn_presets_are_valid_and_by_name(preset, env):
    assert preset in preset_names()
    exp = resolve(None, env, preset)
    assert exp.agent == "dqn"
    for key, value in load_yaml(preset)["agent"].items():
        got = getattr(exp.agent_config, key)
        assert (list(got) if isinstance(got, tuple) else got) == value
