"""Test-wide settings for unit tests and nbval alike: offline and no progress bars.

Set before any notebook kernel starts (nbval kernels inherit this environment). The matplotlib backend is left
alone: notebook kernels use the inline backend, so figures are part of the outputs nbval compares.
"""
import os

os.environ.setdefault("LABKIT_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LABKIT_PROGRESS", "0")
