"""`labkit batch SPEC.yaml`: papermill sweeps that resume, report, and scale out on Dask.

Each run (notebook + parameters) gets a directory `runs/<batch>/<run-id>/` named after what it computes, so running
the same spec again skips finished runs and retries the rest. Runs execute through
`labkit.tools.runner.execute_notebook`
on local worker threads (one per GPU by default) or on a Dask cluster (`--scheduler tcp://HOST:PORT`).
The spec format is documented in docs/batches.md.

Ctrl-C (SIGINT) and SIGTERM end a batch within seconds: while runs execute, the signal only sets a flag that the
main loop reads between waits of at most `POLL_S` seconds, so no exception lands inside the bookkeeping of a
thread pool (an interrupt raised while `concurrent.futures` held a future's lock could leave that lock taken, and
the run's thread, unable to report its result, then kept the pool from closing); children are started and
registered under one lock in `execute_notebook`, so a stop never misses a child that was being started.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import itertools
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from labkit._io import folder_problem
from labkit.params import absolute_paths
from labkit.tools.bands import find_bands, load_bands
from labkit.tools.notebooks import available_notebooks, resolve_notebook
from labkit.tools.runner import (
    DEFAULT_CELL_TIMEOUT,
    DEFAULT_KERNEL,
    STOPPING,
    TIERS,
    check_parameters,
    execute_notebook,
    notebook_parameters,
    read_json,
    status_path,
    stop_all,
    write_json_atomic,
)

SPEC_KEYS = {"name", "notebooks", "notebooks_dir", "tier", "parameters", "grid", "seeds", "repeats", "retries",
             "kernel", "cell_timeout", "timeout", "headline", "reference_bands"}
NOTEBOOK_KEYS = {"notebook", "parameters", "grid", "headline"}
DEFAULT_RETRIES = 1
POLL_S = 0.25  # the longest the main loop waits before it looks at the stop flag again

# Set by the SIGINT/SIGTERM handler of `labkit batch` (see `stop_signals`); the main loop turns it into a stop.
STOP_REQUESTED = threading.Event()


class SpecError(ValueError):
    """A batch spec that cannot run; the message lists every problem found, one per line."""


@dataclass
class Run:
    """One planned notebook execution."""

    run_id: str
    notebook: str  # notebook id, e.g. "00_tour"
    source: Path
    parameters: dict[str, Any]


@dataclass
class Batch:
    """A validated spec: what to run, how, and where the results go."""

    name: str
    spec_path: Path
    tier: str
    runs: list[Run]
    swept: list[str]  # parameter names that vary between runs ("seed" last), the columns of the report
    kernel: str | None = DEFAULT_KERNEL
    cell_timeout: float | None = DEFAULT_CELL_TIMEOUT
    timeout: float | None = None
    retries: int = DEFAULT_RETRIES
    headline: list[str] = field(default_factory=list)
    bands: dict = field(default_factory=dict)
    bands_file: Path | None = None


# ----------------------------------------------------------------------------------------------------------------
# Reading and checking a spec (everything is checked before anything runs)


def _slug(value: Any) -> str:
    """A short, filesystem-safe rendering of a parameter value for a run id."""
    text = json.dumps(value) if not isinstance(value, str) else value
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-")[:24] or "x"


def run_id_for(notebook: str, parameters: Mapping[str, Any], swept: list[str]) -> str:
    """Readable and stable: the swept values plus a hash of *all* parameters, so changing any value means a new run."""
    digest = hashlib.sha1(json.dumps({"notebook": notebook, "parameters": parameters}, sort_keys=True,
                                     default=str).encode()).hexdigest()[:8]
    parts = [notebook] + [f"{k}={_slug(parameters[k])}" for k in swept if k in parameters] + [digest]
    return "__".join(parts)


def _grid_points(grid: Any, where: str, problems: list[str]) -> list[dict]:
    """Expand `grid` (a mapping name -> list of values, or a list of mappings) into parameter dicts."""
    if grid is None:
        return [{}]
    if isinstance(grid, Mapping):
        for name, values in grid.items():
            if not isinstance(values, list) or not values:
                problems.append(f"{where}grid: '{name}' needs a non-empty list of values, e.g. {name}: [{values!r}]")
                return [{}]
        names = list(grid)
        return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]
    if isinstance(grid, list) and all(isinstance(p, Mapping) for p in grid) and grid:
        return [dict(p) for p in grid]
    problems.append(f"{where}grid: expected a mapping `name: [values]` or a list of mappings, got {grid!r}")
    return [{}]


def _number_or_none(spec: Mapping, key: str, problems: list[str]) -> float | None:
    """A positive number of seconds from the spec, or None (no limit)."""
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        problems.append(f"'{key}' should be a positive number of seconds, got {value!r}")
        return None
    return float(value)


def load_spec(path: str | os.PathLike, retries: int | None = None) -> Batch:
    """Read SPEC.yaml and check it against the notebooks' parameters cells; raise SpecError listing every problem."""
    import yaml

    spec_path = Path(path)
    if not spec_path.is_file():
        raise SpecError(f"{spec_path}: no such spec file")
    try:
        spec = yaml.safe_load(spec_path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{spec_path}: not valid YAML: {exc}") from None
    if not isinstance(spec, Mapping):
        raise SpecError(f"{spec_path}: expected a mapping with at least `notebooks:`; see docs/batches.md")
    spec_dir = spec_path.resolve().parent
    problems: list[str] = []
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(SPEC_KEYS))}")

    tier = spec.get("tier", "quick")
    if tier not in TIERS:
        problems.append(f"tier must be one of {', '.join(TIERS)}, not {tier!r}")
    if "seeds" in spec and "repeats" in spec:
        problems.append("give either `seeds: [0, 1, 2]` or `repeats: 3`, not both")
    seeds: list | None = None
    if "seeds" in spec:
        seeds = spec["seeds"]
        if (not isinstance(seeds, list) or not seeds
                or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
            problems.append(f"seeds should be a non-empty list of integers, got {seeds!r}")
            seeds = None
    elif "repeats" in spec:
        repeats = spec["repeats"]
        if isinstance(repeats, int) and not isinstance(repeats, bool) and repeats > 0:
            seeds = list(range(repeats))
        else:
            problems.append(f"repeats should be a positive integer, got {repeats!r}")
    retries = spec.get("retries", DEFAULT_RETRIES) if retries is None else retries
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        problems.append(f"retries should be an integer >= 0, got {retries!r}")
        retries = DEFAULT_RETRIES
    cell_timeout = _number_or_none(spec, "cell_timeout", problems) if "cell_timeout" in spec else DEFAULT_CELL_TIMEOUT
    timeout = _number_or_none(spec, "timeout", problems)
    headline = spec.get("headline") or []
    if not isinstance(headline, list) or not all(isinstance(h, str) for h in headline):
        problems.append(f"headline should be a list of metric names, got {headline!r}")
        headline = []

    notebooks_dir = spec_dir / spec.get("notebooks_dir", ".")
    entries = spec.get("notebooks")
    if isinstance(entries, (str, Mapping)):
        entries = [entries]
    if not entries or not isinstance(entries, list):
        problems.append("`notebooks:` should list notebook ids (e.g. [00_tour]) or .ipynb paths")
        entries = []

    runs: list[Run] = []
    swept: list[str] = []
    for entry in entries:
        if isinstance(entry, Mapping):
            extra_keys = sorted(set(entry) - NOTEBOOK_KEYS)
            if extra_keys or "notebook" not in entry:
                problems.append(f"notebook entry {dict(entry)!r}: needs `notebook:` and may have "
                                f"parameters/grid/headline (unknown: {', '.join(extra_keys) or 'none'})")
                continue
            name, own_params, own_grid = str(entry["notebook"]), dict(entry.get("parameters") or {}), entry.get("grid")
        else:
            name, own_params, own_grid = str(entry), {}, None
        source = resolve_notebook(name, notebooks_dir, base=spec_dir)
        if source is None:
            available = available_notebooks(notebooks_dir)
            problems.append(f"notebook '{name}' not found in {notebooks_dir} (available: {available})")
            continue
        nb_id = source.stem
        try:
            declared = notebook_parameters(source)
        except Exception as exc:  # unreadable notebook: say which
            problems.append(f"{nb_id}: cannot read its parameters cell ({type(exc).__name__}: {exc})")
            continue
        if not declared:
            problems.append(f"{nb_id}: no cell tagged 'parameters'; papermill cannot inject values into it")
            continue
        fixed = {**dict(spec.get("parameters") or {}), **own_params}
        points = [{**g, **o} for g in _grid_points(spec.get("grid"), "", problems)
                  for o in _grid_points(own_grid, f"{nb_id} ", problems)]
        for reserved in ("tier", "results_path"):
            if any(reserved in p for p in points) or reserved in fixed:
                what = "set `tier:` at the top of the spec" if reserved == "tier" else "the runner sets it"
                problems.append(f"{nb_id}: '{reserved}' cannot be a parameter or grid entry ({what})")
        if seeds is not None and ("seed" in fixed or any("seed" in p for p in points)):
            problems.append(f"{nb_id}: 'seed' is set both by seeds/repeats and in parameters/grid; keep one")
        problems += check_parameters(nb_id, declared, fixed, where="parameters")
        for point in points:
            problems += check_parameters(nb_id, declared, point, where="grid")
        if seeds is not None:
            problems += check_parameters(nb_id, declared, {"seed": seeds[0]}, where="seeds")
        if "tier" in declared:
            fixed["tier"] = tier
        nb_swept = list(dict.fromkeys(k for p in points for k in p))
        swept += [k for k in nb_swept if k not in swept]
        for point in points:
            for seed in (seeds if seeds is not None else [None]):
                params = {**fixed, **point, **({"seed": seed} if seed is not None else {})}
                keys = nb_swept + (["seed"] if seed is not None else [])
                runs.append(Run(run_id_for(nb_id, params, keys), nb_id, source.resolve(), params))
    if seeds is not None:
        swept = [s for s in swept if s != "seed"] + ["seed"]

    bands_file = None
    if spec.get("reference_bands"):
        bands_file = spec_dir / spec["reference_bands"]
        if not bands_file.is_file():
            problems.append(f"reference_bands: {bands_file} does not exist")
            bands_file = None
    else:
        bands_file = find_bands(spec_dir)
    bands = {}
    if bands_file is not None:
        try:
            bands = load_bands(bands_file)
        except (ValueError, OSError) as exc:
            problems.append(str(exc))

    if problems:
        raise SpecError(f"{spec_path}: nothing was run:\n  - " + "\n  - ".join(dict.fromkeys(problems)))
    unique = list({r.run_id: r for r in runs}.values())  # the same point listed twice runs once
    return Batch(name=str(spec.get("name") or spec_path.stem), spec_path=spec_path.resolve(), tier=tier, runs=unique,
                 swept=swept, kernel=spec.get("kernel", DEFAULT_KERNEL), cell_timeout=cell_timeout, timeout=timeout,
                 retries=retries, headline=headline, bands=bands, bands_file=bands_file)


# ----------------------------------------------------------------------------------------------------------------
# State on disk


def run_dir(batch_dir: Path, run: Run) -> Path:
    """Directory of one run: runs/<batch>/<run-id>/."""
    return batch_dir / run.run_id


def load_status(batch_dir: Path, run: Run) -> dict | None:
    """The run's status record, or None when it never started."""
    return read_json(status_path(run_dir(batch_dir, run), run.notebook))


def is_done(status: dict | None) -> bool:
    """Only a 'done' status counts: a run interrupted, killed or failed is run again."""
    return bool(status) and status.get("status") == "done"


def collect(batch: Batch, batch_dir: Path) -> list[dict]:
    """Every planned run's status record (a placeholder for runs that never started), for the report."""
    records = []
    for run in batch.runs:
        status = load_status(batch_dir, run) or {"status": "missing", "numbers": {}}
        records.append({**status, "run_id": run.run_id, "notebook": run.notebook, "parameters": run.parameters})
    return records


# ----------------------------------------------------------------------------------------------------------------
# Where runs execute


def detect_gpus() -> list[str]:
    """GPU ids visible to this process, without importing torch: CUDA_VISIBLE_DEVICES, else nvidia-smi."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [d.strip() for d in visible.split(",") if d.strip()]
        return [] if not ids or ids[0].startswith("-") else ids
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip().isdigit()]


class LocalPool:
    """Runs on threads in this process (each thread waits on a papermill child), pinned round-robin to GPUs."""

    def __init__(self, workers: int, gpus: list[str]):
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="labkit-run")
        self.futures: list[concurrent.futures.Future] = []
        self.slots: queue.Queue = queue.Queue()
        for i in range(workers):
            self.slots.put(gpus[i % len(gpus)] if gpus else None)
        # Several CPU runs side by side would each grab every core; share them out instead.
        self.threads = None if gpus or workers == 1 else str(max(1, (os.cpu_count() or 1) // workers))

    def _execute(self, job: dict) -> dict:
        gpu = self.slots.get()
        try:
            env = dict(job.pop("env", {}) or {})
            if gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = gpu  # one run, one GPU
            elif self.threads:
                for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                    if var not in os.environ:
                        env[var] = self.threads
                # runs that share the cores: an idle OpenMP thread sleeps instead of spinning on a core another run
                # needs (spinning made two side-by-side CPU runs each about 2x slower than sleeping threads)
                if "OMP_WAIT_POLICY" not in os.environ:
                    env["OMP_WAIT_POLICY"] = "PASSIVE"
            return execute_notebook(env=env, **job)
        finally:
            self.slots.put(gpu)

    def submit(self, job: dict, key: str):
        """Start one run on a free thread; returns a concurrent.futures.Future."""
        future = self.executor.submit(self._execute, job)
        self.futures = [f for f in self.futures if not f.done()] + [future]
        return future

    def wait_any(self, futures, timeout: float | None = None):
        """The runs that finished, waiting until one does or `timeout` seconds pass (then possibly none)."""
        done, _ = concurrent.futures.wait(futures, timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED)
        return done

    def close(self) -> None:
        """Cancel queued runs and wait for the running ones (on Ctrl-C their notebooks were already stopped).

        The wait is a loop of short waits that stops any child again while a stop is under way, so no thread
        can keep the batch open.
        """
        self.executor.shutdown(wait=False, cancel_futures=True)
        while any(not f.done() for f in self.futures):
            if STOPPING.is_set():
                stop_all()
            concurrent.futures.wait(self.futures, timeout=POLL_S)
        self.executor.shutdown(wait=True)


class DaskPool:
    """Runs submitted to an existing Dask cluster; workers need labkit installed and this filesystem mounted."""

    def __init__(self, address: str):
        try:
            from distributed import Client
        except ImportError:
            raise SystemExit("labkit batch: --scheduler needs dask.distributed: "
                             "pip install 'dask[distributed]'") from None
        try:
            self.client = Client(address, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise SystemExit(f"labkit batch: cannot reach the Dask scheduler at {address} ({exc}); "
                             "is it running, and is the address tcp://HOST:PORT?") from None

    def submit(self, job: dict, key: str):
        """Submit one run to the cluster; returns a distributed.Future."""
        # pure=False and a unique key: a rerun must execute again, never reuse a cached Dask result
        return self.client.submit(execute_notebook, key=key, pure=False, **job)

    def wait_any(self, futures, timeout: float | None = None):
        """The runs that finished, waiting until one does or `timeout` seconds pass (then possibly none)."""
        from distributed import wait

        try:
            return wait(list(futures), timeout=timeout, return_when="FIRST_COMPLETED").done
        except TimeoutError:
            return set()

    @staticmethod
    def forget(future) -> None:
        """Drop a finished run's result from the cluster: a result held there is recomputed (the notebook run again
        over a finished run) when the worker holding it dies while this client still refers to it."""
        future.release()

    def close(self) -> None:
        """Disconnect; the cluster itself keeps running."""
        self.client.close()


def _lost_record(batch_dir: Path, run: Run, attempt: int, exc: BaseException) -> dict:
    """Status for a run whose worker vanished (Dask KilledWorker, lost connection): written here, atomically."""
    path = status_path(run_dir(batch_dir, run), run.notebook)
    record = {**(read_json(path) or {}), "run_id": run.run_id, "notebook": run.notebook, "attempt": attempt,
              "parameters": run.parameters, "status": "failed", "numbers": {}}
    if type(exc).__name__ == "KilledWorker":
        why = "the Dask worker running it died (killed, out of memory, or the notebook ended its process)"
    else:
        why = f"it was lost on the cluster ({type(exc).__name__}: {str(exc)[:160]})"
    record["error"] = {"ename": type(exc).__name__, "evalue": str(exc)[:1000],
                       "message": f"{why} -- see the Dask worker's log; other runs are not affected"}
    write_json_atomic(path, record)
    return record


def _request_stop(signum, frame) -> None:
    """Handler of SIGINT and SIGTERM while a batch runs: only a flag, read by the main loop within POLL_S."""
    STOP_REQUESTED.set()


class stop_signals:
    """While inside, Ctrl-C and SIGTERM set STOP_REQUESTED instead of raising wherever the main thread is.

    Outside the main thread (where handlers cannot be installed) it does nothing and Ctrl-C raises as usual.
    """

    def __enter__(self):
        STOP_REQUESTED.clear()
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, _request_stop)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def execute_batch(batch: Batch, batch_dir: Path, pool, max_inflight: int, progress: bool = True) -> dict[str, str]:
    """Run every not-yet-done run, retrying failures up to batch.retries times; return run id -> final status.

    Raises KeyboardInterrupt on Ctrl-C (or when STOP_REQUESTED is set), after stopping every run in flight.
    """
    from tqdm.auto import tqdm

    STOPPING.clear()
    todo = [r for r in batch.runs if not is_done(load_status(batch_dir, r))]
    previous = {r.run_id: int((load_status(batch_dir, r) or {}).get("attempt") or 0) for r in todo}
    final: dict[str, str] = {}
    pending = [(r, 1) for r in todo]  # (run, attempt in this invocation)
    inflight: dict = {}
    bar = tqdm(total=len(todo), unit="run", desc=batch.name, disable=None if progress else True, file=sys.stderr)
    try:
        while pending or inflight:
            if STOP_REQUESTED.is_set():
                raise KeyboardInterrupt
            while pending and len(inflight) < max_inflight:
                run, attempt = pending.pop(0)
                total_attempt = previous[run.run_id] + attempt
                # a relative data path is the caller's (the kernel runs in the notebook's folder)
                job = {"source": str(run.source), "out_dir": str(run_dir(batch_dir, run)),
                       "parameters": absolute_paths(run.notebook, run.parameters), "name": run.notebook,
                       "kernel": batch.kernel,
                       "cell_timeout": batch.cell_timeout, "timeout": batch.timeout,
                       "extra": {"run_id": run.run_id, "batch": batch.name, "attempt": total_attempt}}
                key = f"labkit-{run.run_id}-{total_attempt}-{time.time_ns()}"
                inflight[pool.submit(job, key)] = (run, attempt)
            for fut in pool.wait_any(list(inflight), timeout=POLL_S):
                run, attempt = inflight.pop(fut)
                try:
                    record = fut.result()
                except Exception as exc:  # the worker died under the run; nothing else is affected
                    record = _lost_record(batch_dir, run, previous[run.run_id] + attempt, exc)
                getattr(pool, "forget", lambda f: None)(fut)
                if record["status"] == "done":
                    final[run.run_id] = "done"
                    bar.update(1)
                    bar.write(f"done    {run.run_id} ({record.get('duration_s', 0):.0f} s)")
                    for warning in record.get("warnings") or []:
                        bar.write(f"        warning: {warning}")
                elif attempt <= batch.retries and not STOPPING.is_set():
                    bar.write(f"retry   {run.run_id}: {record['error']['message']}")
                    pending.append((run, attempt + 1))
                else:
                    final[run.run_id] = record["status"]
                    bar.update(1)
                    bar.write(f"FAILED  {run.run_id}: {record['error']['message']}")
    except KeyboardInterrupt:
        STOPPING.set()
        stop_all()  # kill local papermill children; their runs are marked 'interrupted' and rerun next time
        for fut in inflight:
            fut.cancel()
        raise
    finally:
        bar.close()
    return final


# ----------------------------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `labkit batch`."""
    parser.add_argument("spec", metavar="SPEC.yaml", help="batch spec (format: docs/batches.md)")
    parser.add_argument("--workers", type=int, default=None,
                        help="runs at the same time (default: one per GPU, else 1; with --scheduler: no limit)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="submit runs to this Dask scheduler")
    parser.add_argument("--retries", type=int, default=None,
                        help=f"retries per failed run (default: spec or {DEFAULT_RETRIES})")
    parser.add_argument("--out", default="runs", help="parent folder; results go to OUT/<batch name>/ (default: runs)")
    parser.add_argument("--dry-run", action="store_true", help="check the spec and list the runs; run nothing")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from finished runs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (one line per run instead)")
    parser.add_argument("--publish", metavar="PATH.md",
                        help="also write the claims over seeds to PATH.md (+ .csv) with date, machine and command")


def _print_plan(batch: Batch, batch_dir: Path) -> None:
    """List every run with what a real invocation would do with it (--dry-run)."""
    from labkit._tables import text_table

    rows = []
    for run in batch.runs:
        status = load_status(batch_dir, run)
        state = "done (skip)" if is_done(status) else (f"{status['status']} (rerun)" if status else "to run")
        shown = {k: v for k, v in run.parameters.items() if k in batch.swept}
        rows.append([run.run_id, state, json.dumps(shown)])
    print(text_table(["run", "state", "swept parameters"], rows))


def run(args: argparse.Namespace) -> int:
    """Validate the spec, run what is missing, and write the report."""
    from labkit.tools.batch_report import write_report

    if (args.retries is not None and args.retries < 0) or (args.workers is not None and args.workers < 1):
        print("labkit batch: --retries must be >= 0 and --workers >= 1", file=sys.stderr)
        return 2
    try:
        batch = load_spec(args.spec, retries=args.retries)
    except SpecError as exc:
        print(f"labkit batch: {exc}", file=sys.stderr)
        return 2
    batch_dir = Path(args.out).resolve() / batch.name
    done_before = sum(is_done(load_status(batch_dir, r)) for r in batch.runs)
    print(f"labkit batch '{batch.name}': {len(batch.runs)} run(s), {done_before} already done, tier={batch.tier}, "
          f"output in {batch_dir}/")
    if args.dry_run:
        _print_plan(batch, batch_dir)
        return 0

    interrupted = False
    if not args.report_only and done_before < len(batch.runs):
        where = folder_problem(args.out, create=True)
        if where:
            print(f"labkit batch: nothing was run: cannot write the results: {where}; pass --out FOLDER, a folder "
                  "you can write to", file=sys.stderr)
            return 2
        batch_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(batch_dir / "batch.json", {
            "name": batch.name, "spec": str(batch.spec_path), "tier": batch.tier, "swept": batch.swept,
            "runs": [{"run_id": r.run_id, "notebook": r.notebook, "parameters": r.parameters} for r in batch.runs]})
        shutil.copyfile(batch.spec_path, batch_dir / "spec.yaml")
        if args.scheduler:
            pool, max_inflight = DaskPool(args.scheduler), args.workers or len(batch.runs)
            where = f"Dask scheduler {args.scheduler}"
        else:
            gpus = detect_gpus()
            workers = args.workers or max(1, len(gpus))
            pool, max_inflight = LocalPool(workers, gpus), workers
            where = f"{workers} local worker(s)" + (f" on GPU(s) {','.join(gpus)}" if gpus else " (CPU)")
        print(f"running on {where}, retries={batch.retries}", flush=True)
        with stop_signals():  # Ctrl-C sets a flag; the loop stops every run and returns within seconds
            try:
                execute_batch(batch, batch_dir, pool, max_inflight, progress=not args.no_progress)
            except KeyboardInterrupt:
                interrupted = True
            finally:
                pool.close()
    if interrupted:
        print(f"\nlabkit batch: interrupted. Finished runs are kept in {batch_dir}/; run the same command again "
              "to do only what is missing.", file=sys.stderr)
        return 130

    records = collect(batch, batch_dir)
    info = write_report(batch_dir, batch.name, records, batch.swept, batch.tier, batch.bands, batch.headline,
                        batch.bands_file)
    print(f"\n{info['done']} done, {info['failed']} failed, {info['missing']} not run. Report: {info['report']}")
    for rec in records:
        if rec.get("status") not in ("done", "missing"):
            print(f"  FAILED {rec['run_id']}: {(rec.get('error') or {}).get('message', rec.get('status'))}")
    for line in info["flagged"]:
        print(f"  outside reference band: {line}")
    if info.get("claims"):
        from labkit.claims import count_line

        print(f"claims over seeds: {count_line(info['claims'])} (table in {info['report']})")
        if args.publish:
            from labkit.tools.batch_report import publish_claims

            page = publish_claims(info["claims"], args.publish, f"labkit batch {args.spec} --publish {args.publish}",
                                  records, batch.tier, [p for p in batch.swept if p != "seed"])
            print(f"published: {page}")
            from labkit.tools.batch_report import update_readme_claims

            seeds = {r["parameters"].get("seed") for r in records if r.get("status") == "done"}
            if update_readme_claims("README.md", page, info["claims"], batch.tier, len(seeds)):
                print("README.md claims line updated.")
    return 0 if info["failed"] == 0 and info["missing"] == 0 else 1
