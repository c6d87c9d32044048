"""Reports for `labkit batch`: every run's numbers (CSV + Markdown), seeds as mean +- std, plots, reference bands.

The bands themselves (finding, reading, judging) are in labkit.tools.bands.
"""
from __future__ import annotations

import math
import os
import statistics
from pathlib import Path
from typing import Any, Mapping, Sequence

from labkit._tables import flatten_numbers, format_value, markdown_table
from labkit.claims import aggregate, count_line, declarations_fingerprint, ledger_markdown, write_ledger_csv
from labkit.repro import cpu_signature
from labkit.sources import SETTINGS, cite
from labkit.tools.bands import band_verdict
from labkit.tools.reproductions import write_reports

__all__ = ["summarise", "run_rows", "headline_metrics",
           "plot_metric", "aggregate_claims", "claims_markdown", "publish_claims", "update_readme_claims",
           "resolve_share", "ledger_meta",
           "write_report"]

# ----------------------------------------------------------------------------------------------------------------
# Tables


def _is_number(value: Any) -> bool:
    """A finite int or float (bools are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (0 for a single value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(runs: list[dict], swept: Sequence[str], tier: str, bands: Mapping) -> list[dict]:
    """One row per (notebook, swept values except seed, metric): mean, std and n over seeds, plus the band check."""
    groups: dict[tuple, dict[str, list[float]]] = {}
    for run in runs:
        if run.get("status") != "done":
            continue
        key = (run["notebook"],) + tuple(_plain_key(run["parameters"].get(p)) for p in swept if p != "seed")
        for metric, value in flatten_numbers(run.get("numbers") or {}).items():
            if _is_number(value):
                groups.setdefault(key, {}).setdefault(metric, []).append(float(value))
    rows = []
    for key in sorted(groups, key=lambda k: tuple(str(v) for v in k)):
        notebook, values = key[0], key[1:]
        nb_bands = ((bands.get(notebook) or {}).get(tier) or {})
        for metric, numbers in groups[key].items():
            mean, std = _mean_std(numbers)
            rows.append({"notebook": notebook, **dict(zip([p for p in swept if p != "seed"], values)),
                         "metric": metric, "mean": mean, "std": std, "n": len(numbers),
                         "expected": band_verdict(mean, nb_bands.get(metric))})
    return rows


def _plain_key(value: Any) -> Any:
    """Make a parameter value usable as a dict key (lists become tuples)."""
    return tuple(value) if isinstance(value, list) else value


def run_rows(runs: list[dict], swept: Sequence[str], tier: str, bands: Mapping) -> list[dict]:
    """One flat row per run: id, status, swept parameters, every recorded number, flags for numbers outside bands."""
    rows = []
    for run in runs:
        numbers = flatten_numbers(run.get("numbers") or {})
        nb_bands = ((bands.get(run["notebook"]) or {}).get(tier) or {})
        flags = [f"{m}={format_value(numbers.get(m))} outside [{b[0]:g}, {b[1]:g}]"
                 for m, b in nb_bands.items() if m in numbers and band_verdict(numbers[m], b).startswith("OUTSIDE")]
        error = (run.get("error") or {}).get("message", "")
        rows.append({"run_id": run["run_id"], "notebook": run["notebook"], "status": run.get("status", "missing"),
                     **{p: run["parameters"].get(p) for p in swept}, **numbers,
                     "attempts": run.get("attempt"), "duration_s": run.get("duration_s"),
                     "flags": "; ".join(flags), "error": error})
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Plots


def headline_metrics(notebook: str, runs: list[dict], tier: str, bands: Mapping,
                     headline: Sequence[str] | None) -> list[str]:
    """Metrics to plot: the spec's `headline` list, else the ones with reference bands, else every numeric one."""
    recorded: list[str] = []
    for run in runs:
        for metric, value in flatten_numbers(run.get("numbers") or {}).items():
            if _is_number(value) and metric not in recorded:
                recorded.append(metric)
    if headline:
        return [m for m in headline if m in recorded]
    banded = [m for m in (((bands.get(notebook) or {}).get(tier)) or {}) if m in recorded]
    return banded or recorded[:12]  # a dozen plots is already more than anyone reads


def plot_metric(path: Path, notebook: str, metric: str, runs: list[dict], swept: Sequence[str], tier: str,
                band: Sequence[float] | None) -> None:
    """Plot one metric against the swept parameter (mean +- std over seeds), with the reference band shaded."""
    from matplotlib.figure import Figure  # the OO API needs no GUI backend and leaves pyplot state alone

    others = [p for p in swept if p != "seed"]
    x_param = others[0] if others else "seed"
    series: dict[tuple, dict[Any, list[float]]] = {}  # other swept values -> x -> values over seeds
    for run in runs:
        value = flatten_numbers(run.get("numbers") or {}).get(metric)
        if run.get("status") != "done" or not _is_number(value):
            continue
        label = tuple((p, run["parameters"].get(p)) for p in others[1:])
        x = _plain_key(run["parameters"].get(x_param))
        series.setdefault(label, {}).setdefault(x, []).append(float(value))
    xs_all = sorted({x for s in series.values() for x in s},
                    key=lambda v: (not _is_number(v), str(v) if not _is_number(v) else v))
    numeric_x = all(_is_number(x) for x in xs_all)
    fig = Figure(figsize=(5.5, 3.6), layout="constrained")
    ax = fig.add_subplot()
    if band is not None:
        ax.axhspan(band[0], band[1], color="tab:green", alpha=0.12, label=f"reference [{band[0]:g}, {band[1]:g}]")
    for label, points in sorted(series.items(), key=lambda kv: str(kv[0])):
        xs = sorted(points, key=lambda v: v if numeric_x else str(v))
        pos = xs if numeric_x else [xs_all.index(x) for x in xs]
        stats = [_mean_std(points[x]) for x in xs]
        name = ", ".join(f"{p}={v}" for p, v in label) or metric
        # seeds are not an ordered axis: points only; a swept knob is: connect them
        ax.errorbar(pos, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", capsize=3, label=name,
                    ls="none" if x_param == "seed" else "-")
        if x_param == "seed":
            ax.axhline(statistics.fmean(m for m, _ in stats), ls="--", lw=1, color="grey", label="mean over seeds")
    if not numeric_x:
        ax.set_xticks(range(len(xs_all)), [str(x) for x in xs_all])
    elif all(isinstance(x, int) for x in xs_all) and len(xs_all) <= 20:
        ax.set_xticks(xs_all)  # seeds and sizes are integers: no 0.25 ticks
    ax.set_xlabel(x_param)
    ax.set_ylabel(metric)
    over = "; mean ± std over seeds" if "seed" in swept and x_param != "seed" else ""
    ax.set_title(f"{notebook}: {metric} ({tier} tier{over})", fontsize=10)
    ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


# ----------------------------------------------------------------------------------------------------------------
# The report


def aggregate_claims(runs: list[dict], swept: Sequence[str]) -> list[dict]:
    """Every claim over the seeds of each (notebook, other swept values), judged with the one rule."""
    others = [p for p in swept if p != "seed"]
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        if run.get("status") != "done":
            continue
        key = (run["notebook"],) + tuple(_plain_key(run["parameters"].get(p)) for p in others)
        for claim in run.get("claims") or []:
            groups.setdefault(key + (claim["id"],), []).append(claim)
    rows = []
    for key, claim_runs in groups.items():
        row = aggregate(claim_runs)
        row["notebook"] = key[0]
        row.update(dict(zip(others, key[1:-1])))
        rows.append(row)
    return rows


def claims_markdown(claim_rows: list[dict], params: Sequence[str] = ()) -> str:
    """The over-seeds ledger as Markdown, with its count line."""
    return ledger_markdown(claim_rows, {**{p: p for p in params}, "single runs": "note"})


def _course_order(claim_rows: list[dict]) -> list[dict]:
    """Rows by notebook (00 first), each notebook's claims in the order it declares them."""
    return sorted(claim_rows, key=lambda r: str(r.get("notebook", "")))


def resolve_share(claim_rows: Sequence[Mapping]) -> tuple[int, int]:
    """(holds + fails, judged): how many of the judged claims the evidence settles."""
    verdicts = [r.get("verdict") for r in claim_rows]
    judged = sum(v in ("holds", "fails", "unresolved") for v in verdicts)
    return sum(v in ("holds", "fails") for v in verdicts), judged


def ledger_meta(claim_rows: Sequence[Mapping], commit: str, seeds: Sequence, tier: str) -> dict:
    """What the published ledger was measured from: the commit, seeds, and a fingerprint of each notebook's claim
    declarations (`labkit.claims.declarations_fingerprint`), which the tests compare with the notebooks."""
    by_nb: dict[str, list] = {}
    for r in claim_rows:
        by_nb.setdefault(str(r.get("notebook", "")), []).append(r)
    settled, judged = resolve_share(claim_rows)
    return {"commit": commit, "measured": time_now(), "tier": tier, "seeds": list(seeds),
            "count_line": count_line(claim_rows), "claims": len(claim_rows), "settled": settled, "judged": judged,
            "declarations": {nb: declarations_fingerprint(rows) for nb, rows in sorted(by_nb.items())},
            "ids": {nb: [r["id"] for r in rows] for nb, rows in sorted(by_nb.items())}}


_FLOAT_FIELDS = ("a_value", "b_value", "df", "effect", "high", "low", "min_effect", "se", "seed_share", "var_churn",
                 "var_item", "var_seed")


def _published_value(key: str, text: str):
    """One cell of the published CSV back to the value the row had before it was written."""
    if text == "":
        return None
    if key in ("n_items", "n_seeds"):
        return int(float(text))
    if key in _FLOAT_FIELDS:
        return float(text)
    if key == "edge":
        return text == "True"
    if key == "region":
        import ast

        return ast.literal_eval(text.replace("nan", "None"))
    return text


def kept_published_rows(md_path: str | os.PathLike, rerun: Sequence[str]) -> tuple[list[dict], dict]:
    """The rows of the ledger published at md_path (its .csv) for every notebook not in `rerun`, with the meta of
    that publication (commit, measured): what `labkit batch --only NB --publish` keeps of the other notebooks."""
    import csv
    import json

    md_path = Path(md_path)
    csv_path, meta_path = md_path.with_suffix(".csv"), md_path.with_suffix(".json")
    if not csv_path.is_file():
        raise FileNotFoundError(f"no published ledger at {csv_path} to keep the other notebooks' rows from; publish "
                                "the whole batch once (without --only)")
    with open(csv_path, newline="") as f:
        rows = [{k: _published_value(k, v) for k, v in r.items() if k != "source_ref"} for r in csv.DictReader(f)
                if r.get("notebook") not in rerun]
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    this = {"commit": meta.get("commit", "unknown"), "measured": meta.get("measured", "unknown")}
    earlier = meta.get("kept_from") or {}  # rows that page itself kept: they keep their own origin
    notebooks = sorted({r["notebook"] for r in rows})
    return rows, {"notebooks": notebooks, "from": {nb: earlier.get(nb, this) for nb in notebooks}}


def _kept_lines(kept: Mapping | None) -> list[str]:
    """The page's note on rows kept from an earlier publication, one line per commit they were measured at."""
    if not kept:
        return []
    by_origin: dict[tuple, list[str]] = {}
    for nb, origin in kept["from"].items():
        by_origin.setdefault((origin.get("commit", "unknown"), origin.get("measured", "unknown")), []).append(nb)
    return [f"- Kept: the rows of {', '.join(nbs)} come unchanged from the ledger measured at commit `{commit}` "
            f"({measured}); only the notebooks named in the command were run again." for (commit, measured), nbs
            in sorted(by_origin.items())]


def publish_claims(claim_rows: list[dict], md_path: str | os.PathLike, command: str, runs: list[dict],
                   tier: str, params: Sequence[str] = (), kept: Mapping | None = None) -> Path:
    """Write the over-seeds ledger as a dated, reproducible page: Markdown, CSV and a meta JSON next to it (e.g.
    docs/claims.md, .csv, .json), and one reproduction report per cited source in `reproductions/` beside it."""
    import json
    import platform
    import subprocess

    md_path = Path(md_path)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    claim_rows = _course_order(claim_rows)
    for r in claim_rows:
        r["source_ref"] = r.get("source", "")
    csv_path = md_path.with_suffix(".csv")
    write_ledger_csv(claim_rows, csv_path)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=True, cwd=md_path.parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    done = [r for r in runs if r.get("status") == "done"]
    seeds = sorted({r["parameters"].get("seed") for r in done if r["parameters"].get("seed") is not None})
    minutes = sum(float(r.get("duration_s") or 0) for r in done) / 60
    meta = ledger_meta(claim_rows, commit, seeds, tier)
    if kept:
        meta["kept_from"] = dict(kept["from"])
    md_path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    reports = write_reports(claim_rows, md_path.parent / "reproductions", settings=SETTINGS)
    import torch

    settled, judged = meta["settled"], meta["judged"]
    shown = [dict(r, source=cite(r["source"]) if r.get("source") else "") for r in claim_rows]
    lines = ["# The course's claims over seeds", "",
             f"**{count_line(claim_rows)}** ({len(claim_rows)} claims, {tier} tier, seeds {seeds}); "
             f"{settled} of {judged} judged claims resolve (hold or fail).", "",
             f"- Measured: {meta['measured']} on `{cpu_signature()}`, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}, torch {torch.__version__}; labkit commit `{commit}` (the claim "
             "declarations' fingerprints are in the JSON beside this page; `make test` fails when a notebook's "
             "declarations no longer match them).",
             f"- Reproduce: `{command}` ({len(done)} runs, {minutes:.0f} min of notebook time in all).",
             *_kept_lines(kept),
             "- Rule (`labkit.claims`, `labkit.estimate`): the per-item scores of every seed form an items x seeds "
             "matrix; the 95 % interval of the mean effect splits its variance into item, seed and churn parts "
             "(Satterthwaite's degrees of freedom; for 0/1 pairs a paired score interval widened by that split), "
             "and generalises over test items and training seeds. Each comparison declares the smallest effect "
             "that matters. **holds**: the whole interval is inside the claim's region; **fails**: wholly outside "
             "it (a tight tie below the smallest effect that matters fails); **unresolved**: it straddles a "
             "boundary, and the row says what would settle it at 80 % power. A claim a seed could not measure "
             "gets no verdict. **edge**: two test items flipped either way would change the verdict.",
             f"- The same table as CSV: [{csv_path.name}]({csv_path.name}); reproduction reports per source: "
             + ", ".join(f"[{p.stem}](reproductions/{p.name})" for p in reports) + ".", "",
             claims_markdown(shown, params), ""]
    md_path.write_text("\n".join(lines))
    return md_path


def update_readme_claims(readme: str | os.PathLike, md_path: str | os.PathLike, claim_rows: list[dict],
                         tier: str, n_seeds: int) -> bool:
    """Put the over-seeds count line and a link to the ledger between the README's claims markers."""
    readme = Path(readme)
    start, end = "<!-- claims:start -->", "<!-- claims:end -->"
    text = readme.read_text() if readme.is_file() else ""
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    link = os.path.relpath(md_path, readme.parent)
    settled, judged = resolve_share(claim_rows)
    block = (f"\nOver {n_seeds} seeds ({tier} tier, {time_now()}): **{count_line(claim_rows)}** of "
             f"{len(claim_rows)} claims; {settled} of {judged} judged claims resolve. Every claim, its interval and "
             f"the command that reproduces it: [{link}]({link}); a reproduction report per source in "
             "[docs/reproductions](docs/reproductions).\n")
    readme.write_text(f"{head}{start}{block}{end}{tail}")
    return True


def time_now() -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def write_report(batch_dir: Path, name: str, runs: list[dict], swept: Sequence[str], tier: str, bands: Mapping,
                 headline: Sequence[str] | None = None, bands_file: str | os.PathLike | None = None) -> dict:
    """Write runs.csv, summary.csv, plots/*.png and report.md into `batch_dir`; return counts and flagged lines."""
    import pandas as pd

    batch_dir.mkdir(parents=True, exist_ok=True)
    rows = run_rows(runs, swept, tier, bands)
    summary = summarise(runs, swept, tier, bands)
    pd.DataFrame(rows).to_csv(batch_dir / "runs.csv", index=False)
    pd.DataFrame(summary).to_csv(batch_dir / "summary.csv", index=False)
    done = [r for r in runs if r.get("status") == "done"]
    failed = [r for r in runs if r.get("status") not in ("done", None, "missing", "pending")]
    missing = [r for r in runs if r.get("status") in (None, "missing", "pending")]
    flagged = [f"{r['run_id']}: {r['flags']}" for r in rows if r["flags"]]
    flagged += [f"{s['notebook']} {s['metric']} mean {s['mean']:.4g} {s['expected']}" for s in summary
                if s["expected"].startswith("OUTSIDE")]

    params = [p for p in swept if p != "seed"]
    claim_rows = aggregate_claims(runs, swept)
    if claim_rows:
        write_ledger_csv(claim_rows, batch_dir / "claims.csv")
    lines = [f"# Batch `{name}`", "",
             f"Tier: **{tier}**. Runs: {len(runs)} planned, {len(done)} done, {len(failed)} failed, "
             f"{len(missing)} not run yet. Seeds are aggregated as mean ± std (n = number of seeds).", ""]
    if claim_rows:
        lines += ["## Claims checked over seeds", "",
                  "Each claim judged by `labkit.claims` over all finished seeds: the items x seeds variance split "
                  "of its per-item scores (also in `claims.csv`).", "",
                  claims_markdown(claim_rows, params), ""]
    if bands_file:
        lines += [f"Reference bands: `{bands_file}`; a mean outside its band is marked OUTSIDE.", ""]
    lines += ["## Summary", ""]
    if summary:
        lines.append(markdown_table(
            ["notebook", *params, "metric", "mean ± std", "n", "expected"],
            [[s["notebook"], *[s.get(p) for p in params], s["metric"], f"{s['mean']:.4g} ± {s['std']:.2g}",
              s["n"], s["expected"]] for s in summary]))
    else:
        lines.append("No finished run recorded any numbers yet.")
    lines.append("")

    plots = []
    for notebook in sorted({r["notebook"] for r in runs}):
        nb_runs = [r for r in runs if r["notebook"] == notebook]
        nb_bands = ((bands.get(notebook) or {}).get(tier) or {})
        finished = [r for r in nb_runs if r.get("status") == "done"]
        for metric in headline_metrics(notebook, finished, tier, bands, headline):
            path = batch_dir / "plots" / f"{notebook}__{metric.replace('/', '_')}.png"
            plot_metric(path, notebook, metric, nb_runs, swept, tier, nb_bands.get(metric))
            plots.append(path)
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots] + [""]

    lines += ["## Every run", ""]
    for notebook in sorted({r["notebook"] for r in rows}):
        nb_rows = [r for r in rows if r["notebook"] == notebook]
        metrics = [k for k in dict.fromkeys(k for r in nb_rows for k in r)
                   if k not in ("run_id", "notebook", "status", "attempts", "duration_s", "flags", "error", *swept)]
        lines += [f"### {notebook}", "", markdown_table(
            ["run", "status", *swept, *metrics, "flags"],
            [[r["run_id"], r["status"], *[r.get(p) for p in swept], *[format_value(r.get(m, "")) for m in metrics],
              r["flags"]] for r in nb_rows]), ""]
    if failed:
        lines += ["## Failures", "", markdown_table(
            ["run", "attempts", "where / error", "log"],
            [[r["run_id"], r.get("attempt", ""), (r.get("error") or {}).get("message", r.get("status")),
              f"{r['run_id']}/{r.get('log', '')}"] for r in failed]), ""]
    (batch_dir / "report.md").write_text("\n".join(lines))
    return {"report": batch_dir / "report.md", "done": len(done), "failed": len(failed), "missing": len(missing),
            "flagged": flagged, "plots": plots, "claims": claim_rows}
