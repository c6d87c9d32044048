"""Quiz widgets: one box per question, immediate feedback, every answer recorded, earlier answers restored.

Choice questions show one clickable row per option (a checkbox and its text, which wraps inside the row), in an
order shuffled per student and question; answers are option texts, so grading does not depend on the order.
"""
from __future__ import annotations

import hashlib
import html
import random
import re
from pathlib import Path

import ipywidgets as widgets
import traitlets

from labkit.quiz.bank import Bank, Question, Result, load_bank
from labkit.quiz.responses import ResponseLog, display_path

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
# *italics* or _italics_: the markers hug the text and are not part of a word (so `a * b`, theta* and
# snake_case names stay as they are)
_ITALIC = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*\n]+?)(?<=[^\s*])\*(?![\w*])"
                     r"|(?<!\w)_(?=[^\s_])([^_\n]+?)(?<=[^\s_])_(?!\w)")


def _markup(text: str) -> str:
    """Tiny Markdown: escape HTML, then `code`, **bold**, *italics* (or _italics_) and blank-line paragraphs."""
    codes: list[str] = []

    def keep_code(m: re.Match) -> str:
        codes.append(f"<code>{m.group(1)}</code>")
        return f"\x00{len(codes) - 1}\x00"

    def inline(paragraph: str) -> str:  # one paragraph, its lines joined: *a span* may cross a line break
        out = _BOLD.sub(r"<b>\1</b>", paragraph.replace("\n", " "))
        return _ITALIC.sub(lambda m: f"<i>{m.group(1) or m.group(2)}</i>", out)

    out = _CODE.sub(keep_code, html.escape(text.strip()))  # nothing inside `code` is bold or italic
    out = "<br><br>".join(inline(p) for p in re.split(r"\n\s*\n", out))
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], out)


def option_order(options: list[str], student_id: str, bank: str, question_id: str) -> list[str]:
    """The options in this student's display order: shuffled, seeded by (student id, bank, question id)."""
    seed = hashlib.sha256("\x1f".join(["labkit-quiz-order", str(student_id), str(bank), str(question_id)])
                          .encode("utf-8")).digest()
    order = list(options)
    random.Random(int.from_bytes(seed[:8], "big")).shuffle(order)
    return order


# Inserted once per quiz. Each option is a Checkbox whose label (checkbox + text) is one full-width row; the
# text wraps inside it. Without this style the rows still never overlap (the text is cut off with an ellipsis).
QUIZ_CSS = """
.labkit-quiz .labkit-prompt .widget-html-content, .labkit-quiz .labkit-feedback .widget-html-content,
.labkit-quiz .labkit-title .widget-html-content { line-height: 1.45; white-space: normal; }
.labkit-quiz .labkit-options { width: 100%; }
.labkit-quiz .labkit-option { width: 100%; height: auto; line-height: 1.4; margin: 2px 0; }
.labkit-quiz .labkit-option > label.widget-label-basic {
  display: flex; align-items: flex-start; gap: 0.6em; width: 100%; box-sizing: border-box; height: auto;
  white-space: normal; overflow: visible; text-overflow: clip; line-height: 1.4; padding: 5px 8px;
  border: 1px solid var(--jp-border-color2, #ddd); border-radius: 4px; cursor: pointer; }
.labkit-quiz .labkit-option > label.widget-label-basic:hover { background: var(--jp-layout-color2, #eee); }
.labkit-quiz .labkit-option > label.widget-label-basic:has(input:checked) {
  border-color: var(--jp-brand-color1, #1976d2); background: var(--jp-layout-color2, #eef); }
.labkit-quiz .labkit-option > label.widget-label-basic > span {
  white-space: normal; overflow: visible; overflow-wrap: anywhere; flex: 1 1 auto; min-width: 0; }
.labkit-quiz .labkit-option input[type="checkbox"] {
  flex: 0 0 auto; width: 1em; height: 1em; margin: 0.2em 0 0 0; font-size: inherit; align-self: flex-start;
  cursor: pointer; }
.labkit-quiz .labkit-single input[type="checkbox"] {
  appearance: none; -webkit-appearance: none; border: 1.5px solid var(--jp-ui-font-color2, #666);
  border-radius: 50%; background: var(--jp-layout-color0, #fff); }
.labkit-quiz .labkit-single input[type="checkbox"]:checked {
  border-color: var(--jp-brand-color1, #1976d2);
  background: radial-gradient(circle, var(--jp-brand-color1, #1976d2) 0 38%, transparent 45%); }
.labkit-quiz .labkit-option input[type="checkbox"]:focus-visible {
  outline: 2px solid var(--jp-brand-color1, #1976d2); outline-offset: 1px; }
"""


class OptionList(widgets.VBox):
    """One clickable, wrapping row per option. `value`: the chosen option text or None (single choice), or the
    tuple of ticked option texts (multiple choice); set it to choose from code."""

    value = traitlets.Any(None)  # kernel-side only; the checkboxes carry the state to the browser

    def __init__(self, options: list[str], multiple: bool = False):
        self.options, self.multiple = list(options), multiple
        # the text shown is the option with the same tiny markup as prompts; answers stay the plain option texts
        self.boxes = [widgets.Checkbox(value=False, description=_markup(o), description_allow_html=True, indent=False,
                                       layout=widgets.Layout(width="100%", height="auto")) for o in self.options]
        super().__init__(self.boxes, layout=widgets.Layout(width="100%"))
        self.add_class("labkit-options")
        self.add_class("labkit-multiple" if multiple else "labkit-single")
        self._syncing = False
        self.value = () if multiple else None
        for box in self.boxes:
            box.add_class("labkit-option")
            box.observe(self._apply_box, names="value")
        self.observe(self._apply_value, names="value")

    def _apply_box(self, change) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            if not self.multiple and change["new"]:  # one choice: ticking a row clears the others
                for box in self.boxes:
                    if box is not change["owner"]:
                        box.value = False
            self.value = self._chosen()
        finally:
            self._syncing = False

    def _chosen(self):
        chosen = [o for o, b in zip(self.options, self.boxes) if b.value]
        return tuple(chosen) if self.multiple else (chosen[0] if chosen else None)

    def _apply_value(self, change) -> None:
        if self._syncing:
            return
        new = change["new"]
        if self.multiple:
            wanted = {str(v).strip() for v in (new or ())}
        else:
            wanted = {str(new).strip()} if new is not None else set()
        self._syncing = True
        try:
            for option, box in zip(self.options, self.boxes):
                box.value = option.strip() in wanted
            self.value = self._chosen()
        finally:
            self._syncing = False


class QuestionView:
    """The widgets of one question and the glue that checks and records an answer."""

    def __init__(self, quiz: "Quiz", question: Question, number: int):
        self.quiz, self.question = quiz, question
        header = widgets.HTML(f"<b>Q{number}.</b> {_markup(question.prompt)}")
        header.add_class("labkit-prompt")
        if question.kind in ("single", "multiple"):
            order = (option_order(question.options, quiz.student_id, question.bank, question.id) if quiz.shuffle
                     else list(question.options))
            self.input = OptionList(order, multiple=question.kind == "multiple")
            self.boxes = self.input.boxes
        elif question.kind == "numeric":
            unit = f" ({question.unit})" if question.unit else ""
            # the formats it reads, not a hint at the answer's size (a pixel count, a share, a learning rate)
            self.input = widgets.Text(placeholder=f"a number{unit}, like 12, 0.05 or 2e-5",
                                      layout=widgets.Layout(width="32em", max_width="100%"))  # the whole hint shows
        else:
            self.input = widgets.Textarea(placeholder="Your answer, in a few sentences",
                                          layout=widgets.Layout(width="95%", height="7em"))
        self.input.add_class("labkit-input")
        self.button = widgets.Button(description="Submit" if question.kind == "text" else "Check",
                                     button_style="primary")
        self.button.add_class("labkit-check")
        self.feedback = widgets.HTML("")
        self.feedback.add_class("labkit-feedback")
        self.button.on_click(lambda _button: self.submit())
        self.box = widgets.VBox([header, self.input, widgets.HBox([self.button]), self.feedback])
        self.box.add_class("labkit-question")
        self.box.add_class(f"labkit-q-{question.id}")

    def value(self):
        """The answer currently entered in the widget."""
        if self.question.kind == "multiple":
            return list(self.input.value)
        return self.input.value

    def set_value(self, answer) -> None:
        """Put an answer into the widget (used by Quiz.answer and when earlier answers are restored)."""
        if self.question.kind == "multiple":
            self.input.value = tuple(str(a) for a in (answer or []) if isinstance(a, str))
        elif self.question.kind == "single":
            self.input.value = answer if answer in self.question.options else None
        else:
            self.input.value = "" if answer is None else str(answer)

    def restore(self, record: dict) -> Result | None:
        """Show an answer from an earlier session (re-checked against the bank), without recording it again."""
        result = self.question._grade(record.get("answer"))  # shown again, not a new attempt
        if result.problem:  # no longer a valid answer (e.g. the option was reworded): leave the question blank
            return None
        self.set_value(result.answer)
        self.feedback.value = "<i>↺ Your earlier answer.</i> " + feedback_html(self.question, result)
        return result

    def submit(self) -> Result:
        """Check the current answer (which records it in the quiz's log) and show feedback."""
        result = self.question.check(self.value())
        if result.problem:
            self.feedback.value = f"<span class='labkit-info'>ℹ {html.escape(result.problem)}</span>"
            return result
        self.feedback.value = feedback_html(self.question, result, result.warning)
        self.quiz._update_score()
        return result


def feedback_html(question: Question, result: Result, warning: str | None = None) -> str:
    """The feedback shown under a question after an answer."""
    if result.correct is None:  # free text
        text = "✎ Recorded, thank you."
        if result.explanation:
            text += f" Compare with these notes: {_markup(result.explanation)}"
    elif result.correct:
        text = "✔ <b>Correct!</b>"
        if result.explanation:
            text += f" {_markup(result.explanation)}"
    else:
        text = "✘ <b>Not quite.</b> "
        text += f"Hint: {_markup(question.hint)} Try again." if question.hint else "Re-read the question and try again."
    if warning:
        text += f"<br><span class='labkit-warning'>⚠ {html.escape(warning)}</span>"
    return text


class Quiz:
    """The kernel-side quiz: its widgets, and every answer given in this session (also in the JSONL file).

    When the student's response file already holds answers to these questions (an earlier session, a kernel
    restart), the latest one per question is shown again, re-checked against the bank, and counts in score().
    """

    def __init__(self, bank: Bank, student_id: str | None = None, questions: list[str] | None = None,
                 responses: str | Path | None = None, shuffle: bool = True):
        self.bank, self.shuffle = bank, shuffle
        self.log = ResponseLog(student_id, responses)
        chosen = [bank.question(q) for q in questions] if questions else list(bank.questions)
        for q in bank.questions:  # every check of this bank's questions, from a widget or from code, goes on record
            q.log = self.log
        self.views = {q.id: QuestionView(self, q, i + 1) for i, q in enumerate(chosen)}
        title = widgets.HTML(f"<h3>{html.escape(bank.title)}</h3>"
                             f"<small>Answers are saved for <code>{html.escape(self.log.student_id)}</code> "
                             f"in <code>{html.escape(display_path(self.log.path))}</code>.</small>")
        title.add_class("labkit-title")
        self.score_label = widgets.HTML("")
        self.score_label.add_class("labkit-score")
        style = widgets.HTML(f"<style>{QUIZ_CSS}</style>", layout=widgets.Layout(height="0px", margin="0px"))
        style.add_class("labkit-style")
        self.earlier: dict[str, dict] = {}  # question id -> the latest answer from an earlier session
        self._earlier_right: set[str] = set()  # questions answered right in an earlier session
        self._restore()
        self._update_score()
        self.widget = widgets.VBox([style, title, self.score_label] + [v.box for v in self.views.values()])
        self.widget.add_class("labkit-quiz")

    def _restore(self) -> None:
        """Show the latest earlier answer of every question and remember which ones were right."""
        mine = [r for r in self.log.previous if r.get("bank") == self.bank.id and r.get("question") in self.views
                and str(r.get("student_id", self.log.student_id)) == self.log.student_id]
        for rec in mine:
            question = self.views[rec["question"]].question
            if question.kind != "text" and question._grade(rec.get("answer")).correct:
                self._earlier_right.add(question.id)
            self.earlier[question.id] = rec  # records are in file order, so the last one wins
        for qid, rec in self.earlier.items():
            self.views[qid].restore(rec)

    def _update_score(self) -> None:
        right, graded = self.score()
        if graded:
            self.score_label.value = f"<b>Score: {right}/{graded}</b>" + (
                " <small>(earlier answers included)</small>" if self.earlier else "")

    @property
    def student_id(self) -> str:
        """Whose answers these are."""
        return self.log.student_id

    @property
    def path(self) -> Path:
        """The JSONL response file."""
        return self.log.path

    @property
    def responses(self) -> list[dict]:
        """Every answer given in this session, in order."""
        return list(self.log.records)

    @property
    def answers(self) -> dict[str, dict]:
        """The latest answer per question id (this session)."""
        return {r["question"]: r for r in self.log.records}

    def answer(self, question_id: str, answer) -> Result:
        """Answer a question from code, exactly as if typed into the widget (also handy without a display)."""
        if question_id not in self.views:
            raise KeyError(f"this quiz has no question {question_id!r}; it has: {', '.join(self.views)}")
        view = self.views[question_id]
        view.set_value(answer)
        return view.submit()

    def score(self) -> tuple[int, int]:
        """(questions answered right at some attempt, graded questions shown), earlier sessions included."""
        graded = [qid for qid, v in self.views.items() if v.question.kind != "text"]
        right = {r["question"] for r in self.log.records if r.get("correct")} | self._earlier_right
        return sum(1 for qid in graded if qid in right), len(graded)

    def save(self, path: str | Path) -> Path:
        """Write this session's answers to another JSONL file (when the default one was not writable)."""
        return self.log.save(path)

    def text(self) -> str:
        """What the cell shows without a widget frontend (papermill, nbval): the questions, in the bank's order."""
        lines = [f"Quiz {self.bank.id}: {len(self.views)} questions (widgets in JupyterLab)."]
        lines += [f"Q{i}. {' '.join(v.question.prompt.split())}" for i, v in enumerate(self.views.values(), start=1)]
        return "\n".join(lines)

    def _repr_mimebundle_(self, include=None, exclude=None):
        # the live widget where a frontend renders it; a text that depends only on the bank everywhere else
        bundle = dict(self.widget._repr_mimebundle_(include=include, exclude=exclude) or {})
        bundle["text/plain"] = self.text()
        return bundle

    def __repr__(self) -> str:
        right, graded = self.score()
        earlier = f" ({len(self.earlier)} restored from earlier sessions)" if self.earlier else ""
        return (f"<Quiz {self.bank.id}: {len(self.log.records)} answers this session{earlier}, {right}/{graded} "
                f"correct; saved to {display_path(self.log.path)}>")


def show_quiz(bank: str = "00", student_id: str | None = None, questions: list[str] | None = None, *,
              responses: str | Path | None = None, display: bool = True, shuffle: bool = True) -> Quiz:
    """Show a quiz bank's questions (all, or the listed ids) and return the Quiz that keeps the answers.

    bank: a bank id like "00" (packaged) or a path to a .yaml bank.
    student_id: whose answers; None falls back to $JUPYTERHUB_USER, then $LABKIT_STUDENT_ID, then the login name.
    responses: a folder or .jsonl file; None means $LABKIT_RESPONSES_DIR, else ~/.labkit/responses.
    shuffle: show choice options in an order of their own for each student and question (grading is unchanged).
    Earlier answers in the student's response file are shown again and count in the score.
    """
    quiz = Quiz(load_bank(bank), student_id=student_id, questions=questions, responses=responses, shuffle=shuffle)
    if display:
        from IPython.display import display as _display

        _display(quiz)
    return quiz
