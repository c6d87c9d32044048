"""labkit's one training loop: `fit`, `evaluate`, `predict` and the `Trainer` that runs the loop.

Everything that varies between experiments (keeping the best epoch, early stopping, gradual unfreezing, the LR
schedule, gradient clipping, EWC, replay, tracking accuracy on a source task, memory measurement) is a small
`Callback` (labkit.callbacks) plugged into `fit`; there is no second loop anywhere in the kit.

Batches are either `(x, y)` tuples (vision, cached features) or dicts with a "labels" key (Hugging Face text):
labkit._batch is the one convention. The names that moved to labkit.callbacks and labkit.memory are re-exported
here, so `from labkit.train import EarlyStopping, measure_training_memory` keeps working.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from labkit._batch import forward as _forward
from labkit._batch import split_batch as _split_batch
from labkit._batch import to_device as _to_device
from labkit._torchutil import eval_mode, model_device
from labkit.callbacks import (
    Callback,
    EarlyStopping,
    GradientClipping,
    GradualUnfreezing,
    KeepBest,
    LivePlot,
    LRSchedule,
    MaxSteps,
    MeasureMemory,
    Precision,
    ProgressBar,
    ValidateEvery,
)
from labkit.freeze import count_parameters, frozen_batchnorm_eval
from labkit.memory import MemoryProbe, bytes_to_mb, measure_training_memory
from labkit.metrics import accuracy
from labkit.repro import resolve_device

__all__ = ["fit", "adamw", "evaluate", "predict", "eval_mode", "Callback", "KeepBest", "EarlyStopping",
           "GradualUnfreezing", "History", "Trainer", "LRSchedule", "GradientClipping", "ValidateEvery", "MaxSteps",
           "Precision", "MeasureMemory", "ProgressBar", "LivePlot", "MemoryProbe", "measure_training_memory",
           "bytes_to_mb", "diverged"]


def _check_targets(logits: torch.Tensor, targets: torch.Tensor) -> None:
    if targets.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"Class labels must be integers (torch.long), got {targets.dtype}. "
                        "Use y.long() or labkit.data loaders.")
    if targets.numel() and int(targets.max()) >= logits.shape[-1]:
        raise ValueError(f"A label is {int(targets.max())} but the model has only {logits.shape[-1]} outputs: "
                         "give the head as many classes as the dataset (load_backbone(..., num_classes=k)).")



# --------------------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------------------
def predict(model: nn.Module, loader: Iterable, device: str | torch.device | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and targets for a whole loader, always in eval mode (the previous mode is restored)."""
    device = model_device(model) if device is None else resolve_device(device)
    all_logits, all_targets = [], []
    with eval_mode(model), torch.no_grad():
        for batch in loader:
            inputs, targets = _split_batch(_to_device(batch, device))
            all_logits.append(_forward(model, inputs).float().cpu())
            all_targets.append(targets.cpu())
    if not all_logits:
        raise ValueError("The loader is empty: there is nothing to evaluate.")
    return torch.cat(all_logits), torch.cat(all_targets)


def evaluate(model: nn.Module, loader: Iterable, device: str | torch.device | None = None,
             loss_fn: Callable | None = None) -> dict:
    """Loss and accuracy on a loader, in eval mode; the model's previous train/eval mode is restored."""
    logits, targets = predict(model, loader, device)
    loss_fn = loss_fn or nn.functional.cross_entropy
    # acc is a float that keeps which items were right (labkit.metrics.Accuracy), for paired comparisons
    return {"loss": float(loss_fn(logits, targets)), "acc": accuracy(logits.argmax(1), targets),
            "n": int(targets.numel())}



@dataclass
@dataclass
class History:
    """Per-epoch records of a fit: train/val loss and accuracy, seconds, peak memory, plus callback metrics."""

    epochs: list[dict] = field(default_factory=list)
    trainable_params: int = 0
    total_params: int = 0
    peak_mem_mb: float = float("nan")
    seconds: float = 0.0
    best_epoch: int | None = None
    stopped_early: bool = False

    def __getitem__(self, key: str) -> list:
        return [e.get(key) for e in self.epochs]

    def last(self, key: str):
        return self.epochs[-1].get(key) if self.epochs else None

    def best(self, key: str = "val_acc"):
        """The value of `key` at the best epoch (the one kept by early stopping), else the last epoch."""
        if self.best_epoch is not None:
            return self.epochs[self.best_epoch].get(key)
        return self.last(key)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.epochs)

    def plot(self, ax=None, keys: Sequence[str] = ("train_loss", "val_loss"), label: str = ""):
        """Loss curves (or any recorded keys) against epoch."""
        import matplotlib.pyplot as plt

        ax = ax or plt.gca()
        for key in keys:
            values = self[key]
            if any(v is not None for v in values):
                ax.plot(range(1, len(values) + 1), values, marker="o", label=f"{label} {key}".strip())
        ax.set_xlabel("epoch")
        ax.legend()
        return ax

    def _finish(self, seconds: float) -> None:
        """Fill in the whole-fit figures from the epochs recorded so far."""
        self.seconds = seconds
        self.trainable_params = max(e["trainable_params"] for e in self.epochs) if self.epochs else 0
        self.peak_mem_mb = max((e["peak_mem_mb"] for e in self.epochs), default=float("nan"))



def diverged(train_loss: float, num_classes: int) -> bool:
    """True when a final training loss is above ln K: worse than predicting 1/K for every class, so the run
    diverged (or never left its random start) and its accuracy says nothing about the recipe. A NaN or infinite
    loss counts as diverged. The one divergence rule: strategies, forgetting and text all call it."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
    return not float(train_loss) <= math.log(num_classes)



# --------------------------------------------------------------------------------------------------------------
# Optimizers
# --------------------------------------------------------------------------------------------------------------
def adamw(params, **kwargs) -> torch.optim.AdamW:
    """torch.optim.AdamW with the fused kernel where this torch has it for the parameters' device (CPU since torch
    2.4, CUDA): the same update in one pass over the weights. On CPU the per-tensor loop costs a MiniLM fine-tune
    about 0.1 s a step (a fifth of the step); fused, about 0.02 s. Elsewhere (older torch, other devices) the
    plain implementation."""
    params = list(params)
    try:
        return torch.optim.AdamW(params, fused=True, **kwargs)
    except (RuntimeError, ValueError, TypeError):  # no fused kernel for this device, dtype or torch version
        return torch.optim.AdamW(params, **kwargs)


def _make_optimizer_factory(optimizer: str | Callable) -> Callable:
    if callable(optimizer):
        return optimizer
    name = str(optimizer).lower()
    if name == "adamw":
        return adamw
    if name == "adam":
        return lambda groups: torch.optim.Adam(groups)
    if name == "sgd":
        return lambda groups: torch.optim.SGD(groups, momentum=0.9)
    raise ValueError(f"Unknown optimizer {optimizer!r}: use 'adamw', 'adam', 'sgd' or a callable(groups).")



# --------------------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------------------
class Trainer:
    """The state of one `fit` call, handed to every callback, and the loop's named steps.

    `run` calls `_do_epoch` once per epoch; `_do_epoch` calls `_do_one_batch` for every training batch and
    `_do_validate` at the end. Every callback hook is called through `_event`, in the callbacks' order (each
    callback's `order`, then the order given).
    """

    def __init__(self, model: nn.Module, train_loader: Iterable, val_loader: Iterable | None, *,
                 optimizer_factory: Callable, lr: float, weight_decay: float, param_groups, device: torch.device,
                 loss_fn: Callable, callbacks: Sequence[Callback], num_epochs: int, bn_policy: str):
        self.model = model
        self.train_loader, self.val_loader = train_loader, val_loader
        self.device = device
        self.base_lr = lr
        self.weight_decay = weight_decay
        self.loss_fn = loss_fn
        self.num_epochs = num_epochs
        self.bn_policy = bn_policy
        self.callbacks: list[Callback] = sorted(callbacks, key=lambda cb: getattr(cb, "order", 0))
        max_steps = min((cb.steps for cb in self.callbacks if isinstance(cb, MaxSteps)), default=None)
        self.total_steps = _total_steps(train_loader, num_epochs, max_steps)
        self._optimizer_factory = optimizer_factory
        self._param_groups = param_groups
        self.optimizer: torch.optim.Optimizer | None = None
        self.history = History()
        self.meter = _EpochMeter()
        self.epoch = 0
        self.step = 0
        self.stop_training = False
        self.batch = None
        self.logits: torch.Tensor | None = None
        self.task_loss: torch.Tensor | None = None  # loss_fn on this batch
        self.penalty_loss: torch.Tensor | None = None  # the callbacks' penalties summed (None: none gave one)
        self.loss: torch.Tensor | None = None  # task_loss + penalty_loss: what backward runs on
        self.rebuild_optimizer()

    def rebuild_optimizer(self) -> None:
        """(Re)create the optimizer over the currently trainable parameters."""
        if callable(self._param_groups):
            groups = self._param_groups(self.model)
        elif self._param_groups is not None:
            groups = self._param_groups
        else:
            params = [p for p in self.model.parameters() if p.requires_grad]
            if not params:
                raise ValueError("No trainable parameters: unfreeze something (e.g. freeze_to(model, -1)) "
                                 "before calling fit.")
            groups = [{"params": params, "lr": self.base_lr, "weight_decay": self.weight_decay}]
        groups = [dict(g) for g in groups]
        for g in groups:
            g.setdefault("lr", self.base_lr)
            g.setdefault("weight_decay", self.weight_decay)
            g["base_lr"] = g["lr"]
        self.optimizer = self._optimizer_factory(groups)

    def add_param_group(self, group: dict) -> None:
        """Train more parameters from now on (their own group in the optimizer); callbacks hear of it through
        on_param_group_added (MeasureMemory measures the next step again)."""
        self.optimizer.add_param_group(group)
        self._event("on_param_group_added", group)

    def run(self) -> History:
        """The whole fit: on_fit_start, the epochs, on_fit_end (also on an exception or KeyboardInterrupt, so
        KeepBest and EarlyStopping put the best weights back)."""
        self._event("on_fit_start")
        self.history.total_params = count_parameters(self.model)
        start = time.perf_counter()
        try:
            for epoch in range(self.num_epochs):
                self.epoch = epoch
                self._do_epoch()
                if self.stop_training:
                    break
        finally:
            self._event("on_fit_end")
            self.history._finish(time.perf_counter() - start)
        return self.history

    def _event(self, name: str, *args) -> None:
        """Call hook `name` on every callback, in order."""
        for cb in self.callbacks:
            hook = getattr(cb, name, None)
            if hook is not None:
                hook(self, *args)

    @contextlib.contextmanager
    def _contexts(self, name: str):
        """Enter the context managers that the callbacks' hook `name` returns (step_context, forward_context)."""
        with contextlib.ExitStack() as stack:
            for cb in self.callbacks:
                hook = getattr(cb, name, None)
                context = hook(self) if hook is not None else None
                if context is not None:
                    stack.enter_context(context)
            yield

    def _do_epoch(self) -> dict:
        """One pass over the training batches, then validation; returns the epoch's record (also in history)."""
        self._event("on_epoch_start")
        self.model.train()
        if self.bn_policy == "freeze":
            frozen_batchnorm_eval(self.model)
        start, self.meter = time.perf_counter(), _EpochMeter()
        for batch in self.train_loader:
            self._do_one_batch(batch)
            if self.stop_training:  # MaxSteps: the step budget is spent
                break
        logs = {"epoch": self.epoch + 1, **self.meter.logs(),
                "lr": max(g["lr"] for g in self.optimizer.param_groups),
                "trainable_params": count_parameters(self.model, trainable_only=True)}
        if self.val_loader is not None:
            if all(getattr(cb, "should_validate", _always)(self) for cb in self.callbacks):
                logs.update(self._do_validate(self.val_loader))
            else:
                logs["validated"] = False
        logs["seconds"] = time.perf_counter() - start
        logs["peak_mem_mb"] = float("nan")  # MeasureMemory fills it in
        self._event("on_epoch_end", logs)
        self.history.epochs.append(logs)
        return logs

    def _do_one_batch(self, batch) -> None:
        """One optimizer step: forward, task loss plus the callbacks' penalties, backward, step."""
        batch = _to_device(batch, self.device)
        for cb in self.callbacks:
            batch = cb.on_batch(self, batch) if hasattr(cb, "on_batch") else batch
        self.batch = batch
        inputs, targets = _split_batch(batch)
        with self._contexts("step_context"):  # MeasureMemory: measures the first step as it runs (CPU)
            with self._contexts("forward_context"):  # Precision: bfloat16 autocast
                self.logits = _forward(self.model, inputs)
                if self.step == 0:
                    _check_targets(self.logits, targets)
                self.task_loss = self.loss_fn(self.logits.float(), targets)
            self.loss, penalties = self._add_penalties(self.task_loss)
        self.penalty_loss = _sum_detached(penalties)
        self._check_finite()
        self.optimizer.zero_grad(set_to_none=True)
        self.loss.backward()
        self._event("on_after_backward")
        self._event("on_before_step")  # GradientClipping, then LRSchedule, then the rest
        self.optimizer.step()
        self.step += 1
        self.meter.add(self.task_loss, self.penalty_loss, self.logits, targets)
        self._event("on_batch_end")

    def _add_penalties(self, task_loss: torch.Tensor) -> tuple[torch.Tensor, list]:
        """(task loss + every callback's penalty, the list of penalties that callbacks gave)."""
        loss, penalties = task_loss, []
        for cb in self.callbacks:
            extra = cb.penalty(self) if hasattr(cb, "penalty") else None
            if extra is not None:
                loss = loss + extra
                penalties.append(extra)
        return loss, penalties

    def _check_finite(self) -> None:
        if not torch.isfinite(self.loss):
            raise FloatingPointError(
                f"The loss became {float(self.loss.detach())} at epoch {self.epoch + 1}: the learning rate "
                f"({self.base_lr}) is probably too high for this model. Try a 10x smaller lr.")

    def _do_validate(self, val_loader: Iterable) -> dict:
        """Validation loss and accuracy, in eval mode (the training mode is restored)."""
        val = evaluate(self.model, val_loader, self.device, self.loss_fn)
        return {"val_loss": val["loss"], "val_acc": val["acc"]}


def _always(trainer) -> bool:
    return True


def _sum_detached(values: list):
    """The sum of the penalties, outside autograd (None when there are none; one penalty is returned as it is)."""
    if len(values) <= 1:
        return values[0] if values else None
    with torch.no_grad():
        return sum(v.detach() if torch.is_tensor(v) else v for v in values)


class _EpochMeter:
    """Running sums over one epoch's training batches, weighted by batch size: task loss, penalty, accuracy."""

    def __init__(self):
        self.loss = self.penalty = 0.0
        self.correct = self.seen = 0
        self.has_penalty = False

    def add(self, task_loss: torch.Tensor, penalty, logits: torch.Tensor, targets: torch.Tensor) -> None:
        n = targets.shape[0]
        self.loss += float(task_loss.detach()) * n
        if penalty is not None:
            self.has_penalty = True
            self.penalty += float(penalty.detach() if torch.is_tensor(penalty) else penalty) * n
        self.correct += int((logits.detach().argmax(-1)[:n] == targets).sum())
        self.seen += n

    def logs(self) -> dict:
        """train_loss is the task loss alone; penalty (only when a callback adds one) is logged next to it."""
        seen = max(self.seen, 1)
        out = {"train_loss": self.loss / seen}
        if self.has_penalty:
            out["penalty"] = self.penalty / seen
        out["train_acc"] = self.correct / seen
        return out



def _total_steps(train_loader: Iterable, num_epochs: int, max_steps: int | None) -> int:
    """Optimizer steps the fit will take (0 when the loader has no length and there is no max_steps)."""
    try:
        total = len(train_loader) * num_epochs  # type: ignore[arg-type]
    except TypeError:
        total = 0
    return min(total or max_steps, max_steps) if max_steps else total



def fit(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None, *, num_epochs: int = 5,
        lr: float = 1e-3, optimizer: str | Callable = "adamw", weight_decay: float = 0.0,
        param_groups: list[dict] | Callable | None = None, loss_fn: Callable | None = None,
        callbacks: Sequence[Callback] = (), device: str | None = "auto", bn_policy: str = "freeze") -> History:
    """Train `model`; return its per-epoch `History`.

    optimizer: "adamw" (fused where torch has it), "adam", "sgd" (momentum 0.9) or a callable(groups).
    param_groups: explicit optimizer groups, or a callable(model) -> groups (e.g. discriminative LRs).
    callbacks: everything else, e.g. `KeepBest()` or `EarlyStopping(patience)` (needs val_loader),
        `LRSchedule("cosine", warmup_steps)`, `GradientClipping(1.0)`, `ValidateEvery(k)`, `MaxSteps(n)`,
        `MeasureMemory()` (History.peak_mem_mb), `Precision(amp, channels_last)`, `ProgressBar(enabled=False)`,
        `LivePlot()`. Without an LRSchedule, Precision or ProgressBar, fit uses a constant LR, bfloat16 autocast
        and channels_last on CUDA only, and a progress bar unless LABKIT_PROGRESS=0.
    bn_policy: "freeze" keeps BatchNorm layers whose parameters are frozen in eval mode (running statistics
        unchanged); "train" lets them update like the rest (the pitfall notebook shows the cost).
    History records train_loss (the task loss alone) and, when a callback adds one, the penalty next to it.
    """
    if num_epochs < 1:
        raise ValueError(f"num_epochs must be at least 1, got {num_epochs}.")
    if bn_policy not in ("freeze", "train"):
        raise ValueError(f"bn_policy must be 'freeze' or 'train', got {bn_policy!r}.")
    callbacks = list(callbacks)
    for cb in callbacks:
        if isinstance(cb, KeepBest) and val_loader is None and cb.monitor.startswith("val_"):
            raise ValueError(f"{type(cb).__name__} watches {cb.monitor!r}, which needs a val_loader.")
    callbacks += [default() for default in (LRSchedule, Precision, ProgressBar)
                  if not any(isinstance(cb, default) for cb in callbacks)]
    device = resolve_device(device)
    model.to(device)
    trainer = Trainer(model, train_loader, val_loader, optimizer_factory=_make_optimizer_factory(optimizer), lr=lr,
                      weight_decay=weight_decay, param_groups=param_groups, device=device,
                      loss_fn=loss_fn or nn.functional.cross_entropy, callbacks=callbacks, num_epochs=num_epochs,
                      bn_policy=bn_policy)
    return trainer.run()
