"""Collecting quiz answers on a shared machine or a JupyterHub: an exchange folder in the style of nbgrader's.

Layout: `<exchange>/<course>/inbound/`. A student's `labkit quiz submit` copies their response file there as
`<student>+<UTC time>+<random>.jsonl`; the instructor's `labkit quiz collect` keeps the newest submission per
student (optionally the newest before a deadline) in `<out>/<student>/responses.jsonl`, ready for
`labkit quiz grade <out>`.

Who can read what (`labkit quiz init-exchange` sets it up):
- `inbound/` is mode 1733 (like /tmp: anyone may create a file, nobody but its owner may delete or rename it) and
  gives no read permission to students, so they cannot list it. With `--group` it is 3773 instead: the group
  (the instructors) may list it, and the setgid bit gives every submission that group.
- A submission's name ends in 96 random bits: a student who cannot list the folder cannot find, read or
  overwrite anyone else's file, even where every student is the same OS user (`jovyan` on zero-to-jupyterhub
  images). Files are 0640 in a setgid folder (the instructors' group reads them), 0600 when the student owns the
  folder too (a one-account machine) and 0644 otherwise (the instructor is another account; the unguessable name
  is what hides it, as in nbgrader).
- Nothing on a shared file system proves who wrote a file when every student is the same OS user; the records
  carry the JupyterHub user name the kernel saw. `collect` keeps only the records of the student a submission is
  named for and reports the rest.
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from labkit.quiz.responses import (
    FILE_MODE,
    default_responses_dir,
    make_private_dirs,
    read_records,
    resolve_student_id,
    response_path,
    safe_name,
)

EXCHANGE_ENV = "LABKIT_EXCHANGE"
COURSE_ENV = "LABKIT_COURSE"
DEFAULT_EXCHANGE = "/srv/labkit/exchange"
DEFAULT_COURSE = "labkit"
INBOUND_MODE = 0o1733  # rwx-wx-wx + sticky: students create files, cannot list, cannot remove others' files
INBOUND_GROUP_MODE = 0o3773  # ... and the group (instructors) lists; setgid: submissions get that group
COURSE_MODE = 0o755
_TIME_FORMAT = "%Y%m%dT%H%M%S.%fZ"
_NAME = re.compile(r"^(?P<student>[A-Za-z0-9._-]+)\+(?P<ts>\d{8}T\d{6}\.\d{6}Z)\+(?P<token>[A-Za-z0-9_-]{8,})\.jsonl$")
MANIFEST_COLUMNS = ["student", "submitted", "file", "records", "other_students_records", "older_submissions"]


class ExchangeError(RuntimeError):
    """The exchange cannot be used as asked; the message names the folder and the fix."""


def exchange_root(root: str | Path | None = None) -> Path:
    """The exchange folder: the argument, else $LABKIT_EXCHANGE, else /srv/labkit/exchange."""
    return Path(root or os.environ.get(EXCHANGE_ENV) or DEFAULT_EXCHANGE).expanduser()


def course_name(course: str | None = None) -> str:
    """The course: the argument, else $LABKIT_COURSE, else 'labkit'."""
    name = str(course or os.environ.get(COURSE_ENV) or DEFAULT_COURSE)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", name):
        raise ExchangeError(f"course name {name!r} may only hold letters, digits, '.', '_' and '-'.")
    return name


def inbound_dir(root: str | Path | None = None, course: str | None = None) -> Path:
    return exchange_root(root) / course_name(course) / "inbound"


def _group_id(group: str | int) -> int:
    text = str(group)
    if text.isdigit():
        return int(text)
    import grp

    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise ExchangeError(f"no group {text!r} on this machine; give its name or number (gid).") from None


def init_exchange(root: str | Path | None = None, course: str | None = None, group: str | int | None = None) -> Path:
    """Create (or fix the modes of) `<root>/<course>/inbound`; returns the inbound folder.

    Run it as the instructor (each person has an OS account) or as root (everyone is `jovyan`: then give the
    instructors' `group`, so that they can list the submissions while students cannot)."""
    inbound = inbound_dir(root, course)
    for d in (inbound.parent.parent, inbound.parent):
        d.mkdir(parents=True, exist_ok=True)
        if d.stat().st_uid == os.geteuid():
            os.chmod(d, COURSE_MODE)  # students must be able to reach inbound/
    inbound.mkdir(exist_ok=True)
    mode = INBOUND_MODE
    if group is not None:
        os.chown(inbound, -1, _group_id(group))
        mode = INBOUND_GROUP_MODE
    os.chmod(inbound, mode)
    return inbound


@dataclass
class Submission:
    """One file in the inbound folder."""

    student: str
    time: _dt.datetime
    path: Path


def _private_file_mode(inbound: Path) -> int:
    st = inbound.stat()
    if st.st_mode & stat.S_ISGID:
        return 0o640  # the instructors' group (inherited from the folder) reads it
    if st.st_uid == os.geteuid():
        return FILE_MODE  # one account for everyone: the owner is also the instructor
    return 0o644  # the instructor is another account: hidden by its unguessable name, as in nbgrader


def submit(responses: str | Path | None = None, student_id: str | None = None, root: str | Path | None = None,
           course: str | None = None, now: _dt.datetime | None = None) -> tuple[Path, int, list[str]]:
    """Copy this student's answers into the exchange; returns (submitted file, records, warnings).

    `responses`: the response file or folder (default: this student's file in ~/.labkit/responses or
    $LABKIT_RESPONSES_DIR). Only records of this student are submitted."""
    student = resolve_student_id(student_id)
    source = response_path(student, responses)
    if source.is_dir():
        source = response_path(student, source)
    inbound = inbound_dir(root, course)
    if not inbound.is_dir():
        raise ExchangeError(f"no exchange folder at {inbound}. Ask your instructor to create it "
                            "(`labkit quiz init-exchange`), or set LABKIT_EXCHANGE / --exchange to where it is.")
    if not os.access(inbound, os.W_OK | os.X_OK):
        raise ExchangeError(f"you cannot write to {inbound}; ask your instructor to run "
                            "`labkit quiz init-exchange` (it makes the folder writable for students).")
    if not source.is_file():
        raise ExchangeError(f"no answers to submit: {source} does not exist. Answer a quiz first (the answers are "
                            f"saved for {student!r} in {default_responses_dir()}), or pass --responses FILE.")
    records = [r for r in read_records(source) if str(r.get("student_id", student)) == student]
    if not records:
        raise ExchangeError(f"no answers of {student!r} in {source}; answer a quiz first, or pass --student.")
    warnings = []
    if os.geteuid() != 0 and os.access(inbound, os.R_OK):
        warnings.append(f"you can list {inbound}, so other students may find the submissions in it; ask your "
                        "instructor to set it up with `labkit quiz init-exchange` as described in "
                        "docs/jupyterhub.md.")
    when = (now or _dt.datetime.now(_dt.timezone.utc)).astimezone(_dt.timezone.utc)
    name = f"{safe_name(student)}+{when.strftime(_TIME_FORMAT)}+{secrets.token_urlsafe(12)}.jsonl"
    data = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records).encode("utf-8")
    target = inbound / name
    part = inbound / f".{name}.part"  # written in full, then renamed: collect never sees half a file
    try:
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ExchangeError(f"could not write to {inbound} ({exc.strerror or exc}); ask your instructor.") from None
    try:
        os.fchmod(fd, _private_file_mode(inbound))
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        part.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.rename(part, target)
    return target, len(records), warnings


def list_submissions(root: str | Path | None = None, course: str | None = None) -> tuple[list[Submission], list[str]]:
    """Every submission in the inbound folder (the instructor's view) and the names that are not submissions."""
    inbound = inbound_dir(root, course)
    if not inbound.is_dir():
        raise ExchangeError(f"no exchange folder at {inbound}; create it with `labkit quiz init-exchange` "
                            "(see docs/jupyterhub.md) or pass --exchange / --course.")
    try:
        names = sorted(os.listdir(inbound))
    except PermissionError:
        raise ExchangeError(f"you cannot list {inbound}: collect as the account that created it or as a member "
                            "of its group (`labkit quiz init-exchange --group`); students cannot list it on "
                            "purpose.") from None
    found, other = [], []
    for name in names:
        m = _NAME.match(name)
        if not m:
            if not name.startswith("."):
                other.append(name)
            continue
        t = _dt.datetime.strptime(m["ts"], _TIME_FORMAT).replace(tzinfo=_dt.timezone.utc)
        found.append(Submission(m["student"], t, inbound / name))
    return found, other


def collect(out: str | Path, root: str | Path | None = None, course: str | None = None,
            deadline: _dt.datetime | None = None) -> tuple[list[dict], list[str]]:
    """Copy the newest submission per student (the newest before `deadline` if given) to
    `<out>/<student>/responses.jsonl` and write `<out>/manifest.csv`; returns (manifest rows, warnings)."""
    submissions, other = list_submissions(root, course)
    warnings = [f"not a submission, left alone: {name}" for name in other]
    by_student: dict[str, list[Submission]] = {}
    for sub in submissions:
        by_student.setdefault(sub.student, []).append(sub)
    out = Path(out)
    make_private_dirs(out)
    rows = []
    for student, subs in sorted(by_student.items()):
        subs.sort(key=lambda s: s.time)
        eligible = [s for s in subs if deadline is None or s.time <= deadline]
        if not eligible:
            warnings.append(f"{student}: every submission is after the deadline (first at "
                            f"{subs[0].time.isoformat(timespec='seconds')}); nothing collected.")
            continue
        chosen = eligible[-1]
        try:
            records = read_records(chosen.path)
        except OSError as exc:
            warnings.append(f"{student}: cannot read {chosen.path.name} ({exc.strerror or exc}).")
            continue
        mine = [r for r in records if safe_name(str(r.get("student_id", student))) == student]
        foreign = len(records) - len(mine)
        if foreign:
            warnings.append(f"{student}: {foreign} records in the submission name another student; left out.")
        target = out / student / "responses.jsonl"
        make_private_dirs(target.parent)
        if target.exists():
            target.unlink()
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for r in mine:
                f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
        rows.append({"student": student, "submitted": chosen.time.isoformat(timespec="seconds"),
                     "file": chosen.path.name, "records": len(mine), "other_students_records": foreign,
                     "older_submissions": len(eligible) - 1})
    with (out / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows, warnings
