"""`rewind convert-checkpoint FILE --trust`: rewrite a checkpoint of an older rewind as plain data.

Older checkpoints pickled numpy arrays and the env, and unpickling can run any code the file
holds, so rewind now refuses them. This command unpickles one file you trust (once, with
--trust) and writes it back, atomically and in place, as tensors and plain containers that
every other command loads with torch.load(weights_only=True).
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("convert-checkpoint", help="convert an older (pickled) checkpoint you trust to data",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="checkpoint.pt (or its run directory) written by an older rewind")
    p.add_argument("--trust", action="store_true",
                   help="required: the file is unpickled, which runs any code in it; use only on files you trust")
    p.set_defaults(func=run)


def run(args) -> int:
    from rewind.run.checkpoint import convert_checkpoint

    path = convert_checkpoint(args.checkpoint, args.trust)
    print(f"rewind: converted {path} to plain data; it now loads without unpickling")
    return 0
