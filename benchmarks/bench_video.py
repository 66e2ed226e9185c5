#!/usr/bin/env python3
"""Robot video benchmark: what a frame costs, and what recording costs the simulator.

    MUJOCO_GL=osmesa OMP_NUM_THREADS=1 python benchmarks/bench_video.py [--seconds 6] [--robot default]

* render cost [ms/frame], software rendering: the scene before issue 24 (plain floor, fixed light,
  MuJoCo's default 4096 shadow map and 4x multisampling) at its 480x368, and `backdrop`'s scene
  at 480x270, 960x540 and 1280x720;
* the simulator paced at real time (as `momask_sim` with ``real_time_factor`` 1, harness mode, its
  publish period of 10 ms), for ``--seconds`` of simulated time: the real-time factor it reaches without
  a recorder, rendering each 30 fps frame on the physics thread (before issue 24, at 480x368), and with
  `VideoRecorder` (worker thread, 960x540): frames rendered and frames repeated because it was behind.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("MUJOCO_GL", "osmesa")

import mujoco  # noqa: E402

from momask_ros.physics.backdrop import FollowCamera  # noqa: E402
from momask_ros.physics.preview import TrajectoryPlayer, scene_model  # noqa: E402
from momask_ros.physics.simulator import SimOptions, Simulator  # noqa: E402
from momask_ros.physics.video import VideoRecorder  # noqa: E402
from momask_ros.robot.model import load_robot  # noqa: E402


def before_scene(description: Path) -> mujoco.MjModel:
    """The preview scene before issue 24: a plain grey floor and one fixed light, default quality."""
    spec = mujoco.MjSpec.from_file(str(description))
    spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05], rgba=[0.75, 0.78, 0.8, 1],
                            contype=0, conaffinity=0)
    spec.worldbody.add_light(pos=[0, 0, 4], dir=[0, 0, -1])
    return spec.compile()


def render_ms(model: mujoco.MjModel, robot, width: int, height: int, frames: int) -> float:
    player = TrajectoryPlayer(model, robot.joint_names)
    player.set_pose(robot.rest_positions)
    renderer = mujoco.Renderer(model, height, width)
    camera = FollowCamera(height_m=0.9)
    renderer.update_scene(player.data, camera=camera.aim(player.base_position()))
    renderer.render()
    start = time.perf_counter()
    for _ in range(frames):
        renderer.update_scene(player.data, camera=camera.aim(player.base_position()))
        renderer.render()
    renderer.close()
    return (time.perf_counter() - start) / frames * 1e3


def paced_rtf(robot, seconds: float, recorder: str, out: Path) -> tuple[float, str]:
    """The real-time factor of a simulator paced at 1.0x (momask_sim's loop), with ``recorder``:
    none | inline (render on the physics thread, 480x368, as before) | worker (`VideoRecorder`)."""
    sim = Simulator(robot, SimOptions(mode="harness"))
    per_publish = max(1, int(round(0.01 / sim.timestep_s)))
    fps, note = 30.0, ""
    rec = None
    if recorder == "worker":
        rec = VideoRecorder(sim, out / "worker.mp4", fps=fps)
    elif recorder == "inline":
        renderer = mujoco.Renderer(sim.model, 368, 480)
        cam = mujoco.MjvCamera()
        cam.distance, cam.azimuth, cam.elevation = 3.2, 135.0, -15.0
        next_s, inline_frames = 0.0, 0
    wall0 = time.perf_counter()
    while sim.time_s < seconds:
        for _ in range(per_publish):
            sim.step()
            if rec is not None:
                rec.maybe_capture()
            elif recorder == "inline" and sim.time_s + 1e-9 >= next_s:
                next_s = sim.time_s + 1.0 / fps
                cam.lookat[:] = [*sim.base_pose()[0][:2], 0.9]
                renderer.update_scene(sim.data, camera=cam)
                renderer.render()
                inline_frames += 1
        sim.joint_positions(), sim.joint_velocities(), sim.base_pose()  # what the node publishes
        ahead = sim.time_s - (time.perf_counter() - wall0)
        if ahead > 0:
            time.sleep(ahead)
    rtf = sim.time_s / (time.perf_counter() - wall0)
    if rec is not None:
        t = time.perf_counter()
        rec.close()
        note = (f"{rec.frames} frames, {rec.frames - rec.dropped} rendered, {rec.dropped} repeated; "
                f"close {time.perf_counter() - t:.1f} s")
    elif recorder == "inline":
        renderer.close()
        note = f"{inline_frames} frames rendered"
    return rtf, note


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--robot", default="default")
    p.add_argument("--seconds", type=float, default=6.0, help="simulated seconds per paced run")
    p.add_argument("--frames", type=int, default=12, help="frames per render-cost figure")
    args = p.parse_args(argv)
    robot = load_robot(args.robot)
    print(f"robot {robot.profile.name}; MUJOCO_GL={os.environ.get('MUJOCO_GL')}; {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}")
    print("| scene | size | ms/frame |\n|---|---|---|")
    print(f"| before (plain floor, fixed light) | 480x368 | "
          f"{render_ms(before_scene(robot.description_path), robot, 480, 368, args.frames):.0f} |")
    dressed = scene_model(robot.description_path)
    for w, h in ((480, 270), (960, 540), (1280, 720)):
        print(f"| backdrop | {w}x{h} | {render_ms(dressed, robot, w, h, args.frames):.0f} |")
    print(f"\nsimulator paced at 1.0x for {args.seconds:g} s of simulated time (harness mode, 30 fps video)")
    print("| recording | real-time factor | video |\n|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for recorder in ("none", "inline", "worker"):
            rtf, note = paced_rtf(robot, args.seconds, recorder, Path(tmp))
            label = {"none": "off", "inline": "on the physics thread (before), 480x368",
                     "worker": "VideoRecorder, worker thread, 960x540"}[recorder]
            print(f"| {label} | {rtf:.2f} | {note} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
