#!/usr/bin/env python3
"""Train the MoMask residual stage. Usage: see `--help` (shared flags: momask_model.train.cli)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from momask_model.train.cli import main_stage  # noqa: E402

if __name__ == "__main__":
    sys.exit(main_stage("residual"))
