"""labkit: a transfer-learning teaching and lab kit.

Importing labkit has no side effects: it does not import torch, seed anything or touch the network.
The main entry points are imported lazily on first use.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "load_backbone": "labkit.assets",
    "load_text_model": "labkit.assets",
    "AssetUnavailableError": "labkit.assets",
    "fit": "labkit.train",
    "evaluate": "labkit.train",
    "Callback": "labkit.train",
    "seed_everything": "labkit.repro",
    "record": "labkit.results",
    "predict": "labkit.prediction",
    "tier_settings": "labkit.params",
    "show_tiers": "labkit.params",
    "doctor": "labkit.tools.envcheck",  # the function; the module has another name so `labkit.doctor` stays callable
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return getattr(module, name)
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")


def __dir__():
    return __all__
