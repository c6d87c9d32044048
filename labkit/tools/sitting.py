"""`labkit sitting`: how long a student needs for each released notebook, so that each fits one class sitting.

The estimate adds up, for a student copy as `labkit release` makes it:
- reading the prose (markdown cells) at READ_WORDS_PER_MIN words a minute;
- reading the code (non-blank lines of code cells) at READ_CODE_LINES_PER_MIN lines a minute;
- reading what the cells print (text and tables of the solution's committed quick-tier outputs, which a student's
  run prints too; figures and widgets are not counted) at READ_OUTPUT_WORDS_PER_MIN words a minute;
- a stated time per activity: each checked exercise (a `check_ex(` cell), each written answer (`written(`), each
  prediction (`labkit.predict(`) and each quiz question of the bank(s) it shows (`show_quiz("NN"`);
- the time the notebook takes to run in the quick tier, when the solution notebook records it (papermill writes
  the run's duration into the notebook's metadata when `make outputs` re-executes it).

These rates are deliberately realistic rather than optimistic: a student reads, runs, waits, then thinks.
"""
from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path

READ_WORDS_PER_MIN = 120  # careful reading of technical prose, not skimming
READ_CODE_LINES_PER_MIN = 60  # reading code to follow what it does
READ_OUTPUT_WORDS_PER_MIN = 200  # printed results and tables are scanned, not read word by word
MIN_PER_EXERCISE = 5.0  # a `check_ex` exercise: write the code, run the check, perhaps fix it once
MIN_PER_WRITTEN = 4.0  # a written answer of two or three sentences
MIN_PER_QUIZ_QUESTION = 1.0
MIN_PER_PREDICTION = 1.0
MAX_SITTING_MIN = 75.0  # one class sitting

WORD = re.compile(r"[A-Za-z0-9][\w'’.-]*")  # words and numbers; markdown punctuation (|, ---, >, **) is not a word
QUIZ_BANK = re.compile(r"show_quiz\(\s*['\"]([^'\"]+)['\"]")


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


@dataclass(frozen=True)
class Sitting:
    """One notebook's estimated working time and what it is made of."""
    name: str
    words: int
    code_lines: int
    exercises: int
    written: int
    predictions: int
    quiz_questions: int
    run_seconds: float | None  # the quick tier's recorded run time; None when the notebook does not record it
    output_words: int = 0  # words the cells print (the solution's outputs)

    @property
    def parts(self) -> dict[str, float]:
        """Minutes per part of the sitting."""
        return {"prose": self.words / READ_WORDS_PER_MIN, "code": self.code_lines / READ_CODE_LINES_PER_MIN,
                "exercises": self.exercises * MIN_PER_EXERCISE, "written": self.written * MIN_PER_WRITTEN,
                "predictions": self.predictions * MIN_PER_PREDICTION,
                "quiz": self.quiz_questions * MIN_PER_QUIZ_QUESTION, "run": (self.run_seconds or 0.0) / 60,
                "output": self.output_words / READ_OUTPUT_WORDS_PER_MIN}

    @property
    def minutes(self) -> float:
        return sum(self.parts.values())


def _quiz_questions(bank_id: str) -> int:
    from labkit.quiz import load_bank

    return len(load_bank(bank_id).questions)


def recorded_run_seconds(solution: dict) -> float | None:
    """The quick-tier run time papermill recorded in a solution notebook's metadata, or None.

    None too when the recorded run was given another tier (its parameters say so): a full-tier time is not what a
    class waits for.
    """
    papermill = solution.get("metadata", {}).get("papermill") or {}
    duration = papermill.get("duration")
    if not isinstance(duration, (int, float)) or papermill.get("parameters", {}).get("tier", "quick") != "quick":
        return None
    return float(duration)


def printed_words(solution: dict) -> int:
    """Words in the text a notebook's cells print (streams, tables, plain text; not figures or widgets)."""
    words = 0
    for cell in solution.get("cells", []):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            shown = out.get("text") or data.get("text/html") or ("" if "image/png" in data else data.get("text/plain"))
            text = "".join(shown) if isinstance(shown, list) else (shown or "")
            words += len(WORD.findall(re.sub(r"<[^>]+>", " ", text)))
    return words


def estimate(name: str, student: dict, run_seconds: float | None = None, output_words: int = 0) -> Sitting:
    """The sitting of one student copy (a notebook dict as `labkit release` writes it); run_seconds and
    output_words come from its solution (`recorded_run_seconds`, `printed_words`)."""
    words = code_lines = exercises = written = predictions = questions = 0
    for cell in student.get("cells", []):
        text = _source(cell)
        if cell.get("cell_type") == "markdown":
            words += len(WORD.findall(text))
        elif cell.get("cell_type") == "code":
            code_lines += sum(1 for line in text.splitlines() if line.strip())
            exercises += text.count("check_ex(")
            written += len(re.findall(r"\bwritten\(", text))
            predictions += len(re.findall(r"\blabkit\.predict\(", text))
            questions += sum(_quiz_questions(bank) for bank in QUIZ_BANK.findall(text))
    return Sitting(name, words, code_lines, exercises, written, predictions, questions, run_seconds, output_words)


def course(notebooks: Path, solutions: Path) -> list[Sitting]:
    """Every released student copy in `notebooks`, with the run time its solution in `solutions` records."""
    out = []
    for path in sorted(Path(notebooks).glob("*.ipynb")):
        solution = Path(solutions) / path.name
        solved = json.loads(solution.read_text(encoding="utf-8")) if solution.exists() else {}
        out.append(estimate(path.stem, json.loads(path.read_text(encoding="utf-8")), recorded_run_seconds(solved),
                            printed_words(solved)))
    return out


def table(sittings: list[Sitting]) -> str:
    """A plain-text table: one row per notebook, minutes per part and the total."""
    head = ["notebook", "words", "prose", "lines", "code", "printed", "exercises", "written", "predict", "quiz", "run",
            "total"]
    rows = [head]
    for s in sittings:
        p = s.parts
        rows.append([s.name, str(s.words), f"{p['prose']:.1f}", str(s.code_lines), f"{p['code']:.1f}",
                     f"{s.output_words} = {p['output']:.1f}",
                     f"{s.exercises} = {p['exercises']:.0f}", f"{s.written} = {p['written']:.0f}",
                     f"{s.predictions} = {p['predictions']:.0f}", f"{s.quiz_questions} = {p['quiz']:.0f}",
                     "-" if s.run_seconds is None else f"{p['run']:.1f}", f"{s.minutes:.1f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    rates = (f"minutes; prose at {READ_WORDS_PER_MIN} words/min, code at {READ_CODE_LINES_PER_MIN} lines/min, "
             f"printed words at {READ_OUTPUT_WORDS_PER_MIN}/min, "
             f"{MIN_PER_EXERCISE:g} per checked exercise, {MIN_PER_WRITTEN:g} per written answer, "
             f"{MIN_PER_PREDICTION:g} per prediction, {MIN_PER_QUIZ_QUESTION:g} per quiz question, plus the "
             f"recorded quick-tier run; one sitting is at most {MAX_SITTING_MIN:g} min")
    return "\n".join(lines + [rates])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--notebooks", type=Path, default=Path("notebooks"), help="the student copies")
    parser.add_argument("--solutions", type=Path, default=Path("solutions"),
                        help="the solution notebooks, for their recorded run times and printed outputs")


def run(args: argparse.Namespace) -> int:
    sittings = course(args.notebooks, args.solutions)
    if not sittings:
        print(f"No notebooks in {args.notebooks}/: run `labkit release` first, or pass --notebooks PATH.")
        return 2
    print(table(sittings))
    over = [s.name for s in sittings if s.minutes > MAX_SITTING_MIN]
    if over:
        print(f"longer than one sitting: {', '.join(over)}")
    return 1 if over else 0
