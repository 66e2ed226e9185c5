"""`momask_tracker`: the whole-body tracker (`momask_ros.tracker`) between `momask_node` and the robot.

It answers each measured robot state with PD targets: the clock is the state's stamp, so the same node
serves a real robot, a real-time simulator and a lock-step one (which waits for each answer). The policy
runs at its own rate; a state between two policy ticks gets the held command again. The reference is
conditioned live (`momask_ros.tracker.LiveReference`) and followed ``reference_delay`` behind the robot's
clock, so a stream that arrives a little late (a busy CPU, DDS) is still on time.

Topics (defaults; relative names resolve in the node's namespace):

* in  ``reference/joint_states`` sensor_msgs/JointState, ``reference/base_pose`` geometry_msgs/PoseStamped,
  ``reference/base_twist`` geometry_msgs/TwistStamped (world frame): momask_node's stream, paired by stamp
  (launch files point momask_node's topics there). Without a twist the velocities come from differences
  of consecutive base poses.
* in  ``momask/status`` std_msgs/String (momask_node's JSON): ``playing`` blends in from standing (a
  continuation is already in) and re-anchors the reference's heading and position on the robot's,
  ``done`` (neither preempted nor continued) blends back to standing once the motion's last sample is
  followed, ``stopped`` at once (`momask_ros.tracker.node_status`); a command while fallen is refused
  here, with the reason.
* in  ``momask/stop`` std_msgs/Empty: back to standing at once.
* in  ``joint_states`` sensor_msgs/JointState + ``imu`` sensor_msgs/Imu (+ ``sim/base_pose``, optional: the
  measured base height and position): the robot's state, paired by stamp.
* in  ``tracker/reset`` std_msgs/Empty: leave the fallen state, once the robot is upright again.
* out ``tracker/pd_command``, ``tracker/pd_gains`` (latched): `momask_ros.ros.pd_messages`.
* out ``tracker/memory`` std_msgs/Float64MultiArray, after each policy tick: the tracker's observation
  history and last action (`momask_ros.ros.memory_messages`), so momask_node's rehearsals from the
  measured state continue as this tracker would.
* out ``tracker/status`` std_msgs/String JSON: ``state`` (waiting, standing, tracking, fallen), ``fallen``,
  ``fall_time_s``, ``fall_reason``, ``refused`` (the last refused command and why), ``reset``,
  ``reference`` (phase, newest stamp, anchored base position, what conditioning changed), policy rate and
  controller tick time [ms], ``error`` (the last message that could not be used, and why).
"""
from __future__ import annotations

import collections
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Empty, Float64MultiArray, String

from momask_ros.ros.memory_messages import tracker_memory_msg
from momask_ros.ros.pd_messages import imu_gyro, imu_quat_wxyz, pd_command_msg, pd_gains_msg, stamp_ns
from momask_ros.tracker import (LiveReference, MeasuredState, Tracker, TrackerError, TrackerState, default_tracker_dir,
                                load_tracker)
from momask_ros.tracker.live_reference import REFERENCE_DELAY_S
from momask_ros.tracker.node_status import reference_event
from momask_ros.tracker.rotations import tilt_from_quat_wxyz
from momask_ros.tracker.spec import check_joint_names

PARAMETERS: dict[str, tuple[Any, str]] = {
    "tracker": ("", "tracker folder (checkpoints + robot model); '' = the download cache (momask-fetch-tracker)"),
    "spec": ("", "tracker spec YAML; '' = the packaged TWIST2 G1 spec"),
    "checkpoint": ("", "checkpoint key of the spec (e.g. 25k); '' = the spec's default"),
    "policy_rate": (0.0, "policy rate [Hz], one the spec allows (TWIST2: 50 or 100); 0 = the spec's"),
    "robot": ("", "robot profile the reference comes from; its joints are checked against the tracker's at start"),
    "reference_joint_state_topic": ("reference/joint_states", "reference JointState (momask_node's stream)"),
    "reference_base_pose_topic": ("reference/base_pose", "reference base PoseStamped"),
    "reference_base_twist_topic": ("reference/base_twist", "reference base TwistStamped, world frame; '' = off"),
    "reference_status_topic": ("momask/status", "momask_node's status JSON (motion start, continuation, end)"),
    "stop_topic": ("momask/stop", "Empty: blend back to standing"),
    "joint_state_topic": ("joint_states", "measured JointState"),
    "imu_topic": ("imu", "measured base Imu"),
    "base_pose_topic": ("sim/base_pose", "measured base PoseStamped (height for fall detection); '' = none"),
    "pd_command_topic": ("tracker/pd_command", "out: PD targets (JointState; frame_id = gain set)"),
    "pd_gains_topic": ("tracker/pd_gains", "out, latched: gain sets (JSON)"),
    "memory_topic": ("tracker/memory", "out: observation history and last action after each policy tick "
                     "(Float64MultiArray), for momask_node's rehearsals; '' = not published"),
    "status_topic": ("tracker/status", "out: status JSON"),
    "reset_topic": ("tracker/reset", "Empty: leave the fallen state once the robot is upright (ignored otherwise)"),
    "reference_delay": (REFERENCE_DELAY_S, "the reference is tracked this far behind the robot's clock [s], so "
                        "a stream published a little late is still on time"),
    "sync_tolerance": (0.0005, "measured joint states and IMU are one state when their stamps differ by <= this [s]"),
    "reset_timeout": (3.0, "a reset waits this long [s] for the robot to be upright, then is refused"),
}

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
REFERENCE_PAIRING = 1024  # stream messages per topic kept to pair joints, pose and twist by stamp
DEEP = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)


class _ByStamp:
    """Latest messages of several parts, keyed by stamp [ns]: the newest stamp all parts share (within a
    tolerance) that is newer than the last one used."""

    def __init__(self, parts: tuple[str, ...], tolerance_ns: int, keep: int = 64):
        self.parts, self.tolerance_ns = parts, tolerance_ns
        self.items: dict[str, collections.OrderedDict[int, Any]] = {p: collections.OrderedDict() for p in parts}
        self.keep = keep

    def add(self, part: str, ns: int, value: Any) -> None:
        store = self.items[part]
        store[ns] = value
        while len(store) > self.keep:
            store.popitem(last=False)

    def match(self, ns: int) -> dict[str, Any] | None:
        """The parts for the first part's stamp `ns`, or None while one is missing."""
        found = {}
        for part in self.parts:
            store = self.items[part]
            if ns in store:
                found[part] = store[ns]
                continue
            near = [k for k in store if abs(k - ns) <= self.tolerance_ns]
            if not near:
                return None
            found[part] = store[min(near, key=lambda k: abs(k - ns))]
        return found


class TrackerNode(Node):
    """The tracker node (module docstring)."""

    def __init__(self, *, node_name: str = "momask_tracker", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        p = {name: self.declare_parameter(name, default).value for name, (default, _) in PARAMETERS.items()}
        self._p = p
        folder = Path(p["tracker"]).expanduser() if p["tracker"] else default_tracker_dir()
        self.bundle = load_tracker(folder, p["spec"] or None, p["checkpoint"] or None)
        spec = self.spec = self.bundle.spec
        if p["robot"]:
            from momask_ros.robot.model import load_robot

            robot = load_robot(p["robot"], description=self.bundle.model_path)
            check_joint_names(spec.joint_names, robot.joint_names, f"robot profile {p['robot']!r}")
        self.tracker = Tracker(self.bundle, policy_rate_hz=float(p["policy_rate"]) or None)
        self.reference = LiveReference.from_spec(spec, self.bundle.joint_range_rad)
        self._names = list(spec.joint_names)
        self._delay = float(p["reference_delay"])
        self._orders: dict[tuple[str, ...], np.ndarray] = {}
        tol = int(round(float(p["sync_tolerance"]) * 1e9))
        self._state = _ByStamp(("joints", "imu") + (("base",) if p["base_pose_topic"] else ()), tol)
        # a stream may come in bursts, one topic's messages taken before the other's: keep ~20 s to pair
        self._ref = _ByStamp(("joints", "pose"), 0, keep=REFERENCE_PAIRING)
        self._twists: collections.OrderedDict[int, TwistStamped] = collections.OrderedDict()
        self._last_ns: int | None = None
        self._last_msg: JointState | None = None
        self._command = None
        self._now_s = -math.inf
        self._robot_pose = (np.zeros(3), np.array([1.0, 0.0, 0.0, 0.0]))
        self._status: dict[str, Any] = {"state": "waiting", "refused": None, "reset": None, "error": None}
        self._reset_since: float | None = None
        self._policy_ms: collections.deque[float] = collections.deque(maxlen=500)
        self._commands = 0
        self._last_status_s = -math.inf
        self._seen_ids: set[int] = set()

        self._cmd_pub = self.create_publisher(JointState, p["pd_command_topic"], DEEP)
        self._gains_pub = self.create_publisher(String, p["pd_gains_topic"], LATCHED)
        self._status_pub = self.create_publisher(String, p["status_topic"], 50)
        self._memory_pub = (self.create_publisher(Float64MultiArray, p["memory_topic"], 10)
                            if p["memory_topic"] else None)

        def sub(kind, topic: str, callback, qos) -> None:
            self.create_subscription(kind, topic, self._guarded(callback), qos)

        sub(JointState, p["reference_joint_state_topic"], self._on_ref_joints, DEEP)
        sub(PoseStamped, p["reference_base_pose_topic"], self._on_ref_pose, DEEP)
        if p["reference_base_twist_topic"]:
            sub(TwistStamped, p["reference_base_twist_topic"], self._on_ref_twist, DEEP)
        sub(String, p["reference_status_topic"], self._on_ref_status, DEEP)
        sub(Empty, p["stop_topic"], self._on_stop, 10)
        sub(Empty, p["reset_topic"], self._on_reset, 10)
        sub(JointState, p["joint_state_topic"], lambda m: self._on_state("joints", m), DEEP)
        sub(Imu, p["imu_topic"], lambda m: self._on_state("imu", m), DEEP)
        if p["base_pose_topic"]:
            sub(PoseStamped, p["base_pose_topic"], lambda m: self._on_state("base", m), DEEP)
        gains = {"tracking": {"kp": spec.kp, "kd": spec.kd, "torque_limit_nm": spec.torque_limit_nm},
                 "safe": {"kp": spec.safe_kp, "kd": spec.safe_kd, "torque_limit_nm": spec.torque_limit_nm}}
        self._gains_pub.publish(pd_gains_msg(self._names, self.tracker.policy_period_s, gains))
        self.create_timer(1.0, self._publish_status, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(
            f"momask_tracker up: {spec.name} ({self.bundle.checkpoint.file}) at {self.tracker.policy_rate_hz:g} Hz "
            f"from {self.bundle.directory}; PD targets on {self.resolve_topic_name(p['pd_command_topic'])}")

    # ------------------------------------------------------------------ helpers
    def _guarded(self, callback):
        """No message takes the node down: what goes wrong becomes the status's one-line ``error``."""
        def run(msg: Any) -> None:
            try:
                callback(msg)
            except Exception as exc:
                self._error(f"{type(exc).__name__}: {exc}"[:300])
        return run

    def _order(self, names: list[str], what: str) -> np.ndarray | None:
        """Indices putting `names` into the tracker's order, or None (a one-line error in the status)."""
        key = tuple(names)
        if key not in self._orders:
            missing = [j for j in self._names if j not in names]
            if missing:
                self._error(f"{what} joints do not match the tracker: missing {missing[:6]}"
                            f"{' ...' if len(missing) > 6 else ''}")
                return None
            self._orders[key] = np.array([names.index(j) for j in self._names])
        return self._orders[key]

    def _error(self, text: str) -> None:
        if self._status.get("error") != text:
            self._status["error"] = text
            self.get_logger().error(text)
            self._publish_status()

    # ------------------------------------------------------------------ reference
    def _on_ref_joints(self, msg: JointState) -> None:
        self._ref.add("joints", stamp_ns(msg.header.stamp), msg)
        self._push_reference(stamp_ns(msg.header.stamp))

    def _on_ref_pose(self, msg: PoseStamped) -> None:
        self._ref.add("pose", stamp_ns(msg.header.stamp), msg)
        self._push_reference(stamp_ns(msg.header.stamp))

    def _on_ref_twist(self, msg: TwistStamped) -> None:
        ns = stamp_ns(msg.header.stamp)
        self._twists[ns] = msg
        while len(self._twists) > REFERENCE_PAIRING:
            self._twists.popitem(last=False)
        self._push_reference(ns)

    def _push_reference(self, ns: int) -> None:
        parts = self._ref.match(ns)
        if parts is None:
            return
        joints, pose = parts["joints"], parts["pose"]
        order = self._order(list(joints.name), "reference")
        if order is None:
            return
        twist = self._twists.get(ns)
        p, o = pose.pose.position, pose.pose.orientation
        qd = np.asarray(joints.velocity)[order] if len(joints.velocity) == len(joints.name) else None
        lin = ang = None
        if twist is not None:
            lin = [twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z]
            ang = [twist.twist.angular.x, twist.twist.angular.y, twist.twist.angular.z]
        try:
            self.reference.push(ns * 1e-9, [p.x, p.y, p.z], [o.w, o.x, o.y, o.z], np.asarray(joints.position)[order],
                                base_lin_vel_world=lin, base_ang_vel_world=ang, joint_vel_rad_s=qd)
        except (TrackerError, IndexError) as exc:
            self._error(f"reference sample dropped: {exc}")

    def _on_ref_status(self, msg: String) -> None:
        try:
            status = json.loads(msg.data)
            state, cid = status.get("state"), status.get("id")
        except (ValueError, AttributeError):
            return  # not momask_node's status JSON
        if state in ("accepted", "playing") and not self.tracker.accepts_commands():
            if cid not in self._seen_ids:
                self._seen_ids.add(cid)
                self._status["refused"] = {"id": cid, "text": status.get("text"), "reason": self.tracker.refusal_reason}
                self.get_logger().warning(f"command {cid} refused: {self.tracker.refusal_reason}")
                self._publish_status()
            return
        event = reference_event(state, status, self._ref_now())
        if event is not None and event[0] == "begin":
            if self.tracker.reference is not self.reference:
                self.tracker.set_reference(self.reference, start_s=self._delay)
            self.reference.begin(event[1])
            self.reference.reanchor(*self._robot_pose)
            self._publish_status()
        elif event is not None and event[0] == "end":
            self.reference.end(event[1])

    def _on_stop(self, _msg: Empty) -> None:
        self.reference.end(self._ref_now())

    def _ref_now(self) -> float:
        """Now on the reference stream's clock (the robot's, `reference_delay` behind)."""
        return max(self._now_s - self._delay, 0.0)

    def _on_reset(self, _msg: Empty) -> None:
        if self.tracker.accepts_commands():  # a reset mid-motion would drop the policy's history: refuse it
            self._status["reset"] = "ignored: not fallen"
        else:
            self._reset_since = time.monotonic()
            self._status["reset"] = "pending"
        self._publish_status()

    # ------------------------------------------------------------------ robot state
    def _on_state(self, part: str, msg: Any) -> None:
        ns = stamp_ns(msg.header.stamp)
        self._state.add(part, ns, msg)
        newest = max(self._state.items["joints"], default=None)
        if newest is None:
            return
        if self._last_ns is not None and newest <= self._last_ns:
            if newest == self._last_ns and part == "joints" and self._last_msg is not None:
                self._cmd_pub.publish(self._last_msg)  # a state sent again (lock-step): answer again
            return
        parts = self._state.match(newest)
        if parts is not None:
            self._step(newest, parts)

    def _measured(self, parts: dict[str, Any]) -> MeasuredState | None:
        joints, imu = parts["joints"], parts["imu"]
        order = self._order(list(joints.name), "measured")
        if order is None or len(joints.velocity) != len(joints.name):
            return None
        height = None
        quat = imu_quat_wxyz(imu)
        if "base" in parts:
            p = parts["base"].pose.position
            height = float(p.z)
            self._robot_pose = (np.array([p.x, p.y, p.z]), quat)
        else:
            self._robot_pose = (np.zeros(3), quat)
        return MeasuredState(joint_pos_rad=np.asarray(joints.position)[order],
                             joint_vel_rad_s=np.asarray(joints.velocity)[order], base_quat_wxyz=quat,
                             base_ang_vel_body_rad_s=imu_gyro(imu), base_height_m=height)

    def _upright(self, measured: MeasuredState) -> str | None:
        """None when upright, else why not."""
        tilt = float(tilt_from_quat_wxyz(measured.base_quat_wxyz))
        if tilt > self.spec.fall_max_tilt_rad:
            return f"base tilt {tilt:.2f} rad"
        if measured.base_height_m is not None and measured.base_height_m < self.spec.fall_min_base_height_m:
            return f"base height {measured.base_height_m:.2f} m"
        return None

    def _try_reset(self, measured: MeasuredState) -> None:
        down = self._upright(measured)
        if down is None:
            self.tracker.reset()
            self.reference = LiveReference.from_spec(self.spec, self.bundle.joint_range_rad)
            self._status.update(reset="done", refused=None)
            self._reset_since = None
            self.get_logger().info("tracker reset: standing")
        elif time.monotonic() - self._reset_since > float(self._p["reset_timeout"]):
            self._status["reset"] = f"refused: the robot is down ({down}); stand it up first (sim/reset)"
            self._reset_since = None
        self._publish_status()

    def _step(self, ns: int, parts: dict[str, Any]) -> None:
        measured = self._measured(parts)
        if measured is None:
            return
        t = ns * 1e-9
        self._last_ns, self._now_s = ns, t
        if self._reset_since is not None:
            self._try_reset(measured)
        before, last = self.tracker.state, self._command
        tick = time.perf_counter()
        command = self.tracker.step(t, measured)
        ran = command is not last and not command.safe  # the policy ran (between its ticks: the same command)
        if ran:
            self._policy_ms.append((time.perf_counter() - tick) * 1e3)
        self._command = command
        msg = pd_command_msg(self._names, command.target_rad, "safe" if command.safe else "tracking",
                             parts["joints"].header.stamp)
        self._cmd_pub.publish(msg)
        if ran and self._memory_pub is not None:  # after the command, which the robot waits for
            self._memory_pub.publish(tracker_memory_msg(self.tracker.memory()))
        self._last_msg = msg
        self._commands += 1
        if self.tracker.state is not before or t - self._last_status_s >= 0.5:
            self._last_status_s = t
            self._publish_status()

    # ------------------------------------------------------------------ status
    def _publish_status(self) -> None:
        tr = self.tracker
        sample = tr.last_sample
        state = tr.state.value if self._last_ns is not None else "waiting"
        ms = np.asarray(self._policy_ms) if self._policy_ms else np.zeros(1)
        status = dict(self._status, state=state, fallen=tr.state is TrackerState.FALLEN,
                      fall_time_s=tr.fall_time_s, fall_reason=tr.fall_reason,
                      time_s=None if self._last_ns is None else round(self._now_s, 4),
                      policy_rate_hz=tr.policy_rate_hz, policy_ms_mean=round(float(ms.mean()), 3),
                      policy_ms_max=round(float(ms.max()), 3), commands=self._commands,
                      reference={"phase": sample.phase if sample is not None else "standing",
                                 "newest_s": self.reference.newest_s, "oldest_s": self.reference.oldest_s,
                                 "samples": self.reference.samples, "begins_s": self.reference.begins_s,
                                 "base_pos_world": None if sample is None else [round(v, 4) for v in sample.base_pos_world],
                                 "notes": self.reference.report.notes()})
        self._status_pub.publish(String(data=json.dumps(status)))


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``momask_tracker`` executable."""
    from momask_ros.ros.main import run_node

    return run_node(TrackerNode, "momask_tracker", args)


if __name__ == "__main__":
    sys.exit(main())
