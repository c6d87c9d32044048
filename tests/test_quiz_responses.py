"""Quiz widgets and responses: feedback, the kernel-side object, atomic appends, unwritable paths."""
from __future__ import annotations

import json
import multiprocessing
import warnings

import pytest

from labkit.quiz.responses import append_line, read_records, resolve_student_id, response_path
from labkit.quiz.widgets import show_quiz

RIGHT = "Freeze the backbone, train a linear head on its features, and only then consider unfreezing the top block with a small learning rate."
WRONG = "Train the whole network from scratch, so that ImageNet habits do not get in the way."


@pytest.fixture
def responses(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_RESPONSES_DIR", str(tmp_path / "responses"))
    monkeypatch.delenv("LABKIT_STUDENT_ID", raising=False)
    return tmp_path / "responses"


def lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_wrong_then_right_answer_gives_feedback_and_is_recorded(responses):
    quiz = show_quiz("00", student_id="ada", display=False)
    view = quiz.views["satellite-strategy"]
    assert quiz.answer("satellite-strategy", WRONG).correct is False
    assert "Not quite" in view.feedback.value and "Hint" in view.feedback.value
    assert quiz.answer("satellite-strategy", RIGHT).correct is True
    assert "Correct" in view.feedback.value and "300 images" in view.feedback.value
    records = lines(responses / "ada.jsonl")
    assert [(r["answer"], r["correct"], r["attempt"]) for r in records] == [(WRONG, False, 1), (RIGHT, True, 2)]
    assert quiz.answers["satellite-strategy"]["correct"] is True
    assert quiz.score() == (1, 5)


def test_clicking_check_uses_the_widget_value(responses):
    quiz = show_quiz("00", student_id="ada", display=False)
    view = quiz.views["satellite-strategy"]
    view.button.click()  # nothing chosen: a friendly nudge, nothing recorded
    assert "Pick one of the options" in view.feedback.value and quiz.responses == []
    view.input.value = RIGHT
    view.button.click()
    assert quiz.responses[-1]["correct"] is True


def test_every_kind_through_the_widget(responses):
    quiz = show_quiz("00", student_id="ada", questions=["bert-val-drop", "bert-lr", "acoustic-anomaly-design"],
                     display=False)
    assert list(quiz.views) == ["bert-val-drop", "bert-lr", "acoustic-anomaly-design"]
    opts = quiz.bank.question("bert-val-drop").options
    assert quiz.answer("bert-val-drop", opts[:3]).correct is True
    assert quiz.answer("bert-lr", "1e-3").correct is False
    assert quiz.answer("bert-lr", "2e-5").correct is True
    free = quiz.answer("acoustic-anomaly-design", "Embeddings from an AudioSet model, kNN distance as score.")
    assert free.correct is None and "Recorded" in quiz.views["acoustic-anomaly-design"].feedback.value
    assert [r["correct"] for r in lines(responses / "ada.jsonl")] == [True, False, True, None]


def test_answers_survive_a_kernel_restart(responses):
    show_quiz("00", student_id="ada", display=False).answer("satellite-strategy", WRONG)
    again = show_quiz("00", student_id="ada", display=False)  # a new kernel: a new Quiz on the same file
    assert len(again.log.previous) == 1
    again.answer("satellite-strategy", RIGHT)
    assert [r["attempt"] for r in lines(responses / "ada.jsonl")] == [1, 2]


def test_unwritable_response_path_warns_and_keeps_answer(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")  # works even as root, unlike chmod
    quiz = show_quiz("00", student_id="ada", responses=blocker / "sub", display=False)
    with pytest.warns(UserWarning, match="Could not save your answer"):
        quiz.answer("satellite-strategy", RIGHT)
    assert "Could not save your answer" in quiz.views["satellite-strategy"].feedback.value
    assert "Correct" in quiz.views["satellite-strategy"].feedback.value
    assert quiz.responses[0]["correct"] is True and quiz.log.unsaved
    saved = quiz.save(tmp_path / "rescued.jsonl")
    assert lines(saved)[0]["answer"] == RIGHT and not quiz.log.unsaved


def test_student_id_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_STUDENT_ID", "from-env")
    assert resolve_student_id("given") == "given"
    assert resolve_student_id(None) == "from-env"
    monkeypatch.delenv("LABKIT_STUDENT_ID")
    assert resolve_student_id(None)  # the login name (or "student")
    assert response_path("a/b c", tmp_path).name == "a_b_c.jsonl"
    assert response_path("x", tmp_path / "mine.jsonl") == tmp_path / "mine.jsonl"
    monkeypatch.delenv("LABKIT_RESPONSES_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert response_path("x") == tmp_path / ".labkit" / "responses" / "x.jsonl"


def _writer(path, n, tag):
    for i in range(n):
        append_line(path, {"question": "q", "writer": tag, "i": i, "pad": "x" * 3000})


def test_concurrent_appends_never_interleave(tmp_path):
    path = tmp_path / "shared.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, 150, t)) for t in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a torn line would warn
        records = read_records(path)
    assert len(records) == 300
