"""Claims as tables: a ledger's rows (the "claims checked" table of a notebook, the course ledger), its Markdown
and CSV, the count line, and the published ledger over seeds (docs/claims.csv) that a notebook's table shows
beside its own run. `labkit.claims` judges the claims and re-exports these names.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from labkit import sources
from labkit._tables import markdown_table

__all__ = ["VERDICTS", "EDGE_ITEMS", "EDGE_TEXT", "format_number", "ledger_rows", "ledger_markdown",
           "write_ledger_csv", "count_line", "published_ledger", "declarations_fingerprint"]

VERDICTS = ("holds", "fails", "unresolved")
EDGE_ITEMS = 2  # the edge column re-judges with this many test items flipped each way
EDGE_TEXT = f"tips if {EDGE_ITEMS} items flip"  # what the edge column says (another CPU's rounding may tip it)


def format_number(value: float, unit: str) -> str:
    """A measured value in its unit: accuracy and points to 3 decimals, anything else to 3 significant digits."""
    if unit in ("accuracy", "points"):
        return f"{value:.3f}"
    return f"{value:.3g}{unit if unit == 'x' else ''}"


# ----------------------------------------------------------------------------------------------------------------
# A ledger's rows


def _get(j):
    return j.get if isinstance(j, Mapping) else (lambda k, d=None: getattr(j, k, d))


def _effect_text(j) -> str:
    get = _get(j)
    if get("kind") in ("demonstration", "not measured") or get("effect") is None:
        return ""
    unit = get("unit") or "accuracy"
    if unit in ("accuracy", "points"):
        sign = "+" if get("kind") == "compare" else ""
        return f"{get('effect'):{sign}.3f} [{get('low'):{sign}.3f}, {get('high'):{sign}.3f}]"
    low, high = format_number(get("low"), unit), format_number(get("high"), unit)
    return f"{format_number(get('effect'), unit)} [{low}, {high}]"


def _verdict_text(get) -> str:
    verdict = get("verdict")
    if verdict == "unresolved" and get("resolve"):
        verdict = f"{verdict}: {get('resolve')}"
    return verdict


def ledger_rows(judgements: Iterable, notebook: bool = False, published: Mapping | None = None,
                notebook_name: str = "") -> list[dict]:
    """Table rows: claim, source, the source's number, what was measured, effect [95 % CI], verdict, edge.

    published: the published over-seeds rows by (notebook, id) (a notebook's own table shows them beside its run).
    """
    rows = []
    for j in judgements:
        get = _get(j)
        row = {}
        if notebook:
            row["notebook"] = get("notebook", "")
        row.update({"id": get("id"), "claim": get("claim"), "source": _source_text(get("source")),
                    "source's number": get("article") or "",
                    "this run" if not notebook else "measured": _measured_text(get, notebook),
                    "needs": get("expect") or "", "effect [95 % CI]": _effect_text(j)})
        row["verdict" if published is None else "this run's verdict"] = _verdict_text(get)
        row["edge"] = EDGE_TEXT if get("edge") else ""
        if published is not None:
            pub = published.get((notebook_name, get("id")))
            if pub is None:
                row["over seeds (published)"] = "not in the published ledger"
            else:
                text = f"{pub['verdict']} ({pub.get('n_seeds')} seeds)"
                if pub["verdict"] != get("verdict") and get("verdict") in VERDICTS + ("not measured",):
                    text += "; differs from this run: read this one"
                row["over seeds (published)"] = text
        if get("n_seeds", 1) and get("n_seeds", 1) > 1:
            row["seeds"] = get("n_seeds")
        rows.append(row)
    return rows


def _measured_text(get, notebook: bool) -> str:
    """What was measured; in a notebook's own table, followed by the claim's note (a setting the run chose, or a
    warning such as a resolution far below the weights')."""
    text = get("measured") or ""
    note = get("note") or ""
    return f"{text}; {note}" if note and not notebook and text else (text or note if not notebook else text)


def _source_text(source: str) -> str:
    try:
        return sources.cite(source)
    except (ValueError, AttributeError):
        return source or ""


def ledger_markdown(judgements: Sequence, extra: Mapping[str, str] | None = None) -> str:
    """A ledger (one row per claim, a notebook column) as Markdown, then its count line in bold.

    extra: more columns from each judgement, {column title: key}, e.g. {"single runs": "note"} over seeds.
    """
    rows = ledger_rows(judgements, notebook=True)
    if not rows:
        return "(no notebook recorded any claims)"
    for row, j in zip(rows, judgements):
        for title, key in (extra or {}).items():
            row[title] = _get(j)(key, "")
    header = list(dict.fromkeys(k for r in rows for k in r))
    return markdown_table(header, [[r.get(k, "") for k in header] for r in rows]) + f"\n\n**{count_line(judgements)}**"


_CSV_DROP = ("effects", "ses", "items_a", "items_b")


def write_ledger_csv(judgements: Sequence, path) -> None:
    """Every field of every claim as one CSV row (per-seed lists and per-item scores left out)."""
    import pandas as pd

    records = [j if isinstance(j, Mapping) else j.to_dict() for j in judgements]
    pd.DataFrame(records).drop(columns=list(_CSV_DROP), errors="ignore").to_csv(path, index=False)


def count_line(judgements: Iterable) -> str:
    """'N hold, M fail (K of them ties below the smallest effect that matters), L unresolved' (+ without a verdict)."""
    js = list(judgements)
    verdicts = [_get(j)("verdict") for j in js]
    c = {v: verdicts.count(v) for v in VERDICTS + ("demonstration", "not measured")}
    ties = sum(1 for j in js if _get(j)("verdict") == "fails" and _is_tie(_get(j)))
    fails = f"{c['fails']} fail" + (f" ({ties} of them a tie below the smallest effect that matters)" if ties else "")
    line = f"{c['holds']} hold, {fails}, {c['unresolved']} unresolved"
    extra = []
    if c["demonstration"]:
        extra.append(f"{c['demonstration']} demonstration{'s' if c['demonstration'] != 1 else ''}")
    if c["not measured"]:
        extra.append(f"{c['not measured']} not measured")
    if extra:
        line += f" ({' and '.join(extra)}, without a verdict)"
    return line


def _is_tie(get) -> bool:
    """A failed 'A beats B' whose interval straddles 0: no gain that matters, rather than a loss."""
    m = get("min_effect")
    if m is None or (isinstance(m, float) and math.isnan(m)) or get("low") is None:
        return False
    return float(get("low")) <= 0 <= float(get("high"))


# ----------------------------------------------------------------------------------------------------------------
# The published ledger


def _ledger_path() -> Path:
    env = os.environ.get("LABKIT_LEDGER")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "docs" / "claims.csv"


_PUBLISHED: dict = {}


def published_ledger(path: str | os.PathLike | None = None) -> dict:
    """The published over-seeds ledger as {(notebook, claim id): row}; empty when it is not there."""
    p = Path(path) if path else _ledger_path()
    key = (str(p), p.stat().st_mtime if p.is_file() else None)
    if key not in _PUBLISHED:
        rows = {}
        if p.is_file():
            with open(p, newline="") as f:
                for r in csv.DictReader(f):
                    r["n_seeds"] = int(float(r.get("n_seeds") or 1))
                    rows[(r.get("notebook", ""), r["id"])] = r
        _PUBLISHED.clear()
        _PUBLISHED[key] = rows
    return _PUBLISHED[key]


def declarations_fingerprint(rows: Iterable[Mapping]) -> str:
    """A hash of what the claims declare (notebook, id, claim, source, region, min_effect), not what they measured."""
    keys = ("notebook", "id", "claim", "source", "region", "min_effect", "kind")
    items = sorted(json.dumps({k: _plain(r.get(k)) for k in keys}, sort_keys=True) for r in rows)
    return hashlib.sha1("\n".join(items).encode()).hexdigest()[:12]


def _plain(v):
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 6)
    return v
