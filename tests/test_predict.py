"""Predict, run, compare (labkit.predict), written exercises and exercise checks by id (labkit.exercises)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from labkit.claims import Ledger
from labkit.exercises import EXERCISES, WRITTEN, Written, check_ex, model_answer
from labkit.prediction import BANK, Prediction, PredictionError, predict

OPTIONS = ["about the same", "a few points", "ten points or more"]


def lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_guess_is_recorded_with_the_quiz_answers_and_never_graded(tmp_path):
    p = predict("00-gap", "How much better?", options=OPTIONS, student_id="ada", responses=tmp_path, display=False)
    assert p.guess is None
    assert p.record("a few points") is None
    (rec,) = lines(tmp_path / "ada.jsonl")
    assert (rec["bank"], rec["question"], rec["kind"], rec["answer"], rec["correct"]) == (
        BANK, "00-gap", "prediction", "a few points", None)
    assert rec["student_id"] == "ada" and rec["attempt"] == 1


def test_a_guess_outside_the_question_is_refused_with_a_readable_message(tmp_path):
    p = Prediction("x", "?", options=OPTIONS, student_id="ada", responses=tmp_path)
    with pytest.raises(PredictionError, match="not one of the options; choose one of: about the same"):
        p.record("lots")
    n = Prediction("y", "?", range=(0, 1), student_id="ada", responses=tmp_path)
    with pytest.raises(PredictionError, match="outside the range 0 to 1"):
        n.record("1.5")
    with pytest.raises(PredictionError, match="not a number"):
        n.record("high")
    assert not (tmp_path / "ada.jsonl").exists()  # nothing refused is recorded
    with pytest.raises(ValueError, match="either options"):
        Prediction("z", "?", student_id="ada", responses=tmp_path)


def test_reveal_puts_the_guess_beside_the_measured_result(tmp_path, capsys):
    p = Prediction("gap", "?", range=(-0.2, 0.5), unit="accuracy", student_id="ada", responses=tmp_path)
    p.record("0,1")  # a decimal comma is read too
    p.reveal(measured="+0.092", text="pretrained minus random init")
    out = capsys.readouterr().out
    assert out == ("Your prediction: 0.1 accuracy.\nMeasured in this run: +0.092.\npretrained minus random init\n")
    assert p.revealed == out.rstrip("\n")


def test_reveal_without_a_guess_says_so_and_still_shows_the_result(tmp_path):
    p = Prediction("gap", "?", options=OPTIONS, student_id="ada", responses=tmp_path)
    text = p.reveal_text(0.0921)
    assert text.startswith("You recorded no prediction before the run")
    assert "Measured in this run: 0.0921." in text


def test_the_latest_guess_is_restored_after_a_restart(tmp_path):
    first = Prediction("gap", "?", options=OPTIONS, student_id="ada", responses=tmp_path)
    first.record("a few points")
    first.record("ten points or more")
    Prediction("other", "?", options=OPTIONS, student_id="ada", responses=tmp_path).record("about the same")
    again = Prediction("gap", "?", options=OPTIONS, student_id="ada", responses=tmp_path)  # a new kernel
    assert again.guess == "ten points or more" and again.restored
    assert "Your prediction: ten points or more (restored from an earlier session)" in again.text()
    assert again.widget.status.value == "Your prediction: ten points or more (restored from an earlier session)"
    assert again.widget.children[2].value == "ten points or more"  # the option is ticked again
    again.reveal(measured="+0.09")
    assert "Your prediction" not in again.widget.result.value  # said once, by the status line above
    again.record("a few points")  # a new guess in this session is not a restored one
    assert again.widget.status.value == "Your prediction: a few points"
    assert Prediction("gap", "?", options=OPTIONS, student_id="bob", responses=tmp_path).guess is None
    # an option reworded since: the old guess no longer fits and is not shown
    reworded = Prediction("gap", "?", options=["same", "more"], student_id="ada", responses=tmp_path)
    assert reworded.guess is None


def test_plain_text_fallback_is_deterministic_and_the_widget_carries_it(tmp_path):
    p = Prediction("gap", "Which depth?", options=["stem", "last"], student_id="ada", responses=tmp_path)
    assert p.text() == ("Predict first: Which depth?\n  (a) stem\n  (b) last\nYour prediction: none recorded yet\n"
                        "Record it with the widget (or in code, with .record(...) on the object this cell returns).")
    bundle = p._repr_mimebundle_()
    assert bundle["text/plain"] == p.text()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    p.widget.children[2].value = "last"  # the option list; then the button
    p.widget.children[3].children[0].click()
    assert p.guess == "last" and "last" in p.widget.status.value
    p.reveal(measured="last")
    assert "<b>Measured in this run:</b> last." in p.widget.result.value
    assert "Your prediction" not in p.widget.result.value  # said once, by the status line just above
    assert p.revealed.startswith("Your prediction: last.\nMeasured in this run: last.")  # the printed text has both


def test_grading_skips_predictions_and_written_answers(tmp_path):
    from labkit.quiz.grade import grade

    Prediction("gap", "?", options=OPTIONS, student_id="ada", responses=tmp_path).record("a few points")
    Written("05-own-project", student_id="ada", responses=tmp_path).submit("duplicates and statistics")
    grades = grade(tmp_path)
    assert grades.ungraded == [] and grades.rows == []


def test_a_written_answer_is_recorded_then_the_sealed_model_answer_is_shown(tmp_path):
    w = Written("01-second-target", student_id="ada", responses=tmp_path)
    assert "model answer is shown after you submit" in w.text()
    with pytest.raises(ValueError, match="Write a few sentences first"):
        w.submit("  ")
    shown = w.submit("Cut digits earlier: they are far from ImageNet.")
    assert "digits" in shown and shown == model_answer("01-second-target")
    (rec,) = lines(tmp_path / "ada.jsonl")
    assert (rec["bank"], rec["kind"], rec["correct"]) == ("exercises", "written", None)
    again = Written("01-second-target", student_id="ada", responses=tmp_path)
    assert again.answer == "Cut digits earlier: they are far from ImageNet." and shown in again.text()


def test_model_answers_are_sealed():
    for exercise_id, token in WRITTEN.items():
        answer = model_answer(exercise_id)
        assert len(answer.split()) > 15
        assert answer.split()[3] not in token  # not readable in the stored form


def test_check_ex_computes_the_reference_itself(capsys):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 5)), np.arange(60) % 3
    X[:, 0] += y  # learnable
    objects = dict(X_train=X[:40], y_train=y[:40], X_test=X[40:], y_test=y[40:])
    right = EXERCISES["00-probe-by-hand"].expected(**objects)
    assert check_ex("00-probe-by-hand", right, **objects) is True
    assert check_ex("00-probe-by-hand", right - 0.2, **objects) is False
    assert "too low" in capsys.readouterr().out
    assert check_ex("00-probe-by-hand", None, **objects) is None
    logs = [{"val_acc": 0.5, "test_acc": 0.7}, {"val_acc": 0.6, "test_acc": 0.55}, {"val_acc": 0.6, "test_acc": 0.9}]
    assert check_ex("05-honest-acc", 0.55, epoch_logs=logs) is True
    assert check_ex("05-honest-acc", 0.9, epoch_logs=logs) is False
    curves = {"pretrained": {"a": 0.5, "b": 0.9}, "random init": {"a": 0.4, "b": 0.5}}
    capsys.readouterr()
    assert check_ex("01-diverge", "b", curves=curves) is True
    assert "pretrained - random at b: +0.400" in capsys.readouterr().out
    with pytest.raises(KeyError, match="the exercises are"):
        check_ex("00-nope", 1)


def test_check_ex_compares_dicts_key_by_key(capsys, monkeypatch):
    from labkit import exercises

    monkeypatch.setitem(exercises.EXERCISES, "t-dict", exercises.Exercise("acc", lambda: {"a": 0.5, "b": 0.25},
                                                                          atol=0.0015))
    assert check_ex("t-dict", {"b": 0.2501, "a": 0.5}) is True
    assert check_ex("t-dict", {"a": 0.5, "b": 0.3}) is False
    assert check_ex("t-dict", {"a": 0.5}) is False
    assert "its keys are ['a'] but should be ['a', 'b']" in capsys.readouterr().out


def test_check_ex_does_not_compute_the_reference_before_an_attempt(capsys, monkeypatch):
    from labkit import exercises

    def slow_reference():
        raise AssertionError("the reference ran for an answer that is still None")

    monkeypatch.setitem(exercises.EXERCISES, "t-slow", exercises.Exercise("acc", slow_reference))
    assert check_ex("t-slow", None) is None
    assert "not attempted yet" in capsys.readouterr().out


def test_ledger_summary_is_built_from_the_verdicts(monkeypatch):
    monkeypatch.setattr(Ledger, "published", lambda self, cid: None)  # this run alone (nothing published)
    ledger = Ledger("00_tour")
    ledger.demonstrate("cat-in-top5", "A cat photo gets a cat class", shown="tiger cat")
    ledger.compare("pretrained-beats-random", "Pretrained beats random", a=("pretrained", 0.9), b=("random", 0.5))
    lines_ = ledger.summary(n=3)
    assert len(lines_) == 2
    assert lines_[0].startswith(f"{ledger['pretrained-beats-random'].verdict}: Pretrained beats random (")
    assert lines_[1] == "shown: A cat photo gets a cat class (tiger cat)"
    assert ledger.summary(n=1) == lines_[:1]


def test_check_ex_reads_optimizer_groups_and_says_the_shape_it_wants(capsys):
    from labkit.freeze import discriminative_param_groups, freeze_to
    from labkit.zoo import small_cnn

    model = small_cnn(5)
    freeze_to(model, -2)
    groups = discriminative_param_groups(model, 1e-3, decay=0.5)
    assert check_ex("02-groups", groups, model=model, lr=1e-3, decay=0.5) is True
    wrong = [dict(g, lr=1e-3) for g in groups]  # every depth at the same rate
    assert len(groups) >= 2 and check_ex("02-groups", wrong, model=model, lr=1e-3, decay=0.5) is False
    capsys.readouterr()
    assert check_ex("02-groups", [1, 2], model=model, lr=1e-3, decay=0.5) is False
    assert 'should be a list of {"params": [...], "lr": ...} dicts' in capsys.readouterr().out
    memory = {"full fine-tune": {"total_mb": 30.0}, "top 4": {"total_mb": 10.0}, "frozen": {"total_mb": 5.0}}
    assert check_ex("02-memory-ratio", 3.0, memory=memory) is True
    assert check_ex("02-memory-ratio", 6.0, memory=memory) is False


def test_submit_and_collect_carry_predictions_and_written_answers(tmp_path, monkeypatch):
    from labkit.quiz.exchange import collect, init_exchange, submit

    monkeypatch.setenv("LABKIT_EXCHANGE", str(tmp_path / "exchange"))
    monkeypatch.setenv("LABKIT_COURSE", "tl101")
    monkeypatch.setenv("LABKIT_RESPONSES_DIR", str(tmp_path / "responses"))
    monkeypatch.setenv("JUPYTERHUB_USER", "ada")
    init_exchange()
    predict("00-gap", "?", options=OPTIONS, display=False).record("a few points")
    Written("05-own-project").submit("duplicates first")
    _, n, _ = submit()
    assert n == 2
    collect(tmp_path / "collected")
    kinds = [r["kind"] for r in lines(tmp_path / "collected" / "ada" / "responses.jsonl")]
    assert kinds == ["prediction", "written"]


def test_a_quiz_shows_a_plain_text_without_a_widget_frontend(tmp_path):
    from labkit.quiz import show_quiz

    quiz = show_quiz("00", student_id="ada", responses=tmp_path, display=False)
    bundle = quiz._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    text = bundle["text/plain"]
    assert text.startswith(f"Quiz 00: {len(quiz.views)} questions") and "\nQ1. " in text
    first = next(iter(quiz.views))
    quiz.answer(first, "anything")  # answers (and the shuffled option order) never change the text
    assert show_quiz("00", student_id="bob", responses=tmp_path, display=False).text() == text


def test_ledger_summary_puts_a_verdict_the_published_ledger_contradicts_last_and_says_so(monkeypatch):
    ledger = Ledger("00_tour")
    ledger.compare("c-agrees", "A beats B", source="course", a=("A", 0.9), b=("B", 0.5))
    ledger.compare("c-differs", "C beats D", source="course", a=("C", 0.9), b=("D", 0.5))
    ledger.compare("c-new", "E beats F", source="course", a=("E", 0.9), b=("F", 0.5))
    assert {j.verdict for j in ledger.judgements} == {"unresolved"}  # two numbers, no items: no interval
    published = {"c-agrees": {"verdict": "unresolved", "n_seeds": "5"},
                 "c-differs": {"verdict": "holds", "n_seeds": "5"}}
    monkeypatch.setattr(Ledger, "published", lambda self, cid: published.get(cid))
    lines_ = ledger.summary(n=3)
    assert [line.split(" (")[0] for line in lines_] == [
        "unresolved: A beats B", "unresolved: E beats F", "unresolved in this run, holds over 5 seeds: C beats D"]
    assert ledger.summary(n=2) == lines_[:2]  # the contradicted one is the first to go
