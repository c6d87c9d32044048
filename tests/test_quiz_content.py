"""What the quiz banks ask: every option explained, no length or absolute-word cue, quiz 00 tied to notebook 00."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from labkit.quiz import keys
from labkit.quiz.bank import BankError, compile_source, read_yaml, validate_source

REPO = Path(__file__).resolve().parents[1]
SOURCE_BANKS = sorted((REPO / "solutions" / "quiz").glob("*.yaml"))
ABSOLUTE = re.compile(r"\b(always|never|only|all|none|every|cannot|must)\b", re.IGNORECASE)


def _questions():
    """(bank id, normalised question) for every question of every source bank."""
    return [(p.stem, q) for p in SOURCE_BANKS for q in validate_source(read_yaml(p), p.stem)]


def _right(q) -> set[str]:
    return {q["answer"]} if q["kind"] == "single" else set(q["answer"])


def test_banks_validate_and_keep_their_size():
    assert [p.stem for p in SOURCE_BANKS] == ["00", "01", "02", "03", "04", "05"]
    for path in SOURCE_BANKS:
        assert 5 <= len(validate_source(read_yaml(path), path.stem)) <= 8, path.name


def test_every_option_has_an_explanation():
    """Each choice question says, for every option in order, why it is right or wrong; and explains itself."""
    missing = [f"{b}/{q['id']}" for b, q in _questions()
               if q["kind"] in ("single", "multiple") and (len(q.get("why", [])) != len(q["options"])
                                                           or not q.get("explanation"))]
    assert missing == [], f"add a `why:` reason per option to {missing}"


def test_right_answer_is_rarely_the_longest_option():
    singles = [(b, q) for b, q in _questions() if q["kind"] == "single"]
    longest = [f"{b}/{q['id']}" for b, q in singles if all(len(q["answer"]) >= len(o) for o in q["options"])]
    assert len(singles) >= 12
    assert len(longest) <= len(singles) / 3, f"the right answer is the longest option in {longest}"


def test_absolute_words_are_no_cue():
    """Words like always/never/only are not more common in wrong options than in right ones."""
    right = [o for _, q in _questions() if q["kind"] in ("single", "multiple") for o in q["options"] if o in _right(q)]
    wrong = [o for _, q in _questions() if q["kind"] in ("single", "multiple") for o in q["options"]
             if o not in _right(q)]
    share = {name: sum(bool(ABSOLUTE.search(o)) for o in opts) / len(opts)
             for name, opts in (("right", right), ("wrong", wrong))}
    assert share["wrong"] <= share["right"], f"absolute words in options: {share}"


def _headings(notebook: Path) -> set[str]:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return {line.lstrip("#").strip() for c in cells if c["cell_type"] == "markdown"
            for line in "".join(c["source"]).splitlines() if line.startswith("#")}


def test_quiz_00_questions_each_name_a_section_of_notebook_00():
    headings = _headings(REPO / "solutions" / "00_tour.ipynb")
    questions = validate_source(read_yaml(REPO / "solutions" / "quiz" / "00.yaml"), "00")
    unnamed = [q["id"] for q in questions if q.get("section") not in headings]
    assert unnamed == [], f"these quiz-00 questions name no heading of notebook 00: {unnamed}; headings: {headings}"
    assert not {"Quiz", "Exercises"} & {q["section"].split(". ", 1)[-1] for q in questions}


def test_quiz_00_keeps_the_ids_other_tests_use():
    ids = {q["id"]: q["kind"] for q in validate_source(read_yaml(REPO / "solutions" / "quiz" / "00.yaml"), "00")}
    assert ids["satellite-strategy"] == "single" and ids["probe-facts"] == "multiple"
    assert ids["holds-threshold"] == "numeric" and ids["probe-your-data"] == "text"


SINGLE = {"id": "pick", "kind": "single", "prompt": "Pick one", "options": ["red", "green"], "answer": "green",
          "explanation": "Green it is.", "section": "3. A section", "why": ["Red is wrong.", "Green is right."]}


def test_section_and_why_are_compiled_into_prompt_and_explanation():
    compiled = compile_source({"questions": [SINGLE]}, "99")["questions"][0]
    assert compiled["prompt"].startswith("*From section 3. A section.*") and "why" not in compiled
    text = keys.decrypt_explanation("99", "pick", compiled["salt"], "green", compiled["explanation"])
    assert text.startswith("Green it is.") and "“red” — Red is wrong." in text and "“green” — Green is right." in text
    assert "Red is wrong" not in json.dumps(compiled)  # the reasons travel encrypted, like the explanation


@pytest.mark.parametrize("change, message", [
    (dict(why=["only one"]), "'why' must list one non-empty reason per option"),
    (dict(why=["", "x"]), "'why' must list one non-empty reason per option"),
    (dict(section=""), "'section' must be the title of a notebook section"),
    (dict(section=3), "'section' must be the title of a notebook section"),
])
def test_malformed_section_or_why_named(change, message):
    with pytest.raises(BankError, match=message):
        validate_source({"questions": [dict(SINGLE, **change)]}, "99")
    text = {"id": "essay", "kind": "text", "prompt": "Discuss.", "why": ["x"]}
    with pytest.raises(BankError, match="'why' must list"):
        validate_source({"questions": [text]}, "99")
