"""Hyperparameter search with Optuna (`rewind tune`), in the RL Zoo's style.

- The search space of an agent is a YAML file (`configs/tune_AGENT.yaml`, or `--space FILE`):
  one config key per line (`agent.lr`), each saying how Optuna samples it.
- A trial is an ordinary run (`run_experiment`) in `STUDY/trials/NNNN/`; its periodic evaluations
  are reported to Optuna, and the pruner may stop it there. Its value is the last evaluation's
  mean return (the run's own evaluation protocol).
- The study lives in `STUDY/study.db` (SQLite: `optuna-dashboard sqlite:///STUDY/study.db` shows
  it), so the same command resumes it after Ctrl-C, and several worker processes share it.
  A trial stopped by Ctrl-C is queued again with the same parameters; one whose worker died
  (no heartbeat for `GRACE_S`) is retried once by Optuna.
- After every trial the best one is written as a preset, `STUDY/best.yaml`, that
  `rewind train --config STUDY/best.yaml` takes.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
from pathlib import Path

import yaml

from rewind.config import CONFIG_DIR, load_yaml, merge, to_dict
from rewind.errors import RewindError, require
from rewind.files import atomic_write_text, writable_dir
from rewind.run.experiment import SECTIONS, resolve, run_experiment

STUDY_NAME = "rewind"
STUDY_FILE = "study.yaml"
HEARTBEAT_S, GRACE_S = 30, 300


@dataclasses.dataclass
class StudySpec:
    """What every trial of a study shares; stored in STUDY/study.yaml so a resume cannot change it."""

    agent: str
    env: str
    space: dict                # config key -> sampling spec
    config: dict               # fixed settings (--config file merged with --set), sections agent/env/run
    steps: int | None = None   # env steps per trial (None: the preset's run.steps)
    seed: int = 0              # seed of every trial's run (trials differ by their parameters only)


# ---------------------------------------------------------------- search spaces
def load_space(agent: str, path: str | None = None) -> dict:
    """The search space for `agent`: `path`, else configs/tune_AGENT.yaml; every entry checked."""
    if path is None:
        default = CONFIG_DIR / f"tune_{agent}.yaml"
        if not default.exists():
            have = sorted(p.stem[5:] for p in CONFIG_DIR.glob("tune_*.yaml"))
            raise RewindError(f"no search space for agent {agent!r}; give --space FILE (shipped: {', '.join(have)})")
        path = str(default)
    space = load_yaml(path)
    for key, spec in space.items():
        section = key.split(".", 1)[0]
        if "." not in key or section not in ("agent", "env", "run"):
            raise RewindError(f"search space {path}: key {key!r} must be agent.KEY, env.KEY or run.KEY")
        kinds = [k for k in ("float", "int", "choices") if k in (spec or {})] if isinstance(spec, dict) else []
        if len(kinds) != 1 or set(spec) - {"float", "int", "choices", "log"}:
            raise RewindError(f"search space {path}: {key} needs exactly one of float: [low, high], "
                              "int: [low, high], choices: [...] (and optional log: true)")
        kind = kinds[0]
        value = spec[kind]
        if kind == "choices" and (not isinstance(value, list) or not value):
            raise RewindError(f"search space {path}: {key}.choices must be a non-empty list")
        if kind != "choices" and (not isinstance(value, list) or len(value) != 2 or not value[0] < value[1]):
            raise RewindError(f"search space {path}: {key}.{kind} must be [low, high] with low < high")
    return space


def _plain_choice(c):
    return c if c is None or isinstance(c, (bool, int, float, str)) else json.dumps(c)


def suggest(trial, space: dict) -> dict:
    """Nested config overrides ({"agent": {"lr": ...}}) sampled by an Optuna trial."""
    out: dict = {}
    for key, spec in space.items():
        if "float" in spec:
            value = trial.suggest_float(key, *map(float, spec["float"]), log=bool(spec.get("log")))
        elif "int" in spec:
            value = trial.suggest_int(key, *map(int, spec["int"]), log=bool(spec.get("log")))
        else:
            raw = trial.suggest_categorical(key, [_plain_choice(c) for c in spec["choices"]])
            value = json.loads(raw) if raw not in spec["choices"] and isinstance(raw, str) else raw
        section, name = key.split(".", 1)
        out.setdefault(section, {})[name] = value
    return out


def first_point(space: dict) -> dict:
    """One point of the space (lows and first choices), to validate every key before any trial runs."""
    out: dict = {}
    for key, spec in space.items():
        value = spec["choices"][0] if "choices" in spec else spec.get("float", spec.get("int"))[0]
        section, name = key.split(".", 1)
        out.setdefault(section, {})[name] = value
    return out


# ---------------------------------------------------------------- the study
def storage_url(study_dir: Path) -> str:
    return f"sqlite:///{Path(study_dir).resolve() / 'study.db'}"


def samplers(name: str, seed: int, startup: int):
    optuna = require("optuna", "tune", "rewind tune")
    if name == "tpe":
        import warnings
        with warnings.catch_warnings():   # multivariate TPE (the RL Zoo's choice) is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise RewindError(f"unknown sampler {name!r}; choose tpe or random")


def pruners(spec: str, startup: int, warmup: int = 0):
    """'median', 'none' or 'below:X'. The median pruner (the RL Zoo's) waits for `startup` finished trials
    and judges a trial only at evaluations after `warmup` env steps (the RL Zoo: a third of the trial),
    since early evaluations of every config are near-random."""
    optuna = require("optuna", "tune", "rewind tune")
    if spec == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)
    if spec == "none":
        return optuna.pruners.NopPruner()
    if spec.startswith("below:"):
        try:
            return optuna.pruners.ThresholdPruner(lower=float(spec[6:]))
        except ValueError:
            pass
    raise RewindError(f"unknown pruner {spec!r}; choose median, none or below:VALUE (prune below an eval return)")


def prepare(study_dir: str | Path, spec: StudySpec) -> tuple[Path, int]:
    """Create STUDY/study.yaml, or check that an existing study was started with the same settings.

    Returns the study folder and the env steps of a trial.
    """
    study_dir = writable_dir(study_dir, "--study")
    exp = resolve(spec.agent, spec.env, None, merge(spec.config, first_point(spec.space)), spec.steps, spec.seed)
    path = study_dir / STUDY_FILE
    mine = dataclasses.asdict(spec)
    if path.exists():
        theirs = yaml.safe_load(path.read_text())
        for key in mine:
            if theirs.get(key) != mine[key]:
                raise RewindError(f"{study_dir} holds a study with another {key} ({theirs.get(key)!r}); rerun it "
                                  "with its own settings (see its study.yaml) or choose another --study")
    else:
        study_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, yaml.safe_dump(mine, sort_keys=False))
    return study_dir, exp.run.steps


def load_study(study_dir: Path, sampler=None, pruner=None, storage: str | None = None):
    import warnings

    optuna = require("optuna", "tune", "rewind tune")
    with warnings.catch_warnings():   # Optuna marks its heartbeat (what lets workers die safely) experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
        rdb = optuna.storages.RDBStorage(storage or storage_url(study_dir), heartbeat_interval=HEARTBEAT_S,
                                         grace_period=GRACE_S, heartbeat_stale_trial_callback=retry)
    return optuna.create_study(study_name=STUDY_NAME, storage=rdb, direction="maximize", sampler=sampler,
                               pruner=pruner, load_if_exists=True)


def requeue_interrupted(study) -> int:
    """Queue again, once, every trial that Ctrl-C stopped (same parameters, a fresh run)."""
    trials = study.get_trials(deepcopy=False)
    n = 0
    for t in trials:
        if t.user_attrs.get("interrupted") and not any(u.number > t.number and u.params == t.params
                                                       or u.system_attrs.get("fixed_params") == t.params
                                                       for u in trials):
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            n += 1
    return n


def finished_trials(study, running: bool = False) -> int:
    """Complete and pruned trials (and, with running=True, those running now)."""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED) + ((TrialState.RUNNING,) if running else ())
    return len(study.get_trials(deepcopy=False, states=states))


def objective(study_dir: Path, spec: StudySpec):
    def run_trial(trial) -> float:
        import optuna

        exp = resolve(spec.agent, spec.env, None, merge(spec.config, suggest(trial, spec.space)), spec.steps,
                      spec.seed)
        trial.set_user_attr("config", preset_of(exp))

        def report(result: dict) -> None:
            trial.report(float(result["return_mean"]), int(result["step"]))
            if result["step"] < exp.run.steps and trial.should_prune():   # a finished trial completes
                raise optuna.TrialPruned(f"eval return {result['return_mean']:.3g} at step {result['step']}")

        summary = run_experiment(exp, study_dir / "trials" / f"{trial.number:04d}", progress=False, on_eval=report)
        if summary["interrupted"]:
            trial.set_user_attr("interrupted", True)
            raise KeyboardInterrupt
        return float(summary["last_eval"]["return_mean"])
    return run_trial


def preset_of(exp) -> dict:
    """The complete config of a trial, as a preset file holds it."""
    def plain(c):
        return to_dict(c) if dataclasses.is_dataclass(c) else dict(c or {})
    return {"algo": exp.agent, "agent": plain(exp.agent_config), "env": plain(exp.env_config),
            "run": {k: v for k, v in to_dict(exp.run).items() if k not in ("progress", "track")}}


def write_best(study, study_dir: Path, spec: StudySpec) -> Path | None:
    """STUDY/best.yaml: the best finished trial's complete config, a preset for `rewind train --config`."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return None
    best = max(done, key=lambda t: t.value)
    preset = best.user_attrs["config"]
    assert set(preset) <= set(SECTIONS)
    head = (f"# rewind tune: best of {len(done)} finished trials of {study_dir} (trial {best.number}, eval return "
            f"{best.value:.4g}), {spec.agent} on {spec.env}.\n# Train with it: rewind train --config "
            f"{study_dir / 'best.yaml'} --env {spec.env} [--steps N]\n# Tuned: {', '.join(best.params)}\n")
    path = study_dir / "best.yaml"
    atomic_write_text(path, head + yaml.safe_dump(preset, sort_keys=False))
    return path


def work(study_dir: str | Path, spec: StudySpec, trials: int, sampler: str = "tpe", pruner: str = "median",
         startup: int = 5, worker: int = 0, storage: str | None = None, threads: int = 1, warmup: int = 0) -> None:
    """One worker: run trials until the study holds `trials` finished (complete or pruned) ones."""
    import warnings

    import torch

    optuna = require("optuna", "tune", "rewind tune")
    torch.set_num_threads(threads)
    study_dir = Path(study_dir)
    study = load_study(study_dir, samplers(sampler, spec.seed + 1000 * worker, startup),
                       pruners(pruner, startup, warmup), storage)
    with warnings.catch_warnings():   # a worker killed earlier: its trial is failed (and retried)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)

    def best(study, trial):
        write_best(study, study_dir, spec)

    # One trial at a time, counting the other workers' running trials, so the study stops at `trials`.
    while finished_trials(study, running=True) < trials:
        study.optimize(objective(study_dir, spec), n_trials=1, gc_after_trial=True, callbacks=[best])


def _work_quietly(*args, **kwargs) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        work(*args, **kwargs)
    except KeyboardInterrupt:
        pass


def tune(study_dir: str | Path, spec: StudySpec, trials: int, workers: int = 1, sampler: str = "tpe",
         pruner: str = "median", startup: int = 5, storage: str | None = None, threads: int = 1):
    """Run (or resume) a study with `workers` local processes sharing its storage; returns the study."""
    require("optuna", "tune", "rewind tune")
    samplers(sampler, 0, startup), pruners(pruner, startup)     # bad names: one line, before anything runs
    study_dir, steps = prepare(study_dir, spec)
    warmup = steps // 3
    study = load_study(study_dir, storage=storage)
    requeue_interrupted(study)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_work_quietly, args=(study_dir, spec, trials, sampler, pruner, startup, i, storage,
                                                     threads, warmup)) for i in range(1, workers)]
    for p in procs:
        p.start()
    try:
        work(study_dir, spec, trials, sampler, pruner, startup, 0, storage, threads, warmup)
    finally:
        for p in procs:
            p.join()
    write_best(study, study_dir, spec)
    return study
