"""The package, its tests, benchmarks and scripts pass the linter (ruff, configured in pyproject.toml): unused imports,
undefined names, style."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None,
                    reason="ruff is not installed (it comes with the dev extras: pip install -e '.[dev]')")
@pytest.mark.parametrize("folder", ["labkit", "tests", "benchmarks", "scripts"])
def test_ruff_finds_nothing(folder):
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                           folder], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"ruff check {folder} found problems:\n{proc.stdout}{proc.stderr}"
