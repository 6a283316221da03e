"""SIGKILL during checkpoint writes: does every kill leave a loadable checkpoint, and do resumes work?

Not a suite: it measures crash safety of the checkpoint writer, not agents x envs x seeds.
One `rewind train` run (CartPole, a 1M-slot replay saved in every checkpoint, so each write is
tens of MB and takes a while) checkpoints every `--every` steps. The study waits until a
checkpoint's temp file appears (a write in progress), SIGKILLs the process at once, then:

- corrupt: checkpoint.pt does not load (`load_checkpoint` of the tree under test);
- temp left after kill: `.checkpoint.pt.*.tmp` files present right after the kill;
- then it restarts the same command with --resume; resume worked: the restarted process loads
  the checkpoint, trains on and completes a later checkpoint (each cycle lets one write finish
  and kills the next one mid-write);
- temp left after restart: stale temp files still there once the restarted run is writing again.

The last restart runs to the end: exit code 0 and the final step equal to --steps.

    nice python -m rewind.bench.studies.kill_checkpoint --kills 24 \\
        --out bench/results/robustness/kill_checkpoint_after.json
    nice python -m rewind.bench.studies.kill_checkpoint --kills 24 --tree /tmp/before \\
        --out bench/results/robustness/kill_checkpoint_before.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_MAIN = "import sys; from rewind.cli import main; sys.exit(main(sys.argv[1:]))"
_LOAD = ("import sys; from rewind.run.checkpoint import load_checkpoint; "
         "print(int(load_checkpoint(sys.argv[1])['loop']['step']))")


def command(logdir: Path, steps: int, every: int, buffer: int) -> list[str]:
    return ["train", "--env", "CartPole-v1", "--steps", str(steps), "--logdir", str(logdir), "--no-progress",
            "--set", f"agent.buffer_size={buffer}", "--set", "agent.learning_starts=100",
            "--set", "agent.hidden=[32,32]", "--set", f"run.checkpoint_every={every}", "--set", "run.eval_every=0",
            "--set", "run.eval_episodes=1", "--set", "run.save_buffer=true", "--set", "run.torch_threads=1"]


def _mtime(path: Path):
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def temps(logdir: Path) -> list[Path]:
    return sorted(logdir.glob(".checkpoint.pt.*.tmp"))


def saved_step(env, logdir: Path):
    p = subprocess.run([sys.executable, "-c", _LOAD, str(logdir / "checkpoint.pt")], env=env, text=True,
                       capture_output=True, timeout=120)
    return int(p.stdout.strip()) if p.returncode == 0 and p.stdout.strip() else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=24)
    p.add_argument("--steps", type=int, default=1_000_000, help="run length (the kills come long before)")
    p.add_argument("--every", type=int, default=200, help="steps between checkpoints")
    p.add_argument("--buffer", type=int, default=1_000_000, help="replay slots (sets the checkpoint size)")
    p.add_argument("--tree", default=None, help="source tree to measure (DIR/rewind is the package)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    if args.tree:
        env["PYTHONPATH"] = str(Path(args.tree).resolve()) + os.pathsep + env.get("PYTHONPATH", "")
    rows = []
    with tempfile.TemporaryDirectory(prefix="rewind-kill-") as tmp:
        logdir = Path(tmp) / "run"
        base = [sys.executable, "-c", _MAIN, *command(logdir, args.steps, args.every, args.buffer)]
        for i in range(args.kills):
            resume = (logdir / "checkpoint.pt").exists()
            before = saved_step(env, logdir) if resume else 0
            stale_before = temps(logdir) if resume else []
            proc = subprocess.Popen(base + (["--resume"] if resume else []), env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
            row = {"kill": i, "resumed": resume, "saved_step_before": before, "stale_temps_at_start": len(stale_before)}
            deadline = time.monotonic() + 300
            mtime0 = _mtime(logdir / "checkpoint.pt")
            wrote = False
            while proc.poll() is None and time.monotonic() < deadline:
                wrote = wrote or _mtime(logdir / "checkpoint.pt") != mtime0  # a write of this process completed
                fresh = [t for t in temps(logdir) if t not in stale_before]
                if wrote and fresh:  # ... and the next one is in progress: kill it now
                    proc.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.002)
            proc.wait()
            err = proc.stderr.read()
            row["killed_mid_write"] = proc.returncode == -signal.SIGKILL
            row["exit_code"] = proc.returncode
            row["error"] = err.strip().splitlines()[-1] if proc.returncode not in (-signal.SIGKILL, 0) and err else None
            row["stale_left_after_restart"] = sum(t.exists() for t in stale_before)  # still there once writing
            row["temps_after_kill"] = len(temps(logdir))
            after = saved_step(env, logdir) if (logdir / "checkpoint.pt").exists() else None
            row["checkpoint_loads"] = after is not None or not (logdir / "checkpoint.pt").exists()
            row["saved_step_after"] = after
            # worked: the restarted run continued from its checkpoint and saved a later one
            row["resume_worked"] = resume and wrote and row["error"] is None and after is not None and after > before
            rows.append(row)
            print(json.dumps(row), flush=True)
        # the last restart runs to the end (a short run: --steps is lowered via a fresh command line)
        final_steps = (saved_step(env, logdir) or 0) + args.every
        fin = subprocess.run([sys.executable, "-c", _MAIN, *command(logdir, final_steps, args.every, args.buffer),
                              "--resume"], env=env, capture_output=True, text=True, timeout=600)
        final = {"exit_code": fin.returncode, "step": saved_step(env, logdir), "expected_step": final_steps,
                 "temps_left": len(temps(logdir)), "stderr_tail": fin.stderr.strip()[-300:]}
    summary = {"kills": len(rows), "killed_mid_write": sum(r["killed_mid_write"] for r in rows),
               "corrupt_checkpoints": sum(not r["checkpoint_loads"] for r in rows),
               "resumes": sum(r["resumed"] for r in rows), "resumes_worked": sum(r["resumed"] and r["resume_worked"]
                                                                                for r in rows),
               "temp_files_left_by_kills": sum(r["temps_after_kill"] > 0 for r in rows),
               "stale_temps_still_there_after_restart": sum(r["stale_left_after_restart"] for r in rows),
               "final": final}
    result = {"tree": args.tree or "installed", "settings": vars(args), "summary": summary, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
