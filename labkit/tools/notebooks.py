"""Notebook names -> files, for `labkit run` and `labkit batch` alike.

A notebook is named by its id ('00_tour'), its two-digit prefix ('00'), its file name ('00_tour.ipynb') or a path.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["resolve_notebook", "find_notebooks", "available_notebooks"]


def _matches(stem: str, directory: Path) -> list[Path]:
    exact = directory / f"{stem}.ipynb"
    return [exact] if exact.is_file() else sorted(directory.glob(f"{stem}_*.ipynb"))


def available_notebooks(directory: str | os.PathLike) -> str:
    """The notebook ids in `directory`, for an error message ("none" when there are none)."""
    return ", ".join(p.stem for p in sorted(Path(directory).glob("*.ipynb"))) or "none"


def resolve_notebook(entry: str | os.PathLike, directory: str | os.PathLike,
                     base: str | os.PathLike | None = None) -> Path | None:
    """The file a notebook name refers to, or None when it names none (or several).

    A name ending in .ipynb is a path (relative to `base`, default the working directory) when that file exists;
    otherwise its stem is looked up in `directory` like an id: `<id>.ipynb`, else the one `<id>_*.ipynb`.
    """
    entry = os.fspath(entry)
    directory = Path(directory)
    if entry.endswith(".ipynb"):
        path = Path(entry)
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        if path.is_file():
            return path
        entry = Path(entry).stem
    matches = _matches(entry, directory)
    return matches[0] if len(matches) == 1 else None


def find_notebooks(names: list[str], directory: Path, command: str = "labkit run") -> list[Path]:
    """Resolve notebook names ('00_tour', '00', '00_tour.ipynb' or a path) to files; all NN_*.ipynb when none given."""
    directory = Path(directory)
    if not names:
        found = sorted(p for p in directory.glob("[0-9][0-9]_*.ipynb"))
        if not found:
            raise SystemExit(f"{command}: no NN_*.ipynb notebooks in {directory}/; pass --dir or notebook paths")
        return found
    paths = []
    for name in names:
        path = resolve_notebook(name, directory)
        if path is None:
            available = available_notebooks(directory)
            stem = Path(name).stem if str(name).endswith(".ipynb") else name
            why = "matches several notebooks" if _matches(stem, directory) else "is not a notebook"
            raise SystemExit(f"{command}: '{name}' {why} in {directory}/ (available: {available})")
        paths.append(path)
    return paths
