"""Compatibility path: `labkit.batch_report` is `labkit.tools.batch_report`.

The tools moved to labkit/tools/. This module puts that module object in its own place, so every name
(public or not) and every monkeypatch is the same on both paths and old imports keep working.
"""
import sys

from labkit.tools import batch_report as _module

sys.modules[__name__] = _module
