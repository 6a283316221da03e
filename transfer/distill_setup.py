"""Set up a distillation run from a teacher checkpoint: the student's width, the resolved Experiment.

Used by `rewind distill` and bench studies; the run itself is an ordinary run of agent `distill`.
"""

from __future__ import annotations

from pathlib import Path

from rewind.errors import RewindError

SIZES = {"quarter": 0.25, "half": 0.5}


def canonical_env(name: str) -> str:
    """One spelling per env: minatar-breakout == MinAtar/Breakout-v1, pong == ALE/Pong-v5."""
    from rewind.envs import env_kind
    from rewind.envs.atari import resolve_atari_id
    from rewind.envs.minatar import resolve_minatar_id

    kind = env_kind(name)
    if kind == "minatar":
        return f"minatar-{resolve_minatar_id(name)}"
    if kind == "atari":
        return resolve_atari_id(name)
    return name


def student_width(size: str, teacher_agent_config: dict, observation_space, n_actions: int,
                  teacher_params: int) -> float:
    """Absolute width multiplier for SIZE (a multiplier of the teacher's width, or quarter/half)."""
    from rewind.transfer.distill import count_parameters
    from rewind.agents.networks import build_q_network

    t_width = float(teacher_agent_config.get("width", 1.0))
    if size in SIZES:
        kind = teacher_agent_config.get("network", "auto")
        hidden = tuple(teacher_agent_config.get("hidden", (256, 256)))
        target = SIZES[size] * teacher_params
        best = None
        for k in range(1, 65):  # widths t_width * k/64: nearest parameter count to the target
            w = t_width * k / 64
            gap = abs(count_parameters(build_q_network(kind, observation_space, n_actions, hidden, w)) - target)
            if best is None or gap <= best[0]:
                best = (gap, w)
        return best[1]
    try:
        mult = float(size)
    except ValueError:
        mult = -1.0
    if not mult > 0:
        raise RewindError(f"--student must be a width multiplier > 0 (e.g. 0.5) or one of "
                          f"{', '.join(SIZES)}; got {size!r}")
    return t_width * mult


def prepare(teacher_path: str, size: str, loss: str = "policy", experience: str = "teacher", steps: int = 50_000,
            seed: int = 0, overrides: dict | None = None, env: str | None = None) -> dict:
    """Check the inputs and resolve the distillation run; returns the Experiment, the loaded teacher
    (agent, eval env, meta) and both parameter counts. Every problem is a one-line RewindError."""
    from rewind.transfer.distill import EXPERIENCE, LOSSES, count_parameters, load_teacher
    from rewind.run.experiment import resolve
    from rewind.agents.networks import build_q_network
    from rewind.config import merge

    if loss not in LOSSES:
        raise RewindError(f"unknown loss {loss!r}; choose from: {', '.join(LOSSES)}")
    if experience not in EXPERIENCE:
        raise RewindError(f"--experience must be teacher or student, got {experience!r}")
    if steps < 1:
        raise RewindError("--steps must be >= 1")
    teacher, teacher_env, tmeta = load_teacher(teacher_path)
    if env is not None and canonical_env(env) != canonical_env(tmeta["env"]):
        raise RewindError(f"teacher {teacher_path} was trained on {tmeta['env']}, not {env}; "
                          "give a teacher for that env or drop --env")
    t_cfg = tmeta.get("agent_config") or {}
    t_params = count_parameters(teacher.q)
    width = student_width(size, t_cfg, teacher_env.observation_space, teacher.n_actions, t_params)
    t_run = tmeta.get("run") or {}
    base = {
        "agent": {"teacher": str(Path(teacher_path).resolve()), "network": t_cfg.get("network", "auto"),
                  "hidden": list(t_cfg.get("hidden", (256, 256))), "width": width, "loss": loss,
                  "experience": experience},
        "env": dict(tmeta.get("env_config") or {}),
        "run": {k: t_run[k] for k in ("eval_episodes", "eval_epsilon", "eval_max_steps") if k in t_run},
    }
    exp = resolve("distill", tmeta["env"], None, merge(base, overrides or {}), steps, seed)
    cfg = exp.agent_config
    s_params = count_parameters(build_q_network(cfg.network, teacher_env.observation_space, teacher.n_actions,
                                                cfg.hidden, cfg.width))
    return {"exp": exp, "teacher": teacher, "teacher_env": teacher_env, "teacher_meta": tmeta,
            "teacher_params": t_params, "student_params": s_params}
