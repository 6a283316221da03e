"""The `rewind` command line: one module per subcommand in this folder, each thin (parse, validate, call).

Every user error is a RewindError: printed as one line, exit code 2, nothing overwritten.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rewind.errors import exit_code

# Modules that add subcommands: each exposes register(subparsers) and sets func on its parser.
COMMANDS: list[str] = [
    "rewind.cli.train",       # rewind train --agent ebu --env breakout
    "rewind.cli.eval",        # rewind eval RUN --episodes 30
    "rewind.cli.envs",        # rewind envs --kind atari
    "rewind.cli.search",      # rewind search (ENAS / random search)
    "rewind.cli.curriculum",  # rewind curriculum shapes|maze
    "rewind.cli.bench",       # rewind bench run|report|list
    "rewind.cli.compress",    # rewind compress CHECKPOINT --prune 0.9 --bits 5
    "rewind.cli.distill",     # rewind distill TEACHER --student SIZE
    "rewind.cli.convert_checkpoint",  # rewind convert-checkpoint OLD.pt --trust
    "rewind.cli.tune",        # rewind tune --agent dqn --env minatar-breakout --trials 20 --study DIR
]


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (which command, what is wrong, where help is), exit code 2."""

    def error(self, message):
        self.exit(2, f"rewind: error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from rewind import __version__

    parser = OneLineParser(prog="rewind", description="rewind: EBU, DQN, ENAS and curriculum agents "
                                     "behind one interface. `rewind COMMAND --help` explains each command.")
    parser.add_argument("--version", action="version", version=f"rewind {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return exit_code(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
