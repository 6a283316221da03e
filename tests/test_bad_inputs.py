"""Every subcommand refuses bad input with one line and exit code 2, and leaves the disk alone.

The table is bench/studies/bad_inputs.py (the same cases measure older checkouts there); here
each case runs in-process through `rewind.cli.main` in a fresh folder that is snapshot before
and after: a case passes only as "clear" (code 2, one stderr line, no traceback, nothing
created or changed, the crafted checkpoint's payload never ran).
"""

from __future__ import annotations

import contextlib
import io
import os
import traceback

import pytest

from rewind.bench.studies.bad_inputs import CASES, TRAIN_GOOD, classify, make_workdir, snapshot
from rewind.cli import main


def run_cli(argv, cwd):
    err = io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                return main(list(argv)), err.getvalue(), False
            except SystemExit as exc:
                return (exc.code if isinstance(exc.code, int) else 2), err.getvalue(), False
            except Exception:  # noqa: BLE001 - an exception out of main is the failure being tested
                return None, err.getvalue() + traceback.format_exc(), True
    finally:
        os.chdir(old)


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    cache = tmp_path_factory.mktemp("good")
    rc, err, _ = run_cli(TRAIN_GOOD, cache)
    assert rc == 0, err
    return cache / "good"


def test_the_table_covers_every_subcommand_with_40_cases():
    from rewind.cli import COMMANDS

    assert len(CASES) >= 40
    names = {m.rsplit(".", 1)[1].replace("_", "-") for m in COMMANDS}
    assert names <= {argv[0] for _, argv in CASES}


@pytest.mark.parametrize("name,argv", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_on_disk_changes(name, argv, good_run, tmp_path):
    work = tmp_path / "w"
    make_workdir(work, good_run)
    before = snapshot(tmp_path)
    rc, err, crashed = run_cli(argv, work)
    after = snapshot(tmp_path)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not (work / "PWNED").exists(), "the crafted checkpoint's payload ran"
    assert classify(rc, err, changed, crashed) == "clear", (rc, err, changed)
    assert err.startswith("rewind: error: "), err
