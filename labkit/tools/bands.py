"""Reference bands: notebook -> tier -> metric -> [low, high] (batches/reference_bands.yaml).

`labkit run` marks each recorded number against its band; `labkit batch` marks the means over seeds.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["BANDS_FILE", "find_bands", "load_bands", "band_verdict", "bands_for"]

BANDS_FILE = "reference_bands.yaml"


def find_bands(*directories: str | os.PathLike) -> Path | None:
    """The reference-bands file next to a spec or in a repo's `batches/` folder, if there is one."""
    candidates = []
    for d in directories:
        d = Path(d)
        candidates += [d / BANDS_FILE, d / "batches" / BANDS_FILE, d.parent / "batches" / BANDS_FILE]
    candidates.append(Path("batches") / BANDS_FILE)
    return next((c for c in candidates if c.is_file()), None)


def load_bands(path: str | os.PathLike) -> dict:
    """Read and check a reference-bands YAML; a malformed entry is an error that names it."""
    import yaml

    with open(path) as fh:
        bands = yaml.safe_load(fh) or {}
    if not isinstance(bands, dict):
        raise ValueError(f"{path}: expected `notebook: {{tier: {{metric: [low, high]}}}}` at the top level")
    for notebook, tiers in bands.items():
        for tier, metrics in (tiers or {}).items():
            for metric, band in (metrics or {}).items():
                ok = (isinstance(band, (list, tuple)) and len(band) == 2
                      and all(isinstance(b, (int, float)) for b in band) and band[0] <= band[1])
                if not ok:
                    raise ValueError(f"{path}: {notebook}.{tier}.{metric} should be [low, high], got {band!r}")
    return bands


def bands_for(bands: Mapping | None, notebook: str, tier: str) -> dict:
    """The bands of one notebook and tier (empty when there are none)."""
    return dict(((bands or {}).get(notebook) or {}).get(tier) or {})


def band_verdict(value: Any, band: Sequence[float] | None) -> str:
    """'' without a band; 'ok [lo, hi]' inside; 'OUTSIDE [lo, hi]' otherwise (numbers only)."""
    if band is None:
        return ""
    lo, hi = band
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return f"no number (expected [{lo:g}, {hi:g}])"
    return f"{'ok' if lo <= value <= hi else 'OUTSIDE'} [{lo:g}, {hi:g}]"
