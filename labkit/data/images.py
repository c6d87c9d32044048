"""Image data sets by name: Fashion-MNIST (Debian's files, then torchvision's cache, then a download when online),
scikit-learn digits, scikit-image lfw_subset (faces vs non-faces), and any ImageFolder directory (bring your own
data); `load_dataset` is the one dispatcher.
"""
from __future__ import annotations

import difflib
import gzip
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from labkit.data.base import DataUnavailableError, ImageDataset, fixed_split

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


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

    from labkit.assets import is_network_error  # deferred: labkit.assets imports torch

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
        from labkit.assets import is_offline  # deferred: labkit.assets imports torch

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


def digits(split: str = "train") -> ImageDataset:
    """scikit-learn's handwritten digits (8x8, 10 classes, 1,797 images); a fixed 70/30 train/test split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images / 16.0 * 255).astype(np.uint8)
    return fixed_split(ImageDataset(images, bunch.target, [str(i) for i in range(10)], "digits"), split)


def lfw_subset(split: str = "train") -> ImageDataset:
    """scikit-image's lfw_subset: 100 faces and 100 non-faces, 25x25 grayscale; a fixed 70/30 split."""
    from skimage import data as skdata

    images = np.round(skdata.lfw_subset() * 255).astype(np.uint8)
    labels = np.array([0] * 100 + [1] * 100)  # the first 100 are faces, the rest are not
    return fixed_split(ImageDataset(images, labels, ["face", "non-face"], "lfw_subset"), split)


# --------------------------------------------------------------------------------------------------------------
# Bring your own data: an ImageFolder directory (root/<class>/<image>)
# --------------------------------------------------------------------------------------------------------------
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


FOLDER_MAX_PX = 224  # a folder's images are kept at their own size up to this (the usual weights' resolution)


def image_folder(path: str | os.PathLike, size: int | None = None, split: str | None = None,
                 classes: Sequence[str] | None = None) -> ImageDataset:
    """Every image under path/<class name>/ resized (short side) and centre-cropped to `size`, as RGB uint8.

    size: None keeps the files' own short side (their median) up to FOLDER_MAX_PX, so a notebook can run frozen
        features at the weights' resolution; the dataset's `source_px` records that median either way.
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
    files = [(label, f) for label, name in enumerate(names) if (root / name).is_dir()
             for f in sorted((root / name).rglob("*")) if f.suffix.lower() in _IMAGE_SUFFIXES]
    sides = []
    for _, f in files:  # the header only: cheap even for thousands of files
        try:
            with Image.open(f) as im:
                sides.append(min(im.size))
        except (UnidentifiedImageError, OSError):
            pass
    source_px = int(np.median(sides)) if sides else None
    if size is None:
        size = max(16, min(FOLDER_MAX_PX, source_px or FOLDER_MAX_PX))
    images, labels, skipped = [], [], []
    for label, f in files:
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
        warnings.warn(f"Skipped {len(skipped)} unreadable file(s) in {root}, e.g. {skipped[:3]}.", stacklevel=2)
    return ImageDataset(np.stack(images), np.array(labels), names, root.name, source_px)


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
    close = difflib.get_close_matches(str(name), IMAGE_DATASETS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise KeyError(f"Unknown data set {name!r}.{hint} Use one of {sorted(IMAGE_DATASETS)} or a path to a folder of "
                   "class sub-folders.")


# --------------------------------------------------------------------------------------------------------------
