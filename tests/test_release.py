"""`labkit release`: student notebooks from solutions (placeholders, cleared outputs, live quizzes), --check, checks."""
from __future__ import annotations

import json
import shutil
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

from labkit.exercise import check
from labkit.tools.release import ReleaseError, dumps_notebook, plan, release_notebook, run, strip_code

REPO = Path(__file__).resolve().parents[1]
SECRET = "secret_solution_token_31337"  # appears only in solution code


def code(src, outputs=(), tags=(), count=1):
    return {"cell_type": "code", "execution_count": count, "id": f"id{abs(hash(src)) % 10**8}",
            "metadata": {"tags": list(tags), "execution": {"iopub.status.busy": "2024-01-01T00:00:00Z"}},
            "outputs": list(outputs), "source": src}


def stream(text):
    return {"name": "stdout", "output_type": "stream", "text": text}


def solution_nb() -> dict:
    """A small solutions notebook with every construct release handles."""
    return {
        "cells": [
            {"cell_type": "markdown", "id": "m1", "metadata": {}, "source": "# Fixture\nWhy is the sky blue?\n"
             "<!-- BEGIN SOLUTION -->\nRayleigh scattering.\n<!-- END SOLUTION -->"},
            code('tier = "quick"\nseed = 0\nstudent_id = None', tags=["parameters"]),
            code("print(sum(range(4)))", outputs=[stream("6\n")]),
            code(f"### BEGIN SOLUTION\ntotal = 40 + 2  # {SECRET}\nratio, (a, b) = 0.5, (1, 2)\n### END SOLUTION",
                 outputs=[stream("42\n")]),
            code("def double(x):\n    ### BEGIN SOLUTION\n"
                 f"    return 2 * x  # {SECRET}\n    ### PLACEHOLDER return None\n    ### END SOLUTION"),
            code(f"# {SECRET}\nsquares = [i * i for i in range(3)]", tags=["solution"]),
            code("from labkit.exercise import check\ncheck('total', total, expected=sum([40, 2]))",
                 outputs=[stream("✅ `total` is right. Well done!\n")]),
            code(f"grading_helper = '{SECRET}'", tags=["instructor-only"]),
            code('from labkit.quiz import show_quiz\nquiz = show_quiz("00", student_id=student_id)',
                 outputs=[{"data": {"application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2,
                                    "version_minor": 0}, "text/plain": "VBox()"},
                           "metadata": {}, "output_type": "display_data"}]),
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}, "widgets": {"state": {"abc": {}}}},
        "nbformat": 4, "nbformat_minor": 5,
    }


def src(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_release_replaces_solutions_and_clears_exercise_outputs():
    nb = release_notebook(solution_nb(), "99_fixture.ipynb")
    text = dumps_notebook(nb)
    assert SECRET not in text and "Rayleigh" not in text
    cells = nb["cells"]
    assert len(cells) == 8  # the instructor-only cell is gone
    assert "_Write your answer here._" in src(cells[0])
    assert cells[2]["outputs"] == [] and cells[2]["execution_count"] is None  # ordinary output cleared too
    assert src(cells[3]) == "# YOUR CODE HERE\ntotal = None\nratio = None\na = None\nb = None"
    assert src(cells[4]) == "def double(x):\n    # YOUR CODE HERE\n    return None"
    assert src(cells[5]) == "# YOUR CODE HERE\nsquares = None\n"
    for cell in (cells[3], cells[4], cells[6], cells[7]):  # exercises, the check and the quiz
        assert cell["outputs"] == [] and cell["execution_count"] is None
        assert "nbval-ignore-output" in cell["metadata"]["tags"]
    assert "widgets" not in nb["metadata"]
    assert nb["metadata"]["labkit"]["generated_from"] == "solutions/99_fixture.ipynb"
    assert all("execution" not in c["metadata"] for c in cells)


def test_released_notebook_has_no_outputs():
    """A solution run with outputs everywhere gives a student notebook without any output or run number."""
    nb = solution_nb()
    for i, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        cell["outputs"] = cell["outputs"] or [stream(f"out {i}\n"),
                                              {"data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"},
                                               "metadata": {}, "output_type": "display_data"}]
        cell["execution_count"] = i + 1
    released = release_notebook(nb, "99_fixture.ipynb")
    code_cells = [c for c in released["cells"] if c["cell_type"] == "code"]
    assert len(code_cells) == 7
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code_cells)
    text = dumps_notebook(released)
    assert '"output_type"' not in text and "out 0" not in text and "iVBORw0KGgo" not in text
    assert [src(c) for c in code_cells][1] == "print(sum(range(4)))"  # sources other than solutions stay as they are
    assert text == dumps_notebook(release_notebook(nb, "99_fixture.ipynb"))  # still byte-identical every time


def test_repo_student_notebooks_have_no_outputs():
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        with_output = [i + 1 for i, c in enumerate(nb["cells"])
                       if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
        assert with_output == [], f"{path.name}: cells {with_output} have outputs; run `labkit release`"


def test_student_notebooks_ask_for_a_prediction_before_key_results():
    for path in sorted((REPO / "notebooks").glob("0[1-5]_*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        prompts = [i for i, c in enumerate(cells)
                   if c["cell_type"] == "markdown" and "".join(c["source"]).startswith("> **Predict first.**")]
        assert prompts, f"{path.name}: no 'Predict first' prompt before a key result"
        for i in prompts:  # the prompt comes right before the cell that answers it
            assert i + 1 < len(cells) and cells[i + 1]["cell_type"] == "code", f"{path.name}: cell {i + 1}"


# One sitting per notebook is `labkit sitting`'s measure (tests/test_student_copies.py): reading prose, code and
# printed output, the exercises, predictions and quiz, and the recorded quick-tier run, at most 75 minutes.


def test_release_is_deterministic():
    first, second = (dumps_notebook(release_notebook(solution_nb(), "x.ipynb")) for _ in range(2))
    assert first == second


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx = 1", "BEGIN SOLUTION without END SOLUTION"),
    ("x = 1\n### END SOLUTION", "END SOLUTION without a BEGIN"),
    ("### PLACEHOLDER x = None\nx = 1", "PLACEHOLDER line outside a solution block"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "BEGIN SOLUTION inside another"),
])
def test_bad_markers_name_the_cell(source, message):
    nb = solution_nb()
    nb["cells"].insert(2, code(source))
    with pytest.raises(ReleaseError, match=f"solutions/bad.ipynb, cell 3: {message}"):
        release_notebook(nb, "bad.ipynb")


def test_explicit_placeholder_wins():
    out = strip_code("### BEGIN SOLUTION\nacc = fit()\n### PLACEHOLDER acc = None  # call fit(...)\n"
                     "### END SOLUTION\n", "w")
    assert out == "# YOUR CODE HERE\nacc = None  # call fit(...)\n"


def make_repo(tmp_path) -> Path:
    root = tmp_path / "course"
    (root / "solutions" / "quiz").mkdir(parents=True)
    (root / "solutions" / "99_fixture.ipynb").write_text(json.dumps(solution_nb()), encoding="utf-8")
    shutil.copy(REPO / "solutions" / "quiz" / "00.yaml", root / "solutions" / "quiz" / "00.yaml")
    return root


def args(root, check=False):
    return Namespace(check=check, solutions=root / "solutions", notebooks=root / "notebooks",
                     banks=root / "labkit" / "quiz" / "banks")


def test_release_then_check_then_drift(tmp_path, capsys):
    root = make_repo(tmp_path)
    assert run(args(root, check=True)) == 1  # nothing released yet
    assert run(args(root)) == 0
    first = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert run(args(root, check=True)) == 0
    assert run(args(root)) == 0  # a second release changes nothing, salts included
    assert first == {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    capsys.readouterr()

    nb = solution_nb()
    nb["cells"][2]["source"] = "print(sum(range(5)))"
    (root / "solutions" / "99_fixture.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    assert run(args(root, check=True)) == 1
    assert "drift: " in capsys.readouterr().out

    assert run(args(root)) == 0
    (root / "notebooks" / "old.ipynb").write_text("{}")
    assert run(args(root, check=True)) == 1
    assert "old.ipynb has no source" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["notebooks", "banks"])
def test_release_refuses_a_destination_it_cannot_write_and_writes_nothing(tmp_path, capsys, where):
    root = make_repo(tmp_path)
    a = args(root)
    blocker = root / "taken"
    blocker.write_text("a file where a folder should be")
    setattr(a, where, blocker)
    assert run(a) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err  # one sentence
    assert f"nothing was written: --{where} " in err and "is a file, not a folder" in err and "Pass --notebooks" in err
    setattr(a, where, blocker / "inside")  # under a file: cannot be created
    assert run(a) == 1
    assert "cannot be created" in capsys.readouterr().err
    assert not (root / "notebooks").exists() and not (root / "labkit").exists()  # neither half was written


def test_release_writes_all_or_nothing(tmp_path, monkeypatch):
    from labkit.tools import release as release_mod

    root = make_repo(tmp_path)
    real_fdopen = release_mod.os.fdopen
    calls = []

    def failing_fdopen(fd, *a, **k):  # the second file cannot be written (a full disk, a quota)
        calls.append(fd)
        if len(calls) == 2:
            release_mod.os.close(fd)
            raise OSError(28, "No space left on device")
        return real_fdopen(fd, *a, **k)

    monkeypatch.setattr(release_mod.os, "fdopen", failing_fdopen)
    assert run(args(root)) == 1
    written = [p for p in root.rglob("*") if p.is_file() and "solutions" not in p.parts]
    assert written == []  # no notebook without its bank, and no temporary file left


def test_check_fails_when_a_new_question_was_not_released(tmp_path):
    root = make_repo(tmp_path)
    assert run(args(root)) == 0
    bank = root / "solutions" / "quiz" / "00.yaml"
    bank.write_text(bank.read_text() + "\n  - {id: new-q, kind: text, prompt: Anything?}\n")
    assert run(args(root, check=True)) == 1


def test_released_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    import nbformat

    monkeypatch.setenv("LABKIT_RESPONSES_DIR", str(tmp_path / "responses"))
    nb = nbformat.reads(dumps_notebook(release_notebook(solution_nb(), "x.ipynb")), as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    check_output = "".join(o.get("text", "") for o in nb.cells[6].outputs)
    assert "not attempted yet" in check_output


def test_repo_notebooks_match_solutions():
    """What CI's `labkit release --check` verifies, as a test."""
    files, stale = plan(REPO / "solutions", REPO / "notebooks", REPO / "labkit" / "quiz" / "banks")
    drift = [str(p) for p, text in files.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    assert drift + [str(p) for p in stale] == [], "run `labkit release` and commit the result"


# labkit.exercise.check


def test_check_not_attempted(capsys):
    assert check("probe_acc", None, expected=0.9) is None
    assert "not attempted yet" in capsys.readouterr().out


def test_check_numbers(capsys):
    assert check("acc", 0.905, expected=0.9, atol=0.01) is True
    assert "is right" in capsys.readouterr().out
    assert check("acc", 0.5, expected=0.9, atol=0.01, hint="Did you freeze the backbone?") is False
    out = capsys.readouterr().out
    assert "too low" in out and "Did you freeze" in out and "run this cell again" in out
    assert check("acc", "high", expected=0.9) is False
    assert "expected a number" in capsys.readouterr().out


def test_check_arrays_tensors_and_predicates(capsys):
    class FakeTensor:  # duck-types torch.Tensor without importing torch
        def __init__(self, a):
            self.a = a

        def detach(self):
            return self

        def cpu(self):
            return self

        def numpy(self):
            return self.a

    assert check("w", FakeTensor(np.ones((2, 3))), expected=np.ones((2, 3))) is True
    assert check("w", np.ones((3, 2)), expected=np.ones((2, 3))) is False
    assert "shape is (3, 2) but should be (2, 3)" in capsys.readouterr().out
    assert check("w", [1.0, 2.0], expected=np.array([1.0, 2.5])) is False
    assert "largest difference 0.5" in capsys.readouterr().out
    assert check("layers", ["fc"], expected=lambda v: "fc" in v) is True
    assert check("name", "resnet18", expected="resnet18") is True
    assert check("frozen", False, expected=True) is False


def test_student_copies_carry_no_nbval_markers():
    """`# NBVAL_...` lines instruct the test runner; the released copy drops them (their meaning stays in metadata)."""
    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "solutions").glob("[0-9][0-9]_*.ipynb")):
        nb = release_notebook(json.loads(path.read_text()), path.name)
        for cell in nb["cells"]:
            assert "NBVAL_" not in src(cell), f"{path.name}: {src(cell)[:60]!r}"
    cell = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": 3,
            "source": "# NBVAL_IGNORE_OUTPUT\nprint(1)\n"}
    out = release_notebook({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, "99_x.ipynb")
    assert src(out["cells"][0]) == "print(1)\n"


def test_student_copies_drop_the_run_chosen_tag():
    """`run-chosen` tells nbval which cells' words the run picks; students' copies do not carry it."""
    cell = {"cell_type": "code", "metadata": {"tags": ["run-chosen", "keep-me"]}, "outputs": [],
            "execution_count": 3, "source": "print(1)\n"}
    out = release_notebook({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, "99_x.ipynb")
    assert out["cells"][0]["metadata"]["tags"] == ["keep-me"]
    assert cell["metadata"]["tags"] == ["run-chosen", "keep-me"]  # the solution itself is not changed
