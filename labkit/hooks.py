"""Forward hooks as context managers: handles are always removed, even when the forward pass fails."""
from __future__ import annotations

import contextlib
from typing import Iterator, Mapping

from torch import nn

__all__ = ["record_activations", "count_calls"]


@contextlib.contextmanager
def record_activations(modules: Mapping[str, nn.Module], detach: bool = True) -> Iterator[dict]:
    """Collect each named module's output during the forward passes run inside the block.

    with record_activations({"stage3": backbone.depth_modules()["stage3"]}) as acts:
        backbone(x)
    acts["stage3"]  # (N, C, H, W) output of that depth (the last forward pass inside the block)
    """
    store: dict = {}
    handles = []

    def make_hook(name):
        def hook(module, inputs, output):
            store[name] = output.detach() if detach and hasattr(output, "detach") else output
        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        yield store
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def count_calls(module: nn.Module) -> Iterator[dict]:
    """Count forward calls of `module` inside the block (tests use it to prove a cache skipped the backbone)."""
    counter = {"calls": 0}

    def hook(mod, inputs, output):
        counter["calls"] += 1

    handle = module.register_forward_hook(hook)
    try:
        yield counter
    finally:
        handle.remove()
