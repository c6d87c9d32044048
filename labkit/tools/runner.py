"""`labkit run`: execute notebooks with papermill and show the numbers they recorded.

The one function that executes a notebook, `execute_notebook`, is shared with `labkit batch`: it runs papermill in a
child process (so a per-run time limit can stop it and a crashing kernel cannot take the caller down), injects
`results_path`, and writes a status file atomically next to the executed notebook. The kernel's temporary files
(e.g. Hugging Face Trainer checkpoints) go to a folder of the run that is removed when the run ends, however it ends.
"""
from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from labkit._io import CACHE_ENV, atomic_write, cache_root, folder_problem
from labkit._tables import flatten_numbers, format_value, markdown_table, text_table
from labkit.params import absolute_paths
from labkit.results import RESULTS_SUFFIX
from labkit.tools.bands import band_verdict, bands_for, find_bands, load_bands
from labkit.tools.notebooks import find_notebooks

STATUS_SUFFIX = ".status.json"
DEFAULT_KERNEL = "python3"
DEFAULT_CELL_TIMEOUT = 1800  # seconds; a quick-tier cell takes well under a minute, so this only catches hangs
TIERS = ("quick", "full")

# Child processes currently executing a notebook, so an interrupt can stop them all (see `stop_all`); STOPPING is
# set while they are stopped (labkit.tools.batch reads it too, to not retry a run that was interrupted).
_ACTIVE: set[subprocess.Popen] = set()
_ACTIVE_LOCK = threading.Lock()
STOPPING = threading.Event()


# ----------------------------------------------------------------------------------------------------------------
# Small shared helpers


def write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Write JSON so readers see either the old file or the new one, never half of it."""
    with atomic_write(path, "w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True, default=str)


def read_json(path: Path) -> dict | None:
    """Read a JSON file; None when it is missing or unreadable (e.g. a run killed mid-write of a foreign file)."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def status_path(out_dir: str | os.PathLike, name: str) -> Path:
    """Where `execute_notebook` writes the status record of notebook `name` inside `out_dir`."""
    return Path(out_dir) / f"{name}{STATUS_SUFFIX}"


# ----------------------------------------------------------------------------------------------------------------
# Notebook parameters


def notebook_parameters(path: str | os.PathLike) -> dict[str, dict]:
    """Parameters declared in a notebook's `parameters` cell: name -> {default, inferred_type_name, help}."""
    import papermill  # local import: `labkit run --help` should not pay for papermill

    return dict(papermill.inspect_notebook(str(path)))


def _default_type(param: Mapping[str, Any]) -> type | None:
    """The Python type of a parameter's default value; None when any value is acceptable (e.g. `x = None`)."""
    try:
        default = ast.literal_eval(str(param.get("default")))
    except (ValueError, SyntaxError):
        return None  # an expression, not a literal: we cannot know the type
    return None if default is None else type(default)


def declared_problems(notebook: str, values: Mapping[str, Any]) -> list[str]:
    """What `labkit.params` says of these values for this notebook (nothing for a notebook it does not know)."""
    from labkit.params import problems

    return problems(notebook, values)


def check_parameters(notebook: str, declared: Mapping[str, Mapping], values: Mapping[str, Any],
                     where: str = "") -> list[str]:
    """Problems with `values` for a notebook declaring `declared`: unknown names and wrong types (one line each)."""
    problems = []
    place = f" ({where})" if where else ""
    for name, value in values.items():
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            problems.append(f"{notebook}: unknown parameter '{name}'{place}; the notebook's parameters are: {known}")
            continue
        if name == "results_path":
            problems.append(f"{notebook}: 'results_path' is set by the runner{place}; remove it")
            continue
        if name == "tier" and value not in TIERS:
            problems.append(f"{notebook}: tier must be one of {', '.join(TIERS)}, not {value!r}{place}")
            continue
        ranged = declared_problems(notebook, {name: value})  # type, range, allowed values (labkit.params)
        if ranged:
            problems += [f"{line}{place}" for line in ranged]
            continue
        expected = _default_type(declared[name])
        if expected is None or value is None:
            continue
        ok = isinstance(value, expected) and not (isinstance(value, bool) and expected is not bool)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True  # 1 is a fine learning-rate-like float
        if not ok:
            problems.append(f"{notebook}: parameter '{name}' should be {expected.__name__} "
                            f"(default {declared[name].get('default')}), got {type(value).__name__} {value!r}{place}")
    return problems


# ----------------------------------------------------------------------------------------------------------------
# Executing one notebook (shared with labkit.tools.batch)


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill a child and everything it started (papermill's kernel), so no orphan keeps a GPU or a core busy."""
    try:
        import psutil  # installed with dask[distributed]

        children = psutil.Process(proc.pid).children(recursive=True)
    except Exception:  # psutil missing or the process is already gone
        children = []
    for child in children:
        try:
            child.kill()
        except Exception:
            pass
    try:
        proc.kill()
    except OSError:
        pass


def stop_all() -> None:
    """Stop every notebook this process is executing (used on Ctrl-C); their runs are marked 'interrupted'."""
    STOPPING.set()
    with _ACTIVE_LOCK:
        procs = list(_ACTIVE)
    for proc in procs:
        _kill_tree(proc)


def _started_cell(output: Path) -> dict | None:
    """The last cell papermill started in a (partially) executed notebook: where a crash or timeout happened."""
    try:
        import nbformat

        nb = nbformat.read(str(output), as_version=4)
    except Exception:
        return None
    last = None
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.get("metadata", {}).get("papermill", {}).get("start_time"):
            last = cell
    if last is None:
        return None
    return {"cell": last.get("execution_count"), "source": last.source}


def first_code_line(source: str) -> str:
    """The line a student recognises a cell by: its first line that is not blank, a comment or a `# NBVAL_...`
    marker (the first non-blank line when the cell is only comments)."""
    lines = [ln.strip() for ln in str(source or "").splitlines() if ln.strip()]
    return next((ln for ln in lines if not ln.startswith("#")), lines[0] if lines else "")


def _describe_error(error: dict, name: str, kernel: str) -> str:
    """One readable line: which cell failed, with what, and what to do next when we know."""
    where = f"In [{error['cell']}]" if error.get("cell") is not None else "before the first cell ran"
    first_line = first_code_line(error.get("source") or "")
    if first_line:
        where += f" `{first_line[:70]}`"
    what = f"{error.get('ename', 'Error')}: {error.get('evalue', '')}".strip().rstrip(":")
    message = f"{where}: {what}"
    ename, evalue = str(error.get("ename")), str(error.get("evalue"))
    if ename == "ModuleNotFoundError" and "labkit" in evalue:
        message += (f" -- the Jupyter kernel '{kernel}' runs a Python without labkit: pass --kernel NAME, or run "
                    "`python -m ipykernel install --sys-prefix` in the environment that has labkit")
    elif ename == "NoSuchKernel":
        message += " -- see `jupyter kernelspec list` and pass --kernel NAME"
    elif ename == "DeadKernelError":
        message += " -- the kernel died (out of memory, a crash, or os._exit); see the log"
    elif ename == "CellTimeoutError":
        message += " -- raise the per-cell timeout (--timeout / cell_timeout) or make the cell lighter"
    return message


_WARNING_LINE = re.compile(r"(?:^|:\d+: )(?P<text>[A-Z]\w*Warning: .+)$")
MAX_WARNINGS = 10


def notebook_warnings(output: Path) -> list[str]:
    """Warnings an executed notebook showed (a `...Warning:` line on stderr, or a printed line starting with
    WARNING), each with the cell it came from, so the console shows what the notebook shows (e.g. skipped images)."""
    try:
        import nbformat

        nb = nbformat.read(str(output), as_version=4)
    except Exception:
        return []
    found: list[str] = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") != "stream":
                continue
            for line in str(out.get("text", "")).splitlines():
                line = line.strip()
                m = _WARNING_LINE.search(line) if out.get("name") == "stderr" else None
                text = m.group("text") if m else (line if line.startswith("WARNING") else None)
                if text:
                    found.append(f"In [{cell.get('execution_count')}] `{first_code_line(cell.source)[:60]}`: "
                                 f"{text[:500]}")
    return list(dict.fromkeys(found))[:MAX_WARNINGS]


def _child_main(job_file: str) -> int:
    """Inside the child process: run papermill once and write the outcome (ok, or the failing cell) as JSON."""
    job = json.loads(Path(job_file).read_text())
    if sys.platform.startswith("linux"):
        # Die with the parent (e.g. a Dask worker that was killed), so a retry elsewhere never races an orphan.
        try:
            import ctypes
            import signal

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except Exception:
            pass
        if os.getppid() != job["parent_pid"]:
            return 3  # the parent died before we could ask to die with it
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    import papermill
    from papermill.exceptions import PapermillExecutionError

    outcome: dict[str, Any] = {"ok": False}
    try:
        papermill.execute_notebook(
            job["source"], job["output"], parameters=job["parameters"], kernel_name=job["kernel"],
            execution_timeout=job["cell_timeout"], start_timeout=job["start_timeout"], cwd=job["cwd"],
            progress_bar=False, log_output=True,
        )
        outcome["ok"] = True
    except PapermillExecutionError as exc:
        outcome["error"] = {"cell": exc.exec_count, "source": exc.source, "ename": exc.ename, "evalue": exc.evalue}
        logging.error("the notebook failed:%s", exc)  # the traceback, for the log
    except Exception as exc:  # dead kernel, cell timeout, missing kernel: still a readable record
        outcome["error"] = {"ename": type(exc).__name__, "evalue": str(exc).strip().splitlines()[0] if str(exc) else ""}
        outcome["error"].update(_started_cell(Path(job["output"])) or {})
        logging.exception("papermill stopped")
    write_json_atomic(Path(job["outcome"]), outcome)
    return 0 if outcome["ok"] else 1


def execute_notebook(source: str | os.PathLike, out_dir: str | os.PathLike, parameters: Mapping[str, Any] | None = None,
                     *, name: str | None = None, kernel: str | None = DEFAULT_KERNEL,
                     cell_timeout: float | None = DEFAULT_CELL_TIMEOUT, timeout: float | None = None,
                     env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None,
                     start_timeout: float = 120, extra: Mapping[str, Any] | None = None) -> dict:
    """Execute one notebook with papermill into `out_dir` and return its status record (also saved as JSON).

    Writes `<name>.ipynb` (executed), `<name>.results.json` (via the injected `results_path`), `<name>.log` and
    `<name>.status.json`, whose "status" is "done" only when every cell ran.
    name: file stem, default the notebook's stem (its id, e.g. "00_tour").
    cell_timeout: seconds per cell (papermill's execution timeout); timeout: seconds for the whole notebook.
    env: extra environment for the kernel, e.g. {"CUDA_VISIBLE_DEVICES": "1"} to pin a run to one GPU.
    extra: fields copied into the status record (a batch puts run id and attempt here).
    """
    source = Path(source).resolve()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or source.stem
    output, results, log = (out_dir / f"{name}.ipynb", out_dir / f"{name}{RESULTS_SUFFIX}", out_dir / f"{name}.log")
    status_file, outcome_file = status_path(out_dir, name), out_dir / f".{name}.outcome.json"
    for stale in (results, outcome_file):  # numbers from an earlier attempt must never pass for this one's
        stale.unlink(missing_ok=True)
    params = dict(parameters or {})
    params["results_path"] = str(results)
    record: dict[str, Any] = {
        **dict(extra or {}),
        "notebook": name, "source": str(source), "parameters": params, "kernel": kernel,
        "status": "running", "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(),
        "output": output.name, "results": results.name, "log": log.name, "env": dict(env or {}),
    }
    write_json_atomic(status_file, record)

    job = {"source": str(source), "output": str(output), "parameters": params, "kernel": kernel,
           "cell_timeout": cell_timeout, "start_timeout": start_timeout, "cwd": str(Path(cwd or source.parent)),
           "outcome": str(outcome_file), "parent_pid": os.getpid()}
    job_file = out_dir / f".{name}.job.json"
    write_json_atomic(job_file, job)
    scratch = out_dir / f".{name}.tmp"  # the kernel's temporary files (Trainer checkpoints), removed below
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    child_env = {**os.environ, **dict(env or {})}
    child_env.setdefault("PYTHONUNBUFFERED", "1")  # the log shows output as it happens, even after a kill
    child_env.update(TMPDIR=str(scratch), TMP=str(scratch), TEMP=str(scratch))
    if not (env or {}).get(CACHE_ENV):  # one cache for every run, wherever its kernel runs
        child_env[CACHE_ENV] = str(cache_root())
    started = time.monotonic()
    error: dict[str, Any] | None = None
    stopped: BaseException | None = None  # Ctrl-C (or a stop signal) while this notebook ran
    proc: subprocess.Popen | None = None
    try:
        with open(log, "w") as log_fh:
            # Started and registered under the lock, and only while no stop is under way: `stop_all` (which takes
            # the lock after setting STOPPING) either sees this child or keeps it from starting. Without that, an
            # interrupt between the start and the registration left a notebook running that nothing would stop.
            with _ACTIVE_LOCK:
                if not STOPPING.is_set():
                    proc = subprocess.Popen([sys.executable, "-m", "labkit.tools.runner", "--child", str(job_file)],
                                            stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=child_env)
                    _ACTIVE.add(proc)
            if proc is not None:
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    _kill_tree(proc)
                    proc.wait()
                    error = {"ename": "RunTimeout",
                             "evalue": f"stopped after {timeout:g} s (the whole-notebook limit); "
                                       "raise `timeout` or lighten the run"}
    except BaseException as exc:  # KeyboardInterrupt in the caller: leave no kernel behind, then say so below
        stopped = exc
        if proc is not None:
            _kill_tree(proc)
            proc.wait()
    finally:
        if proc is not None:
            with _ACTIVE_LOCK:
                _ACTIVE.discard(proc)
        shutil.rmtree(scratch, ignore_errors=True)
    duration = time.monotonic() - started
    outcome = read_json(outcome_file) or {}
    interrupted = stopped is not None or STOPPING.is_set()
    if stopped is not None or (proc is None and error is None):
        error = {"ename": "Interrupted", "evalue": "interrupted (Ctrl-C or a stop signal) before the notebook "
                                                  "finished; run it again"}
    if error is None and not outcome.get("ok"):
        error = outcome.get("error") or {
            "ename": "Killed" if interrupted else "ChildDied",
            "evalue": ("interrupted" if interrupted else
                       f"the papermill process exited with code {proc.returncode} without a result; see the log")}
    if error is not None and "cell" not in error:
        error.update(_started_cell(output) or {})
    job_file.unlink(missing_ok=True)
    outcome_file.unlink(missing_ok=True)

    record.update(finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), duration_s=round(duration, 2), numbers={})
    record["warnings"] = notebook_warnings(output) if output.exists() else []
    if error is None:
        record["status"] = "done"
        recorded = read_json(results)
        if recorded is None:
            record["warning"] = ("the notebook finished but recorded no numbers: call labkit.record(..., "
                                 "path=results_path) near the end")
        else:
            record["numbers"] = recorded.get("numbers", {})
            record["claims"] = recorded.get("claims", [])
    else:
        record["status"] = "interrupted" if interrupted else "failed"
        error["message"] = _describe_error(error, name, str(kernel))
        record["error"] = error
    write_json_atomic(status_file, record)
    if stopped is not None:
        raise stopped
    return record


# ----------------------------------------------------------------------------------------------------------------
# `labkit run`


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """Parse repeated `-p NAME=VALUE` options; VALUE is YAML, so 0.1 is a float, true a bool, [1, 2] a list."""
    import yaml

    values = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise SystemExit(f"labkit: -p expects NAME=VALUE (e.g. -p seed=1), got {item!r}")
        try:
            values[name.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise SystemExit(f"labkit: cannot read the value in -p {item!r}: {exc}") from None
    return values


def new_run_dir(parent: Path) -> Path:
    """A fresh `<parent>/<timestamp>/` directory (suffixed when two runs start in the same second)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(100):
        candidate = parent / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            continue
    raise SystemExit(f"labkit run: could not create a new run directory under {parent}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `labkit run`."""
    parser.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                        help="notebook ids or prefixes (00_tour, 01) or .ipynb paths; default: every NN_*.ipynb")
    parser.add_argument("--tier", choices=TIERS, default="quick", help="quick (CPU, minutes) or full (GPU)")
    parser.add_argument("-p", "--parameter", action="append", metavar="NAME=VALUE", dest="parameter",
                        help="override a notebook parameter (YAML value); repeatable, e.g. -p seed=1 -p device=cpu")
    parser.add_argument("--out", default="runs",
                        help="parent folder; each call writes OUT/<timestamp>/ (default: runs)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_CELL_TIMEOUT,
                        help=f"seconds allowed per cell (default: {DEFAULT_CELL_TIMEOUT})")
    parser.add_argument("--kernel", default=DEFAULT_KERNEL, help=f"Jupyter kernel name (default: {DEFAULT_KERNEL})")
    parser.add_argument("--dir", default="solutions", help="where notebooks are looked up (default: solutions)")


def course_ledger(claims: list[dict], csv_path: Path | None = None) -> str:
    """The course ledger as Markdown (one row per claim, then the count line); also written to `csv_path`."""
    from labkit.claims import ledger_markdown, write_ledger_csv

    if csv_path is not None:
        write_ledger_csv(claims, csv_path)
    return ledger_markdown(claims)


def ledger_text(claims: list[dict]) -> str:
    """The course ledger for a terminal: notebook, claim, article's number, effect [95 % CI], verdict; counts."""
    from labkit.claims import count_line, ledger_rows

    if not claims:
        return "(no notebook recorded any claims)"
    header = ["notebook", "claim", "source's number", "effect [95 % CI]", "verdict"]
    rows = [[r["notebook"][:2], r["claim"], r.get("source's number", r.get("article", "")), r["effect [95 % CI]"],
             r["verdict"]] for r in ledger_rows(claims, notebook=True)]
    return "Claims checked (the course ledger)\n" + text_table(header, rows) + f"\n{count_line(claims)}"


def _raise_interrupt(signum, frame) -> None:
    """SIGTERM handler of `labkit run`: stop like Ctrl-C (kill the kernel, mark the run interrupted, clean up)."""
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Execute the notebooks one after another, then print and save their recorded numbers."""
    directory = Path(args.dir)
    notebooks = find_notebooks(list(args.notebooks or []), directory)
    overrides = parse_assignments(args.parameter)
    where = folder_problem(args.out)  # first: a wrong --out is found before the notebooks are even read
    if where:
        print(f"labkit run: nothing was run: cannot write the results: {where}; pass --out FOLDER, a folder you "
              "can write to", file=sys.stderr)
        return 2
    plans, problems = [], []
    if "tier" in overrides:
        problems.append("set the tier with --tier quick|full, not -p tier=...")
    overrides["tier"] = args.tier
    for path in notebooks:
        declared = notebook_parameters(path)
        # An override a notebook does not declare is skipped for that notebook (e.g. a backbone knob only some have),
        # but a name no notebook declares is a typo and stops everything.
        mine = {k: v for k, v in overrides.items() if k in declared}
        # a data path is the caller's: the kernel runs in the notebook's folder, so it gets the absolute path
        mine = absolute_paths(path.stem, mine)
        problems += check_parameters(path.stem, declared, mine, where="-p")
        plans.append((path, mine))
    unknown = [k for k in overrides if k != "tier" and not any(k in p for _, p in plans)]
    if unknown:
        problems.append(f"no selected notebook has a parameter named {', '.join(repr(k) for k in unknown)}")
    if problems:
        print("labkit run: nothing was run:\n  - " + "\n  - ".join(problems), file=sys.stderr)
        return 2
    out = new_run_dir(Path(args.out))
    STOPPING.clear()
    print(f"labkit run: {len(plans)} notebook(s), tier={args.tier}, output in {out}/")
    records = []
    in_main = threading.current_thread() is threading.main_thread()
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt) if in_main else None
    try:
        for i, (path, params) in enumerate(plans, 1):
            print(f"[{i}/{len(plans)}] {path.stem} ...", flush=True)
            rec = execute_notebook(path, out, params, kernel=args.kernel, cell_timeout=args.timeout)
            records.append(rec)
            verdict = "done" if rec["status"] == "done" else "FAILED"
            print(f"[{i}/{len(plans)}] {path.stem}: {verdict} in {rec['duration_s']:.0f} s", flush=True)
            for warning in rec.get("warnings") or []:
                print(f"    warning: {warning}", flush=True)
            if rec["status"] != "done":
                print(f"    {rec['error']['message']}\n    log: {out / rec['log']}", flush=True)
    except KeyboardInterrupt:
        stop_all()
        print(f"\nlabkit run: interrupted; the notebook that was running is marked 'interrupted' and finished "
              f"notebooks are kept in {out}/", file=sys.stderr)
        return 130
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous_term)
    import pandas as pd

    bands_file = find_bands(directory)
    bands = load_bands(bands_file) if bands_file else {}
    rows = []
    for rec in records:
        nb_bands = bands_for(bands, rec["notebook"], args.tier)
        for metric, value in flatten_numbers(rec.get("numbers") or {}).items():
            rows.append([rec["notebook"], metric, format_value(value), band_verdict(value, nb_bands.get(metric))])
    failed = [r for r in records if r["status"] != "done"]
    header = ["notebook", "metric", "value", "expected"]
    pd.DataFrame([dict(zip(header, r)) for r in rows], columns=header).to_csv(out / "numbers.csv", index=False)
    claims = [c for rec in records for c in rec.get("claims") or []]
    ledger_md = course_ledger(claims, out / "claims.csv")
    print()
    print(ledger_text(claims))
    print(f"every number: {out / 'numbers.csv'}")
    lines = [f"# labkit run {out.name}", "", f"Tier: {args.tier}. Kernel: {args.kernel}. "
             f"{len(records) - len(failed)} of {len(records)} notebook(s) finished.", "",
             "## Claims checked (the course ledger)", "", ledger_md, ""]
    lines += ["## Every recorded number", "", "Also in `numbers.csv`.", ""]
    if bands_file:
        lines += [f"Expected ranges from `{bands_file}`.", ""]
    lines += [markdown_table(header, rows) if rows else "(no numbers were recorded)", ""]
    if failed:
        lines += ["## Failures", "", markdown_table(["notebook", "where / error", "log"],
                  [[r["notebook"], r["error"]["message"], r["log"]] for r in failed]), ""]
    warned = [[r["notebook"], w] for r in records for w in r.get("warnings") or []]
    if warned:
        lines += ["## Warnings", "", markdown_table(["notebook", "where / warning"], warned), ""]
    (out / "report.md").write_text("\n".join(lines))
    print(f"\nreport: {out / 'report.md'}")
    if failed:
        print(f"labkit run: {len(failed)} notebook(s) failed: " + ", ".join(r["notebook"] for r in failed),
              file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m labkit.tools.runner`: `--child JOB` inside a spawned child, else the same as `labkit run`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 2 and argv[0] == "--child":
        return _child_main(argv[1])
    from labkit.tools.cli import main as cli_main

    return cli_main(["run", *argv])


if __name__ == "__main__":
    sys.exit(main())
