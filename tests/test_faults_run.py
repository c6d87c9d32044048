"""Faults around `labkit run` and `labkit batch`: refused in one sentence before anything is written, errors named by
the cell a student sees, warnings on the console, and nothing left behind by an interrupted or killed run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from labkit.tools import execution, runner
from labkit.tools.cli import main

REPO = Path(__file__).resolve().parents[1]


def make_notebook(path: Path, *cells: str) -> Path:
    """A notebook with a `parameters` cell (the runners' own parameters plus `block`) and the given code cells."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('tier = "quick"\nseed = 0\nresults_path = None\nblock = None\nmarker = None')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


# a cell that makes a Trainer-like checkpoint folder, says where (and which kernel), then waits while `block` exists
CHECKPOINT_AND_WAIT = """# NBVAL_IGNORE_OUTPUT
import json, os, tempfile, time
scratch = tempfile.mkdtemp(prefix="labkit-trainer-")
open(os.path.join(scratch, "checkpoint.bin"), "wb").write(b"x" * 1000)
json.dump({"scratch": scratch, "kernel": os.getpid()}, open(marker + ".tmp", "w"))
os.replace(marker + ".tmp", marker)
deadline = time.time() + 60
while block and os.path.exists(block) and time.time() < deadline:
    time.sleep(0.1)"""


# ----------------------------------------------------------------------------------------------------------------
# Output locations are checked before anything is written


@pytest.mark.parametrize("case", ["a file", "under a file", "not writable"])
def test_run_refuses_an_output_place_it_cannot_write_before_running(tmp_path, capsys, case):
    nbs = tmp_path / "nbs"
    make_notebook(nbs / "00_quick.ipynb", "x = 1")
    taken = tmp_path / "taken"
    taken.write_text("a file")
    out = {"a file": taken, "under a file": taken / "runs", "not writable": Path("/proc/labkit-runs")}[case]
    started = time.monotonic()
    assert main(["run", "--dir", str(nbs), "--out", str(out)]) == 2
    seconds = time.monotonic() - started
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err  # one sentence
    assert f"labkit run: nothing was run: cannot write the results: {out}" in err
    assert "pass --out FOLDER, a folder you can write to" in err
    assert {"a file": "is a file, not a folder", "under a file": f"cannot be created: {taken} is a file",
            "not writable": "cannot be created: /proc is not writable"}[case] in err
    assert seconds < 5  # before any notebook is read
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nbs", "taken"]


def test_batch_refuses_an_output_place_it_cannot_write(tmp_path, capsys):
    make_notebook(tmp_path / "quick.ipynb", "x = 1")
    spec = tmp_path / "spec.yaml"
    spec.write_text("notebooks: [quick]\n")
    (tmp_path / "taken").write_text("a file")
    assert main(["batch", str(spec), "--out", str(tmp_path / "taken"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "nothing was run: cannot write the results:" in err and "is a file, not a folder" in err


# ----------------------------------------------------------------------------------------------------------------
# Errors point at the cell a student sees; warnings reach the console


def test_failing_cell_is_named_by_its_first_line_of_code():
    source = "# NBVAL_IGNORE_OUTPUT\n# train every strategy\n\nresults = run_all()\n"
    assert execution.first_code_line(source) == "results = run_all()"
    assert execution.first_code_line("# only a comment\n") == "# only a comment"
    message = execution._describe_error({"cell": 9, "source": source, "ename": "ValueError", "evalue": "bad"},
                                     "02", "python3")
    assert message == "In [9] `results = run_all()`: ValueError: bad"


def test_warnings_of_an_executed_notebook_are_collected_with_their_cell(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("# NBVAL_IGNORE_OUTPUT\ntrain_full = data.load_dataset(dataset)")
    cell.execution_count = 4
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text=(
        "/x/labkit/data.py:12: UserWarning: Skipped 1 unreadable file(s) in photos, e.g. ['broken.jpg'].\n"
        "  warnings.warn(...)\n")),
        nbformat.v4.new_output("stream", name="stdout", text="WARNING: resolution=16 px is 14x below 224 px\n")]
    nb.cells = [cell]
    nbformat.write(nb, str(tmp_path / "run.ipynb"))
    assert execution.notebook_warnings(tmp_path / "run.ipynb") == [
        "In [4] `train_full = data.load_dataset(dataset)`: UserWarning: Skipped 1 unreadable file(s) in photos, "
        "e.g. ['broken.jpg'].",
        "In [4] `train_full = data.load_dataset(dataset)`: WARNING: resolution=16 px is 14x below 224 px"]


@pytest.mark.slow
def test_run_shows_a_notebook_warning_and_names_the_failing_cell_on_the_console(tmp_path, capsys):
    nbs = tmp_path / "nbs"
    make_notebook(nbs / "00_warns.ipynb",
                  "# NBVAL_IGNORE_OUTPUT\nimport warnings\nwarnings.warn('Skipped 2 unreadable file(s) in photos')",
                  "# NBVAL_IGNORE_OUTPUT\n# a comment a student skips\nvalue = 1 / 0")
    assert main(["run", "--dir", str(nbs), "--out", str(tmp_path / "runs")]) == 1
    out = capsys.readouterr().out
    # In [1] is the parameters cell, In [2] the values papermill injects
    assert "warning: In [3] `import warnings`: UserWarning: Skipped 2 unreadable file(s) in photos" in out
    assert "In [4] `value = 1 / 0`: ZeroDivisionError: division by zero" in out


# ----------------------------------------------------------------------------------------------------------------
# Nothing left behind


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 90) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())
        if proc.poll() is not None:
            pytest.fail(f"the run ended early: {proc.communicate()[0]}")
        time.sleep(0.1)
    pytest.fail("the notebook never reached its waiting cell")


def _sigint(disposition):
    """A preexec_fn that starts the child with SIGINT at `disposition`: SIG_DFL as a terminal starts a command,
    SIG_IGN as a shell script's `&` does (then Python leaves SIGINT ignored unless the program says otherwise)."""
    return lambda: signal.signal(signal.SIGINT, disposition)


@pytest.mark.slow
@pytest.mark.parametrize("sig, started", [(signal.SIGINT, signal.SIG_DFL), (signal.SIGINT, signal.SIG_IGN),
                                          (signal.SIGTERM, signal.SIG_DFL)],
                         ids=["ctrl-c", "ctrl-c, started in the background", "sigterm"])
def test_interrupted_run_is_marked_and_leaves_nothing_behind(tmp_path, sig, started):
    nbs, runs, marker, block = tmp_path / "nbs", tmp_path / "runs", tmp_path / "marker.json", tmp_path / "block"
    block.write_text("wait")
    make_notebook(nbs / "00_waits.ipynb", CHECKPOINT_AND_WAIT, "done = True")
    cmd = [sys.executable, "-m", "labkit", "run", "--dir", str(nbs), "--out", str(runs),
           "-p", f"block={block}", "-p", f"marker={marker}"]
    # the SIGINT disposition is set, not inherited: pytest itself may run in the background with SIGINT ignored
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "LABKIT_CACHE": str(tmp_path / "cache")}, preexec_fn=_sigint(started))
    try:
        seen = _wait_for(marker, proc)
        sent = time.monotonic()
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=30)
        seconds = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    assert "interrupted" in output and seconds < 15
    (out,) = runs.iterdir()
    status = json.loads((out / "00_waits.status.json").read_text())
    assert status["status"] == "interrupted" and status["error"]["ename"] == "Interrupted"
    assert "`import json, os, tempfile, time`" in status["error"]["message"]  # the cell it stopped in
    assert not list(out.glob(".*"))  # no job file, no outcome file, no temporary folder
    scratch = Path(seen["scratch"])
    assert out in scratch.parents and not scratch.exists()  # the checkpoint folder was the run's, and is gone
    assert not psutil.pid_exists(seen["kernel"]) or psutil.Process(seen["kernel"]).status() == "zombie"


@pytest.mark.slow
def test_killed_run_leaves_no_checkpoint_folder(tmp_path):
    """A run stopped by its time limit (its kernel killed with SIGKILL): nothing outside the run folder remains."""
    nbs, marker, block = tmp_path / "nbs", tmp_path / "marker.json", tmp_path / "block"
    block.write_text("wait")
    make_notebook(nbs / "00_waits.ipynb", CHECKPOINT_AND_WAIT)
    import tempfile

    system_tmp = Path(tempfile.gettempdir())
    before = set(system_tmp.glob("labkit-trainer-*"))
    record = execution.execute_notebook(nbs / "00_waits.ipynb", tmp_path / "out", {"block": str(block),
                                     "marker": str(marker)}, timeout=15)
    assert record["status"] == "failed" and "RunTimeout" in record["error"]["message"]
    assert marker.exists(), record  # the checkpoint folder was made before the kill
    scratch = Path(json.loads(marker.read_text())["scratch"])
    assert (tmp_path / "out") in scratch.parents and not scratch.exists()
    assert set(system_tmp.glob("labkit-trainer-*")) <= before
    assert not list((tmp_path / "out").glob(".*"))


def test_trainer_checkpoint_folder_is_removed_on_sigterm(tmp_path):
    """`labkit.text.trainer_scratch` (the Trainer's output_dir) in a process that receives SIGTERM."""
    code = ("import sys, time\nfrom labkit.text import trainer_scratch\n"
            "with trainer_scratch() as folder:\n"
            "    (folder / 'checkpoint.bin').write_bytes(b'x' * 1000)\n"
            "    print(folder, flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        folder = Path(proc.stdout.readline().strip())
        assert folder.is_dir() and folder.name.startswith("labkit-trainer-")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGTERM  # it still ends as SIGTERM asks
    assert not folder.exists()


def test_trainer_checkpoint_folder_is_removed_on_an_error_and_kept_when_asked(tmp_path, monkeypatch):
    from labkit.text import trainer_scratch

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    with pytest.raises(KeyboardInterrupt):
        with trainer_scratch() as folder:
            (folder / "checkpoint.bin").write_bytes(b"x")
            raise KeyboardInterrupt
    assert not folder.exists()
    with trainer_scratch(tmp_path / "keep") as kept:
        kept.mkdir()
    assert kept.is_dir()  # an output_dir the caller chose is the caller's


# ----------------------------------------------------------------------------------------------------------------
# Ctrl-C while a child is being started: the stop must reach it


@pytest.mark.slow
def test_a_stop_during_a_childs_start_still_stops_it(tmp_path, monkeypatch):
    """The window of the batch hang: `stop_all` ran while a worker had started a child but not registered it, so
    the child ran on (here it would wait 60 s) and the pool's close waited for it."""
    nbs, block = tmp_path / "nbs", tmp_path / "block"
    block.write_text("wait")
    make_notebook(nbs / "00_waits.ipynb", CHECKPOINT_AND_WAIT)
    real_popen = subprocess.Popen
    stopper: list[threading.Thread] = []

    def popen_then_stop(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        thread = threading.Thread(target=execution.stop_all)  # Ctrl-C arrives right after the child started
        thread.start()
        stopper.append(thread)
        time.sleep(0.5)
        return proc

    monkeypatch.setattr(execution.subprocess, "Popen", popen_then_stop)
    execution.STOPPING.clear()
    started = time.monotonic()
    try:
        record = execution.execute_notebook(nbs / "00_waits.ipynb", tmp_path / "out",
                                         {"block": str(block), "marker": str(tmp_path / "m")})
    finally:
        for thread in stopper:
            thread.join()
        execution.STOPPING.clear()
    assert time.monotonic() - started < 20
    assert record["status"] == "interrupted"


def test_no_child_starts_once_a_stop_is_under_way(tmp_path, monkeypatch):
    make_notebook(tmp_path / "nbs" / "00_x.ipynb", "x = 1")
    monkeypatch.setattr(execution.subprocess, "Popen", lambda *a, **k: pytest.fail("a child was started"))
    execution.STOPPING.set()
    try:
        record = execution.execute_notebook(tmp_path / "nbs" / "00_x.ipynb", tmp_path / "out")
    finally:
        execution.STOPPING.clear()
    assert record["status"] == "interrupted" and "before the notebook finished" in record["error"]["message"]
    assert not list((tmp_path / "out").glob(".*"))


# ----------------------------------------------------------------------------------------------------------------
# Relative paths and the cache root


def test_relative_data_path_is_made_absolute_before_the_job_is_written(tmp_path, monkeypatch, capsys):
    (tmp_path / "mydata" / "cats").mkdir(parents=True)
    (tmp_path / "mydata" / "dogs").mkdir()
    monkeypatch.chdir(tmp_path)
    jobs = []
    monkeypatch.setattr(runner, "execute_notebook",
                        lambda path, out, params, **kw: jobs.append(params) or {
                            "status": "done", "duration_s": 0, "notebook": path.stem, "numbers": {}, "log": "x"})
    assert main(["run", "02", "--dir", str(REPO / "solutions"), "--out", str(tmp_path / "runs"),
                 "-p", "dataset=mydata"]) == 0
    assert jobs[0]["dataset"] == str(tmp_path / "mydata")
    assert main(["run", "02", "--dir", str(REPO / "solutions"), "--out", str(tmp_path / "runs"),
                 "-p", "dataset=fashion_mnist"]) == 0
    assert jobs[1]["dataset"] == "fashion_mnist"  # a name stays a name
    capsys.readouterr()


def test_a_missing_relative_path_is_refused_naming_the_folder_it_was_looked_in(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "02", "--dir", str(REPO / "solutions"), "--out", str(tmp_path / "runs"),
                 "-p", "dataset=nodata"]) == 2
    err = capsys.readouterr().err
    assert f"there is no file or folder 'nodata' in {tmp_path}" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("env", [None, "shared-cache"], ids=["default", "relative LABKIT_CACHE"])
def test_cache_folder_is_the_same_whatever_the_kernels_folder(tmp_path, monkeypatch, env):
    from labkit._io import CACHE_ENV, cache_root
    from labkit.features import cache_dir

    monkeypatch.delenv(CACHE_ENV, raising=False)
    if env:  # as `labkit run` hands it to the kernel: made absolute in the caller's folder
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv(CACHE_ENV, env)
        monkeypatch.setenv(CACHE_ENV, str(cache_root()))
    seen = set()
    for folder in (tmp_path, tmp_path / "solutions", REPO):  # the caller's folder, a kernel's, the repository
        folder.mkdir(exist_ok=True)
        monkeypatch.chdir(folder)
        seen.add(cache_dir())
    (one,) = seen
    assert one.is_absolute() and one.name == "features"
    assert one.parent == (tmp_path / env if env else cache_root())
    if not env and "XDG_CACHE_HOME" not in os.environ:
        assert one == Path.home() / ".cache" / "labkit" / "features"


def test_labkit_run_hands_the_kernel_one_absolute_cache_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABKIT_CACHE", "relative-cache")
    make_notebook(tmp_path / "nbs" / "00_x.ipynb", "x = 1")
    seen = {}

    class FakePopen:  # records the child's environment; "runs" nothing
        def __init__(self, cmd, env, **kwargs):
            seen.update(env)
            self.returncode, self.pid = 0, os.getpid()

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(execution.subprocess, "Popen", FakePopen)
    execution.execute_notebook(tmp_path / "nbs" / "00_x.ipynb", tmp_path / "out")
    assert seen["LABKIT_CACHE"] == str(tmp_path / "relative-cache")
    assert seen["TMPDIR"] == str(tmp_path / "out" / ".00_x.tmp")  # the run's own temporary folder
    assert not (tmp_path / "out" / ".00_x.tmp").exists()  # removed when the run ended


# a cell that says which kernel it runs in (one file per kernel), then waits while `block` exists
SAY_AND_WAIT = """# NBVAL_IGNORE_OUTPUT
import json, os, time
json.dump({"kernel": os.getpid()}, open(f"{marker}.{os.getpid()}.tmp", "w"))
os.replace(f"{marker}.{os.getpid()}.tmp", f"{marker}.{os.getpid()}")
deadline = time.time() + 60
while block and os.path.exists(block) and time.time() < deadline:
    time.sleep(0.1)"""


@pytest.mark.slow
def test_ctrl_c_stops_both_notebooks_that_run_side_by_side(tmp_path):
    nbs, runs, marker, block = tmp_path / "nbs", tmp_path / "runs", tmp_path / "marker", tmp_path / "block"
    block.write_text("wait")
    for name in ("00_waits", "01_waits", "02_waits"):
        make_notebook(nbs / f"{name}.ipynb", SAY_AND_WAIT, "done = True")
    cmd = [sys.executable, "-m", "labkit", "run", "--dir", str(nbs), "--out", str(runs),
           "-p", f"block={block}", "-p", f"marker={marker}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "LABKIT_CACHE": str(tmp_path / "cache")},
                            preexec_fn=_sigint(signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 90
        while len([p for p in tmp_path.glob("marker.*") if not p.name.endswith(".tmp")]) < 2:
            assert time.monotonic() < deadline and proc.poll() is None, "two notebooks never ran side by side"
            time.sleep(0.1)
        kernels = [json.loads(p.read_text())["kernel"] for p in tmp_path.glob("marker.*") if p.suffix != ".tmp"]
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted" in output, output
    (out,) = runs.iterdir()
    states = {p.name.split(".")[0]: json.loads(p.read_text())["status"] for p in out.glob("*.status.json")}
    # the two that ran are stopped; the third, which never ran, is not reported finished
    assert list(states.values()).count("interrupted") >= 2 and "done" not in states.values(), states
    assert not list(out.glob(".*"))  # no job file, no outcome file, no temporary folder
    assert all(not psutil.pid_exists(k) or psutil.Process(k).status() == "zombie" for k in kernels)
