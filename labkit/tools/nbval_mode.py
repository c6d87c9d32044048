"""Whether nbval compares the committed notebook outputs digit for digit on this machine (conftest.py asks).

Seeded training reproduces to the last bit only on the same kind of CPU with the same thread count
(`labkit.repro.run_signature`, which `make outputs` records in tests/nbval_reference_cpu.txt); elsewhere the
numbers and verdicts are masked and only cells, claims and table layout are compared.
"""
from __future__ import annotations

from labkit.repro import run_signature

__all__ = ["RUN_CHOSEN_TAG", "outputs_comparable", "uncheck_run_chosen"]

# A cell whose printed words are chosen by what the run measured (which rows a ranking puts first, a sentence
# picked by this run's verdict, a status that flips near its floor). On the recorded CPU its output is compared
# digit for digit; on another kind it is still run (an error fails) but its text is not compared: another CPU's
# rounding is another draw, and masking numbers cannot make a different choice of words compare equal.
RUN_CHOSEN_TAG = "run-chosen"


def outputs_comparable(recorded: str | None, here: str | None = None, forced: str | None = None) -> tuple[bool, str]:
    """Can committed notebook outputs recorded on `recorded` (a run_signature) be compared digit for digit here?

    Returns (exact, why). `forced` is LABKIT_NBVAL_EXACT's value: "1" or "0" overrides the answer.
    """
    here = here or run_signature()
    recorded = (recorded or "").strip() or "an unrecorded CPU"
    if forced not in (None, "", "0", "1"):
        raise ValueError(f"LABKIT_NBVAL_EXACT must be 0 or 1, got {forced!r}.")
    if forced in ("0", "1"):
        return forced == "1", f"LABKIT_NBVAL_EXACT={forced} (outputs recorded on {recorded}; this CPU: {here})"
    if here == recorded:
        return True, f"outputs recorded on this kind of CPU ({here}): numbers compared exactly"
    return False, (f"outputs recorded on {recorded}, this machine is {here}: numbers and verdicts masked, "
                   "cells, claims and table layout compared (see conftest.py)")



def uncheck_run_chosen(items) -> list[str]:
    """In masked mode: nbval items (notebook cells) tagged RUN_CHOSEN_TAG are run but their output not compared.

    Returns the names of the items changed. Items that are not notebook cells are left alone.
    """
    changed = []
    for item in items:
        cell, options = getattr(item, "cell", None), getattr(item, "options", None)
        if cell is None or options is None:
            continue
        if RUN_CHOSEN_TAG in (cell.get("metadata", {}).get("tags") or []):
            options["check"] = False
            changed.append(item.name)
    return changed
