"""Quiz widgets: one box per question, immediate feedback, every answer recorded."""
from __future__ import annotations

import html
import re
from pathlib import Path

import ipywidgets as widgets

from labkit.quiz.bank import Bank, Question, Result, load_bank
from labkit.quiz.responses import ResponseLog


def _markup(text: str) -> str:
    """Tiny Markdown: escape HTML, then `code`, **bold** and blank-line paragraphs."""
    out = html.escape(text.strip())
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)
    return "<br><br>".join(p.replace("\n", " ") for p in re.split(r"\n\s*\n", out))


class QuestionView:
    """The widgets of one question and the glue that checks and records an answer."""

    def __init__(self, quiz: "Quiz", question: Question, number: int):
        self.quiz, self.question = quiz, question
        header = widgets.HTML(f"<b>Q{number}.</b> {_markup(question.prompt)}")
        header.add_class("labkit-prompt")
        if question.kind == "single":
            self.input = widgets.RadioButtons(options=question.options, value=None,
                                              layout=widgets.Layout(width="auto"))
        elif question.kind == "multiple":
            self.boxes = [widgets.Checkbox(value=False, description=o, indent=False,
                                           layout=widgets.Layout(width="auto")) for o in question.options]
            self.input = widgets.VBox(self.boxes)
        elif question.kind == "numeric":
            unit = f" ({question.unit})" if question.unit else ""
            self.input = widgets.Text(placeholder=f"a number{unit}, e.g. 2e-5")
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
            return [b.description for b in self.boxes if b.value]
        return self.input.value

    def set_value(self, answer) -> None:
        """Put an answer into the widget (used by Quiz.answer)."""
        if self.question.kind == "multiple":
            chosen = {str(a).strip() for a in (answer or [])}
            for b in self.boxes:
                b.value = b.description in chosen
        elif self.question.kind == "single":
            self.input.value = answer if answer in self.question.options else None
        else:
            self.input.value = "" if answer is None else str(answer)

    def submit(self) -> Result:
        """Check the current answer, record it and show feedback."""
        result = self.question.check(self.value())
        if result.problem:
            self.feedback.value = f"<span class='labkit-info'>ℹ {html.escape(result.problem)}</span>"
            return result
        _, warning = self.quiz.log.record(self.question.bank, self.question.id, self.question.kind,
                                          result.answer, result.correct)
        self.feedback.value = feedback_html(self.question, result, warning)
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
    """The kernel-side quiz: its widgets, and every answer given in this session (also in the JSONL file)."""

    def __init__(self, bank: Bank, student_id: str | None = None, questions: list[str] | None = None,
                 responses: str | Path | None = None):
        self.bank = bank
        self.log = ResponseLog(student_id, responses)
        chosen = [bank.question(q) for q in questions] if questions else list(bank.questions)
        self.views = {q.id: QuestionView(self, q, i + 1) for i, q in enumerate(chosen)}
        title = widgets.HTML(f"<h3>{html.escape(bank.title)}</h3>"
                             f"<small>Answers are saved for <code>{html.escape(self.log.student_id)}</code> "
                             f"in <code>{html.escape(str(self.log.path))}</code>.</small>")
        self.widget = widgets.VBox([title] + [v.box for v in self.views.values()])
        self.widget.add_class("labkit-quiz")

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
        """(questions answered correctly, graded questions shown) for this session."""
        graded = [qid for qid, v in self.views.items() if v.question.kind != "text"]
        right = {r["question"] for r in self.log.records if r.get("correct")}
        return sum(1 for qid in graded if qid in right), len(graded)

    def save(self, path: str | Path) -> Path:
        """Write this session's answers to another JSONL file (when the default one was not writable)."""
        return self.log.save(path)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def __repr__(self) -> str:
        right, graded = self.score()
        return (f"<Quiz {self.bank.id}: {len(self.log.records)} answers this session, {right}/{graded} correct; "
                f"saved to {self.log.path}>")


def show_quiz(bank: str = "00", student_id: str | None = None, questions: list[str] | None = None, *,
              responses: str | Path | None = None, display: bool = True) -> Quiz:
    """Show a quiz bank's questions (all, or the listed ids) and return the Quiz that keeps the answers.

    bank: a bank id like "00" (packaged) or a path to a .yaml bank.
    student_id: whose answers; None falls back to $LABKIT_STUDENT_ID, then the login name.
    responses: a folder or .jsonl file; None means $LABKIT_RESPONSES_DIR, else ~/.labkit/responses.
    """
    quiz = Quiz(load_bank(bank), student_id=student_id, questions=questions, responses=responses)
    if display:
        from IPython.display import display as _display

        _display(quiz.widget)
    return quiz
