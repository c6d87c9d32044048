"""Predict, run, compare: record a student's guess before an experiment, then show it beside the measured result.

    guess = labkit.predict("00-random-vs-pretrained", "How much better will pretrained features be?",
                           options=["about the same", "a few points", "ten points or more"])
    ...  # the experiment
    guess.reveal(measured=f"{gain:+.3f}", text="the gap this run measured")

A guess is stored in the student's response file beside the quiz answers (bank "predictions", kind "prediction"),
so `labkit quiz submit` and `collect` carry it; it is never graded. The latest guess is restored after a kernel
restart. Without a widget frontend (papermill, nbval) the cell shows a plain text that depends only on the
question and the recorded guess.
"""
from __future__ import annotations

import html
import math
from pathlib import Path

from labkit.quiz.responses import ResponseLog

BANK = "predictions"
KIND = "prediction"
_MEASURED = "Measured in this run:"


class PredictionError(ValueError):
    """A guess that does not fit the question (not one of the options, not a number in the range)."""


def _number(value) -> float:
    text = str(value).strip().replace(",", ".").rstrip("%").strip()
    try:
        number = float(text)
    except ValueError:
        raise PredictionError(f"{value!r} is not a number: type a number such as 0.05.") from None
    if not math.isfinite(number):
        raise PredictionError(f"{value!r} is not a finite number: type a number such as 0.05.")
    return number


class Prediction:
    """One prediction question: the recorded guess (or None), its widget, and `reveal` after the run."""

    def __init__(self, id: str, question: str, *, options: list[str] | None = None,
                 range: tuple[float, float] | None = None, unit: str = "", student_id: str | None = None,
                 responses: str | Path | None = None):
        if (options is None) == (range is None):
            raise ValueError(f"prediction {id!r}: give either options=[...] or range=(low, high), not both.")
        if range is not None and not float(range[0]) < float(range[1]):
            raise ValueError(f"prediction {id!r}: range=(low, high) needs low < high, got {range!r}.")
        self.id, self.question, self.unit = str(id), str(question), unit
        self.options = [str(o) for o in options] if options is not None else None
        self.range = (float(range[0]), float(range[1])) if range is not None else None
        self.log = ResponseLog(student_id, responses)
        earlier = [r for r in self.log.previous if r.get("bank") == BANK and r.get("question") == self.id
                   and str(r.get("student_id", self.log.student_id)) == self.log.student_id]
        self.guess = None
        self.restored = False
        for rec in reversed(earlier):  # the latest guess that still fits the question
            try:
                self.guess = self._validate(rec.get("answer"))
                self.restored = True
                break
            except PredictionError:
                continue
        self.revealed: str | None = None
        self._result: list[str] = []  # the reveal as the widget shows it, under the guess
        self._widget = None

    # ---- recording

    def _validate(self, value):
        if self.options is not None:
            if str(value).strip() not in [o.strip() for o in self.options]:
                raise PredictionError(f"{value!r} is not one of the options; choose one of: "
                                      f"{'; '.join(self.options)}.")
            return next(o for o in self.options if o.strip() == str(value).strip())
        number = _number(value)
        low, high = self.range
        if not low <= number <= high:
            raise PredictionError(f"{number:g} is outside the range {low:g} to {high:g}; give a number inside it.")
        return number

    def record(self, value) -> str | None:
        """Record a guess (an option text, or a number in the range); returns a warning when it could not be saved."""
        self.guess = self._validate(value)
        self.restored = False
        _, warning = self.log.record(BANK, self.id, KIND, self.guess, None)
        self._refresh()
        return warning

    # ---- showing

    def _guess_text(self) -> str:
        if self.guess is None:
            return "none recorded yet"
        return (f"{self.guess:g}{' ' + self.unit if self.unit else ''}" if self.options is None else str(self.guess))

    def text(self) -> str:
        """What the cell shows without a widget frontend: the question, the choices and the recorded guess."""
        lines = [f"Predict first: {self.question}"]
        if self.options is not None:
            lines += [f"  ({chr(ord('a') + i)}) {o}" for i, o in enumerate(self.options)]
        else:
            unit = f" {self.unit}" if self.unit else ""
            lines.append(f"  a number from {self.range[0]:g} to {self.range[1]:g}{unit}")
        lines.append(self._status())
        if self.guess is None:
            lines.append("Record it with the widget (or in code, with .record(...) on the object this cell returns).")
        return "\n".join(lines)

    def _status(self) -> str:
        earlier = " (restored from an earlier session)" if self.restored and self.guess is not None else ""
        return f"Your prediction: {self._guess_text()}{earlier}"

    def _result_lines(self, measured, text: str = "") -> list[str]:
        """What the run measured (and a note), without the guess: the widget shows the guess just above it."""
        got = measured if isinstance(measured, str) else f"{measured:.3g}" if isinstance(measured, float) else measured
        return [f"{_MEASURED} {got}.", *([text.strip()] if text else [])]

    def reveal_text(self, measured, text: str = "") -> str:
        """The guess beside the measured result, as plain text."""
        if self.guess is None:
            first = "You recorded no prediction before the run, so there is nothing to compare with this time."
        else:
            first = f"Your prediction: {self._guess_text()}."
        return "\n".join([first, *self._result_lines(measured, text)])

    def reveal(self, measured, text: str = "") -> None:
        """Print the guess beside the measured result (and show it under the widget, if one is on screen)."""
        self.revealed = self.reveal_text(measured, text)
        self._result = self._result_lines(measured, text) if self.guess is not None else self.revealed.splitlines()
        print(self.revealed)
        self._refresh()

    @property
    def widget(self):
        if self._widget is None:
            self._widget = _build_widget(self)
        return self._widget

    def _refresh(self) -> None:
        if self._widget is not None:
            self._widget.status.value = html.escape(self._status())
            if self.revealed:
                self._widget.result.value = "<br>".join(
                    html.escape(t).replace(_MEASURED, f"<b>{_MEASURED}</b>", 1) for t in self._result)

    def _repr_mimebundle_(self, include=None, exclude=None):
        # the live widget where a frontend renders it; the deterministic text everywhere else (nbval compares it)
        bundle = dict(self.widget._repr_mimebundle_(include=include, exclude=exclude) or {})
        bundle["text/plain"] = self.text()
        return bundle

    def __repr__(self) -> str:
        return self.text()


def _build_widget(p: Prediction):
    import ipywidgets as widgets

    from labkit.quiz.widgets import QUIZ_CSS, OptionList, _markup

    prompt = widgets.HTML(f"<b>Predict first.</b> {_markup(p.question)}")
    if p.options is not None:
        entry = OptionList(p.options)
        if p.guess is not None:
            entry.value = p.guess
    else:
        unit = f" ({p.unit})" if p.unit else ""
        entry = widgets.Text(value="" if p.guess is None else f"{p.guess:g}",
                             placeholder=f"a number from {p.range[0]:g} to {p.range[1]:g}{unit}")
    button = widgets.Button(description="Record my guess", button_style="primary")
    status, result = widgets.HTML(""), widgets.HTML("")

    def on_click(_button) -> None:
        if entry.value in (None, ""):
            status.value = "ℹ Choose or type your guess first, then press the button."
            return
        try:
            warning = p.record(entry.value)
        except PredictionError as exc:
            status.value = f"ℹ {html.escape(str(exc))}"
            return
        if warning:
            status.value += f"<br>⚠ {html.escape(warning)}"

    button.on_click(on_click)
    box = widgets.VBox([widgets.HTML(f"<style>{QUIZ_CSS}</style>"), prompt, entry, widgets.HBox([button]),
                        status, result])
    box.add_class("labkit-quiz")
    box.add_class("labkit-prediction")
    box.status, box.result = status, result
    p._widget = box
    p._refresh()
    return box


def predict(id: str, question: str, *, options: list[str] | None = None, range: tuple[float, float] | None = None,
            unit: str = "", student_id: str | None = None, responses: str | Path | None = None,
            display: bool = True) -> Prediction:
    """Ask for a prediction before an experiment; returns the Prediction whose `reveal` runs after it.

    id: a stable id such as "00-random-vs-pretrained" (the record's question id).
    options: the choices, or range=(low, high) for a number (unit: its unit, shown beside it).
    student_id, responses: as for `labkit.quiz.show_quiz` (the same file keeps quiz answers and predictions).
    """
    p = Prediction(id, question, options=options, range=range, unit=unit, student_id=student_id,
                   responses=responses)
    if display:
        from IPython.display import display as _display

        _display(p)
    return p
