"""labkit run and the shared papermill execution: tables, reports, failures, time limits."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import psutil
import pytest

from labkit.tools.cli import main
from labkit.tools.execution import execute_notebook
from labkit.tools.notebooks import find_notebooks
from labkit.tools.parameters import parse_assignments

FIXTURES = Path(__file__).parent / "fixtures" / "batch"


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """A tiny course: one notebook that works and one that fails in its third cell."""
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    shutil.copy(FIXTURES / "toy.ipynb", nbs / "00_toy.ipynb")
    shutil.copy(FIXTURES / "broken.ipynb", nbs / "01_broken.ipynb")
    return nbs


@pytest.mark.slow
def test_run_prints_numbers_writes_report_and_reports_the_failing_cell(course, tmp_path, capsys):
    rc = main(["run", "--dir", str(course), "--out", str(tmp_path / "runs"), "-p", "x=3"])
    captured = capsys.readouterr()
    assert rc == 1  # one notebook failed, the other still ran
    (out,) = list((tmp_path / "runs").iterdir())  # runs/<timestamp>/
    assert {"00_toy.ipynb", "00_toy.results.json", "00_toy.log", "report.md"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "00_toy.results.json").read_text())["numbers"]["score"] == 6.0  # -p x=3 reached it
    assert "every number: " in captured.out  # the flat dump of metrics is in report.md and numbers.csv
    assert "In [4] `1 / 0  # the failing cell`: ZeroDivisionError: division by zero" in captured.out
    assert "01_broken" in captured.err
    report = (out / "report.md").read_text()
    assert "| 00_toy | score | 6 |" in report and "## Failures" in report and "ZeroDivisionError" in report
    # the course ledger comes first: every recorded claim with its interval and verdict, then the count line
    assert "Claims checked (the course ledger)" in captured.out and "1 hold, 0 fail, 0 unresolved" in captured.out
    assert report.index("## Claims checked") < report.index("## Every recorded number")
    (row,) = [line for line in report.splitlines() if "A beats B" in line]  # the ledger's columns are claim_tables.py's
    assert row.startswith("| toy |") and "| holds |" in row and "**1 hold, 0 fail, 0 unresolved**" in report
    assert "a-beats-b" in (out / "claims.csv").read_text() and "score" in (out / "numbers.csv").read_text()
    status = json.loads((out / "01_broken.status.json").read_text())
    assert status["status"] == "failed" and status["numbers"] == {}  # numbers of a failed run are not reported


def test_run_rejects_unknown_parameters_and_notebooks_before_running(course, tmp_path, capsys):
    assert main(["run", "00", "--dir", str(course), "--out", str(tmp_path / "runs"), "-p", "nope=1"]) == 2
    # one notebook: the sentence the notebook itself stops with; several: the name no one of them has
    assert "00_toy: unknown parameter 'nope'; the notebook's parameters are: " in capsys.readouterr().err
    assert main(["run", "--dir", str(course), "--out", str(tmp_path / "runs"), "-p", "nope=1"]) == 2
    assert "no selected notebook has a parameter named 'nope'" in capsys.readouterr().err
    assert main(["run", "00_toy", "--dir", str(course), "--out", str(tmp_path / "runs"), "-p", "x=big"]) == 2
    assert "parameter 'x' should be float" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="'07' is not a notebook"):
        main(["run", "07", "--dir", str(course)])
    assert not (tmp_path / "runs").exists()


def test_notebook_selection_and_parameter_parsing(course):
    assert [p.name for p in find_notebooks([], course)] == ["00_toy.ipynb", "01_broken.ipynb"]
    assert [p.name for p in find_notebooks(["01", "00_toy.ipynb"], course)] == ["01_broken.ipynb", "00_toy.ipynb"]
    assert parse_assignments(["x=0.5", "fail=true", "device=cpu", "sizes=[1, 2]", "name="]) == {
        "x": 0.5, "fail": True, "device": "cpu", "sizes": [1, 2], "name": ""}
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        parse_assignments(["x"])


@pytest.mark.slow
@pytest.mark.parametrize("limit", ["timeout", "cell_timeout"])
def test_time_limits_stop_the_run_and_leave_no_process_behind(course, tmp_path, limit):
    block = tmp_path / "block"
    block.write_text("wait")
    me = psutil.Process(os.getpid())
    before = set(me.children(recursive=True))  # e.g. a multiprocessing helper left by an earlier Dask test
    record = execute_notebook(course / "00_toy.ipynb", tmp_path / "out", {"wait_for": str(block)},
                              **{limit: 4.0})
    assert record["status"] == "failed"
    message = record["error"]["message"]
    if limit == "timeout":
        assert "RunTimeout" in message and "whole-notebook limit" in message
        # on a busy machine the kernel may still be starting after 4 s; otherwise the waiting cell is named
        assert "`deadline = time.time() + 60`" in message or "before the first cell ran" in message
    else:
        assert "CellTimeoutError" in message and "per-cell timeout" in message
        assert "`deadline = time.time() + 60`" in message  # the cell that was running
    assert set(me.children(recursive=True)) <= before  # no papermill child or kernel survives
    assert not (tmp_path / "out" / "00_toy.results.json").exists()


def test_quick_notebooks_run_two_side_by_side_longest_first_with_their_own_thread_counts(course, tmp_path, capsys,
                                                                                           monkeypatch):
    from labkit.tools import batch as batch_mod
    from labkit.tools.runner import LONGEST_FIRST, start_order

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(var, raising=False)
    started = []

    def fake(env, source, out_dir, parameters, **job):
        started.append((Path(source).stem, env))
        return {"status": "done", "notebook": Path(source).stem, "duration_s": 1.0, "numbers": {"n": 1},
                "claims": [], "log": "x.log"}

    monkeypatch.setattr(batch_mod, "execute_notebook", fake)
    assert main(["run", "--dir", str(course), "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "2 notebook(s), tier=quick, 2 side by side" in out
    # the quick tier pins torch's threads itself: the runs keep the machine's thread counts (the same numbers as
    # alone), and an idle OpenMP thread sleeps instead of spinning on the core the other run needs
    passive = {"OMP_WAIT_POLICY": "PASSIVE"}
    assert sorted(started) == [("00_toy", passive), ("01_broken", passive)]
    (run_dir,) = (tmp_path / "runs").iterdir()
    numbers = (run_dir / "numbers.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in numbers[1:]] == ["00_toy", "01_broken"]  # the course order, not finish order

    # --jobs 1: one after another, each alone with OpenMP's defaults; --jobs 0 is refused before anything runs
    started.clear()
    monkeypatch.setattr("labkit.tools.runner.execute_notebook",
                        lambda source, out, params, **kw: fake({}, source, out, params))
    assert main(["run", "--dir", str(course), "--out", str(tmp_path / "runs"), "--jobs", "1"]) == 0
    assert started == [("00_toy", {}), ("01_broken", {})]
    assert main(["run", "--dir", str(course), "--out", str(tmp_path / "runs2"), "--jobs", "0"]) == 2
    assert "--jobs must be 1 or more" in capsys.readouterr().err and not (tmp_path / "runs2").exists()

    # the course's longest notebooks start first; a notebook the list does not know keeps its place after them
    names = ["00_tour", "01_feature_hierarchy", "07_mine", "04_nlp_finetuning", "02_freeze_strategies"]
    assert [names[i] for i in start_order([Path(f"{n}.ipynb") for n in names])] == [
        "04_nlp_finetuning", "02_freeze_strategies", "01_feature_hierarchy", "00_tour", "07_mine"]
    assert set(LONGEST_FIRST) == {p.stem for p in find_notebooks([], Path(__file__).parents[1] / "solutions")}
