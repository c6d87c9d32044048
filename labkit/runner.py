"""Compatibility path: `labkit.runner` is `labkit.tools.runner`.

The tools moved to labkit/tools/. This module puts that module object in its own place, so every name
(public or not) and every monkeypatch is the same on both paths and old imports keep working.
`python -m labkit.runner ...` still runs it.
"""
import sys

from labkit.tools import runner as _module

if __name__ == "__main__":
    sys.exit(_module.main())
sys.modules[__name__] = _module
