"""Guards: cheap checks that catch the silent mistakes of transfer learning before they cost a result.

Each guard returns what it found and warns (a `GuardWarning`) when something is wrong; `assert_eval_mode` raises.
- `check_input_statistics`: a loader's batches do not look normalised with the backbone's statistics
  (no normalisation, normalised twice, another model's mean/std).
- `check_channels`, `check_resolution`: a grayscale batch for an RGB backbone, an empty channel, a resolution
  far from the one the weights were trained at. `warn_low_resolution` (a notebook's parameter cell) prints a
  warning when a run is set under half the weights' resolution; `low_resolution_note` is the sentence that claims
  judged at such a setting carry in their row (`note=`).
- `check_eval_mode` / `assert_eval_mode`: dropout or BatchNorm still in train mode while evaluating.
- `batchnorm_state`, `batchnorm_drift`, `check_frozen_batchnorm`, `FrozenBatchNormGuard`: a "frozen" backbone
  whose BatchNorm running statistics moved anyway.
- `find_near_duplicates`: test images that (almost) also sit in the training set.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from labkit.assets import IMAGENET_MEAN, IMAGENET_STD, load_backbone
from labkit.train import Callback

__all__ = ["GuardWarning", "InputStatistics", "check_input_statistics", "implied_pixels", "check_channels",
           "check_resolution", "weights_resolution", "low_resolution_note", "warn_low_resolution",
           "check_eval_mode", "assert_eval_mode", "batchnorm_state", "batchnorm_drift",
           "check_frozen_batchnorm", "FrozenBatchNormGuard", "find_near_duplicates", "check_no_duplicates",
           "show_guard"]

_BN = nn.modules.batchnorm._BatchNorm
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


class GuardWarning(UserWarning):
    """A labkit guard found a likely mistake."""


def _warn(message: str) -> None:
    warnings.warn(message, GuardWarning, stacklevel=3)


def _preprocessing_of(backbone):
    """The Preprocessing of a Backbone (or the Preprocessing itself)."""
    pre = getattr(backbone, "preprocessing", backbone)
    if not hasattr(pre, "mean") or not hasattr(pre, "std"):
        raise TypeError("Pass a labkit Backbone (or its .preprocessing) so the guard knows the expected "
                        f"statistics; got {type(backbone).__name__}.")
    return pre


def _first_batches(loader_or_batch, max_batches: int) -> torch.Tensor:
    """Image tensor (N, C, H, W) from a tensor, an (x, y) batch, or the first batches of a loader."""
    if isinstance(loader_or_batch, torch.Tensor):
        return loader_or_batch
    if isinstance(loader_or_batch, (tuple, list)) and loader_or_batch and isinstance(loader_or_batch[0],
                                                                                      torch.Tensor):
        return loader_or_batch[0]
    xs = []
    for batch in loader_or_batch:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"Expected batches of image tensors, got {type(x).__name__}.")
        xs.append(x)
        if len(xs) >= max_batches:
            break
    if not xs:
        raise ValueError("The loader is empty: there is nothing to check.")
    return torch.cat(xs)


# --------------------------------------------------------------------------------------------------------------
# Input statistics
# --------------------------------------------------------------------------------------------------------------
def implied_pixels(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Undo a normalisation: the [0, 1] pixels that `x` came from if it was normalised with (mean, std)."""
    m = torch.as_tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return x * s + m


def _plausible(pixels: torch.Tensor, tol: float, dark: float, bright: float) -> bool:
    """Do these look like real [0, 1] pixels? In range, and the batch has dark and bright pixels in each channel."""
    lo = pixels.amin(dim=(0, 2, 3))
    hi = pixels.amax(dim=(0, 2, 3))
    return bool((lo >= -tol).all() and (hi <= 1 + tol).all() and (lo <= dark).all() and (hi >= bright).all())


@dataclass
class InputStatistics:
    """What `check_input_statistics` measured: per-channel mean/std/range and the explanations that fit."""

    mean: list[float]
    std: list[float]
    min: list[float]
    max: list[float]
    ok: bool
    looks_like: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        fmt = lambda v: "(" + ", ".join(f"{a:.2f}" for a in v) + ")"  # noqa: E731
        verdict = "matches the backbone" if self.ok else "does NOT match the backbone"
        also = f"; looks like: {', '.join(self.looks_like)}" if self.looks_like and not self.ok else ""
        return (f"input mean {fmt(self.mean)}, std {fmt(self.std)}, range {min(self.min):.2f}..{max(self.max):.2f}"
                f" -> {verdict}{also}")


def check_input_statistics(loader_or_batch, backbone, max_batches: int = 2, tol: float = 0.05,
                           dark: float = 0.25, bright: float = 0.75, warn: bool = True) -> InputStatistics:
    """Warn when batches do not look normalised with the backbone's mean/std.

    The check undoes the backbone's normalisation and asks whether the result looks like real pixels: inside
    [0, 1] (+- tol) with some dark (<= dark) and some bright (>= bright) pixels in every channel over the
    batches. If not, it tries the usual mistakes (no normalisation, 0-255 pixels, normalised twice, ImageNet or
    mean=std=0.5 statistics) and names the ones that fit.
    loader_or_batch: a loader of (x, y) batches, one (x, y) batch, or an image tensor (N, 3, H, W).
    """
    pre = _preprocessing_of(backbone)
    x = _first_batches(loader_or_batch, max_batches).detach().float().cpu()
    if x.dim() != 4:
        raise ValueError(f"Expected images of shape (N, C, H, W), got {tuple(x.shape)}.")
    if x.shape[1] != len(pre.mean):
        raise ValueError(f"The batch has {x.shape[1]} channel(s) but the backbone expects {len(pre.mean)}: "
                         "see labkit.guards.check_channels.")
    ok = _plausible(implied_pixels(x, pre.mean, pre.std), tol, dark, bright)
    looks_like = []
    if not ok:
        twice = implied_pixels(implied_pixels(x, pre.mean, pre.std), pre.mean, pre.std)
        candidates = {
            "no normalisation (pixels in [0, 1])": x,
            "pixels in 0-255, not scaled": x / 255.0,
            "normalised twice": twice,
            "normalised with ImageNet mean/std": implied_pixels(x, IMAGENET_MEAN, IMAGENET_STD),
            "normalised with mean=std=0.5": implied_pixels(x, (0.5,) * 3, (0.5,) * 3),
        }
        looks_like = [name for name, pixels in candidates.items() if _plausible(pixels, tol, dark, bright)]
        channel_mean = x.mean(dim=(0, 2, 3))
        channel_std = x.std(dim=(0, 2, 3))
        if not looks_like and (channel_mean.abs() < 0.1).all() and ((channel_std - 1).abs() < 0.1).all():
            looks_like.append("standardised with the data's own mean/std")
    report = InputStatistics(mean=x.mean(dim=(0, 2, 3)).tolist(), std=x.std(dim=(0, 2, 3)).tolist(),
                             min=x.amin(dim=(0, 2, 3)).tolist(), max=x.amax(dim=(0, 2, 3)).tolist(), ok=ok,
                             looks_like=looks_like)
    if warn and not ok:
        _warn(f"These inputs do not look normalised with the backbone's statistics (mean={tuple(pre.mean)}, "
              f"std={tuple(pre.std)}): {report}. Build loaders with "
              "labkit.data.make_loader(ds, backbone), which applies the backbone's own preprocessing once.")
    return report


# --------------------------------------------------------------------------------------------------------------
# Channels and resolution
# --------------------------------------------------------------------------------------------------------------
def check_channels(loader_or_batch, backbone=None, max_batches: int = 1, warn: bool = True) -> list[str]:
    """Problems with the channels of an image batch for an RGB backbone: 1 channel, or a channel with no signal.

    A grayscale image copied into one channel (the others left zero) runs without an error and silently
    costs accuracy; the fix is to repeat it into all three channels.
    """
    x = _first_batches(loader_or_batch, max_batches).detach().float().cpu()
    problems = []
    if x.dim() != 4:
        problems.append(f"expected a batch of shape (N, C, H, W), got {tuple(x.shape)}")
    elif x.shape[1] != 3:
        fix = " (grayscale: repeat it, x.expand(-1, 3, -1, -1), or use labkit.data loaders)" if x.shape[1] == 1 \
            else ""
        problems.append(f"the backbone expects 3 channels (RGB), the batch has {x.shape[1]}{fix}")
    else:
        spread = x.amax(dim=(0, 2, 3)) - x.amin(dim=(0, 2, 3))
        flat = [c for c in range(3) if float(spread[c]) < 1e-6]
        if flat and len(flat) < 3:
            problems.append(f"channel(s) {flat} are constant over the whole batch: is a grayscale image in only "
                            "one channel? Repeat it into all three, x.expand(-1, 3, -1, -1)")
    if warn and problems:
        _warn("Channel problem: " + "; ".join(problems) + ".")
    return problems


def check_resolution(loader_or_batch, backbone, size: int | None = None, max_ratio: float = 2.0,
                     max_batches: int = 1, warn: bool = True) -> list[str]:
    """Problems with the resolution of a batch: more than `max_ratio` away from `size` (default: the weights').

    Nothing fails at the wrong resolution: a CNN pools whatever it gets. But objects far smaller (or larger)
    than the ones it was trained on give weaker features, a silent cost.
    """
    pre = _preprocessing_of(backbone)
    size = int(size or pre.size)
    x = _first_batches(loader_or_batch, max_batches)
    h, w = int(x.shape[-2]), int(x.shape[-1])
    problems = []
    ratio = max(size / min(h, w), max(h, w) / size)
    if ratio > max_ratio:
        problems.append(f"images are {h}x{w} px but the weights expect about {size}x{size} px (x{ratio:.1f} off); "
                        f"resize them, e.g. make_loader(ds, backbone, size={size})")
    if warn and problems:
        _warn("Resolution problem: " + "; ".join(problems) + ".")
    return problems


def weights_resolution(backbone_name: str) -> int:
    """The input size (px) a registry backbone's weights were trained at, without loading the weights."""
    return int(load_backbone(backbone_name, pretrained=False).preprocessing.size)


LOW_RESOLUTION_RATIO = 0.5  # below this share of the weights' resolution, pretrained features are much weaker


def low_resolution_note(resolution: int | None, weights_resolution: int | None) -> str:
    """The sentence a claim judged at `resolution` carries when that is under half the weights' resolution; "" else.

    Notebooks pass it as `note=` to the claims they judge at that setting, so the ledger row says why a transfer
    claim may fail there.
    """
    if not resolution or not weights_resolution or resolution >= LOW_RESOLUTION_RATIO * weights_resolution:
        return ""
    return (f"judged at {resolution} px, {weights_resolution / resolution:.0f}x below the {weights_resolution} px "
            "the weights were trained at, where pretrained features lose much of their advantage")


def warn_low_resolution(resolution: int | None, weights_resolution: int | None, backbone_name: str = "") -> str:
    """Print a warning when `resolution` is under half the weights' resolution; return `low_resolution_note`.

    The run goes on (a student may want to see the effect), but never silently. One line, so that `labkit run`
    can show it on the console too.
    """
    note = low_resolution_note(resolution, weights_resolution)
    if note:
        weights = f"the {backbone_name} weights" if backbone_name else "the weights"
        print(f"WARNING: resolution={resolution} px is {weights_resolution / resolution:.0f}x below the "
              f"{weights_resolution} px {weights} were trained at. The run goes on, but expect pretrained features "
              "to lose much of their advantage (they may score below random-init features or raw pixels); claims "
              "judged here say so in their row. Use resolution="
              f"{int(LOW_RESOLUTION_RATIO * weights_resolution)} or more to see what the weights can do.")
    return note


# --------------------------------------------------------------------------------------------------------------
# Evaluation mode
# --------------------------------------------------------------------------------------------------------------
def check_eval_mode(model: nn.Module, warn: bool = True) -> list[str]:
    """Names of the dropout and BatchNorm layers that are in train mode (they behave differently in eval mode).

    Evaluate with labkit.train.evaluate / predict, or inside `with labkit.train.eval_mode(model):`, which switch
    every layer to eval mode and restore the previous mode afterwards.
    """
    offenders = [name or type(model).__name__ for name, m in model.named_modules()
                 if m.training and isinstance(m, _DROPOUT + (_BN,))]
    if warn and offenders:
        shown = ", ".join(offenders[:5]) + (f" and {len(offenders) - 5} more" if len(offenders) > 5 else "")
        _warn(f"{len(offenders)} dropout/BatchNorm layer(s) are in train mode ({shown}): predictions will be "
              "random (dropout) or depend on the batch (BatchNorm), and BatchNorm statistics will change. Call "
              "model.eval() first, or use labkit.train.evaluate(model, loader).")
    return offenders


def assert_eval_mode(model: nn.Module) -> None:
    """Raise if any dropout or BatchNorm layer of `model` is in train mode."""
    offenders = check_eval_mode(model, warn=False)
    if offenders:
        raise RuntimeError(f"{len(offenders)} dropout/BatchNorm layer(s) are in train mode, e.g. {offenders[0]!r}. "
                           "Call model.eval() before evaluating (or use labkit.train.evaluate).")


# --------------------------------------------------------------------------------------------------------------
# Frozen BatchNorm
# --------------------------------------------------------------------------------------------------------------
def _frozen_bn_layers(model: nn.Module) -> dict[str, nn.Module]:
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, _BN) and m.running_mean is not None:
            params = list(m.parameters(recurse=False))
            if not params or not any(p.requires_grad for p in params):
                out[name] = m
    return out


def batchnorm_state(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """A copy of every BatchNorm layer's running mean and variance, by layer name."""
    return {name: (m.running_mean.detach().clone(), m.running_var.detach().clone())
            for name, m in model.named_modules() if isinstance(m, _BN) and m.running_mean is not None}


def batchnorm_drift(model: nn.Module, reference: dict) -> dict[str, float]:
    """How far each BatchNorm layer's running statistics moved since `reference` (a `batchnorm_state`).

    The drift of a layer is |delta mean| / sqrt(old var) averaged over channels plus the mean relative change of
    the variance: 0 means untouched, 0.1 means the statistics moved by about a tenth of a standard deviation.
    """
    out, modules = {}, dict(model.named_modules())
    for name, (mean0, var0) in reference.items():
        m = modules.get(name)
        if m is None:
            raise KeyError(f"{name!r} is in the reference but not in the model: take the reference from the same "
                           "model (labkit.guards.batchnorm_state(model)).")
        mean1, var1 = m.running_mean.detach().cpu(), m.running_var.detach().cpu()
        mean0, var0 = mean0.cpu(), var0.cpu()
        d_mean = ((mean1 - mean0).abs() / (var0 + m.eps).sqrt()).mean()
        d_var = ((var1 - var0).abs() / (var0 + m.eps)).mean()
        out[name] = float(d_mean + d_var)
    return out


def check_frozen_batchnorm(model: nn.Module, reference: dict, tol: float = 1e-6, warn: bool = True
                           ) -> dict[str, float]:
    """BatchNorm layers whose parameters are frozen but whose running statistics moved since `reference`."""
    frozen = _frozen_bn_layers(model)
    drift = batchnorm_drift(model, {k: v for k, v in reference.items() if k in frozen})
    moved = {name: d for name, d in drift.items() if d > tol}
    if warn and moved:
        worst = max(moved, key=moved.get)
        _warn(f"{len(moved)} of {len(frozen)} frozen BatchNorm layers changed their running statistics (largest "
              f"drift {moved[worst]:.3f} in {worst!r}): the 'frozen' backbone is not frozen. Train with "
              "labkit.train.fit(..., bn_policy='freeze') or put frozen BatchNorm layers in eval mode.")
    return moved


class FrozenBatchNormGuard(Callback):
    """A `fit` callback: snapshot BatchNorm statistics at the start, warn at the end if frozen layers drifted."""

    def __init__(self, tol: float = 1e-6):
        self.tol = tol
        self.reference: dict = {}
        self.moved: dict[str, float] = {}

    def on_fit_start(self, trainer) -> None:
        self.reference = batchnorm_state(trainer.model)

    def on_fit_end(self, trainer) -> None:
        self.moved = check_frozen_batchnorm(trainer.model, self.reference, self.tol)


# --------------------------------------------------------------------------------------------------------------
# Near-duplicates across splits
# --------------------------------------------------------------------------------------------------------------
def _signatures(images: np.ndarray, size: int) -> np.ndarray:
    """Each image as a grayscale thumbnail (at most size x size), high-passed, mean-centred, unit-length.

    The high-pass (image minus its 3x3 blur) keeps the fine detail that makes one picture that picture: on
    Fashion-MNIST, whose items are all centred silhouettes, raw thumbnails of *different* shirts already reach a
    cosine similarity of 0.97; their high-passed versions do not. Returns (N, size*size) float32.
    """
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(images)).float()
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2).mean(1, keepdim=True)  # (N, 1, H, W)
    if max(x.shape[-2:]) > size or x.shape[-2] != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="area")
    x = x - F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    flat = x.reshape(len(x), -1)
    flat = flat - flat.mean(1, keepdim=True)  # brightness shifts do not hide a duplicate
    flat = flat / flat.norm(dim=1, keepdim=True).clamp(min=1e-6)
    return flat.numpy().astype(np.float32)


def find_near_duplicates(train_ds, test_ds, threshold: float = 0.97, size: int = 32, chunk: int = 1024
                         ) -> list[tuple[int, int, float]]:
    """(test index, train index, similarity) for every test image whose closest training image is a near-copy.

    Images are compared as small grayscale thumbnails (high-passed, mean-centred, normalised) by cosine
    similarity: copies that were re-saved, slightly brightened or given a little noise still score close to 1.
    threshold: similarity at or above which two images count as the same picture.
    Accepts labkit ImageDatasets or uint8 arrays (N, H, W[, 3]).
    """
    a = _signatures(getattr(test_ds, "images", test_ds), size)
    b = _signatures(getattr(train_ds, "images", train_ds), size)
    pairs = []
    for start in range(0, len(a), chunk):
        sims = a[start:start + chunk] @ b.T  # (chunk, N_train) cosine similarities
        best = sims.argmax(1)
        best_sim = sims[np.arange(len(best)), best]
        for i in np.flatnonzero(best_sim >= threshold):
            pairs.append((int(start + i), int(best[i]), float(best_sim[i])))
    return pairs


def check_no_duplicates(train_ds, test_ds, threshold: float = 0.97, size: int = 32, warn: bool = True
                        ) -> list[tuple[int, int, float]]:
    """`find_near_duplicates`, warning when the test set shares pictures with the training set."""
    pairs = find_near_duplicates(train_ds, test_ds, threshold=threshold, size=size)
    if warn and pairs:
        n_test = len(getattr(test_ds, "images", test_ds))
        _warn(f"{len(pairs)} of {n_test} test images ({len(pairs) / n_test:.1%}) have a near-duplicate in the "
              "training set: their test accuracy measures memory, not generalisation. Drop them from the test set "
              "(or from training) before reporting a number.")
    return pairs


def show_guard(guard, *args, **kwargs):
    """Run `guard(*args, **kwargs)` and print what it warned as plain text (or that it stayed quiet).

    Notebooks use it to show a guard firing without Python's warning banner (file paths, line numbers).
    """
    import textwrap

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = guard(*args, **kwargs)
    fired = [w for w in caught if issubclass(w.category, GuardWarning)]
    for w in caught:
        if not issubclass(w.category, GuardWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)  # not ours: pass it on
    name = getattr(guard, "__name__", type(guard).__name__)
    if fired:
        for w in fired:
            print(textwrap.fill(f"GUARD {name}: {w.message}", width=110, subsequent_indent="    "))
    else:
        print(f"guard {name}: quiet")
    return result
