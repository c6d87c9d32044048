"""Loaders: seeded batches of preprocessed images (the backbone's preprocessing applied to whole batches: resize,
3 channels, normalise) or of tokenised texts, with one shuffle rule (`epoch_order`).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from labkit.data.base import ImageDataset, TextDataset


def epoch_order(n: int, shuffle: bool, seed: int, epoch: int):
    """The order in which a seeded loader visits n items in epoch `epoch` (0-based), and that epoch's generator.

    The one shuffle rule of every labkit loader (images, texts, cached features): a fresh `torch.Generator`
    seeded with `seed + epoch`; when shuffling, `torch.randperm(n)` drawn from it, else 0 .. n-1 (the generator
    untouched). Returns (order: int64 tensor, generator); the image loader draws its flips from the same
    generator after the permutation. So a loader gives the same batches on every run, a new order every epoch.
    """
    import torch

    generator = torch.Generator().manual_seed(seed + epoch)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    return order, generator


class EpochShuffle:
    """What a seeded loader keeps between epochs: `shuffle`, `seed` and the epoch count (see `epoch_order`)."""

    shuffle: bool = False
    seed: int = 0
    _epoch: int = 0

    def _next_epoch_order(self, n: int):
        """`epoch_order` of this loader's next epoch, then count the epoch."""
        order, generator = epoch_order(n, self.shuffle, self.seed, self._epoch)
        self._epoch += 1
        return order, generator


class ImageLoader(EpochShuffle):
    """Batches of preprocessed images: (x float32 (B, 3, size, size) normalised, y int64 (B,)).

    Preprocessing runs on whole batches (uint8 -> float, 1 -> 3 channels, resize with the weights' interpolation,
    normalise with the weights' statistics), which is much faster than per-image PIL transforms.
    """

    def __init__(self, ds: ImageDataset, preprocessing, batch_size: int = 64, shuffle: bool = False,
                 seed: int = 0, augment: bool = False, drop_last: bool = False):
        if len(ds) == 0:
            raise ValueError(f"{ds.name} is empty: there is nothing to load.")
        self.ds, self.preprocessing, self.batch_size = ds, preprocessing, int(batch_size)
        self.shuffle, self.seed, self.augment, self.drop_last = shuffle, seed, augment, drop_last
        self._epoch = 0

    def __len__(self) -> int:
        n = len(self.ds) // self.batch_size
        return n if self.drop_last or len(self.ds) % self.batch_size == 0 else n + 1

    def transform(self, images: np.ndarray, generator=None):
        """uint8 images (B, H, W[, C]) -> normalised float tensor (B, 3, size, size)."""
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(images))
        x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)  # (B, C, H, W)
        x = x.float().div_(255.0)
        size = self.preprocessing.size
        if self.augment and self.augment != "article" and generator is not None:  # True / "flip": flips only
            flip = torch.rand(x.shape[0], generator=generator) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        if x.shape[-2:] != (size, size):
            mode = "bicubic" if self.preprocessing.interpolation == "bicubic" else "bilinear"
            x = F.interpolate(x, size=(size, size), mode=mode, align_corners=False,
                              antialias=x.shape[-1] > size).clamp_(0, 1)
        if x.shape[1] == 1:
            # grayscale -> 3 identical channels for an RGB backbone, after the resize: each channel is resized on
            # its own, so resizing one and copying it gives the same pixels at a third of the cost
            x = x.expand(-1, 3, -1, -1).contiguous()
        if self.augment == "article" and generator is not None:
            x = augment_like_the_article(x, generator)
        return self.preprocessing.normalize(x)

    def __iter__(self) -> Iterator:
        import torch

        n = len(self.ds)
        order, generator = self._next_epoch_order(n)
        order = order.numpy()
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                break
            x = self.transform(self.ds.images[idx], generator)
            y = torch.from_numpy(self.ds.labels[idx])
            yield x, y


AUGMENTATIONS = (False, True, "flip", "article")


def article_augmentation():
    """The article's training augmentation as torchvision transforms: flips, small rotations, colour jitter."""
    import torchvision.transforms.v2 as T

    return T.Compose([T.RandomHorizontalFlip(), T.RandomRotation(15),
                      T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2)])


def augment_like_the_article(x, generator):
    """`article_augmentation` on each image of a float batch in [0, 1], seeded by `generator` (the loader's, so
    every epoch draws new, reproducible transforms); torch's global random state is left as it was."""
    import torch

    transform = article_augmentation()
    seeds = torch.randint(0, 2**31 - 1, (x.shape[0],), generator=generator).tolist()
    out = torch.empty_like(x)
    with torch.random.fork_rng(devices=[]):  # the CPU generator, which the transforms draw from, is put back
        for i, s in enumerate(seeds):
            # the CPU generator only: torch.manual_seed would also reseed every GPU's generator (which fork_rng does
            # not restore here) and, before CUDA starts, record a traceback for a deferred call each time (about
            # 25 ms an image on a CUDA build of torch: 9 s of a quick run of 02)
            torch.random.default_generator.manual_seed(s)
            out[i] = transform(x[i])
    return out.clamp_(0, 1)


def make_loader(ds: ImageDataset, preprocessing, batch_size: int = 64, shuffle: bool = False, seed: int = 0,
                augment: bool | str = False, size: int | None = None, drop_last: bool = False) -> ImageLoader:
    """A loader that applies `preprocessing` (from the backbone) to batches; size overrides the resolution.

    augment (training loaders): False; True or "flip" (horizontal flips); "article" (the article's flips, rotations
    up to 15 degrees and colour jitter, torchvision transforms; see `article_augmentation`).
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}.")
    if hasattr(preprocessing, "preprocessing"):  # a Backbone was passed: use its preprocessing
        preprocessing = preprocessing.preprocessing
    if size is not None:
        preprocessing = preprocessing.with_size(size)
    return ImageLoader(ds, preprocessing, batch_size, shuffle, seed, augment, drop_last)


class TextLoader(EpochShuffle):
    """Batches of tokenised texts as dicts (input_ids, attention_mask, labels) for Hugging Face models."""

    def __init__(self, ds: TextDataset, tokenizer, batch_size: int = 16, max_length: int = 128,
                 shuffle: bool = False, seed: int = 0):
        self.ds, self.tokenizer, self.batch_size, self.max_length = ds, tokenizer, batch_size, max_length
        self.shuffle, self.seed, self._epoch = shuffle, seed, 0

    def __len__(self) -> int:
        return (len(self.ds) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        import torch

        n = len(self.ds)
        order = self._next_epoch_order(n)[0].tolist()
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = dict(self.tokenizer([self.ds.texts[i] for i in idx], padding=True, truncation=True,
                                        max_length=self.max_length, return_tensors="pt"))
            batch["labels"] = torch.from_numpy(self.ds.labels[idx])
            yield batch


def make_text_loader(ds: TextDataset, tokenizer, batch_size: int = 16, max_length: int = 128,
                     shuffle: bool = False, seed: int = 0) -> TextLoader:
    """A loader of tokenised batches for `labkit.fit` with a Hugging Face sequence classifier."""
    return TextLoader(ds, tokenizer, batch_size, max_length, shuffle, seed)
