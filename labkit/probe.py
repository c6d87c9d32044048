"""Looking inside a backbone depth by depth: pooled features of every depth in one pass, layer-wise linear probes,
spatial size and receptive field per depth, the images that excite a channel most, and 2-D projections.

Everything works from `Backbone.depth_modules()` / `feature_depths`, so it runs on any registry backbone
(EfficientNet-Lite0: stem, stage1..stage7, top; ResNet: stem, layer1..layer4). Activations are captured with
`labkit.hooks.record_activations`, which always removes its hooks.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from labkit._torchutil import eval_mode, progress_enabled
from labkit.data import make_loader
from labkit.features import (
    PROBE_CS,
    cache_get,
    cache_put,
    choose_C,
    clear_memory_cache,
    computing,
    feature_keys,
    linear_probe,
)
from labkit.features import STATS as feature_stats  # one counter: labkit.features.STATS
from labkit.hooks import record_activations
from labkit.repro import resolve_device

__all__ = ["depth_features", "clear_memory_cache", "layerwise_probe", "largest_gap", "probe_rows",
           "activation_maps", "spatial_shapes", "receptive_fields", "depth_table", "first_conv", "filter_smoothness",
           "top_activating", "pick_channels", "project_2d"]

# clear_memory_cache is labkit.features' (one feature cache), named here beside depth_features


# --------------------------------------------------------------------------------------------------------------
# Pooled features of many depths in one forward pass
# --------------------------------------------------------------------------------------------------------------

def _resolve_depths(backbone, depths: Sequence[str] | None) -> list[str]:
    """Requested depths in network order (default: every feature depth); unknown names are a clear error.

    A name is a depth ('stage6') or a block inside one ('stage6.0': the first block of stage6).
    """
    known = list(backbone.depth_names)
    if depths is None:
        return list(backbone.feature_depths)
    if isinstance(depths, str):
        depths = [depths]
    names = list(dict.fromkeys(depths))
    for name in names:
        _module_for(backbone, name)  # raises a clear error for an unknown name
    # network order: by depth, then blocks of a depth before the depth's own output
    return sorted(names, key=lambda n: (known.index(n.split(".", 1)[0]), "." not in n, n))


def _module_for(backbone, name: str) -> nn.Module:
    """The module behind a depth name ('stage3') or a block path inside a depth ('stage3.1')."""
    head, _, rest = str(name).partition(".")
    modules = backbone.depth_modules()
    if head not in modules:
        raise KeyError(f"Unknown depth {name!r} for {backbone.name}; choose from {list(modules)} "
                       "(backbone.depth_names), or a block inside one such as "
                       f"'{backbone.feature_depths[-2]}.0'.")
    if not rest:
        return modules[head]
    try:
        return modules[head].get_submodule(rest)
    except AttributeError:
        children = [n for n, _ in modules[head].named_children()]
        raise KeyError(f"{head!r} of {backbone.name} has no block {rest!r}; its blocks are {children}.") from None


def _deepest_depth(backbone, names: Sequence[str]) -> str:
    """The depth a forward pass must reach to produce every name's output."""
    known = list(backbone.depth_names)
    return max((n.split(".", 1)[0] for n in names), key=known.index)


def _pool(output: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) feature map -> (N, C) by global average pooling; (N, C) logits pass through."""
    return output.mean(dim=(2, 3)) if output.dim() == 4 else output.reshape(len(output), -1)


def depth_features(backbone, ds, depths: Sequence[str] | None = None, size: int | None = None,
                   batch_size: int = 64, device: str | None = "auto", cache: bool = True,
                   progress: bool | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Globally average-pooled features of `ds` at several depths: {depth: (X (N, C) float32, y (N,))}.

    One forward pass per batch records every requested depth with hooks, instead of one pass per depth.
    depths: names from backbone.depth_names (default: every feature depth), 'classifier' for the logits, or a
        block inside a depth such as 'stage6.0'.
    Results share labkit.features' disk cache, so extract_features(backbone, ds, depth, size) reuses them.
    """
    names = _resolve_depths(backbone, depths)
    size = int(size or backbone.preprocessing.size)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    keys = feature_keys(backbone, ds, names, size) if cache else {}
    for d in list(names if cache else []):
        found, _ = cache_get(keys[d])
        if found is not None:
            out[d] = found
    todo = [d for d in names if d not in out]
    if not todo:
        return {d: out[d] for d in names}
    if not cache:
        out.update(_record_depths(backbone, ds, todo, size, batch_size, device, progress))
        return {d: out[d] for d in names}
    with computing([keys[d] for d in todo]):  # another run computing these depths: wait, then read its files
        for d in todo:
            found, _ = cache_get(keys[d])
            if found is not None:
                out[d] = found
        todo = [d for d in todo if d not in out]
        if todo:
            for d, (X, y) in _record_depths(backbone, ds, todo, size, batch_size, device, progress).items():
                out[d] = cache_put(keys[d], X, y)
    return {d: out[d] for d in names}


def _record_depths(backbone, ds, todo, size, batch_size, device, progress) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One pass over `ds` that pools every depth in `todo` (depth_features without the cache)."""
    device = resolve_device(device)
    backbone.to(device)
    modules = {d: _module_for(backbone, d) for d in todo}
    last = _deepest_depth(backbone, todo)
    loader = make_loader(ds, backbone.preprocessing, batch_size=batch_size, size=size)
    iterator = loader
    if progress_enabled(progress):
        from tqdm.auto import tqdm

        iterator = tqdm(loader, desc=f"features {backbone.name}@{len(todo)} depths", leave=False)
    pooled: dict[str, list[torch.Tensor]] = {d: [] for d in todo}
    with eval_mode(backbone), torch.inference_mode(), record_activations(modules) as acts:
        for x, _ in iterator:
            feature_stats["backbone_batches"] += 1
            x = x.to(device)
            # run only as deep as needed: the logits need the whole network, a shallow depth only its prefix
            if last == "classifier":
                backbone(x)
            else:
                backbone.forward_to(x, last)
            for d in todo:
                pooled[d].append(_pool(acts[d]).float().cpu())
    return {d: (torch.cat(pooled[d]).numpy().astype(np.float32), ds.labels.copy()) for d in todo}


def layerwise_probe(backbone, train_ds, test_ds, depths: Sequence[str] | None = None, size: int | None = None,
                    C: float = 1.0, val_ds=None, Cs: Sequence[float] | None = None,
                    **feature_kwargs) -> dict[str, float]:
    """Linear-probe test accuracy at every depth: {depth: accuracy}, in network order.

    C: inverse regularisation strength of the logistic regression (labkit.features.linear_probe).
    val_ds: validation images; with them, each depth's C is chosen on validation from `Cs`
        (labkit.features.choose_C) instead of the fixed C.
    """
    train = depth_features(backbone, train_ds, depths, size, **feature_kwargs)
    test = depth_features(backbone, test_ds, depths, size, **feature_kwargs)
    if val_ds is None:
        return {d: linear_probe(*train[d], *test[d], C=C) for d in train}
    val = depth_features(backbone, val_ds, depths, size, **feature_kwargs)
    return {d: linear_probe(*train[d], *test[d], C=choose_C(*train[d], *val[d], Cs=Cs or PROBE_CS)) for d in train}


def largest_gap(pretrained: Mapping[str, float], random: Mapping[str, float]) -> str:
    """The depth where pretrained minus random probe accuracy is largest (the first one on ties)."""
    common = [d for d in pretrained if d in random]
    if not common:
        raise ValueError("The two probe curves share no depth: compute both with the same depths.")
    return max(common, key=lambda d: pretrained[d] - random[d])


def probe_rows(curves: Mapping[str, Mapping[str, float]], digits: int = 3) -> list[dict]:
    """One table row per depth with one column per curve (e.g. pretrained, random init) and their gap."""
    labels = list(curves)
    depths = list(curves[labels[0]])
    rows = []
    for d in depths:
        row = {"depth": d, **{label: round(curves[label][d], digits) for label in labels}}
        if len(labels) == 2:
            row["gap"] = round(curves[labels[0]][d] - curves[labels[1]][d], digits)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------------------------
# Activation maps, spatial size and receptive field per depth
# --------------------------------------------------------------------------------------------------------------
def activation_maps(backbone, x: torch.Tensor, depths: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Feature maps of one preprocessed image x (1, 3, H, W) at each depth: {depth: (C, h, w)}."""
    names = [d for d in _resolve_depths(backbone, depths) if not d.startswith("classifier")]
    if x.dim() == 3:
        x = x.unsqueeze(0)
    modules = {d: _module_for(backbone, d) for d in names}
    device = next(backbone.parameters()).device
    with eval_mode(backbone), torch.no_grad(), record_activations(modules) as acts:
        backbone.forward_to(x.to(device), _deepest_depth(backbone, names))
    return {d: acts[d][0].cpu() for d in names}


def spatial_shapes(backbone, size: int, depths: Sequence[str] | None = None) -> dict[str, tuple[int, int, int]]:
    """(channels, height, width) of every depth's output for a size x size input."""
    x = torch.zeros(1, 3, int(size), int(size), device=next(backbone.parameters()).device)
    return {d: tuple(m.shape) for d, m in activation_maps(backbone, x, depths).items()}


def receptive_fields(backbone, depths: Sequence[str] | None = None, canvas: int = 256, seed: int = 0
                     ) -> dict[str, int]:
    """Receptive field in input pixels of one unit at each depth (measured, so it works for any architecture).

    The gradient of the centre unit of a depth's map with respect to the input is non-zero exactly on the pixels
    that unit can see; the side of their bounding box is the receptive field. canvas: input size used; a value
    equal to canvas means "at least canvas" (the unit sees the whole input).
    """
    names = [d for d in _resolve_depths(backbone, depths) if not d.startswith("classifier")]
    device = next(backbone.parameters()).device
    g = torch.Generator().manual_seed(seed)
    # two noise images: a pixel whose gradient happens to be 0 in one (a ReLU off) is rarely 0 in both
    x = torch.randn(2, 3, canvas, canvas, generator=g).to(device).requires_grad_(True)
    modules = {d: _module_for(backbone, d) for d in names}
    out: dict[str, int] = {}
    h = x
    with eval_mode(backbone), torch.enable_grad(), record_activations(modules, detach=False) as acts:
        # run the network depth by depth (as forward_to does) so it can stop once a unit sees the whole canvas:
        # receptive fields only grow, and the deep backward passes are the expensive ones
        for depth, step in backbone.depth_modules().items():
            if depth == "classifier" or len(out) == len(names):
                break
            h = step(h)
            for d in (n for n in names if n.split(".", 1)[0] == depth):
                if out and max(out.values()) >= canvas:
                    out[d] = canvas
                    continue
                fmap = acts[d]  # (2, C, h, w)
                unit = fmap[:, :, fmap.shape[-2] // 2, fmap.shape[-1] // 2].abs().sum()
                (grad,) = torch.autograd.grad(unit, x, retain_graph=True)
                seen = grad.abs().sum(dim=(0, 1)) > 0  # (canvas, canvas): pixels that influence the unit
                rows = torch.nonzero(seen.any(dim=1)).flatten()
                cols = torch.nonzero(seen.any(dim=0)).flatten()
                out[d] = 0 if len(rows) == 0 else int(max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1))
    return {d: out[d] for d in names}


def depth_table(backbone, size: int, canvas: int = 256) -> list[dict]:
    """One row per feature depth: channels, map size at `size` px, stride and receptive field in input pixels.

    canvas: input size for measuring stride and receptive field (fields of at least canvas px show as '>=canvas').
    """
    shapes = spatial_shapes(backbone, size)
    strides = {d: round(canvas / h) for d, (_, h, _) in spatial_shapes(backbone, canvas).items()}
    fields = receptive_fields(backbone, canvas=canvas)
    rows = []
    for d, (c, h, w) in shapes.items():
        rf = fields[d]
        rows.append({"depth": d, "channels": c, "map size": f"{h}x{w}", "stride": strides[d],
                     "receptive field (px)": f">={canvas}" if rf >= canvas else rf,
                     "sees whole image": rf >= size})
    return rows


# --------------------------------------------------------------------------------------------------------------
# First-layer filters
# --------------------------------------------------------------------------------------------------------------
def first_conv(backbone) -> nn.Conv2d:
    """The first convolution the input meets (the stem's filters, whose weights can be shown as RGB images)."""
    first = backbone.depth_modules()[backbone.feature_depths[0]]
    for m in first.modules():
        if isinstance(m, nn.Conv2d):
            return m
    raise ValueError(f"{backbone.name}: the first depth {backbone.feature_depths[0]!r} has no Conv2d.")


def filter_smoothness(weight: torch.Tensor) -> float:
    """Mean correlation between horizontally and vertically neighbouring weights of conv filters (out, in, k, k).

    Structured filters (edges, colour blobs) vary smoothly, so neighbours correlate (towards 1); independent
    random weights give about 0.
    """
    w = weight.detach().float().cpu()
    if w.dim() != 4 or min(w.shape[-2:]) < 2:
        raise ValueError(f"Expected conv weights (out, in, k, k) with k >= 2, got {tuple(w.shape)}.")
    w = w - w.mean(dim=(1, 2, 3), keepdim=True)  # per filter: correlation, not shared offset
    pairs = [(w[..., :, :-1], w[..., :, 1:]), (w[..., :-1, :], w[..., 1:, :])]
    a = torch.cat([p[0].reshape(len(w), -1) for p in pairs], dim=1)
    b = torch.cat([p[1].reshape(len(w), -1) for p in pairs], dim=1)
    num = (a * b).sum(1)
    den = (a.pow(2).sum(1) * b.pow(2).sum(1)).sqrt().clamp_min(1e-12)
    return float((num / den).mean())


# --------------------------------------------------------------------------------------------------------------
# What a channel responds to
# --------------------------------------------------------------------------------------------------------------
def top_activating(X: np.ndarray, channel: int, k: int = 8) -> np.ndarray:
    """Indices of the k examples whose pooled feature `channel` is largest, strongest first."""
    X = np.asarray(X)
    if not 0 <= channel < X.shape[1]:
        raise IndexError(f"channel {channel} does not exist: these features have {X.shape[1]} channels.")
    return np.argsort(-X[:, channel], kind="stable")[:k]


def pick_channels(X: np.ndarray, n: int = 4) -> list[int]:
    """The n channels whose pooled activation varies most across the examples (the most selective ones)."""
    return [int(c) for c in np.argsort(-np.asarray(X).std(axis=0), kind="stable")[:n]]


# --------------------------------------------------------------------------------------------------------------
# Embedding projection
# --------------------------------------------------------------------------------------------------------------
def project_2d(X: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Standardised features (N, C) -> 2-D points (N, 2) with PCA (fast, deterministic) or t-SNE (slower)."""
    from sklearn.preprocessing import StandardScaler

    Z = StandardScaler().fit_transform(np.asarray(X, dtype=np.float64))
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(Z)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(2, (len(Z) - 1) // 3)))
        return TSNE(n_components=2, random_state=seed, init="pca", perplexity=perplexity).fit_transform(Z)
    raise ValueError(f"Unknown projection {method!r}: use 'pca' or 'tsne'.")
