"""labkit's one training loop.

Everything that varies between experiments (early stopping, gradual unfreezing, EWC, replay, tracking accuracy
on a source task) is a small `Callback` plugged into `fit`; there is no second loop anywhere in the kit.

Batches are either `(x, y)` tuples (vision, cached features) or dicts with a "labels" key (Hugging Face text).
"""
from __future__ import annotations

import contextlib
import math
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from labkit._torchutil import eval_mode, model_device, progress_enabled
from labkit.freeze import (
    count_parameters,
    freeze_to,
    frozen_batchnorm_eval,
    model_depths,
    resolve_depth,
    unfreeze_params,
)
from labkit.repro import resolve_device

__all__ = ["fit", "adamw", "evaluate", "predict", "eval_mode", "Callback", "EarlyStopping", "GradualUnfreezing",
           "History", "Trainer", "LRSchedule", "ProgressBar", "MemoryProbe", "measure_training_memory",
           "bytes_to_mb", "progress_enabled", "diverged"]


# --------------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------------
def _to_device(obj, device, channels_last: bool = False):
    if isinstance(obj, torch.Tensor):
        obj = obj.to(device, non_blocking=True)
        if channels_last and obj.dim() == 4:
            obj = obj.contiguous(memory_format=torch.channels_last)
        return obj
    if isinstance(obj, dict):
        return {k: _to_device(v, device, channels_last) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device, channels_last) for v in obj)
    return obj


def _split_batch(batch) -> tuple[Any, torch.Tensor]:
    """(inputs, targets) from an (x, y) tuple or a dict with 'labels'."""
    if isinstance(batch, dict):
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        if "labels" not in batch:
            raise ValueError("A dict batch needs a 'labels' entry (the class index of each example).")
        return inputs, batch["labels"]
    if isinstance(batch, (list, tuple)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ValueError("Each batch must be (x, y) or a dict with 'labels'; got "
                     f"{type(batch).__name__}. Build loaders with labkit.data.make_loader.")


def _forward(model: nn.Module, inputs) -> torch.Tensor:
    out = model(**inputs) if isinstance(inputs, dict) else model(inputs)
    return getattr(out, "logits", out)


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
    from labkit.metrics import accuracy

    logits, targets = predict(model, loader, device)
    loss_fn = loss_fn or nn.functional.cross_entropy
    # acc is a float that keeps which items were right (labkit.metrics.Accuracy), for paired comparisons
    return {"loss": float(loss_fn(logits, targets)), "acc": accuracy(logits.argmax(1), targets),
            "n": int(targets.numel())}


# --------------------------------------------------------------------------------------------------------------
# History and callbacks
# --------------------------------------------------------------------------------------------------------------
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


class Callback:
    """Hooks into `fit`. Override what you need; every hook gets the `Trainer` (model, optimizer, history...).

    The order of one fit: on_fit_start; each epoch: on_epoch_start, then for each batch on_batch, penalty,
    on_after_backward, on_before_step, on_batch_end; on_epoch_end; finally on_fit_end, which always runs.
    labkit's own parts of the loop are callbacks too: `LRSchedule`, `EarlyStopping`, `ProgressBar`.
    """

    def on_fit_start(self, trainer: "Trainer") -> None: ...
    def on_epoch_start(self, trainer: "Trainer") -> None: ...

    def on_batch(self, trainer: "Trainer", batch):
        """Return the batch to train on (replay mixes stored examples in here)."""
        return batch

    def penalty(self, trainer: "Trainer") -> torch.Tensor | None:
        """An extra loss term added to the task loss (EWC, L2-SP, distillation)."""
        return None

    def on_after_backward(self, trainer: "Trainer") -> None: ...
    def on_before_step(self, trainer: "Trainer") -> None:
        """Just before optimizer.step() (after gradient clipping); the LR schedule sets the LRs here."""

    def on_batch_end(self, trainer: "Trainer") -> None: ...

    def on_epoch_end(self, trainer: "Trainer", logs: dict) -> None:
        """`logs` is this epoch's record; add metrics to it (e.g. logs['source_acc'])."""

    def on_fit_end(self, trainer: "Trainer") -> None:
        """Runs however the fit ends: finished, stopped early, or interrupted by an exception."""


class EarlyStopping(Callback):
    """Stop when the monitored validation metric has not improved for `patience` epochs; keep the best weights."""

    def __init__(self, patience: int = 3, monitor: str = "val_loss", mode: str | None = None,
                 restore_best: bool = True, min_delta: float = 0.0):
        self.patience, self.monitor, self.restore_best, self.min_delta = patience, monitor, restore_best, min_delta
        self.mode = mode or ("min" if "loss" in monitor else "max")
        self.best_value, self.best_state, self.wait = None, None, 0

    def on_fit_start(self, trainer):
        self.best_value, self.best_state, self.wait = None, None, 0

    def _better(self, value: float) -> bool:
        if self.best_value is None:
            return True
        if self.mode == "min":
            return value < self.best_value - self.min_delta
        return value > self.best_value + self.min_delta

    def on_epoch_end(self, trainer, logs):
        value = logs.get(self.monitor)
        if value is None and logs.get("validated") is False:
            return  # fit(val_every=k): this epoch was not validated, so there is nothing to compare
        if value is None:
            raise ValueError(f"EarlyStopping monitors {self.monitor!r} but this fit has no such metric: "
                             "pass a val_loader (or monitor a metric a callback records).")
        if self._better(value):
            self.best_value, self.wait = value, 0
            trainer.history.best_epoch = len(trainer.history.epochs)  # index of this epoch once appended
            if self.restore_best:
                self.best_state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.stop_training = True
                trainer.history.stopped_early = True

    def on_fit_end(self, trainer):
        if self.restore_best and self.best_state is not None:
            trainer.model.load_state_dict(self.best_state)


class GradualUnfreezing(Callback):
    """ULMFiT-style: start with only the classifier trainable, unfreeze one more depth every `every` epochs.

    Newly unfrozen depths join the optimizer with a discriminative LR (`decay` per depth below the top).
    train_batchnorm: False leaves BatchNorm layers frozen as their depths unfreeze (pretrained statistics kept).
    """

    def __init__(self, every: int = 1, decay: float = 0.5, stop_at: int | str = 0, train_batchnorm: bool = True):
        self.every, self.decay, self.stop_at = every, decay, stop_at
        self.train_batchnorm = train_batchnorm
        self.current = None

    def on_fit_start(self, trainer):
        depths = list(model_depths(trainer.model))
        self.names = depths
        self.current = len(depths) - 1
        self.floor = resolve_depth(trainer.model, self.stop_at)
        freeze_to(trainer.model, self.current, train_batchnorm=self.train_batchnorm)
        trainer.rebuild_optimizer()

    def on_epoch_start(self, trainer):
        if trainer.epoch == 0 or trainer.epoch % self.every or self.current <= self.floor:
            return
        self.current -= 1
        name = self.names[self.current]
        params = unfreeze_params(model_depths(trainer.model)[name], self.train_batchnorm)
        if params:
            top_lr = trainer.base_lr
            lr = top_lr * self.decay ** (len(self.names) - 1 - self.current)
            trainer.optimizer.add_param_group({"params": params, "lr": lr, "base_lr": lr, "name": name,
                                               "weight_decay": trainer.weight_decay})
            trainer.memory.remeasure()  # more trains now: the peak is measured again (CUDA's peak sees it anyway)


# --------------------------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------------------------
class _TensorHighWater(TorchDispatchMode):
    """Bytes held by the tensors that the ops inside the block create: `live` now and the `peak` so far.

    A TorchDispatchMode sees every op's outputs; each output storage is counted once and released when the last
    tensor using it is freed. Works on any device, so the CPU gets the same high-water mark CUDA's allocator keeps.
    """

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._storages: dict[int, list[int]] = {}  # data_ptr -> [bytes, live tensors using it]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out

    def _track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key, nbytes = storage.data_ptr(), storage.nbytes()
        if not nbytes:
            return
        entry = self._storages.get(key)
        if entry is None:
            entry = self._storages[key] = [nbytes, 0]
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        entry[1] += 1
        weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        entry = self._storages.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                del self._storages[key]
                self.live -= entry[0]


class _ForwardMemory:
    """Measures one training step's forward pass: what autograd saves for backward, and the pass's high-water mark.

    Wrap the forward (and the loss) of a real step in it; after the step, `parts(model)` adds weights, gradients and
    optimizer state. Costs nothing but the bookkeeping, so `fit` measures its first real step this way.
    """

    def __init__(self):
        self._saved: dict[tuple, int] = {}
        self._stack = contextlib.ExitStack()
        self.peak = 0

    def _pack(self, t):
        if isinstance(t, torch.Tensor) and not isinstance(t, nn.Parameter):
            try:
                storage = t.untyped_storage()
                self._saved[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
            except Exception:  # a tensor without storage (e.g. a tensor subclass): count its own bytes
                self._saved[(id(t), t.numel())] = t.numel() * t.element_size()
        return t

    def __enter__(self):
        self._stack.enter_context(torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t))
        self._tracker = self._stack.enter_context(_TensorHighWater())
        return self

    def __exit__(self, *exc):
        self.peak = self._tracker.peak
        return self._stack.__exit__(*exc)

    def parts(self, model: nn.Module, optimizer_states_per_param: int = 2,
              optimizer_state_bytes: int | None = None) -> dict:
        """optimizer_state_bytes: what the optimizer really keeps (after a step); else states_per_param x gradients."""
        param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
        activations = sum(v for k, v in self._saved.items() if k[0] not in param_ptrs)
        workspace = max(0, self.peak - activations)
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
        state = trainable * optimizer_states_per_param if optimizer_state_bytes is None else optimizer_state_bytes
        total = weights + trainable + state + activations + workspace
        return {"weights": weights, "gradients": trainable, "optimizer_state": state,
                "activations": activations, "workspace": workspace, "total": total}


def diverged(train_loss: float, num_classes: int) -> bool:
    """True when a final training loss is above ln K: worse than predicting 1/K for every class, so the run
    diverged (or never left its random start) and its accuracy says nothing about the recipe. A NaN or infinite
    loss counts as diverged. The one divergence rule: strategies, forgetting and text all call it."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
    return not float(train_loss) <= math.log(num_classes)


def bytes_to_mb(nbytes: float) -> float:
    """Bytes -> MB (MiB, 2**20 bytes): the unit every memory number labkit shows is in."""
    return nbytes / 2**20


def measure_training_memory(model: nn.Module, batch, loss_fn: Callable | None = None,
                            optimizer_states_per_param: int = 2) -> dict:
    """Bytes a training step needs, by part: weights, gradients, optimizer state, activations and workspace.

    labkit's one memory measure, in bytes; `bytes_to_mb` converts. `strategies.training_memory` (MB per part,
    with some depths frozen) and `text.training_memory_mb` (the total in MB, on a loader's first batch) are
    views of it, and `fit` reports the same sum on CPU (History.peak_mem_mb, in MB).

    activations: the tensors autograd saves for the backward pass (counted exactly with saved-tensor hooks).
    workspace: the rest of the forward pass's high-water mark, the temporary outputs of layers that nothing
        saves (a frozen backbone saves almost nothing, but each of its layers still makes an output).
    The forward's high-water mark comes from tracking every tensor the step's ops create, so it is measured on
    CPU as well; weights, gradients and AdamW state (2 per trainable parameter) are counted from the parameters.
    The gradients are counted alongside the forward pass because `fit`, like most loops, keeps them from one
    step's backward until the next step's `zero_grad`. On CUDA `fit` reports torch.cuda.max_memory_allocated.
    Runs one extra forward and backward pass; the model's weights, BatchNorm statistics and mode are left as they
    were.
    """
    loss_fn = loss_fn or nn.functional.cross_entropy
    device = model_device(model)
    inputs, targets = _split_batch(_to_device(batch, device))
    was_training = model.training
    # the measuring step must not change the model: keep BatchNorm running statistics as they were
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    model.train()
    frozen_batchnorm_eval(model)
    with _ForwardMemory() as probe:
        logits = _forward(model, inputs)
        loss = loss_fn(logits, targets) if logits.requires_grad else None
    if loss is not None:
        loss.backward()
    del logits, loss
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for name, b in model.named_buffers():
            b.copy_(buffers[name])
    model.train(was_training)
    return probe.parts(model, optimizer_states_per_param)
# The loop
# --------------------------------------------------------------------------------------------------------------
class Trainer:
    """The state of one `fit` call, handed to every callback, and the loop's named steps.

    `fit` calls `_do_epoch` once per epoch; `_do_epoch` calls `_do_one_batch` for every training batch and
    `_do_validate` at the end. Every callback hook is called through `_event`, in the order of `callbacks`.
    """

    def __init__(self, model, optimizer_factory, base_lr, weight_decay, param_groups, device):
        self.model = model
        self.device = device
        self.base_lr = base_lr
        self.weight_decay = weight_decay
        self._optimizer_factory = optimizer_factory
        self._param_groups = param_groups
        self.optimizer: torch.optim.Optimizer | None = None
        self.history = History()
        self.callbacks: list[Callback] = []
        self.loss_fn: Callable = nn.functional.cross_entropy
        self.autocast = contextlib.nullcontext()  # bfloat16 autocast when fit(amp=...) is on
        self.channels_last = False
        self.val_every, self.num_epochs = 1, 0
        self.bn_policy = "freeze"
        self.max_grad_norm: float | None = None
        self.max_steps: int | None = None
        self.memory = MemoryProbe(device, enabled=False)
        self.meter = _EpochMeter()
        self.epoch = 0
        self.step = 0
        self.total_steps = 0
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

    def _event(self, name: str, *args) -> None:
        """Call hook `name` on every callback, in order."""
        for cb in self.callbacks:
            hook = getattr(cb, name, None)
            if hook is not None:
                hook(self, *args)

    def _do_epoch(self, train_loader: Iterable, val_loader: Iterable | None) -> dict:
        """One pass over the training batches, then validation; returns the epoch's record (also in history)."""
        self._event("on_epoch_start")
        self.model.train()
        if self.bn_policy == "freeze":
            frozen_batchnorm_eval(self.model)
        start, self.meter = time.perf_counter(), _EpochMeter()
        for batch in train_loader:
            self._do_one_batch(batch)
            if self.max_steps and self.step >= self.max_steps:
                self.stop_training = True
                break
        logs = {"epoch": self.epoch + 1, **self.meter.logs(),
                "lr": max(g["lr"] for g in self.optimizer.param_groups),
                "trainable_params": count_parameters(self.model, trainable_only=True)}
        if val_loader is not None:
            validate = (self.epoch + 1) % self.val_every == 0 or self.epoch + 1 == self.num_epochs
            if validate or self.stop_training:
                logs.update(self._do_validate(val_loader))
            else:
                logs["validated"] = False
        logs["seconds"] = time.perf_counter() - start
        logs["peak_mem_mb"] = self.memory.peak_mb()
        self._event("on_epoch_end", logs)
        self.history.epochs.append(logs)
        return logs

    def _do_one_batch(self, batch) -> None:
        """One optimizer step: forward, task loss plus the callbacks' penalties, backward, clipping, step."""
        batch = _to_device(batch, self.device, self.channels_last)
        for cb in self.callbacks:
            batch = cb.on_batch(self, batch)
        self.batch = batch
        inputs, targets = _split_batch(batch)
        with self.memory.watch():  # on CPU, measures the first step as it runs
            with self.autocast:
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
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self._event("on_before_step")
        self.optimizer.step()
        self.step += 1
        self.memory.record(self.model, self.optimizer)
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


def _optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of per-parameter optimizer state: AdamW keeps 2 tensors per parameter, SGD with momentum 1, plain
    SGD none (step counters are not counted)."""
    total = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if key != "step" and torch.is_tensor(value) and value.shape == p.shape:
                    total += value.numel() * value.element_size()
    return total


class MemoryProbe:
    """Peak training memory of a fit. CUDA: the allocator's peak. CPU: the first step, measured as it runs, and
    again after each change of what trains (`remeasure`); the peak is the largest.

    watch() wraps the forward pass and the loss of the first step; record() then adds weights, gradients and the
    optimizer state the optimizer actually keeps (see `measure_training_memory` for the parts).
    """

    def __init__(self, device: torch.device, enabled: bool = True):
        self.device = device
        self.enabled = enabled and device.type != "cuda"
        self.cpu_mb = float("nan")
        self._probe: _ForwardMemory | None = None
        self._again = False

    def start(self) -> "MemoryProbe":
        """Start counting from here (CUDA: reset the allocator's peak)."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def remeasure(self) -> None:
        """What trains has changed (e.g. gradual unfreezing added a depth): measure the next step as well; the
        peak is the largest step measured."""
        self._again = True

    def watch(self):
        if self.enabled and (math.isnan(self.cpu_mb) or self._again):
            self._probe, self._again = _ForwardMemory(), False
            return self._probe
        return contextlib.nullcontext()

    def record(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if self._probe is not None:
            parts = self._probe.parts(model, optimizer_state_bytes=_optimizer_state_bytes(optimizer))
            mb = bytes_to_mb(parts["total"])
            self.cpu_mb, self._probe = (mb if math.isnan(self.cpu_mb) else max(self.cpu_mb, mb)), None

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            return bytes_to_mb(torch.cuda.max_memory_allocated(self.device))
        return self.cpu_mb


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


def _schedule_factor(kind: str | None, step: int, total: int, warmup: int) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    if kind in (None, "constant"):
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if kind == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if kind == "linear":
        return max(0.0, 1 - progress)
    raise ValueError(f"Unknown scheduler {kind!r}: use None, 'cosine' or 'linear'.")


class LRSchedule(Callback):
    """Before every optimizer step, set each group's LR to its base_lr times the schedule at this step:
    linear warmup over `warmup_steps`, then constant (None), "cosine" or "linear" decay to 0 at the last step."""

    def __init__(self, kind: str | None = None, warmup_steps: int = 0):
        if kind not in (None, "constant", "cosine", "linear"):
            raise ValueError(f"Unknown scheduler {kind!r}: use None, 'cosine' or 'linear'.")
        self.kind, self.warmup_steps = kind, int(warmup_steps)

    def on_before_step(self, trainer):
        factor = _schedule_factor(self.kind, trainer.step, trainer.total_steps or 1, self.warmup_steps)
        for g in trainer.optimizer.param_groups:
            g["lr"] = g.get("base_lr", g["lr"]) * factor


class ProgressBar(Callback):
    """A tqdm bar over the fit's steps, with the epoch and the current loss."""

    def __init__(self):
        self.bar = None

    def on_fit_start(self, trainer):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=trainer.total_steps or None, desc="fit", leave=False)

    def on_batch_end(self, trainer):
        self.bar.update(1)
        self.bar.set_postfix(epoch=trainer.epoch + 1, loss=f"{float(trainer.loss.detach()):.3f}")

    def on_fit_end(self, trainer):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _LivePlot(Callback):
    """Redraws the loss curves in the notebook at the end of each epoch."""

    def on_epoch_end(self, trainer, logs):
        try:
            import matplotlib.pyplot as plt
            from IPython.display import clear_output, display
        except ImportError:
            return
        clear_output(wait=True)
        fig, ax = plt.subplots(figsize=(5, 3))
        trainer.history.epochs.append(logs)
        try:
            trainer.history.plot(ax)
        finally:
            trainer.history.epochs.pop()
        display(fig)
        plt.close(fig)


def _total_steps(train_loader: Iterable, num_epochs: int, max_steps: int | None) -> int:
    """Optimizer steps the fit will take (0 when the loader has no length and there is no max_steps)."""
    try:
        total = len(train_loader) * num_epochs  # type: ignore[arg-type]
    except TypeError:
        total = 0
    return min(total or max_steps, max_steps) if max_steps else total


def _check_fit_arguments(num_epochs: int, bn_policy: str, early_stopping, val_loader) -> None:
    if num_epochs < 1:
        raise ValueError(f"num_epochs must be at least 1, got {num_epochs}.")
    if bn_policy not in ("freeze", "train"):
        raise ValueError(f"bn_policy must be 'freeze' or 'train', got {bn_policy!r}.")
    if early_stopping and val_loader is None:
        raise ValueError("early_stopping needs a val_loader to watch.")


def _place_model(model: nn.Module, device: torch.device, amp, channels_last) -> tuple[bool, bool]:
    """Move the model to `device` (NHWC when channels_last is on); returns (use_amp, use_channels_last)."""
    model.to(device)
    use_amp = device.type == "cuda" if amp == "auto" else bool(amp)
    use_cl = device.type == "cuda" if channels_last == "auto" else bool(channels_last)
    if use_cl:
        model.to(memory_format=torch.channels_last)
    return use_amp, use_cl


def fit(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None, *, num_epochs: int = 5,
        lr: float = 1e-3, optimizer: str | Callable = "adamw", weight_decay: float = 0.0,
        param_groups: list[dict] | Callable | None = None, scheduler: str | None = None, warmup_steps: int = 0,
        loss_fn: Callable | None = None, callbacks: Sequence[Callback] = (), device: str | None = "auto",
        amp: bool | str = "auto", channels_last: bool | str = "auto", bn_policy: str = "freeze",
        early_stopping: int | None = None, max_grad_norm: float | None = None, max_steps: int | None = None,
        progress: bool | None = None, live_plot: bool = False, measure_memory: bool = True,
        val_every: int = 1) -> History:
    """Train `model`; return its per-epoch `History`.

    param_groups: explicit optimizer groups, or a callable(model) -> groups (e.g. discriminative LRs).
    bn_policy: "freeze" keeps BatchNorm layers whose parameters are frozen in eval mode (running statistics
        unchanged); "train" lets them update like the rest (the pitfall notebook shows the cost).
    amp / channels_last: "auto" turns them on for CUDA only (bfloat16 autocast, NHWC memory layout).
    early_stopping: patience in epochs on val_loss (needs val_loader); the best weights are restored, also when
        the fit is interrupted (an exception, or the notebook's stop button).
    max_steps: stop after this many optimizer steps (benchmarks, smoke tests).
    val_every: validate after every k-th epoch and after the last (a tiny training set runs many short epochs:
        validating each would cost more than training). Early stopping then counts validations, not epochs.
    History records train_loss (the task loss alone) and, when a callback adds one, the penalty next to it.
    """
    _check_fit_arguments(num_epochs, bn_policy, early_stopping, val_loader)
    if isinstance(val_every, bool) or not isinstance(val_every, int) or val_every < 1:
        raise ValueError(f"val_every must be a whole number of epochs, at least 1, got {val_every!r}.")
    device = resolve_device(device)
    use_amp, use_cl = _place_model(model, device, amp, channels_last)
    trainer = Trainer(model, _make_optimizer_factory(optimizer), lr, weight_decay, param_groups, device)
    trainer.loss_fn = loss_fn or nn.functional.cross_entropy
    if use_amp:
        trainer.autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    trainer.channels_last, trainer.bn_policy, trainer.max_grad_norm = use_cl, bn_policy, max_grad_norm
    trainer.val_every, trainer.num_epochs = val_every, num_epochs
    trainer.max_steps, trainer.total_steps = max_steps, _total_steps(train_loader, num_epochs, max_steps)
    trainer.callbacks = [LRSchedule(scheduler, warmup_steps), *callbacks,
                         *([EarlyStopping(patience=int(early_stopping))] if early_stopping else []),
                         *([_LivePlot()] if live_plot else []),
                         *([ProgressBar()] if progress_enabled(progress) else [])]

    trainer._event("on_fit_start")
    trainer.history.total_params = count_parameters(model)
    trainer.memory = MemoryProbe(device, enabled=measure_memory).start()
    start = time.perf_counter()
    try:
        for epoch in range(num_epochs):
            trainer.epoch = epoch
            trainer._do_epoch(train_loader, val_loader)
            if trainer.stop_training:
                break
    finally:  # also on an exception or KeyboardInterrupt: EarlyStopping puts the best weights back
        trainer._event("on_fit_end")
        trainer.history._finish(time.perf_counter() - start)
    return trainer.history
