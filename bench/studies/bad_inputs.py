"""Bad inputs across every subcommand: is each refused with one clear line, and is the disk left alone?

Not a suite: it measures the command line's handling of bad values, paths and files, not agents
x envs x seeds. Each case runs in a fresh work folder holding a small trained run (`good/`), a
crafted checkpoint whose pickle payload would create `PWNED` (`crafted/checkpoint.pt`), a plain
file, a garbage file and suite files; the folder is snapshot before and after. Outcomes:

- clear: exit code 2, exactly one line on stderr, no traceback, nothing on disk created or changed;
- traceback: a Python traceback (or an exception out of `main`);
- silent: exit code 0 (the bad input was accepted), or still running after the time limit;
- unclear: anything else (several lines, another exit code, or files created/changed).

    nice python -m rewind.bench.studies.bad_inputs --out bench/results/robustness/bad_inputs_after.json
    git archive 8fd3987 | (mkdir -p /tmp/before/rewind && tar -x -C /tmp/before/rewind)
    nice python -m rewind.bench.studies.bad_inputs --tree /tmp/before \\
        --out bench/results/robustness/bad_inputs_before.json

`--tree DIR` runs the CLI with DIR first on PYTHONPATH (DIR/rewind is the package), so the same
table measures an older checkout. tests/test_bad_inputs.py runs the same table in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAIN_GOOD = ["train", "--env", "CartPole-v1", "--steps", "300", "--logdir", "good", "--no-progress",
              "--set", "run.save_buffer=true", "--set", "agent.learning_starts=50", "--set", "agent.buffer_size=1000",
              "--set", "run.eval_episodes=1", "--set", "run.torch_threads=1"]
T = ["train", "--env", "CartPole-v1", "--steps", "20", "--no-progress"]   # a short train command to spoil
S = ["search", "--space", "mlp", "--data", "digits", "--phases", "1", "--derive-samples", "1",
     "--retrain-epochs", "0", "--no-progress"]

# (name, argv); {w} is the work folder. Each would, if accepted, finish within seconds.
CASES: list[tuple[str, list[str]]] = [
    # train: names and values
    ("train unknown agent", T + ["--agent", "dqnn", "--logdir", "r"]),
    ("train unknown env", ["train", "--env", "CartPol-v1", "--steps", "20", "--logdir", "r"]),
    ("train steps 0", ["train", "--steps", "0", "--logdir", "r"]),
    ("train steps negative", ["train", "--steps", "-5", "--logdir", "r"]),
    ("train steps not a number", ["train", "--steps", "abc", "--logdir", "r"]),
    ("train run.steps=1e99", ["train", "--set", "run.steps=1e99", "--logdir", "r", "--no-progress"]),
    ("train run.steps wrong type in config", T + ["--config", "bad_steps.yaml", "--logdir", "r"]),
    ("train lr negative", T + ["--set", "agent.lr=-1", "--logdir", "r"]),
    ("train lr nan", T + ["--set", "agent.lr=.nan", "--logdir", "r"]),
    ("train lr inf", T + ["--set", "agent.lr=.inf", "--logdir", "r"]),
    ("train gamma 1.5", T + ["--set", "agent.gamma=1.5", "--logdir", "r"]),
    ("train eps_end above eps_start", T + ["--set", "agent.eps_start=0.1", "--set", "agent.eps_end=0.5",
                                           "--logdir", "r"]),
    ("train eps_start above 1", T + ["--set", "agent.eps_start=2", "--logdir", "r"]),
    ("train hidden width 0", T + ["--set", "agent.hidden=[0,32]", "--logdir", "r"]),
    ("train replay beyond RAM", T + ["--set", "agent.buffer_size=100000000000", "--logdir", "r"]),
    ("train seed negative", T + ["--seed", "-1", "--logdir", "r"]),
    ("train config is a directory", T + ["--config", "emptydir", "--logdir", "r"]),
    ("train config missing", T + ["--config", "nothere.yaml", "--logdir", "r"]),
    ("train logdir is a file", T + ["--logdir", "afile.txt"]),
    ("train logdir under a file", T + ["--logdir", "afile.txt/sub"]),
    ("train bandit agent on CartPole", T + ["--agent", "linucb", "--logdir", "r"]),
    ("train dqn on a bandit env", ["train", "--env", "rewind/bandit-digits-v0", "--steps", "20", "--no-progress",
                                   "--logdir", "r"]),
    ("train unknown section", T + ["--set", "agnt.lr=0.1", "--logdir", "r"]),
    ("train unknown key", T + ["--set", "agent.lrr=0.1", "--logdir", "r"]),
    ("train eval_epsilon 2", T + ["--set", "run.eval_epsilon=2", "--logdir", "r"]),
    ("train grow-at without widen", T + ["--grow-at", "10", "--logdir", "r"]),
    ("train resume nothing", T + ["--logdir", "r", "--resume"]),
    ("train resume crafted checkpoint", T + ["--logdir", "crafted", "--resume"]),
    ("train resume garbage checkpoint", T + ["--logdir", "garbage", "--resume"]),
    # eval
    ("eval missing file", ["eval", "nothere.pt"]),
    ("eval crafted checkpoint", ["eval", "crafted/checkpoint.pt", "--episodes", "1"]),
    ("eval garbage file", ["eval", "garbage/checkpoint.pt", "--episodes", "1"]),
    ("eval epsilon 1.5", ["eval", "good", "--epsilon", "1.5", "--episodes", "1"]),
    ("eval epsilon negative", ["eval", "good", "--epsilon", "-0.1", "--episodes", "1"]),
    ("eval max-steps 0", ["eval", "good", "--max-steps", "0", "--episodes", "1"]),
    ("eval episodes 0", ["eval", "good", "--episodes", "0"]),
    ("eval seed negative", ["eval", "good", "--seed", "-3", "--episodes", "1"]),
    # distill
    ("distill crafted teacher", ["distill", "crafted", "--student", "half", "--steps", "20", "--logdir", "d",
                                 "--no-progress"]),
    ("distill student size nonsense", ["distill", "good", "--student", "huge", "--steps", "20", "--logdir", "d"]),
    ("distill steps 0", ["distill", "good", "--student", "half", "--steps", "0", "--logdir", "d"]),
    ("distill logdir is a file", ["distill", "good", "--student", "half", "--steps", "20", "--logdir",
                                  "afile.txt", "--no-progress"]),
    ("distill seed negative", ["distill", "good", "--student", "half", "--steps", "20", "--seed", "-1",
                               "--logdir", "d", "--no-progress"]),
    # compress
    ("compress crafted checkpoint", ["compress", "crafted", "--episodes", "0", "--retrain-steps", "1",
                                     "--finetune-steps", "1", "--out", "m.rwz", "--no-progress"]),
    ("compress prune 1.5", ["compress", "good", "--prune", "1.5", "--out", "m.rwz"]),
    ("compress bits 0", ["compress", "good", "--bits", "0", "--out", "m.rwz"]),
    ("compress out is a directory", ["compress", "good", "--episodes", "0", "--retrain-steps", "1",
                                     "--finetune-steps", "1", "--out", "emptydir", "--no-progress"]),
    ("compress out under a file", ["compress", "good", "--episodes", "0", "--retrain-steps", "1",
                                   "--finetune-steps", "1", "--out", "afile.txt/m.rwz", "--no-progress"]),
    # search
    ("search unknown space", ["search", "--space", "nope", "--data", "digits"]),
    ("search unknown data", ["search", "--space", "mlp", "--data", "nodata"]),
    ("search phases 0", S + ["--phases", "0", "--logdir", "s"]),
    ("search seed negative", S + ["--seed", "-1", "--logdir", "s"]),
    ("search logdir is a file", S + ["--logdir", "afile.txt"]),
    ("search resume a train run", S + ["--logdir", "good", "--resume"]),
    ("search resume crafted checkpoint", S + ["--logdir", "crafted", "--resume"]),
    # bench
    ("bench suite label absolute path", ["bench", "run", "suite_abs.yaml", "--out", "b", "--workers", "1",
                                         "--no-report"]),
    ("bench suite label ../", ["bench", "run", "suite_up.yaml", "--out", "b", "--workers", "1", "--no-report"]),
    ("bench suite label a/b", ["bench", "run", "suite_slash.yaml", "--out", "b", "--workers", "1", "--no-report"]),
    ("bench suite label .", ["bench", "run", "suite_dot.yaml", "--out", "b", "--workers", "1", "--no-report"]),
    ("bench suite seed negative", ["bench", "run", "suite_seed.yaml", "--out", "b", "--workers", "1",
                                   "--no-report"]),
    ("bench unknown suite", ["bench", "run", "nosuchsuite", "--out", "b"]),
    ("bench out is a file", ["bench", "run", "suite_ok.yaml", "--out", "afile.txt", "--workers", "1",
                             "--no-report"]),
    ("bench workers 0", ["bench", "run", "suite_ok.yaml", "--out", "b", "--workers", "0"]),
    ("bench report of an empty folder", ["bench", "report", "emptydir"]),
    # others
    ("envs unknown kind", ["envs", "--kind", "nope"]),
    ("curriculum unknown experiment", ["curriculum", "nope"]),
    ("unknown command", ["trian"]),
    ("convert-checkpoint without --trust", ["convert-checkpoint", "crafted/checkpoint.pt"]),
    ("convert-checkpoint missing file", ["convert-checkpoint", "nothere.pt", "--trust"]),
    # tune
    ("tune unknown agent", ["tune", "--agent", "dqnn", "--env", "CartPole-v1", "--study", "s", "--trials", "2"]),
    ("tune trials 0", ["tune", "--env", "CartPole-v1", "--study", "s", "--trials", "0"]),
    ("tune study is a file", ["tune", "--env", "CartPole-v1", "--study", "afile.txt", "--trials", "2"]),
]


def _suite(label: str, seeds="[0]") -> str:
    return (f"name: bad\nagents: {{{json.dumps(label)}: dqn}}\nenvs: [CartPole-v1]\nseeds: {seeds}\n"
            "config: {run: {steps: 30, eval_every: 0, eval_episodes: 1, eval_max_steps: 20}, "
            "agent: {learning_starts: 10, buffer_size: 200}}\n")


class _Payload:
    """Unpickling this creates the file `marker`: proof that loading ran code."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def craft_checkpoint(path: Path, marker: Path) -> None:
    """A checkpoint-shaped file whose unpickling creates `marker` (torch.save pickles the payload)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "rewind-checkpoint", "meta": {"agent": "dqn", "env": "CartPole-v1"},
                "agent": _Payload(str(marker)), "loop": {"step": 1}}, path)


def make_workdir(work: Path, good: Path) -> None:
    """The files every case starts from (the same for every case and every tree)."""
    work.mkdir(parents=True)
    shutil.copytree(good, work / "good")
    craft_checkpoint(work / "crafted" / "checkpoint.pt", work / "PWNED")
    (work / "garbage").mkdir()
    (work / "garbage" / "checkpoint.pt").write_bytes(b"PK\x03\x04 not really a checkpoint" * 10)
    (work / "afile.txt").write_text("a file, not a directory\n")
    (work / "emptydir").mkdir()
    (work / "bad_steps.yaml").write_text("run:\n  steps: abc\n")
    # labels that would put the run outside --out (b/); they stay inside the work folder, so a tree
    # that lets them through writes where the snapshot sees it, never elsewhere on the machine
    for name, label in (("abs", str(work / "escaped_abs")), ("up", "../../escaped_up"), ("slash", "a/b"),
                        ("dot", "."), ("ok", "dqn")):
        (work / f"suite_{name}.yaml").write_text(_suite(label))
    (work / "suite_seed.yaml").write_text(_suite("dqn", "[-1]"))


def snapshot(root: Path) -> dict:
    """path -> (size, mtime_ns) of everything under root (folders too)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
    return out


def classify(rc, stderr: str, changed: list[str], crashed: bool = False) -> str:
    if crashed or "Traceback" in stderr:
        return "traceback"
    if rc == 0 or rc is None:
        return "silent"
    lines = [line for line in stderr.splitlines() if line.strip()]
    return "clear" if rc == 2 and len(lines) == 1 and not changed else "unclear"


_MAIN = "import sys; from rewind.cli import main; sys.exit(main(sys.argv[1:]))"   # the `rewind` script


def subprocess_runner(tree: str | None, timeout: float):
    """Run `rewind ARGV` (its entry point) in `cwd` with `tree` first on PYTHONPATH; (rc, stderr, crashed)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    if tree:
        env["PYTHONPATH"] = str(Path(tree).resolve()) + os.pathsep + env.get("PYTHONPATH", "")

    def run(argv, cwd):
        try:
            p = subprocess.run([sys.executable, "-c", _MAIN, *argv], cwd=cwd, env=env, text=True,
                               capture_output=True, timeout=timeout)
            return p.returncode, p.stderr, False
        except subprocess.TimeoutExpired as exc:
            err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            return None, err, False
    return run


def run_table(runner, base: Path, cases=CASES) -> list[dict]:
    """Build the good run with `runner`, then run every case in its own work folder."""
    cache = base / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    rc, err, _ = runner(TRAIN_GOOD, cache)
    if rc != 0:
        raise RuntimeError(f"could not train the good run: {err[-500:]}")
    rows = []
    for i, (name, argv) in enumerate(cases):
        work = base / f"case{i:02d}"
        make_workdir(work, cache / "good")
        before = snapshot(work.parent)
        t0 = time.perf_counter()
        rc, err, crashed = runner(argv, work)
        after = snapshot(work.parent)
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        rows.append({"case": name, "argv": argv, "rc": rc, "outcome": classify(rc, err, changed, crashed),
                     "stderr": err.strip()[-600:], "changed": changed[:10], "payload_ran": (work / "PWNED").exists(),
                     "seconds": round(time.perf_counter() - t0, 2)})
        shutil.rmtree(work, ignore_errors=True)
    return rows


def summarize(rows: list[dict]) -> dict:
    counts = {k: sum(r["outcome"] == k for r in rows) for k in ("clear", "traceback", "silent", "unclear")}
    return {"cases": len(rows), **counts, "payload_ran": sum(r["payload_ran"] for r in rows)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tree", default=None, help="source tree whose rewind/ package to measure (default: installed)")
    p.add_argument("--timeout", type=float, default=90.0, help="seconds per case before it counts as silent")
    p.add_argument("--out", required=True, help="JSON file for the rows and the counts")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rewind-bad-") as tmp:
        rows = run_table(subprocess_runner(args.tree, args.timeout), Path(tmp))
    result = {"tree": args.tree or "installed", "summary": summarize(rows), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"]))
    for r in rows:
        last = r["stderr"].splitlines()[-1] if r["stderr"] else ""
        print(f"{r['outcome']:9s} rc={r['rc']!s:4s} {r['case']}: {last}"[:160])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
