"""How much memory a training step needs, measured the same way on every device.

`measure_training_memory` splits one step into weights, gradients, optimizer state, activations and workspace;
`MemoryProbe` is what `fit` uses (through the `labkit.callbacks.MeasureMemory` callback) for History.peak_mem_mb.
Every number is in bytes here; `bytes_to_mb` converts to the MB (MiB) that labkit shows.
"""
from __future__ import annotations

import contextlib
import math
import weakref
from typing import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from labkit._batch import forward, split_batch, to_device
from labkit._torchutil import model_device
from labkit.freeze import frozen_batchnorm_eval

__all__ = ["MemoryProbe", "measure_training_memory", "bytes_to_mb"]


def _storage_key(t: torch.Tensor) -> int:
    """One key per storage. On a real device the data pointer; on the meta device (no data, every pointer is 0) the
    storage object's own handle, so that a step measured on meta (a model too large to run here) counts as on a
    real device."""
    storage = t.untyped_storage()
    return storage._cdata if t.device.type == "meta" else storage.data_ptr()


class _TensorHighWater(TorchDispatchMode):
    """Bytes held by the tensors that the ops inside the block create: `live` now and the `peak` so far.

    A TorchDispatchMode sees every op's outputs; each output storage is counted once and released when the last
    tensor using it is freed. Works on any device, so the CPU gets the same high-water mark CUDA's allocator keeps.
    """

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._storages: dict[int, list[int]] = {}  # storage key -> [bytes, live tensors using it]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out

    def _track(self, t: torch.Tensor) -> None:
        key, nbytes = _storage_key(t), t.untyped_storage().nbytes()
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
                nbytes = t.untyped_storage().nbytes()
                self._saved[(_storage_key(t), nbytes)] = nbytes
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
        param_ptrs = {_storage_key(p) for p in model.parameters()}
        activations = sum(v for k, v in self._saved.items() if k[0] not in param_ptrs)
        workspace = max(0, self.peak - activations)
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
        state = trainable * optimizer_states_per_param if optimizer_state_bytes is None else optimizer_state_bytes
        total = weights + trainable + state + activations + workspace
        return {"weights": weights, "gradients": trainable, "optimizer_state": state,
                "activations": activations, "workspace": workspace, "total": total}


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
    were. A model and batch on the meta device are measured without running anything (shapes only): the way to
    measure a network too large for the machine, e.g. a random-init ResNet-50 at 224 px on a laptop.
    """
    loss_fn = loss_fn or nn.functional.cross_entropy
    device = model_device(model)
    inputs, targets = split_batch(to_device(batch, device))
    was_training = model.training
    # the measuring step must not change the model: keep BatchNorm running statistics as they were
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    model.train()
    frozen_batchnorm_eval(model)
    with _ForwardMemory() as probe:
        logits = forward(model, inputs)
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
