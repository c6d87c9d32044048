"""Compatibility path: `labkit.cli` is `labkit.tools.cli`.

The tools moved to labkit/tools/. This module puts that module object in its own place, so every name
(public or not) and every monkeypatch is the same on both paths and old imports keep working.
`python -m labkit.cli ...` still runs it.
"""
import sys

from labkit.tools import cli as _module

if __name__ == "__main__":
    sys.exit(_module.main())
sys.modules[__name__] = _module
