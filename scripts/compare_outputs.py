"""Compare a notebook's committed outputs with a fresh execution of it, cell by cell, the way nbval does.

nbval stops at the first output of a cell that differs and needs a full run per try; this reads two executed
notebooks (say the committed solution and a papermill run on another CPU) and lists every difference, word by
word, after the same sanitizing nbval would apply. Use it to see what another CPU kind changes before deciding
what the masked comparison must hide:

    papermill solutions/02_freeze_strategies.ipynb /tmp/02.ipynb --cwd solutions
    python scripts/compare_outputs.py solutions/02_freeze_strategies.ipynb /tmp/02.ipynb           # as on this CPU
    python scripts/compare_outputs.py solutions/02_freeze_strategies.ipynb /tmp/02.ipynb --masked  # another CPU

Exit status 0 when every checked cell matches, 1 otherwise.
"""
from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

import nbformat
from nbval.plugin import coalesce_streams, get_sanitize_patterns

TESTS = Path(__file__).resolve().parent.parent / "tests"
# what nbval leaves out of the comparison (images are only compared with nbdime)
SKIP = ("metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
        "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg")
IGNORED = ("NBVAL_IGNORE_OUTPUT", "NBVAL_SKIP")


def patterns(masked: bool) -> list[tuple[str, str]]:
    cfgs = ["nbval_sanitize.cfg"] + (["nbval_sanitize_numbers.cfg"] if masked else [])
    found: dict[str, str] = {}  # nbval keeps them in a dict keyed by regex, in file order
    for cfg in cfgs:
        found.update(get_sanitize_patterns((TESTS / cfg).read_text()))
    return list(found.items())


def sanitize(value, pats):
    if isinstance(value, list):
        value = "".join(value)
    if not isinstance(value, str):
        return value
    for regex, replace in pats:
        value = re.sub(regex, replace, value)
    return value


def flatten(outputs, pats) -> dict[str, list]:
    flat: dict[str, list] = {}
    for out in coalesce_streams([nbformat.from_dict(o) for o in outputs]):
        for key, value in out.items():
            if key in SKIP:
                continue
            items = value.items() if key == "data" else [(key, value)]
            for sub, v in items:
                if sub not in SKIP:
                    flat.setdefault(sub, []).append(sanitize(v, pats))
    return flat


def word_diff(a: str, b: str, width: int = 110) -> list[str]:
    ta, tb = re.split(r"(_|\s+|</?t[dhr]>)", a), re.split(r"(_|\s+|</?t[dhr]>)", b)
    lines = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes():
        if op != "equal":
            before = " ".join("".join(ta[max(0, i1 - 30):i1]).split())[-width:]
            was, now = "".join(ta[i1:i2])[:200], "".join(tb[j1:j2])[:200]
            lines.append(f"    ...{before} | recorded: {was!r} | new: {now!r}")
    return lines


def checked_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


def compare(recorded: Path, new: Path, masked: bool) -> list[str]:
    pats = patterns(masked)
    ref_nb, new_nb = nbformat.read(recorded, 4), nbformat.read(new, 4)
    ref_cells, new_cells = checked_cells(ref_nb), checked_cells(new_nb)
    report = []
    if len(ref_cells) != len(new_cells):
        report.append(f"{len(ref_cells)} code cells recorded, {len(new_cells)} in the new run")
    for i, (a, b) in enumerate(zip(ref_cells, new_cells)):
        tags = a.metadata.get("tags", [])
        if any(flag in a.source for flag in IGNORED) or {"nbval-ignore-output", "nbval-skip"} & set(tags):
            continue
        fa, fb = flatten(a.outputs, pats), flatten(b.outputs, pats)
        if fa == fb:
            continue
        report.append(f"code cell {i} (nbval's 'Cell {i}'): {a.source.splitlines()[0][:80] if a.source else ''}")
        if sorted(fa) != sorted(fb):
            report.append(f"    output kinds: recorded {sorted(fa)}, new {sorted(fb)}")
        for key in sorted(set(fa) & set(fb)):
            if len(fa[key]) != len(fb[key]):
                report.append(f"    {key}: {len(fa[key])} outputs recorded, {len(fb[key])} new")
            for x, y in zip(fa[key], fb[key]):
                if x != y:
                    report.extend(word_diff(str(x), str(y)))
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recorded", type=Path, help="the notebook with the committed outputs")
    parser.add_argument("new", type=Path, help="the same notebook executed again")
    parser.add_argument("--masked", action="store_true",
                        help="compare as on another CPU kind (tests/nbval_sanitize_numbers.cfg added)")
    args = parser.parse_args(argv)
    for path in (args.recorded, args.new):
        if not path.is_file():
            parser.error(f"no notebook at {path}")
    report = compare(args.recorded, args.new, args.masked)
    print("\n".join(report) if report else f"{args.recorded.name}: every checked cell matches")
    return 1 if report else 0


if __name__ == "__main__":
    sys.exit(main())
