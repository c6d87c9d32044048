"""`labkit quiz grade`: many students' files to per-answer rows, item statistics, first-try and best scores per
bank (plain, Canvas and Moodle CSV), a deadline cut-off, reports of common wrong answers, and a separate list of
answers that cannot be graded (unknown bank or question, unreadable answers, late answers)."""
from __future__ import annotations

import csv
import html
import json
from pathlib import Path

import pytest

from labkit.quiz.grade import grade, grade_dir, parse_deadline
from labkit.quiz.widgets import show_quiz
from labkit.tools.cli import main

QUIET = pytest.mark.filterwarnings("ignore:.*skipped a corrupted line")  # asserted where it matters

RIGHT, WRONG, OTHER = "Freeze the backbone and train a linear head", "Train from scratch", "Unfreeze everything"
BANK_T1 = {
    "bank": "t1", "title": "Quiz T1: strategies",
    "questions": [
        {"id": "strategy", "kind": "single", "prompt": "Which first?", "options": [WRONG, RIGHT, OTHER],
         "answer": RIGHT, "explanation": "A probe first."},
        {"id": "lr", "kind": "numeric", "prompt": "Learning rate?", "answer": 3e-5, "tolerance": 1e-5,
         "explanation": "Small."},
        {"id": "design", "kind": "text", "prompt": "Design one.", "explanation": "Notes."},
    ],
}
BANK_T2 = {
    "bank": "t2", "title": "Quiz T2: layers",
    "questions": [
        {"id": "early", "kind": "single", "prompt": "Early layers?", "options": ["edges", "objects"],
         "answer": "edges", "explanation": "Edges."},
        {"id": "late", "kind": "multiple", "prompt": "Late layers?", "options": ["parts", "classes", "pixels"],
         "answer": ["parts", "classes"], "explanation": "Both."},
    ],
}


@pytest.fixture
def banks(tmp_path):
    d = tmp_path / "banks"
    d.mkdir()
    for data in (BANK_T1, BANK_T2):
        (d / f"{data['bank']}.yaml").write_text(json.dumps(data), encoding="utf-8")  # JSON is YAML
    return d


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    monkeypatch.delenv("LABKIT_STUDENT_ID", raising=False)


def answer_all(folder: Path, banks: Path, plan: dict) -> None:
    """Answer through the widgets' code path: plan = {student: [(bank, question, answer), ...]}."""
    for student, answers in plan.items():
        quizzes = {b: show_quiz(str(banks / f"{b}.yaml"), student_id=student, responses=folder, display=False)
                   for b in ("t1", "t2")}
        for bank_id, question, answer in answers:
            quizzes[bank_id].answer(question, answer)


def append(path: Path, *records: dict) -> None:
    with path.open("a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


@pytest.fixture
def class_dir(tmp_path, banks):
    """ada right first try; bob clicks through the options; cy wrong (and hand-edits a line to 'correct')."""
    d = tmp_path / "collected"
    answer_all(d, banks, {
        "ada": [("t1", "strategy", RIGHT), ("t1", "lr", "3e-5"), ("t2", "early", "edges"),
                ("t2", "late", ["classes", "parts"]), ("t1", "design", "ada's design")],
        "bob": [("t1", "strategy", WRONG), ("t1", "strategy", OTHER), ("t1", "strategy", RIGHT),
                ("t1", "lr", "1e-3"), ("t1", "lr", "3e-5"), ("t2", "early", "objects"), ("t2", "early", "edges"),
                ("t2", "late", ["parts"]), ("t2", "late", ["parts", "classes"])],
        "cy": [("t1", "strategy", WRONG), ("t1", "lr", "1e-3"), ("t1", "lr", "0.1"), ("t1", "design", "cy's")],
    })
    cheat = json.loads((d / "cy.jsonl").read_text().splitlines()[0])
    cheat.update(correct=True, attempt=9, ts="2100-01-01T00:00:00+00:00")  # claims a wrong answer was right
    append(d / "cy.jsonl", cheat)
    with (d / "cy.jsonl").open("a") as f:
        f.write('{"question": "strategy", "answer": \n')  # a corrupted (torn) line
    return d


def test_rows_first_try_and_best(class_dir, banks):
    with pytest.warns(UserWarning, match=r"cy.jsonl:6: skipped a corrupted line"):
        rows, summary = grade_dir(class_dir, banks)
    by = {(r["student_id"], r["question"]): r for r in rows}
    assert by[("ada", "strategy")]["correct"] is True and by[("ada", "strategy")]["first_try_correct"] is True
    assert by[("bob", "strategy")]["attempts"] == 3
    assert by[("bob", "strategy")]["correct"] is True and by[("bob", "strategy")]["first_try_correct"] is False
    assert by[("cy", "strategy")]["correct"] is False  # re-checked against the bank, not trusted
    assert by[("cy", "design")]["correct"] == "" and by[("cy", "design")]["final_answer"] == "cy's"
    s = {r["question"]: r for r in summary}
    assert s["strategy"]["students"] == 3 and s["strategy"]["correct"] == 2 and s["strategy"]["first_try"] == 1
    assert s["strategy"]["first_try_pct"] == 33.3 and s["strategy"]["correct_pct"] == 66.7
    assert s["design"]["correct_pct"] == "" and s["design"]["first_try_pct"] == ""


@QUIET
def test_clicking_through_the_options_earns_no_first_try_marks(class_dir, banks):
    grades = grade(class_dir, banks)
    assert grades.students == ["ada", "bob", "cy"]
    assert {b: info["points"] for b, info in grades.banks.items()} == {"t1": 2, "t2": 2}
    assert grades.scores == {"ada": {"t1": 2, "t2": 2}, "bob": {"t1": 2, "t2": 2}, "cy": {"t1": 0, "t2": 0}}
    assert grades.first_scores == {"ada": {"t1": 2, "t2": 2}, "bob": {"t1": 0, "t2": 0}, "cy": {"t1": 0, "t2": 0}}
    assert [grades.total(s, "first") for s in grades.students] == [4, 0, 0]
    assert [grades.total(s) for s in grades.students] == [4, 4, 0] and grades.points_possible == 4


@QUIET
def test_item_statistics(class_dir, banks):
    grades = grade(class_dir, banks)
    s = {(r["bank"], r["question"]): r for r in grades.summary}
    assert s[("t1", "strategy")]["mean_attempts"] == round((1 + 3 + 2) / 3, 2)  # cy's edited line is an attempt
    assert s[("t1", "lr")]["top_wrong"] == "0.001 (2)"  # the most chosen wrong answer and how many chose it
    assert grades.wrong[("t1", "lr")] == {"0.001": 2, "0.1": 1}
    assert s[("t2", "early")]["first_try_pct"] == 50.0 and s[("t2", "early")]["top_wrong"] == "objects (1)"
    assert ("t1", "design") not in grades.wrong  # free text has no wrong answers


def test_deleting_the_wrong_first_lines_does_not_restore_the_first_try(tmp_path, banks):
    d = tmp_path / "c"
    answer_all(d, banks, {"bob": [("t2", "early", "objects"), ("t2", "early", "edges")]})
    path = d / "bob.jsonl"
    path.write_text(path.read_text().splitlines()[1] + "\n")  # only the right answer, numbered attempt 2, remains
    grades = grade(d, banks)
    assert grades.scores["bob"]["t2"] == 1 and grades.first_scores["bob"]["t2"] == 0


@QUIET
def test_unknown_banks_and_questions_are_listed_apart_and_never_scored(class_dir, banks, tmp_path, capsys):
    forged = {"v": 1, "ts": "2025-01-01T00:00:00+00:00", "student_id": "cy", "kind": "single", "correct": True,
              "attempt": 1, "answer": "x"}
    append(class_dir / "cy.jsonl", dict(forged, bank="99", question="anything"),
           dict(forged, bank="t1", question="no-such-question"),
           dict(forged, bank="../banks/t1", question="strategy"),  # a path is not a bank id
           dict(forged, bank="t1", question="strategy", answer="An option the bank does not have"))
    append(class_dir / "mallory.jsonl", dict(forged, student_id="mallory", bank="99", question="q"))
    grades = grade(class_dir, banks)
    assert grades.scores["cy"] == {"t1": 0, "t2": 0} and "mallory" not in grades.scores
    assert set(grades.banks) == {"t1", "t2"}
    reasons = {(u["student_id"], u["bank"], u["question"]): u["reason"] for u in grades.ungraded}
    assert reasons[("cy", "99", "anything")] == "no bank '99' in the course"
    assert reasons[("cy", "t1", "no-such-question")] == "bank t1 has no question 'no-such-question'"
    assert "not a bank id" in reasons[("cy", "../banks/t1", "strategy")]
    assert reasons[("cy", "t1", "strategy")].startswith("not an answer the bank can check")
    assert reasons[("mallory", "99", "q")] == "no bank '99' in the course"

    out = tmp_path / "out" / "g.csv"
    assert main(["quiz", "grade", str(class_dir), "--banks", str(banks), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "not graded: 5 answers" in printed and "g_ungraded.csv" in printed
    ungraded = list(csv.DictReader((tmp_path / "out" / "g_ungraded.csv").open()))
    assert len(ungraded) == 5 and {u["file"] for u in ungraded} == {"cy.jsonl", "mallory.jsonl"}
    for name in ("g_canvas.csv", "g_moodle.csv", "g_scores.csv", "g.csv"):
        text = (tmp_path / "out" / name).read_text()
        assert "99" not in text and "mallory" not in text and "no-such-question" not in text, name
    md = (tmp_path / "out" / "g_report.md").read_text()
    assert "## Not graded" in md and "no bank '99' in the course" in md


def test_deadline_cut_off(tmp_path, banks, capsys):
    d = tmp_path / "c"
    rec = {"v": 1, "bank": "t2", "question": "early", "kind": "single"}
    d.mkdir()
    append(d / "ada.jsonl",
           dict(rec, student_id="ada", ts="2025-03-01T10:00:00+00:00", answer="objects", attempt=1),
           dict(rec, student_id="ada", ts="2025-03-02T10:00:00+00:00", answer="edges", attempt=2))
    append(d / "bob.jsonl", dict(rec, student_id="bob", ts="2025-03-01T09:00:00Z", answer="edges", attempt=1))
    append(d / "cy.jsonl", dict(rec, student_id="cy", ts="2025-03-05T09:00:00+00:00", answer="edges", attempt=1),
           dict(rec, student_id="cy", ts="yesterday", answer="edges", attempt=2))
    on_time = grade(d, banks)
    assert on_time.scores == {"ada": {"t2": 1}, "bob": {"t2": 1}, "cy": {"t2": 1}}
    cut = grade(d, banks, deadline="2025-03-01T23:59:00+00:00")
    assert cut.scores == {"ada": {"t2": 0}, "bob": {"t2": 1}, "cy": {"t2": 0}}  # cy: only late answers, so 0
    assert cut.first_scores == {"ada": {"t2": 0}, "bob": {"t2": 1}, "cy": {"t2": 0}}
    assert sorted((u["student_id"], u["reason"].split(",")[0]) for u in cut.ungraded) == [
        ("ada", "after the deadline"), ("cy", "after the deadline"), ("cy", "no readable time stamp")]
    assert parse_deadline("2025-03-01T23:59Z") == parse_deadline("2025-03-02T00:59+01:00")
    assert parse_deadline("2025-03-01T23:59").tzinfo is not None  # local time

    out = tmp_path / "g.csv"
    assert main(["quiz", "grade", str(d), "--banks", str(banks), "--out", str(out),
                 "--deadline", "2025-03-01T23:59Z"]) == 0
    printed = capsys.readouterr().out
    assert "deadline: 2025-03-01T23:59+00:00" in printed and "not graded: 3 answers" in printed
    assert "Deadline 2025-03-01T23:59+00:00" in (tmp_path / "g_report.md").read_text()
    assert main(["quiz", "grade", str(d), "--banks", str(banks), "--deadline", "next friday"]) == 1
    assert "not an ISO-8601 time; write it like 2025-03-01T23:59" in capsys.readouterr().err


def test_cli_grade_writes_every_file(class_dir, banks, tmp_path, capsys):
    out = tmp_path / "out" / "grades.csv"
    assert main(["quiz", "grade", str(class_dir), "--banks", str(banks), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "skipped a corrupted line" in printed.err
    assert "3 students" in printed.out and "strategy" in printed.out
    for name in ("grades_canvas.csv", "grades_moodle.csv", "grades_scores.csv", "grades_report.html"):
        assert name in printed.out
    assert {r["student_id"] for r in csv.DictReader(out.open())} == {"ada", "bob", "cy"}

    scores = list(csv.reader((tmp_path / "out" / "grades_scores.csv").open()))
    assert scores == [["student_id", "quiz_t1_first", "quiz_t1_best", "quiz_t2_first", "quiz_t2_best",
                       "total_first", "total_best"],
                      ["ada", "2", "2", "2", "2", "4", "4"], ["bob", "0", "2", "0", "2", "0", "4"],
                      ["cy", "0", "0", "0", "0", "0", "0"]]
    t1, t2 = "Quiz T1: strategies", "Quiz T2: layers"
    lms = [f"{t1} (first try)", f"{t1} (best)", f"{t2} (first try)", f"{t2} (best)"]
    canvas = list(csv.reader((tmp_path / "out" / "grades_canvas.csv").open()))
    assert canvas[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"] + lms
    assert canvas[1][0].strip() == "Points Possible" and canvas[1][1:] == ["", "", "", "", "2", "2", "2", "2"]
    assert canvas[3] == ["bob", "", "bob", "", "", "0", "2", "0", "2"]
    moodle = list(csv.reader((tmp_path / "out" / "grades_moodle.csv").open()))
    assert moodle == [["Username"] + lms, ["ada", "2", "2", "2", "2"], ["bob", "0", "2", "0", "2"],
                      ["cy", "0", "0", "0", "0"]]
    assert list(csv.reader((tmp_path / "out" / "grades_ungraded.csv").open())) == [
        ["student_id", "bank", "question", "answer", "ts", "reason", "file"]]  # nothing to list: header only

    md = (tmp_path / "out" / "grades_report.md").read_text()
    assert "3 students, 4 points in 2 banks." in md
    row = next(line for line in md.splitlines() if "**strategy**" in line)
    assert "| single | 3 | 33.3 % | 66.7 % | 2.0 |" in row and f"{WRONG} (2)" in row
    assert "| t1 | Quiz T1: strategies | 2 | 0.67 | 1.33 | 1 |" in md
    assert "not graded" in next(line for line in md.splitlines() if "**design**" in line)
    page = (tmp_path / "out" / "grades_report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<h2>Quiz T2: layers</h2>" in page
    assert f"{html.escape(WRONG)} (2)" in page and "66.7 %" in page and "Not graded" not in page


def test_cli_grade_lms_id_columns(class_dir, banks, tmp_path):
    out = tmp_path / "g.csv"
    assert main(["quiz", "grade", str(class_dir), "--banks", str(banks), "--out", str(out),
                 "--canvas-id", "SIS Login ID", "--moodle-id", "Email address"]) == 0
    canvas = list(csv.DictReader((tmp_path / "g_canvas.csv").open()))
    assert [(r["Student"], r["SIS User ID"], r["SIS Login ID"]) for r in canvas[1:]] == [
        ("ada", "", "ada"), ("bob", "", "bob"), ("cy", "", "cy")]
    assert next(csv.reader((tmp_path / "g_moodle.csv").open()))[0] == "Email address"
    with pytest.raises(SystemExit):
        main(["quiz", "grade", str(class_dir), "--canvas-id", "Email"])


def test_packaged_banks_grade_too(tmp_path):
    """Without --banks the packaged banks are used."""
    quiz = show_quiz("00", student_id="ada", responses=tmp_path, display=False)
    question = quiz.bank.questions[0]
    quiz.bank.question(question.id).check(question.options[0] if question.options else "1")
    grades = grade(tmp_path)
    assert grades.students == ["ada"] and list(grades.banks) == ["00"] and not grades.ungraded


def test_cli_grade_empty_folder_says_what_to_do(tmp_path, capsys):
    assert main(["quiz", "grade", str(tmp_path)]) == 1
    assert "No *.jsonl response files" in capsys.readouterr().err


def test_cli_validate(tmp_path, capsys):
    bad = tmp_path / "07.yaml"
    bad.write_text("questions:\n  - {id: q1, kind: single, prompt: P, options: [x, y], answer: z, explanation: E}\n")
    assert main(["quiz", "validate", str(bad)]) == 1
    assert "question 'q1': answer 'z' is not among the options" in capsys.readouterr().err
