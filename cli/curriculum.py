"""`rewind curriculum shapes|maze ...`: the curriculum experiments as a CLI subcommand.

The lead's cli.py calls `register(subparsers)`; each experiment keeps its own parser
(bench/studies/curriculum_shapes.py, bench/studies/curriculum_maze.py), so `python -m` and the CLI agree.
"""

from __future__ import annotations


def _shapes(args) -> int:
    from rewind.bench.studies import curriculum_shapes
    from pathlib import Path

    result = curriculum_shapes.run(args)
    print(curriculum_shapes.report(result, Path(args.out)))
    return 0


def _maze(args) -> int:
    from rewind.bench.studies import curriculum_maze

    return curriculum_maze.main(args.argv_rest)


def register(subparsers) -> None:
    from rewind.bench.studies import curriculum_shapes

    p = subparsers.add_parser("curriculum", help="curriculum experiments (Bengio switch epoch, maze TSCL)")
    sub = p.add_subparsers(dest="experiment", required=True)
    shapes = sub.add_parser("shapes", help="switch-epoch experiment on BasicShapes -> GeomShapes")
    curriculum_shapes.build_parser(shapes)
    shapes.set_defaults(func=_shapes)
    maze = sub.add_parser("maze", help="TSCL vs uniform vs hardest-only on the digit maze "
                                       "(options as python -m rewind.bench.studies.curriculum_maze)")
    maze.add_argument("argv_rest", nargs="*", help="options passed to the maze experiment")
    maze.set_defaults(func=_maze)
