"""Notebook parameters for `labkit run` and `labkit batch`: the names a notebook accepts, the tiers, the checks of
values given on the command line or in a batch spec, and the `-p NAME=VALUE` parser.

A course notebook's names, types and ranges come from its one declaration in `labkit.params`, so an unknown name or
a bad value is refused with the sentence the notebook itself would stop with. A notebook without a declaration (a
test's) is judged by its `parameters` cell: the names there, and the type of each default.
"""
from __future__ import annotations

import ast
import os
from typing import Any, Mapping

import yaml

from labkit.params import TIER_NAMES, spec, unknown_parameter
from labkit.params import problems as declared_range_problems


def notebook_parameters(path: str | os.PathLike) -> dict[str, dict]:
    """Parameters declared in a notebook's `parameters` cell: name -> {default, inferred_type_name, help}."""
    import papermill  # local import: `labkit run --help` should not pay for papermill

    return dict(papermill.inspect_notebook(str(path)))


def _default_type(param: Mapping[str, Any]) -> type | None:
    """The Python type of a parameter's default value; None when any value is acceptable (e.g. `x = None`)."""
    try:
        default = ast.literal_eval(str(param.get("default")))
    except (ValueError, SyntaxError):
        return None  # an expression, not a literal: we cannot know the type
    return None if default is None else type(default)


def accepted_parameters(notebook: str, declared: Mapping[str, Any]) -> set[str]:
    """The names a notebook accepts: its `labkit.params` declaration, else its parameters cell (`declared`)."""
    return set(spec(notebook)) or set(declared)


def declared_problems(notebook: str, values: Mapping[str, Any]) -> list[str]:
    """What `labkit.params` says of these values for this notebook (nothing for a notebook it does not know)."""
    return declared_range_problems(notebook, values)


def check_parameters(notebook: str, declared: Mapping[str, Mapping], values: Mapping[str, Any],
                     where: str = "") -> list[str]:
    """Problems with `values` for a notebook whose parameters cell declares `declared` (one line each)."""
    problems = []
    place = f" ({where})" if where else ""
    names = accepted_parameters(notebook, declared)
    for name, value in values.items():
        if name not in names:
            problems.append(unknown_parameter(notebook, name, names) + place)
            continue
        if name == "results_path":
            problems.append(f"{notebook}: 'results_path' is set by the runner{place}; remove it")
            continue
        if name == "tier" and value not in TIER_NAMES:
            problems.append(f"{notebook}: tier must be one of {', '.join(TIER_NAMES)}, not {value!r}{place}")
            continue
        ranged = declared_problems(notebook, {name: value})  # type, range, allowed values (labkit.params)
        if ranged:
            problems += [f"{line}{place}" for line in ranged]
            continue
        expected = _default_type(declared.get(name, {}))
        if expected is None or value is None:
            continue
        ok = isinstance(value, expected) and not (isinstance(value, bool) and expected is not bool)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True  # 1 is a fine learning-rate-like float
        if not ok:
            problems.append(f"{notebook}: parameter '{name}' should be {expected.__name__} "
                            f"(default {declared[name].get('default')}), got {type(value).__name__} {value!r}{place}")
    return problems


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """Parse repeated `-p NAME=VALUE` options; VALUE is YAML, so 0.1 is a float, true a bool, [1, 2] a list."""
    values = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise SystemExit(f"labkit: -p expects NAME=VALUE (e.g. -p seed=1), got {item!r}")
        try:
            values[name.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise SystemExit(f"labkit: cannot read the value in -p {item!r}: {exc}") from None
    return values
