"""labkit's one batch convention, shared by the training loop and everything else that reads batches.

A batch is either a tuple `(inputs, targets, ...)` (vision, cached features) or a dict whose "labels" entry holds
the targets and whose other entries are the model's keyword inputs (Hugging Face text, replay's {"x", "task"}).
A leaf module: it imports torch only.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["to_device", "split_batch", "forward", "take"]


def to_device(obj, device, channels_last: bool = False):
    """`obj` (a tensor, or a dict/list/tuple of them) on `device`; 4-d tensors in NHWC layout when channels_last."""
    if isinstance(obj, torch.Tensor):
        obj = obj.to(device, non_blocking=True)
        if channels_last and obj.dim() == 4:
            obj = obj.contiguous(memory_format=torch.channels_last)
        return obj
    if isinstance(obj, dict):
        return {k: to_device(v, device, channels_last) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device, channels_last) for v in obj)
    return obj


def split_batch(batch) -> tuple[Any, torch.Tensor]:
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


def forward(model: nn.Module, inputs) -> torch.Tensor:
    """The model's logits for `inputs`: keyword inputs for a dict, else one positional input."""
    out = model(**inputs) if isinstance(inputs, dict) else model(inputs)
    return getattr(out, "logits", out)


def take(inputs, rows: slice):
    """The rows `rows` of every input (a tensor, or each tensor of a dict of inputs)."""
    if isinstance(inputs, dict):
        return {k: v[rows] if torch.is_tensor(v) else v for k, v in inputs.items()}
    return inputs[rows]
