"""Notebook parameters, declared once per notebook with the value each tier gives them, and checked everywhere.

Each notebook's tier cell calls `cfg = labkit.tier_settings("02_freeze_strategies", tier, n_per_class=..., ...)`
right after its parameters cell: a bad value fails in the first seconds with one sentence naming the parameter, the
value and what is allowed; a parameter left at None takes its tier's value; `cfg` also holds the values the tier
fixes that are not parameters (e.g. 02's head epochs). `labkit.show_tiers(notebook)` prints the quick and full
values side by side. `labkit run` and `labkit batch` call `problems(...)` and `unknown_parameter(...)` with the same
declarations before any kernel starts.

`absolute_paths` turns a relative data path into an absolute one in the caller (the kernel runs in the notebook's
folder, where a path relative to the caller's folder means something else).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from labkit._tables import text_table

__all__ = ["Param", "Setting", "ParameterError", "TIER_NAMES", "spec", "declaration", "tier_values", "check",
           "problems", "unknown_parameter", "tier_settings", "show_tiers", "absolute_paths"]

TIER_NAMES = ("quick", "full")


class ParameterError(ValueError):
    """A notebook parameter has a value the notebook cannot use."""


@dataclass(frozen=True)
class Param:
    """What one parameter may be. kind: "int", "float", "str", "bool", "list" (of `items`) or "any"."""

    kind: str
    low: float | None = None  # inclusive
    high: float | None = None  # inclusive
    choices: tuple | None = None
    optional: bool = False  # None is allowed (for a per-tier parameter: "the tier's value")
    items: "Param | None" = None  # for lists
    min_len: int = 0
    path_ok: bool = False  # a str that names an existing file or folder is also allowed
    help: str = ""
    tiers: tuple | None = None  # (quick, full): what a None in the parameters cell becomes in each tier

    def per_tier(self, quick: Any, full: Any) -> "Param":
        """This parameter, left at None in the parameters cell, taking `quick` or `full` from the tier."""
        return replace(self, optional=True, tiers=(quick, full))

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


@dataclass(frozen=True)
class Setting:
    """A value each tier fixes that is not a parameter (e.g. 02's head epochs); the notebook reads it from `cfg`."""

    quick: Any
    full: Any
    help: str = ""

    @property
    def tiers(self) -> tuple:
        return (self.quick, self.full)


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
PIXELS = Param("int", low=16, high=1024, optional=True)  # an input size
SIZES = Param("list", items=Param("int", low=1), min_len=1, optional=True)  # labels per class, one run each
COMMON = {
    "tier": Param("str", choices=TIER_NAMES),
    "seed": Param("int", low=0),
    "device": Param("str", choices=("auto", "cpu", "cuda", "mps")),
    "results_path": Param("any", optional=True),
    "student_id": Param("any", optional=True),
}


def _declarations() -> dict[str, dict[str, Param | Setting]]:
    """Every notebook's parameters (Param) and the values its tiers fix (Setting): the one place they are spelled.

    A parameter with `.per_tier(quick, full)` is None in the notebook's parameters cell and takes its tier's value;
    one without keeps the value its parameters cell gives (the same in both tiers).
    """
    backbone = Param("str", choices=_vision_backbones())
    image_data = Param("str", choices=_image_datasets(), path_ok=True)
    lr = Param("float", low=0, high=10)
    strengths = Param("list", items=Param("float", low=0), min_len=1)
    return {
        "00_tour": {
            "backbone_name": backbone, "dataset": image_data, "n_per_class": COUNT.per_tier(50, 500),
            "test_size": COUNT.per_tier(500, 5000), "resolution": PIXELS.per_tier(112, 224),
            "threads": Setting(2, None, "CPU threads torch uses (None: torch's default)")},
        "01_feature_hierarchy": {
            "backbone_name": backbone, "dataset": image_data,
            "second_dataset": Param("str", choices=_image_datasets(), path_ok=True, optional=True),
            "n_per_class": COUNT.per_tier(50, 500), "test_size": COUNT.per_tier(None, None),
            "second_n_per_class": COUNT.per_tier(20, 100), "second_test_size": COUNT.per_tier(None, None),
            "resolution": PIXELS.per_tier(112, 224),
            "projection": Setting("pca", "tsne", "how the pooled test features are drawn in 2-D"),
            "threads": Setting(2, None, "CPU threads torch uses (None: torch's default)")},
        "02_freeze_strategies": {
            "backbone_name": backbone, "dataset": image_data, "n_per_class": Param("int", low=1),
            "val_per_class": COUNT.per_tier(20, 50), "test_size": COUNT.per_tier(500, 2000),
            "frozen_test_size": COUNT.per_tier(None, None), "resolution": PIXELS.per_tier(64, 224),
            "num_epochs": COUNT.per_tier(3, 5),
            "curve_sizes": SIZES.per_tier((5, 20, 50), (5, 20, 50, 200, 500)), "threads": COUNT.per_tier(2, None),
            "resolutions": Setting((64, 112), (112, 224), "input sizes the frozen features are compared at"),
            "network_pixel_budget": Setting(500 * 64 * 64, None, "training images x pixels per image the network "
                                            "rows fit in the tier's time, for images larger than its resolution"),
            "head_epochs": Setting(30, 50, "epochs of a head trained on cached features"),
            "scratch_lrs": Setting((3e-3, 1e-2), (1e-3, 3e-3, 1e-2), "learning rates scratch chooses from"),
            "scratch_max_epochs": Setting(8, 40, "most epochs of scratch trained to a plateau"),
            "matrix_large": COUNT.per_tier(200, 1200), "matrix_test": COUNT.per_tier(1000, None),
            "matrix_small": Setting(10, 10, "images per class of the 2x2 matrix's small cells"),
            "matrix_val": Setting(40, 100, "validation images per class of each matrix target, fixed for every seed"),
            "matrix_epochs": Setting(2, 5, "epochs through the network per matrix recipe"),
            "matrix_min_steps": Setting(60, 120, "fewest optimizer steps per stage of a matrix recipe")},
        "03_forgetting": {
            "n_b_train": Param("int", low=4).per_tier(300, 5000), "n_test": COUNT.per_tier(2000, 5000),
            "num_epochs": COUNT.per_tier(2, 5), "batch_size": Param("int", low=1),
            "lrs": Param("list", items=lr, min_len=2).per_tier([3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 3e-2],
                                                                [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]),
            "mitigation_lr": Param("float", low=1e-8, high=10, optional=True),
            "ewc_lambdas": strengths.per_tier([1e2, 1e4], [1.0, 1e2, 1e4]),
            "replay_k": Param("int", low=1),
            "l2_alphas": strengths.per_tier([1e-2, 1e-1], [1e-3, 1e-2, 1e-1]),
            "l2sp_alphas": strengths.per_tier([0.1, 1.0], [0.1, 1.0, 10.0]),
            "lwf_alphas": strengths.per_tier([0.1, 1.0], [0.1, 1.0, 10.0]),
            "epochs_sweep": Param("list", items=Param("int", low=1), min_len=2).per_tier([1, 2, 4], [1, 3, 9]),
            "probe_dataset": Param("str", choices=("digits", "lfw_subset")),
            "lite_lrs": Param("list", items=lr, min_len=2),
            "lite_train_from": Param("str").per_tier("stage6", "stem"), "threads": COUNT.per_tier(2, None),
            "n_b_val": Setting(500, 1000, "task-B validation images: every choice is made on them"),
            "frozen_lrs": Setting([1e-4, 3e-4, 1e-3], None, "the BN-frozen sweep's LRs (None: every LR of lrs)"),
            "n_a_pool": Setting(1000, 5000, "task-A training images drawn (validation, probe, Fisher, replay)"),
            "a_val_share": Setting(0.2, 0.2, "share of the task-A pool kept as validation"),
            "n_a_probe": Setting(300, 2000, "task-A images the refitted probe is trained on"),
            "epochs_lr": Setting(3e-4, 3e-4, "the LR of the one longer run read after each epoch"),
            "fisher_samples": Setting(100, 1000, "task-A images EWC's Fisher is estimated on"),
            "ewc_tiny_lambda": Setting(1e-2, 1e-2, "EWC's too-small lambda (the silent failure)"),
            "freeze_depths": Setting(["block2", "block3"], ["block1", "block2", "block3"],
                                     "first trainable depths tried, weak to strong"),
            "early_stop_lr_factors": Setting([1.0, 1 / 3], [1.0, 1 / 3, 1 / 10], "early stopping's LR factors"),
            "replay_per_batch": Setting([4, 8], [4, 8, 16], "stored task-A images per batch tried"),
            "lpft_probe_lrs": Setting([1e-3, 1e-2, 1e-1], [1e-3, 1e-2, 1e-1], "LP-FT's probe LRs tried"),
            "gu_decays": Setting([1.0, 0.3], [1.0, 0.3, 0.1], "gradual unfreezing's LR decay per depth"),
            "dlr_decays": Setting([0.5, 0.2], [0.5, 0.2, 0.05], "discriminative LRs' decay per depth"),
            "b_tolerance": Setting(0.03, 0.03, "how far below plain fine-tuning's task-B validation a setting may go"),
            "lite_res": Setting(64, 224, "Lite0 part: input pixels"),
            "lite_train": Setting(256, 5000, "Lite0 part: Fashion-MNIST training images"),
            "lite_test": Setting(200, 2000, "Lite0 part: Fashion-MNIST test images"),
            "lite_epochs": Setting(2, 3, "Lite0 part: fine-tuning epochs"),
            "probe_per_class": Setting(20, 100, "Lite0 part: digits per class the probes train on"),
            "probe_test": Setting(None, None, "Lite0 part: digits test images (None: all; features are cheap)")},
        "04_nlp_finetuning": {
            "model_name": Param("str", choices=_text_models()).per_tier("minilm", "distilbert-base-uncased"),
            "dataset": Param("str", choices=("20newsgroups", "election_tweets", "imdb"),
                             path_ok=True).per_tier("20newsgroups", "imdb"),
            "categories": Param("list", items=Param("str"), min_len=2),
            "probe_categories": Param("list", items=Param("str"), min_len=2),
            "text_column": Param("str"), "label_column": Param("str"), "n_per_class": COUNT.per_tier(64, 2000),
            "few_shot_sizes": SIZES.per_tier([16, 64, 256], [16, 64, 256, 2000]),
            "test_size": COUNT.per_tier(None, None), "finetune_test_size": COUNT.per_tier(1000, 5000),
            "max_length": Param("int", low=8, high=4096).per_tier(48, 256), "num_epochs": COUNT.per_tier(3, 3),
            "batch_size": COUNT.per_tier(8, 32), "threads": COUNT.per_tier(2, None),
            "finetune_sizes": Setting([16, 64], [16, 64, 256, 2000], "few-shot sizes that are also fine-tuned"),
            "n_val_per_class": Setting(50, 250, "validation texts per class, held out of the training pool (they "
                                                       "choose the learning rate)"),
            "probe_per_class": Setting(40, 100, "texts per class of the held-out topics (forgetting)"),
            "few_shot_max_epochs": Setting(None, 40, "most epochs of a few-shot fine-tune (None: no cap)"),
            "mean_head": Setting(False, True, "whether the mean-pooling head row runs (one fine-tune more than the "
                                              "quick tier's time allows)"),
            "llrd": Setting(False, True, "whether the layer-wise LR decay row runs (one fine-tune more than the quick "
                                         "tier's time allows; five quick seeds cannot settle its claim)")},
        "05_pitfalls": {
            "backbone_name": backbone, "n_per_class": COUNT.per_tier(15, 100),
            "test_size": Param("int", low=10).per_tier(1000, 5000), "resolution": PIXELS.per_tier(64, 224),
            "finetune_per_class": COUNT.per_tier(10, 100), "finetune_steps": COUNT.per_tier(100, 300),
            "transfer_sizes": Param("list", items=Param("int", low=1), min_len=2).per_tier((5, 50), (5, 20, 100, 500)),
            "threads": COUNT.per_tier(2, None),
            "finetune_batch": Setting(5, 16, "images per step of the section 1 fine-tunes"),
            "finetune_lrs": Setting((3e-4, 1e-3, 3e-3), (1e-4, 3e-4, 1e-3, 3e-3),
                                    "learning rates each preprocessing chooses from on validation"),
            "finetune_val_per_class": Setting(10, 50, "validation images per class of the fine-tunes, held out of "
                                                      "the training split"),
            "transfer_test_size": Setting(2000, None, "target test images of sections 3 and 4 (None: all 5,000)"),
            "transfer_draws": Setting(10, 10, "draws of the few-shot training images for the frozen probes"),
            "transfer_pool_per_class": Setting(200, 1000, "images per class those draws come from (features "
                                                          "extracted once)"),
            "transfer_steps": Setting(200, 300, "optimizer steps per start (negative transfer, fine-tuned)"),
            "transfer_batch": Setting(5, 5, "images per step there"),
            "transfer_lrs": Setting((1e-3, 3e-3, 1e-2), (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
                                    "learning rates each start chooses from on validation"),
            "transfer_val_per_class": Setting(20, 50, "validation images per class, held out of training"),
            "duplicate_scan": Setting(2000, None, "test images searched for training near-copies (None: all)"),
            "bn_test_size": Setting(200, 2000, "test images of the BatchNorm section")},
    }


_CACHE: dict[str, dict[str, Param | Setting]] = {}


def declaration(notebook: str) -> dict[str, Param | Setting]:
    """A notebook's parameters (the common ones first) and tier settings; empty for a notebook without one."""
    if not _CACHE:
        _CACHE.update(_declarations())
    own = _CACHE.get(notebook)
    return {**COMMON, **own} if own is not None else {}


def spec(notebook: str) -> dict[str, Param]:
    """The declared parameters of a notebook id (empty for notebooks without a declaration, e.g. a test's)."""
    return {name: p for name, p in declaration(notebook).items() if isinstance(p, Param)}


def tier_values(notebook: str, tier: str) -> dict[str, Any]:
    """What `tier` gives: every tier-dependent parameter's value and every tier setting (fresh copies)."""
    index = TIER_NAMES.index(tier)
    return {name: copy.deepcopy(entry.tiers[index]) for name, entry in declaration(notebook).items()
            if entry.tiers is not None}


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


def unknown_parameter(notebook: str, name: str, known: Any = None) -> str:
    """The sentence for a name that is not a parameter; `known`: the names (default: the declared parameters)."""
    names = ", ".join(sorted(spec(notebook) if known is None else known)) or "none"
    return f"{notebook}: unknown parameter {name!r}; the notebook's parameters are: {names}."


def check(notebook: str, **values: Any) -> None:
    """Raise ParameterError naming every bad value (the notebook's first cells call this)."""
    found = problems(notebook, values)
    if found:
        raise ParameterError(" ".join(found))


def tier_settings(notebook: str, tier: str, **values: Any) -> dict[str, Any]:
    """Check the parameters cell's values, fill each None with the tier's value and add the tier's settings.

    The notebook's tier cell calls this; a bad value or an unknown name stops it with one sentence each. To port a
    notebook: give its tier-dependent parameters `.per_tier(quick, full)` and its other tier values `Setting`s in
    `_declarations`, set them to None in its parameters cell, and read them back from the returned dict.
    """
    declared = spec(notebook)
    if not declared:
        raise ParameterError(f"{notebook}: labkit.params declares no parameters for this notebook; add them to "
                             "labkit/params.py.")
    found = [unknown_parameter(notebook, name) for name in values if name not in declared]
    found += problems(notebook, {"tier": tier, **values})
    if found:
        raise ParameterError(" ".join(found))
    out = {"tier": tier, **values}
    for name, value in tier_values(notebook, tier).items():
        if out.get(name) is None:
            out[name] = value
    return out


def show_tiers(notebook: str) -> None:
    """Print the quick and full value of every tier-dependent parameter and tier setting of a notebook."""
    rows = [[name, repr(entry.tiers[0]), repr(entry.tiers[1]),
             "parameter" if isinstance(entry, Param) else f"the tier: {entry.help}"]
            for name, entry in declaration(notebook).items() if entry.tiers is not None]
    print(f"{notebook}: what each tier uses (a parameter set to None above takes its tier's value)")
    print(text_table(["name", *TIER_NAMES, "set by"], rows) if rows else "(no tier values are declared for it yet)")


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
