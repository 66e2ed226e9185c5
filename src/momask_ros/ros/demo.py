"""The main job on the built-in default, end to end over ROS 2 (what `make demo` runs).

1. starts `momask_node` in a process of its own (packaged demo model, default humanoid, CPU or GPU);
2. publishes a text command to it from this process;
3. records the JointState stream, base pose, status and human-skeleton markers it publishes;
4. saves the stream to ``joint_states.npz`` and renders the human (stick figure) and robot (MuJoCo)
   previews from what was received, so what you see is what a robot would be told: ``human.mp4``,
   ``robot.mp4`` and both side by side in ``side_by_side.mp4``.

The previews are time-correct by construction: every received message carries its stamp, and the
human and side-by-side videos are resampled on the stamps to a uniform 20 fps grid covering the
motion (from its first marker for the ``duration_s`` that its ``done`` status reports), so they last
as long as the motion, whatever rate the markers arrived at.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _ros_env(domain_id: int) -> dict[str, str]:
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env.setdefault("MUJOCO_GL", "osmesa")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def start_node(params: dict[str, object], domain_id: int, log_path: Path) -> subprocess.Popen:
    """Launch momask_node as a separate process with parameter overrides (like `ros2 run`)."""
    cmd = [sys.executable, "-m", "momask_ros.ros.node", "--ros-args"]
    for key, value in params.items():
        if value == "":
            continue  # rcl cannot parse an empty override; the node's default applies
        if isinstance(value, bool):
            value = "true" if value else "false"
        cmd += ["-p", f"{key}:={value}"]
    log = open(log_path, "w")
    return subprocess.Popen(cmd, env=_ros_env(domain_id), stdout=log, stderr=subprocess.STDOUT)


def ros_frame_to_humanml3d(points_xyz: np.ndarray) -> np.ndarray:
    """Inverse of the retargeter's axis change: ROS (x fwd, y left, z up) -> HumanML3D (x left, y up, z fwd)."""
    p = np.asarray(points_xyz, dtype=np.float64)
    return np.stack([p[..., 1], p[..., 2], p[..., 0]], axis=-1)


def record(text: str, *, domain_id: int, timeout_s: float, marker_topic: str, node_proc=None) -> dict:
    """Publish ``text`` and collect everything the node streams until the motion is done."""
    os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String
    from visualization_msgs.msg import MarkerArray

    rclpy.init()
    node = rclpy.create_node("momask_demo_client")
    reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    got: dict = {"js": [], "pose": [], "status": [], "markers": []}

    def on_js(msg: JointState) -> None:
        t = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        got["names"] = list(msg.name)
        got["js"].append((t, np.array(msg.position), np.array(msg.velocity)))

    def on_pose(msg: PoseStamped) -> None:
        p, o = msg.pose.position, msg.pose.orientation
        got["pose"].append((msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, [p.x, p.y, p.z], [o.w, o.x, o.y, o.z]))

    def on_status(msg: String) -> None:
        got["status"].append(json.loads(msg.data))
        print(f"[status] {msg.data}", flush=True)

    def on_markers(msg: MarkerArray) -> None:
        for m in msg.markers:
            if m.type == m.SPHERE_LIST and m.points:
                t = m.header.stamp.sec + m.header.stamp.nanosec * 1e-9
                got["markers"].append((t, np.array([[p.x, p.y, p.z] for p in m.points])))

    node.create_subscription(JointState, "joint_states", on_js, 100)
    node.create_subscription(PoseStamped, "base_pose", on_pose, 100)
    node.create_subscription(String, "momask/status", on_status, reliable)
    node.create_subscription(MarkerArray, marker_topic, on_markers, 100)
    pub = node.create_publisher(String, "momask/command", reliable)
    deadline = time.monotonic() + timeout_s
    sent_at = None
    try:
        while time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
            if node_proc is not None and node_proc.poll() is not None:
                print(f"[demo] momask_node exited with code {node_proc.returncode}", flush=True)
                break
            states = [s.get("state") for s in got["status"]]
            if sent_at is None and pub.get_subscription_count() > 0 and got["js"]:
                pub.publish(String(data=text))
                sent_at = time.monotonic()
                print(f"[demo] sent command: {text!r}", flush=True)
            if any(s in ("rejected", "error") for s in states):
                break
            if "done" in states:
                # a little more stream after the end, to show the hold
                end = time.monotonic() + 0.5
                while time.monotonic() < end:
                    rclpy.spin_once(node, timeout_sec=0.05)
                break
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    got["sent"] = sent_at is not None
    return got


PREVIEW_FPS = 20.0


def write_previews(markers, js_stamps, js_positions, base_position, base_quat_wxyz, description, joint_names,
                   human_path: Path, side_path: Path, *, title: str, duration_s: float | None) -> int:
    """Human and side-by-side (human | robot) previews of the received motion, on one uniform time grid.

    ``markers``: (stamp, (22, 3) ROS-frame joints) as received; the grid starts at the first marker and
    lasts ``duration_s`` (the motion's, from its ``done`` status; default: the markers' span). Returns
    the number of frames written to each video.
    """
    from momask_model.motion.render import render_frames, resample_by_stamps, write_frames
    from momask_ros.physics.preview import render_trajectory, scene_model

    stamps = np.array([t for t, _ in markers])
    human_ros = np.stack([p for _, p in markers])
    start = float(stamps.min())
    human = ros_frame_to_humanml3d(resample_by_stamps(stamps, human_ros, PREVIEW_FPS, start, duration_s))
    # the same viewpoint as the robot camera of momask_ros.physics.preview (front right, looking slightly down)
    human_frames = render_frames(human, title=title, fps=PREVIEW_FPS, azimuth_deg=-45.0, elevation_deg=15.0)
    write_frames(human_frames, human_path, fps=PREVIEW_FPS)

    def on_grid(values):
        return None if values is None else resample_by_stamps(js_stamps, values, PREVIEW_FPS, start, duration_s)

    quat = on_grid(base_quat_wxyz)
    if quat is not None:
        quat /= np.linalg.norm(quat, axis=-1, keepdims=True)
    size = human_frames.shape[1]
    robot_frames = render_trajectory(scene_model(description), joint_names, on_grid(js_positions),
                                     base_position=on_grid(base_position), base_quat_wxyz=quat,
                                     width=size, height=size)
    write_frames(np.concatenate([human_frames, robot_frames], axis=2), side_path, fps=PREVIEW_FPS)
    return len(human_frames)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="momask-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", default="a person walks forward")
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--robot", default="default", help="default | h1 | g1 | profile.yaml")
    parser.add_argument("--bundle", default="", help="bundle path (default: packaged demo model)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--control-rate", type=float, default=50.0)
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for the motion")
    args = parser.parse_args(argv)
    from momask_ros.stream.commands import CommandRejected, parse_command

    try:  # the node would reject it too; a NUL would even be cut off silently on the way (C strings)
        parse_command(args.text)
    except CommandRejected as exc:
        print(f"momask-demo: error: --text: {exc}", file=sys.stderr)
        return 2

    args.out.mkdir(parents=True, exist_ok=True)
    domain_id = random.randint(100, 200)
    marker_topic = "momask/human_skeleton"
    params = {
        "bundle_path": args.bundle,
        "device": args.device,
        "robot": args.robot,
        "seed": args.seed,
        "control_rate": args.control_rate,
        "marker_rate": args.control_rate,  # a marker every control tick: the preview is resampled on stamps
        "markers_topic": marker_topic,
    }
    node_log = args.out / "node.log"
    proc = start_node(params, domain_id, node_log)
    try:
        got = record(args.text, domain_id=domain_id, timeout_s=args.timeout, marker_topic=marker_topic,
                     node_proc=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    states = [s.get("state") for s in got["status"]]
    if "done" not in states:
        print(f"demo failed: node states {states}; see {node_log}", file=sys.stderr)
        return 1

    # keep the stream from the command's motion onwards (the node also publishes the idle hold)
    times = np.array([t for t, _, _ in got["js"]])
    positions = np.stack([p for _, p, _ in got["js"]])
    velocities = np.stack([v if len(v) else np.zeros_like(p) for _, p, v in got["js"]])
    stream_path = args.out / "joint_states.npz"
    pose_t = np.array([t for t, _, _ in got["pose"]]) if got["pose"] else np.zeros(0)
    base_pos = np.array([p for _, p, _ in got["pose"]]) if got["pose"] else np.zeros((0, 3))
    base_quat = np.array([q for _, _, q in got["pose"]]) if got["pose"] else np.zeros((0, 4))
    np.savez(stream_path, names=np.array(got["names"]), stamps_s=times, positions=positions, velocities=velocities,
             base_stamps_s=pose_t, base_position=base_pos, base_quat_wxyz=base_quat, text=args.text)
    (args.out / "status.json").write_text(json.dumps(got["status"], indent=1))

    from momask_ros.physics.preview import save_robot_video
    from momask_ros.robot.model import load_robot

    robot = load_robot(args.robot)
    robot_path = args.out / "robot.mp4"
    # base pose aligned to each JointState by nearest stamp
    if len(pose_t):
        idx = np.clip(np.searchsorted(pose_t, times), 0, len(pose_t) - 1)
        bp, bq = base_pos[idx], base_quat[idx]
    else:
        bp = bq = None
    save_robot_video(robot.description_path, got["names"], positions, robot_path, fps=args.control_rate,
                     base_position=bp, base_quat_wxyz=bq)
    human_path, side_path = args.out / "human.mp4", args.out / "side_by_side.mp4"
    done = next((s for s in got["status"] if s.get("state") == "done"), {})
    if got["markers"]:
        write_previews(got["markers"], times, positions, bp, bq, robot.description_path, got["names"],
                       human_path, side_path, title=args.text, duration_s=done.get("duration_s"))
    gen_ms = [s.get("generation_ms") for s in got["status"] if s.get("generation_ms") is not None]
    lat_ms = [s.get("latency_ms") for s in got["status"] if s.get("latency_ms") is not None]
    print(f"\nmotion for {args.text!r}: {len(times)} JointState messages over {times[-1] - times[0]:.1f} s "
          f"({len(got['names'])} joints); generation {gen_ms[-1] if gen_ms else '?'} ms, "
          f"text -> first JointState {lat_ms[-1] if lat_ms else '?'} ms")
    print(f"  JointState stream: {stream_path}")
    if got["markers"]:
        print(f"  human preview:     {human_path}")
    print(f"  robot preview:     {robot_path}")
    if got["markers"]:
        print(f"  side by side:      {side_path}")
    print(f"  node log, status:  {node_log}, {args.out / 'status.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
