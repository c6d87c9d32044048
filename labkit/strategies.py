"""Freeze strategies as small declarative recipes, all trained by labkit's one fit loop.

A `Strategy` says *what* trains and *how fast*: which depths are trainable, the learning rate of the head and the
decay of the LR per depth below it, the schedule, whether a head is first trained on cached features, and whether
depths are unfrozen gradually. `run_strategy` turns a recipe into a model, trains it with `labkit.train.fit` and
returns a `StrategyResult`: test accuracy, wall seconds, trainable parameters, peak training memory and the loss
curves. Nothing here is a second training loop: gradual unfreezing is `labkit.train.GradualUnfreezing`, the head
on cached features is `labkit.features.train_head`, discriminative LRs are
`labkit.freeze.discriminative_param_groups`.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from labkit import features
from labkit.assets import load_backbone
from labkit.data import make_loader
from labkit.freeze import discriminative_param_groups, freeze_to
from labkit.memory import bytes_to_mb, measure_training_memory
from labkit.repro import local_seed
from labkit.train import (
    EarlyStopping,
    GradualUnfreezing,
    KeepBest,
    LRSchedule,
    MeasureMemory,
    Precision,
    ProgressBar,
    ValidateEvery,
    diverged,
    evaluate,
    fit,
)

__all__ = ["Strategy", "StrategyResult", "run_strategy", "choose_lr", "backbone_factory", "standard_strategies",
           "training_memory", "memory_sweep", "with_min_steps", "label_curve", "crossover", "winner", "accuracy_noise",
           "ARTICLE_LR", "lr_text", "article_strategies"]


@dataclass(frozen=True)
class Strategy:
    """One way to train a pretrained backbone on a new task; see `standard_strategies` for the course's set."""

    name: str
    pretrained: bool = True  # False: the same architecture with random weights (the scratch baseline)
    head_epochs: int = 0  # >0: first train a head on cached pooled features (feature extraction; stage 1)
    head_lr: float = 1e-3
    head_through_network: bool = False  # True: stage 1 trains the classifier through the frozen network on the
    #   training loader (with this recipe's augmentation; BatchNorm statistics update if train_batchnorm), as the
    #   article's loop does, instead of on cached features
    feature_depth: str | None = None  # depth whose pooled features the cached head reads (None: the last)
    num_epochs: int = 0  # epochs of training through the network (after the head stage, if any)
    train_from: int | str = 0  # first trainable depth: 0 = everything, -1 = only the classifier, or a name
    lr: float = 1e-3  # the classifier's LR; lower depths get lr * decay**k when decay is set
    decay: float | None = None  # discriminative LRs: each depth learns `decay` x as fast as the one above it
    scheduler: str | None = None  # None, "cosine" or "linear" (per step, over the whole stage)
    gradual_every: int = 0  # >0: ULMFiT gradual unfreezing, one more depth every this many epochs
    weight_decay: float = 0.0
    train_batchnorm: bool = True  # False: BatchNorm layers keep their pretrained statistics and affine weights
    standardize: bool = False  # the cached-feature head standardises its inputs (only for heads that stay heads)
    augment: bool | str = False  # training-image augmentation through the network: "article" (flips, rotation,
    #   colour jitter), True / "flip" (flips only); the cached-feature head sees no augmentation
    patience: int | None = None  # with validation data: stop after this many epochs without a better val loss
    #   (None: never stop early); either way the epoch with the best val loss is the one kept, never chosen on test
    family: str = ""  # "scratch", "feature extraction" or "fine-tune" (for the decision matrix)

    def __post_init__(self):
        if self.head_epochs < 0 or self.num_epochs < 0:
            raise ValueError(f"{self.name}: head_epochs and num_epochs cannot be negative.")
        if self.head_epochs == 0 and self.num_epochs == 0:
            raise ValueError(f"{self.name}: nothing to train. Give head_epochs (a head on cached features), "
                             "num_epochs (training through the network), or both (two-stage).")
        if self.feature_depth is not None and self.num_epochs:
            raise ValueError(f"{self.name}: a head on features from {self.feature_depth!r} cannot continue into "
                             "fine-tuning (the network's classifier reads the last depth). Use feature_depth=None "
                             "for two-stage training.")
        if not self.pretrained and self.head_epochs:
            raise ValueError(f"{self.name}: cached features of a random network are not a strategy anyone uses; "
                             "set head_epochs=0 for the scratch baseline.")
        if self.decay is not None and not 0 < self.decay <= 1:
            raise ValueError(f"{self.name}: decay must be in (0, 1] (e.g. 0.5 halves the LR per depth), "
                             f"got {self.decay}.")
        if self.standardize and self.num_epochs:
            raise ValueError(f"{self.name}: a standardising head cannot be folded into the network for stage 2; "
                             "use standardize=False for two-stage training.")
        if self.gradual_every < 0:
            raise ValueError(f"{self.name}: gradual_every must be 0 (off) or a positive number of epochs.")
        if self.gradual_every and not self.num_epochs:
            raise ValueError(f"{self.name}: gradual unfreezing needs num_epochs > 0.")
        for lr in (self.lr, self.head_lr):
            if not lr > 0:
                raise ValueError(f"{self.name}: learning rates must be positive, got {lr}.")
        if self.augment not in (False, True, "flip", "article"):
            raise ValueError(f"{self.name}: augment must be False, True, 'flip' or 'article', got {self.augment!r}.")
        if self.head_through_network and not self.head_epochs:
            raise ValueError(f"{self.name}: head_through_network needs head_epochs > 0 (the stage it changes).")
        if self.head_through_network and (self.feature_depth is not None or self.standardize):
            raise ValueError(f"{self.name}: a head trained through the network reads the network's classifier; "
                             "feature_depth and standardize apply only to a head on cached features.")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"{self.name}: patience must be None (never stop early) or at least 1 epoch.")

    @property
    def budget(self) -> str:
        """The declared training budget in epochs, e.g. "30 head epochs + 3 network epochs"."""
        where = "through the network" if self.head_through_network else "cached features"
        parts = [f"{self.head_epochs} head epochs ({where})"] if self.head_epochs else []
        if self.num_epochs:
            parts.append(f"{'up to ' if self.patience else ''}{self.num_epochs} network epochs")
        return " + ".join(parts)

    def with_(self, **changes) -> "Strategy":
        """A copy with some fields changed, e.g. strategy.with_(num_epochs=5)."""
        return replace(self, **changes)


@dataclass
class StrategyResult:
    """What one strategy achieved on the test set and what it cost."""

    name: str
    test_acc: float | None  # None when run without a test set (choose_lr(..., test_ds=None))
    seconds: float  # wall time of the whole run: feature extraction (unless cached) + every training stage
    trainable_params: int
    peak_mem_mb: float  # peak training memory (CUDA: allocator peak; CPU: measure_training_memory)
    train_loss: list[float]  # per epoch, the head stage first
    val_loss: list[float | None]  # per epoch (None: not validated), when validation data were given (else empty)
    stages: list[str]  # "head" / "network" for each epoch, to draw where stage 2 starts
    histories: list = field(default_factory=list, repr=False)
    model: nn.Module | None = field(default=None, repr=False)
    head_steps: int = 0  # optimizer steps of the head on cached features (each far cheaper than a network step)
    network_steps: int = 0  # optimizer steps through the network
    kept_epoch: dict = field(default_factory=dict)  # stage -> the epoch kept (1-based), chosen on validation
    val_acc: float | None = None  # accuracy of the kept model on the validation set (what choices are made on)
    val_loss_kept: float | None = None
    final_train_loss: float | None = None  # training loss of the last network epoch (or head epoch)
    diverged: bool = False  # the final training loss is above ln(classes): worse than guessing uniformly

    @property
    def steps(self) -> str:
        """The budget as run, e.g. "480 head + 48 network steps"."""
        parts = ([f"{self.head_steps} head"] if self.head_steps else []) + \
                ([f"{self.network_steps} network"] if self.network_steps else [])
        return " + ".join(parts) + " steps"


def backbone_factory(source: str | Callable[[bool], nn.Module] = "efficientnet_lite0"
                     ) -> Callable[[bool], nn.Module]:
    """A function pretrained -> fresh Backbone copy; each set of weights is loaded once and then deep-copied.

    source: a registry name (labkit.load_backbone) or a callable(pretrained) -> Backbone, e.g. for labkit's
    own source model: lambda pretrained: zoo.fashion_source_model() if pretrained else zoo.small_cnn(5).
    """
    if isinstance(source, str):
        name = source

        def build(pretrained: bool):
            return load_backbone(name, pretrained=pretrained)
    elif callable(source):
        build = source
    else:
        raise TypeError(f"source must be a backbone name or a callable(pretrained) -> Backbone, got {source!r}.")
    prototypes: dict[bool, nn.Module] = {}

    def make(pretrained: bool = True) -> nn.Module:
        if pretrained not in prototypes:
            prototypes[pretrained] = build(pretrained)
        return copy.deepcopy(prototypes[pretrained])

    make.source = source
    return make


def _fold_head(head: nn.Module, classifier: nn.Linear) -> None:
    """Copy a feature head (Standardize -> Linear, from features.train_head) into the network's linear classifier.

    (x - mean) / std @ W.T + b  ==  x @ (W / std).T + (b - (W / std) @ mean)
    """
    standardize, linear = (head[0], head[1]) if isinstance(head, nn.Sequential) else (None, head)
    if not isinstance(linear, nn.Linear):
        raise TypeError("Only a linear head can be folded into the network's classifier (use kind='linear').")
    with torch.no_grad():
        weight, bias = linear.weight.detach().clone(), linear.bias.detach().clone()
        if standardize is not None:
            weight = weight / standardize.std
            bias = bias - weight @ standardize.mean
        classifier.weight.copy_(weight)
        classifier.bias.copy_(bias)


VAL_EVERY_STEPS = 16  # validate after about 500 training images (16 batches of 32)


def run_strategy(strategy: Strategy, make_backbone: Callable[[bool], nn.Module], train_ds, test_ds, *,
                 size: int | None = None, batch_size: int = 32, val_ds=None, device: str | None = "auto",
                 seed: int = 0, keep_model: bool = False, val_every_steps: int = VAL_EVERY_STEPS) -> StrategyResult:
    """Train `strategy` on train_ds and score it on test_ds (None: no test score; test_acc is None).

    make_backbone: from `backbone_factory` (pretrained -> fresh Backbone).
    size: input resolution (None: the backbone's own); quick mode uses a low one.
    val_ds: held-out training images. With them, every stage keeps the epoch with the best validation loss (the
        checkpoint is chosen on validation, never on test), records the validation curve, and the result carries
        the validation accuracy that choices between strategies are made on.
    val_every_steps: validate about this often in optimizer steps (at least once an epoch when an epoch is that
        long, and always after the last epoch): 5 images per class is 2 steps an epoch, and validating 200 images
        after each would cost more than the training.
    """
    if not isinstance(strategy, Strategy):
        raise TypeError(f"run_strategy needs a labkit.strategies.Strategy, got {type(strategy).__name__}.")
    num_classes = len(train_ds.classes)
    for label, ds in (("test_ds", test_ds), ("val_ds", val_ds)):
        if ds is not None and set(np.unique(ds.labels)) - set(range(num_classes)):
            raise ValueError(f"{label} has labels the {num_classes} training classes do not cover: train, validation "
                             "and test must use the same classes (select_classes on each).")
    start = time.perf_counter()
    model = make_backbone(strategy.pretrained)
    run = _StrategyRun(strategy, val_ds is not None)
    with local_seed(seed):  # the same new head for every strategy; the caller's own random state is left alone
        model.reset_head(num_classes)
        head, test_acc, val = run.train_and_score(model, train_ds, test_ds, val_ds, size, batch_size, device, seed,
                                                  val_every_steps)
    seconds = time.perf_counter() - start
    histories = run.histories
    peaks = [h.peak_mem_mb for h in histories if not math.isnan(h.peak_mem_mb)]
    final = histories[-1]["train_loss"][-1] if histories[-1].epochs else None
    return StrategyResult(
        name=strategy.name, test_acc=test_acc, seconds=seconds,
        trainable_params=max(h.trainable_params for h in histories), peak_mem_mb=max(peaks, default=float("nan")),
        train_loss=run.train_loss, val_loss=run.val_loss, stages=run.stages, histories=histories,
        model=(model if strategy.num_epochs or strategy.head_through_network else head) if keep_model else None,
        head_steps=run.steps["head"], network_steps=run.steps["network"], kept_epoch=run.kept,
        val_acc=None if val is None else val["acc"], val_loss_kept=None if val is None else val["loss"],
        final_train_loss=final, diverged=final is not None and diverged(final, num_classes))


class _StrategyRun:
    """The stages of one `run_strategy` call (a head on cached features, then training through the network) and
    the curves they leave."""

    def __init__(self, strategy: Strategy, validated: bool):
        self.strategy, self.validated = strategy, validated
        self.histories, self.train_loss, self.val_loss, self.stages = [], [], [], []
        self.steps = {"head": 0, "network": 0}
        self.kept = {}

    def keep(self, history, stage: str, steps_per_epoch: int) -> None:
        self.histories.append(history)
        self.train_loss.extend(history["train_loss"])
        if self.validated:  # one entry per epoch, None where the epoch was not validated (val_every_steps)
            self.val_loss.extend(history["val_loss"])
        self.stages.extend([stage] * len(history.epochs))
        self.steps[stage] += steps_per_epoch * len(history.epochs)
        if self.validated:
            best = history.best_epoch
            self.kept[stage] = (best if best is not None else len(history.epochs) - 1) + 1

    def checkpoint_on_val(self) -> list:
        """Keeps the best validation loss; stops early only if the recipe says so."""
        if not self.validated:
            return []
        return [EarlyStopping(patience=self.strategy.patience) if self.strategy.patience else KeepBest()]

    def train_and_score(self, model, train_ds, test_ds, val_ds, size, batch_size, device, seed, val_every_steps):
        """Train every stage of the strategy; returns (the head or None, test accuracy, validation scores or None)."""
        strategy = self.strategy
        size = int(size or model.preprocessing.size)
        head = X_val = y_val = None
        if strategy.head_through_network:
            # the article's stage 1: only the classifier learns, but every batch runs the (augmented) images through
            # the network in training mode, so BatchNorm statistics move unless they are frozen
            freeze_to(model, -1, train_batchnorm=False)
            loader = make_loader(train_ds, model, batch_size=batch_size, shuffle=True, seed=seed, size=size,
                                 augment=strategy.augment)
            val_loader = make_loader(val_ds, model, batch_size=128, size=size) if val_ds is not None else None
            history = fit(model, loader, val_loader, num_epochs=strategy.head_epochs, lr=strategy.head_lr,
                          callbacks=self.checkpoint_on_val() + [
                              Precision(), MeasureMemory(), ProgressBar(enabled=False),
                              ValidateEvery(max(1, val_every_steps // len(loader)))],
                          bn_policy="train" if strategy.train_batchnorm else "freeze", device=device)
            self.keep(history, "head", len(loader))
        elif strategy.head_epochs:
            # feature extraction: one frozen forward pass per image (cached), then a head trained without the backbone
            X_train, y_train = features.extract_features(model, train_ds, depth=strategy.feature_depth, size=size,
                                                         device=device, progress=False)
            if val_ds is not None:
                X_val, y_val = features.extract_features(model, val_ds, depth=strategy.feature_depth, size=size,
                                                         device=device, progress=False)
            head, history = features.train_head(X_train, y_train, X_val, y_val, num_epochs=strategy.head_epochs,
                                                lr=strategy.head_lr, batch_size=batch_size, seed=seed, device=device,
                                                standardize=strategy.standardize, callbacks=self.checkpoint_on_val())
            self.keep(history, "head", math.ceil(len(train_ds) / batch_size))

        if not strategy.num_epochs and strategy.head_through_network:
            test_acc = (evaluate(model, make_loader(test_ds, model, batch_size=128, size=size))["acc"]
                        if test_ds is not None else None)
            val = evaluate(model, val_loader) if val_loader is not None else None
            return None, test_acc, val
        if not strategy.num_epochs:
            test_acc = None
            if test_ds is not None:
                X_test, y_test = features.extract_features(model, test_ds, depth=strategy.feature_depth, size=size,
                                                           device=device, progress=False)
                test_acc = evaluate(head, features.FeatureLoader(X_test, y_test, batch_size=1024))["acc"]
            val = evaluate(head, features.FeatureLoader(X_val, y_val, batch_size=1024)) if X_val is not None else None
            return head, test_acc, val
        if head is not None:
            _fold_head(head, model.classifier)  # stage 2 starts from the trained head, not a random one
        callbacks, param_groups = self.checkpoint_on_val(), None
        if strategy.gradual_every:
            callbacks.append(GradualUnfreezing(every=strategy.gradual_every, decay=strategy.decay or 1.0,
                                               stop_at=strategy.train_from, train_batchnorm=strategy.train_batchnorm))
        else:
            freeze_to(model, strategy.train_from, train_batchnorm=strategy.train_batchnorm)
            if strategy.decay is not None:
                def param_groups(m, lr=strategy.lr, decay=strategy.decay, wd=strategy.weight_decay):
                    return discriminative_param_groups(m, lr, decay=decay, weight_decay=wd)
        train_loader = make_loader(train_ds, model, batch_size=batch_size, shuffle=True, seed=seed, size=size,
                                   augment=strategy.augment)
        val_loader = make_loader(val_ds, model, batch_size=128, size=size) if val_ds is not None else None
        # Precision(): bf16 autocast on CUDA; the NHWC layout is the Backbone's own (Backbone.use_memory_format)
        callbacks += [LRSchedule(strategy.scheduler), Precision(), MeasureMemory(),
                      ValidateEvery(max(1, val_every_steps // len(train_loader))), ProgressBar(enabled=False)]
        history = fit(model, train_loader, val_loader, num_epochs=strategy.num_epochs, lr=strategy.lr,
                      weight_decay=strategy.weight_decay, param_groups=param_groups, callbacks=callbacks, device=device)
        self.keep(history, "network", len(train_loader))
        test_acc = (evaluate(model, make_loader(test_ds, model, batch_size=128, size=size))["acc"]
                    if test_ds is not None else None)
        val = evaluate(model, val_loader) if val_loader is not None else None
        return head, test_acc, val


def choose_lr(strategy: Strategy, lrs: Sequence[float], make_backbone, train_ds, val_ds, test_ds, **kwargs
              ) -> tuple[float, dict[float, StrategyResult]]:
    """Run `strategy` at each LR and pick the one with the best validation accuracy (then the lower validation
    loss); the test set is scored for the record but never looked at. Returns (chosen lr, {lr: result}).

    test_ds=None scores no run on test (test_acc is None): with keep_model=True, score only the chosen run's model,
    which saves a test pass per learning rate that is not chosen.
    """
    if val_ds is None:
        raise ValueError("choose_lr needs val_ds: an LR chosen on the test set would make the test score optimistic.")
    if not lrs:
        raise ValueError("choose_lr needs at least one learning rate.")
    runs = {float(lr): run_strategy(strategy.with_(lr=float(lr), name=f"{strategy.name} (lr {lr:g})"), make_backbone,
                                    train_ds, test_ds, val_ds=val_ds, **kwargs) for lr in lrs}
    best = max(runs, key=lambda lr: (runs[lr].val_acc, -runs[lr].val_loss_kept))
    return best, runs


ARTICLE_LR = 1e-4  # the article's full fine-tuning from the start: all layers at about 1e-4


def lr_text(lr: float) -> str:
    """A learning rate as people write it: 1e-4, 3e-3, 0.5."""
    if lr >= 0.1:
        return f"{lr:g}"
    mantissa, exponent = f"{lr:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


def standard_strategies(num_epochs: int = 3, head_epochs: int = 30, lr: float = 1e-3,
                        full_lrs: Sequence[float] = (ARTICLE_LR, 1e-3, 1e-2), scratch_lr: float = 3e-3,
                        top_depths: int = 4, decay: float = 0.5, train_batchnorm: bool = False,
                        augment: str = "article") -> dict[str, Strategy]:
    """The notebook's recipes, keyed by name (the order is the order of the table).

    Every recipe that trains through the network gets the same budget, `num_epochs` epochs (the same optimizer
    steps); the head on cached features gets `head_epochs` (its steps cost almost nothing: no backbone runs).
    full_lrs: full fine-tuning from the start at each of these LRs; the first is the article's setting.
    top_depths: partial fine-tuning trains this many depths from the output down (classifier included).
    train_batchnorm: whether fine-tuned pretrained depths update BatchNorm (False keeps the pretrained statistics);
        "two-stage, BN trained" is the same recipe with it flipped, and scratch always trains its BatchNorm.
    augment: the augmentation of "two-stage + augmentation" (see labkit.data.make_loader).
    """
    bn = dict(train_batchnorm=train_batchnorm)
    if top_depths < 2:
        raise ValueError("top_depths counts the classifier too: use at least 2 (the classifier and one more depth).")
    if not full_lrs:
        raise ValueError("full_lrs needs at least one learning rate (the article's is 1e-4).")
    two_stage = Strategy("two-stage", head_epochs=head_epochs, head_lr=lr, num_epochs=num_epochs, train_from=0,
                         lr=lr, decay=decay, scheduler="cosine", family="fine-tune", **bn)
    recipes = [
        Strategy("scratch", pretrained=False, num_epochs=num_epochs, lr=scratch_lr, scheduler="cosine",
                 family="scratch"),
        Strategy("feature extraction", head_epochs=head_epochs, head_lr=lr, family="feature extraction"),
        Strategy(f"partial fine-tune (top {top_depths})", num_epochs=num_epochs, train_from=-top_depths, lr=lr,
                 decay=decay, family="fine-tune", **bn),
        two_stage,
        two_stage.with_(name=f"two-stage, BN {'frozen' if train_batchnorm else 'trained'}",
                        train_batchnorm=not train_batchnorm),
        two_stage.with_(name="two-stage + augmentation", augment=augment),
        *[Strategy(f"full fine-tune, lr {lr_text(full_lr)}", num_epochs=num_epochs, lr=full_lr, family="fine-tune",
                   **bn)
          for full_lr in full_lrs],
        Strategy("gradual unfreezing", num_epochs=num_epochs, lr=lr, decay=decay, gradual_every=1,
                 family="fine-tune", **bn),
    ]
    return {s.name: s for s in recipes}


def article_strategies(num_depths: int, head_epochs: int = 5, stage2_epochs: int = 10,
                       full_epochs: int = 5) -> dict[str, Strategy]:
    """The recipes of *Transfer Learning Explained* (its two-stage code and its strategy table) at the article's own
    settings, beside the course's equal-budget recipes of `standard_strategies`.

    Its loop calls model.train() on every epoch, so BatchNorm statistics update in both stages, and its training
    loader augments (flips, rotation, colour jitter) every batch of both stages: stage 1 trains the head for
    `head_epochs` through the frozen, augmented network (not on cached features), stage 2 unfreezes everything for
    `stage2_epochs` with a cosine schedule and discriminative LRs from 1e-4 at the head down to 1e-5 at the first
    depth (the article's groups run 1e-5, 1e-5, 2e-5, 5e-5, 1e-4 over ResNet-50's blocks). Full fine-tuning from
    the start is the same loop, all layers at 1e-4 for `full_epochs` (the table's "5 epochs"), and is run once more
    with BatchNorm frozen to show what the trained statistics cost.
    num_depths: the backbone's depth count (len(backbone.depth_names)), to spread 1e-4..1e-5 over its depths.
    """
    if num_depths < 2:
        raise ValueError(f"article_strategies needs a backbone with at least 2 depths, got {num_depths}.")
    loop = dict(augment="article", train_batchnorm=True, family="fine-tune")
    two_stage = Strategy(f"article's two-stage ({head_epochs} + {stage2_epochs} epochs)", head_epochs=head_epochs,
                         head_through_network=True, head_lr=1e-3, num_epochs=stage2_epochs, lr=ARTICLE_LR,
                         decay=round(0.1 ** (1 / (num_depths - 1)), 4), scheduler="cosine", **loop)
    full = Strategy(f"article's full fine-tune ({full_epochs} epochs)", num_epochs=full_epochs, lr=ARTICLE_LR,
                    **loop)
    return {s.name: s for s in (two_stage, full, full.with_(name=f"{full.name}, BN frozen", train_batchnorm=False))}


def training_memory(model: nn.Module, batch, train_from: int | str = 0) -> dict:
    """Training-step memory of `model` with depths before `train_from` frozen, on one batch, in MB by part:
    weights, gradients, optimizer_state, activations, workspace and total_mb.

    A view of labkit.train.measure_training_memory (bytes) in MB (train.bytes_to_mb). Works on a copy, so the
    caller's model keeps its trainable flags.
    """
    model = copy.deepcopy(model)
    freeze_to(model, train_from)
    out = measure_training_memory(model, batch)
    return {**{k: bytes_to_mb(v) for k, v in out.items() if k != "total"}, "total_mb": bytes_to_mb(out["total"])}


def memory_sweep(model: nn.Module, batch_sizes: Sequence[int] = (1, 8, 32, 64), sizes: Sequence[int] = (112, 224),
                 device: str = "meta") -> list[dict]:
    """One training step of `model`, everything trainable vs only the head, at each batch size x resolution: a row
    per setting with full_mb, frozen_mb, their ratio, and the ratio of the parameter state alone (weights,
    gradients and optimizer state, which does not grow with the batch).

    device="meta" measures shapes without running anything (see labkit.memory.measure_training_memory), so a
    random-init ResNet-50 at batch 64 and 224 px takes a second on a laptop; the numbers are the tensors a step
    holds, not what a GPU's context and allocator add on top.
    """
    if not batch_sizes or not sizes or min(batch_sizes) < 1 or min(sizes) < 8:
        raise ValueError(f"memory_sweep needs batch sizes >= 1 and sizes >= 8 px, got {batch_sizes} and {sizes}.")
    model = copy.deepcopy(model).to(device)
    state = ("weights", "gradients", "optimizer_state")
    rows = []
    for px in sizes:
        for batch_size in batch_sizes:
            batch = (torch.zeros(batch_size, 3, px, px, device=device),
                     torch.zeros(batch_size, dtype=torch.long, device=device))  # shapes are what is measured
            full, frozen = training_memory(model, batch, 0), training_memory(model, batch, -1)
            rows.append({"batch": batch_size, "px": px, "full_mb": full["total_mb"], "frozen_mb": frozen["total_mb"],
                         "ratio": full["total_mb"] / frozen["total_mb"],
                         "parameter_state_ratio": sum(full[k] for k in state) / sum(frozen[k] for k in state)})
    return rows


def with_min_steps(strategy: Strategy, n_train: int, batch_size: int, min_steps: int) -> Strategy:
    """The strategy with enough epochs in each stage for at least `min_steps` optimizer steps on n_train images."""
    if not min_steps:
        return strategy
    steps = math.ceil(n_train / batch_size)
    changes = {key: max(getattr(strategy, key), math.ceil(min_steps / steps))
               for key in ("num_epochs", "head_epochs") if getattr(strategy, key)}
    return strategy.with_(**changes)


def label_curve(strategies: Sequence[Strategy], make_backbone, train_pool, test_ds, sizes: Sequence[int], *,
                min_steps: int = 0, batch_size: int = 32, seed: int = 0, size_of=None,
                **kwargs) -> dict[str, dict[int, float]]:
    """Test accuracy of each strategy against labelled examples per class: {name: {n_per_class: acc}}.

    min_steps: tiny training sets get enough epochs for at least this many optimizer steps per stage, so that
        "5 per class" is not also "almost no training".
    size_of: a function giving each strategy its input size (e.g. `labkit.resolution.Resolutions.of`); it
        overrides kwargs' size.
    kwargs: passed to run_strategy (size, device, ...).
    """
    if any(n < 1 for n in sizes):  # an empty list is fine: nothing to add to the curve
        raise ValueError(f"sizes must be positive numbers of examples per class, got {list(sizes)}.")
    out: dict[str, dict[int, float]] = {s.name: {} for s in strategies}
    for n in sorted(sizes):
        train_ds = train_pool.few_shot(n, seed=seed)
        for s in strategies:
            run = {**kwargs, "size": size_of(s)} if size_of is not None else kwargs
            result = run_strategy(with_min_steps(s, len(train_ds), batch_size, min_steps), make_backbone, train_ds,
                                  test_ds, batch_size=batch_size, seed=seed, **run)
            out[s.name][n] = result.test_acc
    return out


def accuracy_noise(n_test: int) -> float:
    """Two standard errors of a test accuracy on `n_test` examples, at p = 0.5 where it is largest.

    Differences smaller than this are ties the test set cannot resolve.
    """
    if n_test < 1:
        raise ValueError(f"n_test must be a positive number of test examples, got {n_test}.")
    return 2 * math.sqrt(0.25 / n_test)


def crossover(curve_a: dict[int, float], curve_b: dict[int, float], margin: float = 0.0) -> int | None:
    """The smallest size from which curve_b leads curve_a by at least `margin` at that and every larger size.

    margin=0: curve_b reaches curve_a and stays at or above it. Pass the test set's noise (e.g. two standard
    errors) to count only leads the test set can resolve: a 0.01 lead on 1,000 test images is not a crossover.
    """
    if margin < 0:
        raise ValueError(f"margin must be zero or positive, got {margin}.")
    sizes = sorted(set(curve_a) & set(curve_b))
    if not sizes:
        raise ValueError("The two curves share no sizes to compare.")
    for i, n in enumerate(sizes):
        if all(curve_b[m] - curve_a[m] >= margin for m in sizes[i:]):
            return n
    return None


def winner(accuracies: dict[str, float], tie: float = 0.0) -> str:
    """The name with the highest accuracy; ties within `tie` go to the earlier name (the cheaper strategy)."""
    if not accuracies:
        raise ValueError("No accuracies to compare.")
    best = max(accuracies.values())
    return next(name for name, acc in accuracies.items() if acc >= best - tie)
