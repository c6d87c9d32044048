"""`labkit quiz ...`: submit answers to the course exchange, collect and grade them, validate a bank."""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from labkit.quiz.bank import BankError, read_yaml, validate_source
from labkit.quiz.exchange import (
    COURSE_ENV,
    DEFAULT_COURSE,
    DEFAULT_EXCHANGE,
    EXCHANGE_ENV,
    ExchangeError,
    collect,
    init_exchange,
    submit,
)
from labkit.quiz.grade import (
    CANVAS_ID_CHOICES,
    MOODLE_ID_CHOICES,
    format_summary,
    grade,
    parse_deadline,
    write_reports,
)

USAGE = ("usage: labkit quiz submit | collect [--out DIR] | grade DIR [--deadline TIME] | init-exchange [--group G] "
         "| validate FILE...")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `submit`, `collect`, `grade`, `init-exchange` and `validate` subcommands."""
    sub = parser.add_subparsers(dest="quiz_command", metavar="ACTION")

    def exchange_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--exchange", type=Path, default=None,
                       help=f"the exchange folder (default: ${EXCHANGE_ENV}, else {DEFAULT_EXCHANGE})")
        p.add_argument("--course", default=None, help=f"course name (default: ${COURSE_ENV}, else {DEFAULT_COURSE})")

    s = sub.add_parser("submit", help="student: hand your quiz answers in to the course exchange")
    exchange_args(s)
    s.add_argument("--student", default=None,
                   help="your id (default: $JUPYTERHUB_USER, then $LABKIT_STUDENT_ID, then the login name)")
    s.add_argument("--responses", type=Path, default=None,
                   help="your response file or folder (default: $LABKIT_RESPONSES_DIR, else ~/.labkit/responses)")
    c = sub.add_parser("collect", help="instructor: copy the newest submission per student out of the exchange")
    exchange_args(c)
    c.add_argument("--out", type=Path, default=Path("collected"),
                   help="where to put <student>/responses.jsonl and manifest.csv (default: ./collected); "
                        "then run `labkit quiz grade` on it")
    c.add_argument("--deadline", default=None,
                   help="ISO-8601 time (e.g. 2025-03-01T23:59, local time unless it names a zone): ignore "
                        "submissions made after it")
    i = sub.add_parser("init-exchange", help="instructor or admin: create the exchange folder with its permissions")
    exchange_args(i)
    i.add_argument("--group", default=None,
                   help="the instructors' group (name or gid): they may list the submissions, students may not "
                        "(needed where every user is the same OS user, as on zero-to-jupyterhub)")
    g = sub.add_parser("grade", help="grade a folder of students' *.jsonl response files")
    g.add_argument("dir", type=Path, help="folder with the students' response files (searched recursively)")
    g.add_argument("--out", type=Path, default=Path("quiz_grades.csv"),
                   help="per student and question CSV (default quiz_grades.csv); next to it: *_summary.csv (item "
                        "statistics per question), *_scores.csv (first-try and best points per student and bank), "
                        "*_canvas.csv and *_moodle.csv (gradebook imports), *_ungraded.csv (answers that count "
                        "nowhere: unknown bank or question, after the deadline), *_report.md and *_report.html")
    g.add_argument("--banks", type=Path, default=None,
                   help="folder of banks to re-check answers against (default: the packaged labkit/quiz/banks)")
    g.add_argument("--canvas-id", choices=CANVAS_ID_CHOICES, default="SIS User ID",
                   help="the Canvas gradebook column that gets the labkit student id (default: SIS User ID)")
    g.add_argument("--moodle-id", choices=MOODLE_ID_CHOICES, default="Username",
                   help="the Moodle user field the labkit student id matches (default: Username)")
    g.add_argument("--deadline", default=None,
                   help="ISO-8601 time (e.g. 2025-03-01T23:59, local time unless it names a zone, or ...Z for "
                        "UTC): answers given after it do not count (they are listed in *_ungraded.csv)")
    v = sub.add_parser("validate", help="check plaintext bank files (solutions/quiz/NN.yaml) for mistakes")
    v.add_argument("files", nargs="+", type=Path)


def _warn_plainly(message, category, filename, lineno, file=None, line=None):
    """Warnings as one readable line on stderr."""
    print(f"warning: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Dispatch `labkit quiz ACTION`."""
    warnings.showwarning = _warn_plainly
    if args.quiz_command == "grade":
        try:
            deadline = parse_deadline(args.deadline) if args.deadline else None
            grades = grade(args.dir, args.banks, deadline=deadline)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        paths = write_reports(grades, args.out, canvas_id=args.canvas_id, moodle_id=args.moodle_id)
        print(format_summary(grades.summary))
        print(f"\n{len(grades.students)} students, {len(grades.rows)} answered questions -> {paths['answers']} "
              f"and {paths['summary']}")
        if deadline is not None:
            print(f"deadline: {deadline.isoformat(timespec='minutes')}; later answers do not count")
        print(f"first-try and best scores per student and bank: {paths['scores']}; gradebook imports: "
              f"{paths['canvas']} (Canvas), {paths['moodle']} (Moodle)")
        print(f"question statistics: {paths['markdown']} and {paths['html']}")
        if grades.ungraded:
            reasons = sorted({u["reason"] for u in grades.ungraded})
            print(f"not graded: {len(grades.ungraded)} answers ({'; '.join(reasons[:3])}"
                  f"{'; ...' if len(reasons) > 3 else ''}), listed in {paths['ungraded']}; they count in no score")
        return 0
    if args.quiz_command == "submit":
        try:
            path, n, notes = submit(args.responses, args.student, args.exchange, args.course)
        except ExchangeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for note in notes:
            print(f"warning: {note}", file=sys.stderr)
        print(f"Submitted {n} answers as {path.name.split('+')[0]} to the {path.parent.parent.name} exchange. "
              "Submit again whenever you like: your newest submission counts.")
        return 0
    if args.quiz_command == "collect":
        try:
            deadline = parse_deadline(args.deadline) if args.deadline else None
            rows, notes = collect(args.out, args.exchange, args.course, deadline=deadline)
        except (ExchangeError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for note in notes:
            print(f"warning: {note}", file=sys.stderr)
        for r in rows:
            print(f"{r['student']}: {r['records']} answers, submitted {r['submitted']}")
        print(f"\n{len(rows)} students collected into {args.out} (manifest.csv lists them); next: "
              f"labkit quiz grade {args.out}")
        return 0
    if args.quiz_command == "init-exchange":
        try:
            inbound = init_exchange(args.exchange, args.course, args.group)
        except (ExchangeError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"exchange ready: {inbound} (mode {oct(inbound.stat().st_mode & 0o7777)[2:]}); students submit with "
              "`labkit quiz submit`, you collect with `labkit quiz collect`")
        return 0
    if args.quiz_command == "validate":
        status = 0
        for path in args.files:
            try:
                questions = validate_source(read_yaml(path), path.stem)
                print(f"ok: {path} ({len(questions)} questions)")
            except BankError as exc:
                print(f"error: {path}: {exc}", file=sys.stderr)
                status = 1
        return status
    print(USAGE, file=sys.stderr)
    return 2
