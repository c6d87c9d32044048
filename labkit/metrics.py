"""Per-item scores: an accuracy that remembers which test items were right, and paired differences.

The low home of what training, feature probes and claims all need (`labkit.claims` judges with these; `train` and
`features` return them). An `Accuracy` is a float that keeps one boolean per test item in a fixed order and a
fingerprint of those items (a hash of their labels in order), so two scores can be compared item by item and a
batch can refuse to pool runs that scored different items.
"""
from __future__ import annotations

import hashlib
import math
from typing import Iterable

import numpy as np

__all__ = ["Z95", "Scores", "Accuracy", "accuracy", "difference", "paired_difference", "unpaired_difference",
           "mean_and_se", "half_width", "item_fingerprint"]

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def item_fingerprint(labels) -> str:
    """A short hash of a test set's labels in order: equal for the same items, different (almost surely) else."""
    arr = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels).reshape(-1)
    arr = arr.astype(np.int64, copy=False) if arr.dtype.kind in "biu" else arr.astype(str)
    digest = hashlib.sha1(f"{arr.size}:".encode() + (arr.tobytes() if arr.dtype.kind == "i"
                                                       else "\x1f".join(arr.tolist()).encode()))
    return digest.hexdigest()[:12]


def _joint_fingerprint(a, b) -> str:
    fa, fb = getattr(a, "fingerprint", ""), getattr(b, "fingerprint", "")
    if fa and fb and fa != fb:
        return hashlib.sha1(f"{fa}-{fb}".encode()).hexdigest()[:12]
    return fa or fb


class Scores(float):
    """Per-item scores (e.g. the item-by-item difference of two accuracies): their mean, keeping the items."""

    correct: np.ndarray

    def __new__(cls, values: Iterable[float], fingerprint: str = ""):
        arr = np.asarray(values, dtype=float).reshape(-1)
        if arr.size == 0:
            raise ValueError("Scores need at least one test item.")
        self = super().__new__(cls, float(arr.mean()))
        self.correct = arr
        self.fingerprint = fingerprint
        return self

    @property
    def n(self) -> int:
        return int(self.correct.size)

    def __reduce__(self):
        return (type(self), (self.correct, self.fingerprint))


def difference(a, b) -> Scores:
    """Item-by-item A - B of two accuracies on the same test items (to compare two gaps with `Ledger.compare`)."""
    x, y = _items(a, "A"), _items(b, "B")
    if x.shape != y.shape:
        raise ValueError(f"difference() needs the same test items: A has {x.size}, B has {y.size}.")
    return Scores(x - y, fingerprint=_joint_fingerprint(a, b))


class Accuracy(Scores):
    """An accuracy (a float) that remembers which test items were right, for paired comparisons.

    It prints, rounds and adds like the float it is; `correct` is the boolean array behind it, one entry per
    test item in a fixed order, so two Accuracy values on the same test set can be compared item by item.
    """

    def __new__(cls, correct: Iterable[bool], labels=None):
        arr = np.asarray(correct, dtype=bool).reshape(-1)
        if arr.size == 0:
            raise ValueError("An accuracy needs at least one test item.")
        self = float.__new__(cls, float(arr.mean()))
        self.correct = arr
        self.fingerprint = item_fingerprint(labels) if labels is not None else ""
        return self

    def __reduce__(self):
        return (_rebuild_accuracy, (self.correct, self.fingerprint))


def _rebuild_accuracy(correct, fingerprint):
    acc = Accuracy(correct)
    acc.fingerprint = fingerprint
    return acc


def accuracy(predictions, targets) -> Accuracy:
    """Accuracy of class predictions (or logits/probabilities, argmax is taken) against targets, item by item."""
    pred = np.asarray(predictions.detach().cpu() if hasattr(predictions, "detach") else predictions)
    true = np.asarray(targets.detach().cpu() if hasattr(targets, "detach") else targets).reshape(-1)
    if pred.ndim == 2:
        pred = pred.argmax(axis=1)
    pred = pred.reshape(-1)
    if pred.shape != true.shape:
        raise ValueError(f"predictions ({pred.shape[0]}) and targets ({true.shape[0]}) must cover the same items.")
    return Accuracy(pred == true, labels=true)


def _items(value, name: str) -> np.ndarray:
    correct = getattr(value, "correct", value)
    arr = np.asarray(correct, dtype=float).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name} has no test items.")
    return arr


def paired_difference(a, b) -> tuple[float, float, int]:
    """Effect A - B over shared test items and its standard error: (mean of d_i, sd(d) / sqrt(n), n).

    a, b: `Accuracy` values (or per-item scores, 0/1 or real) on the *same* items in the same order.
    """
    x, y = _items(a, "A"), _items(b, "B")
    if x.shape != y.shape:
        raise ValueError(f"A paired comparison needs the same test items: A has {x.size}, B has {y.size}. "
                         "Score both models on one test set.")
    d = x - y
    n = d.size
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else float("inf")
    return float(d.mean()), se, n


def unpaired_difference(a, b) -> tuple[float, float, int]:
    """Effect A - B as if the two test sets were independent (what you get without per-item pairing)."""
    x, y = _items(a, "A"), _items(b, "B")
    se = math.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size) if min(x.size, y.size) > 1 else float("inf")
    return float(x.mean() - y.mean()), se, int(min(x.size, y.size))


def mean_and_se(a) -> tuple[float, float, int]:
    """Mean of per-item scores (an accuracy) and its standard error."""
    x = _items(a, "A")
    se = float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else float("inf")
    return float(x.mean()), se, int(x.size)


def half_width(a, n: int | None = None) -> float:
    """Half the width of one accuracy's 95 % interval over its test items: the error bar a plot draws.

    a: an Accuracy (or per-item scores), whose items give the standard error; or a plain accuracy with n, the
    number of test items it was measured on (the binomial standard error sqrt(p (1 - p) / n)).
    """
    if hasattr(a, "correct") or (not isinstance(a, (int, float)) and np.ndim(a) > 0):
        return Z95 * mean_and_se(a)[1]
    if n is None:
        raise TypeError("half_width needs an Accuracy (which keeps its test items) or a plain accuracy with n=, the "
                        "number of test items it was measured on.")
    if n < 2:
        raise ValueError(f"half_width needs at least 2 test items, got n={n}.")
    p = float(a)
    if not 0 <= p <= 1:
        raise ValueError(f"half_width with n= takes an accuracy between 0 and 1, got {p}.")
    return Z95 * math.sqrt(p * (1 - p) / (n - 1))  # ddof=1, as mean_and_se: the same bar as from the items
