"""Bad data fails (or is clamped, with a sentence) in the cell that loads it, before any training: the data check of
notebooks 02 and 04, and the resolution warning of 00. Each case runs the notebook's own cell source."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from labkit.datacheck import DataCheckError, check_data
from labkit.params import tier_values

REPO = Path(__file__).resolve().parents[1]
SOLUTIONS = REPO / "solutions"


def cell_source(notebook: str, contains: str) -> str:
    """The source of the one code cell of solutions/<notebook> that contains `contains`."""
    nb = json.loads((SOLUTIONS / f"{notebook}.ipynb").read_text(encoding="utf-8"))
    (src,) = [s for s in ("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code") if contains in s]
    return src


def image_folder(root: Path, counts: dict[str, int], broken: int = 0) -> Path:
    """A flat folder of class sub-folders with `counts` tiny PNGs each (and `broken` unreadable .jpg files)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    for i in range(broken):
        (root / next(iter(counts)) / f"broken{i}.jpg").write_bytes(b"not an image")
    return root


def text_file(path: Path, per_class: dict[str, int]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for label, n in per_class.items():
            writer.writerows([f"{label} text number {i}", label] for i in range(n))
    return path


# ----------------------------------------------------------------------------------------------------------------
# 02: image folders


def run_02_data_cell(dataset: Path, **overrides) -> dict:
    """Notebook 02's data cell, executed with the tier's values (quick) and `overrides`; returns its namespace."""
    quick = tier_values("02_freeze_strategies", "quick")
    ns = dict(dataset=str(dataset), n_per_class=50, val_per_class=quick["val_per_class"], test_size=quick["test_size"],
              curve_sizes=sorted(set(quick["curve_sizes"]) | {50}), frozen_test_size=quick["frozen_test_size"],
              seed=0)
    ns.update(overrides)
    exec(cell_source("02_freeze_strategies", 'data.load_dataset(dataset, split="train")'), ns)
    return ns


def test_02_one_class_folder_stops_in_the_data_cell(tmp_path):
    folder = image_folder(tmp_path / "mydata", {"cats": 8})
    started = time.monotonic()
    with pytest.raises(DataCheckError) as info:
        run_02_data_cell(folder)
    message = str(info.value)
    assert time.monotonic() - started < 10
    assert message.startswith(f"{folder}: 1 class found ('cats')")
    assert "at least 2 classes" in message and "`dataset`" in message


def test_02_a_class_with_one_image_stops_naming_it(tmp_path):
    folder = image_folder(tmp_path / "mydata", {"cats": 8, "dogs": 1})
    with pytest.raises(DataCheckError, match=r"class 'dogs' has \d training image\(s\) but 02 needs at least 2"):
        run_02_data_cell(folder)


def test_02_small_folder_is_clamped_with_sentences_and_every_later_draw_fits(tmp_path, capsys):
    folder = image_folder(tmp_path / "mydata", {"cats": 15, "dogs": 20})  # 70 % for training: 11 and 14
    ns = run_02_data_cell(folder)
    out = capsys.readouterr().out
    assert f"data check: {folder}: val_per_class=20 asked, but the smallest class ('cats') has 11" in out
    assert "n_per_class=50 asked" in out and "this run trains on 8 per class" in out and "lower n_per_class" in out
    assert "test_size=500 asked, but the test split has 10 images" in out
    assert ns["n_train"] == 8 and ns["val_n"] == 3 and ns["curve_sizes"] == [5, 8]
    for n in ns["curve_sizes"]:  # the label curve's draws (cell "label_curve") fit the pool
        ns["train_pool"].few_shot(n, seed=0)


def test_02_frozen_rows_score_every_test_image_unless_asked_fewer(tmp_path, capsys):
    ns = run_02_data_cell("digits")  # the tier's None: every test image, for section 4b's frozen rows
    assert ns["test_frozen"] is ns["test_full"] and len(ns["test_ds"]) < len(ns["test_full"])
    ns = run_02_data_cell("digits", frozen_test_size=100)
    assert abs(len(ns["test_frozen"]) - 100) <= 5  # stratified: about 100
    folder = image_folder(tmp_path / "mydata", {"cats": 15, "dogs": 20})  # 10 test images
    ns = run_02_data_cell(folder, frozen_test_size=50)
    assert "frozen_test_size=50 asked, but the test split has 10 images" in capsys.readouterr().out
    assert len(ns["test_frozen"]) == 10


def test_02_default_data_prints_nothing(capsys):
    ns = run_02_data_cell("digits")  # 10 classes, ~125 training images each: nothing to clamp
    out = capsys.readouterr().out
    assert "data check" not in out and ns["n_train"] == 50 and ns["curve_sizes"] == [5, 20, 50]


def test_skipped_unreadable_images_are_a_warning(tmp_path):
    folder = image_folder(tmp_path / "mydata", {"cats": 8, "dogs": 8}, broken=1)
    from labkit import data

    with pytest.warns(UserWarning, match=r"Skipped 1 unreadable file\(s\)"):
        data.load_dataset(str(folder), split="train")


# ----------------------------------------------------------------------------------------------------------------
# 04: CSV files


def run_04_checks(dataset: Path, **overrides) -> dict:
    """Notebook 04's data check (the end of its loading cell) and its split cell, with the quick tier's values."""
    from labkit import data, text

    cfg = tier_values("04_nlp_finetuning", "quick")
    ns = dict(dataset=str(dataset), n_per_class=cfg["n_per_class"], few_shot_sizes=cfg["few_shot_sizes"],
              test_size=cfg["test_size"], finetune_test_size=cfg["finetune_test_size"], label_column="label", cfg=cfg,
              seed=0, text=text, np=np)
    ns.update(overrides)
    ns["pool_full"] = data.load_text_dataset(str(dataset), "train")
    ns["test_full"] = data.load_text_dataset(str(dataset), "test")
    loading = cell_source("04_nlp_finetuning", "labkit.data.load_text_dataset(dataset")
    exec(loading[loading.index("from labkit.datacheck import check_data"):], ns)  # the check, after the loading
    exec(cell_source("04_nlp_finetuning", 'n_val = cfg["n_val_per_class"]'), ns)  # the split cell
    return ns


def test_04_one_class_csv_stops_naming_the_label_column(tmp_path):
    path = text_file(tmp_path / "my.csv", {"spam": 40})
    started = time.monotonic()
    with pytest.raises(DataCheckError) as info:
        run_04_checks(path)
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert message.startswith(f"{path}: 1 class found ('spam')") and "at least 2 classes" in message
    assert "label_column='label'" in message and "`dataset`" in message


def test_04_csv_with_100_rows_per_class_is_clamped_in_the_loading_cell(tmp_path, capsys):
    """Was: "Asked for 64 examples of class 0 but only 35 exist" in the split cell (35 is not the user's number)."""
    path = text_file(tmp_path / "my.csv", {"ham": 100, "spam": 100})
    ns = run_04_checks(path)
    out = capsys.readouterr().out
    assert f"data check: {path}: n_per_class=64 asked, but the smallest class ('ham') has 70 training texts, 35 " \
           "of them held out for validation, so 35 are left to train on; this run trains on 35 per class" in out
    assert "few_shot_sizes [64, 256] are above the 35 texts per class" in out and "runs at [16, 35]" in out
    assert ns["n_per_class"] == 35 and ns["few_shot_sizes"] == [16, 35] and ns["finetune_sizes"] == [16, 35]
    assert len(ns["train_ds"]) == 70
    for n in ns["few_shot_sizes"]:  # the few-shot cell's draws
        ns["pool"].few_shot(n, seed=0)


def test_04_csv_with_300_rows_per_class_clamps_the_few_shot_sweep_before_training(tmp_path, capsys):
    """Was: the early cells passed and the few-shot cell failed after minutes of fine-tuning (256 asked, 110 exist:
    210 training texts per class, 100 of them held out for validation)."""
    path = text_file(tmp_path / "my.csv", {"ham": 300, "spam": 300})
    ns = run_04_checks(path)
    out = capsys.readouterr().out
    assert "few_shot_sizes [256] are above the 110 texts per class there are" in out
    assert "the sweep runs at [16, 64, 110]" in out and "n_per_class" not in out.split("few_shot_sizes")[0]
    assert ns["n_per_class"] == 64 and ns["few_shot_sizes"] == [16, 64, 110]
    for n in ns["few_shot_sizes"]:
        ns["pool"].few_shot(n, seed=0)


def test_04_default_sizes_on_a_large_file_print_nothing(tmp_path, capsys):
    path = text_file(tmp_path / "big.csv", {"ham": 2000, "spam": 2000})
    ns = run_04_checks(path)
    assert "data check" not in capsys.readouterr().out
    assert ns["few_shot_sizes"] == [16, 64, 256] and ns["finetune_test_size"] == 1000
    assert ns["test_size"] == len(ns["test_full"]) == len(ns["test_all"])  # the cheap rows score every test text


def test_check_data_names_unknown_notebooks():
    with pytest.raises(KeyError, match="No data check for '09_x'"):
        check_data("09_x", None, dataset="x")


# ----------------------------------------------------------------------------------------------------------------
# 00: a resolution far below the weights'


def test_00_low_resolution_runs_with_a_warning_and_a_note_for_the_claims(capsys):
    source = cell_source("00_tour", 'tier_settings("00_tour"')
    ns = dict(tier="quick", seed=0, device="cpu", backbone_name="efficientnet_lite0", dataset="fashion_mnist",
              n_per_class=None, test_size=None, resolution=16)
    exec(source, ns)
    out = capsys.readouterr().out
    assert "WARNING: resolution=16 px is 14x below the 224 px the efficientnet_lite0 weights were trained at" in out
    assert "Use resolution=112 or more" in out
    assert ns["resolution_note"].startswith("judged at 16 px, 14x below the 224 px")
    ns.update(resolution=None)
    exec(source, ns)  # the tier's 112 px: half the weights', no warning
    assert "WARNING" not in capsys.readouterr().out and ns["resolution_note"] == ""


# ----------------------------------------------------------------------------------------------------------------
# Through `labkit run`, from another folder with a relative path: the kernel finds the data and stops in the data cell


def labkit_run(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "LABKIT_CACHE": str(cwd / "cache")}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "labkit", "run", "--dir", str(SOLUTIONS), "--out", "runs",
                           *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    return done, time.monotonic() - started


@pytest.mark.slow
def test_run_02_with_a_relative_one_class_folder_stops_in_the_data_cell(tmp_path):
    image_folder(tmp_path / "mydata", {"cats": 8}, broken=1)
    done, seconds = labkit_run(["02", "-p", "dataset=mydata"], tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    # In [1] parameters, [2] injected values, [3] the parameter check, [4] the data cell: nothing trained
    assert f"In [4] `import numpy as np`: DataCheckError: {tmp_path / 'mydata'}: 1 class found ('cats')" in done.stdout
    assert "warning: In [4]" in done.stdout and "Skipped 1 unreadable file(s)" in done.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    status = json.loads((run_dir / "02_freeze_strategies.status.json").read_text())
    assert status["parameters"]["dataset"] == str(tmp_path / "mydata")  # absolute before the job was written
    assert status["duration_s"] < 120
    print(f"02, one-class folder: failed in {seconds:.0f} s (notebook {status['duration_s']:.0f} s)")


@pytest.mark.slow
def test_run_04_with_a_relative_one_class_csv_stops_in_the_data_cell(tmp_path):
    text_file(tmp_path / "my.csv", {"spam": 40})
    done, seconds = labkit_run(["04", "-p", "dataset=my.csv"], tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    # In [4] loads the model, In [5] the data; the first fine-tuning is several cells later
    assert f"In [5] `try:`: DataCheckError: {tmp_path / 'my.csv'}: 1 class found ('spam')" in done.stdout
    assert "label_column='label'" in done.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    status = json.loads((run_dir / "04_nlp_finetuning.status.json").read_text())
    assert status["duration_s"] < 120
    print(f"04, one-class CSV: failed in {seconds:.0f} s (notebook {status['duration_s']:.0f} s)")
