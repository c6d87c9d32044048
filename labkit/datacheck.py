"""Check a data set against everything a notebook will ask of it, in the cell that loads it.

A notebook calls `check_data(notebook, train, test, dataset=..., **sizes)` right after loading its data. The check
computes what every later cell draws (at least 2 classes, the validation images held out per class, the largest
per-class count any cell asks for, the few-shot and curve sizes, the test sizes), then either

- clamps a size to what the data set has, printing one sentence that says so and which parameter to change, or
- raises `DataCheckError`: one sentence naming the data set, the number found, the number needed and the parameter
  to change,

before any training. It returns the sizes the notebook should use (the given ones when nothing was clamped, and
then it prints nothing).

The arithmetic mirrors the notebooks' own cells (02: validation images held out of the training split, then the
training and curve sizes drawn from the rest; 04: a stratified validation split, then the few-shot pool), so the
sizes it returns are exactly the ones those cells can draw.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

__all__ = ["DataCheckError", "check_data", "CHECKS"]


class DataCheckError(ValueError):
    """A data set cannot give a notebook what its later cells will ask for."""


def _counts(ds) -> dict[str, int]:
    """Examples per class name, in label order (classes without examples count 0)."""
    return dict(ds.class_counts())


def _need_classes(ds, dataset: str, what: str, fix: str) -> dict[str, int]:
    counts = _counts(ds)
    present = {name: n for name, n in counts.items() if n > 0}
    if len(present) < 2:
        found = ", ".join(repr(c) for c in present) or "none"
        raise DataCheckError(f"{dataset}: {len(present)} class found ({found}) but {what} needs at least 2 classes; "
                             f"{fix}.")
    return counts


def _smallest(counts: dict[str, int]) -> tuple[str, int]:
    name = min(counts, key=counts.get)
    return name, counts[name]


def _need_test(test, dataset: str, parameter: str = "dataset") -> int:
    if test is None:
        return 0
    if len(test) == 0:
        raise DataCheckError(f"{dataset}: the test split is empty (0 examples found, at least 1 needed); give each "
                             f"class more examples, or change {parameter}.")
    return len(test)


def _say(lines: list[str], dataset: str) -> None:
    for line in lines:
        print(f"data check: {dataset}: {line}")


def _check_02(train, test, dataset: str, n_per_class: int, val_per_class: int, test_size: int | None = None,
              curve_sizes: Sequence[int] = (), frozen_test_size: int | None = None) -> tuple[dict[str, Any], list[str]]:
    """02_freeze_strategies: validation held out of the training split, then n_per_class and the curve from the rest.
    """
    counts = _need_classes(train, dataset, "comparing freeze strategies",
                           "put each class's images in its own sub-folder, or change `dataset`")
    name, smallest = _smallest(counts)
    if smallest < 2:
        raise DataCheckError(f"{dataset}: class {name!r} has {smallest} training image(s) but 02 needs at least 2 "
                             "per class (one to train on, one to validate on); add images to that class, or change "
                             "`dataset`.")
    notes = []
    val_n = min(int(val_per_class), max(1, smallest // 3))  # a small folder keeps most of its images for training
    if val_n < val_per_class:
        notes.append(f"val_per_class={val_per_class} asked, but the smallest class ({name!r}) has {smallest} training "
                     f"images; {val_n} per class are held out for validation so most stay for training.")
    pool = smallest - val_n  # few_shot_indices(val_n) takes exactly val_n of every class
    n_train = min(int(n_per_class), pool)
    if n_train < n_per_class:
        notes.append(f"n_per_class={n_per_class} asked, but the smallest class ({name!r}) has {pool} training images "
                     f"left after {val_n} for validation; this run trains on {n_train} per class (add images, or "
                     "lower n_per_class).")
    asked = sorted({int(n) for n in curve_sizes})
    curve = sorted({min(n, pool) for n in asked})
    over = [n for n in asked if n > pool]
    if over and n_train == n_per_class:  # a clamped n_per_class is in the curve; its sentence is above
        notes.append(f"curve_sizes {over} are above the {pool} images per class there are; the curve runs at "
                     f"{curve} (lower curve_sizes to choose the points).")
    n_test = _need_test(test, dataset)

    def test_images(name: str, asked: int | None, who: str) -> int | None:
        """`asked` test images, lowered to the split's size with a sentence (None: every image)."""
        if not asked or test is None:
            return asked
        if asked > n_test:
            notes.append(f"{name}={asked} asked, but the test split has {n_test} images; {who}.")
        return min(asked, n_test)

    sizes = {"n_per_class": n_train, "val_per_class": val_n, "curve_sizes": curve,
             "test_size": test_images("test_size", test_size, "all of them are used"),
             "frozen_test_size": test_images("frozen_test_size", frozen_test_size, "the frozen rows score all of them")}
    return sizes, notes


def _held_per_class(counts: dict[str, int], fraction: float) -> dict[str, int]:
    """Examples per class that `ds.split(fraction)` holds out (its stratified rule: round(count * fraction))."""
    return {name: int(round(n * fraction)) for name, n in counts.items() if n > 0}


def _check_04(train, test, dataset: str, n_per_class: int, few_shot_sizes: Sequence[int], n_val_per_class: int,
              test_size: int | None = None, finetune_test_size: int | None = None,
              label_column: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """04_nlp_finetuning: a validation split, then a pool for n_per_class and every few-shot size."""
    fix = (f"choose a label column with 2 or more values (label_column={label_column!r} now), or change `dataset`"
           if label_column else "change `dataset` or `categories`")
    counts = _need_classes(train, dataset, "fine-tuning a classifier", fix)
    name, smallest = _smallest({k: v for k, v in counts.items() if v > 0})
    if smallest < 2:
        raise DataCheckError(f"{dataset}: class {name!r} has {smallest} training text(s) but 04 needs at least 2 "
                             "per class (one to validate on, one to train on); add rows of that class, or change "
                             "`dataset`.")
    fraction = min(0.5, 2 * n_val_per_class / smallest)  # the notebook's validation split
    held = _held_per_class(counts, fraction)
    rest = {c: counts[c] - held[c] for c in held}
    val_n = min(n_val_per_class, min(held.values()))
    pool_name = min(rest, key=rest.get)
    pool = rest[pool_name]
    if val_n < 1 or pool < 1:
        raise DataCheckError(f"{dataset}: class {pool_name!r} has {counts[pool_name]} training texts, too few to "
                             "hold some out for validation and train on the rest (at least 2 needed); add rows of "
                             "that class, or change `dataset`.")
    notes = []
    where = (f"the smallest class ({pool_name!r}) has {counts[pool_name]} training texts, {held[pool_name]} of them "
             f"held out for validation, so {pool} are left to train on")
    n_train = min(int(n_per_class), pool)
    if n_train < n_per_class:
        notes.append(f"n_per_class={n_per_class} asked, but {where}; this run trains on {n_train} per class (add "
                     "rows, or lower n_per_class).")
    asked = sorted({int(n) for n in few_shot_sizes})
    sweep = sorted({min(n, pool) for n in asked})
    over = [n for n in asked if n > pool]
    if over:
        notes.append(f"few_shot_sizes {over} are above the {pool} texts per class there are ({where}); the sweep "
                     f"runs at {sweep} (lower few_shot_sizes to choose the points).")
    n_test = _need_test(test, dataset)
    test_used = min(test_size or n_test, n_test) if test is not None else test_size
    if test_size and test is not None and test_size > n_test:
        notes.append(f"test_size={test_size} asked, but the test split has {n_test} texts; all of them are used.")
    finetune_used = finetune_test_size
    if finetune_test_size and test_used is not None and finetune_test_size > test_used:
        finetune_used = test_used
        notes.append(f"finetune_test_size={finetune_test_size} asked, but {test_used} test texts are used; every "
                     f"row of the main table is scored on all {test_used}.")
    sizes = {"n_per_class": n_train, "few_shot_sizes": sweep, "n_val_per_class": val_n, "test_size": test_used,
             "finetune_test_size": finetune_used}
    return sizes, notes


CHECKS: dict[str, Callable[..., tuple[dict[str, Any], list[str]]]] = {
    "02_freeze_strategies": _check_02,
    "04_nlp_finetuning": _check_04,
}


def check_data(notebook: str, train, test=None, *, dataset: Any, verbose: bool = True, **sizes: Any) -> dict:
    """Check `train` (and `test`) against what `notebook`'s later cells will draw; return the sizes to use.

    notebook: "02_freeze_strategies" or "04_nlp_finetuning"; sizes: the notebook's parameters after its tier
    defaults (02: n_per_class, val_per_class, test_size, curve_sizes, frozen_test_size; 04: n_per_class,
    few_shot_sizes, n_val_per_class, test_size, finetune_test_size, label_column). dataset: the data set as the user
    named it. Prints one sentence per clamped size (nothing when nothing is clamped); raises DataCheckError when the
    data set cannot serve the notebook at all.
    """
    if notebook not in CHECKS:
        raise KeyError(f"No data check for {notebook!r}; known: {sorted(CHECKS)}.")
    result, notes = CHECKS[notebook](train, test, str(dataset), **sizes)
    if verbose:
        _say(notes, str(dataset))
    result["notes"] = notes
    return result
