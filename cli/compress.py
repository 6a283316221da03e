"""`rewind compress`: Deep Compression of a trained DQN/EBU checkpoint into one .rwz file.

    rewind compress runs/breakout/checkpoint.pt --prune 0.9 --bits 5
    rewind compress runs/breakout --prune 0.9 --conv-prune 0.5 --output-prune 0.5   # prune small layers less
    rewind compress runs/breakout --prune 0.8 --bits 4 --retrain-steps 4000 --out small.rwz
    rewind eval small.rwz --episodes 100

Prints the size after each stage (bytes and ratio to the dense fp32 network) and the
evaluation return before and after each retraining phase, writes the file and a JSON
summary next to it (same name, .json). The stages are described in rewind.transfer.compress.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rewind.errors import RewindError


def register(subparsers) -> None:
    p = subparsers.add_parser("compress", help="Deep Compression (prune, quantise, Huffman) of a DQN/EBU checkpoint",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="checkpoint.pt written by `rewind train` (with its replay memory), or its run dir")
    p.add_argument("--prune", type=float, default=0.9,
                   help="fraction of each layer's weights removed, in [0, 1) (default 0.9); with --prune-mode std "
                        "the threshold is this many standard deviations of the layer's weights")
    p.add_argument("--conv-prune", type=float, default=None, help="the same for conv layers (default: --prune)")
    p.add_argument("--output-prune", type=float, default=None,
                   help="the same for the last weight matrix, the Q-value head (default: --prune)")
    p.add_argument("--prune-mode", choices=["fraction", "std"], default="fraction",
                   help="fraction: remove that fraction per layer (default); std: remove |w| < prune x std (paper)")
    p.add_argument("--bits", type=int, default=5, help="cluster-index bits of fc layers, 1..16 (default 5, as paper)")
    p.add_argument("--conv-bits", type=int, default=8, help="cluster-index bits of conv layers, 1..16 (default 8)")
    p.add_argument("--gap-bits-fc", type=int, default=5, help="sparse index-gap bits of fc layers (default 5)")
    p.add_argument("--gap-bits-conv", type=int, default=8, help="sparse index-gap bits of conv layers (default 8)")
    p.add_argument("--retrain-steps", type=int, default=2000,
                   help="TD gradient steps retraining the pruned net on the checkpoint's replay (default 2000)")
    p.add_argument("--finetune-steps", type=int, default=1000,
                   help="TD gradient steps fine-tuning the shared centroids (default 1000)")
    p.add_argument("--lr-scale", type=float, default=1.0,
                   help="retraining / fine-tuning learning rate as a multiple of the agent's (default 1.0)")
    p.add_argument("--episodes", type=int, default=100,
                   help="evaluation episodes before and after each stage, fixed seeds (default 100; 0 skips)")
    p.add_argument("--eval-seed", type=int, default=12345, help="seed of the evaluation episodes (default: as "
                   "`rewind eval`, so `rewind eval OUT --episodes N` reproduces the last return)")
    p.add_argument("--seed", type=int, default=0, help="seed of minibatch sampling in retraining (default 0)")
    p.add_argument("--out", default=None, help="output file (default: model.rwz beside the checkpoint)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: small nets gain nothing more)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=run)


def default_out(checkpoint: str) -> Path:
    path = Path(checkpoint)
    return (path if path.is_dir() else path.parent) / "model.rwz"


def format_table(report: dict) -> str:
    """Stage table: bytes, ratio to dense, evaluation return without and with (re)training."""
    sizes, evals = report["sizes"], report["evals"]
    dense = sizes["dense"]

    def ret(key):
        e = evals.get(key)
        return f"{e['return_mean']:.2f} +- {e['return_std']:.2f}" if e else "-"

    s = report["settings"]
    conv = s["conv_prune"] if s["conv_prune"] is not None else s["prune"]
    head = s["output_prune"] if s["output_prune"] is not None else s["prune"]
    rows = [
        ("dense fp32", sizes["dense"], ret("dense"), ""),
        (f"pruned ({s['prune_mode']} {s['prune']:g}/conv {conv:g}/head {head:g}), fp32+gaps", sizes["pruned"],
         ret("pruned"), ret("retrained")),
        (f"quantised ({s['bits']}/conv {s['conv_bits']} bits)", sizes["quantised"], ret("quantised"),
         ret("finetuned")),
        ("huffman coded", sizes["huffman"], "", ret("finetuned")),
        (f"file {Path(report['out']).name}", sizes["file"], "", ""),
    ]
    n = report["eval"]["episodes"]
    head = f"{'stage':52s} {'bytes':>9s} {'ratio':>7s}  {'return before':>14s}  {'after training':>14s}"
    lines = [head, "-" * len(head)]
    for name, size, before, after in rows:
        lines.append(f"{name:52s} {size:9,d} {dense / size:6.1f}x  {before:>14s}  {after:>14s}")
    lines.append(f"(return: mean +- std over {n} episodes, seeds from {report['eval']['seed']}, "
                 f"epsilon {report['eval']['epsilon']}; retrain {s['retrain_steps']}, fine-tune "
                 f"{s['finetune_steps']} TD steps)")
    return "\n".join(lines)


def run(args) -> int:
    import torch

    from rewind.files import atomic_write_json, writable_file
    from rewind.transfer.compress import CompressConfig, compress_checkpoint

    if args.threads < 1:
        raise RewindError("--threads must be >= 1")
    if args.episodes < 0:
        raise RewindError("--episodes must be >= 0")
    if args.seed < 0 or args.eval_seed < 0:
        raise RewindError("--seed and --eval-seed must be >= 0")
    torch.set_num_threads(args.threads)
    cfg = CompressConfig(prune=args.prune, conv_prune=args.conv_prune, output_prune=args.output_prune,
                         prune_mode=args.prune_mode, bits=args.bits,
                         conv_bits=args.conv_bits, gap_bits_fc=args.gap_bits_fc, gap_bits_conv=args.gap_bits_conv,
                         retrain_steps=args.retrain_steps, finetune_steps=args.finetune_steps,
                         lr_scale=args.lr_scale, seed=args.seed).validate()
    out = Path(args.out) if args.out else default_out(args.checkpoint)
    if out.suffix == ".json":
        raise RewindError("--out is the model file; the JSON summary is written beside it")
    writable_file(out, "--out")
    report = compress_checkpoint(args.checkpoint, out, cfg, episodes=args.episodes, eval_seed=args.eval_seed,
                                 progress=not args.no_progress)
    atomic_write_json(out.with_suffix(".json"), report)
    print(format_table(report))
    print(f"wrote {out} ({report['sizes']['file']:,d} bytes) and {out.with_suffix('.json')}")
    return 0
