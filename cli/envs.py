"""`rewind envs`: list the env ids rewind can make, by family."""

from __future__ import annotations

def register(sub) -> None:
    p = sub.add_parser("envs", help="list the env ids rewind can make")
    p.add_argument("--kind", choices=["all", "atari", "minatar", "gym", "rewind"], default="all",
                   help="only this family")
    p.set_defaults(func=_cmd_envs)


def _cmd_envs(args) -> int:
    from rewind.envs import list_env_ids
    from rewind.envs.atari import atari_names
    from rewind.envs.minatar import minatar_ids

    ids = list_env_ids()
    groups = {
        "atari": [f"{k:20s} {v}" for k, v in sorted(atari_names().items())],
        "minatar": minatar_ids(),
        "rewind": [i for i in ids if i.startswith("rewind/")],
    }
    groups["gym"] = [i for i in ids if i not in set(atari_names()) | set(atari_names().values())
                     and i not in groups["minatar"] and i not in groups["rewind"]]
    for kind, items in groups.items():
        if args.kind in ("all", kind):
            print(f"# {kind} ({len(items)})")
            print("\n".join(items))
    return 0
