"""Notebook parameters that refuse bad values: one declaration per notebook, checked in two places.

Each notebook's tier cell calls `check("02_freeze_strategies", n_per_class=n_per_class, ...)` right after its
parameters cell, so a bad value fails in the first seconds with one sentence naming the parameter, the value and
what is allowed. `labkit run` and `labkit batch` call `problems(...)` with the same declarations before any kernel
starts.

`absolute_paths` turns a relative data path into an absolute one in the caller (the kernel runs in the notebook's
folder, where a path relative to the caller's folder means something else).

Only what a parameter must be is declared here (type, range, allowed values); the tier defaults stay in the
notebooks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

__all__ = ["Param", "ParameterError", "spec", "check", "problems", "absolute_paths"]


class ParameterError(ValueError):
    """A notebook parameter has a value the notebook cannot use."""


@dataclass(frozen=True)
class Param:
    """What one parameter may be. kind: "int", "float", "str", "bool", "list" (of `items`) or "any"."""

    kind: str
    low: float | None = None  # inclusive
    high: float | None = None  # inclusive
    choices: tuple | None = None
    optional: bool = False  # None means "the tier's default"
    items: "Param | None" = None  # for lists
    min_len: int = 0
    path_ok: bool = False  # a str that names an existing file or folder is also allowed
    help: str = ""

    def describe(self) -> str:
        if self.choices is not None:
            what = "one of " + ", ".join(repr(c) for c in self.choices)
            if self.path_ok:
                what += " or a path to an existing file or folder"
        elif self.kind == "list":
            what = f"a list of {self.items.describe() if self.items else 'values'}"
            if self.min_len:
                what += f" (at least {self.min_len})"
        else:
            what = {"int": "a whole number", "float": "a number", "str": "text", "bool": "True or False",
                    "any": "any value"}[self.kind]
            if self.low is not None and self.high is not None:
                what += f" from {self.low:g} to {self.high:g}"
            elif self.low is not None:
                what += f" >= {self.low:g}"
            elif self.high is not None:
                what += f" <= {self.high:g}"
        if self.optional:
            what += " (or None for the tier's default)"
        return what

    def problem(self, value: Any) -> str | None:
        """None when `value` is allowed, else what is wrong (without the name)."""
        if value is None:
            return None if self.optional else "None is not allowed"
        if self.kind == "any":
            return None
        if self.kind == "bool":
            return None if isinstance(value, bool) else "it is not True or False"
        if self.kind in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"it is {type(value).__name__}, not a number"
            if self.kind == "int" and not float(value).is_integer():
                return "it is not a whole number"
            if not math.isfinite(value):
                return "it is not a finite number"
            if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
                return "it is out of range"
        if self.kind == "str":
            if not isinstance(value, (str, Path)):
                return f"it is {type(value).__name__}, not text"
        if self.choices is not None and value not in self.choices:
            if self.path_ok and Path(str(value)).expanduser().exists():
                return None
            if not self.path_ok:
                return "it is not an allowed value"
            where = Path(str(value)).expanduser()
            if not where.is_absolute():  # say where a relative path was looked for: the notebook's folder in a kernel
                return (f"it is not an allowed value and there is no file or folder {str(value)!r} in {Path.cwd()}; "
                        "give an absolute path, or a path relative to that folder")
            return "it is not an allowed value and no such file or folder exists"
        if self.kind == "list":
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                return f"it is {type(value).__name__}, not a list"
            values = list(value)
            if len(values) < self.min_len:
                return f"it has {len(values)} entries"
            if self.items is not None:
                for v in values:
                    bad = self.items.problem(v)
                    if bad:
                        return f"the entry {v!r} is not allowed ({bad})"
        return None


def _vision_backbones() -> tuple[str, ...]:
    from labkit.assets import VISION_ASSETS

    return tuple(VISION_ASSETS)


def _text_models() -> tuple[str, ...]:
    from labkit.assets import TEXT_ASSETS

    return tuple(TEXT_ASSETS)


def _image_datasets() -> tuple[str, ...]:
    from labkit.data import IMAGE_DATASETS

    return tuple(IMAGE_DATASETS)


COUNT = Param("int", low=1, optional=True)  # a size: None or a whole number >= 1
COMMON = {
    "tier": Param("str", choices=("quick", "full")),
    "seed": Param("int", low=0),
    "device": Param("str", choices=("auto", "cpu", "cuda", "mps")),
    "results_path": Param("any", optional=True),
    "student_id": Param("any", optional=True),
    "threads": COUNT,
}


def _specs() -> dict[str, dict[str, Param]]:
    backbone = Param("str", choices=_vision_backbones())
    image_data = Param("str", choices=_image_datasets(), path_ok=True)
    lr = Param("float", low=0, high=10)
    sizes = Param("list", items=Param("int", low=1), min_len=1, optional=True)
    return {
        "00_tour": {"backbone_name": backbone, "dataset": image_data, "n_per_class": COUNT, "test_size": COUNT,
                    "resolution": Param("int", low=16, high=1024, optional=True)},
        "01_feature_hierarchy": {
            "backbone_name": backbone, "dataset": image_data,
            "second_dataset": Param("str", choices=_image_datasets(), path_ok=True, optional=True),
            "n_per_class": COUNT, "test_size": COUNT, "second_n_per_class": COUNT, "second_test_size": COUNT,
            "resolution": Param("int", low=16, high=1024, optional=True)},
        "02_freeze_strategies": {
            "backbone_name": backbone, "dataset": image_data, "n_per_class": Param("int", low=1),
            "val_per_class": COUNT, "test_size": COUNT,
            "resolution": Param("int", low=16, high=1024, optional=True), "num_epochs": COUNT, "curve_sizes": sizes},
        "03_forgetting": {
            "n_b_train": Param("int", low=4, optional=True), "n_test": COUNT, "num_epochs": COUNT,
            "batch_size": Param("int", low=1), "lrs": Param("list", items=lr, min_len=2, optional=True),
            "mitigation_lr": Param("float", low=1e-8, high=10),
            "ewc_lambdas": Param("list", items=Param("float", low=0), min_len=1, optional=True),
            "replay_k": Param("int", low=1),
            "l2_alphas": Param("list", items=Param("float", low=0), min_len=1, optional=True),
            "l2sp_alphas": Param("list", items=Param("float", low=0), min_len=1, optional=True),
            "lwf_alphas": Param("list", items=Param("float", low=0), min_len=1, optional=True),
            "epochs_sweep": Param("list", items=Param("int", low=1), min_len=2, optional=True),
            "probe_dataset": Param("str", choices=("digits", "lfw_subset")),
            "lite_lrs": Param("list", items=lr, min_len=2), "lite_train_from": Param("str", optional=True)},
        "04_nlp_finetuning": {
            "model_name": Param("str", choices=_text_models(), optional=True),
            "dataset": Param("str", choices=("20newsgroups", "election_tweets", "imdb"), path_ok=True, optional=True),
            "categories": Param("list", items=Param("str"), min_len=2),
            "probe_categories": Param("list", items=Param("str"), min_len=2),
            "text_column": Param("str"), "label_column": Param("str"), "n_per_class": COUNT,
            "few_shot_sizes": sizes, "test_size": COUNT, "finetune_test_size": COUNT,
            "max_length": Param("int", low=8, high=4096, optional=True), "num_epochs": COUNT, "batch_size": COUNT},
        "05_pitfalls": {
            "backbone_name": backbone, "n_per_class": COUNT, "test_size": Param("int", low=10, optional=True),
            "resolution": Param("int", low=16, high=1024, optional=True), "finetune_per_class": COUNT,
            "finetune_epochs": COUNT, "transfer_sizes": Param("list", items=Param("int", low=1), min_len=2,
                                                               optional=True)},
    }


_CACHE: dict[str, dict[str, Param]] = {}


def spec(notebook: str) -> dict[str, Param]:
    """The declared parameters of a notebook id (empty for notebooks without a declaration, e.g. a test's)."""
    if not _CACHE:
        _CACHE.update(_specs())
    own = _CACHE.get(notebook)
    return {**COMMON, **own} if own is not None else {}


def problems(notebook: str, values: Mapping[str, Any]) -> list[str]:
    """One sentence per value that breaks its declaration (names not declared here are not judged)."""
    out = []
    for name, value in values.items():
        p = spec(notebook).get(name)
        if p is None:
            continue
        bad = p.problem(value)
        if bad:
            out.append(f"{notebook}: {name}={value!r} is not allowed ({bad}): {name} must be {p.describe()}.")
    return out


def check(notebook: str, **values: Any) -> None:
    """Raise ParameterError naming every bad value (the notebook's first cells call this)."""
    found = problems(notebook, values)
    if found:
        raise ParameterError(" ".join(found))


def absolute_paths(notebook: str, values: Mapping[str, Any], base: str | Path | None = None) -> dict[str, Any]:
    """`values` with every path parameter (a `path_ok` one) that names an existing file or folder made absolute.

    Relative paths are read from `base` (default: the current folder, the caller's). `labkit run` and `labkit batch`
    call this before writing a job, since the kernel runs in the notebook's folder (solutions/), not the caller's.
    Names (e.g. "fashion_mnist"), values that are not paths and paths that do not exist are returned unchanged.
    """
    out = dict(values)
    declared = spec(notebook)
    for name, value in values.items():
        p = declared.get(name)
        if p is None or not p.path_ok or not isinstance(value, (str, Path)) or not str(value):
            continue
        if p.choices is not None and value in p.choices:
            continue
        given = Path(str(value)).expanduser()
        candidate = given if given.is_absolute() else Path(base or Path.cwd()) / given
        if candidate.exists():
            out[name] = str(candidate.resolve())
    return out
