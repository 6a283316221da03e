"""From names and config files to a finished run: the code behind `rewind train` and the bench harness.

Config resolution, lowest to highest priority: agent defaults < the preset for this
agent and env family (e.g. dqn + Atari -> configs/dqn_nature.yaml) < --config FILE < --set.
A config has three sections: `agent:`, `env:`, `run:` (and an optional `algo:` name).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml

from rewind.agents import agent_class, make_agent
from rewind.files import atomic_write_text, writable_dir
from rewind.run.checkpoint import load_checkpoint
from rewind.run.loop import RunConfig, check_growth, seed_everything, train
from rewind.config import from_dict, load_yaml, merge, to_dict
from rewind.envs import env_config_class, env_kind, make_env, make_vector_env
from rewind.errors import RewindError

SECTIONS = ("algo", "agent", "env", "run", "curriculum")

# (agent, env family) -> preset used when no --config is given
DEFAULT_PRESETS = {
    ("dqn", "atari"): "dqn_nature",
    ("dqn", "minatar"): "dqn_minatar",
    ("dqn", "gym"): "dqn_classic",
    ("ebu", "atari"): "ebu_atari",
    ("ebu", "minatar"): "ebu_minatar",
    ("ebu", "gym"): "ebu_classic",
    ("ebu-adaptive", "atari"): "ebu_atari",
    ("ebu-adaptive", "minatar"): "ebu_minatar",
    ("ebu-adaptive", "gym"): "ebu_classic",
}


def default_preset(agent: str, env: str) -> dict:
    if env.startswith("rewind/bandit-"):
        return load_yaml("bandit_digits")  # one pass = progressive validation, for every bandit agent
    name = DEFAULT_PRESETS.get((agent, env_kind(env)))
    return load_yaml(name) if name else {}


@dataclasses.dataclass
class Experiment:
    """A fully resolved run: names plus validated config sections."""

    agent: str
    env: str
    agent_config: object
    env_config: object
    run: RunConfig
    seed: int = 0
    curriculum: dict | None = None   # {"name": ..., "options": {...}}: a teacher picks tasks per episode

    def meta(self) -> dict:
        def plain(c):
            return to_dict(c) if dataclasses.is_dataclass(c) else (c or {})
        return {"agent": self.agent, "env": self.env, "seed": self.seed, "agent_config": plain(self.agent_config),
                "env_config": plain(self.env_config), "run": to_dict(self.run), "curriculum": self.curriculum}


def resolve(agent: str | None, env: str, config_file: str | None = None, overrides: dict | None = None,
            steps: int | None = None, seed: int = 0) -> Experiment:
    """Validate names and merge config layers; every problem is a one-line RewindError."""
    if seed < 0:
        raise RewindError(f"--seed must be >= 0, got {seed}")
    file_cfg = load_yaml(config_file) if config_file else {}
    for layer in (file_cfg, overrides or {}):
        unknown = set(layer) - set(SECTIONS)
        if unknown:
            raise RewindError(f"unknown config section(s) {sorted(unknown)}; valid sections: {', '.join(SECTIONS)}")
    agent = agent or file_cfg.get("algo") or "dqn"
    cls = agent_class(agent)
    env_kind(env)  # unknown env -> clear error before anything else
    check_agent_fits_env(agent, cls, env)
    cfg = merge(merge(default_preset(agent, env), file_cfg), overrides or {})
    agent_cfg = from_dict(cls.Config, cfg.get("agent"), "agent") if cls.Config is not None else None
    env_cls = env_config_class(env)
    env_cfg = from_dict(env_cls, cfg.get("env"), "env") if env_cls is not None else dict(cfg.get("env") or {})
    run_dict = dict(cfg.get("run") or {})
    if steps is not None:
        if "steps" in run_dict:  # --steps wins, but a wrong run.steps in a config is still an error
            from_dict(RunConfig, {"steps": run_dict["steps"]}, "run")
        run_dict["steps"] = steps
    run = from_dict(RunConfig, run_dict, "run")
    curriculum = cfg.get("curriculum") or None
    if curriculum is not None:
        if not isinstance(curriculum, dict) or "name" not in curriculum or set(curriculum) - {"name", "options"}:
            raise RewindError("config section curriculum: needs `name:` and optional `options:` only")
        curriculum = {"name": str(curriculum["name"]), "options": dict(curriculum.get("options") or {})}
    return Experiment(agent, env, agent_cfg, env_cfg, run, seed, curriculum)


def check_agent_fits_env(name: str, cls, env: str) -> None:
    """Bandit learners need a rewind/bandit-* env, and those envs need a bandit learner: refuse other pairs."""
    from rewind.agents import AGENTS
    from rewind.agents.bandit import BanditAgent

    bandit_env = env.startswith("rewind/bandit-")
    if issubclass(cls, BanditAgent) == bandit_env:
        return
    if bandit_env:
        learners = sorted(n for n in AGENTS if n != name and AGENTS[n].startswith("rewind.agents.bandit"))
        raise RewindError(f"{env} is a contextual bandit; agent {name!r} is not a bandit learner: use one of "
                          f"{', '.join(learners)}")
    raise RewindError(f"agent {name!r} is a contextual-bandit learner; it needs a rewind/bandit-* env "
                      f"(`rewind envs --kind rewind`), not {env}")


def frames_per_step(exp: Experiment) -> int:
    return int(getattr(exp.env_config, "frame_skip", 1))


def _defaults(section) -> dict:
    """Default values of a config dataclass, so checkpoints older than a setting still resume."""
    try:
        return to_dict(type(section)())
    except (TypeError, RewindError):  # a config without defaults for every field
        return {}


def _check_resume(logdir: Path, exp: Experiment) -> None:
    saved = load_checkpoint(logdir / "checkpoint.pt").get("meta", {})
    mine = exp.meta()
    for key in ("agent", "env", "seed", "agent_config", "env_config", "curriculum"):
        theirs = saved.get(key)
        section = {"agent_config": exp.agent_config, "env_config": exp.env_config}.get(key)
        if isinstance(theirs, dict) and dataclasses.is_dataclass(section):
            theirs = {**_defaults(section), **theirs}  # settings added since the checkpoint count as defaults
        if theirs != mine.get(key):
            raise RewindError(f"{logdir} holds a different run ({key}: {saved.get(key)!r} vs {mine.get(key)!r}); "
                              "resume with the same settings or use another --logdir")


def run_experiment(exp: Experiment, logdir: str | Path | None, resume: bool = False, progress: bool | None = None,
                   on_start=None, on_eval=None) -> dict:
    """Build env and agent, then train. Refuses to overwrite an existing run without --resume.

    `on_start()` is called once every check passed and env and agent are built (the CLI prints its
    banner there), so a refused run shows only its error line and leaves no folder behind.
    `on_eval(result)` is called after every evaluation.
    """
    if logdir is not None:
        logdir = writable_dir(logdir, "--logdir")
        ckpt = logdir / "checkpoint.pt"
        if resume:
            if not ckpt.exists():
                raise RewindError(f"--resume: {ckpt} does not exist; start without --resume")
            _check_resume(logdir, exp)
        elif ckpt.exists():
            raise RewindError(f"{logdir} already holds a run; add --resume to continue it or choose another --logdir")
    elif resume:
        raise RewindError("--resume needs --logdir")
    if progress is not None:
        exp.run.progress = progress
    seed_everything(exp.seed)
    if exp.run.num_envs > 1:
        if exp.curriculum:
            raise RewindError("run.num_envs > 1 does not combine with a curriculum (the teacher picks one "
                              "env's task per episode); use run.num_envs=1")
        env = make_vector_env(exp.env, exp.env_config, exp.run.num_envs, seed=exp.seed)
    else:
        env = make_env(exp.env, exp.env_config, training=True, seed=exp.seed)
    if exp.curriculum:
        from rewind.controllers.curriculum_env import wrap_with_curriculum
        env = wrap_with_curriculum(exp.env, env, exp.curriculum["name"],
                                   {"seed": exp.seed, **exp.curriculum["options"]})
    eval_env = make_env(exp.env, exp.env_config, training=False, seed=exp.seed + 1)
    spaces = eval_env if exp.run.num_envs > 1 else env   # a vector env's spaces are batched
    agent = make_agent(exp.agent, spaces, to_dict(exp.agent_config) if exp.agent_config else None, seed=exp.seed)
    check_growth(agent, exp.run)
    # every check passed: only now the run's folder appears and the banner is printed
    if logdir is not None:
        logdir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(logdir / "config.yaml", yaml.safe_dump(exp.meta(), sort_keys=False))
    if on_start is not None:
        on_start()
    summary = train(agent, env, exp.run, eval_env=eval_env, logdir=logdir, seed=exp.seed, resume=resume,
                    meta=exp.meta(), frames_per_step=frames_per_step(exp), on_eval=on_eval)
    if logdir is not None:
        atomic_write_text(logdir / "summary.json", json.dumps(summary, indent=1, default=float))
    return summary


def eval_protocol(meta: dict) -> tuple[float, int]:
    """(epsilon, steps per episode) of the run that wrote `meta`: evaluate a saved agent as it was evaluated."""
    run, default = meta.get("run") or {}, RunConfig()
    return run.get("eval_epsilon", default.eval_epsilon), run.get("eval_max_steps", default.eval_max_steps)


def finished(logdir: str | Path) -> bool:
    """True when `logdir` holds a run that reached its last step (an interrupted one also has a summary)."""
    summary = Path(logdir) / "summary.json"
    return summary.exists() and not json.loads(summary.read_text())["interrupted"]


def run_or_resume(exp: Experiment, logdir: str | Path, progress: bool | None = None) -> bool:
    """Run `exp` in `logdir` unless it finished there already, resuming a checkpoint; False if skipped."""
    if finished(logdir):
        return False
    run_experiment(exp, logdir, resume=(Path(logdir) / "checkpoint.pt").exists(), progress=progress)
    return True


def exit_status(summary: dict) -> int:
    """130 (Ctrl-C) or 143 (SIGTERM) with a resume hint for a stopped run, else 0: how every training command ends."""
    import sys

    if summary["interrupted"]:
        print("rewind: continue with the same command plus --resume", file=sys.stderr)
        return 143 if summary.get("stopped_by") == "SIGTERM" else 130
    return 0


def load_for_eval(checkpoint: str | Path):
    """Rebuild (agent, eval env, meta) from a checkpoint written by `rewind train`, for `rewind eval`.

    Compressed `.rwz` files are read by rewind.transfer.load_agent, which falls back to this.
    """
    state = load_checkpoint(checkpoint)
    meta = state.get("meta") or {}
    agent, env = agent_from_meta(checkpoint, meta)
    try:
        agent.load_state_dict(state["agent"])
    except (KeyError, RuntimeError, AttributeError) as exc:
        raise RewindError(f"{checkpoint} does not fit agent {meta['agent']!r}: {str(exc).splitlines()[0]}") from None
    return agent, env, meta


def agent_from_meta(path: str | Path, meta: dict):
    """A fresh (agent, eval env) as described by a saved run's metadata."""
    if "agent" not in meta or "env" not in meta:
        raise RewindError(f"{path} has no run metadata; it was not written by `rewind train`")
    env = make_env(meta["env"], meta.get("env_config"), training=False, seed=meta.get("seed", 0))
    agent = make_agent(meta["agent"], env, meta.get("agent_config"), seed=meta.get("seed", 0))
    return agent, env
