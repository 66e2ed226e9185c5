"""How rigid generated bones are, and what a rotations-only BVH loses (the BVH section of the docs).

Generates demo-model walks (30 s by default), then prints per seed:

* bone lengths over the clip: the largest range (max - min) and the largest standard deviation of
  any bone, with the bone's name;
* the rotations-only export (``save_bvh(..., translations="root")``, fixed rest bone lengths) read back
  by forward kinematics: the largest and the mean joint error against the generated joints;
* the default export (position channels on every joint) read back by ``bvh_to_joints`` with its
  defaults: the largest joint error (the round trip the docs promise).

    python benchmarks/bench_bvh.py [--seconds 30] [--seeds 0 1 2] [--text "a person walks forward"]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from momask_model.data.mocap.bvh import bvh_to_joints, load_bvh  # noqa: E402
from momask_model.data.mocap.kinematics import forward_kinematics  # noqa: E402
from momask_model.generation.bundle import load_bundle  # noqa: E402
from momask_model.generation.loading import default_bundle_path  # noqa: E402
from momask_model.motion.bvh import BVH_JOINT_NAMES, save_bvh  # noqa: E402
from momask_model.motion.skeleton import T2M_SKELETON  # noqa: E402

PARENTS = list(T2M_SKELETON.parents)


def file_fk(path: Path) -> np.ndarray:
    """Joint positions from the file alone (its own FK, SMPL joint order)."""
    clip = load_bvh(path)
    pos, _ = forward_kinematics(clip.poses())
    return pos[:, [clip.skeleton.joint_names.index(n) for n in BVH_JOINT_NAMES]]


def measure(joints: np.ndarray, folder: Path) -> dict[str, float | str]:
    bones = np.linalg.norm(joints[:, 1:] - joints[:, PARENTS[1:]], axis=-1)  # (T, 21)
    spread, std = bones.max(0) - bones.min(0), bones.std(0)
    rot = np.linalg.norm(file_fk(save_bvh(joints, folder / "root.bvh", translations="root")) - joints, axis=-1)
    full = np.linalg.norm(bvh_to_joints(save_bvh(joints, folder / "all.bvh")) - joints, axis=-1)
    return {"range_cm": 100 * spread.max(), "range_bone": BVH_JOINT_NAMES[1 + int(spread.argmax())],
            "std_cm": 100 * std.max(), "std_bone": BVH_JOINT_NAMES[1 + int(std.argmax())],
            "median_range_cm": 100 * float(np.median(spread)),
            "rot_only_max_cm": 100 * rot.max(), "rot_only_mean_cm": 100 * rot.mean(), "round_trip_max_cm": 100 * full.max()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--text", default="a person walks forward")
    args = p.parse_args(argv)
    model = load_bundle(default_bundle_path())
    frames = int(args.seconds * model.config.dataset.fps) // model.unit_length * model.unit_length
    print(f"demo model, {args.text!r}, {frames} frames ({frames / model.config.dataset.fps:g} s)\n")
    print("| seed | bone range max (cm) | bone std max (cm) | median bone range (cm) | rotations-only max / mean (cm) "
          "| round trip max (cm) |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            joints = model.generate(args.text, frames, seed=seed).motion(0)[1].astype(np.float64)
            m = measure(joints, Path(tmp))
            print(f"| {seed} | {m['range_cm']:.1f} (bone into {m['range_bone']}) | {m['std_cm']:.1f} (into {m['std_bone']}) "
                  f"| {m['median_range_cm']:.1f} | {m['rot_only_max_cm']:.1f} / {m['rot_only_mean_cm']:.1f} "
                  f"| {m['round_trip_max_cm']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
