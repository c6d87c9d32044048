"""`labkit quiz grade`: many students' files to a CSV and a per-question summary; corrupted lines skipped."""
from __future__ import annotations

import csv
import json

import pytest

from labkit.cli import main
from labkit.quiz.grade import grade_dir
from labkit.quiz.widgets import show_quiz

RIGHT = "Freeze the backbone, train a linear head on its features, and only then consider unfreezing the top block with a small learning rate."
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
