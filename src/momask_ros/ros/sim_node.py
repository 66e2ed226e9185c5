"""`momask_sim`: the MuJoCo simulator (`momask_ros.physics.simulator`) as a ROS 2 node.

A stepping thread advances the physics and the executor thread only stores incoming commands. Two clocks:

* ``clock: real_time``: the physics runs in real time (or ``real_time_factor`` times it; 0 = as fast as
  possible) and publishes every ``1 / publish_rate`` s of simulated time, whatever the controllers do.
  In tracked mode it holds still (time stopped) until the controller's first PD command, as a robot
  hangs in its gantry until its controller starts.
* ``clock: lock_step`` (tracked mode): the robot's state is published, and one control period
  (``lock_step_period``, or the controller's from its gains message) is simulated only once the PD
  command answering that state (stamped with it) has arrived: deterministic, as fast as the controller
  answers (``real_time_factor`` > 0 caps it), for tests and benchmarks. Stamps are simulated time.

With ``tracker`` set to a tracker folder, the simulated robot is the tracker's own robot model, started
from the tracker's standing pose. Topics (defaults; relative names resolve in the node's namespace):

* in  ``joint_command_topic`` (/joint_command) sensor_msgs/JointState: set-points by joint name
  (velocity optional, used as feed-forward), Isaac Sim's convention.
* in  ``trajectory_topic`` (joint_trajectory_controller/joint_trajectory) trajectory_msgs/JointTrajectory,
  executed as joint_trajectory_controller does (``header.stamp`` 0 = start on receipt).
* in  ``base_command_topic`` (base_pose) geometry_msgs/PoseStamped: harness mode's base target.
* in  ``pd_command_topic`` (tracker/pd_command) sensor_msgs/JointState + ``pd_gains_topic``
  (tracker/pd_gains, latched String): tracked mode's PD targets and gain sets (`momask_ros.ros.pd_messages`).
* in  ``push_topic`` (sim/push) geometry_msgs/WrenchStamped: a push on the base body (world frame) for
  ``push_duration`` s. ``reset_topic`` (sim/reset) std_msgs/Empty: back to the start pose, time running on.
* out ``imu_topic`` (imu) sensor_msgs/Imu: the base IMU (orientation, gyro, accelerometer), as a real G1.
* out ``joint_state_topic`` (joint_states) sensor_msgs/JointState: measured position, velocity, effort.
* out ``base_pose_topic`` (sim/base_pose) geometry_msgs/PoseStamped: the measured pelvis pose.
* out ``reference_topic`` (sim/joint_reference) sensor_msgs/JointState: the set-points the drives track,
  stamped like the joint_states they go with (reference vs feedback, as ros2_control's controller_state).
* out ``/clock`` rosgraph_msgs/Clock when ``publish_clock`` (other nodes then run with use_sim_time).
* out ``status_topic`` (sim/status) std_msgs/String JSON, 2 Hz and on events: mode, clock, sim time,
  measured real-time factor, ``fallen``, trajectory state, the PD controller (gains received, commands
  applied, waiting), the last rejected command and why.
"""
from __future__ import annotations

import json
import math
import sys
import threading
import time
from typing import Any

from builtin_interfaces.msg import Time as TimeMsg
from geometry_msgs.msg import PoseStamped, WrenchStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Empty, String
from trajectory_msgs.msg import JointTrajectory

from momask_ros.ros.pd_messages import PdGains, PdMessageError, imu_msg, parse_pd_gains, pd_arrays, stamp_ns

from momask_ros.ros.messages import pose_stamped_msg, time_msg
from momask_ros.robot.model import load_robot
from momask_ros.physics.simulator import MODES, SimError, SimOptions, Simulator
from momask_ros.physics.video import VideoRecorder

PARAMETERS: dict[str, tuple[Any, str]] = {
    "robot": ("default", "robot profile (default, h1, g1 or a profile YAML): the retargeter's"),
    "description": ("", "MJCF/URDF overriding the profile's description ('' = the profile's / its env var)"),
    "mode": ("harness", "base mode: fixed, harness, free or tracked (PD commands from a controller)"),
    "tracker": ("", "tracker folder: simulate its robot model from its standing start ('' = the robot's description)"),
    "clock": ("real_time", "real_time, or lock_step (tracked: one control period per answered state)"),
    "lock_step_period": (0.0, "lock-step control period [s]; 0 = the controller's (its gains message)"),
    "lock_step_subscribers": (0, "lock-step: hold time at 0 until the state topic has this many subscribers "
                                 "(a recorder or test that must see every state)"),
    "timestep": (0.0, "physics step [s]; 0 = profile sim.timestep_s, else the description's"),
    "harness_timeconst": (0.005, "harness mode: time constant of the soft weld pulling the pelvis [s]"),
    "friction": (0.5, "sliding friction of the floor and the robot's collision geoms; < 0 = the description's"),
    "real_time_factor": (1.0, "simulated seconds per wall second to aim for; 0 = as fast as possible"),
    "publish_rate": (100.0, "joint_states / base pose / clock rate [Hz of simulated time]"),
    "publish_clock": (False, "publish /clock (and stamp everything with simulated time)"),
    "joint_command_topic": ("/joint_command", "JointState set-points by name; '' = off"),
    "trajectory_topic": ("joint_trajectory_controller/joint_trajectory", "JointTrajectory to execute; '' = off"),
    "base_command_topic": ("base_pose", "PoseStamped base target (harness mode); '' = off"),
    "pd_command_topic": ("tracker/pd_command", "tracked mode: PD targets (JointState, frame_id = gain set)"),
    "pd_gains_topic": ("tracker/pd_gains", "tracked mode: the controller's gain sets (latched JSON)"),
    "imu_topic": ("imu", "base IMU (sensor_msgs/Imu); '' = off"),
    "imu_frame_id": ("imu_link", "frame of the IMU messages"),
    "push_topic": ("sim/push", "WrenchStamped push on the base body, world frame"),
    "push_duration": (0.2, "how long a push acts [s of simulated time]"),
    "reset_topic": ("sim/reset", "Empty: back to the start pose (simulated time runs on)"),
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
        if p["clock"] not in ("real_time", "lock_step"):
            raise ValueError(f"parameter clock={p['clock']!r} must be real_time or lock_step")
        if p["clock"] == "lock_step" and p["mode"] != "tracked":
            raise ValueError("clock lock_step needs mode tracked (a controller answers each state)")
        for key in ("publish_rate", "record_fps"):
            if not (isinstance(p[key], (int, float)) and p[key] > 0):
                raise ValueError(f"parameter {key}={p[key]!r} must be > 0")
        self._p = p
        bundle = None
        if p["tracker"]:
            from momask_ros.tracker import load_tracker

            bundle = load_tracker(p["tracker"])
        if robot is None:
            description = bundle.model_path if bundle is not None else p["description"] or None
            robot = load_robot(p["robot"], description=description)
        self.sim = Simulator(robot, SimOptions(mode=p["mode"], timestep_s=float(p["timestep"]) or None,
                                                  harness_timeconst_s=float(p["harness_timeconst"]),
                                                  friction=None if p["friction"] < 0 else float(p["friction"])))
        if bundle is not None:  # the tracker's standing start
            from momask_ros.tracker.spec import check_joint_names

            spec = bundle.spec
            check_joint_names(spec.joint_names, self.sim.joint_names, f"robot profile {p['robot']!r}")
            self.sim.set_start_state(spec.sim_start_pose_rad, [0.0, 0.0, spec.standing_height_m], [1, 0, 0, 0])
        self._steps_per_publish = max(1, int(round(1.0 / (p["publish_rate"] * self.sim.timestep_s))))
        self._lock = threading.Lock()
        self._pending_joints: JointState | None = None
        self._pending_traj: JointTrajectory | None = None
        self._pending_base: PoseStamped | None = None
        self._pending_pd: JointState | None = None
        self._pending_push: WrenchStamped | None = None
        self._pending_reset = False
        self._pending_error: str | None = None
        self._answered = threading.Condition(self._lock)  # lock-step: a PD command arrived
        self._gains: PdGains | None = None
        self._state_ns = -1  # stamp of the last published state
        self._controller = {"gains": False, "pd_commands": 0, "waiting": p["mode"] == "tracked"}
        self._status: dict[str, Any] = {"mode": p["mode"], "clock": p["clock"], "robot": robot.profile.name,
                                        "trajectory": "none", "controller": self._controller}
        self._traj_goal = None
        self._last_base: tuple[float, list[float]] | None = None  # (stamp, position) of the last base command
        self._rtf = float("nan")
        self._recorder = VideoRecorder(self.sim, p["record_path"], fps=p["record_fps"]) if p["record_path"] else None

        self._js_pub = self.create_publisher(JointState, p["joint_state_topic"], 10)
        self._pose_pub = self.create_publisher(PoseStamped, p["base_pose_topic"], 10)
        self._ref_pub = self.create_publisher(JointState, p["reference_topic"], 10)
        self._imu_pub = self.create_publisher(Imu, p["imu_topic"], 10) if p["imu_topic"] else None
        self._status_pub = self.create_publisher(String, p["status_topic"], 10)
        self._clock_pub = self.create_publisher(Clock, "/clock", 10) if p["publish_clock"] else None
        for kind, topic, callback in ((JointState, "joint_command_topic", self._on_joints),
                                      (JointTrajectory, "trajectory_topic", self._on_trajectory),
                                      (PoseStamped, "base_command_topic", self._on_base)):
            if p[topic]:  # '' = off
                self.create_subscription(kind, p[topic], callback, 10)
        if p["mode"] == "tracked":
            latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self.create_subscription(JointState, p["pd_command_topic"], self._on_pd_command, 50)
            self.create_subscription(String, p["pd_gains_topic"], self._on_pd_gains, latched)
        self.create_subscription(WrenchStamped, p["push_topic"], self._on_push, 10)
        self.create_subscription(Empty, p["reset_topic"], self._on_reset, 10)
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="momask_sim_physics", daemon=True)
        self._thread.start()
        commands = p["pd_command_topic" if self.sim.tracked else "joint_command_topic"]
        self.get_logger().info(
            f"momask_sim up: {robot.profile.name}, {p['mode']} base, {1e3 * self.sim.timestep_s:g} ms steps, "
            f"{len(self.sim.joint_names)} joints, {p['clock']} clock; commands on "
            f"{self.resolve_topic_name(commands) if commands else '(none)'}")

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

    def _on_pd_command(self, msg: JointState) -> None:
        with self._lock:
            self._pending_pd = msg
            self._answered.notify_all()

    def _on_pd_gains(self, msg: String) -> None:
        try:
            gains = parse_pd_gains(msg.data)
        except PdMessageError as exc:
            with self._lock:  # reported by the physics thread, the one that publishes statuses
                self._pending_error = str(exc)
            return
        with self._lock:
            self._gains = gains
            self._controller["gains"] = True
            self._answered.notify_all()

    def _on_push(self, msg: WrenchStamped) -> None:
        with self._lock:
            self._pending_push = msg

    def _on_reset(self, _msg: Empty) -> None:
        with self._lock:
            self._pending_reset = True
            self._answered.notify_all()

    def _reject(self, reason: str) -> None:
        self._status.update(rejected=reason[:300], rejected_at_s=round(self.sim.time_s, 3))
        self.get_logger().warning(f"rejected command: {reason}", throttle_duration_sec=1.0)
        self._publish_status()

    # ------------------------------------------------------------------ physics thread
    def _now_s(self) -> float:
        return self.sim.time_s if self._clock_pub is not None else self.get_clock().now().nanoseconds * 1e-9

    def _apply_pending(self) -> None:
        with self._lock:
            joints, traj, base = self._pending_joints, self._pending_traj, self._pending_base
            pd, push, reset, gains = self._pending_pd, self._pending_push, self._pending_reset, self._gains
            error = self._pending_error
            self._pending_joints = self._pending_traj = self._pending_base = self._pending_pd = None
            self._pending_push, self._pending_reset, self._pending_error = None, False, None
        if error is not None:
            self._reject(error)
        sim = self.sim
        try:
            if reset:
                sim.reset(keep_time=True)
                self._controller["waiting"] = sim.tracked
                self._status.update(fallen=False, resets=self._status.get("resets", 0) + 1)
                self._status.pop("fallen_at_s", None)
            if push is not None:
                f, tq = push.wrench.force, push.wrench.torque
                sim.push([f.x, f.y, f.z], [tq.x, tq.y, tq.z], float(self._p["push_duration"]))
            if pd is not None:
                if gains is None:
                    raise SimError("PD command before the controller's gains (pd_gains_topic)")
                sim.command_pd(*pd_arrays(gains, sim.joint_names, pd))
                self._controller["pd_commands"] += 1
                self._controller["waiting"] = False
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
        except (SimError, PdMessageError) as exc:
            self._reject(str(exc))

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

    def _run_steps(self, n: int) -> None:
        for _ in range(n):
            self._apply_pending()  # every step: a command acts within one timestep of arriving
            self.sim.step()
            if self._recorder is not None:
                self._recorder.maybe_capture()

    def _lock_step_period_steps(self) -> int | None:
        period = float(self._p["lock_step_period"]) or (self._gains.control_period_s if self._gains else 0.0)
        return max(1, int(round(period / self.sim.timestep_s))) if period > 0 else None

    def _await_answer(self, timeout_s: float = 0.5) -> bool:
        """Lock-step: wait for the PD command answering the last published state; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._running:
                pd = self._pending_pd
                if self._pending_reset or (pd is not None and self._gains is not None
                                           and stamp_ns(pd.header.stamp) >= self._state_ns):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._answered.wait(remaining)
        self._apply_pending()
        return self.sim.pd is not None and not self._controller["waiting"]

    def _advance(self) -> bool:
        """Simulate what the clock allows now; False when nothing moved (waiting for the controller)."""
        sim = self.sim
        if self._p["clock"] == "lock_step":
            steps = self._lock_step_period_steps()
            if steps is None:  # the period comes with the controller's gains
                with self._lock:
                    self._answered.wait(0.5)
                return False
            if self.sim.time_s == 0.0 and self._js_pub.get_subscription_count() < self._p["lock_step_subscribers"]:
                time.sleep(0.01)  # nobody who must see the first state listens yet
                return False
            if not self._await_answer():
                return False
            self._run_steps(steps)
            return True
        if sim.tracked and sim.pd is None:  # held still until the controller's first command
            self._apply_pending()
            if sim.pd is None:
                time.sleep(self._steps_per_publish * sim.timestep_s)
                return False
        self._run_steps(self._steps_per_publish)
        return True

    def _loop(self) -> None:
        sim, rtf_target = self.sim, float(self._p["real_time_factor"])
        wall0, sim0 = time.perf_counter(), sim.time_s
        window = (time.perf_counter(), sim.time_s)
        last_status = -math.inf
        self._publish_state()
        while self._running:
            try:
                moved = self._advance()
                self._check_trajectory_done()
                self._publish_state()  # again while waiting: a controller that joins late gets a state
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
                if not moved:
                    wall0, sim0 = time.perf_counter(), sim.time_s
                elif rtf_target <= 0:
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
        if self._clock_pub is not None or self._p["clock"] == "lock_step":
            return time_msg(self.sim.time_s)
        return self.get_clock().now().to_msg()

    def _publish_state(self) -> None:
        stamp = self._stamp()
        self._state_ns = stamp_ns(stamp)
        if self._clock_pub is not None:
            self._clock_pub.publish(Clock(clock=stamp))
        msg = JointState()
        msg.header.stamp = stamp
        msg.name = list(self.sim.joint_names)
        msg.position = self.sim.joint_positions().tolist()
        msg.velocity = self.sim.joint_velocities().tolist()
        msg.effort = self.sim.joint_efforts().tolist()
        target, speed = self.sim.reference()
        ref = JointState(name=msg.name, position=target.tolist(), velocity=speed.tolist())
        ref.header.stamp = stamp
        self._ref_pub.publish(ref)
        pos, quat = self.sim.base_pose()
        self._pose_pub.publish(pose_stamped_msg(pos, quat, stamp, self._p["frame_id"]))
        if self._imu_pub is not None:
            imu = self.sim.imu()
            self._imu_pub.publish(imu_msg(imu.quat_wxyz, imu.ang_vel_rad_s, imu.lin_acc_m_s2, stamp,
                                          self._p["imu_frame_id"]))
        self._js_pub.publish(msg)  # last: a controller that answers on joint_states has the rest

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
