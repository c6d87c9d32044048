"""Recording a notebook's headline numbers.

One call per notebook, `record(numbers, notebook=..., path=results_path)`, writes a small JSON file next to the
executed notebook. Batches and reports read these files; nobody scrapes notebook outputs.
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any, Mapping

from labkit._io import atomic_write

RESULTS_SUFFIX = ".results.json"


def _plain(value: Any) -> Any:
    """Turn numpy/torch scalars and arrays into JSON-friendly Python values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays / scalars, torch tensors
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def default_path(notebook: str) -> Path:
    """Where `record` writes when no path is given: next to the notebook being run (the working directory)."""
    return Path.cwd() / f"{notebook}{RESULTS_SUFFIX}"


def record(numbers: Mapping[str, Any], notebook: str, path: str | os.PathLike | None = None,
           parameters: Mapping[str, Any] | None = None, claims: Any = None) -> Path:
    """Write a notebook's headline numbers (and its judged claims) to JSON (atomically) and return the file's path.

    numbers: flat or nested mapping of metric name -> value (floats, ints, strings, lists).
    path: usually the notebook's `results_path` parameter; papermill runs inject it.
    claims: the notebook's `labkit.claims.Ledger` (or its `.records()`); `labkit run` and `labkit batch` build
    the course ledger from them.
    """
    if not isinstance(numbers, Mapping) or not numbers:
        raise ValueError("record() needs a non-empty mapping of metric name -> value, e.g. {'probe_acc': 0.84}")
    out = Path(path) if path else default_path(notebook)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "notebook": notebook,
        "numbers": _plain(dict(numbers)),
        "parameters": _plain(dict(parameters or {})),
        "claims": _plain([dict(c, notebook=notebook) for c in _claim_records(claims)]),
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
    }
    with atomic_write(out, "w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True)
    return out


def _claim_records(claims: Any) -> list[dict]:
    if claims is None:
        return []
    if hasattr(claims, "records"):
        return list(claims.records())
    if isinstance(claims, (list, tuple)) and all(isinstance(c, Mapping) for c in claims):
        return [dict(c) for c in claims]
    raise TypeError("claims= takes a labkit.claims.Ledger (or a list of its records), got "
                    f"{type(claims).__name__}.")


def load(path: str | os.PathLike) -> dict:
    """Read a results file written by `record`."""
    with open(path) as fh:
        return json.load(fh)
