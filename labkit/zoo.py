"""Small source models that labkit pretrains itself, so the source task and its similarity are under our control.

`fashion_source_model()` is a small CNN pretrained on Fashion-MNIST classes 0-4 (T-shirt/top, Trouser,
Pullover, Dress, Coat). Transfer it to classes 5-9 (a similar domain) or to digits / faces (a different one).
It is trained once by `train_source_model` and cached as a safetensors file whose SHA-256 is checked on every
load; a missing or corrupted file is retrained, never trusted.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
from torch import nn

from labkit._io import atomic_path, atomic_write_text, cache_root, file_lock
from labkit.assets import Backbone, Preprocessing
from labkit.data import fashion_mnist, make_loader
from labkit.repro import local_seed
from labkit.train import LRSchedule, ProgressBar, evaluate, fit

__all__ = ["SmallCNN", "small_cnn", "train_source_model", "fashion_source_model", "scrambled_source_model",
           "source_task_data",
           "models_dir", "SOURCE_CLASSES", "TARGET_CLASSES"]

SOURCE_CLASSES = (0, 1, 2, 3, 4)  # T-shirt/top, Trouser, Pullover, Dress, Coat
TARGET_CLASSES = (5, 6, 7, 8, 9)  # Sandal, Shirt, Sneaker, Bag, Ankle boot

# Fashion-MNIST pixel statistics (grayscale repeated to 3 channels), the preprocessing bound to these weights.
_FASHION_PRE = Preprocessing(mean=(0.286, 0.286, 0.286), std=(0.353, 0.353, 0.353), size=28,
                             interpolation="bilinear", crop_pct=1.0)


def models_dir() -> Path:
    """Where labkit keeps the source models it trains: `models/` under the one cache root (labkit._io.cache_root)."""
    return cache_root() / "models"


# Checkpoints shipped inside the package (made by `python -m labkit.zoo --ship`); looked up before the cache.
SHIPPED_DIR = Path(__file__).resolve().parent / "data_files"


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """Three conv blocks (28 -> 14 -> 7 px) and a linear classifier on the pooled 128 features; ~0.14 M params."""

    def __init__(self, num_classes: int = 5, width: int = 32):
        super().__init__()
        w = width
        self.block1 = nn.Sequential(*_conv(3, w), *_conv(w, w), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(*_conv(w, 2 * w), *_conv(2 * w, 2 * w), nn.MaxPool2d(2))
        self.block3 = nn.Sequential(*_conv(2 * w, 4 * w))
        self.classifier = nn.Linear(4 * w, num_classes)


def small_cnn(num_classes: int = 5, name: str = "small_cnn", pretrained: bool = False,
              preprocessing: Preprocessing = _FASHION_PRE) -> Backbone:
    """A SmallCNN wrapped as a labkit Backbone (depths block1, block2, block3, classifier)."""
    net = SmallCNN(num_classes)
    steps = OrderedDict((f"block{i}", getattr(net, f"block{i}")) for i in (1, 2, 3))
    return Backbone(name, net, steps, "classifier", preprocessing, pretrained)


def source_task_data(split: str = "train", classes=SOURCE_CLASSES, permute_pixels: bool = False, seed: int = 0):
    """Fashion-MNIST restricted to `classes` (relabelled 0..k-1); permute_pixels scrambles every image the same way.

    Scrambled pixels destroy spatial structure: a model pretrained on them is the kit's negative-transfer source.
    """
    ds = fashion_mnist(split).select_classes(list(classes))
    if permute_pixels:
        perm = np.random.default_rng(seed).permutation(28 * 28)
        ds.images = ds.images.reshape(len(ds), -1)[:, perm].reshape(-1, 28, 28).copy()
        ds.name += "-scrambled"
    return ds


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_verified(model: Backbone, folder: Path, name: str, recipe: dict, verbose: bool = True) -> bool:
    """Load `<name>.safetensors` from folder into model only if its SHA-256 and recipe match `<name>.json`."""
    from safetensors.torch import load_file

    w, m = Path(folder) / f"{name}.safetensors", Path(folder) / f"{name}.json"
    if not (w.exists() and m.exists()):
        return False
    meta = json.loads(m.read_text())
    if meta.get("recipe") != recipe or meta.get("sha256") != _sha256(w):
        if verbose:
            print(f"{w.name}: its hash or recipe does not match {m.name}; not using it.")
        return False
    model.net.load_state_dict(load_file(str(w)), strict=True)
    model.source_accuracy = meta.get("source_test_acc")
    return True


def train_source_model(name: str = "fashion04", classes=SOURCE_CLASSES, permute_pixels: bool = False,
                       num_epochs: int = 2, n_train: int | None = 10000, seed: int = 0, force: bool = False,
                       verbose: bool = True, out_dir: str | os.PathLike | None = None) -> Backbone:
    """Load-or-train a SmallCNN source model on Fashion-MNIST `classes`; cached and hash-checked.

    Looks in the package's shipped checkpoints, then the cache, for `<name>.safetensors` + `<name>.json`
    (SHA-256, recipe, source test accuracy). A file whose hash or recipe does not match is retrained into the cache.
    """
    recipe = {"classes": list(classes), "permute_pixels": permute_pixels, "num_epochs": num_epochs,
              "n_train": n_train, "seed": seed, "version": 1}
    folder = models_dir() if out_dir is None else Path(out_dir)
    weights, meta_path = folder / f"{name}.safetensors", folder / f"{name}.json"
    model = small_cnn(len(classes), name=name, pretrained=True)
    if not force and load_verified(model, SHIPPED_DIR, name, recipe, verbose):
        return model
    # one process trains and writes a cached model at a time; one that waited here then finds it and loads it
    shipping = folder.resolve() == SHIPPED_DIR  # no lock files inside the package
    with contextlib.nullcontext() if shipping else file_lock(weights):
        if not force and load_verified(model, folder, name, recipe, verbose):
            return model
        return _train_and_save(name, classes, permute_pixels, num_epochs, n_train, seed, recipe, weights,
                               meta_path, verbose)


def _train_and_save(name, classes, permute_pixels, num_epochs, n_train, seed, recipe, weights: Path,
                    meta_path: Path, verbose: bool) -> Backbone:
    from safetensors.torch import save_file

    if verbose:
        print(f"Training source model {name!r} once on Fashion-MNIST classes {list(classes)} "
              f"({'scrambled pixels, ' if permute_pixels else ''}{num_epochs} epochs); it is cached afterwards.")
    train = source_task_data("train", classes, permute_pixels, seed)
    if n_train:
        train = train.sample(n_train, seed=seed)
    test = source_task_data("test", classes, permute_pixels, seed)
    with local_seed(seed):  # the initial weights draw from `seed` alone; the caller's random state is left alone
        model = small_cnn(len(classes), name=name, pretrained=True)
        fit(model, make_loader(train, model, batch_size=128, shuffle=True, seed=seed), num_epochs=num_epochs,
            lr=2e-3, weight_decay=1e-4, callbacks=[LRSchedule("cosine"), ProgressBar(enabled=False)], device="cpu")
    acc = evaluate(model, make_loader(test, model, batch_size=512), device="cpu")["acc"]
    # weights first, then the metadata that vouches for them: each file is replaced whole, never half-written
    with atomic_path(weights) as tmp:
        save_file({k: v.contiguous() for k, v in model.net.state_dict().items()}, str(tmp))
    atomic_write_text(meta_path, json.dumps({"recipe": recipe, "sha256": _sha256(weights),
                                             "source_test_acc": acc}, indent=2))
    model.source_accuracy = acc
    return model


def fashion_source_model(**kwargs) -> Backbone:
    """The kit's standard source model: SmallCNN pretrained on Fashion-MNIST classes 0-4 (load-or-train)."""
    return train_source_model("fashion04", SOURCE_CLASSES, **kwargs)


def scrambled_source_model(**kwargs) -> Backbone:
    """The negative-transfer source: the same SmallCNN pretrained on classes 0-4 with scrambled pixels."""
    return train_source_model("fashion04_scrambled", SOURCE_CLASSES, permute_pixels=True, **kwargs)


if __name__ == "__main__":  # python -m labkit.zoo --ship: (re)make the checkpoints shipped in the package
    import argparse

    parser = argparse.ArgumentParser(description="Train labkit's source models.")
    parser.add_argument("--ship", action="store_true", help="write them into the package's data_files/")
    args = parser.parse_args()
    target = SHIPPED_DIR if args.ship else None
    for fn in (fashion_source_model, scrambled_source_model):
        m = fn(force=True, out_dir=target)
        print(m.name, "source test accuracy", round(m.source_accuracy, 4))
