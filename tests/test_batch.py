"""labkit batch: spec checks, Dask execution with a failing run, resuming after an interruption, killed kernels and
workers."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from labkit.tools import batch as batch_mod
from labkit.tools.bands import band_verdict
from labkit.tools.batch import LocalPool, SpecError, detect_gpus, load_spec
from labkit.tools.batch_report import write_report
from labkit.tools.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "batch"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with the toy notebook, where specs and runs/ are written."""
    shutil.copy(FIXTURES / "toy.ipynb", tmp_path / "toy.ipynb")
    return tmp_path


def write_spec(folder: Path, spec: dict, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def statuses(batch_dir: Path) -> dict[str, dict]:
    """run id -> status record, for every run directory of a batch."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(batch_dir.glob("*/*.status.json"))}


@pytest.fixture
def dask_cluster():
    """A 2-worker Dask cluster on loopback only; one task per worker so a killed worker affects one run."""
    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    # allowed-failures=0: a task whose worker dies errs at once (KilledWorker) and labkit's own retry takes over,
    # instead of Dask silently re-running it three times.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.scheduler.worker-saturation": 1.0}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                           dashboard_address=None)
        try:
            yield cluster
        finally:
            cluster.close()


# ----------------------------------------------------------------------------------------------------------------
# Bad input is rejected before anything runs


def test_spec_with_unknown_parameter_is_rejected_naming_it(workdir, capsys):
    spec = write_spec(workdir, {"notebooks": ["toy"], "grid": {"lr": [0.1, 0.01]}, "seeds": [0]})
    with pytest.raises(SpecError, match="unknown parameter 'lr'"):
        load_spec(spec)
    rc = main(["batch", str(spec), "--out", str(workdir / "runs")])
    assert rc == 2
    assert "unknown parameter 'lr'" in capsys.readouterr().err
    assert not (workdir / "runs").exists()  # nothing ran, nothing was written


def test_only_runs_the_named_notebooks_and_refuses_an_unknown_name(workdir, capsys):
    shutil.copy(workdir / "toy.ipynb", workdir / "toy2.ipynb")
    spec = write_spec(workdir, {"notebooks": ["toy", "toy2"], "seeds": [0, 1]})
    assert main(["batch", str(spec), "--out", str(workdir / "runs"), "--only", "toy2", "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "2 run(s)" in plan and "toy2__seed=0" in plan and "toy__seed" not in plan
    assert main(["batch", str(spec), "--out", str(workdir / "runs"), "--only", "toy3"]) == 2
    assert "--only names toy3; this spec runs toy, toy2" in capsys.readouterr().err
    assert not (workdir / "runs").exists()


def test_spec_problems_are_all_listed(workdir):
    spec = write_spec(workdir, {"notebooks": ["toy", "99_missing"], "tier": "huge", "grid": {"x": ["big"]},
                                "parameters": {"fail": "yes"}, "seeds": [0], "repeats": 2, "typo_key": 1,
                                "cpu_workers": 0})
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    message = str(info.value)
    assert "notebook '99_missing' not found" in message
    assert "parameter 'x' should be float" in message and "'big'" in message
    assert "parameter 'fail' should be bool" in message
    assert "tier must be one of quick, full" in message
    assert "either `seeds" in message
    assert "unknown key(s) typo_key" in message
    assert "cpu_workers should be an integer >= 1, got 0" in message


def test_plan_run_ids_are_stable_and_distinct(workdir):
    spec = write_spec(workdir, {"notebooks": ["toy"], "grid": {"x": [1.0, 2.0]}, "repeats": 3})
    first, again = load_spec(spec), load_spec(spec)
    ids = [r.run_id for r in first.runs]
    assert len(ids) == 6 and len(set(ids)) == 6
    assert ids == [r.run_id for r in again.runs]
    assert ids[0].startswith("toy__x=1.0__seed=0__")
    assert first.swept == ["x", "seed"]
    assert all(r.parameters["tier"] == "quick" for r in first.runs)


# ----------------------------------------------------------------------------------------------------------------
# Execution


@pytest.mark.slow
def test_dask_batch_with_one_failing_run(workdir, dask_cluster, capsys):
    spec = write_spec(workdir, {
        "name": "sweep", "notebooks": ["toy"],
        "grid": [{"x": 1.0}, {"x": 2.0}, {"x": 3.0}, {"x": 4.0, "fail": True}],
        "retries": 1, "cell_timeout": 120, "timeout": 300})
    started = time.monotonic()
    rc = main(["batch", str(spec), "--scheduler", dask_cluster.scheduler_address, "--out", str(workdir / "runs"),
               "--no-progress"])
    elapsed = time.monotonic() - started
    out = capsys.readouterr().out
    assert rc == 1, out  # one run failed
    batch_dir = workdir / "runs" / "sweep"
    runs = statuses(batch_dir)
    assert sorted(r["status"] for r in runs.values()) == ["done", "done", "done", "failed"]
    assert sorted(r["numbers"]["score"] for r in runs.values() if r["status"] == "done") == [2.0, 4.0, 6.0]
    failed = next(r for r in runs.values() if r["status"] == "failed")
    assert failed["attempt"] == 2  # tried once, retried once
    assert "ValueError: fail=True: this run fails on purpose" in failed["error"]["message"]
    assert "In [" in failed["error"]["message"]  # names the failing cell
    report = (batch_dir / "report.md").read_text()
    assert "## Failures" in report and "fails on purpose" in report
    assert "3 done, 1 failed" in report
    assert len((batch_dir / "runs.csv").read_text().strip().splitlines()) == 1 + 4
    assert (batch_dir / "plots" / "toy__score.png").is_file()
    print(f"dask batch of 4 runs (1 failing, retried): {elapsed:.1f} s")


@pytest.mark.slow
def test_interrupted_batch_resumes_only_what_is_missing(workdir):
    block = workdir / "block"
    block.write_text("the second run waits while this file exists")
    spec = write_spec(workdir, {"name": "resume", "notebooks": ["toy"],
                                "grid": [{"x": 1.0}, {"x": 2.0, "wait_for": str(block)}, {"x": 3.0}]})
    batch_dir = workdir / "runs" / "resume"
    cmd = [sys.executable, "-m", "labkit", "batch", str(spec), "--out", str(workdir / "runs"), "--workers", "1",
           "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until run 1 is done and run 2 is executing
            states = {k.split("__")[1]: v["status"] for k, v in statuses(batch_dir).items()}
            if states.get("x=1.0") == "done" and states.get("x=2.0") == "running":
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the batch never reached run 2: {statuses(batch_dir)}")
        time.sleep(1.0)  # let run 2 get into its cells
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    assert "run the same command again" in output
    before = statuses(batch_dir)
    by_x = {k.split("__")[1]: v for k, v in before.items()}
    assert by_x["x=1.0"]["status"] == "done"
    assert by_x["x=2.0"]["status"] == "interrupted"
    assert "x=3.0" not in by_x  # never started
    done_file = next(batch_dir.glob("toy__x=1.0__*/toy.status.json"))
    done_text = done_file.read_text()

    block.unlink()
    rc = main(["batch", str(spec), "--out", str(workdir / "runs"), "--workers", "1", "--no-progress"])
    assert rc == 0
    after = {k.split("__")[1]: v for k, v in statuses(batch_dir).items()}
    assert all(v["status"] == "done" for v in after.values()) and len(after) == 3
    assert done_file.read_text() == done_text  # the finished run was not executed again
    assert after["x=2.0"]["attempt"] == 2 and after["x=3.0"]["attempt"] == 1


@pytest.mark.slow
def test_dead_kernel_is_retried_then_marked_failed_without_losing_others(workdir, capsys):
    spec = write_spec(workdir, {"name": "crash", "notebooks": ["toy"],
                                "grid": [{"x": 1.0}, {"x": 2.0, "crash": "kernel"}], "retries": 1})
    rc = main(["batch", str(spec), "--out", str(workdir / "runs"), "--workers", "2", "--no-progress"])
    assert rc == 1
    runs = {k.split("__")[1]: v for k, v in statuses(workdir / "runs" / "crash").items()}
    assert runs["x=1.0"]["status"] == "done" and runs["x=1.0"]["numbers"]["score"] == 2.0
    crashed = runs["x=2.0"]
    assert crashed["status"] == "failed" and crashed["attempt"] == 2
    assert "DeadKernelError" in crashed["error"]["message"] and "os._exit" in crashed["error"]["message"]
    assert "retry   toy__x=2.0" in capsys.readouterr().out


@pytest.mark.slow
def test_killed_dask_worker_fails_that_run_only(workdir, dask_cluster):
    spec = write_spec(workdir, {"name": "killed", "notebooks": ["toy"],
                                "grid": [{"x": 1.0}, {"x": 2.0, "crash": "worker"}, {"x": 3.0}], "retries": 1})
    rc = main(["batch", str(spec), "--scheduler", dask_cluster.scheduler_address, "--workers", "2",
               "--out", str(workdir / "runs"), "--no-progress"])
    assert rc == 1
    runs = {k.split("__")[1]: v for k, v in statuses(workdir / "runs" / "killed").items()}
    assert runs["x=1.0"]["status"] == "done" and runs["x=3.0"]["status"] == "done"
    lost = runs["x=2.0"]
    assert lost["status"] == "failed" and lost["attempt"] == 2
    assert "Dask worker running it died" in lost["error"]["message"]


# ----------------------------------------------------------------------------------------------------------------
# Pieces that need no notebook execution


def test_report_aggregates_seeds_and_flags_numbers_outside_bands(tmp_path):
    runs = [{"run_id": f"nb__seed={s}", "notebook": "nb", "status": "done", "parameters": {"seed": s, "tier": "quick"},
             "numbers": {"acc": acc, "nested": {"loss": 1.0}}} for s, acc in [(0, 0.80), (1, 0.90), (2, 0.30)]]
    runs.append({"run_id": "nb__seed=3", "notebook": "nb", "status": "failed", "parameters": {"seed": 3},
                 "numbers": {}, "error": {"message": "In [3] `boom()`: RuntimeError: boom"}, "log": "nb.log"})
    bands = {"nb": {"quick": {"acc": [0.7, 0.95]}}}
    info = write_report(tmp_path, "demo", runs, ["seed"], "quick", bands)
    report = (tmp_path / "report.md").read_text()
    assert "0.6667 ± 0.32" in report  # mean +- std over the three finished seeds
    assert "OUTSIDE [0.7, 0.95]" in report
    assert "nested.loss" in report
    assert "RuntimeError: boom" in report
    assert info["done"] == 3 and info["failed"] == 1
    assert any("nb__seed=2: acc=0.3 outside" in f for f in info["flagged"])
    assert (tmp_path / "plots" / "nb__acc.png").is_file()
    assert band_verdict(0.8, [0.7, 0.95]).startswith("ok") and band_verdict(0.8, None) == ""


def test_report_judges_claims_over_seeds_with_the_one_rule(tmp_path):
    from labkit.claims import judge

    def claim(effect):
        return dict(judge("c1", "A beats B", source="course", effects=[effect], ses=[0.015], n_items=500,
                          region=(0.0, None)).to_dict(), notebook="nb")

    effects = [0.05, -0.02, 0.06, 0.0, 0.03]  # seed 0 alone holds; the spread over seeds does not
    runs = [{"run_id": f"nb__seed={s}", "notebook": "nb", "status": "done", "parameters": {"seed": s},
             "numbers": {"acc": 0.5}, "claims": [claim(e)]} for s, e in enumerate(effects)]
    assert runs[0]["claims"][0]["verdict"] == "holds"
    info = write_report(tmp_path, "demo", runs, ["seed"], "quick", {})
    report = (tmp_path / "report.md").read_text()
    assert report.index("## Claims checked over seeds") < report.index("## Summary")
    assert "**0 hold, 0 fail, 1 unresolved**" in report
    assert "single runs: 3 holds, 2 unresolved" in report
    (row,) = info["claims"]
    assert row["n_seeds"] == 5 and row["verdict"] == "unresolved" and "seeds" in row["resolve"]
    assert "c1" in (tmp_path / "claims.csv").read_text()

    from labkit.tools.batch_report import publish_claims

    page = publish_claims(info["claims"], tmp_path / "docs" / "claims.md", "labkit batch spec.yaml", runs, "quick")
    text = page.read_text()
    assert text.startswith("# The course's claims over seeds") and "**0 hold, 0 fail, 1 unresolved**" in text
    assert "seeds [0, 1, 2, 3, 4]" in text and "Reproduce: `labkit batch spec.yaml`" in text
    assert (tmp_path / "docs" / "claims.csv").is_file()
    from labkit.tools.batch_report import update_readme_claims

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- claims:start -->\nstale line\n<!-- claims:end -->\nrest\n")
    assert update_readme_claims(readme, page, info["claims"], "quick", 5)
    text = readme.read_text()
    assert "Over 5 seeds (quick tier" in text and "0 hold, 0 fail, 1 unresolved" in text and "stale line" not in text
    assert "[docs/claims.md](docs/claims.md)" in text and text.endswith("rest\n")


def test_republishing_one_notebook_keeps_the_others_rows_as_published(tmp_path):
    from labkit.claim_tables import declarations_fingerprint
    from labkit.claims import judge
    from labkit.tools.batch_report import kept_published_rows, publish_claims

    def runs_of(notebook, effect):
        row = dict(judge("c1", "A beats B", source="course", effects=[effect], ses=[0.01], n_items=500,
                         region=(0.01, None)).to_dict(), notebook=notebook)
        return [{"run_id": f"{notebook}__seed={s}", "notebook": notebook, "status": "done", "parameters": {"seed": s},
                 "numbers": {}, "claims": [row]} for s in range(3)]

    runs = runs_of("nb_a", 0.08) + runs_of("nb_b", 0.0)
    info = write_report(tmp_path / "all", "demo", runs, ["seed"], "quick", {})
    page = tmp_path / "docs" / "claims.md"
    publish_claims(info["claims"], page, "labkit batch spec.yaml --publish docs/claims.md", runs, "quick")
    before = json.loads(page.with_suffix(".json").read_text())

    kept, meta = kept_published_rows(page, ["nb_b"])  # nb_b is run again; nb_a's rows come back as they were
    assert meta["notebooks"] == ["nb_a"] and meta["from"]["nb_a"]["commit"] == before["commit"]
    original = [r for r in info["claims"] if r["notebook"] == "nb_a"]
    assert declarations_fingerprint(kept) == declarations_fingerprint(original)
    assert kept[0]["region"] == [0.01, None] and kept[0]["verdict"] == "holds" and kept[0]["n_seeds"] == 3
    assert kept[0]["effect"] == pytest.approx(original[0]["effect"]) and kept[0]["edge"] is False

    rerun = runs_of("nb_b", 0.09)
    again = write_report(tmp_path / "b", "demo", rerun, ["seed"], "quick", {})
    publish_claims(kept + again["claims"], page, "labkit batch spec.yaml --only nb_b --publish docs/claims.md",
                   rerun, "quick", kept=meta)
    after = json.loads(page.with_suffix(".json").read_text())
    assert after["declarations"] == before["declarations"] and after["count_line"] == "2 hold, 0 fail, 0 unresolved"
    assert list(after["kept_from"]) == ["nb_a"] and after["kept_from"]["nb_a"]["commit"] == before["commit"]
    assert "the rows of nb_a come unchanged from the ledger measured at commit" in page.read_text()
    # publishing again keeps nb_a's origin (where it was measured), not the page that last kept it
    after_json = page.with_suffix(".json")
    after_json.write_text(json.dumps({**after, "commit": "later"}))
    _, meta_again = kept_published_rows(page, ["nb_b"])
    assert meta_again["from"]["nb_a"]["commit"] == before["commit"]
    with pytest.raises(FileNotFoundError, match="publish the whole batch once"):
        kept_published_rows(tmp_path / "nowhere" / "claims.md", ["nb_b"])


def test_gpu_detection_and_pinning(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert detect_gpus() == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert detect_gpus() == []
    seen = []
    monkeypatch.setattr(batch_mod, "execute_notebook", lambda env, **job: seen.append(env) or {"status": "done"})
    pool = LocalPool(2, ["0", "1"])
    try:
        futures = [pool.submit({"source": "x"}, key=str(i)) for i in range(4)]
        [f.result() for f in futures]
    finally:
        pool.close()
    assert sorted(e["CUDA_VISIBLE_DEVICES"] for e in seen) == ["0", "0", "1", "1"]


def test_cpu_runs_side_by_side_share_the_cores_with_sleeping_threads(monkeypatch):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(batch_mod.os, "cpu_count", lambda: 4)
    seen = []
    monkeypatch.setattr(batch_mod, "execute_notebook", lambda env, **job: seen.append(env) or {"status": "done"})
    for workers, expected in ((2, {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}),
                              (1, {})):
        seen.clear()
        pool = LocalPool(workers, [])
        try:
            pool.submit({"source": "x"}, key="0").result()
        finally:
            pool.close()
        assert seen == [expected]  # one CPU run alone keeps OpenMP's defaults (spinning threads are faster)
    # notebooks that pin their own torch threads (the quick tier) keep the thread counts they have alone
    seen.clear()
    pool = LocalPool(2, [], pinned_threads=True)
    try:
        pool.submit({"source": "x"}, key="0").result()
    finally:
        pool.close()
    assert seen == [{"OMP_WAIT_POLICY": "PASSIVE"}]


def test_shipped_bands_and_example_spec_are_valid():
    from labkit.tools.bands import load_bands

    bands = load_bands(REPO / "batches" / "reference_bands.yaml")
    assert bands["00_tour"]["quick"]["probe_gain"] == [0.05, 0.40]
    if not (REPO / "solutions" / "00_tour.ipynb").is_file():
        pytest.skip("solutions/00_tour.ipynb is not written yet")
    batch = load_spec(REPO / "batches" / "example.yaml")
    assert [r.parameters["seed"] for r in batch.runs] == [0, 1, 2]


def test_shipped_02_bands_name_recorded_numbers_and_the_full_tier_spec_loads():
    from labkit.tools.bands import load_bands

    bands = load_bands(REPO / "batches" / "reference_bands.yaml")["02_freeze_strategies"]["quick"]
    nb = json.loads((REPO / "solutions" / "02_freeze_strategies.ipynb").read_text())
    record_cell = next("".join(c["source"]) for c in nb["cells"] if "labkit.record(" in "".join(c["source"]))
    assert all(f'"{metric}":' in record_cell for metric in bands), "a band names a number the notebook never records"
    batch = load_spec(REPO / "batches" / "02_full_gpu.yaml")
    assert batch.tier == "full" and len(batch.runs) == 3
    assert all(r.parameters["device"] == "cuda" for r in batch.runs)


def test_a_run_finished_on_other_code_is_run_again(workdir):
    """Resuming keys on the notebook's code, not only its parameters: an edited notebook never keeps old results."""
    spec = write_spec(workdir, {"name": "edited", "notebooks": ["toy"], "grid": [{"x": 1.0}]})
    batch_dir = workdir / "runs" / "edited"
    args = ["batch", str(spec), "--out", str(workdir / "runs"), "--workers", "1", "--no-progress"]
    assert main(args) == 0
    status_file = next(batch_dir.glob("toy__x=1.0__*/toy.status.json"))
    first = json.loads(status_file.read_text())
    assert first["status"] == "done" and first["code"]
    assert main(args) == 0 and json.loads(status_file.read_text()) == first  # the same code: skipped
    nb = json.loads((workdir / "toy.ipynb").read_text())
    code = next(c for c in nb["cells"]
                if c["cell_type"] == "code" and "parameters" not in c["metadata"].get("tags", []))
    code["source"] = "".join(code["source"]) + "\n# edited\n"
    (workdir / "toy.ipynb").write_text(json.dumps(nb))
    assert main(args + ["--dry-run"]) == 0
    assert main(args) == 0
    second = json.loads(status_file.read_text())
    assert second["status"] == "done" and second["code"] != first["code"]
    # an outputs-only change (a re-executed notebook) is the same code: nothing to run again
    assert batch_mod.is_done(second, workdir / "toy.ipynb")
