"""Reading and checking a `labkit batch` spec (docs/batches.md): every problem is found before anything runs.

`load_spec` turns SPEC.yaml into a `Batch` of `Run`s (notebook + parameters, each with a run id named after what it
computes), checked against the notebooks' parameters cells and `labkit.params`; a spec that cannot run raises
`SpecError` listing every problem, one per line.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from labkit.params import TIER_NAMES
from labkit.tools.bands import find_bands, load_bands
from labkit.tools.execution import DEFAULT_CELL_TIMEOUT, DEFAULT_KERNEL
from labkit.tools.notebooks import available_notebooks, resolve_notebook
from labkit.tools.parameters import check_parameters, notebook_parameters

SPEC_KEYS = {"name", "notebooks", "notebooks_dir", "tier", "parameters", "grid", "seeds", "repeats", "retries",
             "cpu_workers", "kernel", "cell_timeout", "timeout", "headline", "reference_bands"}
NOTEBOOK_KEYS = {"notebook", "parameters", "grid", "headline"}
DEFAULT_RETRIES = 1


class SpecError(ValueError):
    """A batch spec that cannot run; the message lists every problem found, one per line."""


@dataclass
class Run:
    """One planned notebook execution."""

    run_id: str
    notebook: str  # notebook id, e.g. "00_tour"
    source: Path
    parameters: dict[str, Any]


@dataclass
class Batch:
    """A validated spec: what to run, how, and where the results go."""

    name: str
    spec_path: Path
    tier: str
    runs: list[Run]
    swept: list[str]  # parameter names that vary between runs ("seed" last), the columns of the report
    kernel: str | None = DEFAULT_KERNEL
    cell_timeout: float | None = DEFAULT_CELL_TIMEOUT
    timeout: float | None = None
    retries: int = DEFAULT_RETRIES
    cpu_workers: int = 1  # runs side by side on a machine without a GPU (--workers overrides)
    headline: list[str] = field(default_factory=list)
    bands: dict = field(default_factory=dict)
    bands_file: Path | None = None



def _slug(value: Any) -> str:
    """A short, filesystem-safe rendering of a parameter value for a run id."""
    text = json.dumps(value) if not isinstance(value, str) else value
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-")[:24] or "x"


def run_id_for(notebook: str, parameters: Mapping[str, Any], swept: list[str]) -> str:
    """Readable and stable: the swept values plus a hash of *all* parameters, so changing any value means a new run."""
    digest = hashlib.sha1(json.dumps({"notebook": notebook, "parameters": parameters}, sort_keys=True,
                                     default=str).encode()).hexdigest()[:8]
    parts = [notebook] + [f"{k}={_slug(parameters[k])}" for k in swept if k in parameters] + [digest]
    return "__".join(parts)


def _grid_points(grid: Any, where: str, problems: list[str]) -> list[dict]:
    """Expand `grid` (a mapping name -> list of values, or a list of mappings) into parameter dicts."""
    if grid is None:
        return [{}]
    if isinstance(grid, Mapping):
        for name, values in grid.items():
            if not isinstance(values, list) or not values:
                problems.append(f"{where}grid: '{name}' needs a non-empty list of values, e.g. {name}: [{values!r}]")
                return [{}]
        names = list(grid)
        return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]
    if isinstance(grid, list) and all(isinstance(p, Mapping) for p in grid) and grid:
        return [dict(p) for p in grid]
    problems.append(f"{where}grid: expected a mapping `name: [values]` or a list of mappings, got {grid!r}")
    return [{}]


def _number_or_none(spec: Mapping, key: str, problems: list[str]) -> float | None:
    """A positive number of seconds from the spec, or None (no limit)."""
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        problems.append(f"'{key}' should be a positive number of seconds, got {value!r}")
        return None
    return float(value)


def load_spec(path: str | os.PathLike, retries: int | None = None) -> Batch:
    """Read SPEC.yaml and check it against the notebooks' parameters cells; raise SpecError listing every problem."""
    spec_path = Path(path)
    if not spec_path.is_file():
        raise SpecError(f"{spec_path}: no such spec file")
    try:
        spec = yaml.safe_load(spec_path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{spec_path}: not valid YAML: {exc}") from None
    if not isinstance(spec, Mapping):
        raise SpecError(f"{spec_path}: expected a mapping with at least `notebooks:`; see docs/batches.md")
    spec_dir = spec_path.resolve().parent
    problems: list[str] = []
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(SPEC_KEYS))}")

    tier = spec.get("tier", "quick")
    if tier not in TIER_NAMES:
        problems.append(f"tier must be one of {', '.join(TIER_NAMES)}, not {tier!r}")
    if "seeds" in spec and "repeats" in spec:
        problems.append("give either `seeds: [0, 1, 2]` or `repeats: 3`, not both")
    seeds: list | None = None
    if "seeds" in spec:
        seeds = spec["seeds"]
        if (not isinstance(seeds, list) or not seeds
                or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
            problems.append(f"seeds should be a non-empty list of integers, got {seeds!r}")
            seeds = None
    elif "repeats" in spec:
        repeats = spec["repeats"]
        if isinstance(repeats, int) and not isinstance(repeats, bool) and repeats > 0:
            seeds = list(range(repeats))
        else:
            problems.append(f"repeats should be a positive integer, got {repeats!r}")
    retries = spec.get("retries", DEFAULT_RETRIES) if retries is None else retries
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        problems.append(f"retries should be an integer >= 0, got {retries!r}")
        retries = DEFAULT_RETRIES
    cpu_workers = spec.get("cpu_workers", 1)
    if isinstance(cpu_workers, bool) or not isinstance(cpu_workers, int) or cpu_workers < 1:
        problems.append(f"cpu_workers should be an integer >= 1, got {cpu_workers!r}")
        cpu_workers = 1
    cell_timeout = _number_or_none(spec, "cell_timeout", problems) if "cell_timeout" in spec else DEFAULT_CELL_TIMEOUT
    timeout = _number_or_none(spec, "timeout", problems)
    headline = spec.get("headline") or []
    if not isinstance(headline, list) or not all(isinstance(h, str) for h in headline):
        problems.append(f"headline should be a list of metric names, got {headline!r}")
        headline = []

    notebooks_dir = spec_dir / spec.get("notebooks_dir", ".")
    entries = spec.get("notebooks")
    if isinstance(entries, (str, Mapping)):
        entries = [entries]
    if not entries or not isinstance(entries, list):
        problems.append("`notebooks:` should list notebook ids (e.g. [00_tour]) or .ipynb paths")
        entries = []

    runs: list[Run] = []
    swept: list[str] = []
    for entry in entries:
        if isinstance(entry, Mapping):
            extra_keys = sorted(set(entry) - NOTEBOOK_KEYS)
            if extra_keys or "notebook" not in entry:
                problems.append(f"notebook entry {dict(entry)!r}: needs `notebook:` and may have "
                                f"parameters/grid/headline (unknown: {', '.join(extra_keys) or 'none'})")
                continue
            name, own_params, own_grid = str(entry["notebook"]), dict(entry.get("parameters") or {}), entry.get("grid")
        else:
            name, own_params, own_grid = str(entry), {}, None
        source = resolve_notebook(name, notebooks_dir, base=spec_dir)
        if source is None:
            available = available_notebooks(notebooks_dir)
            problems.append(f"notebook '{name}' not found in {notebooks_dir} (available: {available})")
            continue
        nb_id = source.stem
        try:
            declared = notebook_parameters(source)
        except Exception as exc:  # unreadable notebook: say which
            problems.append(f"{nb_id}: cannot read its parameters cell ({type(exc).__name__}: {exc})")
            continue
        if not declared:
            problems.append(f"{nb_id}: no cell tagged 'parameters'; papermill cannot inject values into it")
            continue
        fixed = {**dict(spec.get("parameters") or {}), **own_params}
        points = [{**g, **o} for g in _grid_points(spec.get("grid"), "", problems)
                  for o in _grid_points(own_grid, f"{nb_id} ", problems)]
        for reserved in ("tier", "results_path"):
            if any(reserved in p for p in points) or reserved in fixed:
                what = "set `tier:` at the top of the spec" if reserved == "tier" else "the runner sets it"
                problems.append(f"{nb_id}: '{reserved}' cannot be a parameter or grid entry ({what})")
        if seeds is not None and ("seed" in fixed or any("seed" in p for p in points)):
            problems.append(f"{nb_id}: 'seed' is set both by seeds/repeats and in parameters/grid; keep one")
        problems += check_parameters(nb_id, declared, fixed, where="parameters")
        for point in points:
            problems += check_parameters(nb_id, declared, point, where="grid")
        if seeds is not None:
            problems += check_parameters(nb_id, declared, {"seed": seeds[0]}, where="seeds")
        if "tier" in declared:
            fixed["tier"] = tier
        nb_swept = list(dict.fromkeys(k for p in points for k in p))
        swept += [k for k in nb_swept if k not in swept]
        for point in points:
            for seed in (seeds if seeds is not None else [None]):
                params = {**fixed, **point, **({"seed": seed} if seed is not None else {})}
                keys = nb_swept + (["seed"] if seed is not None else [])
                runs.append(Run(run_id_for(nb_id, params, keys), nb_id, source.resolve(), params))
    if seeds is not None:
        swept = [s for s in swept if s != "seed"] + ["seed"]

    bands_file = None
    if spec.get("reference_bands"):
        bands_file = spec_dir / spec["reference_bands"]
        if not bands_file.is_file():
            problems.append(f"reference_bands: {bands_file} does not exist")
            bands_file = None
    else:
        bands_file = find_bands(spec_dir)
    bands = {}
    if bands_file is not None:
        try:
            bands = load_bands(bands_file)
        except (ValueError, OSError) as exc:
            problems.append(str(exc))

    if problems:
        raise SpecError(f"{spec_path}: nothing was run:\n  - " + "\n  - ".join(dict.fromkeys(problems)))
    unique = list({r.run_id: r for r in runs}.values())  # the same point listed twice runs once
    return Batch(name=str(spec.get("name") or spec_path.stem), spec_path=spec_path.resolve(), tier=tier, runs=unique,
                 swept=swept, kernel=spec.get("kernel", DEFAULT_KERNEL), cell_timeout=cell_timeout, timeout=timeout,
                 retries=retries, cpu_workers=cpu_workers, headline=headline, bands=bands, bands_file=bands_file)
