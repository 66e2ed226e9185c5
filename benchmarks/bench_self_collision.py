"""Self-collision avoidance in the retargeter, before / after, on real motion and the demo motions.

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/bench_self_collision.py [--data ../shared/data] [--demo]

Per robot (H1, G1, default humanoid), retargeting without and with the IK's collision-avoidance limit
(interleaved, best of --repeat timings), on HumanML3D sample 012314: the deepest self-penetration between
counted geom pairs (`momask_ros.robot.self_collision`: every pair except those touching at rest or unable
to meet within the joint limits; target < 5 mm), the pair, mean keypoint error (target: grows by at most
10 %) and input frames per second (target >= 400 on one core), by the wall clock and by this process's
CPU time (the figure that holds on a shared machine). With --demo also the demo motions: the 20
DeepMimic clips as HumanML3D joints (the demo model's training motions) and the packaged demo model's
motion for one caption of each skill: how many go 5 mm deep, the deepest, and the mean keypoint error.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from momask_ros.retarget.retargeter import Retargeter  # noqa: E402
from momask_ros.robot.model import load_robot  # noqa: E402
from momask_ros.robot.self_collision import SelfCollisionMeter  # noqa: E402

DESCRIPTIONS = {"h1": "robots/unitree_h1/h1.xml", "g1": "robots/unitree_g1/g1_29dof.xml", "default": None}


def run(robot, meter, motion, avoid: bool, repeat: int = 1):
    """(deepest penetration, mean keypoint error [m], frames/s by the wall clock, frames/s by CPU time)."""
    retargeter = Retargeter(robot, self_collision=avoid)
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        traj = retargeter.retarget(motion, fps=20.0)
        best, best_cpu = min(best, time.perf_counter() - start), min(best_cpu, time.process_time() - start_cpu)
    qpos = np.array([robot.full_qpos(p, b, q) for p, b, q in zip(traj.positions, traj.base_position, traj.base_quat_wxyz)])
    return meter.deepest(qpos), float(traj.keypoint_error_m.mean()), len(motion) / best, len(motion) / best_cpu


def demo_motions(data: Path) -> dict[str, np.ndarray]:
    from momask_model.data.mocap.deepmimic import deepmimic_to_joints, load_deepmimic_character, load_deepmimic_clip
    from momask_model.data.mocap.demo_skills import CAPTIONS
    from momask_ros.stream.commands import MotionCommand
    from momask_ros.stream.pipeline import MotionPipeline

    root = data / "deepmimic_mocap"
    character = load_deepmimic_character(root / "characters" / "humanoid3d.txt")
    out = {}
    for path in sorted((root / "motions").glob("humanoid3d_*.txt")):
        out[f"mocap {path.stem[11:]}"] = deepmimic_to_joints(load_deepmimic_clip(path, character))
    pipe = MotionPipeline.from_bundle(None, robot="default", device="cpu")
    for skill in pipe.known_skills():
        text = CAPTIONS[skill][0]
        out[f"demo model '{text}'"] = pipe.generate(MotionCommand(text, length_frames=80, seed=0)).joints_yup
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--robots", nargs="+", default=["h1", "g1", "default"], choices=sorted(DESCRIPTIONS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--demo", action="store_true", help="also the demo motions (mocap clips, demo model)")
    args = parser.parse_args(argv)
    motion = np.load(args.data / "humanml3d_sample/new_joints/012314.npy")
    demos = demo_motions(args.data) if args.demo else {}
    print(f"HumanML3D 012314 ({len(motion)} frames): without | with self-collision avoidance")
    print(f"{'robot':8s} {'deepest [mm]':>14s} {'kp err [mm]':>14s} {'frames/s wall':>14s} {'frames/s CPU':>13s}"
          f"  pair (without -> with)")
    for name in args.robots:
        rel = DESCRIPTIONS[name]
        robot = load_robot(name, description=args.data / rel if rel else None)
        meter = SelfCollisionMeter.for_robot(robot)
        runs = {False: [], True: []}
        for _ in range(args.repeat):  # interleaved: the machine is shared
            for avoid in (False, True):
                runs[avoid].append(run(robot, meter, motion, avoid))
        (p0, e0, _, _), (p1, e1, _, _) = runs[False][0], runs[True][0]
        f0, f1 = (max(r[2] for r in runs[a]) for a in (False, True))
        c0, c1 = (max(r[3] for r in runs[a]) for a in (False, True))
        print(f"{name:8s} {1e3 * p0.depth_m:6.1f} | {1e3 * p1.depth_m:5.1f} {1e3 * e0:6.1f} | {1e3 * e1:5.1f} "
              f"{f0:6.0f} | {f1:5.0f} {c0:5.0f} | {c1:5.0f}  {p0.pair or '-'} -> {p1.pair or '-'}  "
              f"(kp error {100 * (e1 / e0 - 1):+.1f} %)")
        if demos:
            worst = {False: (0.0, ""), True: (0.0, "")}
            over = {False: 0, True: 0}
            errors: dict[bool, list[float]] = {False: [], True: []}
            for label, joints in demos.items():
                for avoid in (False, True):
                    pen, err = run(robot, meter, joints, avoid)[:2]
                    over[avoid] += pen.depth_m >= 0.005
                    errors[avoid].append(err)
                    if pen.depth_m > worst[avoid][0]:
                        worst[avoid] = (pen.depth_m, f"{label}: {pen.pair}")
            e0, e1 = np.mean(errors[False]), np.mean(errors[True])
            print(f"{'':8s} demo motions: {over[False]} | {over[True]} of {len(demos)} at >= 5 mm; deepest "
                  f"{1e3 * worst[False][0]:.1f} mm ({worst[False][1] or '-'}) | {1e3 * worst[True][0]:.1f} mm "
                  f"({worst[True][1] or '-'}); mean kp error {1e3 * e0:.1f} | {1e3 * e1:.1f} mm "
                  f"({100 * (e1 / e0 - 1):+.1f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
