"""The former sweep studies as suites: per-label `set:`, `seed_keys`, the relative-length report, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from rewind.bench.suite import SUITE_DIR, build_suite, load_suite, resolve_run
from rewind.cli import bench as cli
from rewind.errors import RewindError


def differences(a, b, prefix: str = "") -> dict:
    """{dotted key: (a value, b value)} of two nested dicts."""
    out = {}
    for k in set(a) | set(b):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out.update(differences(x, y, f"{prefix}{k}."))
        elif x != y:
            out[f"{prefix}{k}"] = (x, y)
    return out


def meta(suite, label: str, env: str | None = None, seed: int = 0) -> dict:
    spec = next(s for s in suite.runs if s.label == label and s.seed == seed and (env is None or s.env == env))
    m = resolve_run(spec).meta()
    return {k: m[k] for k in ("agent", "agent_config", "env_config", "run", "curriculum")}


def test_maze_ebu_suite_expands_to_the_study_protocol():
    suite = load_suite("maze_ebu")
    assert suite.agents == ["ebu-0.25", "ebu-0.5", "ebu-0.75", "ebu-1", "dqn", "dqn-n5"]
    assert len(suite.envs) == 4 and len(suite.runs) == 6 * 4 * 5
    # two EBU labels differ in beta and in nothing else
    assert differences(meta(suite, "ebu-0.5"), meta(suite, "ebu-1")) == {"agent_config.beta": (0.5, 1.0)}
    assert differences(meta(suite, "dqn"), meta(suite, "dqn-n5")) == {"agent_config.n_step": (1, 5)}
    # EBU and DQN share every setting they both have (only the targets differ)
    ebu, dqn = meta(suite, "ebu-1")["agent_config"], meta(suite, "dqn")["agent_config"]
    shared = {k for k in ebu if k in dqn}
    assert {k for k in shared if ebu[k] != dqn[k]} == set()
    assert dqn["gradient_steps"] == 1   # the dqn_classic preset's 128 is overridden
    # the maze layout is the run's seed: one maze per seed, the same for every label
    for spec in suite.runs:
        assert spec.overrides["env"]["maze_seed"] == spec.seed
    assert meta(suite, "dqn", seed=3)["env_config"] == {"reward_scale": 0.001, "maze_seed": 3}


def test_net2net_and_curriculum_suites_differ_per_label_only_where_set():
    n2n = load_suite("net2net_grow")
    assert len(n2n.runs) == 3 * 1 * 5
    assert differences(meta(n2n, "narrow"), meta(n2n, "grown")) == {"run.grow_at": (0, 10000), "run.widen": (1.0, 2.0)}
    assert differences(meta(n2n, "narrow"), meta(n2n, "wide")) == {"agent_config.width": (1.0, 2.0)}
    cur = load_suite("curriculum_maze")
    assert cur.agents == ["tscl-window", "uniform", "fixed"] and len(cur.runs) == 3 * 5
    assert differences(meta(cur, "uniform"), meta(cur, "fixed")) == {"curriculum.name": ("uniform", "fixed")}
    assert meta(cur, "fixed", seed=2)["env_config"]["maze_seed"] == 2


def test_old_suite_files_stay_valid():
    for name in ("maze", "smoke", "minatar_250k"):
        raw = yaml.safe_load((SUITE_DIR / f"{name}.yaml").read_text())
        suite = build_suite(raw, validate=False)
        assert len(suite.runs) == len(raw["agents"]) * len(raw["envs"]) * raw["seeds"]


def test_relative_length_table_counts_first_crossing_and_censors_the_baseline():
    from rewind.bench.report import _shortest_path, relative_length_table

    raw = {"agents": {"a": "dqn", "b": "dqn"}, "envs": ["rewind/maze-d20-v0"], "seeds": 2,
           "seed_keys": ["env.maze_seed"], "config": {"env": {"observation": "index"}},
           "report": {"metric": "relative_length", "threshold": 1.5, "baseline": "b"}}
    suite = build_suite(raw, validate=False)
    sp = {s.seed: _shortest_path(next(r for r in suite.runs if r.seed == s.seed), {}) for s in suite.runs}

    def curve(rel):   # evaluation lengths giving these relative lengths on the seed's maze
        return lambda seed: [{"step": 100 * (i + 1), "length_mean": r * sp[seed]} for i, r in enumerate(rel)]

    a, b = curve([5, 1.4, 3, 1.0]), curve([5, 4, 3, 2])
    curves = {"a": {"rewind/maze-d20-v0": {0: a(0), 1: a(1)}}, "b": {"rewind/maze-d20-v0": {0: b(0), 1: b(1)}}}
    table = relative_length_table(suite, curves, 1.5, "b")["rewind/maze-d20-v0"]
    assert table["a"]["steps_to_threshold"] == [200.0, 200.0] and table["a"]["reached"] == 2
    assert table["b"]["reached"] == 0 and math.isinf(table["b"]["median_steps_to_threshold"])
    assert table["a"]["ratio_to_baseline"] == pytest.approx(200 / 400) and table["a"]["ratio_is_upper_bound"]
    assert table["a"]["final_mean"] == pytest.approx(1.0)


def _one_line_error(capsys, argv) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rewind: error:") and "\n" not in err, err
    return err


def test_bad_per_label_keys_and_report_options_are_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    base = {"name": "a", "agents": {"ebu": "ebu"}, "envs": ["rewind/maze-d20-v0"], "seeds": 1,
            "config": {"run": {"steps": 100}}}
    cases = {
        "bta": {"agents": {"x": {"agent": "ebu", "set": {"agent.bta": 1.0}}}},          # unknown key in a section
        "section.key": {"agents": {"x": {"agent": "ebu", "set": {"beta": 1.0}}}},       # no section
        "sett": {"agents": {"x": {"agent": "ebu", "sett": {"agent.beta": 1.0}}}},      # unknown label key
        "metric": {"report": {"metric": "lenght"}},
        "needs digit-maze": {"envs": ["CartPole-v1"], "report": {"metric": "relative_length", "threshold": 1.5}},
        "baseline": {"report": {"metric": "relative_length", "threshold": 1.5, "baseline": "dqn"}},
        "seed_keys": {"seed_keys": "env.maze_seed"},
    }
    for i, (needle, change) in enumerate(cases.items()):
        path = tmp_path / f"s{i}.yaml"
        path.write_text(yaml.safe_dump({**base, **change}))
        assert needle in _one_line_error(capsys, ["run", str(path), "--out", str(out)])
    assert not out.exists()
    with pytest.raises(RewindError, match=r"suite run x on .*did you mean agent\.beta"):
        build_suite({**base, **cases["bta"]})


def test_maze_ebu_suite_end_to_end_tiny(tmp_path, one_torch_thread):
    """Two labels of the shipped maze_ebu suite, one maze seed, a few hundred steps, through the CLI."""
    raw = yaml.safe_load((SUITE_DIR / "maze_ebu.yaml").read_text())
    raw["agents"] = {k: raw["agents"][k] for k in ("ebu-1", "dqn")}
    raw["envs"], raw["seeds"] = ["rewind/maze-d20-v0"], [1]
    path = tmp_path / "maze_ebu_tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    argv = ["run", str(path), "--out", str(out), "--workers", "1", "--reps", "100",
            "--set", "run.steps=300", "--set", "run.eval_every=150", "--set", "agent.learning_starts=100"]
    assert cli.main(argv) == 0
    results = sorted(p.name for p in (out / "results").glob("*.json"))
    assert results == ["dqn__rewind_maze-d20-v0__s1.json", "ebu-1__rewind_maze-d20-v0__s1.json"]
    record = json.loads((out / "results" / results[1]).read_text())
    assert record["config"]["env_config"] == {"reward_scale": 0.001, "maze_seed": 1}
    assert record["config"]["agent_config"]["beta"] == 1.0 and record["steps"] == 300
    assert [c["step"] for c in record["curve"]] == [150, 300]
    from rewind.envs.maze import DigitMazeEnv

    shortest = DigitMazeEnv(density=0.2, maze_seed=1).shortest_path
    report = json.loads((out / "report.json").read_text())["relative_length"]["rewind/maze-d20-v0"]
    for label in ("ebu-1", "dqn"):
        run = report[label]["runs"][0]
        assert run["shortest_path"] == shortest
        # a greedy episode can never be shorter than the shortest path, and is capped at 200 steps
        assert all(1.0 <= r <= 200 / shortest + 1e-9 for r in run["relative_length"])
    assert "ratio_to_baseline" in report["ebu-1"] and "ratio_to_baseline" not in report["dqn"]
    text = (out / "report.md").read_text()
    assert "## Relative length" in text and "steps / dqn's" in text and (out / "relative_length.png").exists()
    # rerun: every run is skipped as finished
    assert cli.main(argv) == 0
    assert sorted(p.name for p in (out / "results").glob("*.json")) == results


def test_every_study_says_why_it_is_not_a_suite():
    """bench/studies/ holds what cannot be a suite, and each module says why (docs/architecture.md)."""
    import ast

    studies = Path(__file__).resolve().parents[1] / "bench" / "studies"
    silent = [p.name for p in sorted(studies.glob("*.py")) if p.name != "__init__.py"
              and "not a suite" not in (ast.get_docstring(ast.parse(p.read_text())) or "").lower()]
    assert silent == []


def test_studies_default_to_the_results_folder():
    from rewind.bench.studies import bandit_longtail, compress_minatar, distill_minatar

    results = Path(__file__).resolve().parents[1] / "bench" / "results"
    assert bandit_longtail.RESULTS_DIR == results / "bandit"
    assert compress_minatar.RUNS.parent == distill_minatar.RUNS.parent == results / "minatar"
