"""Safe writes to files that several processes share (the feature and model caches, results files).

`atomic_path` / `atomic_write`: write to a unique temporary file in the target's folder, then `os.replace` it over
the target in one step, so a reader sees the old file or the new one, never half of one, and two writers never
share a temporary name. `file_lock`: an exclusive advisory lock (fcntl.flock on `<path>.lock`) for a
read-check-write sequence that must not interleave with another process's.
`cache_root`: the one folder every labkit cache lives under. `folder_problem`: whether a destination is a folder
this process can write into, asked before anything is written there.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

__all__ = ["atomic_path", "atomic_write", "atomic_write_bytes", "atomic_write_text", "file_lock", "cache_root",
           "folder_problem", "CACHE_ENV"]

CACHE_ENV = "LABKIT_CACHE"


def cache_root() -> Path:
    """The folder under which labkit caches features (`features/`) and trained source models (`models/`).

    $LABKIT_CACHE when it is set, else `$XDG_CACHE_HOME/labkit`, else `~/.cache/labkit`. Always an absolute path
    that does not depend on the current folder: a notebook run from solutions/ by `labkit run` and the same
    notebook opened in Jupyter from the repository root share one cache.
    """
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return (base / "labkit").absolute()


def folder_problem(path: str | os.PathLike, create: bool = False) -> str | None:
    """None when `path` is (or can become) a folder this process can write into; else what is wrong, in words.

    Nothing is left behind by the check: a probe file is created and removed. create=True makes a missing folder
    (and its parents) on the way, for a destination that is about to be written anyway.
    """
    target = Path(path).expanduser().absolute()
    probe_in = target
    if target.is_dir():
        pass
    elif target.exists():
        return f"{path} is a file, not a folder"
    else:
        ancestor = next(a for a in target.parents if a.exists())  # "/" always exists
        if not ancestor.is_dir():
            return f"{path} cannot be created: {ancestor} is a file, not a folder"
        if create:
            try:
                target.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                return f"{path} cannot be created ({exc.strerror or exc})"
        else:
            probe_in = ancestor
    try:
        fd, probe = tempfile.mkstemp(prefix=".labkit-probe-", dir=probe_in)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        why = exc.strerror or str(exc)
        if probe_in != target:
            return f"{path} cannot be created: {probe_in} is not writable ({why})"
        return f"{path} is not writable ({why})"
    return None


def _read_umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


# the permissions a plain open() gives a new file (mkstemp's own are 0600); read once, at import
_FILE_MODE = 0o666 & ~_read_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary path next to `path`; when the block succeeds it replaces `path` atomically.

    For writers that want a file name (np.save, safetensors). On an exception the temporary file is removed and
    `path` is left as it was. fsync: flush the file to disk before the replace (survives a power cut).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", fsync: bool = False,
                 encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file for writing (mode "wb" or "w"); on success it replaces `path` atomically."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes whole files: mode must be 'w' or 'wb', got {mode!r}.")
    with atomic_path(path, fsync=fsync) as tmp:
        with open(tmp, mode, encoding=encoding if "b" not in mode else None) as f:
            yield f


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = False) -> None:
    with atomic_write(path, "wb", fsync=fsync) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, fsync: bool = False, encoding: str = "utf-8") -> None:
    with atomic_write(path, "w", fsync=fsync, encoding=encoding) as f:
        f.write(text)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on `<path>.lock` for the block (blocks until other holders are done).

    Advisory: it only orders processes that take the same lock. The lock file stays (removing it would race with
    a process about to lock it). Where fcntl does not exist (Windows) the block runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: atomic replaces still keep every file whole
        yield
        return
    lock_path = Path(f"{os.fspath(path)}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
