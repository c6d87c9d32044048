"""`labkit quiz ...`: grade collected responses, validate a bank while writing it."""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from labkit.quiz.bank import BankError, read_yaml, validate_source
from labkit.quiz.grade import CANVAS_ID_CHOICES, format_summary, grade, write_reports


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `grade` and `validate` subcommands."""
    sub = parser.add_subparsers(dest="quiz_command", metavar="ACTION")
    g = sub.add_parser("grade", help="grade a folder of students' *.jsonl response files")
    g.add_argument("dir", type=Path, help="folder with the students' response files (searched recursively)")
    g.add_argument("--out", type=Path, default=Path("quiz_grades.csv"),
                   help="per student and question CSV (default quiz_grades.csv); next to it: *_summary.csv (per "
                        "question), *_scores.csv (per student and bank), *_canvas.csv (Canvas gradebook import), "
                        "*_report.md and *_report.html (statistics and common wrong answers)")
    g.add_argument("--banks", type=Path, default=None,
                   help="folder of banks to re-check answers against (default: the packaged labkit/quiz/banks)")
    g.add_argument("--canvas-id", choices=CANVAS_ID_CHOICES, default="SIS User ID",
                   help="the Canvas gradebook column that gets the labkit student id (default: SIS User ID)")
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
            grades = grade(args.dir, args.banks)
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        paths = write_reports(grades, args.out, canvas_id=args.canvas_id)
        print(format_summary(grades.summary))
        print(f"\n{len(grades.students)} students, {len(grades.rows)} answered questions -> {paths['answers']} "
              f"and {paths['summary']}")
        print(f"scores per student and bank: {paths['scores']}; Canvas import: {paths['canvas']}")
        print(f"question statistics: {paths['markdown']} and {paths['html']}")
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
    print("usage: labkit quiz grade DIR [--out CSV] [--canvas-id COLUMN] | labkit quiz validate FILE...",
          file=sys.stderr)
    return 2
