"""`rewind bench report DIR`: per-game table, normalised aggregates with 95% CIs, plots, one Markdown file.

Score of a run = the mean return of its last evaluation (the suite's protocol: episodes,
epsilon, step cap), normalised per game: human-normalised for Atari games, with the suite's
{random, reference} for the other envs (bench/scores.py). Aggregates over runs x games
follow rliable's definitions with stratified-bootstrap CIs (bench/stats.py). Envs without
reference scores appear in the per-game table but not in the aggregates; the report says so.

Writes into DIR: report.md, report.json (every number in the report), curves.png
(IQM of normalised score vs frames, 95% band), profiles.png (performance profiles),
per_game.png (raw evaluation return vs frames per game: mean over seeds, band from the lowest to the highest seed).

A suite with `report: {metric: relative_length, threshold: T}` (digit maze) leads with the relative
length = evaluation episode length / the shortest path of the run's maze: per env and agent the
env steps until it first reaches <= T (median over seeds, seeds that got there), the final
relative length (mean, 95% t interval), and relative_length.png (median over seeds, IQR band).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from rewind.files import atomic_write_json, atomic_write_text
from rewind.bench import stats
from rewind.bench.runner import read_manifest, read_status, run_dir
from rewind.bench.store import read_result, stale_files
from rewind.bench.scores import normalize, reference_for
from rewind.errors import RewindError, require


def collect(out: Path) -> dict:
    """Everything the report needs from a results folder: suite, finished runs' curves, missing runs."""
    from rewind.bench.suite import build_suite

    out = Path(out)
    manifest = read_manifest(out)
    suite = build_suite(manifest["suite"], default_name=manifest.get("name", "suite"), validate=False)
    curves, missing, failed, stale = {}, [], [], []
    for spec in suite.runs:
        stored = read_result(out, spec.run_id)   # committed result files suffice: no run directory needed
        if stored is not None and stored.get("curve"):
            curves.setdefault(spec.label, {}).setdefault(spec.env, {})[spec.seed] = stored["curve"]
            changed = stale_files(stored)
            if changed:
                stale.append({"run_id": spec.run_id, "commit": stored.get("commit"), "changed": changed[:5]})
            continue
        path = run_dir(out, spec.run_id)
        status = read_status(path) or {}
        if status.get("state") != "done":
            (failed if status.get("state") == "failed" else missing).append(
                {"run_id": spec.run_id, "error": status.get("error")})
            continue
        try:
            evals = json.loads((path / "evaluations.json").read_text())
        except (OSError, ValueError):
            missing.append({"run_id": spec.run_id, "error": "no evaluations.json"})
            continue
        if not evals:
            missing.append({"run_id": spec.run_id, "error": "no evaluation"})
            continue
        curves.setdefault(spec.label, {}).setdefault(spec.env, {})[spec.seed] = evals
    return {"suite": suite, "curves": curves, "missing": missing, "failed": failed, "stale": stale}


def _fmt(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.0f}" if abs(x) >= 1000 else f"{x:.{digits}f}"


def _ci_text(point, lo, hi) -> str:
    return f"{point:.3f} [{lo:.3f}, {hi:.3f}]"


def build_report(out: str | Path, reps: int = 2000, seed: int = 0, plots: bool = True) -> dict:
    """Compute the report of results folder `out`, write report.md/json and PNGs; returns report.json's dict."""
    out = Path(out)
    data = collect(out)
    suite, curves = data["suite"], data["curves"]
    if not curves:
        raise RewindError(f"{out} has no finished runs yet; run `rewind bench run` first")
    labels = [a for a in suite.agents if a in curves]
    refs = {env: reference_for(env, suite.scores) for env in suite.envs}
    norm_envs = [e for e in suite.envs if refs[e] is not None]

    # final scores
    raw = {a: {e: np.array([ev[-1]["return_mean"] for _, ev in sorted(curves[a].get(e, {}).items())])
               for e in suite.envs if curves[a].get(e)} for a in labels}
    normed = {a: {e: normalize(raw[a][e], *refs[e][:2]) for e in norm_envs if e in raw[a]} for a in labels}
    per_game = {e: {a: {"raw_mean": float(raw[a][e].mean()), "raw_std": float(raw[a][e].std()),
                        "n": int(raw[a][e].size),
                        "norm_mean": float(normed[a][e].mean()) if e in normed[a] else None}
                    for a in labels if e in raw[a]} for e in suite.envs}

    # aggregates: only agents that finished every normalised env, so all aggregate the same games
    agg_labels = [a for a in labels if norm_envs and all(e in normed[a] for e in norm_envs)]
    aggregates = {a: stats.aggregate_with_ci(normed[a], reps=reps, seed=seed) for a in agg_labels}
    poi = {}
    for a in agg_labels:
        for b in agg_labels:
            if a != b:
                poi[f"{a} > {b}"] = stats.poi_with_ci(normed[a], normed[b], reps=reps, seed=seed)

    # IQM vs frames: evaluation points every run of the agent has, on the normalised envs
    curve_data = {}
    for a in agg_labels:
        runs = [ev for e in norm_envs for ev in curves[a][e].values()]
        steps = sorted(set.intersection(*[{x["step"] for x in ev} for ev in runs]))
        points = []
        for st in steps:
            at = {e: normalize([next(x for x in ev if x["step"] == st)["return_mean"]
                                for ev in curves[a][e].values()], *refs[e][:2]) for e in norm_envs}
            frames = next(x for x in runs[0] if x["step"] == st)["frames"]
            point, lo, hi = stats.iqm_with_ci(at, reps=min(reps, 1000), seed=seed)
            points.append({"step": st, "frames": frames, "iqm": point, "lo": lo, "hi": hi})
        curve_data[a] = points

    profiles = {}
    if agg_labels:
        allv = np.concatenate([np.concatenate(list(normed[a].values())) for a in agg_labels])
        taus = np.linspace(min(0.0, allv.min()), max(1.0, allv.max()), 41)
        for a in agg_labels:
            prof, ci = stats.performance_profile(normed[a], taus, reps=min(reps, 1000), seed=seed)
            profiles[a] = {"taus": taus.tolist(), "profile": prof.tolist(), "lo": ci[0].tolist(), "hi": ci[1].tolist()}

    metric = (suite.report or {}).get("metric", "return")
    rel = relative_length_table(suite, curves, float(suite.report["threshold"]), suite.report.get("baseline")) \
        if metric == "relative_length" else None
    published = _published(suite, per_game, labels, refs)
    result = {
        "published": published,
        "suite": suite.name, "description": suite.description, "runs": len(suite.runs),
        "finished": sum(len(s) for a in curves.values() for s in a.values()),
        "missing": data["missing"], "failed": data["failed"], "stale": data["stale"],
        "normalisation": {e: ({"kind": refs[e][2], "random": refs[e][0], "reference": refs[e][1]}
                              if refs[e] else None) for e in suite.envs},
        "per_game": per_game, "aggregates": {a: {m: list(v) for m, v in agg.items()} for a, agg in aggregates.items()},
        "probability_of_improvement": {k: list(v) for k, v in poi.items()},
        "iqm_curves": curve_data, "profiles": profiles, "bootstrap_reps": reps,
    }
    if rel is not None:
        result["relative_length"] = rel
    atomic_write_json(out / "report.json", result)
    pngs = _plots(out, suite, curves, labels, curve_data, profiles) if plots else []
    if plots and rel is not None:
        pngs.insert(0, _plot_relative_length(out, suite, rel))
    atomic_write_text(out / "report.md", _markdown(result, suite, labels, agg_labels, norm_envs, pngs))
    return result


def _shortest_path(spec, cache: dict) -> int:
    """Shortest start-goal path of the maze a run trained on (its layout depends on its env config only)."""
    from rewind.bench.suite import resolve_run
    from rewind.envs import make_env

    cfg = resolve_run(spec).env_config
    key = (spec.env, json.dumps(cfg, sort_keys=True, default=str))
    if key not in cache:
        env = make_env(spec.env, cfg)
        cache[key] = int(env.unwrapped.shortest_path)
        env.close()
    return cache[key]


def steps_to_threshold(steps, rel, threshold: float) -> float:
    """First evaluation step whose relative length is <= threshold (inf if none)."""
    return next((float(s) for s, r in zip(steps, rel) if r <= threshold), float("inf"))


def relative_length_table(suite, curves: dict, threshold: float, baseline: str | None = None) -> dict:
    """{env: {label: summary}} of relative length curves (evaluation length / shortest path) per run.

    With a baseline label: each label's median steps to the threshold / the baseline's; when the
    baseline never got there in the run length, only an upper bound (its steps taken as the run length).
    """
    cache, table = {}, {}
    specs = {(s.label, s.env, s.seed): s for s in suite.runs}
    for env in suite.envs:
        for label in suite.agents:
            runs = curves.get(label, {}).get(env, {})
            seeds, per_seed, hit, last = [], [], [], 0
            for seed, ev in sorted(runs.items()):
                if any(e.get("length_mean") is None for e in ev):
                    continue   # a result written before lengths were stored: rerun it
                shortest = _shortest_path(specs[(label, env, seed)], cache)
                steps = [e["step"] for e in ev]
                rel = [e["length_mean"] / shortest for e in ev]
                seeds.append(seed)
                per_seed.append({"seed": seed, "shortest_path": shortest, "steps": steps, "relative_length": rel})
                hit.append(steps_to_threshold(steps, rel, threshold))
                last = max(last, steps[-1])
            if not seeds:
                continue
            final = [r["relative_length"][-1] for r in per_seed]
            mean, half = stats.t_interval(final)
            table.setdefault(env, {})[label] = {
                "seeds": seeds, "threshold": threshold, "steps_to_threshold": hit,
                "median_steps_to_threshold": float(np.median(hit)), "reached": int(np.isfinite(hit).sum()),
                "last_step": last, "final_mean": mean, "final_ci95": half, "final_median": float(np.median(final)),
                "runs": per_seed}
    for rows in table.values():
        base = rows.get(baseline)
        for label, d in rows.items():
            if base is None or label == baseline:
                continue
            b, mine = base["median_steps_to_threshold"], d["median_steps_to_threshold"]
            censored = not np.isfinite(b)
            d["ratio_to_baseline"] = mine / (base["last_step"] if censored else b)
            d["ratio_is_upper_bound"] = censored
    return table


def _published(suite, per_game: dict, labels: list[str], refs: dict) -> dict | None:
    """rewind's per-game means beside a published table for the same games, and the published
    methods' median normalised score over those games, normalised as the report normalises ours
    (Atari: human; MinAtar: the suite's random and reference), so the comparison is like for like."""
    name = (suite.report or {}).get("published")
    if not name:
        return None
    from rewind.bench.scores import published_game, published_scores

    table = published_scores(name)
    games = {e: published_game(e) for e in suite.envs}
    rows = []
    for env, game in games.items():
        if game is None:
            continue
        ours = {a: per_game.get(env, {}).get(a, {}).get("raw_mean") for a in labels}
        rows.append({"env": env, **{f"rewind {a}": v for a, v in ours.items()},
                     **{m: scores.get(game) for m, scores in table.items()}})
    medians = {}
    for m, scores in table.items():
        normed = [float(normalize(scores[g], *refs[e][:2])) for e, g in games.items() if g in scores and refs[e]]
        medians[m] = float(np.median(normed)) if normed else None
    return {"table": name, "rows": rows, "median_normalized_same_games": medians}


def _markdown(r: dict, suite, labels, agg_labels, norm_envs, pngs) -> str:
    kinds = {v["kind"] for v in r["normalisation"].values() if v}
    score_name = "human-normalized" if kinds == {"human"} else "normalized"
    lines = [f"# Benchmark report: {suite.name}", ""]
    if suite.description:
        lines += [suite.description.strip(), ""]
    lines += [f"{r['finished']} of {r['runs']} runs finished; agents: {', '.join(suite.agents)}; "
              f"{len(suite.envs)} envs; score of a run = mean return of its last evaluation"
              + ("; headline metric: the relative length (next section)." if r.get("relative_length") else "."), ""]
    if r["failed"] or r["missing"]:
        lines += ["Not in this report:", ""]
        lines += [f"- {m['run_id']}: failed: {m['error']}" for m in r["failed"]]
        lines += [f"- {m['run_id']}: {m['error'] or 'not finished'}" for m in r["missing"]]
        lines.append("")
    if r.get("relative_length"):
        rl = r["relative_length"]
        threshold = next(iter(next(iter(rl.values())).values()))["threshold"]
        base = (suite.report or {}).get("baseline")
        lines += ["## Relative length", "",
                  f"Relative length = greedy evaluation episode length / the maze's shortest path (1 = optimal). "
                  f"Steps to {threshold:g}: the first evaluation at which it is <= {threshold:g}; median over "
                  "seeds, where a seed that never got there counts as infinite (so a median can be \"> last step\"); "
                  "reached = seeds that got there. Final: mean [95% t interval] over seeds at the last evaluation.", "",
                  f"| env | agent | median steps to {threshold:g} | reached | final relative length |"
                  + (f" steps / {base}'s |" if base else ""),
                  "|---|---|---:|---:|---:|" + ("---:|" if base else "")]
        for env, rows in rl.items():
            for label, d in rows.items():
                med = d["median_steps_to_threshold"]
                med_text = f"{med:,.0f}" if np.isfinite(med) else f"> {d['last_step']:,}"
                ci = f" [{d['final_mean'] - d['final_ci95']:.2f}, {d['final_mean'] + d['final_ci95']:.2f}]" \
                    if np.isfinite(d["final_ci95"]) else ""
                ratio = ""
                if base:
                    x = d.get("ratio_to_baseline")
                    ratio = (" - |" if x is None or not np.isfinite(x)
                             else f" {'<' if d['ratio_is_upper_bound'] else ''}{x:.2f} |")
                lines.append(f"| {env} | {label} | {med_text} | {d['reached']}/{len(d['seeds'])} | "
                             f"{d['final_mean']:.2f}{ci} |{ratio}")
        if base:
            lines += ["", f"Steps / {base}'s: the ratio of median steps to {threshold:g}; '<' when {base} never got "
                      "there within the run (its steps taken as the run length, so the ratio is an upper bound)."]
        lines.append("")
    if r.get("published"):
        pub = r["published"]
        cols = [c for c in pub["rows"][0] if c != "env"] if pub["rows"] else []
        lines += [f"## Beside published results ({pub['table']})", "",
                  "Mean final score per game: rewind's at this suite's budget, the published columns at "
                  f"theirs, measured as their sources say (`bench/data/{pub['table']}_published.md`).", "",
                  "| game | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        lines += ["| " + row["env"] + " | " + " | ".join(_fmt(row[c], 1) for c in cols) + " |" for row in pub["rows"]]
        lines += ["", f"Published median {score_name} score over these games: " + ", ".join(
            f"{m} {_fmt(v)}" for m, v in pub["median_normalized_same_games"].items()), ""]
    if r.get("stale"):
        lines += [f"**Stale:** {len(r['stale'])} result(s) ran at a commit whose learning code has changed since "
                  "(git diff over agents/, buffers/, envs/, run/, configs/); rerun them to confirm:", ""]
        lines += [f"- {s['run_id']} at {str(s['commit'])[:10]}: {', '.join(s['changed'])}" for s in r["stale"]]
        lines.append("")
    lines += ["## Aggregates", ""]
    if agg_labels:
        lines += [f"{score_name.capitalize()} scores over {len(norm_envs)} envs x runs; point estimate "
                  f"[95% stratified-bootstrap CI, {r['bootstrap_reps']} replicates]. Optimality gap: lower is better.",
                  "", "| agent | IQM | median | mean | optimality gap |", "|---|---|---|---|---|"]
        for a in agg_labels:
            agg = r["aggregates"][a]
            lines.append(f"| {a} | " + " | ".join(_ci_text(*agg[m]) for m in stats.METRICS) + " |")
        lines.append("")
        if r["probability_of_improvement"]:
            lines += ["Probability of improvement P(X > Y) [95% CI]:", "", "| X > Y | P | 95% CI |", "|---|---|---|"]
            for k, (p, lo, hi) in r["probability_of_improvement"].items():
                lines.append(f"| {k} | {p:.3f} | [{lo:.3f}, {hi:.3f}] |")
            lines.append("")
    else:
        lines += ["No aggregate: no env has reference scores, or no agent finished all of them.", ""]
    no_ref = [e for e in suite.envs if r["normalisation"][e] is None]
    if no_ref:
        lines += [f"Without reference scores (per-game table only): {', '.join(no_ref)}.", ""]
    lines += ["## Per game", "", "Final evaluation return, mean +- std over seeds (n); normalized score in brackets.", "",
              "| env | random | reference | " + " | ".join(labels) + " |", "|---|---|---|" + "---|" * len(labels)]
    for e in suite.envs:
        ref = r["normalisation"][e]
        cells = []
        for a in labels:
            g = r["per_game"][e].get(a)
            if g is None:
                cells.append("-")
                continue
            norm = f" ({g['norm_mean']:.3f})" if g["norm_mean"] is not None else ""
            cells.append(f"{_fmt(g['raw_mean'])} +- {_fmt(g['raw_std'])} (n={g['n']}){norm}")
        lines.append(f"| {e} | {_fmt(ref['random']) if ref else '-'} | "
                     f"{(_fmt(ref['reference']) + (' (human)' if ref['kind'] == 'human' else '')) if ref else '-'} | " + " | ".join(cells) + " |")
    lines.append("")
    if pngs:
        lines += ["## Plots", ""]
        titles = {"curves.png": "IQM of normalized score vs frames (95% CI band)",
                  "profiles.png": "Performance profiles (fraction of runs above tau, 95% CI)",
                  "per_game.png": "Evaluation return vs frames per game (mean over seeds; band: lowest to highest seed)",
                  "relative_length.png": "Relative length vs env steps (median over seeds, band: IQR; log scale)"}
        for p in pngs:
            lines += [f"### {titles[p]}", "", f"![{p}]({p})", ""]
    lines += ["Per-run TensorBoard logs: `tensorboard --logdir runs` in this folder.", ""]
    return "\n".join(lines)


def _plot_relative_length(out: Path, suite, rel: dict) -> str:
    matplotlib = require("matplotlib", "bench", "plotting")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = [e for e in suite.envs if e in rel]
    fig, axes = plt.subplots(1, len(envs), figsize=(4.2 * len(envs), 3.6), squeeze=False)
    for ax, env in zip(axes[0], envs):
        threshold = None
        for label, d in rel[env].items():
            n = min(len(r["steps"]) for r in d["runs"])
            x = np.asarray(d["runs"][0]["steps"][:n])
            y = np.array([r["relative_length"][:n] for r in d["runs"]])
            line, = ax.plot(x, np.median(y, axis=0), label=f"{label} (n={len(y)})")
            ax.fill_between(x, np.percentile(y, 25, axis=0), np.percentile(y, 75, axis=0),
                            color=line.get_color(), alpha=0.12)
            threshold = d["threshold"]
        ax.axhline(threshold, color="k", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_title(env, fontsize=9)
        ax.set_xlabel("env steps")
        ax.set_ylabel("relative length (median, IQR)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "relative_length.png", dpi=100)
    plt.close(fig)
    return "relative_length.png"


def _plots(out: Path, suite, curves, labels, curve_data, profiles) -> list[str]:
    matplotlib = require("matplotlib", "bench", "plotting")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if curve_data:
        fig, ax = plt.subplots(figsize=(6, 4))
        for a, pts in curve_data.items():
            if not pts:
                continue
            x = [p["frames"] for p in pts]
            ax.plot(x, [p["iqm"] for p in pts], label=a)
            ax.fill_between(x, [p["lo"] for p in pts], [p["hi"] for p in pts], alpha=0.2)
        ax.set_xlabel("frames")
        ax.set_ylabel("IQM normalized score")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "curves.png", dpi=100)
        plt.close(fig)
        written.append("curves.png")
    if profiles:
        fig, ax = plt.subplots(figsize=(6, 4))
        for a, p in profiles.items():
            ax.plot(p["taus"], p["profile"], label=a)
            ax.fill_between(p["taus"], p["lo"], p["hi"], alpha=0.2)
        ax.set_xlabel("normalized score tau")
        ax.set_ylabel("fraction of runs with score > tau")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "profiles.png", dpi=100)
        plt.close(fig)
        written.append("profiles.png")
    n = len(suite.envs)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.5 * cols, 2.8 * rows), squeeze=False)
    for ax, env in zip(axes.ravel(), suite.envs):
        for a in labels:
            runs = list(curves[a].get(env, {}).values())
            if not runs:
                continue
            steps = sorted(set.intersection(*[{x["step"] for x in ev} for ev in runs]))
            x = [next(e for e in runs[0] if e["step"] == s)["frames"] for s in steps]
            per_seed = np.array([[next(e for e in ev if e["step"] == s)["return_mean"] for s in steps] for ev in runs])
            line, = ax.plot(x, per_seed.mean(0), label=f"{a} (n={len(runs)})")
            if len(runs) > 1:   # the seeds' band: lowest to highest seed at each evaluation
                ax.fill_between(x, per_seed.min(0), per_seed.max(0), color=line.get_color(), alpha=0.2)
        ax.set_title(env, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    if axes.ravel()[0].get_legend_handles_labels()[0]:
        axes.ravel()[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "per_game.png", dpi=90)
    plt.close(fig)
    written.append("per_game.png")
    return written
