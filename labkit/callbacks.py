"""The parts of a fit that vary: each is a `Callback` handed to `labkit.train.fit(callbacks=[...])`.

Keeping the best epoch (`KeepBest`), early stopping, gradual unfreezing, the LR schedule, gradient clipping,
validating every k-th epoch, a step budget, mixed precision, memory measurement, progress bars and live plots
all plug into the one loop the same way EWC, replay and the guards do.

Callbacks run in the order given, except that each has an `order` (default 0): lower runs first. The parts that
must run before or after everything else carry their own (`Precision` first, `ProgressBar` last), so a caller
never has to place them. `fit` adds a constant `LRSchedule`, an automatic `Precision` and a `ProgressBar` (on
unless LABKIT_PROGRESS=0) when none is passed.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from labkit._batch import to_device
from labkit._torchutil import progress_enabled
from labkit.freeze import depth_lr, freeze_to, model_depths, resolve_depth, unfreeze_params
from labkit.memory import MemoryProbe

if TYPE_CHECKING:
    from labkit.train import Trainer

__all__ = ["Callback", "KeepBest", "EarlyStopping", "GradualUnfreezing", "LRSchedule", "GradientClipping",
           "ValidateEvery", "MaxSteps", "Precision", "MeasureMemory", "ProgressBar", "LivePlot"]


class Callback:
    """Hooks into `fit`. Override what you need; every hook gets the `Trainer` (model, optimizer, history...).

    The order of one fit: on_fit_start; each epoch: on_epoch_start, then for each batch on_batch, penalty,
    on_after_backward, on_before_step, on_batch_end; should_validate; on_epoch_end; finally on_fit_end, which
    always runs. step_context wraps a step's forward pass, task loss and penalties; forward_context wraps only the
    forward pass and the task loss. labkit's own parts of the loop are callbacks too (see the module docstring).
    """

    order = 0  # callbacks run by increasing order; equal orders keep the order they were given in

    def on_fit_start(self, trainer: "Trainer") -> None: ...
    def on_epoch_start(self, trainer: "Trainer") -> None: ...

    def on_batch(self, trainer: "Trainer", batch):
        """Return the batch to train on (replay mixes stored examples in here)."""
        return batch

    def step_context(self, trainer: "Trainer"):
        """A context manager around the forward pass, the task loss and the penalties (None: nothing)."""
        return None

    def forward_context(self, trainer: "Trainer"):
        """A context manager around the forward pass and the task loss only (None: nothing)."""
        return None

    def penalty(self, trainer: "Trainer") -> torch.Tensor | None:
        """An extra loss term added to the task loss (EWC, L2-SP, distillation)."""
        return None

    def on_after_backward(self, trainer: "Trainer") -> None: ...
    def on_before_step(self, trainer: "Trainer") -> None:
        """Just before optimizer.step(); gradient clipping and the LR schedule run here."""

    def on_batch_end(self, trainer: "Trainer") -> None: ...

    def on_param_group_added(self, trainer: "Trainer", group: dict) -> None:
        """More parameters train from now on (`Trainer.add_param_group`, e.g. gradual unfreezing)."""

    def should_validate(self, trainer: "Trainer") -> bool:
        """Whether this epoch ends with validation (when there is a val_loader): every callback must agree."""
        return True

    def on_epoch_end(self, trainer: "Trainer", logs: dict) -> None:
        """`logs` is this epoch's record; add metrics to it (e.g. logs['source_acc'])."""

    def on_fit_end(self, trainer: "Trainer") -> None:
        """Runs however the fit ends: finished, stopped early, or interrupted by an exception."""


# --------------------------------------------------------------------------------------------------------------
# Choosing the epoch
# --------------------------------------------------------------------------------------------------------------
class KeepBest(Callback):
    """Keep the weights of the epoch with the best monitored metric and put them back when the fit ends (also when
    it is interrupted: an exception, or the notebook's stop button). Never stops the fit.

    History.best_epoch is the kept epoch. Epochs that were not validated (`ValidateEvery`) are skipped.
    """

    restore_best = True

    def __init__(self, monitor: str = "val_loss", mode: str | None = None, min_delta: float = 0.0):
        self.monitor, self.min_delta = monitor, min_delta
        self.mode = mode or ("min" if "loss" in monitor else "max")
        self.best_value, self.best_state = None, None

    def on_fit_start(self, trainer):
        self.best_value, self.best_state = None, None

    def _better(self, value: float) -> bool:
        if self.best_value is None:
            return True
        if self.mode == "min":
            return value < self.best_value - self.min_delta
        return value > self.best_value + self.min_delta

    def _update(self, trainer, logs) -> bool | None:
        """True when this epoch is the best so far (its weights are kept), False when not, None when unvalidated."""
        value = logs.get(self.monitor)
        if value is None and logs.get("validated") is False:
            return None  # ValidateEvery: this epoch was not validated, so there is nothing to compare
        if value is None:
            raise ValueError(f"{type(self).__name__} monitors {self.monitor!r} but this fit has no such metric: "
                             "pass a val_loader (or monitor a metric a callback records).")
        if not self._better(value):
            return False
        self.best_value = value
        trainer.history.best_epoch = len(trainer.history.epochs)  # index of this epoch once appended
        if self.restore_best:
            self.best_state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        return True

    def on_epoch_end(self, trainer, logs):
        self._update(trainer, logs)

    def on_fit_end(self, trainer):
        if self.restore_best and self.best_state is not None:
            trainer.model.load_state_dict(self.best_state)


class EarlyStopping(KeepBest):
    """Stop when the monitored validation metric has not improved for `patience` epochs; keep the best weights."""

    def __init__(self, patience: int = 3, monitor: str = "val_loss", mode: str | None = None,
                 restore_best: bool = True, min_delta: float = 0.0):
        super().__init__(monitor, mode, min_delta)
        self.patience, self.restore_best, self.wait = patience, restore_best, 0

    def on_fit_start(self, trainer):
        super().on_fit_start(trainer)
        self.wait = 0

    def on_epoch_end(self, trainer, logs):
        improved = self._update(trainer, logs)
        if improved:
            self.wait = 0
        elif improved is False:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.stop_training = True
                trainer.history.stopped_early = True


class ValidateEvery(Callback):
    """Validate after every k-th epoch and after the last (a tiny training set runs many short epochs: validating
    each would cost more than training). KeepBest and EarlyStopping then count validations, not epochs."""

    def __init__(self, every: int):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"val_every must be a whole number of epochs, at least 1, got {every!r}.")
        self.every = every

    def should_validate(self, trainer):
        epoch = trainer.epoch + 1
        return epoch % self.every == 0 or epoch == trainer.num_epochs or trainer.stop_training


class MaxSteps(Callback):
    """Stop after this many optimizer steps (benchmarks, smoke tests); LR schedules and progress bars count to it."""

    def __init__(self, steps: int):
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"MaxSteps needs a whole number of steps, at least 1, got {steps!r}.")
        self.steps = steps

    def on_batch_end(self, trainer):
        if trainer.step >= self.steps:
            trainer.stop_training = True


# --------------------------------------------------------------------------------------------------------------
# What trains, and how fast
# --------------------------------------------------------------------------------------------------------------
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
            lr = depth_lr(trainer.base_lr, self.decay, self.current, len(self.names))
            trainer.add_param_group({"params": params, "lr": lr, "base_lr": lr, "name": name,
                                     "weight_decay": trainer.weight_decay})


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

    order = -50

    def __init__(self, kind: str | None = None, warmup_steps: int = 0):
        if kind not in (None, "constant", "cosine", "linear"):
            raise ValueError(f"Unknown scheduler {kind!r}: use None, 'cosine' or 'linear'.")
        self.kind, self.warmup_steps = kind, int(warmup_steps)

    def on_before_step(self, trainer):
        factor = _schedule_factor(self.kind, trainer.step, trainer.total_steps or 1, self.warmup_steps)
        for g in trainer.optimizer.param_groups:
            g["lr"] = g.get("base_lr", g["lr"]) * factor


class GradientClipping(Callback):
    """Clip the gradients' overall norm to `max_norm` before every optimizer step (before any other
    on_before_step hook; on_after_backward hooks still see the unclipped gradients)."""

    order = -60

    def __init__(self, max_norm: float):
        if not max_norm or max_norm <= 0:
            raise ValueError(f"max_norm must be positive, got {max_norm!r}.")
        self.max_norm = max_norm

    def on_before_step(self, trainer):
        torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), self.max_norm)


class Precision(Callback):
    """bfloat16 autocast and the NHWC (channels_last) memory layout; "auto" turns each on for CUDA only.

    channels_last converts the model when the fit starts and every 4-d input before any other callback sees it.
    """

    order = -100

    def __init__(self, amp: bool | str = "auto", channels_last: bool | str = "auto"):
        self.amp, self.channels_last = amp, channels_last

    def _on(self, setting, device: torch.device) -> bool:
        return device.type == "cuda" if setting == "auto" else bool(setting)

    def on_fit_start(self, trainer):
        if self._on(self.channels_last, trainer.device):
            trainer.model.to(memory_format=torch.channels_last)

    def on_batch(self, trainer, batch):
        if self._on(self.channels_last, trainer.device):
            return to_device(batch, trainer.device, channels_last=True)
        return batch

    def forward_context(self, trainer):
        if self._on(self.amp, trainer.device):
            return torch.autocast(device_type=trainer.device.type, dtype=torch.bfloat16)
        return None


# --------------------------------------------------------------------------------------------------------------
# Watching a fit
# --------------------------------------------------------------------------------------------------------------
class MeasureMemory(Callback):
    """Peak training memory in History.peak_mem_mb (and each epoch's peak_mem_mb). CUDA: the allocator's peak.
    CPU: the first step, measured as it runs, and again after each change of what trains; the peak is the largest.
    See `labkit.memory.measure_training_memory` for the parts."""

    order = -90  # first at each epoch's end, so every other callback sees this epoch's peak

    def __init__(self):
        self.probe: MemoryProbe | None = None

    def on_epoch_start(self, trainer):
        if trainer.epoch == 0:  # counting starts with the training (CUDA: the allocator's peak is reset)
            self.probe = MemoryProbe(trainer.device).start()

    def step_context(self, trainer):
        return self.probe.watch()

    def on_batch_end(self, trainer):
        self.probe.record(trainer.model, trainer.optimizer)

    def on_param_group_added(self, trainer, group):
        if self.probe is not None:
            self.probe.remeasure()  # more trains now: the peak is measured again (CUDA's peak sees it anyway)

    def on_epoch_end(self, trainer, logs):
        logs["peak_mem_mb"] = self.probe.peak_mb()


class ProgressBar(Callback):
    """A tqdm bar over the fit's steps, with the epoch and the current loss.

    enabled: None follows LABKIT_PROGRESS (on unless it is 0; runners and tests set it); False turns it off."""

    order = 100

    def __init__(self, enabled: bool | None = None):
        self.enabled = enabled
        self.bar = None

    def on_fit_start(self, trainer):
        if not progress_enabled(self.enabled):
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(total=trainer.total_steps or None, desc="fit", leave=False)

    def on_batch_end(self, trainer):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(epoch=trainer.epoch + 1, loss=f"{float(trainer.loss.detach()):.3f}")

    def on_fit_end(self, trainer):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class LivePlot(Callback):
    """Redraws the loss curves in the notebook at the end of each epoch."""

    order = 90

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
