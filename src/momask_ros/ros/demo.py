"""The main job on the built-in default, end to end over ROS 2 (what `make demo` runs).

1. clears its own outputs (`OUTPUTS`) from the output folder, so the folder holds only this run's;
2. starts `momask_node` in a process of its own (packaged demo model, default humanoid, CPU or GPU);
3. waits for the node's ``ready`` status (model loaded and warmed up), then publishes the command: any
   command the node takes, options, `` | `` sequences and ``then`` included. Sent earlier, the command
   would wait for the warm-up and its latency would measure the node's start, not its answer;
4. records the JointState stream, base pose, status and human-skeleton markers until every segment of
   the command is ``done``;
5. saves the stream to ``joint_states.npz`` and renders the human (stick figure) and robot (MuJoCo)
   previews from what was received, so what you see is what a robot would be told: ``human.mp4``,
   ``robot.mp4`` and both side by side in ``side_by_side.mp4``;
6. on the G1, when the whole-body tracker's files are there (``--tracker``, default the download cache),
   replays the received stream through the tracker in the tracked simulator (free base, 1 ms physics,
   lock-step; `momask_ros.stream.tracked_loop`) into ``tracked.mp4``, and says whether the robot fell
   and how closely it tracked. Without a ``--robot-description`` the G1 is the tracker's own model.

A node that cannot start, a command it refuses and a timeout end the demo with the node's own reason
(its FATAL log line, or the ``rejected`` status's reason and detail) on one line.

The previews are time-correct by construction: every received message carries its stamp, and the
videos are resampled on the stamps to a uniform grid covering the motion (from its first JointState,
``stamp_s`` of its first ``playing`` status, to the end of its last segment), so they last as long as
the motion, whatever rate the messages arrived at.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

#: Files a run writes into its output folder (and removes from there first).
OUTPUTS = ("node.log", "status.json", "joint_states.npz", "robot.mp4", "human.mp4", "side_by_side.mp4", "tracked.mp4")
#: Stream kept after the motion ends, to show the hold [s].
HOLD_S = 0.5
#: Without a ``ready`` status (missed before discovery), the command goes once the stream has flowed this long [s].
READY_GRACE_S = 30.0
PREVIEW_FPS = 20.0


def _ros_env(domain_id: int) -> dict[str, str]:
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # the demo's node and client share this machine
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
    with open(log_path, "w") as log:  # the child keeps its own descriptor
        return subprocess.Popen(cmd, env=_ros_env(domain_id), stdout=log, stderr=subprocess.STDOUT)


def clear_outputs(out: Path) -> list[Path]:
    """Remove a previous run's outputs from ``out`` (only the files this demo writes); returns them."""
    removed = [out / name for name in OUTPUTS if (out / name).is_file()]
    for path in removed:
        path.unlink()
    return removed


def node_failure(log_path: Path, returncode: int | None) -> str:
    """Why the node stopped, from its log: its FATAL line, else the last lines it wrote."""
    lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()] \
        if log_path.is_file() else []
    fatal = [ln for ln in lines if "[FATAL]" in ln]
    if fatal:
        return fatal[-1].split("]: ", 1)[-1]
    tail = " | ".join(lines[-3:]) if lines else "no output"
    return f"exited with code {returncode}: {tail}"


def command_outcome(statuses: list[dict]) -> tuple[str, str]:
    """Where the one command sent stands, from the node's statuses: ``running``, ``done`` (every accepted
    segment done), ``refused`` or ``failed``, with the node's reason for the last two."""
    for s in statuses:
        state = s.get("state")
        if state == "rejected":
            where = f" (segment {s['segment']} of {s['segments']})" if "segment" in s else ""
            return "refused", f"{s.get('reason', '?')}{where}: {s.get('detail', '')}".rstrip(": ")
        if state == "error":
            return "failed", f"node error {s.get('reason', '?')}: {s.get('detail', '')}".rstrip(": ")
        if state == "stopped":
            return "failed", "the motion was stopped"
    accepted = {s["id"] for s in statuses if s.get("state") == "accepted"}
    done = {s.get("id") for s in statuses if s.get("state") == "done"}
    return ("done", "") if accepted and accepted <= done else ("running", "")


def motion_window(statuses: list[dict]) -> tuple[float, float]:
    """(start stamp, duration) [s] of the whole command: from its first JointState to the end of its
    last segment (the last segment's switch stamp plus its duration)."""
    playing = {s["id"]: s for s in statuses if s.get("state") == "playing"}
    done = {s["id"]: s for s in statuses if s.get("state") == "done"}
    first, last = playing[min(playing)], playing[max(playing)]
    start = float(first["stamp_s"])
    end = float(last.get("switch_stamp_s", last["stamp_s"])) + float(done[last["id"]]["duration_s"])
    return start, end - start


@dataclass
class Recording:
    """What the demo received: (stamp, ...) tuples per topic, statuses in arrival order."""

    names: list[str] = field(default_factory=list)
    js: list = field(default_factory=list)        # (stamp, positions, velocities)
    pose: list = field(default_factory=list)      # (stamp, position xyz, quat wxyz)
    markers: list = field(default_factory=list)   # (stamp, (22, 3) ROS-frame joints)
    status: list[dict] = field(default_factory=list)
    sent_after_ready: bool | None = None          # None: never sent
    outcome: tuple[str, str] = ("running", "")


def record(text: str, *, domain_id: int, timeout_s: float, marker_topic: str,
           launch: Callable[[], subprocess.Popen], log_path: Path) -> Recording:
    """Subscribe, ``launch()`` the node, send ``text`` once it is ready, collect until the command ends.

    Subscribing before the node starts means its ``ready`` status finds a matched subscriber.
    """
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String
    from visualization_msgs.msg import MarkerArray

    got = Recording()

    def stamp(header) -> float:
        return header.stamp.sec + header.stamp.nanosec * 1e-9

    def on_js(msg: JointState) -> None:
        got.names = list(msg.name)
        got.js.append((stamp(msg.header), np.array(msg.position), np.array(msg.velocity)))

    def on_pose(msg: PoseStamped) -> None:
        p, o = msg.pose.position, msg.pose.orientation
        got.pose.append((stamp(msg.header), [p.x, p.y, p.z], [o.w, o.x, o.y, o.z]))

    def on_status(msg: String) -> None:
        got.status.append(json.loads(msg.data))
        print(f"[status] {msg.data}", flush=True)

    def on_markers(msg: MarkerArray) -> None:
        for m in msg.markers:
            if m.type == m.SPHERE_LIST and m.points:
                got.markers.append((stamp(m.header), np.array([[p.x, p.y, p.z] for p in m.points])))

    context = rclpy.Context()  # its own, on the node's domain (ROS_DOMAIN_ID of this process is left alone)
    rclpy.init(context=context, domain_id=domain_id)
    node = rclpy.create_node("momask_demo_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(JointState, "joint_states", on_js, 100)
    node.create_subscription(PoseStamped, "base_pose", on_pose, 100)
    node.create_subscription(String, "momask/status", on_status, reliable)
    node.create_subscription(MarkerArray, marker_topic, on_markers, 100)
    pub = node.create_publisher(String, "momask/command", reliable)
    proc = launch()
    start = time.monotonic()
    deadline = start + timeout_s
    first_js = None
    try:
        while True:
            executor.spin_once(timeout_sec=0.05)
            now = time.monotonic()
            if proc.poll() is not None:
                got.outcome = ("failed", f"momask_node stopped: {node_failure(log_path, proc.returncode)}")
                break
            if first_js is None and got.js:
                first_js = now
            if got.sent_after_ready is None:
                ready = any(s.get("state") == "ready" for s in got.status)
                late = first_js is not None and now - first_js > READY_GRACE_S
                if (ready or late) and pub.get_subscription_count() > 0:
                    pub.publish(String(data=text))
                    got.sent_after_ready = ready
                    print(f"[demo] node {'ready' if ready else 'streaming, no ready status seen'} after "
                          f"{now - start:.1f} s; sent command: {text!r}", flush=True)
            got.outcome = command_outcome(got.status)
            if got.outcome[0] != "running":
                if got.outcome[0] == "done":  # a little more stream after the end, to show the hold
                    end = time.monotonic() + HOLD_S
                    while time.monotonic() < end:
                        executor.spin_once(timeout_sec=0.05)
                break
            if now > deadline:
                waiting = ("the node's ready status" if got.sent_after_ready is None
                           else "the command's last segment to finish")
                got.outcome = ("failed", f"timed out after {timeout_s:g} s waiting for {waiting} (--timeout)")
                break
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return got


def ros_frame_to_humanml3d(points_xyz: np.ndarray) -> np.ndarray:
    """Inverse of the retargeter's axis change: ROS (x fwd, y left, z up) -> HumanML3D (x left, y up, z fwd)."""
    p = np.asarray(points_xyz, dtype=np.float64)
    return np.stack([p[..., 1], p[..., 2], p[..., 0]], axis=-1)


def write_previews(markers, js_stamps, js_positions, base_position, base_quat_wxyz, description, joint_names,
                   human_path: Path, side_path: Path, *, title: str, start_s: float, duration_s: float,
                   size_px: int = 480) -> int:
    """Human and side-by-side (human | robot) previews of the received motion, on one uniform time grid
    from ``start_s`` for ``duration_s``. ``markers``: (stamp, (22, 3) ROS-frame joints) as received.
    Returns the number of frames written to each video."""
    from momask_model.motion.render import render_frames, resample_by_stamps, write_frames
    from momask_ros.physics.preview import render_trajectory, scene_model

    stamps = np.array([t for t, _ in markers])
    human_ros = np.stack([p for _, p in markers])
    human = ros_frame_to_humanml3d(resample_by_stamps(stamps, human_ros, PREVIEW_FPS, start_s, duration_s))
    # the same viewpoint as the robot camera of momask_ros.physics.backdrop (front right, looking slightly down)
    human_frames = render_frames(human, title=title, fps=PREVIEW_FPS, azimuth_deg=-45.0, elevation_deg=15.0,
                                 size_px=size_px)
    write_frames(human_frames, human_path, fps=PREVIEW_FPS)

    def on_grid(values):
        return None if values is None else resample_by_stamps(js_stamps, values, PREVIEW_FPS, start_s, duration_s)

    quat = on_grid(base_quat_wxyz)
    if quat is not None:
        quat /= np.linalg.norm(quat, axis=-1, keepdims=True)
    size = human_frames.shape[1]
    robot_frames = render_trajectory(scene_model(description), joint_names, on_grid(js_positions),
                                     base_position=on_grid(base_position), base_quat_wxyz=quat,
                                     width=size, height=size)
    write_frames(np.concatenate([human_frames, robot_frames], axis=2), side_path, fps=PREVIEW_FPS)
    return len(human_frames)


def _save(got: Recording, text: str, out: Path, robot, control_rate: float) -> int:
    """Write the stream and the previews of the command's motion (plus `HOLD_S`); returns 0."""
    from momask_ros.physics.preview import save_robot_video

    start, duration = motion_window(got.status)
    keep = [m for m in got.js if m[0] >= start - 1e-6]
    times = np.array([t for t, _, _ in keep])
    positions = np.stack([p for _, p, _ in keep])
    velocities = np.stack([v if len(v) else np.zeros_like(p) for _, p, v in keep])
    poses = [m for m in got.pose if m[0] >= start - 1e-6]
    pose_t = np.array([t for t, _, _ in poses]) if poses else np.zeros(0)
    base_pos = np.array([p for _, p, _ in poses]) if poses else np.zeros((0, 3))
    base_quat = np.array([q for _, _, q in poses]) if poses else np.zeros((0, 4))
    stream_path = out / "joint_states.npz"
    np.savez(stream_path, names=np.array(got.names), stamps_s=times, positions=positions, velocities=velocities,
             base_stamps_s=pose_t, base_position=base_pos, base_quat_wxyz=base_quat, text=text)

    robot_path = out / "robot.mp4"
    if len(pose_t):  # base pose aligned to each JointState by nearest stamp
        idx = np.clip(np.searchsorted(pose_t, times), 0, len(pose_t) - 1)
        bp, bq = base_pos[idx], base_quat[idx]
    else:
        bp = bq = None
    t0 = time.perf_counter()
    save_robot_video(robot.description_path, got.names, positions, robot_path, fps=control_rate,
                     base_position=bp, base_quat_wxyz=bq)
    human_path, side_path = out / "human.mp4", out / "side_by_side.mp4"
    markers = [m for m in got.markers if m[0] >= start - 1e-6]
    if markers:
        write_previews(markers, times, positions, bp, bq, robot.description_path, got.names,
                       human_path, side_path, title=text, start_s=start, duration_s=duration)
    render_s = time.perf_counter() - t0

    playing = [s for s in got.status if s.get("state") == "playing"]
    segments = len({s["id"] for s in got.status if s.get("state") == "accepted"})
    first = playing[0]
    warm = "after the node's ready status" if got.sent_after_ready else "before the node reported ready"
    print(f"\nmotion for {text!r}: {segments} segment(s), {duration:.2f} s; {len(times)} JointState messages "
          f"({len(got.names)} joints)")
    print(f"  latency: command -> first JointState {first.get('latency_ms', '?')} ms (generation "
          f"{first.get('generation_ms', '?')} ms; sent {warm}); previews rendered in {render_s:.1f} s")
    print(f"  JointState stream: {stream_path}")
    if markers:
        print(f"  human preview:     {human_path}")
    print(f"  robot preview:     {robot_path}")
    if markers:
        print(f"  side by side:      {side_path}")
    print(f"  node log, status:  {out / 'node.log'}, {out / 'status.json'}")
    return 0


def track_recording(stream_path: Path, bundle, video: Path | None, *, start_s: float, duration_s: float) -> str:
    """Replay a saved stream (``joint_states.npz``) through the tracker in the tracked simulator, from
    standing 1 s before ``start_s``, into ``video`` (None: no video); one summary line (fell, mean joint
    error)."""
    from momask_ros.stream.tracked_loop import TrackedLoop, replay_stream

    with np.load(stream_path) as d:
        rec = {k: d[k] for k in ("names", "stamps_s", "positions", "velocities", "base_stamps_s", "base_position",
                                 "base_quat_wxyz")}
    t0 = time.perf_counter()
    loop = TrackedLoop(bundle, t0_s=start_s - 1.0, video=video)
    try:
        report = replay_stream(loop, rec["stamps_s"], [str(n) for n in rec["names"]], rec["positions"],
                               rec["velocities"], rec["base_stamps_s"], rec["base_position"], rec["base_quat_wxyz"],
                               begin_s=start_s, end_s=start_s + duration_s)
    finally:
        loop.close()
    fell = (f"FELL at {report.fall_time_s - 1.0:.2f} s into the motion ({report.fall_reason})" if report.fell
            else "fell" if report.sim_fell else "stayed up")
    return (f"{video or 'no video'} ({bundle.spec.name}, 1 ms physics, lock-step): {fell}; mean joint error "
            f"{report.mean_joint_error_rad:.3f} rad; {time.perf_counter() - t0:.1f} s")


def find_tracker(robot: str, tracker: Path | None):
    """The tracker bundle for a tracked demo: on the G1 with a usable folder; else None and why."""
    from momask_ros.tracker import TrackerError, default_tracker_dir, load_tracker

    if robot != "g1":
        return None, None
    folder = tracker or default_tracker_dir()
    if not folder.is_dir():
        return None, f"no tracker at {folder} (momask-fetch-tracker --dest {folder}, or --tracker DIR)"
    try:
        return load_tracker(folder), None
    except TrackerError as exc:
        return None, str(exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="momask-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", default="a person walks forward",
                        help="any command the node takes: 'TEXT [length=4s] [speed=1] [seed=N]', segments "
                             "joined by ' | ' (or 'then' on the demo model)")
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--robot", default="default", help="default | h1 | g1 | profile.yaml")
    parser.add_argument("--robot-description", default="",
                        help="MJCF/URDF of the robot (H1 and G1 need your copy of Unitree's file; the node's "
                             "robot_description_path)")
    parser.add_argument("--bundle", default="", help="bundle path (default: packaged demo model)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--control-rate", type=float, default=50.0)
    parser.add_argument("--domain-id", type=int, default=None,
                        help="ROS domain of the demo's node, to watch it with ros2 (default: a pick in 100..200, "
                             "never your shell's, where a robot may listen)")
    parser.add_argument("--timeout", type=float, default=240.0,
                        help="seconds for the whole run: node start, warm-up and the motion")
    parser.add_argument("--tracker", type=Path, default=None,
                        help="G1: whole-body tracker folder for tracked.mp4 (default: the download cache that "
                             "momask-fetch-tracker fills; absent: skipped)")
    args = parser.parse_args(argv)
    if args.domain_id is not None and not 0 <= args.domain_id <= 232:
        parser.error(f"--domain-id must be in 0..232, got {args.domain_id}")
    from momask_ros.stream.commands import CommandLimits, CommandRejected, parse_sequence_command

    args.out.mkdir(parents=True, exist_ok=True)
    clear_outputs(args.out)
    try:  # characters and syntax; lengths and scope depend on the model, and the node judges them
        parse_sequence_command(args.text, CommandLimits(max_frames=10**6))
    except CommandRejected as exc:
        print(f"momask-demo: error: --text: {exc}", file=sys.stderr)
        return 2
    from momask_ros.robot.model import load_robot
    from momask_ros.robot.profile import DescriptionNotFound

    bundle, no_tracker = find_tracker(args.robot, args.tracker)
    description = args.robot_description or None
    try:  # fails in a second here, rather than after the node's start-up
        robot = load_robot(args.robot, description=description)
    except DescriptionNotFound as exc:
        if bundle is None or description is not None:
            print(f"momask-demo: error: --robot {args.robot}: {exc}", file=sys.stderr)
            return 2
        description = str(bundle.model_path)  # the tracker's G1: the same kinematics as Unitree's
        robot = load_robot(args.robot, description=description)
    except Exception as exc:
        print(f"momask-demo: error: --robot {args.robot}: {exc}", file=sys.stderr)
        return 2

    domain_id = random.randint(100, 200) if args.domain_id is None else args.domain_id
    print(f"[demo] momask_node on ROS domain {domain_id} (localhost); to watch it: ROS_DOMAIN_ID={domain_id} "
          f"ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ros2 topic echo --full-length /momask/status", flush=True)
    marker_topic = "momask/human_skeleton"
    params = {
        "bundle_path": args.bundle,
        "device": args.device,
        "robot": args.robot,
        "robot_description_path": str(robot.description_path) if description else "",
        "seed": args.seed,
        "control_rate": args.control_rate,
        "marker_rate": args.control_rate,  # a marker every control tick: the preview is resampled on stamps
        "markers_topic": marker_topic,
    }
    node_log = args.out / "node.log"
    got = record(args.text, domain_id=domain_id, timeout_s=args.timeout, marker_topic=marker_topic,
                 launch=lambda: start_node(params, domain_id, node_log), log_path=node_log)
    (args.out / "status.json").write_text(json.dumps(got.status, indent=1))
    state, reason = got.outcome
    if state != "done":
        print(f"demo {'refused' if state == 'refused' else 'failed'}: {reason} (log: {node_log})", file=sys.stderr)
        return 2 if state == "refused" else 1
    rc = _save(got, args.text, args.out, robot, args.control_rate)
    if args.robot == "g1":
        if bundle is None:
            print(f"  tracked in physics: skipped: {no_tracker}")
        else:
            start, duration = motion_window(got.status)
            line = track_recording(args.out / "joint_states.npz", bundle, args.out / "tracked.mp4", start_s=start,
                                   duration_s=duration)
            print(f"  tracked in physics: {line}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
