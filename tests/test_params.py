"""Bad notebook parameters fail in seconds with one sentence naming the parameter, the value and what is allowed."""
import time
from pathlib import Path

import pytest

from labkit.params import ParameterError, check, problems, spec
from labkit.tools.cli import main
from labkit.tools.parameters import notebook_parameters

SOLUTIONS = Path(__file__).parents[1] / "solutions"
NOTEBOOKS = sorted(p.stem for p in SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))

# per notebook: (negative size, zero size, unknown dataset or model, unknown backbone, wrong type)
BAD = {
    "00_tour": [("n_per_class", -3), ("test_size", 0), ("dataset", "imagenet21k"), ("backbone_name", "resnet9"),
                ("resolution", "big")],
    "01_feature_hierarchy": [("n_per_class", -1), ("second_test_size", 0), ("dataset", "cifar"),
                             ("backbone_name", "vgg"), ("test_size", 1.5)],
    "02_freeze_strategies": [("n_per_class", -50), ("n_per_class", 0), ("curve_sizes", [5, 0]),
                             ("backbone_name", "vit"), ("num_epochs", "three"), ("dataset", "imagenet"),
                             ("val_per_class", 0)],
    "03_forgetting": [("n_b_train", -300), ("n_test", 0), ("probe_dataset", "mnist"), ("replay_k", 0),
                      ("mitigation_lr", "fast")],
    "04_nlp_finetuning": [("n_per_class", -64), ("test_size", 0), ("dataset", "sst2"), ("model_name", "gpt5"),
                          ("max_length", "long")],
    "05_pitfalls": [("finetune_per_class", -10), ("n_per_class", 0), ("transfer_sizes", [5, -1]),
                    ("backbone_name", "resnet9"), ("finetune_epochs", True)],
}


def test_every_notebook_has_a_declaration_that_matches_its_parameters_cell():
    assert set(BAD) == set(NOTEBOOKS)
    for name in NOTEBOOKS:
        declared = set(notebook_parameters(SOLUTIONS / f"{name}.ipynb"))
        common = {"threads"}  # declared for every notebook; 00 and 01 do not pin threads
        extra = set(spec(name)) - declared - common
        assert not extra, f"{name}: declared here but not a parameter: {extra}"
        assert declared - set(spec(name)) == set(), f"{name}: parameters without a declaration"


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_bad_values_are_refused_naming_the_parameter(notebook):
    for name, value in BAD[notebook]:
        found = problems(notebook, {name: value})
        assert len(found) == 1, (name, value)
        assert f"{name}={value!r} is not allowed" in found[0] and f"{name} must be" in found[0]
        with pytest.raises(ParameterError, match=name):
            check(notebook, **{name: value})


def test_defaults_and_sensible_values_pass():
    for name in NOTEBOOKS:
        defaults = {k: v["default"] for k, v in notebook_parameters(SOLUTIONS / f"{name}.ipynb").items()}
        import ast

        values = {}
        for k, v in defaults.items():
            try:
                values[k] = ast.literal_eval(v)
            except (ValueError, SyntaxError):
                continue
        assert problems(name, values) == [], name
    assert problems("00_tour", {"n_per_class": 5, "dataset": str(SOLUTIONS)}) == []  # a folder path is a data set
    assert problems("unknown_notebook", {"n_per_class": -1}) == []  # nothing declared: nothing judged


def test_labkit_run_refuses_before_a_kernel_starts(tmp_path, capsys):
    start = time.perf_counter()
    rc = main(["run", "00", "-p", "n_per_class=-3", "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert rc == 2 and time.perf_counter() - start < 30
    assert "n_per_class=-3 is not allowed" in err and "a whole number >= 1" in err
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_batch_dry_run_refuses_a_bad_value(tmp_path, capsys):
    spec_file = tmp_path / "bad.yaml"
    spec_file.write_text(f"name: bad\nnotebooks_dir: {SOLUTIONS}\nnotebooks: [02_freeze_strategies]\n"
                         "parameters: {n_per_class: 0}\n")
    rc = main(["batch", str(spec_file), "--dry-run", "--out", str(tmp_path / "runs")])
    assert rc == 2 and "n_per_class=0 is not allowed" in capsys.readouterr().err


@pytest.mark.slow
def test_the_notebook_itself_stops_in_its_first_cells(tmp_path):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    start = time.perf_counter()
    with pytest.raises(PapermillExecutionError) as info:
        papermill.execute_notebook(str(SOLUTIONS / "00_tour.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"n_per_class": -3}, cwd=str(SOLUTIONS), progress_bar=False)
    assert info.value.ename == "ParameterError" and "n_per_class=-3" in info.value.evalue
    assert info.value.exec_count <= 3 and time.perf_counter() - start < 120


def test_path_parameters_are_made_absolute_in_the_caller(tmp_path, monkeypatch):
    from labkit.params import absolute_paths

    (tmp_path / "mydata").mkdir()
    (tmp_path / "texts.csv").write_text("text,label\n")
    monkeypatch.chdir(tmp_path)
    got = absolute_paths("02_freeze_strategies", {"dataset": "mydata", "n_per_class": 5})
    assert got == {"dataset": str(tmp_path / "mydata"), "n_per_class": 5}
    assert absolute_paths("04_nlp_finetuning", {"dataset": "texts.csv"})["dataset"] == str(tmp_path / "texts.csv")
    for unchanged in ({"dataset": "fashion_mnist"}, {"dataset": "nothing-here"}, {"dataset": None}):
        assert absolute_paths("02_freeze_strategies", unchanged) == unchanged
    assert absolute_paths("toy", {"dataset": "mydata"}) == {"dataset": "mydata"}  # undeclared: not judged


def test_a_missing_relative_path_names_the_folder_it_was_looked_in(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (found,) = problems("02_freeze_strategies", {"dataset": "mydata"})
    assert f"there is no file or folder 'mydata' in {tmp_path}" in found and "give an absolute path" in found
