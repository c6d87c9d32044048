"""Quiz widgets and responses: feedback, the kernel-side object, atomic appends, unwritable paths, private files,
restored answers, shuffled options."""
from __future__ import annotations

import json
import multiprocessing
import os
import stat
import warnings

import pytest

from labkit.quiz.responses import append_line, read_records, resolve_student_id, response_path
from labkit.quiz.widgets import QUIZ_CSS, OptionList, _markup, option_order, show_quiz

RIGHT = ("Freeze the backbone, train a linear head on its features, and only then consider unfreezing the top block "
         "with a small learning rate.")
WRONG = "Train the whole network from scratch, so that ImageNet habits do not get in the way."


@pytest.fixture
def responses(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_RESPONSES_DIR", str(tmp_path / "responses"))
    monkeypatch.delenv("LABKIT_STUDENT_ID", raising=False)
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
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
    assert quiz.score() == (1, 7)


def test_clicking_check_uses_the_widget_value(responses):
    quiz = show_quiz("00", student_id="ada", display=False)
    view = quiz.views["satellite-strategy"]
    view.button.click()  # nothing chosen: a friendly nudge, nothing recorded
    assert "Pick one of the options" in view.feedback.value and quiz.responses == []
    view.input.value = RIGHT
    view.button.click()
    assert quiz.responses[-1]["correct"] is True


def test_every_kind_through_the_widget(responses):
    quiz = show_quiz("00", student_id="ada", questions=["probe-facts", "holds-threshold", "probe-your-data"],
                     display=False)
    assert list(quiz.views) == ["probe-facts", "holds-threshold", "probe-your-data"]
    opts = quiz.bank.question("probe-facts").options
    assert quiz.answer("probe-facts", opts[:3]).correct is True
    assert quiz.answer("holds-threshold", "1e-3").correct is False
    assert quiz.answer("holds-threshold", "0.01").correct is True
    free = quiz.answer("probe-your-data", "Probe pixels, random init and pretrained on the same test images.")
    assert free.correct is None and "Recorded" in quiz.views["probe-your-data"].feedback.value
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
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
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


def test_response_file_is_private(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_RESPONSES_DIR", str(tmp_path / "home" / ".labkit" / "responses"))
    old = os.umask(0o022)  # the usual umask would give 0644 / 0755
    try:
        quiz = show_quiz("00", student_id="ada", display=False)
        quiz.answer("satellite-strategy", RIGHT)
        quiz.answer("satellite-strategy", WRONG)  # appending keeps the mode
    finally:
        os.umask(old)
    assert stat.S_IMODE(quiz.path.stat().st_mode) == 0o600
    for folder in (tmp_path / "home" / ".labkit", tmp_path / "home" / ".labkit" / "responses"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    saved = quiz.save(tmp_path / "elsewhere" / "copy.jsonl")
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.parent.stat().st_mode) == 0o700


def test_earlier_answers_and_score_are_restored_after_a_restart(responses):
    first = show_quiz("00", student_id="ada", display=False)
    first.answer("satellite-strategy", WRONG)
    first.answer("satellite-strategy", RIGHT)
    first.answer("holds-threshold", "1e-3")  # wrong
    opts = first.bank.question("probe-facts").options
    first.answer("probe-facts", opts[:3])  # right
    first.answer("probe-your-data", "Three rows, one probe, the same test images.")
    assert first.score() == (2, 7)

    again = show_quiz("00", student_id="ada", display=False)  # a new kernel: a new Quiz on the same file
    assert again.responses == [] and again.score() == (2, 7)
    views = again.views
    assert views["satellite-strategy"].value() == RIGHT
    assert "earlier answer" in views["satellite-strategy"].feedback.value
    restored = views["satellite-strategy"].feedback.value
    assert "Correct" in restored and "300 images" in restored
    assert sorted(views["probe-facts"].value()) == sorted(opts[:3])
    assert float(views["holds-threshold"].value()) == 1e-3 and "Not quite" in views["holds-threshold"].feedback.value
    assert views["probe-your-data"].value() == "Three rows, one probe, the same test images."
    assert views["paired-interval"].value() is None and views["paired-interval"].feedback.value == ""
    assert "Score: 2/7" in again.score_label.value
    again.answer("holds-threshold", "1e-2")
    assert again.score() == (3, 7) and "Score: 3/7" in again.score_label.value
    assert [r["attempt"] for r in lines(responses / "ada.jsonl") if r["question"] == "holds-threshold"] == [1, 2]
    assert "restored" in repr(again)

    other = show_quiz("00", student_id="bob", display=False)  # someone else's file: nothing restored
    assert other.score() == (0, 7) and other.views["satellite-strategy"].value() is None


def test_a_hand_edited_earlier_answer_is_rechecked(responses):
    responses.mkdir(parents=True)
    append_line(responses / "ada.jsonl", {"v": 1, "student_id": "ada", "bank": "00", "question": "satellite-strategy",
                                          "kind": "single", "answer": WRONG, "correct": True, "attempt": 1})
    append_line(responses / "ada.jsonl", {"v": 1, "student_id": "ada", "bank": "00", "question": "paired-interval",
                                          "kind": "single", "answer": "an option that no longer exists",
                                          "correct": True, "attempt": 1})
    quiz = show_quiz("00", student_id="ada", display=False)
    assert quiz.score() == (0, 7)
    assert "Not quite" in quiz.views["satellite-strategy"].feedback.value
    assert quiz.views["paired-interval"].value() is None


def test_options_are_shuffled_per_student_and_question(responses):
    bank_options = show_quiz("00", student_id="ada", display=False, shuffle=False).views["satellite-strategy"]
    assert bank_options.input.options == bank_options.question.options
    orders = {}
    for student in ("ada", "bob", "cy", "dee", "eve", "fay"):
        view = show_quiz("00", student_id=student, display=False).views["satellite-strategy"]
        orders[student] = view.input.options
        assert sorted(orders[student]) == sorted(view.question.options)
        assert option_order(view.question.options, student, "00", "satellite-strategy") == orders[student]
    again = show_quiz("00", student_id="ada", display=False).views["satellite-strategy"]
    assert again.input.options == orders["ada"]  # the same order every time for a student
    assert len({tuple(o) for o in orders.values()}) > 1  # and not the same order for everyone
    quiz = show_quiz("00", student_id="bob", display=False)
    assert quiz.answer("satellite-strategy", RIGHT).correct is True  # grading does not depend on the order
    assert quiz.answer("probe-facts", quiz.bank.question("probe-facts").options[:3]).correct is True


def test_each_option_is_its_own_row(responses):
    quiz = show_quiz("00", student_id="ada", display=False)
    view = quiz.views["satellite-strategy"]
    assert isinstance(view.input, OptionList) and len(view.boxes) == 4
    for box in view.boxes:
        assert "labkit-option" in box._dom_classes and box.layout.width == "100%" and box.layout.height == "auto"
    view.boxes[0].value = True
    view.boxes[1].value = True  # single choice: ticking a row clears the other rows
    assert [b.value for b in view.boxes] == [False, True, False, False]
    assert view.value() == view.input.options[1]
    multi = quiz.views["probe-facts"]
    multi.boxes[0].value = multi.boxes[2].value = True
    assert multi.value() == [multi.input.options[0], multi.input.options[2]]
    pooled = show_quiz("01", student_id="ada", display=False).views["pooled-probe-caveats"]
    shown = {o: b.description for o, b in zip(pooled.input.options, pooled.boxes)}
    averaging = next(o for o in shown if o.startswith("Averaging"))
    assert "*where*" in averaging and "<i>where</i>" in shown[averaging]  # options get the prompt markup
    assert all(b.description_allow_html for b in pooled.boxes)
    assert "white-space: normal" in QUIZ_CSS and "labkit-style" in quiz.widget.children[0]._dom_classes


def test_prompt_markup():
    assert _markup("Tick **all**, *then* `x * y` and _this_") == (
        "Tick <b>all</b>, <i>then</i> <code>x * y</code> and <i>this</i>")
    assert _markup("lambda/2 * sum (theta - theta*)^2 and snake_case_name") == (
        "lambda/2 * sum (theta - theta*)^2 and snake_case_name")
    assert _markup("<b>not html</b>\n\nnext") == "&lt;b&gt;not html&lt;/b&gt;<br><br>next"
    # a span that a bank's wrapped prompt breaks over two lines is still one span (bank 02's 2x2 matrix question)
    assert _markup("for *small data, similar\ndomain*. And **two\nlines**") == (
        "for <i>small data, similar domain</i>. And <b>two lines</b>")
    assert _markup("*one\n\nparagraph*") == "*one<br><br>paragraph*"  # never across paragraphs


def test_jupyterhub_user_comes_first(monkeypatch):
    """Order: the parameter, $JUPYTERHUB_USER, $LABKIT_STUDENT_ID, the login name."""
    monkeypatch.setenv("JUPYTERHUB_USER", "ada@example.org")
    monkeypatch.setenv("LABKIT_STUDENT_ID", "from-env")
    assert resolve_student_id("given") == "given"
    assert resolve_student_id(None) == resolve_student_id("") == "ada@example.org"
    monkeypatch.setenv("JUPYTERHUB_USER", "  ")  # blank: not an id
    assert resolve_student_id(None) == "from-env"


def test_a_class_of_jovyans_stays_separate_people(responses, monkeypatch):
    """zero-to-jupyterhub: every server runs as the OS user jovyan; JUPYTERHUB_USER tells the students apart."""
    import getpass

    monkeypatch.setattr(getpass, "getuser", lambda: "jovyan")
    monkeypatch.setenv("USER", "jovyan")
    for student, answer in [("ada", RIGHT), ("bob", WRONG), ("cy", RIGHT)]:
        monkeypatch.setenv("JUPYTERHUB_USER", student)
        quiz = show_quiz("00", questions=["satellite-strategy"], display=False)
        assert quiz.student_id == student
        quiz.answer("satellite-strategy", answer)
    files = sorted(p.name for p in responses.glob("*.jsonl"))
    assert files == ["ada.jsonl", "bob.jsonl", "cy.jsonl"]
    assert [r["student_id"] for r in lines(responses / "bob.jsonl")] == ["bob"]


def test_checks_through_a_quiz_bank_land_in_the_quiz_file(responses):
    """quiz.bank.question(...).check(...) from code is an attempt, in the same file and numbering as a click."""
    quiz = show_quiz("00", student_id="prober", questions=["satellite-strategy"], display=False)
    question = quiz.bank.question("satellite-strategy")
    for option in question.options:
        question.check(option)
    quiz.answer("satellite-strategy", RIGHT)
    recs = lines(quiz.path)
    assert len(recs) == len(question.options) + 1
    assert [r["attempt"] for r in recs] == list(range(1, len(recs) + 1))
    assert quiz.score() == (1, 1) and quiz.responses == quiz.log.records


def test_probing_from_a_second_bank_object_still_costs_the_first_try(responses, monkeypatch):
    """A quiz shown first, then the options probed through a separately loaded bank, then the right one clicked:
    one numbering in the file, and the grader gives no first-try point."""
    from labkit.quiz import load_bank
    from labkit.quiz.grade import grade

    monkeypatch.setenv("LABKIT_STUDENT_ID", "prober")
    quiz = show_quiz("00", questions=["satellite-strategy"], display=False)
    probe = load_bank("00").question("satellite-strategy")
    wrong = [o for o in probe.options if o != RIGHT]
    assert [probe.check(o).attempt for o in wrong] == list(range(1, len(wrong) + 1))
    assert quiz.answer("satellite-strategy", RIGHT).attempt == len(wrong) + 1
    grades = grade(responses)
    assert grades.scores == {"prober": {"00": 1}} and grades.first_scores == {"prober": {"00": 0}}


def test_the_answers_file_is_shown_without_machine_folders(monkeypatch, tmp_path):
    from labkit.quiz.responses import RESPONSES_ENV, display_path

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(RESPONSES_ENV, raising=False)
    assert display_path(tmp_path / "home" / ".labkit" / "responses" / "ada.jsonl") == "~/.labkit/responses/ada.jsonl"
    monkeypatch.setenv(RESPONSES_ENV, str(tmp_path / "class"))
    assert display_path(tmp_path / "class" / "ada.jsonl") == f"${RESPONSES_ENV}/ada.jsonl"
    elsewhere = tmp_path / "shared" / "ada.jsonl"
    assert display_path(elsewhere) == str(elsewhere)  # a file given explicitly elsewhere: its own path
