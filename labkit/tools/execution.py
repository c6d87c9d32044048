"""Executing one notebook (`labkit run` and `labkit batch` share it): `execute_notebook` runs papermill in a child
process (so a per-run time limit can stop it and a crashing kernel cannot take the caller down), injects
`results_path`, and writes a status file atomically next to the executed notebook. The kernel's temporary files
(e.g. Hugging Face Trainer checkpoints) go to a folder of the run that is removed when the run ends, however it ends.
`stop_all` stops every child on Ctrl-C. Also the JSON helpers of the run folders (`write_json_atomic`, `read_json`,
`status_path`).

`python -m labkit.tools.execution --child JOB` is the child's entry point.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from labkit._io import CACHE_ENV, atomic_write, cache_root
from labkit.results import RESULTS_SUFFIX

STATUS_SUFFIX = ".status.json"
DEFAULT_KERNEL = "python3"
DEFAULT_CELL_TIMEOUT = 1800  # seconds; a quick-tier cell takes well under a minute, so this only catches hangs

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
            # Once the last cell has run and the notebook is saved, the kernel is stopped at once. A graceful stop
            # spends about 2 s of a 2-core machine tearing down a full interpreter (torch, every cached tensor)
            # whose results are already on disk; the kernel's temporary files live in this run's scratch folder,
            # which `execute_notebook` removes itself.
            shutdown_kernel="immediate",
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


def code_fingerprint(path: str | os.PathLike) -> str:
    """A short hash of a notebook's code cells (their sources only): a finished run of other code is not this one."""
    import hashlib

    try:
        cells = json.loads(Path(path).read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return ""
    code = ["".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code"]
    return hashlib.sha1(json.dumps(code).encode()).hexdigest()[:12]


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
        "notebook": name, "source": str(source), "code": code_fingerprint(source), "parameters": params,
        "kernel": kernel,
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
                    proc = subprocess.Popen([sys.executable, "-m", "labkit.tools.execution", "--child", str(job_file)],
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


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        sys.exit(_child_main(sys.argv[2]))
    sys.exit("usage: python -m labkit.tools.execution --child JOB (the child that `execute_notebook` starts)")
