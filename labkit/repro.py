"""Reproducibility: one explicit seed call, deterministic CPU settings for quick mode."""
from __future__ import annotations

import contextlib
import os
import random

__all__ = ["seed_everything", "local_seed", "resolve_device", "cpu_signature", "run_signature"]


def seed_everything(seed: int = 0, deterministic: bool = True, threads: int | None = None) -> int:
    """Seed Python, NumPy and torch; with deterministic=True also ask torch for deterministic kernels.

    threads: torch CPU threads (None keeps torch's default). Quick-mode results are stable for a fixed thread count.
    """
    import numpy as np
    import torch

    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}.")
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if threads is not None:
        torch.set_num_threads(int(threads))
    if deterministic:
        # warn_only: a kernel with no deterministic version warns instead of stopping a student's notebook
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return seed


@contextlib.contextmanager
def local_seed(seed: int):
    """Inside the block, torch's random state starts from `seed`; afterwards the caller's own state is back, as if
    the block had drawn nothing.

    What library functions that take a `seed` use (a new head's initial weights, dropout while training a head), so
    a function gives the same numbers for the same seed without overriding the student's own seeding: unlike
    torch.manual_seed, nothing leaks out. The CPU generator is always forked; CUDA's too where CUDA is available.
    """
    import torch

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def cpu_signature() -> str:
    """Machine, CPU vendor and the vector instructions torch's CPU kernels use, e.g. "x86_64 AuthenticAMD AVX512".

    Seeded training reproduces to the last bit only where this (and the thread count) is the same: an AVX2 CPU
    rounds a long sum differently from an AVX-512 one, and a few hundred training steps turn that into a different
    third decimal. The nbval tests use it to tell whether the committed outputs came from this kind of CPU.
    """
    import platform

    import torch

    vendor = ""
    try:
        with open("/proc/cpuinfo") as f:
            vendor = next((line.split(":", 1)[1].strip() for line in f if line.startswith("vendor_id")), "")
    except OSError:  # not Linux
        vendor = platform.processor()
    return f"{platform.machine()} {vendor or 'unknown-vendor'} {torch.backends.cpu.get_cpu_capability()}"


def run_signature() -> str:
    """cpu_signature() plus torch's CPU thread count, e.g. "x86_64 AuthenticAMD AVX512 threads=2".

    The thread count matters as much as the CPU kind: a convolution split over one thread or two adds its partial
    sums in another order, and a randomly initialised network amplifies that last-bit difference with depth
    (EfficientNet-Lite0's pooled features differ from the third stage on), enough to move a linear probe by one or
    two test images. What nbval compares digit for digit is therefore tied to both (`make outputs` records this).
    """
    import torch

    return f"{cpu_signature()} threads={torch.get_num_threads()}"


def resolve_device(device: str | None = "auto"):
    """'auto' picks cuda, then mps, then cpu; an explicit device that is not available is an error."""
    import torch

    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was requested but no CUDA GPU is visible: use device='auto' or 'cpu'.")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("device='mps' was requested but Apple MPS is not available: use device='auto'.")
    return dev
