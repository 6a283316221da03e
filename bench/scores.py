"""Reference scores and normalisation: human-normalized for Atari, reference-normalized otherwise.

Human-normalized score = (score - random) / (human - random), with the 57-game random and
human table of DQN Zoo (bench/data/atari_human_random.csv; docs/benchmarking.md). Envs that
are not Atari games (CartPole, MinAtar, the digit maze) have no human score: a suite gives
them a `scores:` entry {random: R, reference: H} and the same formula is applied, so one
aggregate can span them; the report says which normalisation each game used.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import numpy as np

from rewind.errors import RewindError

TABLE = Path(__file__).resolve().parent / "data" / "atari_human_random.csv"


@functools.lru_cache(maxsize=1)
def atari_table() -> dict[str, dict]:
    """{game: {"random": float, "human": float, "atari100k": bool}} for the 57 games."""
    with open(TABLE, newline="") as f:
        return {row["game"]: {"random": float(row["random"]), "human": float(row["human"]),
                              "atari100k": row["in_atari100k"].strip() == "1"} for row in csv.DictReader(f)}


def atari100k_games() -> list[str]:
    return [g for g, row in atari_table().items() if row["atari100k"]]


# Nature DQN's 49 games (Mnih et al. 2015), the EBU paper's evaluation set: the 57 less these 8.
_NOT_IN_NATURE_49 = ("berzerk", "defender", "phoenix", "pitfall", "skiing", "solaris", "surround", "yars_revenge")


def nature49_games() -> list[str]:
    return [g for g in atari_table() if g not in _NOT_IN_NATURE_49]


def atari_game(env: str) -> str | None:
    """The table's game key for an Atari env name ('pong', 'ALE/Pong-v5' -> 'pong'), else None."""
    from rewind.envs.atari import _short, resolve_atari_id

    if env.lower().startswith("minatar"):
        return None
    ale_id = resolve_atari_id(env)
    if ale_id is None:
        return None
    game = _short(ale_id)
    return game if game in atari_table() else None


def reference_for(env: str, suite_scores: dict | None = None) -> tuple[float, float, str] | None:
    """(low, high, kind) for normalising `env`: the suite's own entry wins, then the Atari table."""
    if suite_scores and env in suite_scores:
        entry = suite_scores[env]
        return float(entry["random"]), float(entry["reference"]), "reference"
    game = atari_game(env)
    if game is not None:
        row = atari_table()[game]
        return row["random"], row["human"], "human"
    return None


def normalize(score, low: float, high: float):
    """(score - low) / (high - low), elementwise."""
    if high == low:
        raise RewindError(f"reference scores must differ (random {low} == reference {high})")
    return (np.asarray(score, dtype=np.float64) - low) / (high - low)


def validate_suite_scores(scores) -> dict:
    """Check a suite's `scores:` section: {env: {random: number, reference: number}}."""
    if scores is None:
        return {}
    if not isinstance(scores, dict):
        raise RewindError("suite `scores:` must map env names to {random: R, reference: H}")
    out = {}
    for env, entry in scores.items():
        if not isinstance(entry, dict) or set(entry) != {"random", "reference"}:
            raise RewindError(f"suite scores.{env} must be {{random: R, reference: H}}, got {entry!r}")
        try:
            low, high = float(entry["random"]), float(entry["reference"])
        except (TypeError, ValueError):
            raise RewindError(f"suite scores.{env}: random and reference must be numbers") from None
        if low == high:
            raise RewindError(f"suite scores.{env}: random and reference must differ")
        out[str(env)] = {"random": low, "reference": high}
    return out


PUBLISHED = {name: Path(__file__).resolve().parent / "data" / f"{name}_published.csv" for name in ("atari100k", "minatar")}


def published_game(env: str) -> str | None:
    """The game key of the published tables for an env: MinAtar games without their prefix
    ('minatar-breakout' -> 'breakout'), Atari games by their short name, else None."""
    if env.lower().startswith("minatar-"):
        return env[len("minatar-"):].lower()
    return atari_game(env)


def published_scores(name: str) -> dict[str, dict[str, float]]:
    """{method: {game: mean score}} of a published table (bench/data/<name>_published.csv; its .md
    names each column's source), for `report: {published: NAME}` in a suite."""
    from rewind.errors import RewindError

    if name not in PUBLISHED:
        raise RewindError(f"suite report.published: unknown table {name!r}; choose from: {', '.join(PUBLISHED)}")
    with open(PUBLISHED[name], newline="") as f:
        rows = list(csv.DictReader(f))
    methods = [c for c in rows[0] if c != "game"]
    return {m: {r["game"]: float(r[m]) for r in rows} for m in methods}
