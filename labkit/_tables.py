"""Tables for reports and terminals, written once: `labkit run`, `labkit batch` and `labkit quiz grade` use them.

A leaf module (standard library only), so lesson modules (labkit.quiz) and the tools (labkit.tools) can share it.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

__all__ = ["flatten_numbers", "format_value", "markdown_cell", "markdown_table", "text_table"]


def flatten_numbers(numbers: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested metrics to 'a.b' keys, keeping scalars only (lists are too long for a table)."""
    flat: dict[str, Any] = {}
    for key, value in numbers.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_numbers(value, prefix=f"{name}."))
        elif isinstance(value, (int, float, str, bool)) or value is None:
            flat[name] = value
    return flat


def format_value(value: Any) -> str:
    """Format a recorded number for a table: 4 significant digits for floats."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_cell(value: Any) -> str:
    """Text that stays inside one Markdown table cell (or heading): pipes escaped, line breaks as spaces."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    """A GitHub-flavoured Markdown table; every cell goes through `markdown_cell`."""
    lines = ["| " + " | ".join(markdown_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(markdown_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(header: list[str], rows: Iterable[Iterable[Any]], rule: bool = True) -> str:
    """A plain aligned table for the terminal; rule: a line of dashes under the header."""
    cells = [[str(h) for h in header]] + [[str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    if rule:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
