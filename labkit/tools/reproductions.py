"""Reproduction reports: one Markdown page per cited source, generated from the published ledger.

In the spirit of a ReScience [Re] / [¬Re] report, each page (``<out_dir>/<key>.md``) names the source, says what
the course tested of it, and lists every claim that cites it: the claim in the course's words, the section and
number the source gives, the setting the course tested it at and how that differs, the effect over seeds with its
95 % interval, and the outcome. An instructor can hand the page out with the article.

Outcomes follow the verdicts of `labkit.claims`: *holds* -> reproduced, *fails* -> not reproduced, *unresolved* ->
inconclusive; demonstrations and claims not measured at this tier are *not tested*.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from labkit import sources
from labkit._tables import markdown_table

__all__ = ["OUTCOMES", "outcome", "source_ref", "write_reports"]

OUTCOMES = ("reproduced", "not reproduced", "inconclusive", "not tested")
_BY_VERDICT = {"holds": "reproduced", "fails": "not reproduced", "unresolved": "inconclusive"}


def outcome(verdict: str) -> str:
    """A ledger verdict as a reproduction outcome ("unresolved: about ..." counts as unresolved)."""
    word = str(verdict or "").split(":")[0].split("(")[0].strip()
    return _BY_VERDICT.get(word, "not tested")


def source_ref(row: Mapping[str, Any]) -> str | None:
    """The row's "key §section" reference: its `source_ref` column, else its `source` text when that resolves
    (a reference, or a display text naming a registered title); None when neither does."""
    for text in (row.get("source_ref"), row.get("source")):
        text = str(text or "").strip()
        if not text:
            continue
        try:
            sources.resolve(text)
            return text
        except ValueError:
            pass
        for key, s in sources.SOURCES.items():  # an older ledger: the display text of a registered title
            short, low = s.title.split(":")[0].strip().lower(), text.lower()
            if key not in sources.OWN and (s.title.lower() in low or (len(short) > 8 and short in low)):
                return key
    return None


def _number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if x != x else x


def _effect(row: Mapping[str, Any]) -> str:
    effect, low, high = (_number(row.get(k)) for k in ("effect", "low", "high"))
    if effect is None:
        return "-"
    if row.get("unit") == "x":
        text = f"{effect:.1f}x"
        return text + (f" [{low:.1f}x, {high:.1f}x]" if low is not None and high is not None else "")
    text = f"{effect:+.3f}"
    return text + (f" [{low:+.3f}, {high:+.3f}]" if low is not None and high is not None else "")


def _tag(counts: Mapping[str, int]) -> str:
    good, bad = counts["reproduced"], counts["not reproduced"]
    if good and bad:
        return "[Re] / [¬Re]"
    return "[Re]" if good else "[¬Re]" if bad else "[Re?]"


def _report(key: str, rows: list[tuple[Mapping[str, Any], str]], settings: Mapping[str, str] | None) -> str:
    source = sources.SOURCES[key]
    counts = {o: 0 for o in OUTCOMES}
    table = []
    for row, section in rows:
        result = outcome(row.get("verdict", ""))
        counts[result] += 1
        claim_id = str(row.get("id", ""))
        table.append([row.get("notebook", ""), f"{row.get('claim', '')} (`{claim_id}`)", section or "-",
                      row.get("article") or "-", sources.setting_for(claim_id, settings) or "-", _effect(row),
                      row.get("n_seeds") or "-", result])
    seeds = [int(n) for n in (_number(row.get("n_seeds")) for row, _ in rows) if n]
    tested = counts["reproduced"] + counts["not reproduced"] + counts["inconclusive"]
    year = f", {source.year}" if source.year else ""
    lines = [
        f"# {_tag(counts)} {source.title}",
        "",
        f"**Source.** *{source.title}* ({source.author}{year}); {source.kind}"
        + (f": {source.note}." if source.note else "."),
        "",
        f"**Scope.** The course cites this {source.kind} for {len(rows)} claim(s); {tested} are tested over seeds "
        f"(up to {max(seeds, default=0)} seeds) and {counts['not tested']} are shown or not measured at this tier. "
        "Each claim is restated in the course's own words and tested in a smaller setting than the source's (the "
        "setting column says how), so an outcome speaks for that setting only. Claims the course makes itself "
        "about this source's method are course claims and are not listed here.",
        "",
        "Outcomes: *reproduced* = the 95 % interval lies inside the claim's region (holds); *not reproduced* = it "
        "lies outside (fails); *inconclusive* = it straddles a boundary (unresolved); *not tested* = a "
        "demonstration or a claim not measured at this tier.",
        "",
        markdown_table(["notebook", "claim (our words)", "section", "source's number", "setting we tested at",
                        "effect [95 % CI]", "seeds", "outcome"], table),
        "",
        f"**Summary.** {len(rows)} claim(s): " + ", ".join(f"{counts[o]} {o}" for o in OUTCOMES) + ".",
        "",
    ]
    return "\n".join(lines)


def write_reports(rows: Iterable[Mapping[str, Any]], out_dir: str | os.PathLike,
                  settings: Mapping[str, str] | None = None) -> list[Path]:
    """Write `<out_dir>/<key>.md` for every external source the ledger rows cite; return the paths, by key.

    rows: ledger rows as in docs/claims.csv (notebook, id, claim, source, article, effect, low, high, verdict,
    n_seeds; `source_ref` "key §section" when present). A row whose source does not resolve is skipped, and so is
    a row citing the course itself or a mechanism. settings: claim id (or pattern) -> setting sentence
    (default: `labkit.sources.SETTINGS`).
    """
    by_key: dict[str, list[tuple[Mapping[str, Any], str]]] = {}
    for row in rows:
        ref = source_ref(row)
        if ref is None:
            continue
        source, section = sources.resolve(ref)
        if source.key not in sources.OWN:
            by_key.setdefault(source.key, []).append((row, section))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for key in sorted(by_key):
        path = out / f"{key}.md"
        path.write_text(_report(key, by_key[key], settings), encoding="utf-8")
        paths.append(path)
    return paths
