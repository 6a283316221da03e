"""Per-run result files: the small, committable record of one finished run of a suite.

`<out>/results/<label>__<env>__s<seed>.json` is written atomically the moment a run finishes and
holds everything a reader needs to trust and rerun it: the resolved config, the command, the git
commit (and whether the tree was dirty), the machine (CPU model and its AVX-512/AMX flags, GPU),
the evaluation curve, the final score, wall and CPU time. Run directories (checkpoints,
TensorBoard events) can live elsewhere (`--workdir`) and need not survive: a later
`rewind bench run` skips every run whose result file exists, so a sweep continues from the
result files committed to git alone.

Staleness: a result names the commit it ran at and the rewind source files its process had
loaded (`code_files`); `stale_files(result)` lists the learning code among them (not the harness,
the CLI or the studies, which do not change what a run computes; but an SB3 peer's run counts
bench/peers.py, which translates its settings) that changed between that commit
and HEAD, and the report marks such results "stale" instead of silently mixing code versions.
A Python file whose code is equal once parsed (only comments, docstrings or layout changed) does
not count. Stale means "the code changed", not "the number changed": rerun to find out. Results
without `code_files` are checked against every learning-code folder.
"""

from __future__ import annotations

import ast
import functools
import json
import platform
import shlex
import subprocess
import sys
from pathlib import Path

from rewind.files import atomic_write_json

# The code a learning run depends on: a change under any of these can change its numbers.
CODE_PATHS = ("agents", "buffers", "envs", "run", "controllers", "transfer", "config.py", "files.py", "configs")
PEER_CODE = ("bench/peers.py",)   # and, for an SB3 peer's run, the translation of rewind's settings to SB3's
REPO = Path(__file__).resolve().parents[1]


def result_path(out: str | Path, run_id: str) -> Path:
    return Path(out) / "results" / (run_id.replace("/", "__") + ".json")


def read_result(out: str | Path, run_id: str) -> dict | None:
    try:
        return json.loads(result_path(out, run_id).read_text())
    except (OSError, ValueError):
        return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """The commit this code is at and whether the files a run depends on differ from it, taken once per
    process: a long-lived harness keeps the code it imported even if the checkout moves on."""
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--", *CODE_PATHS)
    return {"commit": commit, "dirty": bool(dirty) if dirty is not None else None}


def machine() -> dict:
    """CPU model and the vector-extension flags that decide torch's speed; GPU if torch sees one."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            if key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    out = {"cpu": model, "cores": _cores(), "flags": sorted(f for f in flags if f.startswith(("avx512", "amx"))
                                                             or f == "avx2")}
    try:
        import torch

        if torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return out


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def loaded_code_files() -> list[str]:
    """Repository-relative paths of the rewind modules this process has imported (the code a run used)."""
    files = set()
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name.startswith("rewind") and path:
            try:
                files.add(str(Path(path).resolve().relative_to(REPO)))
            except ValueError:
                continue
    return sorted(files)


def write_result(out: str | Path, run_id: str, meta: dict, evaluations: list[dict], summary: dict,
                 wall_s: float, cpu_s: float, version: dict) -> Path:
    """Record one finished run (atomically: a reader sees the whole file or none). `version`: the
    code_version() taken when the run started, so a commit made while it ran is not claimed."""
    final = evaluations[-1] if evaluations else {}
    record = {
        "run_id": run_id,
        "config": meta,
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        **version,
        "machine": machine(),
        "steps": summary.get("steps"),
        "final": {k: final.get(k) for k in ("step", "frames", "return_mean", "return_std", "returns")},
        # length_mean: evaluation episode length, for metrics other than the return (maze relative length)
        "curve": [{k: e.get(k) for k in ("step", "frames", "return_mean", "return_std", "length_mean")}
                  for e in evaluations],
        "code_files": loaded_code_files(),
        "wall_s": round(wall_s, 1),
        "cpu_s": round(cpu_s, 1),
    }
    path = result_path(out, run_id)
    atomic_write_json(path, record)
    return path


def stale_files(result: dict, paths: tuple[str, ...] | None = None) -> list[str] | None:
    """The result's code files (else `paths`, else every learning-code folder) changed since its commit
    (None: git or the commit is unavailable)."""
    commit = result.get("commit")
    if not commit:
        return None
    from rewind.bench.peers import PEERS

    peer = (result.get("config") or {}).get("agent") in PEERS
    loaded = paths or result.get("code_files")
    paths = tuple(p for p in loaded if _is_learning_code(p, peer)) if loaded else _learning_paths(peer)
    if not paths:
        return []
    changed = _git("diff", "--name-only", commit, "HEAD", "--", *paths)
    if changed is None:
        return None
    return [f for f in changed.splitlines() if f and not _same_code(commit, f)]


def _learning_paths(peer: bool) -> tuple[str, ...]:
    return CODE_PATHS + PEER_CODE if peer else CODE_PATHS


def _is_learning_code(path: str, peer: bool = False) -> bool:
    return any(path == p or path.startswith(p + "/") for p in _learning_paths(peer))


def _same_code(commit: str, path: str) -> bool:
    """Whether Python file `path` parses to the same code at `commit` and at HEAD (docstrings aside)."""
    if not path.endswith(".py"):
        return False
    old, new = _git("show", f"{commit}:{path}"), _git("show", f"HEAD:{path}")
    if old is None or new is None:
        return False
    try:
        return _code_only(old) == _code_only(new)
    except SyntaxError:
        return False


def _code_only(source: str) -> str:
    """The parsed code without docstrings; ast.dump leaves out comments, line numbers and layout."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)
