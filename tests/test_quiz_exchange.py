"""The exchange folder: students submit (write, never list or read others'), the instructor collects the newest
submission per student and grades it; a class that is one OS user (`jovyan`) stays separate people."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from labkit.quiz.exchange import ExchangeError, collect, init_exchange, list_submissions, submit
from labkit.quiz.grade import grade
from labkit.quiz.widgets import show_quiz
from labkit.tools.cli import main

RIGHT = ("Freeze the backbone, train a linear head on its features, and only then consider unfreezing the top block "
         "with a small learning rate.")
WRONG = "Train the whole network from scratch, so that ImageNet habits do not get in the way."
Q = "satellite-strategy"
UTC = dt.timezone.utc


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """One OS user for every student, as on zero-to-jupyterhub; JUPYTERHUB_USER says who is who."""
    monkeypatch.setenv("LABKIT_EXCHANGE", str(tmp_path / "exchange"))
    monkeypatch.setenv("LABKIT_COURSE", "tl101")
    monkeypatch.setenv("LABKIT_RESPONSES_DIR", str(tmp_path / "responses"))
    monkeypatch.delenv("LABKIT_STUDENT_ID", raising=False)
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    return tmp_path


def as_student(monkeypatch, name: str, *answers: str) -> None:
    monkeypatch.setenv("JUPYTERHUB_USER", name)
    quiz = show_quiz("00", questions=[Q], display=False)
    for a in answers:
        quiz.answer(Q, a)


def test_submit_collect_grade(hub, monkeypatch, capsys):
    inbound = init_exchange()
    assert inbound == hub / "exchange" / "tl101" / "inbound"
    assert stat.S_IMODE(inbound.stat().st_mode) == 0o1733  # like /tmp, and not listable by others
    as_student(monkeypatch, "ada", RIGHT)
    assert main(["quiz", "submit"]) == 0
    assert "Submitted 1 answers as ada to the tl101 exchange" in capsys.readouterr().out
    as_student(monkeypatch, "bob", WRONG)
    path, n, notes = submit(now=dt.datetime(2025, 3, 1, 9, tzinfo=UTC))
    assert n == 1
    # a student who can list the folder is told so (here the test owns it); root can always list, so no warning
    assert notes == [] if os.geteuid() == 0 else "you can list" in notes[0]
    as_student(monkeypatch, "bob", RIGHT)
    newest, n, _ = submit()
    assert n == 2 and newest.name.startswith("bob+") and newest.name.endswith(".jsonl")
    assert stat.S_IMODE(newest.stat().st_mode) == 0o600  # owner = folder owner: one account for everyone
    assert not [p for p in inbound.iterdir() if p.name.startswith(".")]  # no half-written files left
    subs, other = list_submissions()
    assert sorted(s.student for s in subs) == ["ada", "bob", "bob"] and other == []

    out = hub / "collected"
    assert main(["quiz", "collect", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 students collected" in printed and f"labkit quiz grade {out}" in printed
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert stat.S_IMODE((out / "bob" / "responses.jsonl").stat().st_mode) == 0o600
    assert (out / "manifest.csv").read_text().splitlines()[0].startswith("student,submitted,file,records")
    grades = grade(out)
    assert grades.students == ["ada", "bob"]
    assert grades.first_scores == {"ada": {"00": 1}, "bob": {"00": 0}} and grades.scores["bob"] == {"00": 1}


def test_collect_before_a_deadline_and_drops_other_students_records(hub, monkeypatch):
    init_exchange()
    as_student(monkeypatch, "ada", WRONG)
    submit(now=dt.datetime(2025, 3, 1, 9, tzinfo=UTC))
    as_student(monkeypatch, "ada", RIGHT)
    submit(now=dt.datetime(2025, 3, 3, 9, tzinfo=UTC))
    as_student(monkeypatch, "bob", RIGHT)
    submit(now=dt.datetime(2025, 3, 4, 9, tzinfo=UTC))
    # a submission named for cy that also holds records in ada's name
    forged = [json.loads(line) for line in (hub / "responses" / "ada.jsonl").read_text().splitlines()]
    mine = dict(forged[0], student_id="cy")
    (hub / "cy.jsonl").write_text(json.dumps(mine) + "\n" + json.dumps(forged[1]) + "\n")
    submit(responses=hub / "cy.jsonl", student_id="cy", now=dt.datetime(2025, 3, 1, 8, tzinfo=UTC))
    # submit only sends the submitter's own records; a hand-made file in the folder could still mix them
    (hub / "exchange" / "tl101" / "inbound" / "dan+20250301T070000.000000Z+abcdefghijkl.jsonl").write_text(
        json.dumps(dict(forged[0], student_id="dan")) + "\n" + json.dumps(forged[1]) + "\n")

    rows, notes = collect(hub / "c", deadline=dt.datetime(2025, 3, 2, tzinfo=UTC))
    by = {r["student"]: r for r in rows}
    assert sorted(by) == ["ada", "cy", "dan"]
    assert by["ada"]["records"] == 1 and by["ada"]["submitted"].startswith("2025-03-01T09")
    assert by["cy"]["records"] == 1 and by["cy"]["other_students_records"] == 0
    assert by["dan"]["records"] == 1 and by["dan"]["other_students_records"] == 1
    assert any("bob: every submission is after the deadline" in n for n in notes)
    assert any("dan: 1 records in the submission name another student" in n for n in notes)
    assert [json.loads(x)["student_id"] for x in (hub / "c" / "dan" / "responses.jsonl").read_text().splitlines()] \
        == ["dan"]


def test_errors_name_the_fix(hub, monkeypatch, capsys):
    monkeypatch.setenv("JUPYTERHUB_USER", "ada")
    with pytest.raises(ExchangeError, match="no exchange folder at .*labkit quiz init-exchange"):
        submit()
    init_exchange()
    assert main(["quiz", "submit"]) == 1
    assert "no answers to submit" in capsys.readouterr().err
    assert main(["quiz", "collect", "--course", "other", "--out", str(hub / "c")]) == 1
    assert "no exchange folder at" in capsys.readouterr().err
    assert main(["quiz", "submit", "--course", "../etc"]) == 1
    assert "course name '../etc' may only hold" in capsys.readouterr().err


NOBODY = 65534


def as_nobody(fn, *args, env: dict | None = None):
    """Run fn(*args) in a forked child that is the OS user nobody (no supplementary groups); its return value or
    {'error': repr(exception)} comes back as JSON."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.environ.update(env or {})
            out, status = fn(*args), 0
        except BaseException as exc:  # noqa: BLE001 - report anything to the parent
            out = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(w, json.dumps(out).encode())
        os._exit(status)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks))


def student_submits(root: str, course: str, answer: str):
    """What a student's kernel does: answer (through the quiz API), submit, then try to list the folder."""
    from labkit.quiz import load_bank

    load_bank("00").question(Q).check(answer)
    path, _, _ = submit(root=root, course=course)
    try:
        os.listdir(path.parent)
        listed = "LISTED"
    except PermissionError:
        listed = "CANNOT-LIST"
    return [path.name, listed]


def try_open(path: str):
    try:
        Path(path).read_text()
        return "READ"
    except OSError as exc:
        return type(exc).__name__


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root to act as students of another OS user (nobody)")
def test_students_of_one_os_user_cannot_list_or_find_each_others_files():
    """Root sets the exchange up; two students who are both the OS user `nobody` (as every student is `jovyan` on
    zero-to-jupyterhub) submit; neither can list the folder, so neither can find the other's file."""
    base = Path(tempfile.mkdtemp(prefix="labkit-exchange-test-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        root = base / "exchange"
        inbound = init_exchange(root, "tl101")
        names = {}
        for student, answer in [("ada", RIGHT), ("bob", WRONG)]:
            home = base / student
            home.mkdir()
            os.chown(home, NOBODY, NOBODY)
            env = {"HOME": str(home), "JUPYTERHUB_USER": student, "LABKIT_RESPONSES_DIR": str(home / "responses")}
            out = as_nobody(student_submits, str(root), "tl101", answer, env=env)
            assert isinstance(out, list), out
            name, listed = out
            assert listed == "CANNOT-LIST"
            names[student] = name
            st = (inbound / name).stat()
            assert st.st_uid == NOBODY and stat.S_IMODE(st.st_mode) == 0o644  # hidden by its unguessable name
        # bob knows how names are made but not ada's random part: nothing to open
        guess = names["ada"].rsplit("+", 1)[0] + "+" + "A" * 16 + ".jsonl"
        assert as_nobody(try_open, str(inbound / guess)) == "FileNotFoundError"
        assert as_nobody(try_open, str(base / "ada" / "responses" / "ada.jsonl")) == "READ"  # same OS user
        rows, _ = collect(base / "collected", root, "tl101")
        assert sorted(r["student"] for r in rows) == ["ada", "bob"]
        grades = grade(base / "collected")
        assert grades.first_scores == {"ada": {"00": 1}, "bob": {"00": 0}}

        # with an instructors' group: 3773, and submissions get the group, readable by it (0640)
        grouped = init_exchange(root, "tl102", group=4242)
        assert stat.S_IMODE(grouped.stat().st_mode) == 0o3773 and grouped.stat().st_gid == 4242
        env = {"HOME": str(base / "ada"), "JUPYTERHUB_USER": "ada",
               "LABKIT_RESPONSES_DIR": str(base / "ada" / "responses")}
        out = as_nobody(student_submits, str(root), "tl102", RIGHT, env=env)
        assert out[1] == "CANNOT-LIST", out
        st = (grouped / out[0]).stat()
        assert st.st_gid == 4242 and stat.S_IMODE(st.st_mode) == 0o640
    finally:
        shutil.rmtree(base, ignore_errors=True)
