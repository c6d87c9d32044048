"""Small torch helpers every lesson module needs (eval mode, progress bars, a model's device, a weights hash).

A leaf module: it imports torch and numpy only, never another labkit module, so the model registry, viz, features,
probe and text use these without importing the training loop. `labkit.train` publishes eval_mode beside
`evaluate` and `predict`, which use it (the name the notebooks teach: `with labkit.train.eval_mode(model):`).
"""
from __future__ import annotations

import contextlib
import hashlib
import os

import numpy as np
import torch
from torch import nn

__all__ = ["eval_mode", "progress_enabled", "model_device", "weights_digest"]


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Switch `model` (and every submodule) to eval mode, then restore each module's previous mode."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, was_training in modes:
            m.training = was_training


def progress_enabled(progress: bool | None = None) -> bool:
    """Progress bars on unless turned off here or by LABKIT_PROGRESS=0 (runners and tests set it)."""
    if progress is not None:
        return bool(progress)
    return os.environ.get("LABKIT_PROGRESS", "1").strip().lower() not in {"0", "false", "no", "off"}


@contextlib.contextmanager
def hub_progress(progress: bool | None = None):
    """Hugging Face's own progress bars ("Loading weights", "writing model shards") follow `progress_enabled`
    inside the block: off under LABKIT_PROGRESS=0, so a papermill run commits no stale progress widgets."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # no transformers: nothing to quiet
        yield
        return
    bars_were_on = hf_logging.is_progress_bar_enabled()
    if not progress_enabled(progress):
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def weights_digest(module: nn.Module, skip: nn.Module | None = None) -> str:
    """A short hash of a module's weights, so two random inits (or a fine-tuned copy) never share a cache entry.

    skip: a part of `module` left out of the hash, e.g. a classification head that the hashed features never pass
        through (a fresh head per run would otherwise give the same features a new cache key every time).
    """
    skipped = {t.data_ptr() for t in skip.state_dict().values()} if skip is not None else set()
    h = hashlib.sha1()
    for name, t in sorted(module.state_dict().items()):
        if t.dtype.is_floating_point and t.numel() and t.data_ptr() not in skipped:
            h.update(name.encode())
            flat = t.detach().reshape(-1).float()
            # a strided sample plus the sum: cheap and sensitive to any change of the weights
            h.update(flat[:: max(1, flat.numel() // 64)].cpu().numpy().tobytes())
            h.update(np.float64(flat.double().sum().item()).tobytes())
    return h.hexdigest()[:12]
