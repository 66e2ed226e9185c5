"""Simulator benchmark: real-time factor per robot and base mode, harness tracking of the demo walk, free standing.

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/bench_sim.py [--data ../shared/data] [--seconds 5]

* real-time factor: simulated s per wall s, physics only (`Simulator.step` on this thread; 2 ms steps unless
  the profile says otherwise), and with what the node adds per 10 ms of simulated time (reading the state
  it publishes), both as fast as possible on one core; and the momask_sim node itself (harness mode,
  publishing joint_states, base pose and /clock at 100 Hz of simulated time, stepping as fast as it can);
* harness tracking: the demo walk (packaged demo model, "a person walks forward", 3 s, seed 3) streamed at
  50 Hz into harness mode as momask_node streams it (set-points with velocities, base pose), joint error
  against the linearly interpolated command: RMS and max [rad] (targets 0.05 / 0.2);
* free standing: the rest pose held for 10 s in free mode: fallen or not, final tilt and base height;
* start from standing: the node's blend from the standing robot into the same 3 s demo walk, streamed into
  harness mode from rest, max error against the tracked set-point (target < 0.2 rad from the first
  JointState), with the blend before issue 17's fix beside it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from momask_ros.robot.model import load_robot  # noqa: E402
from momask_ros.physics.simulator import SimOptions, Simulator  # noqa: E402

DESCRIPTIONS = {"h1": "robots/unitree_h1/h1.xml", "g1": "robots/unitree_g1/g1_29dof.xml", "default": None}


def rtf(robot, mode: str, seconds: float, with_state: bool) -> float:
    sim = Simulator(robot, SimOptions(mode=mode))
    per_publish = max(1, int(round(0.01 / sim.timestep_s)))
    start = time.perf_counter()
    while sim.time_s < seconds:
        sim.step(per_publish)
        if with_state:
            sim.joint_positions(), sim.joint_velocities(), sim.joint_efforts(), sim.base_pose()
    return sim.time_s / (time.perf_counter() - start)


def node_rtf(robot, mode: str = "harness", wall_s: float = 4.0) -> float:
    """The momask_sim node stepping as fast as it can (publishing joint_states, base pose, /clock at 100 Hz)."""
    import os
    import threading

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from momask_ros.ros.sim_node import SimNode

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(os.environ.get("ROS_DOMAIN_ID", "77")))
    node = SimNode(robot=robot, context=context, parameter_overrides=[
        Parameter("mode", value=mode), Parameter("real_time_factor", value=0.0), Parameter("publish_clock", value=True)])
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    time.sleep(wall_s)
    value = node._rtf
    executor.shutdown(timeout_sec=1.0)
    node.destroy_node()
    rclpy.try_shutdown(context=context)
    return value


def demo_walk(robot_name: str):
    from momask_ros.stream.commands import MotionCommand
    from momask_ros.stream.pipeline import MotionPipeline

    pipe = MotionPipeline.from_bundle(None, robot=robot_name, device="cpu")
    clip = pipe.run(MotionCommand("a person walks forward", length_frames=60, seed=3))
    return [a.copy() for a in clip.samples()]


def harness_tracking(robot, walk) -> tuple[float, float, str]:
    t, q, b, bq = walk
    v = np.gradient(q, t, axis=0)
    sim = Simulator(robot, SimOptions(mode="harness"))
    sim.set_base_target(b[0], bq[0])
    sim.command_joints(robot.joint_names, q[0])
    sim.step(250)
    t0, k, errs = sim.time_s, 0, []
    while sim.time_s - t0 < t[-1]:
        if k < len(t) and sim.time_s - t0 >= t[k] - 1e-9:   # a 50 Hz stream, as momask_node sends it
            sim.set_base_target(b[k], bq[k], (b[k] - b[k - 1]) / (t[k] - t[k - 1]) if k else None)
            sim.command_joints(robot.joint_names, q[k], v[k])
            k += 1
        sim.step()
        now = sim.time_s - t0
        errs.append(sim.joint_positions() - np.array([np.interp(now, t, q[:, j]) for j in range(q.shape[1])]))
    e = np.abs(np.array(errs))
    return float(np.sqrt(np.mean(e ** 2))), float(e.max()), robot.joint_names[int(e.max(axis=0).argmax())]


def start_from_standing(robot_name_or_robot, *, blend_feet: bool = True) -> tuple[float, float, str]:
    """The node's start: the 3 s demo walk played by `MotionPlayback` from the standing robot (no base known
    yet, 0.5 s blend) at 50 Hz into harness mode from rest. (max error [rad] in the first second, max over
    the whole walk, joint), against the set-point the simulator tracks. ``blend_feet=False`` plays it with
    a joint space that knows neither the rest stance nor the feet: the blend before issue 17's fix."""
    from dataclasses import replace

    from momask_ros.stream.commands import MotionCommand
    from momask_ros.stream.pipeline import MotionPipeline
    from momask_ros.stream.playback import MotionPlayback
    from momask_ros.stream.state import RobotPose

    pipe = MotionPipeline.from_bundle(None, robot=robot_name_or_robot, device="cpu")
    clip = pipe.run(MotionCommand("a person walks forward", length_frames=60, seed=3))
    if not blend_feet:
        clip.joint_space = replace(clip.joint_space, rest_base=None, lowest_foot_z=None)
    robot = pipe.retargeter.robot
    play = MotionPlayback(clip, RobotPose(clip.joint_space.rest.copy(), base_valid=False), blend_s=0.5)
    sim = Simulator(robot, SimOptions(mode="harness"))
    steps = int(round(0.02 / sim.timestep_s))
    last, errs = None, []
    for k in range(int(play.duration_s / 0.02)):
        sample = play.sample(0.02 * k)
        sim.set_base_target(sample.base_position, sample.base_quat_wxyz,
                            None if last is None else (sample.base_position - last) / 0.02)
        last = sample.base_position.copy()
        sim.command_joints(robot.joint_names, sample.positions, sample.velocities)
        for _ in range(steps):
            sim.step()
            errs.append((sim.time_s, np.abs(sim.joint_positions() - sim.reference()[0])))
    t = np.array([e[0] for e in errs])
    e = np.array([e[1] for e in errs])
    return float(e[t < 1.0].max()), float(e.max()), robot.joint_names[int(e.max(axis=0).argmax())]


def free_standing(robot, seconds: float = 10.0) -> tuple[bool, float, float]:
    sim = Simulator(robot, SimOptions(mode="free"))
    fallen = False
    while sim.time_s < seconds:
        sim.step(50)
        fallen |= sim.fallen
    return fallen, sim.tilt_rad(), float(sim.base_pose()[0][2])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--robots", nargs="+", default=["g1", "h1", "default"], choices=sorted(DESCRIPTIONS))
    parser.add_argument("--seconds", type=float, default=5.0, help="simulated seconds per real-time-factor run")
    args = parser.parse_args(argv)
    print(f"{'robot':8s} {'mode':8s} {'RTF physics':>12s} {'RTF + state':>12s} {'RTF node':>9s}")
    robots = {}
    for name in args.robots:
        rel = DESCRIPTIONS[name]
        robots[name] = robot = load_robot(name, description=args.data / rel if rel else None)
        for mode in ("fixed", "harness", "free"):
            node = f"{node_rtf(robot, mode):9.1f}" if mode == "harness" else f"{'':9s}"
            print(f"{name:8s} {mode:8s} {rtf(robot, mode, args.seconds, False):12.1f} "
                  f"{rtf(robot, mode, args.seconds, True):12.1f} {node}")
    print(f"\n{'robot':8s} {'harness walk RMS / max [rad] (joint)':>44s}   {'free 10 s: fallen, tilt [rad], height [m]':>42s}")
    for name, robot in robots.items():
        rms, worst, joint = harness_tracking(robot, demo_walk(name if DESCRIPTIONS[name] is None else robot))
        fallen, tilt, height = free_standing(robot)
        print(f"{name:8s} {rms:12.4f} / {worst:.3f} ({joint:24s})   {str(fallen):>8s} {tilt:8.3f} {height:8.3f}")
    print(f"\n{'robot':8s} start from standing, max error [rad]: first 1 s / whole walk (joint), old blend -> now")
    for name, robot in robots.items():
        old_start = start_from_standing(name if DESCRIPTIONS[name] is None else robot, blend_feet=False)
        new_start = start_from_standing(name if DESCRIPTIONS[name] is None else robot)
        print(f"{name:8s} {old_start[0]:.3f} / {old_start[1]:.3f} ({old_start[2]}) -> "
              f"{new_start[0]:.3f} / {new_start[1]:.3f} ({new_start[2]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
