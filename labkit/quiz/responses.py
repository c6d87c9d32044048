"""Where quiz answers go: a kernel-side list plus an append-only JSONL file per student."""
from __future__ import annotations

import datetime as _dt
import getpass
import json
import os
import re
import uuid
import warnings
from pathlib import Path

from labkit import __version__

RESPONSES_ENV = "LABKIT_RESPONSES_DIR"
STUDENT_ENV = "LABKIT_STUDENT_ID"
HUB_USER_ENV = "JUPYTERHUB_USER"  # set by JupyterHub in every single-user server and its kernels
RECORD_VERSION = 1


def resolve_student_id(student_id: str | None = None) -> str:
    """The student id, first found of:

    1. the `student_id` parameter (a notebook's parameters cell);
    2. $JUPYTERHUB_USER: on a JupyterHub every student's server runs as the same OS user (`jovyan` on
       zero-to-jupyterhub images), and this is the only thing that tells the students apart;
    3. $LABKIT_STUDENT_ID (set by hand or by a course's environment, off a hub);
    4. the login name; 5. 'student'.
    """
    if student_id not in (None, ""):
        return str(student_id)
    for env in (HUB_USER_ENV, STUDENT_ENV):
        if os.environ.get(env, "").strip():
            return os.environ[env].strip()
    try:
        return getpass.getuser() or "student"
    except Exception:  # no login name in some containers
        return "student"


def default_responses_dir() -> Path:
    """$LABKIT_RESPONSES_DIR, else ~/.labkit/responses."""
    env = os.environ.get(RESPONSES_ENV)
    return Path(env).expanduser() if env else Path.home() / ".labkit" / "responses"


def display_path(path: str | Path) -> str:
    """An answers file as a student reads it: `$LABKIT_RESPONSES_DIR/...` under that folder, `~/...` under the home
    folder, else the path itself (so a notebook's saved output names no machine's folders)."""
    path = Path(path)
    env = os.environ.get(RESPONSES_ENV)
    for base, shown in (((Path(env).expanduser(), f"${RESPONSES_ENV}"),) if env else ()) + ((Path.home(), "~"),):
        try:
            return f"{shown}/{path.relative_to(base).as_posix()}"
        except ValueError:
            continue
    return str(path)


def safe_name(student_id: str) -> str:
    """A student id as a file name: letters, digits, '.', '_' and '-' (the raw id stays inside each record)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(student_id)).strip("._") or "student"


def response_path(student_id: str, directory: str | Path | None = None) -> Path:
    """The JSONL file of one student; the id is made filename-safe (the raw id stays inside each record)."""
    return Path(directory) if str(directory or "").endswith(".jsonl") else (
        Path(directory or default_responses_dir()) / f"{safe_name(student_id)}.jsonl")


FILE_MODE = 0o600  # answers are personal: only their owner reads them
DIR_MODE = 0o700


def make_private_dirs(directory: Path) -> None:
    """Create a folder and any missing parents, each one readable by its owner only."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:  # another kernel made it in the meantime
            continue
        os.chmod(d, DIR_MODE)  # exactly 0700, whatever the umask


def append_line(path: str | Path, record: dict) -> None:
    """Append one JSON record as a single O_APPEND write, then fsync: concurrent writers never interleave.

    A new file is created 0600 and new folders 0700; existing ones keep their permissions."""
    path = Path(path)
    make_private_dirs(path.parent)
    line = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, FILE_MODE)
        os.fchmod(fd, FILE_MODE)  # exactly 0600, whatever the umask
    except FileExistsError:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        written = os.write(fd, line)
        if written != len(line):  # a short write on a full disk: say so rather than leave half a line silently
            raise OSError(f"only {written} of {len(line)} bytes written")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(path: str | Path, warn: bool = True) -> list[dict]:
    """Every well-formed record in a JSONL file; corrupted lines are skipped with a warning."""
    records = []
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return records
    for lineno, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
            if not isinstance(record, dict) or "question" not in record:
                raise ValueError("not a response record")
        except (ValueError, UnicodeDecodeError) as exc:
            if warn:
                warnings.warn(f"{path}:{lineno}: skipped a corrupted line ({exc}).", stacklevel=2)
            continue
        records.append(record)
    return records


class ResponseLog:
    """Answers of one student in this kernel: kept in memory, appended to the JSONL file when possible."""

    def __init__(self, student_id: str | None = None, path: str | Path | None = None):
        self.student_id = resolve_student_id(student_id)
        self.path = response_path(self.student_id, path)
        self.session = uuid.uuid4().hex[:12]
        self.records: list[dict] = []  # this kernel's answers, saved or not
        self.unsaved: list[dict] = []  # answers the file did not take (unwritable path)
        self.previous = read_records(self.path, warn=False)  # answers from earlier sessions (kernel restarts)

    def attempts(self, bank: str, question: str) -> int:
        """How many answers this student has given to a question, across sessions: read from the file each time,
        so two quizzes or notebooks open at once (or a check from code) keep one numbering."""
        pool = read_records(self.path, warn=False) + self.unsaved
        return sum(1 for r in pool if r.get("bank") == bank and r.get("question") == question
                   and str(r.get("student_id", self.student_id)) == self.student_id)

    def record(self, bank: str, question: str, kind: str, answer, correct) -> tuple[dict, str | None]:
        """Record one answer; returns (record, warning text or None when it could not be saved)."""
        rec = {
            "v": RECORD_VERSION,
            "ts": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "student_id": self.student_id,
            "bank": bank,
            "question": question,
            "kind": kind,
            "answer": answer,
            "correct": correct,
            "attempt": self.attempts(bank, question) + 1,
            "session": self.session,
            "labkit": __version__,
        }
        self.records.append(rec)
        try:
            append_line(self.path, rec)
        except OSError as exc:
            self.unsaved.append(rec)
            message = (
                f"Could not save your answer to {self.path} ({exc.strerror or exc}). It is kept in this session; "
                "to save it, run quiz.save(\"answers.jsonl\") with a folder you can write to."
            )
            warnings.warn(message, stacklevel=3)
            return rec, message
        return rec, None

    def save(self, path: str | Path) -> Path:
        """Append every answer of this session to `path` (e.g. after the default file was unwritable)."""
        path = Path(path)
        for rec in self.records:
            append_line(path, rec)
        self.unsaved = []
        return path


_DEFAULT_LOGS: dict[tuple[str, str], ResponseLog] = {}


def default_log() -> ResponseLog:
    """The log a question's `check` records into when it belongs to no Quiz: this student's usual file
    (resolve_student_id, default_responses_dir), one per kernel so attempt numbers keep counting."""
    student = resolve_student_id(None)
    key = (student, str(response_path(student)))
    if key not in _DEFAULT_LOGS:
        _DEFAULT_LOGS[key] = ResponseLog(student)
    return _DEFAULT_LOGS[key]
