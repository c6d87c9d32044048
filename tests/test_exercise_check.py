"""What an exercise check prints: right, not attempted, or not right yet with the why, the hint and the next step
each on a line of its own (a notebook's output wraps one long line mid-word)."""
from __future__ import annotations

from labkit.exercise import check


def test_not_right_yet_puts_why_hint_and_next_step_on_lines_of_their_own(capsys):
    assert check("acc", 0.5, expected=0.8, hint="fit on X_train only, then clf.predict(...) == y_test") is False
    assert capsys.readouterr().out.splitlines() == [
        "❌ `acc` is not right yet: got 0.5, which is too low.",
        "Hint: fit on X_train only, then clf.predict(...) == y_test.",  # a hint without a full stop gets one
        "Change your code in the exercise cell above, run it, then run this cell again."]
    assert check("acc", 0.9, expected=0.8, hint="Compare with the table.") is False
    assert capsys.readouterr().out.splitlines()[1] == "Hint: Compare with the table."
    assert check("acc", 0.5, expected=0.8) is False
    assert len(capsys.readouterr().out.splitlines()) == 2  # no hint line without a hint


def test_right_and_not_attempted_are_one_line(capsys):
    assert check("acc", 0.8, expected=0.8) is True
    assert capsys.readouterr().out == "✅ `acc` is right. Well done!\n"
    assert check("acc", None, expected=0.8) is None
    assert capsys.readouterr().out.startswith("⏳ `acc` is not attempted yet")
