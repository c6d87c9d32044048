"""Freezing by depth, discriminative learning rates, and BatchNorm policy for frozen parts.

A model's depths are its named groups of layers from input to output. `labkit.assets.Backbone` names them
(stem, stage1 ... classifier); Hugging Face encoders get embeddings, layer0 ... layerN, classifier; any other
module falls back to its top-level children.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from torch import nn

__all__ = ["model_depths", "freeze_to", "unfreeze_params", "unfreeze", "freeze",
           "count_parameters", "depth_lr", "discriminative_param_groups", "frozen_batchnorm_eval", "resolve_depth"]

_BN_TYPES = (nn.modules.batchnorm._BatchNorm,)


def _hf_depths(model: nn.Module) -> "OrderedDict[str, nn.Module] | None":
    """Depths of a Hugging Face BERT-like model (embeddings, each transformer layer, the task head)."""
    base = getattr(model, "base_model", None)
    if base is None or not hasattr(base, "embeddings"):
        return None
    out: "OrderedDict[str, nn.Module]" = OrderedDict()
    out["embeddings"] = base.embeddings
    encoder = getattr(base, "encoder", None) or getattr(base, "transformer", None)
    layers = getattr(encoder, "layer", None) or getattr(encoder, "layers", None)
    if layers is None:
        return None
    for i, layer in enumerate(layers):
        out[f"layer{i}"] = layer
    head = nn.ModuleList([m for name, m in model.named_children() if m is not base])
    if len(head) == 0 and getattr(base, "pooler", None) is not None:
        head = nn.ModuleList([base.pooler])
    if getattr(base, "pooler", None) is not None and base.pooler not in list(head):
        head = nn.ModuleList([base.pooler, *head])
    out["classifier"] = head
    return out


def model_depths(model: nn.Module) -> "OrderedDict[str, nn.Module]":
    """Name -> module for each depth of `model`, input to output."""
    if hasattr(model, "depth_modules"):
        return model.depth_modules()
    hf = _hf_depths(model)
    if hf is not None:
        return hf
    children = OrderedDict(model.named_children())
    if not children:
        raise ValueError(f"{type(model).__name__} has no sub-modules to freeze by depth.")
    return children


def resolve_depth(model: nn.Module, depth: int | str) -> int:
    """Index of `depth` (a name, or an int counting from the input; negative counts from the output)."""
    names = list(model_depths(model))
    if isinstance(depth, str):
        if depth not in names:
            raise KeyError(f"Unknown depth {depth!r}; this model's depths are {names}.")
        return names.index(depth)
    index = int(depth)
    if not -len(names) <= index < len(names):
        raise IndexError(f"Depth index {depth} is out of range for {len(names)} depths {names}.")
    return index % len(names)


def freeze(model: nn.Module) -> nn.Module:
    """Freeze every parameter."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def unfreeze(model: nn.Module) -> nn.Module:
    """Make every parameter trainable."""
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def _batchnorm_param_ids(module: nn.Module) -> set[int]:
    """ids of the BatchNorm affine parameters inside `module`."""
    return {id(p) for m in module.modules() if isinstance(m, _BN_TYPES) for p in m.parameters(recurse=False)}


def unfreeze_params(module: nn.Module, train_batchnorm: bool = True) -> list[nn.Parameter]:
    """Make `module`'s parameters trainable (BatchNorm's too only if train_batchnorm); return those it switched on.

    train_batchnorm=False keeps BatchNorm affine weights frozen, so the fit loop also keeps those layers in eval
    mode (their pretrained running statistics stay fixed): what you want with a few images per batch.
    """
    skip = set() if train_batchnorm else _batchnorm_param_ids(module)
    switched = [p for p in module.parameters() if not p.requires_grad and id(p) not in skip]
    for p in switched:
        p.requires_grad_(True)
    return switched


def freeze_to(model: nn.Module, depth: int | str, train_batchnorm: bool = True) -> nn.Module:
    """Freeze every depth before `depth`; `depth` and everything after it are trainable.

    freeze_to(model, -1) trains only the classifier; freeze_to(model, "stage6") trains stage6 onwards;
    freeze_to(model, 0) trains everything.
    train_batchnorm: False keeps every BatchNorm frozen, also in the trainable depths (see `unfreeze_params`).
    """
    start = resolve_depth(model, depth)
    for i, (_, module) in enumerate(model_depths(model).items()):
        for p in module.parameters():
            p.requires_grad_(False)
        if i >= start:
            unfreeze_params(module, train_batchnorm)
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters, counting shared tensors once."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def depth_lr(lr: float, decay: float, index: int, num_depths: int) -> float:
    """The learning rate of depth `index` (0 = the first) of `num_depths`: the last depth (the classifier) gets `lr`,
    each earlier one `decay` times the next. The one per-depth LR rule: discriminative_param_groups and
    GradualUnfreezing both use it."""
    return lr * decay ** (num_depths - 1 - index)


def discriminative_param_groups(model: nn.Module, lr: float, decay: float = 0.5,
                                lrs: dict[str, float] | None = None, weight_decay: float = 0.0,
                                group_by: Sequence[Sequence[str]] | None = None) -> list[dict]:
    """Optimizer parameter groups: the classifier gets `lr`, each earlier depth `decay` times the next one.

    lrs: explicit learning rate per depth name (overrides the decay rule for those depths).
    Only trainable parameters are included; frozen depths get no group. Each group carries its depth `name`.
    """
    depths = model_depths(model)
    names = list(depths)
    groups = []
    for i, name in enumerate(names):
        params = [p for p in depths[name].parameters() if p.requires_grad]
        if not params:
            continue
        lr_i = (lrs or {}).get(name, depth_lr(lr, decay, i, len(names)))
        groups.append({"params": params, "lr": float(lr_i), "name": name, "weight_decay": weight_decay})
    if not groups:
        raise ValueError("No trainable parameters: unfreeze something (e.g. freeze_to(model, -1)) before training.")
    return groups


def frozen_batchnorm_eval(model: nn.Module) -> list[nn.Module]:
    """Put BatchNorm layers whose parameters are all frozen into eval mode (running statistics stay fixed).

    Called by the fit loop after model.train(): a frozen backbone must not drift its statistics to the
    new data (a classic silent pitfall). Returns the layers it switched.
    """
    switched = []
    for m in model.modules():
        if isinstance(m, _BN_TYPES):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()
                switched.append(m)
    return switched
