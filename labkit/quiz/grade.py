"""Grade many students' JSONL response files: a per-answer CSV, a per-question summary (item statistics),
per-student first-try and best scores per bank (plain CSV, Canvas and Moodle gradebook imports), per-question
statistics with the most common wrong answers (Markdown and HTML), and a separate list of answers that were not
graded (unknown bank or question, an answer the bank cannot read, after the deadline).

Every answer is re-checked against the bank: a student's own `correct` field never counts. An answer that cannot
be checked is listed in the ungraded report and never enters a score or a gradebook file.
"""
from __future__ import annotations

import csv
import datetime as _dt
import html
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from labkit._tables import markdown_cell, markdown_table, text_table
from labkit.quiz.bank import Bank, BankError, load_bank
from labkit.quiz.responses import read_records

GRADE_COLUMNS = ["student_id", "bank", "question", "kind", "attempts", "correct", "first_try_correct",
                 "final_answer", "last_ts"]
SUMMARY_COLUMNS = ["bank", "question", "kind", "students", "correct", "correct_pct", "first_try", "first_try_pct",
                   "mean_attempts", "top_wrong"]
PRINTED_SUMMARY = [c for c in SUMMARY_COLUMNS if c != "top_wrong"]
UNGRADED_COLUMNS = ["student_id", "bank", "question", "answer", "ts", "reason", "file"]
# Canvas gradebook import: these five columns, then one column per assignment; the second row gives the points
CANVAS_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
CANVAS_ID_CHOICES = ("SIS User ID", "SIS Login ID", "ID")
CANVAS_POINTS_ROW = "    Points Possible"  # as Canvas writes it in its own exports
# Moodle grade import (CSV): one column that identifies the user (mapped to a user field when importing), then one
# column per grade item
MOODLE_ID_CHOICES = ("Username", "ID number", "Email address")
TOP_WRONG = 3  # wrong answers listed per question in the report
SCORE_KINDS = (("first", "first try"), ("best", "best"))
_BANK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # a bank named by id, never a path


def parse_time(value) -> _dt.datetime | None:
    """A record's ISO-8601 time stamp as an aware datetime (naive ones are UTC, as labkit writes them); None when
    unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        t = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


def parse_deadline(value: str | _dt.datetime) -> _dt.datetime:
    """A deadline from ISO-8601 text ('2025-03-01T23:59', '2025-03-01T23:59+01:00', '...Z'); a deadline without a
    time zone is in this machine's local time. Raises ValueError with a sentence that names the format."""
    if isinstance(value, _dt.datetime):
        t = value
    else:
        text = str(value).strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            t = _dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"deadline {value!r} is not an ISO-8601 time; write it like 2025-03-01T23:59 (local "
                             "time) or 2025-03-01T23:59+01:00.") from None
    return t if t.tzinfo else t.astimezone()  # naive: local time


def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


class _Banks:
    """The banks the records name, loaded once each; None for a bank that does not exist or does not load."""

    def __init__(self, banks_dir):
        self.dir, self.loaded, self.problems = banks_dir, {}, {}

    def get(self, bank_id: str) -> Bank | None:
        if bank_id not in self.loaded:
            bank = None
            if _BANK_ID.match(bank_id):
                try:
                    bank = load_bank(bank_id, self.dir)
                except FileNotFoundError:
                    self.problems[bank_id] = f"no bank {bank_id!r} in the course"
                except BankError as exc:
                    self.problems[bank_id] = f"bank {bank_id} does not load ({exc})"
            else:
                self.problems[bank_id] = f"{bank_id!r} is not a bank id"
            self.loaded[bank_id] = bank
        return self.loaded[bank_id]


@dataclass
class Grades:
    """Everything `labkit quiz grade` computes from one folder of response files."""

    rows: list[dict]  # one per student and question (GRADE_COLUMNS)
    summary: list[dict]  # one per question (SUMMARY_COLUMNS)
    banks: dict[str, dict] = field(default_factory=dict)  # bank id -> {"title", "prompts", "graded", "points"}
    scores: dict[str, dict[str, int]] = field(default_factory=dict)  # best: student -> bank -> points
    wrong: dict[tuple, Counter] = field(default_factory=dict)  # (bank, question) -> wrong answer -> students
    first_scores: dict[str, dict[str, int]] = field(default_factory=dict)  # right at the first attempt only
    ungraded: list[dict] = field(default_factory=list)  # answers that were not graded (UNGRADED_COLUMNS)
    deadline: _dt.datetime | None = None

    @property
    def students(self) -> list[str]:
        return sorted(self.scores)

    def total(self, student: str, kind: str = "best") -> int:
        table = self.first_scores if kind == "first" else self.scores
        return sum(table.get(student, {}).values())

    @property
    def points_possible(self) -> int:
        return sum(b["points"] for b in self.banks.values())


def _answer_text(answer) -> str:
    """An answer as one line of text (multiple choice: the ticked options joined by '; ')."""
    if isinstance(answer, list):
        return "; ".join(str(a) for a in answer)
    return answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)


def grade(directory: str | Path, banks_dir: str | Path | None = None,
          deadline: str | _dt.datetime | None = None) -> Grades:
    """Grade every *.jsonl under directory.

    Each answer is re-checked against its bank. Answers to an unknown bank or question, answers the bank cannot
    read and (with a deadline) answers given after it or without a readable time are listed in `ungraded` and
    count nowhere else. Per student and question: `correct` (right at some attempt: the best score) and
    `first_try_correct` (the first recorded attempt, numbered 1, was right: the first-try score)."""
    files = sorted(Path(directory).rglob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"No *.jsonl response files under {directory}. Collect the students' answers with "
                                "`labkit quiz collect` (or copy their ~/.labkit/responses/*.jsonl files into one "
                                "folder) and pass that folder.")
    cut = parse_deadline(deadline) if deadline is not None else None
    banks = _Banks(banks_dir)
    groups: dict[tuple, list[tuple[dict, bool | None]]] = defaultdict(list)
    ungraded: list[dict] = []
    late_students: set[str] = set()
    for path in files:
        for rec in read_records(path):  # warns about and skips corrupted lines
            student = str(rec.get("student_id") or path.stem)
            bank_id, qid = str(rec.get("bank", "")), str(rec["question"])
            if rec.get("kind") in ("prediction", "written"):  # a guess (labkit.predict) or a written exercise:
                # recorded for the instructor to read, never graded
                continue

            def skip(reason: str) -> None:
                ungraded.append({"student_id": student, "bank": bank_id, "question": qid,
                                 "answer": _answer_text(rec.get("answer")), "ts": rec.get("ts", ""),
                                 "reason": reason, "file": str(path.relative_to(directory))})

            bank = banks.get(bank_id)
            if bank is None:
                skip(banks.problems[bank_id])
                continue
            try:
                question = bank.question(qid)
            except KeyError:
                skip(f"bank {bank_id} has no question {qid!r}")
                continue
            if cut is not None:
                t = parse_time(rec.get("ts"))
                if t is None or t > cut:
                    skip("no readable time stamp, so it cannot be placed before the deadline" if t is None
                         else "after the deadline")
                    late_students.add(student)
                    continue
            result = question._grade(rec.get("answer"))
            if result.problem:
                skip("not an answer the bank can check (" + result.problem.split(",")[0].rstrip(".") + ")")
                continue
            groups[(student, bank_id, qid)].append((rec, result.correct))
    rows = []
    wrong: dict[tuple, Counter] = defaultdict(Counter)
    for (student, bank_id, qid), items in sorted(groups.items()):
        items.sort(key=lambda item: (str(item[0].get("ts", "")), _int(item[0].get("attempt"), 0)))
        kind = banks.get(bank_id).question(qid).kind
        graded = kind != "text"
        first_rec, first_verdict = items[0]
        final = items[-1][0].get("answer")
        rows.append({
            "student_id": student, "bank": bank_id, "question": qid, "kind": kind, "attempts": len(items),
            "correct": any(v is True for _, v in items) if graded else "",
            # right at the first try: the earliest answer on record was right and is numbered attempt 1 (a file
            # whose earlier, wrong lines were deleted starts at attempt 2 or later)
            "first_try_correct": (first_verdict is True and _int(first_rec.get("attempt"), 1) == 1) if graded else "",
            "final_answer": final if isinstance(final, str) else json.dumps(final, ensure_ascii=False),
            "last_ts": items[-1][0].get("ts", ""),
        })
        if graded:  # each student counts once per distinct wrong answer
            wrong[(bank_id, qid)].update({_answer_text(r.get("answer")) for r, v in items if v is False})
    info = _bank_info(banks, rows)
    students = sorted({r["student_id"] for r in rows} | late_students)
    scores = {s: {b: 0 for b in info} for s in students}
    first = {s: {b: 0 for b in info} for s in students}
    for r in rows:
        if r["question"] in info[r["bank"]]["graded"]:
            scores[r["student_id"]][r["bank"]] += r["correct"] is True
            first[r["student_id"]][r["bank"]] += r["first_try_correct"] is True
    return Grades(rows=rows, summary=summarise(rows, wrong), banks=info, scores=scores, wrong=dict(wrong),
                  first_scores=first, ungraded=ungraded, deadline=cut)


def _bank_info(banks: _Banks, rows: list[dict]) -> dict[str, dict]:
    """Title, prompts, graded questions and points of every bank the students answered (1 point per question)."""
    info = {}
    for bank_id in sorted({r["bank"] for r in rows}):
        bank = banks.get(bank_id)
        graded = [q.id for q in bank.questions if q.kind != "text"]
        info[bank_id] = {"title": bank.title, "prompts": {q.id: q.prompt for q in bank.questions},
                         "graded": graded, "points": len(graded)}
    return info


def grade_dir(directory: str | Path, banks_dir: str | Path | None = None) -> tuple[list[dict], list[dict]]:
    """(one row per student and question, one summary row per question) from every *.jsonl under directory."""
    grades = grade(directory, banks_dir)
    return grades.rows, grades.summary


def summarise(rows: list[dict], wrong: dict[tuple, Counter] | None = None) -> list[dict]:
    """Item statistics, one row per question: students who answered, right at some attempt, right at the first
    try, mean attempts, and the most chosen wrong answer (with how many students chose it)."""
    by_q: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        by_q[(r["bank"], r["question"])].append(r)
    out = []
    for (bank_id, question), rs in sorted(by_q.items()):
        graded = rs[0]["kind"] != "text" and rs[0]["correct"] != ""
        n = len(rs)
        right = sum(1 for r in rs if r["correct"] is True)
        first = sum(1 for r in rs if r["first_try_correct"] is True)
        common = sorted((wrong or {}).get((bank_id, question), Counter()).items(), key=lambda kv: (-kv[1], kv[0]))
        out.append({
            "bank": bank_id, "question": question, "kind": rs[0]["kind"], "students": n,
            "correct": right if graded else "", "correct_pct": round(100 * right / n, 1) if graded else "",
            "first_try": first if graded else "", "first_try_pct": round(100 * first / n, 1) if graded else "",
            "mean_attempts": round(sum(r["attempts"] for r in rs) / n, 2),
            "top_wrong": f"{common[0][0]} ({common[0][1]})" if common else "",
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
    return text_table(PRINTED_SUMMARY, [[r[c] for c in PRINTED_SUMMARY] for r in summary], rule=False)


def score_rows(grades: Grades) -> tuple[list[str], list[dict]]:
    """(columns, rows) of the plain score table: student_id, per bank its first-try and best points
    (quiz_NN_first, quiz_NN_best), then total_first and total_best."""
    columns = ["student_id"] + [f"quiz_{b}_{k}" for b in grades.banks for k, _ in SCORE_KINDS]
    columns += [f"total_{k}" for k, _ in SCORE_KINDS]
    rows = []
    for s in grades.students:
        row = {"student_id": s}
        for b in grades.banks:
            row[f"quiz_{b}_first"], row[f"quiz_{b}_best"] = grades.first_scores[s][b], grades.scores[s][b]
        rows.append(row | {f"total_{k}": grades.total(s, k) for k, _ in SCORE_KINDS})
    return columns, rows


def _lms_names(grades: Grades) -> dict[tuple[str, str], str]:
    """Gradebook column names: (bank, 'first'|'best') -> '<bank title> (first try)' / '<bank title> (best)'."""
    titles = {b: info["title"] for b, info in grades.banks.items()}
    if len(set(titles.values())) < len(titles):  # two banks with the same title: add the id to keep columns apart
        titles = {b: f"{t} ({b})" for b, t in titles.items()}
    return {(b, k): f"{t} ({label})" for b, t in titles.items() for k, label in SCORE_KINDS}


def _lms_scores(grades: Grades, student: str, names: dict) -> dict:
    return {name: (grades.first_scores if k == "first" else grades.scores)[student][b]
            for (b, k), name in names.items()}


def canvas_rows(grades: Grades, id_column: str = "SIS User ID") -> tuple[list[str], list[dict]]:
    """(columns, rows) of a Canvas gradebook import: Student, ID, SIS User ID, SIS Login ID, Section, then two
    columns per bank ('<title> (first try)', '<title> (best)'), a 'Points Possible' row first. The labkit student id
    goes into `id_column` (the column Canvas matches students by) and into Student."""
    if id_column not in CANVAS_ID_CHOICES:
        raise ValueError(f"id_column must be one of {', '.join(CANVAS_ID_CHOICES)}, not {id_column!r}")
    names = _lms_names(grades)
    columns = CANVAS_COLUMNS + list(names.values())
    points = {c: "" for c in CANVAS_COLUMNS} | {"Student": CANVAS_POINTS_ROW}
    points |= {name: grades.banks[b]["points"] for (b, _), name in names.items()}
    rows = [points]
    for s in grades.students:
        row = {c: "" for c in CANVAS_COLUMNS} | {"Student": s, id_column: s}
        rows.append(row | _lms_scores(grades, s, names))
    return columns, rows


def moodle_rows(grades: Grades, id_column: str = "Username") -> tuple[list[str], list[dict]]:
    """(columns, rows) of a Moodle grade import (Grades > Import > CSV file): the labkit student id in `id_column`
    (map it to the matching user field when importing), then two columns per bank as in the Canvas file."""
    if id_column not in MOODLE_ID_CHOICES:
        raise ValueError(f"id_column must be one of {', '.join(MOODLE_ID_CHOICES)}, not {id_column!r}")
    names = _lms_names(grades)
    return [id_column] + list(names.values()), [{id_column: s} | _lms_scores(grades, s, names)
                                                for s in grades.students]


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
    text = (f"{n} student{'s' if n != 1 else ''}, {grades.points_possible} points in {b} "
            f"bank{'s' if b != 1 else ''}.")
    if grades.deadline is not None:
        utc = grades.deadline.astimezone(_dt.timezone.utc)
        text += f" Deadline {utc.isoformat(timespec='minutes')}: later answers are not counted."
    if grades.ungraded:
        text += f" {len(grades.ungraded)} answers were not graded (listed at the end)."
    return text


def _pct(value) -> str:
    return "" if value == "" else f"{value:g} %"


def _bank_table(grades: Grades) -> list[list]:
    rows = []
    n = max(1, len(grades.students))
    for b, info in grades.banks.items():
        best = [grades.scores[s][b] for s in grades.students]
        first = [grades.first_scores[s][b] for s in grades.students]
        full = sum(1 for p in first if info["points"] and p == info["points"])
        rows.append([b, info["title"], info["points"], f"{sum(first) / n:.2f}", f"{sum(best) / n:.2f}", full])
    return rows


BANK_HEADERS = ["Bank", "Title", "Points", "Mean first-try score", "Mean best score",
                "Students with full first-try marks"]
QUESTION_HEADERS = ["Question", "Kind", "Students", "Right first try", "Right at some attempt", "Mean attempts",
                    "Most common wrong answers"]
LEGEND = ("First try: the student's first recorded answer was right (the first-try score; trying the options one "
          "by one does not earn it). Right at some attempt: the best score. Wrong answers: how many students gave "
          "each one (at any attempt).")
UNGRADED_HEADERS = ["Student", "Bank", "Question", "Answer", "Time", "Why not graded"]


def _ungraded_cells(grades: Grades) -> list[list]:
    return [[u["student_id"], u["bank"], u["question"], u["answer"], u["ts"], u["reason"]] for u in grades.ungraded]


def report_markdown(grades: Grades) -> str:
    """Per-bank scores, per-question statistics (with the most common wrong answers) and the ungraded answers."""
    lines = ["# Quiz results", "", _headline(grades), "", markdown_table(BANK_HEADERS, _bank_table(grades))]
    for b, info in grades.banks.items():
        rows = [[f"**{q['question']}** {q['prompt']}", q["kind"], q["students"],
                 _pct(q["first_try_pct"]) or "not graded", _pct(q["correct_pct"]), q["mean_attempts"],
                 "<br>".join(f"{a} ({k})" for a, k in q["wrong"]) or "-"]
                for q in _question_stats(grades) if q["bank"] == b]
        lines += ["", f"## {markdown_cell(info['title'])}", "", markdown_table(QUESTION_HEADERS, rows)]
    lines += ["", LEGEND]
    if grades.ungraded:
        lines += ["", "## Not graded", "",
                  "These answers count in no score and no gradebook file.", "",
                  markdown_table(UNGRADED_HEADERS, _ungraded_cells(grades))]
    return "\n".join(lines) + "\n"


def report_html(grades: Grades) -> str:
    """The same report as a standalone HTML page."""
    e = html.escape

    def table(headers, rows, numeric=()):
        out = ["<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr>"]
        for row in rows:
            out.append("<tr>" + "".join(f"<td class='n'>{e(str(c))}</td>" if i in numeric else f"<td>{c}</td>"
                                        for i, c in enumerate(row)) + "</tr>")
        return out + ["</table>"]

    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>Quiz results</title>',
             "<style>body{font-family:sans-serif;max-width:75em;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;"
             "vertical-align:top;text-align:left}th{background:#f3f3f3}td.n{text-align:right}"
             ".prompt{color:#555;font-size:90%}</style></head><body>",
             "<h1>Quiz results</h1>", f"<p>{e(_headline(grades))}</p>"]
    parts += table(BANK_HEADERS, [[e(str(c)) for c in r] for r in _bank_table(grades)], numeric={2, 3, 4, 5})
    for b, info in grades.banks.items():
        rows = [[f"<b>{e(q['question'])}</b><div class='prompt'>{e(q['prompt'])}</div>", e(q["kind"]),
                 q["students"], _pct(q["first_try_pct"]) or "not graded", _pct(q["correct_pct"]), q["mean_attempts"],
                 "<br>".join(f"{e(a)} ({k})" for a, k in q["wrong"]) or "-"]
                for q in _question_stats(grades) if q["bank"] == b]
        parts += [f"<h2>{e(info['title'])}</h2>"] + table(QUESTION_HEADERS, rows, numeric={2, 3, 4, 5})
    parts.append(f"<p>{e(LEGEND)}</p>")
    if grades.ungraded:
        parts += ["<h2>Not graded</h2>", "<p>These answers count in no score and no gradebook file.</p>"]
        parts += table(UNGRADED_HEADERS, [[e(str(c)) for c in r] for r in _ungraded_cells(grades)])
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_reports(grades: Grades, out: str | Path, canvas_id: str = "SIS User ID",
                  moodle_id: str = "Username") -> dict[str, Path]:
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
    columns, rows = moodle_rows(grades, moodle_id)
    paths["moodle"] = write_csv(rows, sibling("_moodle.csv"), columns)
    paths["ungraded"] = write_csv(grades.ungraded, sibling("_ungraded.csv"), UNGRADED_COLUMNS)
    paths["markdown"] = sibling("_report.md")
    paths["markdown"].write_text(report_markdown(grades), encoding="utf-8")
    paths["html"] = sibling("_report.html")
    paths["html"].write_text(report_html(grades), encoding="utf-8")
    return paths
