#!/usr/bin/env python3
"""Build the demo model's HumanML3D-layout dataset from the DeepMimic clips.

Example:
    python training/build_demo_dataset.py --mocap ../shared/data/deepmimic_mocap --out data/demo_humanml3d --seed 0
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from momask_model.data.mocap.demo_dataset import build_demo_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mocap", required=True, type=Path, help="DeepMimic folder with characters/ and motions/")
    parser.add_argument("--out", required=True, type=Path, help="output dataset root (HumanML3D layout)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random variation")
    parser.add_argument("--variants", type=int, default=20, help="items per skill before mirroring")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    start = time.perf_counter()
    summary = build_demo_dataset(args.mocap, args.out, seed=args.seed, variants_per_skill=args.variants)
    print(summary)
    print(f"built in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
