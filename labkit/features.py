"""The feature-extraction fast path: run the frozen backbone once, cache its features, train heads on them.

Features are cached in memory and on disk (`<cache root>/features/`; the root is $LABKIT_CACHE, else
~/.cache/labkit, see `labkit._io.cache_root`), keyed by backbone + weights (pretrained or random) + preprocessing +
depth + the data's content hash, so a second extraction with the same key never runs the backbone, and training a
head for many epochs costs almost nothing.

This is labkit's one feature cache: `extract_features`, `labkit.probe.depth_features` (many depths in one pass)
and `labkit.text.embed` (sentence embeddings, kept in memory only) all go through `cache_get` / `cache_put` /
`cache_keep`, and one counter, `STATS`, counts what ran and what the cache answered:
backbone_batches (batches a backbone ran on to make features), memory_hits and disk_hits (keys found).
`clear_memory_cache()` (also `probe.clear_memory_cache`) forgets the memory part; the disk part stays.

Computed once per machine, also when runs overlap: `computing(keys)` holds a lock per key while one process computes
what the disk cache lacks, so a second process that needs the same key (two notebooks or two seeds run side by side
by `labkit run --jobs 2` or a batch with two workers) waits for it and reads the file instead of computing it again.
"""
from __future__ import annotations

import contextlib
import hashlib
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from labkit._io import atomic_write, cache_root, file_lock
from labkit._torchutil import eval_mode, progress_enabled, weights_digest
from labkit.data import EpochShuffle, make_loader
from labkit.metrics import accuracy
from labkit.repro import local_seed, resolve_device
from labkit.train import MeasureMemory, ProgressBar, fit

__all__ = ["extract_features", "subset_features", "feature_key", "feature_keys", "clear_memory_cache", "computing",
           "fit_probe",
           "linear_probe", "choose_C", "PROBE_CS",
           "train_head", "make_head", "FeatureLoader", "cache_dir", "STATS"]

_MEMORY: dict[str, object] = {}  # key -> (X, y) features, or one text's embedding (labkit.text.embed)
STATS = {"backbone_batches": 0, "memory_hits": 0, "disk_hits": 0}  # tests read these to prove a cache hit


def cache_dir() -> Path:
    """Where cached features live on disk: `<cache root>/features`, the same from every working folder."""
    return cache_root() / "features"


def clear_memory_cache() -> None:
    """Forget the in-memory features and embeddings (the disk cache stays)."""
    _MEMORY.clear()


def feature_keys(backbone, ds, depths, size: int) -> dict:
    """Cache keys of several depths: backbone name + weights (the classifier left out) + memory layout +
    preprocessing + depth + data content.

    The layout is in the key because features computed in channels_last and in the default layout differ in float
    rounding: a cache filled by one layout never answers for the other.

    The weights and the data are hashed once for all depths (probe.depth_features asks for many at a time).

    depth None (a Backbone's default, its last feature depth) is keyed as that depth's name: `extract_features` then
    reads what `probe.depth_features` stored for the same depth, and the reverse. Both pool the same feature map of
    the same batches, so their numbers are identical (tests/test_probe.py checks), and a notebook that asks for
    the final features of a test pool another notebook probed at every depth does not run the backbone again.
    """
    head = getattr(backbone, "classifier", None)  # pooled features never pass through it: a new head, same key
    common = [backbone.name, weights_digest(backbone, skip=head if isinstance(head, nn.Module) else None),
              str(getattr(backbone, "memory_format", "")), backbone.preprocessing.with_size(size).key()]
    fingerprint = ds.fingerprint()
    return {d: hashlib.sha1("|".join(common + [str(_named_depth(backbone, d)), fingerprint]).encode()).hexdigest()[:20]
            for d in depths}


def _named_depth(backbone, depth: str | None) -> str | None:
    """`depth`, or for None the last feature depth's name where the model is a Backbone whose `features(x, None)`
    is that depth's pooled output (a subclass that redefines `features` keeps None: its default may differ)."""
    from labkit.assets import Backbone

    if depth is None and isinstance(backbone, Backbone) and type(backbone).features is Backbone.features:
        return backbone.feature_depths[-1]
    return depth


def feature_key(backbone, ds, depth: str | None, size: int) -> str:
    """The cache key of one depth (see `feature_keys`)."""
    return feature_keys(backbone, ds, [depth], size)[depth]


def cache_get(key: str, memory: dict | None = None, disk: bool = True) -> tuple[object | None, str | None]:
    """The cached value of `key` and where it was found ("memory" or "disk"), or (None, None); counted in STATS.

    Looks in memory, then (disk=True) in the disk cache, whose (X, y) is then kept in memory too.
    memory: another dict to use instead of the one in-memory cache (tests).
    """
    memory = _MEMORY if memory is None else memory
    if key in memory:
        STATS["memory_hits"] += 1
        return memory[key], "memory"
    if not disk:
        return None, None
    path = cache_dir() / f"{key}.npz"
    if not path.exists():
        return None, None
    try:
        with np.load(path, allow_pickle=False) as f:
            memory[key] = (f["X"], f["y"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # unreadable or not ours: recompute, rewrite
        return None, None
    STATS["disk_hits"] += 1
    return memory[key], "disk"


def cache_put(key: str, X: np.ndarray, y: np.ndarray, memory: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Keep (X, y) in memory and write it to the disk cache atomically (a killed run leaves no half file).

    Each writer has its own temporary file and the lock orders writers of one key, so processes that share the
    cache (parallel runs of a notebook) can write the same key at once.
    """
    memory = _MEMORY if memory is None else memory
    memory[key] = (X, y)
    path = cache_dir() / f"{key}.npz"
    with file_lock(path), atomic_write(path) as f:
        np.savez(f, X=X, y=y)
    return memory[key]


@contextlib.contextmanager
def computing(keys: Sequence[str]):
    """Hold the compute lock of every key in `keys` for the block: the one process that computes them at a time.

    The caller looks in the cache again inside the block (another process may have written a key while this one
    waited) and computes only what is still missing. The locks are taken in sorted order, and no caller takes a
    second set inside the block, so two processes never wait for each other in a circle. A killed process's locks
    go with it (flock). The lock files sit beside the features (`<key>.computing.lock`), apart from the write lock
    that `cache_put` takes, so the holder can write its keys inside the block.
    """
    with contextlib.ExitStack() as stack:
        for key in sorted(set(keys)):
            stack.enter_context(file_lock(cache_dir() / f"{key}.computing"))
        yield


def cache_keep(key: str, value) -> None:
    """Keep `value` in the in-memory cache only (what is cheap to recompute, e.g. one text's embedding)."""
    _MEMORY[key] = value


def extract_features(backbone, ds, depth: str | None = None, size: int | None = None, batch_size: int = 64,
                     device: str | None = "auto", cache: bool = True, progress: bool | None = None,
                     preprocessing=None) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features (N, C) float32 and labels (N,) of `ds` at `depth` (default: the last feature depth).

    The backbone runs in eval mode without gradients; its previous mode is restored.
    preprocessing: override the backbone's preprocessing (the pitfalls notebook feeds wrong statistics on purpose).
    """
    pre = preprocessing or backbone.preprocessing
    size = int(size or pre.size)
    key = None
    if cache:
        key = feature_key(backbone, ds, depth, size)
        if preprocessing is not None:
            key = hashlib.sha1((key + pre.with_size(size).key()).encode()).hexdigest()[:20]
        out, _ = cache_get(key)
        if out is not None:
            return out
        with computing([key]):  # another run computing the same features: wait for it, then read its file
            out, _ = cache_get(key)
            if out is not None:
                return out
            X, y = _extract(backbone, ds, depth, size, batch_size, device, progress, pre)
            return cache_put(key, X, y)
    return _extract(backbone, ds, depth, size, batch_size, device, progress, pre)


def _extract(backbone, ds, depth, size, batch_size, device, progress, pre) -> tuple[np.ndarray, np.ndarray]:
    """The backbone's pooled features of `ds` at `depth` (extract_features without the cache)."""
    device = resolve_device(device)
    backbone.to(device)
    loader = make_loader(ds, pre, batch_size=batch_size, size=size)
    feats = []
    iterator = loader
    if progress_enabled(progress):
        from tqdm.auto import tqdm

        iterator = tqdm(loader, desc=f"features {backbone.name}@{depth or 'final'}", leave=False)
    with eval_mode(backbone), torch.inference_mode():
        for x, _ in iterator:
            STATS["backbone_batches"] += 1
            feats.append(backbone.features(x.to(device), depth).float().cpu())
    return torch.cat(feats).numpy().astype(np.float32), ds.labels.copy()


def subset_features(backbone, pool, rows, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Features of `pool.subset(rows)`, sliced from the cached features of the whole pool.

    A pool that is the same for every seed is extracted once; each seed then samples rows from it, so running
    five seeds does not run the backbone five times. kwargs: as for `extract_features` (depth, size, device, ...).
    """
    X, y = extract_features(backbone, pool, **kwargs)
    rows = np.asarray(rows)
    return X[rows], y[rows]


def fit_probe(X_train, y_train, C: float = 1.0, max_iter: int = 2000):
    """A standardised logistic regression fitted on frozen features (sklearn pipeline; the standard probe)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    with _one_blas_thread():
        return clf.fit(X_train, y_train)


def _one_blas_thread():
    # these fits are small, and threaded BLAS next to torch's busy threads (or on a shared CPU) made each fit
    # tens of times slower
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def linear_probe(X_train, y_train, X_test, y_test, C: float = 1.0, max_iter: int = 2000):
    """Test accuracy of `fit_probe` on held-out features: a float that keeps which test items were right
    (`labkit.metrics.Accuracy`), so two probes on the same test set can be compared item by item."""
    clf = fit_probe(X_train, y_train, C, max_iter)
    with _one_blas_thread():
        return accuracy(clf.predict(X_test), y_test)


PROBE_CS = (0.01, 0.1, 1.0, 10.0)  # the default grid `choose_C` searches


def choose_C(X_train, y_train, X_val, y_val, Cs: Sequence[float] = PROBE_CS, max_iter: int = 2000) -> float:
    """The probe's inverse regularisation strength with the best validation accuracy (the smallest C on ties).

    Features of different widths (a few dozen channels early in a network, over a thousand at the top) want
    different regularisation; choosing C on validation images, never on the test set, keeps the comparison fair.
    """
    if not Cs:
        raise ValueError("choose_C needs at least one C to try.")
    if len(X_val) == 0:
        raise ValueError("choose_C needs validation features: C chosen on the test set would flatter the probe.")
    scores = {float(C): float(linear_probe(X_train, y_train, X_val, y_val, C=C, max_iter=max_iter))
              for C in sorted(Cs)}
    return max(scores, key=lambda C: (scores[C], -C))


class FeatureLoader(EpochShuffle):
    """Batches of cached features (x, y) for `labkit.fit`: no backbone in the loop."""

    def __init__(self, X, y, batch_size: int = 128, shuffle: bool = False, seed: int = 0):
        self.X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
        self.y = torch.as_tensor(np.asarray(y), dtype=torch.long)
        self.batch_size, self.shuffle, self.seed, self._epoch = batch_size, shuffle, seed, 0

    def __len__(self) -> int:
        return (len(self.y) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        order, _ = self._next_epoch_order(len(self.y))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            yield self.X[idx], self.y[idx]


def make_head(in_features: int, num_classes: int, kind: str = "linear", hidden: int = 256,
              dropout: float = 0.2) -> nn.Module:
    """A linear head or a small MLP head (Linear -> ReLU -> Dropout -> Linear)."""
    if kind == "linear":
        return nn.Linear(in_features, num_classes)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout),
                             nn.Linear(hidden, num_classes))
    raise ValueError(f"Unknown head kind {kind!r}: use 'linear' or 'mlp'.")


def train_head(X_train, y_train, X_val=None, y_val=None, kind: str = "linear", num_epochs: int = 30,
               lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 128, seed: int = 0,
               standardize: bool = True, callbacks: Sequence = (), **fit_kwargs):
    """Train a head on cached features with labkit's fit loop; returns (head, history).

    standardize: scale features with the training set's mean/std (folded into the head, so it takes raw features).
    seed: the head's initial weights, the shuffling and dropout (an MLP head's) draw from it alone; the caller's own
        random state is left as it was.
    callbacks: handed to fit, with MeasureMemory (History.peak_mem_mb) and no progress bar unless given.
    """
    X_train = np.asarray(X_train, dtype=np.float32)
    num_classes = int(np.max(y_train)) + 1
    callbacks = list(callbacks)
    if not any(isinstance(cb, MeasureMemory) for cb in callbacks):
        callbacks.append(MeasureMemory())
    if not any(isinstance(cb, ProgressBar) for cb in callbacks):
        callbacks.append(ProgressBar(enabled=False))
    with local_seed(seed):
        head = make_head(X_train.shape[1], num_classes, kind)
        if standardize:
            mean = X_train.mean(0)
            std = X_train.std(0) + 1e-6
            head = nn.Sequential(_Standardize(mean, std), head)
        train_loader = FeatureLoader(X_train, y_train, batch_size, shuffle=True, seed=seed)
        val_loader = FeatureLoader(X_val, y_val, 1024) if X_val is not None else None
        history = fit(head, train_loader, val_loader, num_epochs=num_epochs, lr=lr, weight_decay=weight_decay,
                      callbacks=callbacks, **fit_kwargs)
    return head, history


class _Standardize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x):
        return (x - self.mean) / self.std
