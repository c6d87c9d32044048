"""Notebook parameters are declared once (labkit.params, with each tier's values); bad ones fail in seconds with one
sentence naming the parameter, the value and what is allowed, in the notebook and in `labkit run` alike."""
import contextlib
import io
import json
import re
import time
from pathlib import Path

import pytest

from labkit.params import (
    TIER_NAMES,
    Param,
    ParameterError,
    Setting,
    check,
    declaration,
    problems,
    show_tiers,
    spec,
    tier_settings,
    tier_values,
    unknown_parameter,
)
from labkit.tools.cli import main
from labkit.tools.parameters import accepted_parameters, check_parameters, notebook_parameters

SOLUTIONS = Path(__file__).parents[1] / "solutions"
NOTEBOOKS = sorted(p.stem for p in SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
# every notebook reads its tier values through tier_settings
NOT_PORTED: set[str] = set()
PORTED = [name for name in NOTEBOOKS if name not in NOT_PORTED]

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
                    ("backbone_name", "resnet9"), ("finetune_steps", True)],
}


def test_every_notebook_has_a_declaration_that_matches_its_parameters_cell():
    assert set(BAD) == set(NOTEBOOKS)
    for name in NOTEBOOKS:
        declared = set(notebook_parameters(SOLUTIONS / f"{name}.ipynb"))
        assert set(spec(name)) - declared == set(), f"{name}: declared in labkit.params but not a parameter"
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


# ----------------------------------------------------------------------------------------------------------------
# One declaration with the tiers' values: the notebook's tier cell, `labkit run` and these tests read it


def cells(name: str) -> tuple[str, str]:
    """The parameters cell and the cell after it (the tier cell) of solutions/<name>."""
    nb = json.loads((SOLUTIONS / f"{name}.ipynb").read_text(encoding="utf-8"))
    i = next(i for i, c in enumerate(nb["cells"]) if "parameters" in c["metadata"].get("tags", []))
    return "".join(nb["cells"][i]["source"]), "".join(nb["cells"][i + 1]["source"])


def run_tier_cell(name: str, **injected) -> tuple[dict, str]:
    """The namespace and printout after the parameters cell, `injected` (as papermill would) and the tier cell."""
    params, tier_cell = cells(name)
    ns: dict = {}
    exec(params, ns)
    ns.update(injected)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # seeding is left out: it would set this process's torch threads
        exec(re.sub(r"labkit\.seed_everything\([^)]*\)", "pass", tier_cell), ns)
    return ns, out.getvalue()


def test_tier_values_are_declared_for_ported_notebooks_only_and_pass_their_own_checks():
    for name in NOTEBOOKS:
        tiered = {k for k, entry in declaration(name).items() if entry.tiers is not None}
        assert bool(tiered) == (name not in NOT_PORTED), name
        for tier in TIER_NAMES:
            values = {k: v for k, v in tier_values(name, tier).items() if k in spec(name)}
            assert problems(name, values) == [], (name, tier)
        assert all(isinstance(e, (Param, Setting)) for e in declaration(name).values())


@pytest.mark.parametrize("name", PORTED)
def test_the_parameters_cell_leaves_every_tier_value_to_the_declaration(name):
    params, tier_cell = cells(name)
    defaults = {k: v["default"] for k, v in notebook_parameters(SOLUTIONS / f"{name}.ipynb").items()}
    for key, entry in spec(name).items():
        if entry.tiers is not None:
            assert defaults[key] == "None", f"{name}: {key} is tier-dependent, so its parameters cell says None"
    assert "TIERS" not in params + tier_cell and f'labkit.tier_settings("{name}", tier,' in tier_cell
    passed = set(re.findall(r"\b(\w+)=\1\b", tier_cell))  # every parameter goes through the check
    assert passed == set(spec(name)) - {"tier", "results_path", "student_id"}, name


@pytest.mark.parametrize("name", PORTED)
@pytest.mark.parametrize("tier", TIER_NAMES)
def test_the_notebook_gets_the_declared_tier_values(name, tier):
    ns, printed = run_tier_cell(name, tier=tier)
    declared = tier_values(name, tier)
    assert ns["cfg"] == {**ns["cfg"], **declared}  # the settings it reads later (cfg["head_epochs"], ...)
    for key, value in declared.items():
        if key in spec(name):  # the variable the notebook goes on with (02 adds n_per_class to its curve)
            got = ns[key]
            same = list(got) == list(value) if isinstance(value, (list, tuple)) else got == value
            assert same, (name, tier, key, got, value)
    assert printed.startswith(f"tier={tier}: ")


def test_a_value_given_in_the_parameters_cell_wins_over_the_tier():
    ns, printed = run_tier_cell("05_pitfalls", tier="full", n_per_class=7, transfer_sizes=[50, 5])
    assert ns["n_per_class"] == 7 and ns["transfer_sizes"] == (50, 5) and ns["test_size"] == 5000
    assert printed.startswith("tier=full: probe 7/class, 5000 test images, 224 px")
    with pytest.raises(ParameterError, match=r"n_per_class=-1 is not allowed"):
        run_tier_cell("00_tour", tier="quick", n_per_class=-1)


def test_tier_settings_fills_none_copies_and_refuses_in_one_sentence_each():
    cfg = tier_settings("02_freeze_strategies", "full", n_per_class=50, test_size=None, num_epochs=2)
    assert cfg["test_size"] == 2000 and cfg["num_epochs"] == 2 and cfg["head_epochs"] == 50
    cfg["resolutions"] += (999,)
    assert tier_values("02_freeze_strategies", "full")["resolutions"] == (112, 224)  # the declaration is untouched
    with pytest.raises(ParameterError) as info:
        tier_settings("02_freeze_strategies", "quick", n_per_class=0, lr=0.1)
    assert str(info.value) == (unknown_parameter("02_freeze_strategies", "lr") + " "
                               + problems("02_freeze_strategies", {"n_per_class": 0})[0])
    assert "lr" not in spec("02_freeze_strategies") and "head_epochs" not in spec("02_freeze_strategies")
    with pytest.raises(ParameterError, match="tier must be one of 'quick', 'full'"):
        tier_settings("00_tour", "huge")
    with pytest.raises(ParameterError, match="declares no parameters"):
        tier_settings("09_unknown", "quick")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_labkit_run_accepts_and_refuses_what_the_notebook_does(name):
    declared = notebook_parameters(SOLUTIONS / f"{name}.ipynb")
    assert accepted_parameters(name, declared) == set(spec(name))
    for key, value in BAD[name]:
        with pytest.raises(ParameterError) as info:
            check(name, **{key: value})
        assert check_parameters(name, declared, {key: value}, where="-p") == [f"{info.value} (-p)"]
    assert check_parameters(name, declared, {"lr": 0.1}) == [unknown_parameter(name, "lr")]
    if name not in NOT_PORTED:
        with pytest.raises(ParameterError) as info:
            tier_settings(name, "quick", lr=0.1)
        assert str(info.value) == unknown_parameter(name, "lr")


def test_labkit_run_refuses_an_unknown_name_with_the_notebooks_sentence(tmp_path, capsys):
    assert main(["run", "02", "-p", "lr=0.1", "--out", str(tmp_path / "runs")]) == 2
    assert f"{unknown_parameter('02_freeze_strategies', 'lr')} (-p)" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_show_tiers_prints_every_quick_and_full_value():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        show_tiers("05_pitfalls")
    lines = out.getvalue().splitlines()
    for key, entry in declaration("05_pitfalls").items():
        if entry.tiers is not None:
            (row,) = [line for line in lines if line.split()[0] == key]
            assert repr(entry.tiers[0]) in row and repr(entry.tiers[1]) in row
    assert any("the tier: learning rates each start chooses from" in line for line in lines)
