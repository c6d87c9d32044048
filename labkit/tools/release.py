"""`labkit release`: generate student notebooks/ and hashed quiz banks from solutions/ (or --check for drift).

Solutions are the single source. In a code cell:
    ### BEGIN SOLUTION
    probe_acc = linear_probe(train_features, train_labels, val_features, val_labels)
    ### END SOLUTION
becomes `# YOUR CODE HERE` plus a runnable placeholder: the block's `### PLACEHOLDER <code>` lines, or, when
there are none, `name = None` for every name the block assigns. Every code cell of a student notebook has its
outputs and execution count cleared (students run the cells themselves). Output is deterministic, so --check can
compare bytes. Writing is all-or-nothing: every destination folder is checked first, every file is written to a
temporary file beside its target, and only when all of them are written are they moved into place.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import re
import sys
import tempfile
import textwrap
from pathlib import Path

import yaml

from labkit._io import _FILE_MODE, folder_problem
from labkit.quiz.bank import BankError, compile_source, dump_compiled, read_yaml
from labkit.tools.nbval_mode import RUN_CHOSEN_TAG

BEGIN = re.compile(r"^(?P<indent>[ \t]*)#+[ \t]*BEGIN SOLUTION[ \t]*$")
END = re.compile(r"^[ \t]*#+[ \t]*END SOLUTION[ \t]*$")
PLACEHOLDER = re.compile(r"^(?P<indent>[ \t]*)#+[ \t]*PLACEHOLDER(?:[ \t](?P<code>.*))?$")
MD_BEGIN = re.compile(r"^[ \t]*<!--[ \t]*BEGIN SOLUTION[ \t]*-->[ \t]*$")
MD_END = re.compile(r"^[ \t]*<!--[ \t]*END SOLUTION[ \t]*-->[ \t]*$")
MD_PLACEHOLDER = re.compile(r"^[ \t]*<!--[ \t]*PLACEHOLDER[ \t]?(?P<text>.*?)[ \t]*-->[ \t]*$")
CHECK_CALL = re.compile(r"^[ \t]*(?:labkit\.)?(?:exercise\.)?check\(", re.MULTILINE)  # check(...), exercise.check(...)
QUIZ_CALL = re.compile(r"show_quiz\(")
YOUR_CODE = "# YOUR CODE HERE"
MD_DEFAULT = "_Write your answer here._"
NBVAL_IGNORE = "nbval-ignore-output"
# cell metadata that only records a particular run (timings), never useful to students
RUN_METADATA = ("execution", "papermill", "ExecuteTime")


class ReleaseError(ValueError):
    """A solution notebook cannot be released; the message names the notebook and cell."""


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _lines(text: str) -> list[str]:
    """Source as nbformat stores it on disk: a list of lines with their newlines."""
    return text.splitlines(keepends=True)


def _default_placeholder(block: list[str], indent: str) -> list[str]:
    """`name = None` for every top-level name a solution block assigns, else `pass`."""
    names: list[str] = []

    def collect(target) -> None:
        if isinstance(target, ast.Name) and target.id not in names:
            names.append(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                collect(t)
        elif isinstance(target, ast.Starred):
            collect(target.value)

    try:
        tree = ast.parse(textwrap.dedent("".join(block)))
    except SyntaxError:
        tree = None
    for node in (tree.body if tree else []):
        if isinstance(node, ast.Assign):
            for t in node.targets:
                collect(t)
        elif isinstance(node, ast.AnnAssign):
            collect(node.target)
    return [f"{indent}{n} = None\n" for n in names] or [f"{indent}pass\n"]


def strip_code(source: str, where: str) -> str:
    """Replace every solution block of a code cell with YOUR CODE HERE and a runnable placeholder."""
    out: list[str] = []
    block: list[str] | None = None
    placeholders: list[str] = []
    indent = ""
    for line in _lines(source):
        body = line.rstrip("\r\n")
        if BEGIN.match(body):
            if block is not None:
                raise ReleaseError(f"{where}: BEGIN SOLUTION inside another solution block; "
                                   "close it with ### END SOLUTION.")
            block, placeholders, indent = [], [], BEGIN.match(body).group("indent")
        elif END.match(body):
            if block is None:
                raise ReleaseError(f"{where}: END SOLUTION without a BEGIN SOLUTION above it.")
            out.append(f"{indent}{YOUR_CODE}\n")
            out.extend(placeholders or _default_placeholder(block, indent))
            block = None
        elif PLACEHOLDER.match(body):
            if block is None:
                raise ReleaseError(f"{where}: PLACEHOLDER line outside a solution block; "
                                   "move it between BEGIN and END SOLUTION.")
            m = PLACEHOLDER.match(body)
            placeholders.append(f"{m.group('indent')}{m.group('code') or ''}".rstrip() + "\n")
        elif block is not None:
            block.append(line)
        else:
            out.append(line)
    if block is not None:
        raise ReleaseError(f"{where}: BEGIN SOLUTION without END SOLUTION; add a `### END SOLUTION` line.")
    text = "".join(out)
    return text[:-1] if text.endswith("\n") and not source.endswith("\n") else text


def strip_markdown(source: str, where: str) -> str:
    """Replace <!-- BEGIN SOLUTION --> ... <!-- END SOLUTION --> with its placeholder (or a default prompt)."""
    out: list[str] = []
    inside, placeholder = False, None
    for line in _lines(source):
        body = line.rstrip("\r\n")
        if MD_BEGIN.match(body):
            if inside:
                raise ReleaseError(f"{where}: nested <!-- BEGIN SOLUTION -->; close the first block.")
            inside, placeholder = True, None
        elif MD_END.match(body):
            if not inside:
                raise ReleaseError(f"{where}: <!-- END SOLUTION --> without a BEGIN above it.")
            out.append((placeholder or MD_DEFAULT) + "\n")
            inside = False
        elif inside and MD_PLACEHOLDER.match(body):
            placeholder = MD_PLACEHOLDER.match(body).group("text")
        elif not inside:
            out.append(line)
    if inside:
        raise ReleaseError(f"{where}: <!-- BEGIN SOLUTION --> without <!-- END SOLUTION -->.")
    text = "".join(out)
    return text[:-1] if text.endswith("\n") and not source.endswith("\n") else text


def _has_markers(source: str, markdown: bool) -> bool:
    patterns = (MD_BEGIN, MD_END) if markdown else (BEGIN, END, PLACEHOLDER)
    return any(p.match(line) for line in source.splitlines() for p in patterns)


NBVAL_MARKER = re.compile(r"^\s*#\s*NBVAL_[A-Z_]+.*(\n|$)", re.M)


def strip_nbval_markers(source: str) -> str:
    """A code cell without its `# NBVAL_...` comment lines: they instruct the test runner, not the student."""
    return NBVAL_MARKER.sub("", source)


def _clear(cell: dict) -> None:
    """Clear outputs and execution count, and tell nbval (in the cell's metadata) not to compare its output."""
    cell["outputs"] = []
    cell["execution_count"] = None
    tags = cell.setdefault("metadata", {}).setdefault("tags", [])
    if NBVAL_IGNORE not in tags:
        tags.append(NBVAL_IGNORE)


def release_notebook(nb: dict, name: str) -> dict:
    """The student version of one solution notebook (a new dict; the input is not changed)."""
    nb = json.loads(json.dumps(nb))  # deep copy
    cells = []
    for index, cell in enumerate(nb.get("cells", [])):
        where = f"solutions/{name}, cell {index + 1}"
        tags = cell.get("metadata", {}).get("tags", [])
        if "instructor-only" in tags:
            continue  # instructor notes and grading helpers never reach students
        for key in RUN_METADATA:
            cell.get("metadata", {}).pop(key, None)
        if RUN_CHOSEN_TAG in tags:  # a test-runner tag (see labkit.tools.nbval_mode), not for students
            cell["metadata"]["tags"] = [t for t in tags if t != RUN_CHOSEN_TAG]
        source = _source(cell)
        if cell.get("cell_type") == "code":
            if NBVAL_MARKER.search(source):  # students never see the test runner's markers
                source = strip_nbval_markers(source)
                cell["source"] = _lines(source)
            if "solution" in tags:  # the whole cell is the solution
                source = "### BEGIN SOLUTION\n" + source.rstrip("\n") + "\n### END SOLUTION\n"
            if _has_markers(source, markdown=False):
                cell["source"] = _lines(strip_code(source, where))
                _clear(cell)
            elif "check" in tags or CHECK_CALL.search(source) or QUIZ_CALL.search(source):
                _clear(cell)  # checks and quizzes must show the student's state, not the solution run's
            else:  # students run every cell themselves: no outputs or run numbers from the solution run
                cell["outputs"] = []
                cell["execution_count"] = None
        elif cell.get("cell_type") == "markdown" and _has_markers(source, markdown=True):
            cell["source"] = _lines(strip_markdown(source, where))
        cells.append(cell)
    nb["cells"] = cells
    meta = nb.setdefault("metadata", {})
    meta.pop("widgets", None)  # widget state of the solution run would show stale quiz answers
    meta.pop("papermill", None)
    meta["labkit"] = {"generated_from": f"solutions/{name}",
                      "note": "Generated by `labkit release`; edit the solutions notebook, not this file."}
    return nb


def dumps_notebook(nb: dict) -> str:
    """Notebook JSON exactly as nbformat writes it (indent 1, sorted keys, trailing newline)."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False, separators=(",", ": ")) + "\n"


def _previous_bank(path: Path) -> dict | None:
    """The compiled bank already released, for its salts (None if missing or unreadable)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def plan(solutions: Path, notebooks: Path, banks: Path) -> tuple[dict[Path, str], list[Path]]:
    """(every file release would write -> its text, stale files release would not produce)."""
    if not solutions.is_dir():
        raise ReleaseError(f"No {solutions}/ folder here. Run `labkit release` from the repository root "
                           "or pass --solutions PATH.")
    files: dict[Path, str] = {}
    for src in sorted(solutions.glob("*.ipynb")):
        try:
            nb = json.loads(src.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ReleaseError(f"{src}: not valid notebook JSON ({exc}).") from None
        files[notebooks / src.name] = dumps_notebook(release_notebook(nb, src.name))
    for src in sorted((solutions / "quiz").glob("*.yaml")):
        out = banks / src.name
        try:
            compiled = compile_source(read_yaml(src), src.stem, previous=_previous_bank(out),
                                      source=f"{solutions.name}/quiz/{src.name}")
        except BankError as exc:
            raise ReleaseError(f"{src}: {exc}") from None
        files[out] = dump_compiled(compiled)
    stale = [p for p in sorted(notebooks.glob("*.ipynb")) if p not in files]
    stale += [p for p in sorted(banks.glob("*.yaml")) if p not in files]
    return files, stale


def write_all(files: dict[Path, str]) -> None:
    """Write every file or none: each goes to a temporary file beside its target, then all are moved into place.

    Raises OSError (with nothing changed) when any temporary file cannot be written.
    """
    written: list[tuple[Path, Path]] = []
    try:
        for target, text in files.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            written.append((Path(tmp), target))
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, _FILE_MODE)  # what a plain open() gives (mkstemp makes 0600)
    except BaseException:
        for tmp, _ in written:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    for tmp, target in written:  # same folder, same file system: each move is one rename
        os.replace(tmp, target)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `labkit release`."""
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if notebooks/ or the compiled banks differ from solutions/")
    parser.add_argument("--solutions", type=Path, default=Path("solutions"), help="source folder (default solutions)")
    parser.add_argument("--notebooks", type=Path, default=Path("notebooks"), help="student folder (default notebooks)")
    parser.add_argument("--banks", type=Path, default=Path("labkit/quiz/banks"),
                        help="compiled quiz banks (default labkit/quiz/banks)")


def run(args: argparse.Namespace) -> int:
    """Generate (or, with --check, verify) the student notebooks and compiled banks."""
    try:
        files, stale = plan(args.solutions, args.notebooks, args.banks)
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    changed = [p for p, text in files.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    if args.check:
        if not changed and not stale:
            print(f"ok: {len(files)} released files match {args.solutions}/")
            return 0
        for p in changed:
            print(f"drift: {p} {'is missing' if not p.exists() else 'differs from what solutions/ produces'}")
        for p in stale:
            print(f"drift: {p} has no source in {args.solutions}/ (delete it)")
        print("Released files are out of date: run `labkit release` and commit the result.", file=sys.stderr)
        return 1
    problems = [f"--{option} {where}" for option, folder in (("notebooks", args.notebooks), ("banks", args.banks))
                if (where := folder_problem(folder))]
    if problems:
        print(f"error: nothing was written: {'; '.join(problems)}. Pass --notebooks and --banks folders you can "
              "write to.", file=sys.stderr)
        return 1
    try:
        write_all({p: files[p] for p in changed})
    except OSError as exc:
        print(f"error: nothing was written: {exc.filename or ''} {exc.strerror or exc}. Pass --notebooks and "
              "--banks folders you can write to.", file=sys.stderr)
        return 1
    for p in changed:
        print(f"wrote {p}")
    for p in stale:
        print(f"note: {p} has no source in {args.solutions}/; delete it if it is obsolete")
    print(f"{len(changed)} written, {len(files) - len(changed)} unchanged")
    return 0
