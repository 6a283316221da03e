"""One exception type for every user-facing error.

The CLI prints a RewindError as one line and exits with code 2; anything else is a bug.
"""


class RewindError(Exception):
    """A problem with the user's input (env id, config key, checkpoint, ...), with what to do."""


def exit_code(call) -> int:
    """Run a command function; a RewindError becomes one line on stderr and exit code 2."""
    import sys

    try:
        return int(call() or 0)
    except RewindError as exc:
        print(f"rewind: error: {exc}", file=sys.stderr)
        return 2


def standalone_main(register, argv=None) -> int:
    """`python -m rewind.<x>_cli ...`: the same subcommand `register` adds to `rewind`, run on its own."""
    import argparse

    parser = argparse.ArgumentParser(prog="rewind")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return exit_code(lambda: args.func(args))


def require(module: str, extra: str, what: str):
    """Import optional package `module`, or raise one line naming the rewind-rl extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise RewindError(f"{what} needs {module.split('.')[0]}: pip install 'rewind-rl[{extra}]'") from None
