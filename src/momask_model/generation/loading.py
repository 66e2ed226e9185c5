"""Where the model comes from and where it runs: the compute device and the checkpoint bundle.

Both are resolved before anything loads, so a missing CUDA or a wrong path stops a node or a
benchmark at start with one clear line instead of a slow silent fallback.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["BundleNotFound", "DEMO_BUNDLE", "DeviceUnavailable", "default_bundle_path", "resolve_bundle_path",
           "select_device"]

DEMO_BUNDLE = ("momask_model", "assets/demo_bundle.pt")

class DeviceUnavailable(RuntimeError):
    """The requested compute device does not exist on this machine."""


class BundleNotFound(FileNotFoundError):
    """No checkpoint bundle at the configured path (or the packaged demo bundle is missing)."""


def select_device(spec: str = "auto") -> "Any":
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N`` -> ``torch.device``.

    Raises:
        DeviceUnavailable: CUDA was asked for explicitly and is not available (silently falling back
            to the CPU would make a robot wait ten times longer without saying why).
        ValueError: the string names no device kind.
    """
    import torch

    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"device {spec!r} requested but CUDA is not available; use 'auto' or 'cpu'")
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailable(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return device
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {spec!r}")


def default_bundle_path() -> Path:
    """Where the packaged demo bundle lives (``momask_model/assets/demo_bundle.pt``), found through
    ``importlib.resources`` so it works from a source tree, a wheel and a colcon install alike."""
    package, rel = DEMO_BUNDLE
    return Path(str(resources.files(package).joinpath(rel)))


def resolve_bundle_path(path: str | Path | None) -> Path:
    """The bundle to load: ``path`` if given, else the packaged demo bundle; it must exist.

    Raises:
        BundleNotFound: naming the path and how to fix it.
    """
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise BundleNotFound(f"bundle_path {str(p)!r} does not exist or is not a file")
        return p
    p = default_bundle_path()
    if not p.is_file():
        raise BundleNotFound(
            f"no bundle_path given and the packaged demo bundle is missing at {p}; "
            "set the bundle_path parameter to a bundle written by momask-import-official or a trainer"
        )
    return p

