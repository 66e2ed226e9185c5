"""`momask-check motion.npz --robot g1`: retarget a human motion and say whether the robot could do it.

Input: a ``momask-generate`` output (.npz with ``joints`` (B, T, 22, 3), ``lengths``, ``fps``), any .npz
with a (T, 22, 3) ``joints`` array, or a HumanML3D ``new_joints/*.npy`` (T, 22, 3) file. Prints the
physical checks (`momask_ros.physics.checks`); the verdict is OK only when every check was evaluated and
passes (balance is "not evaluated" without a foot in contact). Exit status 0, or 1 with ``--strict`` when
a threshold fails, 2 for bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def load_human_motion(path: Path, index: int = 0) -> tuple[np.ndarray, float]:
    """(T, 22, 3) joints [m] (HumanML3D axes) and fps from an .npz / .npy file."""
    if not path.is_file():
        raise ValueError(f"motion file not found: {path}")
    if path.suffix == ".npy":
        return np.load(path), 20.0
    with np.load(path) as data:
        if "joints" not in data:
            raise ValueError(f"{path} has no 'joints' array (keys: {sorted(data.keys())})")
        joints = data["joints"]
        fps = float(data["fps"]) if "fps" in data else 20.0
        if joints.ndim == 4:
            if not 0 <= index < joints.shape[0]:
                raise ValueError(f"--index {index} outside the {joints.shape[0]} motions in {path}")
            n = int(data["lengths"][index]) if "lengths" in data else joints.shape[1]
            joints = joints[index, :n]
    return joints, fps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="momask-check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("motion", type=Path, help=".npz from momask-generate, or a (T, 22, 3) joints .npy/.npz")
    p.add_argument("--robot", default="default", help="default | h1 | g1 | profile YAML")
    p.add_argument("--description", default=None, help="robot MJCF/URDF (H1/G1 descriptions are not shipped)")
    p.add_argument("--index", type=int, default=0, help="which motion of a batch")
    p.add_argument("--no-self-collision-avoidance", action="store_true", help="retarget without it (to compare)")
    p.add_argument("--max-torque-ratio", type=float, default=None)
    p.add_argument("--min-zmp-inside", type=float, default=None)
    p.add_argument("--max-zmp-outside", type=float, default=None, help="[m]")
    p.add_argument("--json", type=Path, default=None, help="also write the full report here")
    p.add_argument("--strict", action="store_true", help="exit 1 when a threshold fails")
    args = p.parse_args(argv)

    from momask_ros.physics.checks import MotionChecker, Thresholds
    from momask_ros.retarget.retargeter import Retargeter
    from momask_ros.robot.model import load_robot
    from momask_ros.robot.profile import ProfileError

    try:
        joints, fps = load_human_motion(args.motion, args.index)
        robot = load_robot(args.robot, description=args.description)
        traj = Retargeter(robot, self_collision=not args.no_self_collision_avoidance).retarget(joints, fps=fps)
        report = MotionChecker(robot).check_trajectory(traj)
    except (ValueError, ProfileError) as exc:
        print(f"momask-check: {exc}", file=sys.stderr)
        return 2
    defaults = Thresholds()
    limits = Thresholds(
        max_torque_ratio=args.max_torque_ratio if args.max_torque_ratio is not None else defaults.max_torque_ratio,
        min_zmp_inside=args.min_zmp_inside if args.min_zmp_inside is not None else defaults.min_zmp_inside,
        max_zmp_outside_m=args.max_zmp_outside if args.max_zmp_outside is not None else defaults.max_zmp_outside_m)
    print(f"{args.motion.name} on {robot.profile.name}: {report.samples} samples, {report.duration_s:.2f} s")
    print(f"{'joint':30s} {'limit [N m]':>11s} {'peak [N m]':>11s} {'ratio':>6s} {'over':>5s}")
    for name, lim, peak, ratio, over in zip(report.joint_names, report.effort_limits, report.peak_torque,
                                            report.peak_torque_ratio, report.samples_over_limit):
        print(f"{name:30s} {lim:11.1f} {peak:11.1f} {ratio:6.2f} {int(over):5d}{'  <-' if ratio > 1 else ''}")
    sc = report.self_collision
    if report.balance_evaluated:
        print(f"balance: ZMP inside the support polygon in {100 * report.zmp_inside_fraction:.1f}% of "
              f"{report.supported_samples} supported samples, worst {report.zmp_worst_outside_m:.3f} m outside; "
              f"unsupported base force up to {report.max_unsupported_force_n:.0f} N")
    else:
        print(f"balance: not evaluated: no sample has a foot in contact carrying the weight (0 supported samples); "
              f"unsupported base force up to {report.max_unsupported_force_n:.0f} N")
    print(f"feet: sliding in contact max {report.foot_slide_max_mm:.1f} mm/sample (mean "
          f"{report.foot_slide_mean_mm:.2f}); floor penetration {1000 * report.floor_penetration_m:.1f} mm")
    print(f"self-collision: deepest {1000 * sc.depth_m:.1f} mm" + (f" ({sc.pair}, sample {sc.frame})" if sc.pair else ""))
    failures, unjudged = report.failures(limits), report.not_evaluated()
    if failures:
        print("verdict: FAILS: " + "; ".join(failures))
    elif unjudged:
        print("verdict: INCOMPLETE: " + "; ".join(unjudged) + "; the evaluated checks pass")
    else:
        print("verdict: OK")
    note = report.summary(limits).get("note")
    if note:
        print(f"note: {note}")
    if args.json:
        args.json.write_text(json.dumps(report.as_dict(), indent=1))
    return 1 if failures and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
