"""`rewind tune` (run/tune.py) on a 3-trial CartPole study: the SQLite study exists, a second invocation
resumes it, a pruned trial is recorded as pruned, and the best config is a preset `rewind train` takes."""

from __future__ import annotations

import pytest
import yaml

from rewind.cli import main

optuna = pytest.importorskip("optuna")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPACE = """\
agent.lr: {float: [1.0e-4, 1.0e-2], log: true}
agent.hidden: {choices: [[32], [64, 64]]}
agent.batch_size: {int: [16, 64]}
"""
FIXED = ["--set", "agent.learning_starts=100", "--set", "agent.update_every=4", "--set", "agent.gradient_steps=1",
         "--set", "agent.eps_decay_steps=200", "--set", "run.eval_every=200", "--set", "run.eval_episodes=2",
         "--set", "run.checkpoint_every=0"]


def tune(tmp_path, *extra):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    return main(["tune", "--agent", "dqn", "--env", "CartPole-v1", "--study", str(tmp_path / "study"), "--steps",
                 "400", "--space", str(space), "--startup-trials", "1", *FIXED, *extra])


def load(tmp_path):
    return optuna.load_study(study_name="rewind", storage=f"sqlite:///{tmp_path / 'study' / 'study.db'}")


def test_study_resumes_records_pruned_trials_and_writes_a_preset_that_trains(tmp_path, capsys):
    assert tune(tmp_path, "--trials", "2") == 0
    assert (tmp_path / "study" / "study.db").exists()
    first = load(tmp_path).get_trials()
    assert [t.state.name for t in first] == ["COMPLETE", "COMPLETE"]
    # a second invocation resumes the same study: the two trials are kept, one more is added, and the
    # threshold pruner (no CartPole return reaches 1e9) stops it at its first evaluation
    assert tune(tmp_path, "--trials", "3", "--pruner", "below:1e9") == 0
    trials = load(tmp_path).get_trials()
    assert [t.number for t in trials] == [0, 1, 2]
    assert [t.params for t in trials[:2]] == [t.params for t in first]
    assert trials[2].state.name == "PRUNED" and list(trials[2].intermediate_values) == [200]
    # the best finished trial, as a preset: complete sections, the tuned values in it, and it trains
    best = max(first, key=lambda t: t.value)
    preset = yaml.safe_load((tmp_path / "study" / "best.yaml").read_text())
    assert preset["algo"] == "dqn" and preset["agent"]["lr"] == pytest.approx(best.params["agent.lr"])
    assert preset["agent"]["hidden"] == yaml.safe_load(best.params["agent.hidden"])
    capsys.readouterr()
    assert main(["train", "--config", str(tmp_path / "study" / "best.yaml"), "--env", "CartPole-v1", "--steps",
                 "300", "--logdir", str(tmp_path / "run"), "--no-progress"]) == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["agent_config"]["batch_size"] == best.params["agent.batch_size"]


def test_a_study_refuses_other_settings_and_bad_input_in_one_line(tmp_path, capsys):
    assert tune(tmp_path, "--trials", "1", "--pruner", "none") == 0
    capsys.readouterr()
    assert main(["tune", "--agent", "dqn", "--env", "CartPole-v1", "--study", str(tmp_path / "study"),
                 "--space", str(tmp_path / "space.yaml"), "--trials", "2"]) == 2
    assert "holds a study with another" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("agent.lr: {float: [0.1, 0.01]}\n")
    assert main(["tune", "--env", "CartPole-v1", "--study", str(tmp_path / "s2"), "--space",
                 str(tmp_path / "bad.yaml")]) == 2
    assert "low < high" in capsys.readouterr().err
    (tmp_path / "typo.yaml").write_text("agent.lrr: {float: [0.001, 0.01]}\n")
    assert main(["tune", "--env", "CartPole-v1", "--study", str(tmp_path / "s3"), "--space",
                 str(tmp_path / "typo.yaml")]) == 2
    err = capsys.readouterr().err
    assert "did you mean agent.lr" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("agent", ["dqn", "ebu"])
def test_shipped_search_spaces_name_real_config_keys(tmp_path, agent):
    from rewind.run.tune import StudySpec, load_space, prepare

    space = load_space(agent)
    assert space and all(key.startswith("agent.") for key in space)
    _, steps = prepare(tmp_path, StudySpec(agent, "minatar-breakout", space, {}, 25_000))   # validates every key
    assert steps == 25_000
