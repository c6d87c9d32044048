"""`labkit run`: execute notebooks with papermill (two side by side in the quick tier) and show their numbers.

The parameters are checked first (`labkit.tools.parameters`); each notebook runs through
`labkit.tools.execution.execute_notebook` (a papermill child process, shared with `labkit batch`); then the numbers,
the course ledger and a report are written to a fresh folder under --out.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import signal
import sys
import threading
import time
from pathlib import Path

from labkit._io import folder_problem
from labkit._tables import flatten_numbers, format_value, markdown_table, text_table
from labkit.claim_tables import count_line, ledger_markdown, ledger_rows, write_ledger_csv
from labkit.params import TIER_NAMES, absolute_paths, unknown_parameter
from labkit.tools import cli
from labkit.tools.bands import band_verdict, bands_for, find_bands, load_bands
from labkit.tools.execution import DEFAULT_CELL_TIMEOUT, DEFAULT_KERNEL, STOPPING, execute_notebook, stop_all
from labkit.tools.notebooks import find_notebooks
from labkit.tools.parameters import accepted_parameters, check_parameters, notebook_parameters, parse_assignments


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
    parser.add_argument("--tier", choices=TIER_NAMES, default="quick", help="quick (CPU, minutes) or full (GPU)")
    parser.add_argument("-p", "--parameter", action="append", metavar="NAME=VALUE", dest="parameter",
                        help="override a notebook parameter (YAML value); repeatable, e.g. -p seed=1 -p device=cpu")
    parser.add_argument("--out", default="runs",
                        help="parent folder; each call writes OUT/<timestamp>/ (default: runs)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_CELL_TIMEOUT,
                        help=f"seconds allowed per cell (default: {DEFAULT_CELL_TIMEOUT})")
    parser.add_argument("--kernel", default=DEFAULT_KERNEL, help=f"Jupyter kernel name (default: {DEFAULT_KERNEL})")
    parser.add_argument("--dir", default="solutions", help="where notebooks are looked up (default: solutions)")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="notebooks run side by side (default: 2 in the quick tier, whose notebooks pin torch to 2 "
                             "threads, so each computes what it computes alone; 1 in the full tier)")


def course_ledger(claims: list[dict], csv_path: Path | None = None) -> str:
    """The course ledger as Markdown (one row per claim, then the count line); also written to `csv_path`."""
    if csv_path is not None:
        write_ledger_csv(claims, csv_path)
    return ledger_markdown(claims)


def ledger_text(claims: list[dict]) -> str:
    """The course ledger for a terminal: notebook, claim, article's number, effect [95 % CI], verdict; counts."""
    if not claims:
        return "(no notebook recorded any claims)"
    header = ["notebook", "claim", "source's number", "effect [95 % CI]", "verdict"]
    rows = [[r["notebook"][:2], r["claim"], r.get("source's number", r.get("article", "")), r["effect [95 % CI]"],
             r["verdict"]] for r in ledger_rows(claims, notebook=True)]
    return "Claims checked (the course ledger)\n" + text_table(header, rows) + f"\n{count_line(claims)}"


_PRINTING = threading.Lock()


def _say(line: str) -> None:
    """Print one whole line, also when two notebooks start at the same moment (their pool threads print)."""
    with _PRINTING:
        print(line, flush=True)


def _report(rec: dict, i: int, n: int, out: Path) -> dict:
    """Print one finished notebook's line (and its warnings or error); returns the record."""
    verdict = "done" if rec["status"] == "done" else "FAILED"
    print(f"[{i}/{n}] {rec['notebook']}: {verdict} in {rec['duration_s']:.0f} s", flush=True)
    for warning in rec.get("warnings") or []:
        print(f"    warning: {warning}", flush=True)
    if rec["status"] != "done":
        print(f"    {rec['error']['message']}\n    log: {out / rec['log']}", flush=True)
    return rec


def _raise_interrupt(signum, frame) -> None:
    """SIGTERM handler of `labkit run`: stop like Ctrl-C (kill the kernel, mark the run interrupted, clean up)."""
    raise KeyboardInterrupt


# the course's notebooks from the longest quick run to the shortest (README's bench rows give their minutes). Only
# the order in which `labkit run --jobs 2` starts them: a long notebook started last would run alone at the end
# while the other slot has nothing left to do.
LONGEST_FIRST = ("04_nlp_finetuning", "02_freeze_strategies", "05_pitfalls", "03_forgetting", "01_feature_hierarchy",
                 "00_tour")


def default_jobs(tier: str) -> int:
    """Notebooks `labkit run` runs side by side when --jobs is not given: two in the quick tier (each pins torch to
    2 threads, so a run beside another computes what it computes alone), one in the full tier."""
    return 2 if tier == "quick" else 1


def start_order(paths: list[Path]) -> list[int]:
    """Indexes into `paths` in the order to start them side by side: the course's longest notebooks first, then any
    other notebook in the order given."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    return sorted(range(len(paths)), key=lambda i: (rank.get(paths[i].stem, len(rank)), i))


def run(args: argparse.Namespace) -> int:
    """Execute the notebooks (side by side with --jobs), then print and save their recorded numbers."""
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
    names: set[str] = set()
    for path in notebooks:
        declared = notebook_parameters(path)
        names = accepted_parameters(path.stem, declared)  # labkit.params' declaration, else the parameters cell
        # An override a notebook does not declare is skipped for that notebook (e.g. a backbone knob only some have),
        # but a name no notebook declares is a typo and stops everything.
        mine = {k: v for k, v in overrides.items() if k in names}
        # a data path is the caller's: the kernel runs in the notebook's folder, so it gets the absolute path
        mine = absolute_paths(path.stem, mine)
        problems += check_parameters(path.stem, declared, mine, where="-p")
        plans.append((path, mine))
    unknown = [k for k in overrides if k != "tier" and not any(k in p for _, p in plans)]
    if unknown and len(plans) == 1:  # the sentence the notebook itself stops with
        problems += [f"{unknown_parameter(plans[0][0].stem, k, names)} (-p)" for k in unknown]
    elif unknown:
        problems.append(f"no selected notebook has a parameter named {', '.join(repr(k) for k in unknown)}")
    jobs = args.jobs if args.jobs is not None else default_jobs(args.tier)
    if jobs < 1:
        problems.append(f"--jobs must be 1 or more, got {jobs}")
    if problems:
        print("labkit run: nothing was run:\n  - " + "\n  - ".join(problems), file=sys.stderr)
        return 2
    jobs = min(jobs, len(plans))
    out = new_run_dir(Path(args.out))
    STOPPING.clear()
    side = f", {jobs} side by side" if jobs > 1 else ""
    print(f"labkit run: {len(plans)} notebook(s), tier={args.tier}{side}, output in {out}/")
    records: dict[int, dict] = {}
    in_main = threading.current_thread() is threading.main_thread()
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt) if in_main else None
    # Ctrl-C raises KeyboardInterrupt even when this process started with SIGINT ignored (a shell script's `&` and
    # nohup-style launchers start it so; Python then leaves SIGINT ignored), as `labkit batch` stops either way
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler) if in_main else None
    order = list(enumerate(plans, 1))
    pool = None
    try:
        if jobs == 1:
            for i, (path, params) in order:
                print(f"[{i}/{len(plans)}] {path.stem} ...", flush=True)
                records[i] = _report(execute_notebook(path, out, params, kernel=args.kernel,
                                                      cell_timeout=args.timeout), i, len(plans), out)
        else:
            from labkit.tools.batch import LocalPool

            pool = LocalPool(jobs, [], pinned_threads=args.tier == "quick")
            waiting = {}
            for i, (path, params) in [order[k] for k in start_order([p for p, _ in plans])]:
                job = {"source": path, "out_dir": out, "parameters": params, "kernel": args.kernel,
                       "cell_timeout": args.timeout}
                starting = f"[{i}/{len(plans)}] {path.stem} ..."
                waiting[pool.submit(job, key=path.stem, on_start=lambda line=starting: _say(line))] = i
            for fut in concurrent.futures.as_completed(waiting):
                records[waiting[fut]] = _report(fut.result(), waiting[fut], len(plans), out)
    except KeyboardInterrupt:
        stop_all()
        print(f"\nlabkit run: interrupted; the notebooks that were running are marked 'interrupted' and finished "
              f"notebooks are kept in {out}/", file=sys.stderr)
        return 130
    finally:
        if pool is not None:
            pool.close()
        if in_main:
            signal.signal(signal.SIGTERM, previous_term)
            signal.signal(signal.SIGINT, previous_int)
    records = [records[i] for i in sorted(records)]  # the course order, whichever finished first
    import pandas as pd  # deferred: `labkit run --help` should not pay for pandas

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
    """`python -m labkit.tools.runner`: the same as `labkit run`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return cli.main(["run", *argv])


if __name__ == "__main__":
    sys.exit(main())
