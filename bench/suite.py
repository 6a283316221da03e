"""Benchmark suites: a YAML file of agents x envs x seeds, expanded into fully resolved runs.

    name: smoke
    agents:                  # label -> agent name, or {agent: NAME, config: {agent: ..., env: ..., run: ...}}
      ebu: ebu
      dqn: {agent: dqn, config: {agent: {double: false}}}
      ebu-b1: {agent: ebu, set: {agent.beta: 1.0}}        # `set:` dotted keys, as `--set` (over `config:`)
      sb3-dqn: {agent: sb3-dqn, sb3: {gradient_steps: 1}}   # peers: raw SB3 keyword arguments
    envs: [CartPole-v1, minatar-breakout]   # or {env: {config sections}}
    seeds: 3                 # 3 -> 0, 1, 2; or a list
    config: {run: {steps: 2000, eval_every: 500}}     # every run (after the agent+env preset)
    resources: {cpus: 1, gpus: 0}           # per run: worker threads, Ray request
    scores: {CartPole-v1: {random: 22.3, reference: 500}}   # normalisation for non-Atari envs
    seed_keys: [env.maze_seed]              # config keys set to each run's seed (one maze per seed)
    report: {metric: relative_length, threshold: 1.5}   # headline metric (default: final return)

Config layers, later wins: the agent's preset for the env family < suite `config` < the env's
entry < the agent's entry (`config:`, then `set:`) < `seed_keys`. Everything is validated
(agent and env names, config keys and types, Ray request) before any run starts, so a typo
never costs a half-finished suite.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import yaml

from rewind.config import merge, to_dict
from rewind.bench.peers import PEERS, check_peer
from rewind.errors import RewindError
from rewind.files import plain_name

SUITE_DIR = Path(__file__).resolve().parent / "suites"
SUITE_KEYS = {"name", "description", "agents", "envs", "seeds", "config", "resources", "scores", "report",
              "seed_keys"}
AGENT_KEYS = ("agent", "config", "set", "sb3")
REPORT_KEYS = ("published", "metric", "threshold", "baseline")
# report.metric: what the report leads with. return: the final evaluation return (normalised with
# `scores:`); relative_length: evaluation episode length / the maze's shortest path (digit maze
# only), and the env steps until it first reaches <= report.threshold; report.baseline: a label
# whose median steps every other label's are divided by (the EBU paper's "under half DQN's steps").
METRICS = ("return", "relative_length")
SECTIONS = ("agent", "env", "run", "curriculum")


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITE_DIR.glob("*.yaml"))


@dataclasses.dataclass
class RunSpec:
    """One run of a suite: everything a worker needs, as plain data (it crosses process boundaries)."""

    run_id: str              # label/env-slug/s<seed>, also the run's folder under <out>/runs
    label: str               # the agent's label in the suite (e.g. "ebu-b1")
    agent: str               # registry name or peer name (sb3-dqn)
    env: str
    seed: int
    overrides: dict          # config sections handed to experiment.resolve
    sb3: dict                # raw SB3 keyword arguments (peers only)
    cpus: float
    gpus: float

    @property
    def is_peer(self) -> bool:
        return self.agent in PEERS


@dataclasses.dataclass
class Suite:
    name: str
    description: str
    raw: dict                # the suite as loaded, for the results folder's manifest
    runs: list[RunSpec]
    agents: list[str]        # labels, in suite order
    envs: list[str]
    scores: dict
    report: dict

    def fingerprint(self) -> str:
        """Hash of what decides the results (not the description): a results folder belongs to one."""
        keep = {k: v for k, v in self.raw.items() if k not in ("description", "report")}
        return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def env_slug(env: str) -> str:
    return env.replace("/", "_").replace(":", "_")


def load_suite(name_or_path: str | Path, overrides: dict | None = None, seeds: int | None = None) -> Suite:
    """Load a shipped suite by name (`smoke`) or a YAML file, and validate every run in it."""
    path = Path(name_or_path)
    if not path.suffix and (SUITE_DIR / f"{name_or_path}.yaml").exists():
        path = SUITE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise RewindError(f"suite {str(name_or_path)!r} not found; give a YAML path or a shipped suite: "
                          f"{', '.join(suite_names())}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "parse error"
        raise RewindError(f"suite {path} is not valid YAML: {first}") from None
    if not isinstance(raw, dict):
        raise RewindError(f"suite {path} must be a mapping with agents:, envs:, seeds:")
    if overrides:  # --set: part of the suite from here on (its fingerprint changes with it)
        raw["config"] = merge(_sections(raw.get("config"), ""), overrides)
    if seeds is not None:
        raw["seeds"] = seeds
    return build_suite(raw, default_name=path.stem)


def _agent_entries(raw) -> dict[str, dict]:
    if not isinstance(raw, dict) or not raw:
        raise RewindError("suite `agents:` must map labels to agent names, e.g. {ebu: ebu, dqn: dqn}")
    out = {}
    for label, spec in raw.items():
        if isinstance(spec, str):
            spec = {"agent": spec}
        if not isinstance(spec, dict) or "agent" not in spec or set(spec) - set(AGENT_KEYS):
            extra = sorted(set(spec) - set(AGENT_KEYS)) if isinstance(spec, dict) else []
            raise RewindError(f"suite agents.{label}: " + (f"unknown key(s) {extra}; " if extra else "")
                              + "give an agent name or {agent: NAME, config: {...}, set: {section.key: value}, "
                              f"sb3: {{...}}}}, got {spec!r}")
        plain_name(label, "suite agents: label")  # it becomes a folder name under --out
        config = merge(_sections(spec.get("config"), f"agents.{label}"),
                       _dotted(spec.get("set"), f"agents.{label}.set"))
        out[str(label)] = {"agent": str(spec["agent"]), "config": config, "sb3": dict(spec.get("sb3") or {})}
        if out[str(label)]["sb3"] and spec["agent"] not in PEERS:
            raise RewindError(f"suite agents.{label}: `sb3:` options are only for peers ({', '.join(PEERS)})")
    return out


def _sections(cfg, where: str) -> dict:
    if cfg is None:
        return {}
    if not isinstance(cfg, dict):
        raise RewindError(f"suite {where}.config must be a mapping of sections (agent:, env:, run:)")
    return cfg


def _dotted_key(key, where: str) -> list[str]:
    parts = str(key).split(".")
    if len(parts) < 2 or parts[0] not in SECTIONS or not all(parts):
        raise RewindError(f"suite {where}: {key!r} is not a config key; write section.key with section one of "
                          f"{', '.join(SECTIONS)} (e.g. agent.beta)")
    return parts


def _dotted(raw, where: str) -> dict:
    """{"agent.beta": 1.0, "run.grow_at": 5000} -> {"agent": {"beta": 1.0}, "run": {"grow_at": 5000}}."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RewindError(f"suite {where}: must map section.key to a value, e.g. {{agent.beta: 1.0}}")
    out: dict = {}
    for key, value in raw.items():
        parts = _dotted_key(key, where)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RewindError(f"suite {where}: {key!r} sets a value inside another value")
        node[parts[-1]] = value
    return out


def _seed_keys(raw) -> list[list[str]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(k, str) for k in raw):
        raise RewindError("suite `seed_keys:` must be a list of config keys, e.g. [env.maze_seed]")
    return [_dotted_key(k, "seed_keys") for k in raw]


def _with_seed(overrides: dict, keys: list[list[str]], seed: int) -> dict:
    if not keys:
        return overrides
    return merge(overrides, _dotted({".".join(k): seed for k in keys}, "seed_keys"))


def _report(raw, envs) -> dict:
    report = raw or {}
    if not isinstance(report, dict):
        raise RewindError("suite `report:` must be a mapping")
    unknown = sorted(set(report) - set(REPORT_KEYS))
    if unknown:
        raise RewindError(f"suite report: unknown key(s) {unknown}; valid keys: {', '.join(REPORT_KEYS)}")
    metric = report.get("metric", "return")
    if metric not in METRICS:
        raise RewindError(f"suite report.metric: {metric!r} is not one of {', '.join(METRICS)}")
    threshold = report.get("threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or threshold <= 0):
        raise RewindError(f"suite report.threshold must be a number > 0, got {threshold!r}")
    if metric == "relative_length":
        not_maze = [e for e in envs if not e.startswith("rewind/maze")]
        if not_maze:
            raise RewindError(f"suite report.metric relative_length needs digit-maze envs (rewind/maze-*), "
                              f"not {', '.join(not_maze)}")
        if threshold is None:
            raise RewindError("suite report.metric relative_length needs report.threshold (e.g. 1.5)")
    if "baseline" in report and metric != "relative_length":
        raise RewindError("suite report.baseline is for report.metric relative_length")
    return report


def _env_entries(raw) -> dict[str, dict]:
    if isinstance(raw, list) and raw:
        raw = {e: {} for e in raw}
    if isinstance(raw, dict) and raw:
        for e in raw:  # its slug becomes a folder name under --out
            plain_name(env_slug(str(e)), f"suite envs: {str(e)!r} gives the folder name")
        return {str(e): _sections(c, f"envs.{e}") for e, c in raw.items()}
    raise RewindError("suite `envs:` must be a non-empty list of env names (or a mapping env -> config)")


def _seeds(raw) -> list[int]:
    if isinstance(raw, bool):
        raise RewindError("suite `seeds:` must be a count or a list of integers")
    if isinstance(raw, int) and raw >= 1:
        return list(range(raw))
    if isinstance(raw, list) and raw and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in raw):
        if len(set(raw)) != len(raw):
            raise RewindError("suite `seeds:` lists a seed twice")
        return list(raw)
    raise RewindError(f"suite `seeds:` must be a count >= 1 or a list of integers >= 0, got {raw!r}")


def _resources(raw) -> tuple[float, float]:
    raw = raw or {}
    if not isinstance(raw, dict) or set(raw) - {"cpus", "gpus"}:
        raise RewindError("suite `resources:` takes cpus: and gpus: only")
    try:
        cpus, gpus = float(raw.get("cpus", 1)), float(raw.get("gpus", 0))
    except (TypeError, ValueError):
        raise RewindError("suite resources.cpus and resources.gpus must be numbers") from None
    if cpus <= 0 or gpus < 0:
        raise RewindError("suite resources: cpus must be > 0 and gpus >= 0")
    return cpus, gpus


def build_suite(raw: dict, default_name: str = "suite", validate: bool = True) -> Suite:
    from rewind.bench.scores import validate_suite_scores

    unknown = set(raw) - SUITE_KEYS
    if unknown:
        raise RewindError(f"suite: unknown key(s) {sorted(unknown)}; valid keys: {', '.join(sorted(SUITE_KEYS))}")
    for key in ("agents", "envs", "seeds"):
        if key not in raw:
            raise RewindError(f"suite needs `{key}:`")
    agents = _agent_entries(raw["agents"])
    envs = _env_entries(raw["envs"])
    seeds = _seeds(raw["seeds"])
    shared = _sections(raw.get("config"), "")
    cpus, gpus = _resources(raw.get("resources"))
    scores = validate_suite_scores(raw.get("scores"))
    report = _report(raw.get("report"), list(envs))
    if "baseline" in report and report["baseline"] not in agents:
        raise RewindError(f"suite report.baseline: {report['baseline']!r} is not a label of agents: "
                          f"({', '.join(agents)})")
    seed_keys = _seed_keys(raw.get("seed_keys"))
    runs = []
    for label, spec in agents.items():
        for env, env_cfg in envs.items():
            overrides = merge(merge(shared, env_cfg), spec["config"])
            for seed in seeds:
                runs.append(RunSpec(f"{label}/{env_slug(env)}/s{seed}", label, spec["agent"], env, seed,
                                    _with_seed(overrides, seed_keys, seed), spec["sb3"], cpus, gpus))
    suite = Suite(str(raw.get("name", default_name)), str(raw.get("description", "")), raw, runs,
                  list(agents), list(envs), scores, report)
    if validate:
        validate_runs(suite)
    return suite


def resolve_run(spec: RunSpec):
    """The Experiment of a run (peers resolve as rewind's dqn, whose settings they translate)."""
    from rewind.run.experiment import resolve

    return resolve("dqn" if spec.is_peer else spec.agent, spec.env, None, spec.overrides, None, spec.seed)


def validate_runs(suite: Suite) -> None:
    """Resolve every run's config now: unknown agents, envs or keys fail before anything runs."""
    from rewind.agents import AGENTS
    from rewind.envs import env_kind

    for env in suite.envs:
        try:
            env_kind(env)
        except RewindError as exc:
            raise RewindError(f"suite envs: {exc}") from None
    seen = set()
    for spec in suite.runs:
        if spec.agent not in AGENTS and spec.agent not in PEERS:
            import difflib
            choices = sorted(AGENTS) + sorted(PEERS)
            close = difflib.get_close_matches(spec.agent, choices, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise RewindError(f"suite agents.{spec.label}: unknown agent {spec.agent!r}{hint}; "
                              f"choose from: {', '.join(choices)}")
        key = (spec.label, spec.env)
        if key in seen:
            continue
        seen.add(key)
        try:
            exp = resolve_run(spec)
            if spec.is_peer:
                check_peer(spec, exp)
        except RewindError as exc:
            raise RewindError(f"suite run {spec.label} on {spec.env}: {exc}") from None


def run_meta(spec: RunSpec, exp=None) -> dict:
    """What identifies a run in its folder (written as run.json); `exp`: spec already resolved."""
    meta = (exp or resolve_run(spec)).meta()
    meta.update(agent=spec.agent, label=spec.label, sb3=spec.sb3)
    return json.loads(json.dumps(meta, default=lambda o: to_dict(o) if dataclasses.is_dataclass(o) else str(o)))
