"""Retargeting benchmark: quality and speed per robot (H1, G1, default) on real HumanML3D motion.

Prints, per robot: mean keypoint error after forward kinematics (robot points vs scaled human targets),
deepest foot penetration, position / velocity limit violations (must be 0), the largest joint velocity as a
fraction of its limit, and retarget speed in input frames per second on this process (run it with
OMP_NUM_THREADS=1 / taskset for a one-core figure).

    python benchmarks/bench_retarget.py [--data ../shared/data] [--rate 50] [--repeat 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from momask_ros.retarget import Retargeter  # noqa: E402
from momask_ros.robot import load_robot  # noqa: E402

DESCRIPTIONS = {"h1": "robots/unitree_h1/h1.xml", "g1": "robots/unitree_g1/g1_29dof.xml", "default": None}


def bench_robot(name: str, data_dir: Path, motion: np.ndarray, *, rate_hz: float, repeat: int) -> dict:
    rel = DESCRIPTIONS[name]
    robot = load_robot(name, description=data_dir / rel if rel else None)
    retargeter = Retargeter(robot, rate_hz=rate_hz)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        traj = retargeter.retarget(motion, fps=20.0)
        best = min(best, time.perf_counter() - start)
    lo, hi = robot.position_limits[:, 0], robot.position_limits[:, 1]
    pos_viol = int(np.sum((traj.positions < lo) | (traj.positions > hi)))
    ratio = np.abs(traj.velocities) / robot.velocity_limits
    vel_viol = int(np.sum(ratio > 1.0 + 1e-9))
    worst = int(np.argmax(ratio.max(axis=0)))
    return {
        "robot": name, "frames": int(len(motion)), "samples": int(len(traj)), "rate_hz": rate_hz,
        "mean_keypoint_error_m": float(traj.keypoint_error_m.mean()),
        "max_keypoint_error_m": float(traj.keypoint_error_m.max()),
        "max_penetration_m": float(traj.max_penetration_m),
        "position_limit_violations": pos_viol, "velocity_limit_violations": vel_viol,
        "max_velocity_fraction_of_limit": float(ratio.max()),
        "max_velocity_joint": robot.joint_names[worst],
        "max_velocity_rad_s": float(np.abs(traj.velocities[:, worst]).max()),
        "velocity_limit_rad_s": float(robot.velocity_limits[worst]),
        "frames_per_s": float(len(motion) / best),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="shared data folder")
    parser.add_argument("--motion", default="humanml3d_sample/new_joints/012314.npy", help="joints file under --data")
    parser.add_argument("--robots", nargs="+", default=["h1", "g1", "default"], choices=sorted(DESCRIPTIONS))
    parser.add_argument("--rate", type=float, default=50.0, help="output control rate [Hz]")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats (best is reported)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    motion = np.load(args.data / args.motion)
    rows = [bench_robot(name, args.data, motion, rate_hz=args.rate, repeat=args.repeat) for name in args.robots]
    header = f"{'robot':8s} {'kp err mean/max [m]':>20s} {'penetr. [m]':>12s} {'viol pos/vel':>13s} " \
             f"{'max |v| / limit (joint)':>44s} {'frames/s':>9s}"
    print(f"motion {args.motion}: {len(motion)} frames at 20 fps -> {args.rate:g} Hz")
    print(header)
    for r in rows:
        vel = f"{r['max_velocity_rad_s']:.2f}/{r['velocity_limit_rad_s']:.0f} = {r['max_velocity_fraction_of_limit']:.2f} " \
              f"({r['max_velocity_joint']})"
        print(f"{r['robot']:8s} {r['mean_keypoint_error_m']:9.3f}/{r['max_keypoint_error_m']:<10.3f} "
              f"{r['max_penetration_m']:12.4f} {r['position_limit_violations']:6d}/{r['velocity_limit_violations']:<6d} "
              f"{vel:>44s} {r['frames_per_s']:9.0f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
