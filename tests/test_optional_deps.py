"""Optional packages: with one hidden, the command that needs it prints one line naming the extra and
exits 2 (no traceback, nothing written); the extras in setup.cfg match what the code imports."""

from __future__ import annotations

import ast
import configparser
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

HIDE = """
import sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == {hidden!r}:
            raise ImportError("hidden by the test: " + name)
sys.meta_path.insert(0, Hide())
from rewind.cli import main
sys.exit(main({argv!r}))
"""


def run_hidden(hidden: str, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HIDE.format(hidden=hidden, argv=argv)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("hidden, argv, extra", [
    ("matplotlib", ["search", "--space", "mlp", "--data", "digits", "--phases", "1", "--no-progress",
                    "--logdir", "out"], "bench"),
    ("optuna", ["tune", "--env", "CartPole-v1", "--study", "out", "--trials", "1"], "tune"),
    ("wandb", ["train", "--env", "CartPole-v1", "--steps", "10", "--logdir", "out", "--track"], "wandb"),
    ("moviepy", ["train", "--env", "CartPole-v1", "--steps", "10", "--logdir", "out", "--video-every", "5"],
     "video"),
])
def test_a_hidden_optional_package_is_one_line_and_exit_2(tmp_path, hidden, argv, extra):
    out = run_hidden(hidden, argv, tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith("rewind: error:") and f"rewind-rl[{extra}]" in lines[-1]
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "out").exists()                    # refused before anything is written


def third_party_imports() -> set[str]:
    mods = set()
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).parts
        if rel[0] in ("tests", "build", "runs") or any(p.startswith(".") for p in rel):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                mods |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods.add(node.module.split(".")[0])
            elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require"
                  and isinstance(node.args[0], ast.Constant)):
                mods.add(node.args[0].value.split(".")[0])
    return mods - set(sys.stdlib_module_names) - {"rewind"}


# import name -> distribution name, where they differ
DIST = {"cv2": "opencv-python-headless", "yaml": "pyyaml", "sklearn": "scikit-learn", "ale_py": "ale-py",
        "stable_baselines3": "stable-baselines3", "sb3_contrib": "sb3-contrib"}


def test_every_imported_package_is_declared_and_every_extra_is_used():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")

    def names(block: str) -> set[str]:
        return {line.split(">")[0].split("=")[0].split("[")[0].strip().lower()
                for line in block.strip().splitlines() if line.strip()}

    base = names(cfg["options"]["install_requires"])
    extras = {k: names(v) for k, v in cfg["options.extras_require"].items()}
    declared = base | set().union(*extras.values())
    from rewind.bench.peers import PEERS   # peers are imported by name

    modules = third_party_imports() | {spec.split(":")[0] for spec in PEERS.values()}
    imported = {DIST.get(m, m).lower() for m in modules}
    assert imported - declared == set()                       # peers named by string count too (bench/peers.py)
    for extra, pkgs in extras.items():
        if extra != "test":
            assert pkgs & imported, f"extra [{extra}] installs nothing the code imports"
