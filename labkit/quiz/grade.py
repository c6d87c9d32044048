"""Grade many students' JSONL response files: a per-answer CSV, a per-question summary, per-student scores per
bank (plain CSV and a Canvas gradebook import CSV) and per-question statistics with the most common wrong answers
(Markdown and HTML)."""
from __future__ import annotations

import csv
import html
import json
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from labkit._tables import markdown_cell, markdown_table, text_table
from labkit.quiz.bank import Bank, BankError, load_bank
from labkit.quiz.responses import read_records

GRADE_COLUMNS = ["student_id", "bank", "question", "kind", "attempts", "correct", "first_try_correct",
                 "final_answer", "last_ts"]
SUMMARY_COLUMNS = ["bank", "question", "kind", "students", "correct", "correct_pct", "first_try_pct",
                   "mean_attempts"]
# Canvas gradebook import: these five columns, then one column per assignment; the second row gives the points
CANVAS_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
CANVAS_ID_CHOICES = ("SIS User ID", "SIS Login ID", "ID")
CANVAS_POINTS_ROW = "    Points Possible"  # as Canvas writes it in its own exports
TOP_WRONG = 3  # wrong answers listed per question in the report


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


@dataclass
class Grades:
    """Everything `labkit quiz grade` computes from one folder of response files."""

    rows: list[dict]  # one per student and question (GRADE_COLUMNS)
    summary: list[dict]  # one per question (SUMMARY_COLUMNS)
    banks: dict[str, dict] = field(default_factory=dict)  # bank id -> {"title", "questions": {qid: prompt}, "points"}
    scores: dict[str, dict[str, int]] = field(default_factory=dict)  # student -> bank id -> points
    wrong: dict[tuple, Counter] = field(default_factory=dict)  # (bank, question) -> wrong answer -> students

    @property
    def students(self) -> list[str]:
        return sorted({r["student_id"] for r in self.rows})

    def total(self, student: str) -> int:
        return sum(self.scores.get(student, {}).values())

    @property
    def points_possible(self) -> int:
        return sum(b["points"] for b in self.banks.values())


def _answer_text(answer) -> str:
    """An answer as one line of text (multiple choice: the ticked options joined by '; ')."""
    if isinstance(answer, list):
        return "; ".join(str(a) for a in answer)
    return answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)


def grade(directory: str | Path, banks_dir: str | Path | None = None) -> Grades:
    """Grade every *.jsonl under directory: per-answer rows, per-question summary, scores, common wrong answers."""
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
    wrong: dict[tuple, Counter] = defaultdict(Counter)
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
        if graded:  # each student counts once per distinct wrong answer
            wrong[(bank_id, question)].update({_answer_text(r.get("answer")) for r, v in zip(recs, verdicts)
                                               if v is False})
    info = _bank_info(banks, rows)
    scores: dict[str, dict[str, int]] = {s: {b: 0 for b in info} for s in sorted({r["student_id"] for r in rows})}
    for r in rows:
        if r["correct"] is True and r["question"] in info[r["bank"]]["graded"]:
            scores[r["student_id"]][r["bank"]] += 1
    return Grades(rows=rows, summary=summarise(rows), banks=info, scores=scores, wrong=dict(wrong))


def _bank_info(banks: dict, rows: list[dict]) -> dict[str, dict]:
    """Title, prompts, graded questions and points of every bank the students answered (1 point per question)."""
    info = {}
    for bank_id in sorted({r["bank"] for r in rows}):
        bank: Bank | None = banks.get(bank_id)
        if bank is not None:
            graded = [q.id for q in bank.questions if q.kind != "text"]
            title, prompts = bank.title, {q.id: q.prompt for q in bank.questions}
        else:  # bank not found: the questions the students answered are all we know
            graded = sorted({r["question"] for r in rows if r["bank"] == bank_id and r["correct"] != ""})
            title, prompts = f"Quiz {bank_id}", {}
        info[bank_id] = {"title": title, "prompts": prompts, "graded": graded, "points": len(graded)}
    return info


def grade_dir(directory: str | Path, banks_dir: str | Path | None = None) -> tuple[list[dict], list[dict]]:
    """(one row per student and question, one summary row per question) from every *.jsonl under directory."""
    grades = grade(directory, banks_dir)
    return grades.rows, grades.summary


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
    return text_table(SUMMARY_COLUMNS, [[r[c] for c in SUMMARY_COLUMNS] for r in summary], rule=False)


def score_rows(grades: Grades) -> tuple[list[str], list[dict]]:
    """(columns, rows) of the plain score table: student_id, one column per bank (points), total."""
    columns = ["student_id"] + [f"quiz_{b}" for b in grades.banks] + ["total"]
    rows = [{"student_id": s, **{f"quiz_{b}": grades.scores[s][b] for b in grades.banks}, "total": grades.total(s)}
            for s in grades.students]
    return columns, rows


def canvas_rows(grades: Grades, id_column: str = "SIS User ID") -> tuple[list[str], list[dict]]:
    """(columns, rows) of a Canvas gradebook import: Student, ID, SIS User ID, SIS Login ID, Section, one column
    per bank (named by the bank's title), a 'Points Possible' row first. The labkit student id goes into
    `id_column` (the column Canvas matches students by) and into Student."""
    if id_column not in CANVAS_ID_CHOICES:
        raise ValueError(f"id_column must be one of {', '.join(CANVAS_ID_CHOICES)}, not {id_column!r}")
    names = {b: info["title"] for b, info in grades.banks.items()}
    if len(set(names.values())) < len(names):  # two banks with the same title: add the id to keep columns apart
        names = {b: f"{t} ({b})" for b, t in names.items()}
    columns = CANVAS_COLUMNS + list(names.values())
    points = {c: "" for c in CANVAS_COLUMNS} | {"Student": CANVAS_POINTS_ROW}
    points |= {names[b]: info["points"] for b, info in grades.banks.items()}
    rows = [points]
    for s in grades.students:
        row = {c: "" for c in CANVAS_COLUMNS} | {"Student": s, id_column: s}
        rows.append(row | {names[b]: grades.scores[s][b] for b in grades.banks})
    return columns, rows


def _question_stats(grades: Grades) -> list[dict]:
    """The summary rows with each question's prompt and most common wrong answers."""
    out = []
    for r in grades.summary:
        prompt = grades.banks.get(r["bank"], {}).get("prompts", {}).get(r["question"], "")
        first = " ".join(prompt.split())
        wrong = grades.wrong.get((r["bank"], r["question"]), Counter())
        out.append(dict(r, prompt=first if len(first) <= 160 else first[:157] + "...",
                        wrong=sorted(wrong.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_WRONG]))
    return out


def _headline(grades: Grades) -> str:
    n, b = len(grades.students), len(grades.banks)
    return (f"{n} student{'s' if n != 1 else ''}, {grades.points_possible} points in {b} "
            f"bank{'s' if b != 1 else ''}.")


def _pct(value) -> str:
    return "" if value == "" else f"{value:g} %"


def report_markdown(grades: Grades) -> str:
    """Per-bank scores and per-question statistics (with the most common wrong answers) as Markdown."""
    n = len(grades.students)
    bank_rows = []
    for b, info in grades.banks.items():
        points = [grades.scores[s][b] for s in grades.students]
        full = sum(1 for p in points if info["points"] and p == info["points"])
        bank_rows.append([b, info["title"], info["points"], f"{sum(points) / n:.2f}", full])
    lines = ["# Quiz results", "", _headline(grades), "",
             markdown_table(["Bank", "Title", "Points", "Mean score", "Students with full marks"], bank_rows)]
    for b, info in grades.banks.items():
        rows = [[f"**{q['question']}** {q['prompt']}", q["kind"], q["students"],
                 _pct(q["correct_pct"]) or "not graded", _pct(q["first_try_pct"]), q["mean_attempts"],
                 "<br>".join(f"{a} ({k})" for a, k in q["wrong"]) or "-"]
                for q in _question_stats(grades) if q["bank"] == b]
        lines += ["", f"## {markdown_cell(info['title'])}", "",
                  markdown_table(["Question", "Kind", "Students", "Correct", "Right first try", "Mean attempts",
                                  "Most common wrong answers"], rows)]
    lines += ["", "Correct: right at some attempt. Wrong answers: how many students gave each one (at any attempt)."]
    return "\n".join(lines) + "\n"


def report_html(grades: Grades) -> str:
    """The same report as a standalone HTML page."""
    e = html.escape
    n = len(grades.students)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>Quiz results</title>',
             "<style>body{font-family:sans-serif;max-width:75em;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;"
             "vertical-align:top;text-align:left}th{background:#f3f3f3}td.n{text-align:right}"
             ".prompt{color:#555;font-size:90%}</style></head><body>",
             "<h1>Quiz results</h1>",
             f"<p>{e(_headline(grades))}</p>",
             "<table><tr><th>Bank</th><th>Title</th><th>Points</th><th>Mean score</th>"
             "<th>Students with full marks</th></tr>"]
    for b, info in grades.banks.items():
        points = [grades.scores[s][b] for s in grades.students]
        full = sum(1 for p in points if info["points"] and p == info["points"])
        parts.append(f"<tr><td>{e(b)}</td><td>{e(info['title'])}</td><td class='n'>{info['points']}</td>"
                     f"<td class='n'>{sum(points) / n:.2f}</td><td class='n'>{full}</td></tr>")
    parts.append("</table>")
    for b, info in grades.banks.items():
        parts += [f"<h2>{e(info['title'])}</h2>",
                  "<table><tr><th>Question</th><th>Kind</th><th>Students</th><th>Correct</th><th>Right first try</th>"
                  "<th>Mean attempts</th><th>Most common wrong answers</th></tr>"]
        for q in (q for q in _question_stats(grades) if q["bank"] == b):
            wrong = "<br>".join(f"{e(a)} ({k})" for a, k in q["wrong"]) or "-"
            parts.append(f"<tr><td><b>{e(q['question'])}</b><div class='prompt'>{e(q['prompt'])}</div></td>"
                         f"<td>{e(q['kind'])}</td><td class='n'>{q['students']}</td>"
                         f"<td class='n'>{e(_pct(q['correct_pct']) or 'not graded')}</td>"
                         f"<td class='n'>{e(_pct(q['first_try_pct']))}</td><td class='n'>{q['mean_attempts']}</td>"
                         f"<td>{wrong}</td></tr>")
        parts.append("</table>")
    parts += ["<p>Correct: right at some attempt. Wrong answers: how many students gave each one (at any attempt).</p>",
              "</body></html>"]
    return "\n".join(parts) + "\n"


def write_reports(grades: Grades, out: str | Path, canvas_id: str = "SIS User ID") -> dict[str, Path]:
    """Write every output next to `out` (the per-answer CSV); returns what was written, by kind."""
    out = Path(out)
    base = out.with_suffix("") if out.suffix else out

    def sibling(suffix: str) -> Path:
        return base.with_name(base.name + suffix)

    paths = {"answers": write_csv(grades.rows, out, GRADE_COLUMNS),
             "summary": write_csv(grades.summary, sibling("_summary.csv"), SUMMARY_COLUMNS)}
    columns, rows = score_rows(grades)
    paths["scores"] = write_csv(rows, sibling("_scores.csv"), columns)
    columns, rows = canvas_rows(grades, canvas_id)
    paths["canvas"] = write_csv(rows, sibling("_canvas.csv"), columns)
    paths["markdown"] = sibling("_report.md")
    paths["markdown"].write_text(report_markdown(grades), encoding="utf-8")
    paths["html"] = sibling("_report.html")
    paths["html"].write_text(report_html(grades), encoding="utf-8")
    return paths
