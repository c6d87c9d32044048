"""Is the published ledger in step with the notebooks? (`labkit ledger-check`; a test in `make test` calls it.)

The published ledger (docs/claims.csv + docs/claims.json) was measured from one commit's claim declarations. The
committed solution notebooks show, in their "claims checked" table, every claim they declare: its id, sentence,
source, the region it needs, and the published verdict over seeds that the run read. nbval makes sure a fresh run
prints the same table. This check compares the two, claim by claim:

* every claim a notebook declares is in the ledger, and the ledger holds no claim that no notebook declares;
* the sentence, the source and the region are the same (a changed declaration needs a new ledger);
* the published verdict a notebook shows is the ledger's (a republished ledger needs the notebooks re-executed);
* the meta file's fingerprint of each notebook's declarations matches the ledger's rows.

Each problem is one sentence naming the notebook, the claim and the command that fixes it.
"""
from __future__ import annotations

import argparse
import ast
import csv
import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

from labkit.claims import declarations_fingerprint
from labkit.sources import cite

__all__ = ["notebook_claims", "check", "add_arguments", "run", "main"]

REPUBLISH = "labkit batch batches/claims.yaml --publish docs/claims.md, then make outputs NB=<each notebook>"


class _Tables(HTMLParser):
    """Every <table> of an HTML output as a list of rows (header row first)."""

    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables and self.tables[-1]:
            self.tables[-1][-1].append(html.unescape("".join(self._cell)).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def notebook_claims(path: str | Path) -> list[dict]:
    """The claims table a committed notebook shows (the output of its `ledger.table(published=True)` cell)."""
    nb = json.loads(Path(path).read_text())
    rows: list[dict] = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code" or "ledger.table(" not in "".join(cell.get("source", "")):
            continue
        for out in cell.get("outputs", []):
            text = out.get("data", {}).get("text/html")
            if not text:
                continue
            parser = _Tables()
            parser.feed("".join(text) if isinstance(text, list) else text)
            for table in parser.tables:
                if table and "id" in table[0] and "claim" in table[0]:
                    rows += [dict(zip(table[0], r)) for r in table[1:]]
    return rows


def _ledger(csv_path: Path) -> dict[tuple[str, str], dict]:
    with open(csv_path, newline="") as f:
        return {(r["notebook"], r["id"]): r for r in csv.DictReader(f)}


def check(solutions: str | Path, ledger_csv: str | Path) -> list[str]:
    """Every way the published ledger and the committed notebooks disagree, one sentence each ([] when in step)."""
    solutions, ledger_csv = Path(solutions), Path(ledger_csv)
    if not ledger_csv.is_file():
        return [f"There is no published ledger at {ledger_csv}: run {REPUBLISH}."]
    ledger = _ledger(ledger_csv)
    problems: list[str] = []
    notebooks = sorted(p.stem for p in solutions.glob("[0-9][0-9]_*.ipynb"))
    for nb in notebooks:
        shown = notebook_claims(solutions / f"{nb}.ipynb")
        if not shown:
            problems.append(f"{nb} shows no claims table with an id column: re-execute it (make outputs NB={nb}).")
            continue
        ids = [r["id"] for r in shown]
        for row in shown:
            pub = ledger.get((nb, row["id"]))
            if pub is None:
                problems.append(f"{nb} declares claim {row['id']!r}, which the published ledger lacks: {REPUBLISH}.")
                continue
            if row["claim"] != pub["claim"]:
                problems.append(f"{nb}: claim {row['id']!r} now reads {row['claim']!r}, the ledger measured "
                                f"{pub['claim']!r}: {REPUBLISH}.")
            if row.get("source") != cite(pub["source"]):
                problems.append(f"{nb}: claim {row['id']!r} cites {row.get('source')!r}, the ledger "
                                f"{cite(pub['source'])!r}: {REPUBLISH}.")
            # a claim this run could not measure shows no threshold; the ledger keeps the one other seeds used
            unmeasured = row.get("this run's verdict") == "not measured" and not row.get("needs")
            if not unmeasured and (row.get("needs") or "") != (pub.get("expect") or ""):
                problems.append(f"{nb}: claim {row['id']!r} needs {row.get('needs')!r}, the ledger judged "
                                f"{pub.get('expect')!r}: {REPUBLISH}.")
            shown_pub = row.get("over seeds (published)", "")
            verdict = re.match(r"([a-z ]+?) \(\d+ seeds\)", shown_pub)
            if not verdict or verdict.group(1) != pub["verdict"]:
                problems.append(f"{nb}: claim {row['id']!r} shows the published verdict {shown_pub!r}, the ledger "
                                f"says {pub['verdict']!r}: re-execute it (make outputs NB={nb}).")
        for (lnb, cid) in ledger:
            if lnb == nb and cid not in ids:
                problems.append(f"The published ledger holds claim {cid!r} of {nb}, which the notebook no longer "
                                f"declares: {REPUBLISH}.")
    for (lnb, cid) in ledger:
        if lnb not in notebooks:
            problems.append(f"The published ledger holds claim {cid!r} of {lnb}, a notebook that does not exist.")
    meta_path = ledger_csv.with_suffix(".json")
    if not meta_path.is_file():
        problems.append(f"The published ledger has no {meta_path.name} (its commit and fingerprints): {REPUBLISH}.")
    else:
        meta = json.loads(meta_path.read_text())
        for nb, fingerprint in (meta.get("declarations") or {}).items():
            rows = [dict(r, region=ast.literal_eval(r["region"]) if r.get("region", "").startswith("[") else None,
                         min_effect=float(r["min_effect"]) if r.get("min_effect") else None)
                    for (lnb, _), r in ledger.items() if lnb == nb]
            if declarations_fingerprint(rows) != fingerprint:
                problems.append(f"The ledger's rows for {nb} do not match the fingerprint it was published with "
                                f"(was {ledger_csv.name} edited by hand?): {REPUBLISH}.")
    return problems


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--solutions", default="solutions", help="the solution notebooks (default: solutions)")
    parser.add_argument("--ledger", default="docs/claims.csv", help="the published ledger (default: docs/claims.csv)")


def run(args: argparse.Namespace) -> int:
    problems = check(args.solutions, args.ledger)
    for p in problems:
        print(p)
    if not problems:
        print("The published ledger is in step with every notebook.")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labkit ledger-check", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
