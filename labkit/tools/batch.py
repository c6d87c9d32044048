"""`labkit batch SPEC.yaml`: papermill sweeps that resume, report, and scale out on Dask.

Each run (notebook + parameters) gets a directory `runs/<batch>/<run-id>/` named after what it computes, so running
the same spec again skips finished runs and retries the rest. The spec is read and checked by
`labkit.tools.batch_spec` (its format is documented in docs/batches.md); runs execute through
`labkit.tools.execution.execute_notebook` on local worker threads (one per GPU by default) or on a Dask cluster
(`--scheduler tcp://HOST:PORT`).

Ctrl-C (SIGINT) and SIGTERM end a batch within seconds: while runs execute, the signal only sets a flag that the
main loop reads between waits of at most `POLL_S` seconds, so no exception lands inside the bookkeeping of a
thread pool (an interrupt raised while `concurrent.futures` held a future's lock could leave that lock taken, and
the run's thread, unable to report its result, then kept the pool from closing); children are started and
registered under one lock in `execute_notebook`, so a stop never misses a child that was being started.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from labkit._io import folder_problem
from labkit._tables import text_table
from labkit.claims import count_line
from labkit.params import absolute_paths
from labkit.tools.batch_report import kept_published_rows, publish_claims, update_readme_claims, write_report
from labkit.tools.batch_spec import DEFAULT_RETRIES, Batch, Run, SpecError, load_spec
from labkit.tools.execution import (
    STOPPING,
    code_fingerprint,
    execute_notebook,
    read_json,
    status_path,
    stop_all,
    write_json_atomic,
)

POLL_S = 0.25  # the longest the main loop waits before it looks at the stop flag again

# Set by the SIGINT/SIGTERM handler of `labkit batch` (see `stop_signals`); the main loop turns it into a stop.
STOP_REQUESTED = threading.Event()


# ----------------------------------------------------------------------------------------------------------------
# State on disk


def run_dir(batch_dir: Path, run: Run) -> Path:
    """Directory of one run: runs/<batch>/<run-id>/."""
    return batch_dir / run.run_id


def load_status(batch_dir: Path, run: Run) -> dict | None:
    """The run's status record, or None when it never started."""
    return read_json(status_path(run_dir(batch_dir, run), run.notebook))


def is_done(status: dict | None, source: Path | None = None) -> bool:
    """Only a 'done' status counts: a run interrupted, killed or failed is run again.

    source: the notebook as it is now; a run finished on other code (its recorded code fingerprint differs, or it
    has none) is run again too, so an edited notebook never keeps the results of its old cells.
    """
    if not (bool(status) and status.get("status") == "done"):
        return False
    return source is None or status.get("code") == code_fingerprint(source)


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

    def __init__(self, workers: int, gpus: list[str], pinned_threads: bool = False):
        """pinned_threads: the notebooks set their own torch thread count (the quick tier pins 2, so that its
        numbers do not depend on the machine); then the environment's thread counts are left as they are, so a run
        side by side computes exactly what it computes alone. Otherwise several CPU runs would each grab every
        core, and the cores are shared out through OMP_NUM_THREADS and MKL_NUM_THREADS."""
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="labkit-run")
        self.futures: list[concurrent.futures.Future] = []
        self.slots: queue.Queue = queue.Queue()
        for i in range(workers):
            self.slots.put(gpus[i % len(gpus)] if gpus else None)
        self.side_by_side = not gpus and workers > 1
        shared = self.side_by_side and not pinned_threads
        self.threads = str(max(1, (os.cpu_count() or 1) // workers)) if shared else None

    def _execute(self, job: dict, on_start=None) -> dict:
        gpu = self.slots.get()
        try:
            if on_start is not None:  # e.g. `labkit run` prints the notebook's line when it really starts
                on_start()
            env = dict(job.pop("env", {}) or {})
            if gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = gpu  # one run, one GPU
            elif self.side_by_side:
                for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                    if self.threads and var not in os.environ:
                        env[var] = self.threads
                # runs that share the cores: an idle OpenMP thread sleeps instead of spinning on a core another run
                # needs (spinning made two side-by-side CPU runs each about 2x slower than sleeping threads)
                if "OMP_WAIT_POLICY" not in os.environ:
                    env["OMP_WAIT_POLICY"] = "PASSIVE"
            return execute_notebook(env=env, **job)
        finally:
            self.slots.put(gpu)

    def submit(self, job: dict, key: str, on_start=None):
        """Start one run on a free thread (calling `on_start()` first); returns a concurrent.futures.Future."""
        future = self.executor.submit(self._execute, job, on_start)
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
    todo = [r for r in batch.runs if not is_done(load_status(batch_dir, r), r.source)]
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
                        help="runs at the same time (default: one per GPU, else the spec's cpu_workers or 1; with "
                             "--scheduler: no limit)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="submit runs to this Dask scheduler")
    parser.add_argument("--retries", type=int, default=None,
                        help=f"retries per failed run (default: spec or {DEFAULT_RETRIES})")
    parser.add_argument("--out", default="runs", help="parent folder; results go to OUT/<batch name>/ (default: runs)")
    parser.add_argument("--dry-run", action="store_true", help="check the spec and list the runs; run nothing")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from finished runs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (one line per run instead)")
    parser.add_argument("--only", metavar="NOTEBOOK[,NOTEBOOK]",
                        help="run only these notebooks of the spec; with --publish, the other notebooks' rows are "
                             "kept from the ledger already published at PATH (and the page says so)")
    parser.add_argument("--publish", metavar="PATH.md",
                        help="also write the claims over seeds to PATH.md (+ .csv) with date, machine and command")


def _print_plan(batch: Batch, batch_dir: Path) -> None:
    """List every run with what a real invocation would do with it (--dry-run)."""
    rows = []
    for run in batch.runs:
        status = load_status(batch_dir, run)
        state = ("done (skip)" if is_done(status, run.source) else
                 "done on other code (rerun)" if is_done(status) else
                 f"{status['status']} (rerun)" if status else "to run")
        shown = {k: v for k, v in run.parameters.items() if k in batch.swept}
        rows.append([run.run_id, state, json.dumps(shown)])
    print(text_table(["run", "state", "swept parameters"], rows))


def run(args: argparse.Namespace) -> int:
    """Validate the spec, run what is missing, and write the report."""
    if (args.retries is not None and args.retries < 0) or (args.workers is not None and args.workers < 1):
        print("labkit batch: --retries must be >= 0 and --workers >= 1", file=sys.stderr)
        return 2
    try:
        batch = load_spec(args.spec, retries=args.retries)
    except SpecError as exc:
        print(f"labkit batch: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "only", None):
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - {r.notebook for r in batch.runs})
        if unknown or not wanted:
            print(f"labkit batch: --only names {', '.join(unknown) or 'no notebook'}; this spec runs "
                  f"{', '.join(sorted({r.notebook for r in batch.runs}))}", file=sys.stderr)
            return 2
        batch.runs = [r for r in batch.runs if r.notebook in wanted]
    batch_dir = Path(args.out).resolve() / batch.name
    done_before = sum(is_done(load_status(batch_dir, r), r.source) for r in batch.runs)
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
            workers = args.workers or (len(gpus) if gpus else batch.cpu_workers)
            pool, max_inflight = LocalPool(workers, gpus, pinned_threads=batch.tier == "quick"), workers
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
        print(f"claims over seeds: {count_line(info['claims'])} (table in {info['report']})")
        if args.publish:
            claims, kept, command = info["claims"], None, f"labkit batch {args.spec} --publish {args.publish}"
            if getattr(args, "only", None):
                try:
                    rows, kept = kept_published_rows(args.publish, {r.notebook for r in batch.runs})
                except FileNotFoundError as exc:
                    print(f"labkit batch: not published: {exc}", file=sys.stderr)
                    return 2
                claims = rows + claims
                command = f"labkit batch {args.spec} --only {args.only} --publish {args.publish}"
                print(f"kept from the published ledger: {', '.join(kept['notebooks'])}")
            page = publish_claims(claims, args.publish, command, records, batch.tier,
                                  [p for p in batch.swept if p != "seed"], kept=kept)
            print(f"published: {page}")
            seeds = {r["parameters"].get("seed") for r in records if r.get("status") == "done"}
            if update_readme_claims("README.md", page, claims, batch.tier, len(seeds)):
                print("README.md claims line updated.")
    return 0 if info["failed"] == 0 and info["missing"] == 0 else 1
