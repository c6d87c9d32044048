"""Test-wide settings: offline, no progress bars, and fixture notebooks kept out of nbval's collection."""
import os

# Set before any notebook kernel starts (nbval kernels inherit the environment).
os.environ.setdefault("LABKIT_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LABKIT_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")

collect_ignore_glob = ["fixtures/*"]
