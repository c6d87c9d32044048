"""The 2x2 decision matrix (dataset size x domain similarity) as an experiment with a source we control.

*Transfer Learning Explained* (section "The 2×2 Decision Matrix") and the CW lesson ("Decision Matrix") each
recommend a strategy per cell. Here the source is labkit's small CNN trained on Fashion-MNIST classes 0-4; both
targets are Fashion-MNIST classes 5-9, once as they are ("similar": the source's kind of images, new classes) and
once with every image's pixels moved by one fixed permutation ("different": the same labels and the same amount of
information, but no shape sits where the source's filters look for it). The two targets share their images, labels,
validation rows and test rows, so the only thing that changes between them is the domain; how similar each is to
the source is measured, not assumed (frozen source features against random-init features of the same network).

Every recipe keeps its best epoch on a fixed validation split, and the choices a cell's claim rests on (which of
the article's picks, which of the other recipes) are made on validation too; the test set is scored once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from labkit.strategies import Strategy, StrategyResult, run_strategy, with_min_steps

__all__ = ["MATRIX_PICKS", "MATRIX_GUIDES", "MatrixTarget", "MatrixResult", "matrix_targets", "matrix_strategies",
           "similarity_probes", "run_matrix", "validation_choice"]

# (size, similarity) -> the recipes the two guides recommend, by the names `matrix_strategies` gives them
MATRIX_PICKS: dict[tuple[str, str], tuple[str, ...]] = {
    ("small", "similar"): ("feature extraction",),
    ("small", "different"): ("fine-tune top half",),
    ("large", "similar"): ("full fine-tune, discriminative LRs",),
    ("large", "different"): ("full fine-tune, one LR", "scratch"),
}
# what each guide says for the cell, in our words (Transfer Learning Explained's quadrants; the CW lesson's matrix)
MATRIX_GUIDES: dict[tuple[str, str], tuple[str, str]] = {
    ("small", "similar"): ("freeze the whole backbone, train a new head", "feature extraction"),
    ("small", "different"): ("freeze the first half, fine-tune the rest carefully", "fine-tune the top layers"),
    ("large", "similar"): ("fine-tune everything, the backbone 10-100x slower than the head", "full fine-tuning"),
    ("large", "different"): ("fine-tune aggressively, or train from scratch", "fine-tune or train from scratch"),
}


@dataclass
class MatrixTarget:
    """One target task: a pool to draw training images from, and validation and test sets fixed for every seed."""

    name: str
    pool: object
    val: object
    test: object


def matrix_targets(val_per_class: int, test_size: int | None, permutation_seed: int = 1) -> dict[str, MatrixTarget]:
    """{"similar": ..., "different": ...}: Fashion-MNIST classes 5-9 as they are and with permuted pixels.

    The validation rows (val_per_class of each class, out of the training split) and the test rows (test_size in
    all, stratified; None: the whole test split) are drawn once with seed 0: the same for both targets and for every
    seed, so a claim's seeds score the same items. The permutation differs from the one the kit's scrambled source
    model was trained on (seed 0).
    """
    from labkit import zoo

    if val_per_class < 1:
        raise ValueError(f"val_per_class must be at least 1, got {val_per_class}.")
    out = {}
    for name, permute in (("similar", False), ("different", True)):
        train = zoo.source_task_data("train", zoo.TARGET_CLASSES, permute_pixels=permute, seed=permutation_seed)
        test = zoo.source_task_data("test", zoo.TARGET_CLASSES, permute_pixels=permute, seed=permutation_seed)
        val_rows = train.few_shot_indices(val_per_class, seed=0)
        rest = np.setdiff1d(np.arange(len(train)), val_rows)
        out[name] = MatrixTarget(name, train.subset(rest), train.subset(val_rows),
                                 test.sample(test_size, seed=0) if test_size else test)
    return out


def matrix_strategies(epochs: int, lr: float = 3e-3, head_epochs: int | None = None) -> list[Strategy]:
    """The five recipes every cell runs, named as MATRIX_PICKS names them.

    BatchNorm is in training mode wherever the network trains (the articles' loops); the two-stage recipes train a
    head on cached features first. Discriminative LRs: the small CNN has three depths under its classifier, and each
    learns 10**(-1/3) as fast as the one above, so block1 learns 10x slower than the head.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}.")
    head_epochs = 5 * epochs if head_epochs is None else head_epochs
    net = dict(num_epochs=epochs, lr=lr, scheduler="cosine", train_batchnorm=True)
    return [
        Strategy("feature extraction", head_epochs=head_epochs, head_lr=lr, standardize=True,
                 family="feature extraction"),
        Strategy("fine-tune top half", head_epochs=epochs, head_lr=lr, train_from="block2", family="fine-tune",
                 **net),
        Strategy("full fine-tune, discriminative LRs", head_epochs=epochs, head_lr=lr, decay=0.1 ** (1 / 3),
                 family="fine-tune", **net),
        Strategy("full fine-tune, one LR", family="fine-tune", **net),
        Strategy("scratch", pretrained=False, family="scratch", **net),
    ]


def similarity_probes(make_backbone: Callable, target: MatrixTarget, n_per_class: int, seed: int = 0,
                      device: str | None = "auto") -> dict[str, object]:
    """How much the source's frozen features help this target: {"source": Accuracy, "random init": Accuracy}.

    A logistic-regression probe on the pooled features of the pretrained source and of a randomly initialised
    network of the same shape (seeded), each with its C chosen on the target's validation split, trained on
    n_per_class images per class and scored on the target's test set. The gain of the first over the second is the
    target's measured similarity to the source.
    """
    from labkit import features
    from labkit.repro import local_seed

    train = target.pool.few_shot(n_per_class, seed=seed)
    with local_seed(seed):
        nets = {"source": make_backbone(True), "random init": make_backbone(False)}
    out = {}
    for label, net in nets.items():
        X_tr, y_tr, X_va, y_va, X_te, y_te = (a for ds in (train, target.val, target.test)
                                              for a in features.extract_features(net, ds, device=device, cache=False,
                                                                                 progress=False))
        C = features.choose_C(X_tr, y_tr, X_va, y_va)
        out[label] = features.linear_probe(X_tr, y_tr, X_te, y_te, C=C)
    return out


@dataclass
class MatrixResult:
    """Every run of the matrix: runs[(size, similarity)][recipe name], and each target's similarity probes."""

    sizes: dict[str, int]
    runs: dict[tuple[str, str], dict[str, StrategyResult]] = field(default_factory=dict)
    probes: dict[str, dict[str, object]] = field(default_factory=dict)

    def choice(self, cell: tuple[str, str]) -> tuple[str, str]:
        """(the article's pick, the best other recipe) of a cell, each chosen on validation."""
        return validation_choice(self.runs[cell], MATRIX_PICKS[cell])

    def similarity(self, target: str) -> float:
        """Frozen source features minus random-init features (probe test accuracy) on one target."""
        return float(self.probes[target]["source"]) - float(self.probes[target]["random init"])


def validation_choice(runs: Mapping[str, StrategyResult], picks: Sequence[str]) -> tuple[str, str]:
    """(best of `picks`, best of the rest) by validation accuracy; a tie goes to the earlier recipe."""
    missing = [p for p in picks if p not in runs]
    if missing:
        raise KeyError(f"No run for the pick(s) {missing}; the runs are {list(runs)}.")
    others = [name for name in runs if name not in picks]
    if not others:
        raise ValueError("A cell needs at least one recipe that is not a pick to compare the picks with.")
    if any(runs[name].val_acc is None for name in runs):
        raise ValueError("Every run needs a validation accuracy (run it with val_ds) to be chosen on validation.")

    def best(names):
        return max(names, key=lambda name: (runs[name].val_acc, -list(runs).index(name)))

    return best(list(picks)), best(others)


def run_matrix(make_backbone: Callable, targets: Mapping[str, MatrixTarget], sizes: Mapping[str, int],
               recipes: Sequence[Strategy], *, min_steps: int = 0, batch_size: int = 32, seed: int = 0,
               device: str | None = "auto", probe_per_class: int | None = None) -> MatrixResult:
    """Run every recipe in every (size, similarity) cell, and measure each target's similarity to the source.

    Each cell draws sizes[size] training images per class from its target's pool (seeded: the same rows for both
    targets), and every recipe gets at least `min_steps` optimizer steps per stage. The similarity probes train on
    probe_per_class images per class (None: the small size, where the guides say pretrained features matter most).
    """
    result = MatrixResult(sizes=dict(sizes))
    for similarity, target in targets.items():
        n_probe = probe_per_class or min(sizes.values())
        result.probes[similarity] = similarity_probes(make_backbone, target, n_probe, seed, device)
        for size_label, n in sizes.items():
            train = target.pool.few_shot(n, seed=seed)
            cell = (size_label, similarity)

            def run(s: Strategy) -> StrategyResult:
                return run_strategy(with_min_steps(s, len(train), batch_size, min_steps), make_backbone, train,
                                    target.test, val_ds=target.val, batch_size=batch_size, device=device, seed=seed)

            result.runs[cell] = {s.name: run(s) for s in recipes}
    return result
