"""Shared test set-up: import from src/ without installing, keep torch on few threads (CI has 2 cores)."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("MUJOCO_GL", "osmesa")
import momask_ros  # noqa: E402,F401  (Triton loads deep-bound: see momask_model.triton_loading)

import pytest  # noqa: E402

SHARED_DATA = ROOT.parent / "shared" / "data"
TWIST2 = ROOT.parent / "shared" / "trackers" / "twist2"

try:
    import torch

    # One intra-op thread for the whole suite (test files need not set it): with two or more busy
    # processes on 2 cores, OpenMP spinning made steps 10-30x slower.
    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Real data beside the checkout (../shared/data); tests needing it skip only if it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def twist2_dir() -> Path:
    """The TWIST2 tracker folder beside the checkout (../shared/trackers/twist2); skip if absent."""
    if not TWIST2.is_dir():
        pytest.skip(f"tracker files not found at {TWIST2}")
    return TWIST2


@pytest.fixture(scope="session")
def bundle(twist2_dir):
    """The loaded (hash-checked) TWIST2 tracker."""
    from momask_ros.tracker import load_tracker

    return load_tracker(twist2_dir)
