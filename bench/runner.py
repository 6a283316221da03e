"""Run a suite: every run in its own folder, on a local process pool (default) or a Ray cluster.

Layout of a results folder:

    <out>/suite.json                  the suite as run, its fingerprint (one suite per folder)
    <out>/runs/<label>/<env>/s<seed>/ one run: run.json, status.json, evaluations.json,
                                      summary.json, checkpoint (checkpoint.pt or sb3_checkpoint.pt),
                                      TensorBoard events, error.log when it failed

Durability: a run is *done* when status.json says so (written last, atomically, after
summary.json); a run with a checkpoint and no done status is resumed from it; anything else
starts from scratch in an emptied folder. A failing run writes its error and traceback and
the others go on; the next invocation retries it. Each worker process runs one run at a time
with torch limited to the run's cpus, so N workers never oversubscribe the machine; with
one worker the runs execute in the harness process itself (no extra interpreter start).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from rewind.errors import RewindError

STATUS = "status.json"
MARKER = ".rewind-bench-run"   # written in every run folder the runner creates; it deletes no other folder


def run_dir(out: Path, run_id: str) -> Path:
    """The run's folder, checked to lie inside `out` after resolving links (a label is never a path)."""
    from rewind.files import inside

    return inside(Path(out) / "runs" / run_id, out, f"run folder of {run_id}")


def read_status(path: Path) -> dict | None:
    try:
        return json.loads((Path(path) / STATUS).read_text())
    except (OSError, ValueError):
        return None


def _has_checkpoint(path: Path, spec) -> bool:
    if spec.is_peer:
        from rewind.bench.peers import has_checkpoint
        return has_checkpoint(path)
    return (path / "checkpoint.pt").exists()


def run_state(out: Path, spec) -> str:
    """'done', 'resume' or 'new' for one run of the suite (done: its result file, or its folder, says so)."""
    from rewind.bench.store import read_result

    if read_result(out, spec.run_id) is not None:
        return "done"
    path = run_dir(out, spec.run_id)
    status = read_status(path)
    if status and status.get("state") == "done":
        return "done"
    return "resume" if _has_checkpoint(path, spec) else "new"


def execute_run(spec_dict: dict, out: str) -> dict:
    """Worker entry point (local pool and Ray): run or resume one run, never raise."""
    from rewind.files import atomic_write_json, remove_stale_tmp
    from rewind.bench.suite import RunSpec, resolve_run, run_meta

    spec = RunSpec(**spec_dict)
    path = run_dir(Path(out), spec.run_id)
    from rewind.bench.store import code_version, write_result

    t0, cpu0, version = time.perf_counter(), time.process_time(), code_version()
    result = {"run_id": spec.run_id, "state": "failed", "error": None, "wall_s": 0.0, "resumed_from": None,
              "pid": os.getpid(), "host": os.uname().nodename}
    try:
        state = run_state(Path(out), spec)
        if state == "done":
            result.update(state="done", skipped=True)
            return result
        if state == "new" and path.exists():
            if not (path / MARKER).is_file() or path.is_symlink():
                raise RewindError(f"{path} exists but was not created by rewind bench; move it out of --out")
            shutil.rmtree(path)  # leftovers of a run killed before its first checkpoint
        path.mkdir(parents=True, exist_ok=True)
        (path / MARKER).write_text(spec.run_id + "\n")
        remove_stale_tmp(path)  # temp files of a write that a kill interrupted (peers' files too)
        exp = resolve_run(spec)
        atomic_write_json(path / "run.json", run_meta(spec, exp))
        if not exp.run.torch_threads:
            exp.run.torch_threads = max(1, int(spec.cpus))
        exp.run.progress = False
        if state == "resume":
            result["resumed_from"] = _checkpoint_step(path, spec)
        if spec.is_peer:
            from rewind.bench.peers import run_peer
            summary = run_peer(spec, exp, path, resume=state == "resume")
        else:
            from rewind.run.experiment import run_experiment
            summary = run_experiment(exp, path, resume=state == "resume", progress=False)
        result["state"] = "interrupted" if summary.get("interrupted") else "done"
        result["stopped_by"] = summary.get("stopped_by")
        if result["state"] == "done":
            evals = json.loads((path / "evaluations.json").read_text()) if (path / "evaluations.json").exists() else []
            write_result(out, spec.run_id, run_meta(spec, exp), evals, summary, time.perf_counter() - t0,
                         time.process_time() - cpu0, version)
        last = summary.get("last_eval") or {}
        result["return_mean"] = last.get("return_mean")
        result["steps"] = summary.get("steps")
        if summary.get("notes"):
            result["notes"] = summary["notes"]
    except BaseException as exc:  # noqa: BLE001 - a failing run is reported, the suite goes on
        if isinstance(exc, KeyboardInterrupt):
            result["state"] = "interrupted"
        text = str(exc).splitlines()[0] if str(exc) else ""
        result["error"] = f"{type(exc).__name__}: {text}"[:300]
        try:
            path.mkdir(parents=True, exist_ok=True)
            (path / "error.log").write_text(traceback.format_exc())
        except OSError:
            pass
    result["wall_s"] = time.perf_counter() - t0
    try:
        atomic_write_json(path / STATUS, result)
    except OSError:
        pass
    return result


def _checkpoint_step(path: Path, spec) -> int | None:
    try:
        if spec.is_peer:
            from rewind.bench.peers import STATE_FILE
            return int(json.loads((path / STATE_FILE).read_text())["step"])
        from rewind.run.checkpoint import load_checkpoint
        return int(load_checkpoint(path / "checkpoint.pt")["loop"]["step"])
    except Exception:  # noqa: BLE001 - informational only
        return None


# ---------------------------------------------------------------- results folder


def prepare_out(out: Path, suite) -> None:
    """Claim `out` for this suite, or refuse (before any run) if it belongs to another one."""
    from rewind.files import atomic_write_json

    out = Path(out)
    manifest = out / "suite.json"
    if manifest.exists():
        try:
            saved = json.loads(manifest.read_text())
        except ValueError:
            raise RewindError(f"{manifest} is unreadable; choose another --out") from None
        if saved.get("fingerprint") != suite.fingerprint():
            raise RewindError(f"{out} holds results of suite {saved.get('name')!r} with other settings; "
                              "choose another --out (nothing was changed)")
    elif out.exists() and any(out.iterdir()):
        raise RewindError(f"{out} is not empty and holds no rewind bench results; choose a new or empty --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(manifest, {"name": suite.name, "fingerprint": suite.fingerprint(), "suite": suite.raw})


def read_manifest(out: Path) -> dict:
    manifest = Path(out) / "suite.json"
    if not manifest.exists():
        raise RewindError(f"{out} holds no suite results (no suite.json); run `rewind bench run SUITE --out {out}`")
    try:
        return json.loads(manifest.read_text())
    except ValueError:
        raise RewindError(f"{manifest} is unreadable") from None


# ---------------------------------------------------------------- backends


def _log(msg: str) -> None:
    print(f"rewind bench: {msg}", file=sys.stderr, flush=True)


def _report_line(i: int, n: int, res: dict) -> str:
    extra = f"return {res['return_mean']:.2f}" if res.get("return_mean") is not None else ""
    if res.get("resumed_from") is not None:
        extra += f" (resumed from step {res['resumed_from']})"
    if res["state"] != "done":
        extra = res.get("error") or extra
    return f"[{i}/{n}] {res['state']:11s} {res['run_id']} {res['wall_s']:.1f}s {extra}".rstrip()


def _run_local(todo: list, out: Path, workers: int) -> list[dict]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    from rewind.files import atomic_write_json

    results, pending = [], list(todo)
    if workers == 1:
        # one worker: run in this process (no second interpreter and torch import per suite);
        # a failing run is still caught by execute_run, and a crash leaves checkpoints to resume
        for spec in pending:
            res = execute_run(dataclasses.asdict(spec), str(out))
            results.append(res)
            _log(_report_line(len(results), len(todo), res))
            if res["state"] == "interrupted":
                break
        return results
    ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
    while pending:
        lost = []
        with ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=ctx) as pool:
            futures = {pool.submit(execute_run, dataclasses.asdict(s), str(out)): s for s in pending}
            try:
                for fut in as_completed(futures):
                    if fut.cancelled():
                        continue
                    try:
                        res = fut.result()
                    except BrokenProcessPool:
                        lost.append(futures[fut])
                        continue
                    results.append(res)
                    _log(_report_line(len(results), len(todo), res))
                    if res["state"] == "interrupted":  # Ctrl-C reached the workers: start nothing new
                        pool.shutdown(wait=False, cancel_futures=True)
            except KeyboardInterrupt:
                # running workers got the same SIGINT and are checkpointing; queued runs never start
                pool.shutdown(wait=True, cancel_futures=True)
                results.append({"run_id": "(suite)", "state": "interrupted", "wall_s": 0.0, "error": "Ctrl-C"})
                return results
        # A dead worker (killed, out of memory, crashed) breaks the whole pool: runs that had
        # started are reported failed (their checkpoints stay for the next invocation), runs
        # that had not started go to a fresh pool.
        pending = []
        for spec in lost:
            path = run_dir(out, spec.run_id)
            if (path / "run.json").exists() and read_status(path) is None:
                res = {"run_id": spec.run_id, "state": "failed", "wall_s": 0.0, "resumed_from": None,
                       "error": "worker process died (killed, out of memory or crashed)"}
                atomic_write_json(path / STATUS, res)
                results.append(res)
                _log(_report_line(len(results), len(todo), res))
            elif read_status(path) is None:
                pending.append(spec)
    return results


def check_ray(address: str):
    """Connect to an existing Ray cluster, or raise a one-line RewindError (before any run)."""
    try:
        import ray
    except ImportError:
        raise RewindError("--ray-address needs ray: pip install 'ray>=2.9' (or rewind-rl[ray])") from None
    if address != "auto":
        import socket
        host, _, port = address.rpartition(":")
        host = host.replace("ray://", "") or "127.0.0.1"
        if not port.isdigit():
            raise RewindError(f"--ray-address {address!r}: give auto or host:port (e.g. 127.0.0.1:6379)")
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
        except OSError as exc:
            raise RewindError(f"Ray cluster at {address} is unreachable ({exc.strerror or exc}); "
                              "start one with `ray start --head` or fix --ray-address") from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RewindError(f"cannot connect to Ray at {address}: {first[:200]}") from None
    return ray


def _run_ray(todo: list, out: Path, ray) -> list[dict]:
    remote = ray.remote(max_retries=0)(execute_run)
    refs = {}
    for spec in todo:
        ref = remote.options(num_cpus=spec.cpus, num_gpus=spec.gpus).remote(dataclasses.asdict(spec), str(out))
        refs[ref] = spec
    results, waiting = [], list(refs)
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1)
        spec = refs[done[0]]
        try:
            res = ray.get(done[0])
        except Exception as exc:  # noqa: BLE001 - the worker died or Ray lost the task
            res = {"run_id": spec.run_id, "state": "failed", "wall_s": 0.0,
                   "error": f"Ray task failed: {str(exc).splitlines()[0][:200]}"}
        results.append(res)
        _log(_report_line(len(results), len(todo), res))
    return results


class _SigtermAsCtrlC:
    """SIGTERM (batch schedulers, containers) stops a suite as Ctrl-C does: workers checkpoint, exit 143.

    Local pool workers get a SIGINT (their loops finish the step and checkpoint); the harness
    process stops waiting as on Ctrl-C. With one worker, the loop's own handler takes SIGTERM.
    """

    def __init__(self):
        self.received = False

    def __enter__(self):
        import signal
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def _handle(self, signum, frame):
        import multiprocessing as mp
        import signal
        self.received = True
        for child in mp.active_children():
            try:
                os.kill(child.pid, signal.SIGINT)
            except OSError:
                pass
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        import signal
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def run_suite(suite, out: str | Path, workers: int | None = None, ray_address: str | None = None) -> dict:
    """Run every unfinished run of `suite` into `out`; returns counts and per-run results."""
    from rewind.files import writable_dir

    out = writable_dir(out, "--out")
    for spec in suite.runs:  # every folder the suite would write, checked before anything is touched
        run_dir(out, spec.run_id)
    ray = check_ray(ray_address) if ray_address else None  # unreachable cluster: fail before touching out
    prepare_out(out, suite)
    states = {s.run_id: run_state(out, s) for s in suite.runs}
    todo = [s for s in suite.runs if states[s.run_id] != "done"]
    # seed-major order: a sweep stopped part-way has every agent on the same envs and seeds
    todo.sort(key=lambda s: (s.seed, suite.envs.index(s.env), suite.agents.index(s.label)))
    n_done = len(suite.runs) - len(todo)
    n_resume = sum(states[s.run_id] == "resume" for s in todo)
    backend = f"Ray at {ray_address}" if ray else f"{workers or _default_workers(suite)} local worker(s)"
    _log(f"suite {suite.name}: {len(suite.runs)} runs, {n_done} already done, {n_resume} to resume, "
         f"{len(todo) - n_resume} new; {backend}")
    for spec in todo:  # from here on, a status.json means "finished in this invocation"
        for name in (STATUS, "run.json"):
            (run_dir(out, spec.run_id) / name).unlink(missing_ok=True)
    t0 = time.perf_counter()
    with _SigtermAsCtrlC() as sigterm:
        if not todo:
            results = []
        elif ray is not None:
            results = _run_ray(todo, out, ray)
        else:
            results = _run_local(todo, out, workers or _default_workers(suite))
    failed = [r for r in results if r["state"] == "failed"]
    interrupted = [r for r in results if r["state"] == "interrupted"]
    stopped_by = "SIGTERM" if sigterm.received or any(r.get("stopped_by") == "SIGTERM" for r in interrupted) \
        else ("SIGINT" if interrupted else None)
    summary = {"runs": len(suite.runs), "skipped": n_done, "ran": len(results), "failed": failed,
               "interrupted": interrupted, "stopped_by": stopped_by, "wall_s": time.perf_counter() - t0,
               "results": results}
    for r in failed:
        _log(f"FAILED {r['run_id']}: {r['error']} (see {run_dir(out, r['run_id'])}/error.log)")
    return summary


def _default_workers(suite) -> int:
    cpus = max(1.0, min(s.cpus for s in suite.runs)) if suite.runs else 1.0
    return max(1, int((os.cpu_count() or 1) // cpus))
