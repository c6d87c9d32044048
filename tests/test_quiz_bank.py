"""Quiz banks: the source format, validation messages, hashing, encryption and the no-plaintext-key rule."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from labkit.quiz import keys
from labkit.quiz.bank import BankError, compile_source, dump_compiled, load_bank, validate_source
from labkit.quiz.responses import read_records

REPO = Path(__file__).resolve().parents[1]
SOURCE_BANKS = sorted((REPO / "solutions" / "quiz").glob("*.yaml"))
COMPILED_KEYS = {"id", "kind", "prompt", "options", "tolerance", "unit", "salt", "answer_hash", "explanation", "hint"}


def bank(*questions, **top):
    """A source bank mapping from question dicts."""
    return {"bank": "99", "title": "Test bank", **top, "questions": list(questions)}


SINGLE = {"id": "pick", "kind": "single", "prompt": "Pick one", "options": ["red", "green", "blue"],
          "answer": "green", "explanation": "Green is the secret colour.", "hint": "Not red."}
MULTI = {"id": "tick", "kind": "multiple", "prompt": "Tick", "options": ["a1", "b2", "c3", "d4"],
         "answer": ["a1", "c"], "explanation": "Odd ones."}
NUMERIC = {"id": "num", "kind": "numeric", "prompt": "How much?", "answer": 12345.678, "tolerance": 0.5,
           "explanation": "Twelve thousand and change."}
TEXT = {"id": "essay", "kind": "text", "prompt": "Discuss.", "explanation": "Model notes."}


@pytest.fixture(autouse=True)
def _responses(tmp_path, monkeypatch):
    """Every check is recorded: keep the records of these tests out of the home folder."""
    monkeypatch.setenv("LABKIT_RESPONSES_DIR", str(tmp_path / "responses"))
    monkeypatch.setenv("LABKIT_STUDENT_ID", "prober")
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    return tmp_path / "responses"


def compiled_bank(tmp_path, *questions) -> "object":
    path = tmp_path / "99.yaml"
    path.write_text(dump_compiled(compile_source(bank(*questions), "99")), encoding="utf-8")
    return load_bank(path)


@pytest.mark.parametrize("path", SOURCE_BANKS, ids=lambda p: p.name)
def test_repo_banks_are_valid_and_have_four_questions(path):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    questions = validate_source(data, path.stem)
    assert len(questions) >= 4, f"{path.name}: every notebook's bank needs at least four questions"
    for q in data["questions"]:  # "Text: more text" unquoted is a YAML mapping, not an option
        for option in q.get("options") or []:
            assert isinstance(option, str), f"{path.name}, {q['id']}: quote the option {option!r}"


def _single_choice_length_ranks() -> dict[str, int]:
    """bank/question -> where the right answer ranks by length among its options (1 = longest, ties count as 1)."""
    ranks = {}
    for path in SOURCE_BANKS:
        for q in validate_source(yaml.safe_load(path.read_text(encoding="utf-8")), path.stem):
            if q["kind"] == "single":
                right = len(q["answer"])
                ranks[f"{path.stem}/{q['id']}"] = 1 + sum(len(o) > right for o in q["options"])
    return ranks


def test_length_does_not_give_the_answer_away():
    """Across every bank, the right answer is the longest option in at most a third of single-choice questions,
    and no length rank (e.g. second longest) holds the right answer in more than half of them."""
    ranks = _single_choice_length_ranks()
    assert len(ranks) >= 6
    longest = sorted(q for q, r in ranks.items() if r == 1)
    assert len(longest) <= len(ranks) / 3, (
        f"the right answer is the longest option in {len(longest)} of {len(ranks)} single-choice questions "
        f"({', '.join(longest)}); lengthen a distractor (keep it plausible and wrong)")
    for rank in set(ranks.values()):
        at = sorted(q for q, r in ranks.items() if r == rank)
        assert len(at) <= len(ranks) / 2, f"the right answer has length rank {rank} in {len(at)} questions: {at}"


def test_bank_00_covers_notebook_00():
    ids = {q.id for q in load_bank("00")}
    assert {"satellite-strategy", "random-init-control", "raw-pixels-reference", "paired-interval",
            "unresolved-meaning", "probe-your-data"} <= ids
    assert load_bank("00").question("probe-your-data").kind == "text"


@pytest.mark.parametrize("change, message", [
    (lambda q: q.pop("answer"), "question 'pick': missing required key 'answer'"),
    (lambda q: q.update(answer="purple"), "question 'pick': answer 'purple' is not among the options"),
    (lambda q: q.update(answer="z"), "question 'pick': answer 'z' is not among the options"),
    (lambda q: q.update(kind="essay"), "question 'pick': missing or unknown 'kind'"),
    (lambda q: q.update(tolerence=1), "question 'pick': unknown key(s) tolerence"),
    (lambda q: q.update(options=["red", "red"]), "question 'pick': two options have the same text"),
    (lambda q: q.pop("id"), "question #1 (no id): missing required key 'id'"),
    (lambda q: q.update(id="Bad Id"), "question 'Bad Id': id must be"),
])
def test_malformed_single_question_names_it(change, message):
    q = dict(SINGLE)
    change(q)
    with pytest.raises(BankError) as err:
        validate_source(bank(q), "99")
    assert message in str(err.value)


def test_duplicate_id_named():
    with pytest.raises(BankError, match=r"duplicate question id 'pick' \(questions #1 and #2\)"):
        validate_source(bank(SINGLE, dict(SINGLE)), "99")


def test_other_malformed_questions():
    with pytest.raises(BankError, match="question 'num': tolerance 0 must be a positive number"):
        validate_source(bank(dict(NUMERIC, tolerance=0)), "99")
    with pytest.raises(BankError, match="question 'tick': answer 'x9' is not among the options"):
        validate_source(bank(dict(MULTI, answer=["a1", "x9"])), "99")
    with pytest.raises(BankError, match="question 'essay': a free-text question is recorded, not graded"):
        validate_source(bank(dict(TEXT, answer="x")), "99")
    with pytest.raises(BankError, match="bank 99: the file says bank '42'"):
        validate_source(bank(SINGLE, bank="42"), "99")
    with pytest.raises(BankError, match="non-empty 'questions:' list"):
        validate_source({"questions": []}, "99")


def test_answer_by_letter_or_text_gives_same_key():
    by_text = validate_source(bank(SINGLE), "99")[0]["answer"]
    by_letter = validate_source(bank(dict(SINGLE, answer="b")), "99")[0]["answer"]
    assert by_text == by_letter == "green"


def test_single_and_multiple_checks(tmp_path):
    b = compiled_bank(tmp_path, SINGLE, MULTI)
    pick, tick = b.question("pick"), b.question("tick")
    assert pick.check("green").correct is True
    assert pick.check("green").explanation == "Green is the secret colour."
    assert pick.check("red").correct is False and pick.check("red").explanation is None
    assert pick.check(None).correct is None and pick.check(None).problem  # nothing chosen: not graded
    assert tick.check(["c3", "a1"]).correct is True  # order does not matter
    assert tick.check(["a1"]).correct is False
    assert tick.check(["a1", "b2", "c3"]).correct is False


def test_numeric_tolerance_is_honoured(tmp_path):
    num = compiled_bank(tmp_path, NUMERIC).question("num")
    rng = random.Random(0)
    for _ in range(200):  # everything within the tolerance is accepted ...
        assert num.check(12345.678 + rng.uniform(-0.5, 0.5)).correct is True
    for _ in range(200):  # ... nothing beyond 1.1 x the tolerance is
        offset = rng.uniform(0.5 * (1 + 1 / keys.NUMERIC_STEPS) + 1e-9, 50)
        assert num.check(12345.678 + rng.choice([-1, 1]) * offset).correct is False
    assert num.check("12345,7").correct is True  # decimal comma
    assert num.check("lots").correct is None and "number" in num.check("lots").problem
    assert num.check(float("nan")).correct is None


def test_text_question_is_recorded_not_graded(tmp_path):
    essay = compiled_bank(tmp_path, TEXT).question("essay")
    result = essay.check("Use pretrained audio embeddings.")
    assert result.correct is None and result.explanation == "Model notes."


def test_every_check_through_the_api_is_an_attempt_on_the_record(tmp_path, _responses):
    """Probing the oracle option by option shows up in the student's file, as the widget's clicks do."""
    b = compiled_bank(tmp_path, SINGLE, NUMERIC)
    pick = b.question("pick")
    results = [pick.check(option) for option in pick.options]
    assert [r.correct for r in results] == [False, True, False] and [r.attempt for r in results] == [1, 2, 3]
    assert pick.check(None).problem and pick.check(None).attempt is None  # nothing chosen: no attempt
    records = read_records(_responses / "prober.jsonl")
    assert [(r["question"], r["answer"], r["correct"], r["attempt"]) for r in records] == [
        ("pick", "red", False, 1), ("pick", "green", True, 2), ("pick", "blue", False, 3)]
    assert {r["student_id"] for r in records} == {"prober"}
    # a freshly loaded bank (a new kernel, another notebook) keeps counting from the file
    again = compiled_bank(tmp_path, SINGLE, NUMERIC).question("num").check("12345.7")
    assert again.correct is True and again.attempt == 1
    assert compiled_bank(tmp_path, SINGLE).question("pick").check("red").attempt == 4
    # the grader's internal re-check records nothing
    assert pick._grade("green").correct is True and len(read_records(_responses / "prober.jsonl")) == 5


def test_explanation_only_decrypts_with_the_right_answer():
    token = keys.encrypt_explanation("99", "q", "salt", "right", "The secret explanation.")
    assert keys.decrypt_explanation("99", "q", "salt", "right", token) == "The secret explanation."
    assert keys.decrypt_explanation("99", "q", "salt", "wrong", token) != "The secret explanation."
    assert "secret" not in token


def test_salts_are_stable_across_releases_and_fresh_for_new_questions():
    first = compile_source(bank(SINGLE, NUMERIC), "99")
    again = compile_source(bank(SINGLE, NUMERIC), "99", previous=first)
    assert dump_compiled(again) == dump_compiled(first)  # deterministic given the previous release
    fresh = compile_source(bank(SINGLE, NUMERIC), "99")
    assert fresh["questions"][0]["salt"] != first["questions"][0]["salt"]
    # a hash is bound to its salt, bank and question: equal answers never give equal hashes
    assert keys.answer_hash("99", "a", "s", "x") != keys.answer_hash("99", "b", "s", "x")


def _scan(files, secrets_):
    """(file, secret) pairs where a secret occurs in a file."""
    hits = []
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        hits += [(str(f), s) for s in secrets_ if s and s in text]
    return hits


def test_no_plaintext_key_in_a_compiled_fixture_bank(tmp_path):
    b = compile_source(bank(SINGLE, MULTI, NUMERIC, TEXT), "99")
    out = tmp_path / "99.yaml"
    out.write_text(dump_compiled(b), encoding="utf-8")
    secrets_ = ["12345.678", "12345.68", "Green is the secret colour", "Odd ones", "Twelve thousand",
                keys.canonical_multiple(["a1", "c3"]), "answer:"]
    assert _scan([out], secrets_) == []
    for q in yaml.safe_load(out.read_text())["questions"]:
        assert set(q) <= COMPILED_KEYS  # no field that says which option is right


def _released_files():
    roots = [REPO / "labkit", REPO / "notebooks"]
    return [p for r in roots if r.exists() for p in r.rglob("*")
            if p.is_file() and p.suffix in {".py", ".yaml", ".yml", ".ipynb", ".json", ".md", ".txt", ".csv"}]


@pytest.mark.parametrize("path", SOURCE_BANKS, ids=lambda p: p.name)
def test_no_plaintext_key_in_any_released_file(path):
    """Explanations (which give the answer away) and numeric / multiple-choice keys never reach labkit/ or
    notebooks/."""
    secrets_ = []
    for q in validate_source(yaml.safe_load(path.read_text(encoding="utf-8")), path.stem):
        if q["kind"] == "text":
            continue  # no key: its notes are shown after any answer
        secrets_.append(q["explanation"][:60])
        if q["kind"] == "multiple":
            secrets_.append(keys.canonical_multiple(q["answer"]))
        if q["kind"] == "numeric":
            secrets_ += [f"answer: {q['answer']!r}", f"answer: {q['answer']:g}"]
    assert _scan(_released_files(), secrets_) == []
    compiled = REPO / "labkit" / "quiz" / "banks" / path.name
    assert compiled.exists(), f"{compiled} is missing: run `labkit release`"
    for q in yaml.safe_load(compiled.read_text(encoding="utf-8"))["questions"]:
        assert set(q) <= COMPILED_KEYS
