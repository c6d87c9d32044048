"""Test-wide settings for unit tests and nbval alike (at the top, so `pytest --nbval solutions` gets them too).

Offline and no progress bars: set before any notebook kernel starts (nbval kernels inherit this environment). The
matplotlib backend is left alone: notebook kernels use the inline backend, so figures are part of the outputs nbval
compares.

nbval compares each checked cell with the committed output. Seeded quick-mode training reproduces those outputs to
the last digit on the kind of CPU and the torch thread count they were recorded with (tests/nbval_reference_cpu.txt,
written by `make outputs`); on another kind (AVX2 instead of AVX-512, Arm instead of x86) or thread count the sums
round differently and a few hundred steps make that another draw (third decimals, the epoch early stopping keeps, a
verdict near its boundary). There numbers, verdicts and run-chosen phrases are masked
(tests/nbval_sanitize_numbers.cfg) and the rest is still compared: cells, claims and their wording, table layout.
A cell whose words are chosen by the outcome (a ranking, a sentence picked by this run's verdict) carries the cell tag
`run-chosen`: there it is run but not compared (labkit.tools.nbval_mode.uncheck_run_chosen).
LABKIT_NBVAL_EXACT=1 forces exact comparison anywhere, LABKIT_NBVAL_EXACT=0 the masked one.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("LABKIT_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LABKIT_PROGRESS", "0")
# quiz answers and predictions of test and nbval runs go to a fresh folder, never the user's own answers file (a
# guess recorded there would change what a prediction cell prints)
os.environ.setdefault("LABKIT_RESPONSES_DIR", tempfile.mkdtemp(prefix="labkit-responses-"))

TESTS = Path(__file__).parent / "tests"
REFERENCE_CPU = TESTS / "nbval_reference_cpu.txt"
NUMBERS_CFG = TESTS / "nbval_sanitize_numbers.cfg"


def pytest_configure(config):
    base = getattr(config.option, "nbval_sanitize_with", None)
    if not getattr(config.option, "nbval", False) or not base:
        return
    from labkit.tools.nbval_mode import outputs_comparable

    recorded = REFERENCE_CPU.read_text() if REFERENCE_CPU.exists() else None
    exact, why = outputs_comparable(recorded, forced=os.environ.get("LABKIT_NBVAL_EXACT"))
    config._labkit_nbval = why
    if exact:
        return
    fd, path = tempfile.mkstemp(prefix="labkit-nbval-", suffix=".cfg")
    with os.fdopen(fd, "w") as f:
        f.write(Path(base).read_text() + "\n" + NUMBERS_CFG.read_text())
    config._labkit_nbval_cfg = path
    config.option.nbval_sanitize_with = path


def pytest_collection_modifyitems(config, items):
    if getattr(config, "_labkit_nbval_cfg", None):  # masked mode only: on the recorded CPU every cell is compared
        from labkit.tools.nbval_mode import uncheck_run_chosen

        uncheck_run_chosen(items)


def pytest_unconfigure(config):
    path = getattr(config, "_labkit_nbval_cfg", None)
    if path:
        Path(path).unlink(missing_ok=True)


def pytest_report_header(config):
    why = getattr(config, "_labkit_nbval", None)
    return f"nbval: {why}" if why else None
