"""`labkit quiz grade`: many students' files to a per-answer CSV, a per-question summary, scores per bank (plain and
Canvas CSV) and a report of common wrong answers; corrupted lines skipped."""
from __future__ import annotations

import csv
import html
import json
from pathlib import Path

import pytest

from labkit.cli import main
from labkit.quiz.bank import read_yaml, validate_source
from labkit.quiz.grade import grade, grade_dir
from labkit.quiz.widgets import show_quiz

REPO = Path(__file__).resolve().parents[1]
RIGHT = ("Freeze the backbone, train a linear head on its features, and only then consider unfreezing the top block "
         "with a small learning rate.")
WRONG = "Train the whole network from scratch, so that ImageNet habits do not get in the way."


@pytest.fixture
def class_dir(tmp_path):
    """Three students: right first try, right second try, wrong; plus one hand-edited 'correct'."""
    d = tmp_path / "collected"
    for student, answers in {"ada": [RIGHT], "bob": [WRONG, RIGHT], "cy": [WRONG]}.items():
        quiz = show_quiz("00", student_id=student, responses=d, display=False)
        for a in answers:
            quiz.answer("satellite-strategy", a)
        quiz.answer("acoustic-anomaly-design", f"{student}'s design")
    cheat = json.loads((d / "cy.jsonl").read_text().splitlines()[0])
    cheat.update(correct=True, attempt=9, ts="2100-01-01T00:00:00+00:00")  # claims a wrong answer was right
    with (d / "cy.jsonl").open("a") as f:
        f.write(json.dumps(cheat) + "\n")
        f.write('{"question": "satellite-strategy", "answer": \n')  # a corrupted (torn) line
    return d


def test_grade_dir_rows_and_summary(class_dir):
    with pytest.warns(UserWarning, match=r"cy.jsonl:4: skipped a corrupted line"):
        rows, summary = grade_dir(class_dir)
    by = {(r["student_id"], r["question"]): r for r in rows}
    assert by[("ada", "satellite-strategy")]["correct"] is True
    assert by[("ada", "satellite-strategy")]["first_try_correct"] is True
    assert by[("bob", "satellite-strategy")]["attempts"] == 2
    assert by[("bob", "satellite-strategy")]["first_try_correct"] is False
    assert by[("cy", "satellite-strategy")]["correct"] is False  # re-checked against the bank, not trusted
    assert by[("cy", "acoustic-anomaly-design")]["correct"] == ""  # free text: recorded, not graded
    assert by[("cy", "acoustic-anomaly-design")]["final_answer"] == "cy's design"
    s = {r["question"]: r for r in summary}
    assert s["satellite-strategy"]["students"] == 3
    assert s["satellite-strategy"]["correct"] == 2 and s["satellite-strategy"]["first_try_pct"] == 33.3
    assert s["acoustic-anomaly-design"]["correct_pct"] == ""


def test_cli_grade_writes_csvs(class_dir, tmp_path, capsys):
    out = tmp_path / "grades.csv"
    assert main(["quiz", "grade", str(class_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "skipped a corrupted line" in printed.err
    assert "3 students" in printed.out and "satellite-strategy" in printed.out
    rows = list(csv.DictReader(out.open()))
    assert {r["student_id"] for r in rows} == {"ada", "bob", "cy"}
    summary = list(csv.DictReader((tmp_path / "grades_summary.csv").open()))
    assert {r["question"] for r in summary} == {"satellite-strategy", "acoustic-anomaly-design"}


def test_cli_grade_empty_folder_says_what_to_do(tmp_path, capsys):
    assert main(["quiz", "grade", str(tmp_path)]) == 1
    assert "No *.jsonl response files" in capsys.readouterr().err


def test_cli_validate(tmp_path, capsys):
    bad = tmp_path / "07.yaml"
    bad.write_text("questions:\n  - {id: q1, kind: single, prompt: P, options: [x, y], answer: z, explanation: E}\n")
    assert main(["quiz", "validate", str(bad)]) == 1
    assert "question 'q1': answer 'z' is not among the options" in capsys.readouterr().err


def _source_question(bank_id, question_id):
    return next(q for q in validate_source(read_yaml(REPO / "solutions" / "quiz" / f"{bank_id}.yaml"), bank_id)
                if q["id"] == question_id)


@pytest.fixture
def course_dir(tmp_path):
    """Three students' response files over banks 00 and 02."""
    high_lr = _source_question("02", "high-lr-corruption")
    high_lr_wrong = next(o for o in high_lr["options"] if o != high_lr["answer"])
    plan = {
        "ada": [("00", "satellite-strategy", RIGHT), ("00", "bert-lr", "3e-5"),
                ("02", "high-lr-corruption", high_lr["answer"]),
                ("00", "acoustic-anomaly-design", "Audio embeddings.")],
        "bob": [("00", "satellite-strategy", WRONG), ("00", "satellite-strategy", RIGHT), ("00", "bert-lr", "1e-3"),
                ("02", "high-lr-corruption", high_lr_wrong)],
        "cy": [("00", "satellite-strategy", WRONG), ("00", "bert-lr", "1e-3"), ("00", "bert-lr", "0.1"),
               ("02", "high-lr-corruption", high_lr_wrong)],
    }
    d = tmp_path / "collected"
    for student, answers in plan.items():
        quizzes = {b: show_quiz(b, student_id=student, responses=d / "inbox", display=False) for b in ("00", "02")}
        for bank_id, question, answer in answers:
            quizzes[bank_id].answer(question, answer)
    return d, high_lr_wrong


def test_scores_per_student_and_bank(course_dir):
    d, _ = course_dir
    grades = grade(d)
    assert grades.students == ["ada", "bob", "cy"]
    assert {b: info["points"] for b, info in grades.banks.items()} == {"00": 5, "02": 5}
    assert grades.scores == {"ada": {"00": 2, "02": 1}, "bob": {"00": 1, "02": 0}, "cy": {"00": 0, "02": 0}}
    assert [grades.total(s) for s in grades.students] == [3, 1, 0] and grades.points_possible == 10
    assert grades.wrong[("00", "satellite-strategy")] == {WRONG: 2}
    assert grades.wrong[("00", "bert-lr")] == {"0.001": 2, "0.1": 1}
    assert ("00", "acoustic-anomaly-design") not in grades.wrong  # free text has no wrong answers


def test_cli_grade_writes_scores_canvas_and_reports(course_dir, tmp_path, capsys):
    d, high_lr_wrong = course_dir
    out = tmp_path / "out" / "grades.csv"
    assert main(["quiz", "grade", str(d), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "grades_canvas.csv" in printed and "grades_report.html" in printed

    scores = list(csv.reader((tmp_path / "out" / "grades_scores.csv").open()))
    assert scores == [["student_id", "quiz_00", "quiz_02", "total"],
                      ["ada", "2", "1", "3"], ["bob", "1", "0", "1"], ["cy", "0", "0", "0"]]

    canvas = list(csv.reader((tmp_path / "out" / "grades_canvas.csv").open()))
    title00, title02 = "Quiz 00: transfer learning, first principles", "Quiz 02: freeze strategies"
    assert canvas[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", title00, title02]
    assert canvas[1][0].strip() == "Points Possible" and canvas[1][1:] == ["", "", "", "", "5", "5"]
    assert canvas[2:] == [["ada", "", "ada", "", "", "2", "1"], ["bob", "", "bob", "", "", "1", "0"],
                          ["cy", "", "cy", "", "", "0", "0"]]

    md = (tmp_path / "out" / "grades_report.md").read_text()
    assert "3 students, 10 points in 2 banks." in md
    row = next(line for line in md.splitlines() if "**satellite-strategy**" in line)
    assert "| single | 3 | 66.7 % | 33.3 % | 1.33 |" in row and f"{WRONG} (2)" in row
    bert = next(line for line in md.splitlines() if "**bert-lr**" in line)
    assert bert.index("0.001 (2)") < bert.index("0.1 (1)")  # most common first
    assert f"{high_lr_wrong} (2)" in md and "| 00 | Quiz 00: transfer learning, first principles | 5 | 1.00 | 0 |" in md
    assert "not graded" in next(line for line in md.splitlines() if "**acoustic-anomaly-design**" in line)

    page = (tmp_path / "out" / "grades_report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<h2>Quiz 02: freeze strategies</h2>" in page
    assert f"{html.escape(WRONG)} (2)" in page and "66.7 %" in page


def test_cli_grade_canvas_id_column(course_dir, tmp_path):
    d, _ = course_dir
    out = tmp_path / "g.csv"
    assert main(["quiz", "grade", str(d), "--out", str(out), "--canvas-id", "SIS Login ID"]) == 0
    canvas = list(csv.DictReader((tmp_path / "g_canvas.csv").open()))
    assert [(r["Student"], r["SIS User ID"], r["SIS Login ID"]) for r in canvas[1:]] == [
        ("ada", "", "ada"), ("bob", "", "bob"), ("cy", "", "cy")]
    with pytest.raises(SystemExit):
        main(["quiz", "grade", str(d), "--canvas-id", "Email"])
