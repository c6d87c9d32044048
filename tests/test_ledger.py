"""The published claims ledger is never stale: `make test` fails when it is out of step with the notebooks."""
import csv
import json
import shutil
from pathlib import Path

import pytest

from labkit.tools.ledger_check import check, notebook_claims

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
LEDGER = ROOT / "docs" / "claims.csv"


def test_the_published_ledger_is_in_step_with_every_notebook():
    problems = check(SOLUTIONS, LEDGER)
    assert problems == [], "\n".join(problems)


def test_every_notebook_shows_its_claims_with_the_published_verdict_beside_this_run():
    for path in sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb")):
        rows = notebook_claims(path)
        assert rows, path.name
        assert {"id", "this run's verdict", "edge", "over seeds (published)"} <= set(rows[0]), path.name


def _copy(tmp_path):
    sol = tmp_path / "solutions"
    sol.mkdir()
    for p in SOLUTIONS.glob("[0-9][0-9]_*.ipynb"):
        shutil.copy(p, sol / p.name)
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(LEDGER, docs / "claims.csv")
    shutil.copy(LEDGER.with_suffix(".json"), docs / "claims.json")
    return sol, docs / "claims.csv"


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_a_claim_removed_from_the_ledger_is_caught(tmp_path):
    sol, ledger = _copy(tmp_path)
    rows = _rows(ledger)
    gone = rows.pop(3)
    _write(ledger, rows)
    problems = check(sol, ledger)
    assert any(repr(gone["id"]) in p and "lacks" in p for p in problems), problems


def test_a_claim_no_notebook_declares_is_caught(tmp_path):
    sol, ledger = _copy(tmp_path)
    rows = _rows(ledger)
    rows.append(dict(rows[0], id="one-channel-costs"))
    _write(ledger, rows)
    assert any("'one-channel-costs'" in p and "no longer declares" in p for p in check(sol, ledger))


def test_a_changed_declaration_or_verdict_is_caught(tmp_path):
    sol, ledger = _copy(tmp_path)
    rows = _rows(ledger)
    judged = next(i for i, r in enumerate(rows) if r["verdict"] in ("holds", "fails", "unresolved"))
    rows[judged] = dict(rows[judged], claim=rows[judged]["claim"] + " (reworded)",
                        verdict={"holds": "fails"}.get(rows[judged]["verdict"], "holds"))
    _write(ledger, rows)
    problems = check(sol, ledger)
    assert any("now reads" in p for p in problems) and any("shows the published verdict" in p for p in problems)
    assert any("fingerprint" in p for p in problems)


def test_the_meta_file_names_commit_seeds_and_fingerprints():
    meta = json.loads(LEDGER.with_suffix(".json").read_text())
    assert meta["commit"] and len(meta["seeds"]) >= 3 and meta["seeds"] == sorted(meta["seeds"])
    assert set(meta["declarations"]) == {p.stem for p in SOLUTIONS.glob("[0-9][0-9]_*.ipynb")}
    assert meta["settled"] <= meta["judged"]


@pytest.mark.parametrize("source", ["tle", "asktodo", "cw"])
def test_each_article_has_a_reproduction_report(source):
    report = ROOT / "docs" / "reproductions" / f"{source}.md"
    assert report.is_file()
    text = report.read_text()
    assert "| claim" in text.lower() or "claim" in text


def test_a_changed_threshold_is_caught_but_a_claim_this_run_could_not_measure_shows_none(tmp_path):
    sol, ledger = _copy(tmp_path)
    rows = _rows(ledger)
    shown = {(p.stem, r["id"]): r for p in sol.glob("*.ipynb") for r in notebook_claims(p)}
    measured = next(i for i, r in enumerate(rows) if r["expect"]
                    and shown[(r["notebook"], r["id"])]["this run's verdict"] != "not measured")
    unmeasured = [r["id"] for r in rows if r["expect"] and (r["notebook"], r["id"]) in shown
                  and shown[(r["notebook"], r["id"])]["this run's verdict"] == "not measured"]
    if not unmeasured:
        pytest.skip("every claim with a threshold was measured in the committed runs")
    rows[measured] = dict(rows[measured], expect="> +0.500")
    _write(ledger, rows)
    problems = [p for p in check(sol, ledger) if "needs" in p]
    assert any(repr(rows[measured]["id"]) in p for p in problems), problems
    assert not any(repr(cid) in p for p in problems for cid in unmeasured), problems
