"""Grade many students' JSONL response files into a per-answer CSV and a per-question summary."""
from __future__ import annotations

import csv
import json
import warnings
from collections import defaultdict
from pathlib import Path

from labkit.quiz.bank import Bank, BankError, load_bank
from labkit.quiz.responses import read_records

GRADE_COLUMNS = ["student_id", "bank", "question", "kind", "attempts", "correct", "first_try_correct",
                 "final_answer", "last_ts"]
SUMMARY_COLUMNS = ["bank", "question", "kind", "students", "correct", "correct_pct", "first_try_pct",
                   "mean_attempts"]


def _regrade(banks: dict, bank_id: str, question: str, answer, recorded, banks_dir):
    """Correctness from the bank when it knows the question (a hand-edited 'correct' does not count)."""
    if bank_id not in banks:
        try:
            banks[bank_id] = load_bank(bank_id, banks_dir)
        except (FileNotFoundError, BankError) as exc:
            warnings.warn(f"bank {bank_id}: {exc} Using the recorded 'correct' values.", stacklevel=3)
            banks[bank_id] = None
    bank: Bank | None = banks[bank_id]
    if bank is None:
        return recorded
    try:
        q = bank.question(question)
    except KeyError:
        return recorded
    return q.check(answer).correct


def grade_dir(directory: str | Path, banks_dir: str | Path | None = None) -> tuple[list[dict], list[dict]]:
    """(one row per student and question, one summary row per question) from every *.jsonl under directory."""
    files = sorted(Path(directory).rglob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"No *.jsonl response files under {directory}. Collect the students' "
                                "~/.labkit/responses/*.jsonl files into one folder and pass that folder.")
    banks: dict = {}
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for path in files:
        for rec in read_records(path):  # warns about and skips corrupted lines
            student = str(rec.get("student_id") or path.stem)
            groups[(student, str(rec.get("bank", "")), str(rec["question"]))].append(rec)
    rows = []
    for (student, bank_id, question), recs in sorted(groups.items()):
        recs.sort(key=lambda r: (str(r.get("ts", "")), int(r.get("attempt") or 0)))
        kind = str(recs[-1].get("kind", ""))
        verdicts = [_regrade(banks, bank_id, question, r.get("answer"), r.get("correct"), banks_dir) for r in recs]
        graded = kind != "text" and any(v is not None for v in verdicts)
        final = recs[-1].get("answer")
        rows.append({
            "student_id": student, "bank": bank_id, "question": question, "kind": kind, "attempts": len(recs),
            "correct": (any(v is True for v in verdicts)) if graded else "",
            "first_try_correct": (verdicts[0] is True) if graded else "",
            "final_answer": final if isinstance(final, str) else json.dumps(final, ensure_ascii=False),
            "last_ts": recs[-1].get("ts", ""),
        })
    return rows, summarise(rows)


def summarise(rows: list[dict]) -> list[dict]:
    """One row per question: how many students answered, got it right, right at the first try."""
    by_q: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        by_q[(r["bank"], r["question"])].append(r)
    out = []
    for (bank_id, question), rs in sorted(by_q.items()):
        graded = rs[0]["kind"] != "text" and rs[0]["correct"] != ""
        n = len(rs)
        right = sum(1 for r in rs if r["correct"] is True)
        first = sum(1 for r in rs if r["first_try_correct"] is True)
        out.append({
            "bank": bank_id, "question": question, "kind": rs[0]["kind"], "students": n,
            "correct": right if graded else "", "correct_pct": round(100 * right / n, 1) if graded else "",
            "first_try_pct": round(100 * first / n, 1) if graded else "",
            "mean_attempts": round(sum(r["attempts"] for r in rs) / n, 2),
        })
    return out


def write_csv(rows: list[dict], path: str | Path, columns: list[str]) -> Path:
    """Write rows as CSV with a fixed column order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def format_summary(summary: list[dict]) -> str:
    """The per-question summary as an aligned text table."""
    table = [SUMMARY_COLUMNS] + [[str(r[c]) for c in SUMMARY_COLUMNS] for r in summary]
    widths = [max(len(row[i]) for row in table) for i in range(len(SUMMARY_COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table)
