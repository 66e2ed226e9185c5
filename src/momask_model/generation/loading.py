"""Where the model comes from and where it runs: the compute device and the checkpoint bundle.

One parser for every device string (the CLI, the node, the trainers and the benchmarks), and one
place that knows where the packaged demo bundle is. Both are resolved before anything loads, so a
missing CUDA or a wrong path stops a node or a benchmark at start with one clear line instead of a
slow silent fallback. Importing this module does not import torch.
"""
from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads on the first device selected, not when this module is imported
    import torch

__all__ = ["BundleNotFound", "DEMO_BUNDLE", "DEVICE_CHOICES", "DeviceError", "DeviceUnavailable",
           "default_bundle_path", "device_problem", "resolve_bundle_path", "select_device"]

DEMO_BUNDLE = ("momask_model", "assets/demo_bundle.pt")
#: The device strings every entry point takes.
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


class DeviceError(ValueError):
    """A device string that names no device."""


class DeviceUnavailable(RuntimeError):
    """The requested compute device does not exist on this machine."""


class BundleNotFound(FileNotFoundError):
    """No checkpoint bundle at the configured path (or the packaged demo bundle is missing)."""


def device_problem(spec: object) -> str | None:
    """What is wrong with a device string's form (None when it is one of `DEVICE_CHOICES`); checks
    only the syntax, so a parameter can be judged without torch or the hardware."""
    if isinstance(spec, str) and _DEVICE_RE.match(spec.strip().lower()):
        return None
    return f"must be {DEVICE_CHOICES}, got {spec!r}"


def select_device(spec: str = "auto", *, local_rank: int | None = None) -> "torch.device":
    """A device string -> ``torch.device``: ``auto`` (CUDA when present, else the CPU), ``cpu``,
    ``cuda``, ``cuda:N`` or ``mps``.

    Args:
        spec: the string (case and surrounding spaces ignored; empty means ``auto``).
        local_rank: under ``torchrun``, ``auto`` picks ``cuda:<local_rank>``.
    Raises:
        DeviceError: the string names no device.
        DeviceUnavailable: CUDA or MPS was asked for explicitly and is not available (silently falling
            back to the CPU would make a robot wait ten times longer without saying why).
    """
    import torch

    spec = (spec or "auto").strip().lower()
    problem = device_problem(spec)
    if problem is not None:
        raise DeviceError(f"device {problem}")
    if spec == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda" if local_rank is None else f"cuda:{local_rank}")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"device {spec!r} requested but CUDA is not available; use 'auto' or 'cpu'")
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailable(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return device
    if spec == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailable("device 'mps' requested but MPS is not available; use 'auto' or 'cpu'")
    return torch.device(spec)


def default_bundle_path() -> Path:
    """Where the packaged demo bundle lives (``momask_model/assets/demo_bundle.pt``: trained on real
    mocap, offline text encoder), found through ``importlib.resources`` so it works from a source
    tree, a wheel and a colcon install alike."""
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
