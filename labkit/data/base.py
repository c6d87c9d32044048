"""Data sets in memory: images as uint8 arrays, texts as lists of strings, with labels and class names.

`ImageDataset` and `TextDataset` share the stratified, seeded subsets (`few_shot`, `sample`, `split`,
`select_classes`); `fixed_split` is the one split rule of sets without their own test files (70/30 per class,
seed 0). `DataUnavailableError` says how to get a set that is not on this machine.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np


class DataUnavailableError(FileNotFoundError):
    """A data set is not on this machine; the message says how to get it."""



def _stratified_indices(labels: np.ndarray, n_per_class: int | None, fraction: float | None, seed: int
                        ) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = n_per_class if n_per_class is not None else int(round(len(idx) * fraction))
        if n_per_class is not None and k > len(idx):
            raise ValueError(f"Asked for {k} examples of class {c} but only {len(idx)} exist.")
        picked.append(idx[:k])
    out = np.concatenate(picked)
    rng.shuffle(out)
    return out


class _Subsettable:
    labels: np.ndarray
    classes: list[str]

    def subset(self, indices):
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.labels)

    def few_shot(self, n_per_class: int, seed: int = 0):
        """n examples of every class, stratified and seeded."""
        return self.subset(_stratified_indices(self.labels, int(n_per_class), None, seed))

    def few_shot_indices(self, n_per_class: int, seed: int = 0) -> np.ndarray:
        """The row numbers `few_shot(n_per_class, seed)` takes: to slice features cached for this whole set."""
        return _stratified_indices(self.labels, int(n_per_class), None, seed)

    def sample(self, n: int, seed: int = 0):
        """About n examples in total, stratified by class and seeded."""
        if n >= len(self):
            return self
        return self.subset(_stratified_indices(self.labels, None, n / len(self), seed))

    def split(self, fraction: float = 0.2, seed: int = 0):
        """(rest, held_out): a stratified, seeded split holding out `fraction` of each class."""
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must be between 0 and 1, got {fraction}.")
        held = _stratified_indices(self.labels, None, fraction, seed)
        mask = np.ones(len(self), dtype=bool)
        mask[held] = False
        return self.subset(np.flatnonzero(mask)), self.subset(held)

    def select_classes(self, classes: Sequence[int], relabel: bool = True):
        """Only the given class indices; relabel=True renumbers them 0..k-1 in the given order."""
        classes = [int(c) for c in classes]
        bad = [c for c in classes if not 0 <= c < len(self.classes)]
        if bad:
            raise ValueError(f"Class indices {bad} do not exist; this data set has {len(self.classes)} classes.")
        out = self.subset(np.flatnonzero(np.isin(self.labels, classes)))
        if relabel:
            mapping = {c: i for i, c in enumerate(classes)}
            out.labels = np.array([mapping[int(c)] for c in out.labels], dtype=np.int64)
            out.classes = [self.classes[c] for c in classes]
        return out

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, counts)}


@dataclass
class ImageDataset(_Subsettable):
    """Images as uint8 arrays, (N, H, W) grayscale or (N, H, W, 3) colour, with integer labels and class names."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    name: str = "images"
    source_px: int | None = None  # the short side of the files the images came from (a folder), before resizing

    def __post_init__(self):
        self.images = np.asarray(self.images)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.images.dtype != np.uint8:
            raise TypeError(f"{self.name}: images must be uint8 (0-255), got {self.images.dtype}.")
        if self.images.ndim not in (3, 4) or (self.images.ndim == 4 and self.images.shape[-1] not in (1, 3)):
            raise ValueError(f"{self.name}: images must be (N, H, W) or (N, H, W, 3); got {self.images.shape}.")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels.")

    def subset(self, indices) -> "ImageDataset":
        indices = np.asarray(indices)
        return ImageDataset(self.images[indices], self.labels[indices].copy(), list(self.classes), self.name,
                            self.source_px)

    @property
    def channels(self) -> int:
        return 1 if self.images.ndim == 3 else self.images.shape[-1]

    def fingerprint(self) -> str:
        """A content hash (images + labels) for feature caches."""
        h = hashlib.sha1()
        h.update(str(self.images.shape).encode())
        h.update(np.ascontiguousarray(self.images).tobytes())
        h.update(self.labels.tobytes())
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        return (f"ImageDataset({self.name!r}, n={len(self)}, image={self.images.shape[1:]}, "
                f"classes={len(self.classes)})")


@dataclass
class TextDataset(_Subsettable):
    """Texts with integer labels and class names."""

    texts: list[str]
    labels: np.ndarray
    classes: list[str]
    name: str = "texts"

    def __post_init__(self):
        self.texts = [str(t) for t in self.texts]
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.texts)} texts but {len(self.labels)} labels.")

    def subset(self, indices) -> "TextDataset":
        indices = np.asarray(indices, dtype=np.int64)
        return TextDataset([self.texts[i] for i in indices], self.labels[indices].copy(), list(self.classes),
                           self.name)

    def __repr__(self) -> str:
        return f"TextDataset({self.name!r}, n={len(self)}, classes={len(self.classes)})"


def class_split(ds, classes_a: Sequence[int], classes_b: Sequence[int]):
    """Two tasks from one data set's classes, e.g. Fashion-MNIST 0-4 (source) vs 5-9 (target), each relabelled."""
    if set(classes_a) & set(classes_b):
        raise ValueError("The two class lists overlap; a source/target split needs disjoint classes.")
    return ds.select_classes(classes_a), ds.select_classes(classes_b)


# --------------------------------------------------------------------------------------------------------------


def fixed_split(ds, split: str, test_fraction: float = 0.3):
    """The fixed split rule of sets without their own test files: 70/30, stratified, seed 0, or "all" rows."""
    if split == "all":
        return ds
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}.")
    train, test = ds.split(test_fraction, seed=0)  # fixed seed: the same split for every run and student
    out = train if split == "train" else test
    out.name = f"{ds.name}-{split}"
    return out
