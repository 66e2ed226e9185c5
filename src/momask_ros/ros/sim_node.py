"""`momask_sim`: the MuJoCo simulator (`momask_ros.physics.simulator`) as a ROS 2 node.

A stepping thread advances the physics in real time (or ``real_time_factor`` times it; 0 = as fast as
possible) and publishes every ``1 / publish_rate`` s of simulated time; the executor thread only stores
incoming commands. Topics (defaults; relative names resolve in the node's namespace):

* in  ``joint_command_topic`` (/joint_command) sensor_msgs/JointState: set-points by joint name
  (velocity optional, used as feed-forward), Isaac Sim's convention.
* in  ``trajectory_topic`` (joint_trajectory_controller/joint_trajectory) trajectory_msgs/JointTrajectory,
  executed as joint_trajectory_controller does (``header.stamp`` 0 = start on receipt).
* in  ``base_command_topic`` (base_pose) geometry_msgs/PoseStamped: harness mode's base target.
* out ``joint_state_topic`` (joint_states) sensor_msgs/JointState: measured position, velocity, effort.
* out ``base_pose_topic`` (sim/base_pose) geometry_msgs/PoseStamped: the measured pelvis pose.
* out ``reference_topic`` (sim/joint_reference) sensor_msgs/JointState: the set-points the drives track,
  stamped like the joint_states they go with (reference vs feedback, as ros2_control's controller_state).
* out ``/clock`` rosgraph_msgs/Clock when ``publish_clock`` (other nodes then run with use_sim_time).
* out ``status_topic`` (sim/status) std_msgs/String JSON, 2 Hz and on events: mode, sim time, measured
  real-time factor, ``fallen``, trajectory state, the last rejected command and why.
"""
from __future__ import annotations

import json
import math
import sys
import threading
import time
from typing import Any

from builtin_interfaces.msg import Time as TimeMsg
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from momask_ros.ros.messages import pose_stamped_msg, time_msg
from momask_ros.robot.model import load_robot
from momask_ros.physics.simulator import MODES, SimError, SimOptions, Simulator, VideoRecorder

PARAMETERS: dict[str, tuple[Any, str]] = {
    "robot": ("default", "robot profile (default, h1, g1 or a profile YAML): the retargeter's"),
    "description": ("", "MJCF/URDF overriding the profile's description ('' = the profile's / its env var)"),
    "mode": ("harness", "base mode: fixed, harness or free"),
    "timestep": (0.0, "physics step [s]; 0 = profile sim.timestep_s, else the description's"),
    "harness_timeconst": (0.005, "harness mode: time constant of the soft weld pulling the pelvis [s]"),
    "friction": (0.5, "sliding friction of the floor and the robot's collision geoms; < 0 = the description's"),
    "real_time_factor": (1.0, "simulated seconds per wall second to aim for; 0 = as fast as possible"),
    "publish_rate": (100.0, "joint_states / base pose / clock rate [Hz of simulated time]"),
    "publish_clock": (False, "publish /clock (and stamp everything with simulated time)"),
    "joint_command_topic": ("/joint_command", "JointState set-points by name"),
    "trajectory_topic": ("joint_trajectory_controller/joint_trajectory", "JointTrajectory to execute"),
    "base_command_topic": ("base_pose", "PoseStamped base target (harness mode)"),
    "joint_state_topic": ("joint_states", "measured JointState"),
    "base_pose_topic": ("sim/base_pose", "measured pelvis PoseStamped"),
    "reference_topic": ("sim/joint_reference", "set-points the drives track (JointState), stamped as joint_states"),
    "status_topic": ("sim/status", "status JSON"),
    "frame_id": ("odom", "frame of the base poses"),
    "record_path": ("", "write an MP4 of the physics here ('' = off); closed on shutdown"),
    "record_fps": (30.0, "MP4 frame rate"),
    "goal_tolerance": (0.05, "a trajectory succeeded when every joint ends within this of its goal [rad]"),
}


def _stamp_s(stamp: TimeMsg) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class SimNode(Node):
    """The simulator node (module docstring). ``robot`` may be passed directly (tests)."""

    def __init__(self, *, robot: Any = None, node_name: str = "momask_sim", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        p = {name: self.declare_parameter(name, default).value for name, (default, _) in PARAMETERS.items()}
        if p["mode"] not in MODES:
            raise ValueError(f"parameter mode={p['mode']!r} must be one of {', '.join(MODES)}")
        for key in ("publish_rate", "record_fps"):
            if not (isinstance(p[key], (int, float)) and p[key] > 0):
                raise ValueError(f"parameter {key}={p[key]!r} must be > 0")
        self._p = p
        robot = robot if robot is not None else load_robot(p["robot"], description=p["description"] or None)
        self.sim = Simulator(robot, SimOptions(mode=p["mode"], timestep_s=float(p["timestep"]) or None,
                                                  harness_timeconst_s=float(p["harness_timeconst"]),
                                                  friction=None if p["friction"] < 0 else float(p["friction"])))
        self._steps_per_publish = max(1, int(round(1.0 / (p["publish_rate"] * self.sim.timestep_s))))
        self._lock = threading.Lock()
        self._pending_joints: JointState | None = None
        self._pending_traj: JointTrajectory | None = None
        self._pending_base: PoseStamped | None = None
        self._status: dict[str, Any] = {"mode": p["mode"], "robot": robot.profile.name, "trajectory": "none"}
        self._traj_goal = None
        self._last_base: tuple[float, list[float]] | None = None  # (stamp, position) of the last base command
        self._rtf = float("nan")
        self._recorder = VideoRecorder(self.sim, p["record_path"], fps=p["record_fps"]) if p["record_path"] else None

        self._js_pub = self.create_publisher(JointState, p["joint_state_topic"], 10)
        self._pose_pub = self.create_publisher(PoseStamped, p["base_pose_topic"], 10)
        self._ref_pub = self.create_publisher(JointState, p["reference_topic"], 10)
        self._status_pub = self.create_publisher(String, p["status_topic"], 10)
        self._clock_pub = self.create_publisher(Clock, "/clock", 10) if p["publish_clock"] else None
        self.create_subscription(JointState, p["joint_command_topic"], self._on_joints, 10)
        self.create_subscription(JointTrajectory, p["trajectory_topic"], self._on_trajectory, 10)
        self.create_subscription(PoseStamped, p["base_command_topic"], self._on_base, 10)
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="momask_sim_physics", daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"momask_sim up: {robot.profile.name}, {p['mode']} base, {1e3 * self.sim.timestep_s:g} ms steps, "
            f"{len(self.sim.joint_names)} joints; commands on {self.resolve_topic_name(p['joint_command_topic'])}")

    # ------------------------------------------------------------------ inputs (executor thread)
    def _on_joints(self, msg: JointState) -> None:
        with self._lock:
            self._pending_joints, self._pending_traj = msg, None

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        with self._lock:
            self._pending_traj, self._pending_joints = msg, None

    def _on_base(self, msg: PoseStamped) -> None:
        with self._lock:
            self._pending_base = msg

    # ------------------------------------------------------------------ physics thread
    def _now_s(self) -> float:
        return self.sim.time_s if self._clock_pub is not None else self.get_clock().now().nanoseconds * 1e-9

    def _apply_pending(self) -> None:
        with self._lock:
            joints, traj, base = self._pending_joints, self._pending_traj, self._pending_base
            self._pending_joints = self._pending_traj = self._pending_base = None
        sim = self.sim
        try:
            if base is not None:
                p, o = base.pose.position, base.pose.orientation
                position, t = [p.x, p.y, p.z], _stamp_s(base.header.stamp)
                velocity = None
                if self._last_base is not None and 0 < t - self._last_base[0] < 0.5:
                    velocity = [(a - b) / (t - self._last_base[0]) for a, b in zip(position, self._last_base[1])]
                self._last_base = (t, position)
                sim.set_base_target(position, [o.w, o.x, o.y, o.z], velocity)
            if joints is not None:
                sim.command_joints(list(joints.name), list(joints.position), list(joints.velocity))
            if traj is not None:
                self._start_trajectory(traj)
        except SimError as exc:
            self._status.update(rejected=str(exc)[:300], rejected_at_s=round(sim.time_s, 3))
            self.get_logger().warning(f"rejected command: {exc}", throttle_duration_sec=1.0)
            self._publish_status()

    def _start_trajectory(self, msg: JointTrajectory) -> None:
        points = msg.points
        times = [_stamp_s(pt.time_from_start) for pt in points]
        positions = [list(pt.positions) for pt in points]
        if any(len(q) != len(msg.joint_names) for q in positions):
            raise SimError("every trajectory point needs one position per joint name")
        has_vel = bool(points) and all(len(pt.velocities) == len(msg.joint_names) for pt in points)
        velocities = [list(pt.velocities) for pt in points] if has_vel else None
        start = _stamp_s(msg.header.stamp)
        delay = 0.0 if start == 0.0 else start - self._now_s()
        end = self.sim.follow_trajectory(list(msg.joint_names), times, positions, velocities, start_delay_s=delay)
        cols = [self.sim.joint_names.index(n) for n in msg.joint_names]
        self._traj_goal = (cols, positions[-1] if positions else [])
        self._status.update(trajectory="executing", trajectory_end_s=round(end, 3))
        self._publish_status()

    def _check_trajectory_done(self) -> None:
        if self._traj_goal is None or self.sim.trajectory_active:
            return
        cols, goal = self._traj_goal
        q = self.sim.joint_positions()
        error = max((abs(q[c] - g) for c, g in zip(cols, goal)), default=0.0)
        settled = error <= self._p["goal_tolerance"]
        if settled or self.sim.time_s > self._status.get("trajectory_end_s", 0.0) + 1.0:
            self._traj_goal = None
            self._status.update(trajectory="succeeded" if settled else "goal_tolerance_violated",
                                trajectory_final_error_rad=round(float(error), 4))
            self._publish_status()

    def _loop(self) -> None:
        sim, rtf_target = self.sim, float(self._p["real_time_factor"])
        wall0, sim0 = time.perf_counter(), sim.time_s
        window = (time.perf_counter(), sim.time_s)
        last_status = -math.inf
        while self._running:
            try:
                for _ in range(self._steps_per_publish):
                    self._apply_pending()  # every step: a command acts within one timestep of arriving
                    sim.step()
                    if self._recorder is not None:
                        self._recorder.maybe_capture()
                self._check_trajectory_done()
                self._publish_state()
                now = time.perf_counter()
                if now - window[0] >= 1.0:
                    self._rtf = (sim.time_s - window[1]) / (now - window[0])
                    window = (now, sim.time_s)
                if sim.fallen and not self._status.get("fallen"):
                    self._status.update(fallen=True, fallen_at_s=round(sim.time_s, 3))
                    self._publish_status()
                if now - last_status >= 0.5:
                    last_status = now
                    self._publish_status()
                if rtf_target <= 0:
                    time.sleep(0)  # as fast as possible, but let the executor thread run
                else:
                    ahead = (sim.time_s - sim0) / rtf_target - (time.perf_counter() - wall0)
                    if ahead > 0:
                        time.sleep(ahead)
                    elif ahead < -0.5:  # cannot keep up: do not try to catch up in a burst
                        wall0, sim0 = time.perf_counter(), sim.time_s
            except Exception as exc:  # keep stepping; say what went wrong
                if not self._running:
                    return
                self._status.update(error=f"{type(exc).__name__}: {exc}"[:300])
                time.sleep(0.01)

    def _stamp(self):
        return time_msg(self.sim.time_s) if self._clock_pub is not None else self.get_clock().now().to_msg()

    def _publish_state(self) -> None:
        stamp = self._stamp()
        if self._clock_pub is not None:
            self._clock_pub.publish(Clock(clock=stamp))
        msg = JointState()
        msg.header.stamp = stamp
        msg.name = list(self.sim.joint_names)
        msg.position = self.sim.joint_positions().tolist()
        msg.velocity = self.sim.joint_velocities().tolist()
        msg.effort = self.sim.joint_efforts().tolist()
        self._js_pub.publish(msg)
        target, speed = self.sim.reference()
        ref = JointState(name=msg.name, position=target.tolist(), velocity=speed.tolist())
        ref.header.stamp = stamp
        self._ref_pub.publish(ref)
        pos, quat = self.sim.base_pose()
        self._pose_pub.publish(pose_stamped_msg(pos, quat, stamp, self._p["frame_id"]))

    def _publish_status(self) -> None:
        pos, _ = self.sim.base_pose()
        status = dict(self._status, sim_time_s=round(self.sim.time_s, 3),
                      real_time_factor=None if math.isnan(self._rtf) else round(self._rtf, 2),
                      base_height_m=round(float(pos[2]), 4), fallen=bool(self._status.get("fallen", False)))
        self._status_pub.publish(String(data=json.dumps(status)))

    def destroy_node(self) -> None:
        self._running = False
        if hasattr(self, "_thread"):
            self._thread.join(timeout=5.0)
        if getattr(self, "_recorder", None) is not None:
            self._recorder.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``momask_sim`` executable."""
    from momask_ros.ros.main import run_node

    return run_node(SimNode, "momask_sim", args)


if __name__ == "__main__":
    sys.exit(main())
