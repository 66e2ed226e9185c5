"""Array -> ROS message conversions for the node (message classes only, no rclpy Node).

Every function here takes plain numbers and numpy arrays and returns a filled message, so the node
stays a thin shell and these conversions can be tested without a running ROS graph. Inputs are
checked (shapes, finiteness) because a NaN published to a robot is worse than an exception here.
"""
from __future__ import annotations

import json
import math
import struct
from typing import Any, Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Point, PoseStamped, TwistStamped
from sensor_msgs.msg import JointState
from std_msgs.msg import ColorRGBA, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from visualization_msgs.msg import Marker, MarkerArray

__all__ = [
    "MessageError",
    "STATES",
    "decode_string_cdr",
    "duration_msg",
    "joint_state_msg",
    "joint_trajectory_msg",
    "pose_stamped_msg",
    "skeleton_marker_array",
    "status_msg",
    "status_payload",
    "time_msg",
    "twist_stamped_msg",
]

STATES = ("ready", "accepted", "generating", "playing", "done", "rejected", "stopped", "error")


class MessageError(ValueError):
    """Values cannot be converted to a message (wrong shape, non-finite numbers, bad names)."""


def _finite_vector(name: str, values: Any, size: int | None = None) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if size is not None and arr.shape[0] != size:
        raise MessageError(f"{name} has {arr.shape[0]} values, expected {size}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise MessageError(f"{name}[{bad}] = {arr[bad]} is not finite")
    return arr


def time_msg(seconds: float) -> Time:
    """Seconds (>= 0) -> builtin_interfaces/Time, nanoseconds exact to the integer."""
    if not (math.isfinite(seconds) and seconds >= 0):
        raise MessageError(f"time must be a finite number >= 0, got {seconds}")
    ns = int(round(seconds * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def duration_msg(seconds: float) -> Duration:
    """Seconds (>= 0) -> builtin_interfaces/Duration (``time_from_start``)."""
    if not (math.isfinite(seconds) and seconds >= 0):
        raise MessageError(f"duration must be a finite number >= 0, got {seconds}")
    ns = int(round(seconds * 1e9))
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def joint_state_msg(
    names: Sequence[str], positions: Any, velocities: Any | None, stamp: Time, frame_id: str = ""
) -> JointState:
    """One JointState sample (positions [rad or m], velocities [rad/s or m/s]; effort left empty)."""
    names = [str(n) for n in names]
    msg = JointState()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.name = names
    msg.position = _finite_vector("position", positions, len(names)).tolist()
    if velocities is not None:
        msg.velocity = _finite_vector("velocity", velocities, len(names)).tolist()
    return msg


def joint_trajectory_msg(
    names: Sequence[str],
    times_s: Any,
    positions: Any,
    velocities: Any | None,
    stamp: Time,
    frame_id: str = "",
) -> JointTrajectory:
    """A whole motion as JointTrajectory (for ros2_control's joint_trajectory_controller).

    Args:
        names: joint names, in the column order of ``positions``.
        times_s: (N,) strictly increasing ``time_from_start`` of each point [s].
        positions: (N, J); velocities: (N, J) or None.
        stamp: when ``time_from_start`` = 0 happens (zero = "start on receipt" for the controller).
    """
    names = [str(n) for n in names]
    times = _finite_vector("times_s", times_s)
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape != (times.shape[0], len(names)):
        raise MessageError(f"positions has shape {pos.shape}, expected ({times.shape[0]}, {len(names)})")
    _finite_vector("positions", pos)
    vel = None
    if velocities is not None:
        vel = np.asarray(velocities, dtype=np.float64)
        if vel.shape != pos.shape:
            raise MessageError(f"velocities has shape {vel.shape}, expected {pos.shape}")
        _finite_vector("velocities", vel)
    if times.shape[0] and (times[0] < 0 or np.any(np.diff(times) <= 0)):
        raise MessageError("times_s must be >= 0 and strictly increasing")
    msg = JointTrajectory()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.joint_names = names
    points = []
    for i in range(times.shape[0]):
        point = JointTrajectoryPoint()
        point.positions = pos[i].tolist()
        if vel is not None:
            point.velocities = vel[i].tolist()
        point.time_from_start = duration_msg(float(times[i]))
        points.append(point)
    msg.points = points
    return msg


def pose_stamped_msg(position_xyz: Any, quat_wxyz: Any, stamp: Time, frame_id: str) -> PoseStamped:
    """Floating-base pose (position [m], orientation as a unit quaternion w, x, y, z)."""
    p = _finite_vector("position", position_xyz, 3)
    q = _finite_vector("quaternion", quat_wxyz, 4)
    norm = float(np.linalg.norm(q))
    if norm < 1e-9:
        raise MessageError("quaternion has zero norm")
    q = q / norm
    msg = PoseStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in p)
    o = msg.pose.orientation
    o.w, o.x, o.y, o.z = (float(v) for v in q)
    return msg


def twist_stamped_msg(linear_xyz: Any, angular_xyz: Any, stamp: Time, frame_id: str) -> TwistStamped:
    """Floating-base twist: linear [m/s] and angular [rad/s] velocity, both in the frame ``frame_id``."""
    v = _finite_vector("linear velocity", linear_xyz, 3)
    w = _finite_vector("angular velocity", angular_xyz, 3)
    msg = TwistStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (float(x) for x in v)
    msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z = (float(x) for x in w)
    return msg


def skeleton_marker_array(
    joints_xyz: Any,
    parents: Sequence[int],
    stamp: Time,
    frame_id: str,
    *,
    ns: str = "momask_human",
    joint_radius_m: float = 0.05,
    bone_width_m: float = 0.025,
    lifetime_s: float = 0.5,
) -> MarkerArray:
    """The human skeleton of one frame for RViz: a sphere list (joints) and a line list (bones).

    Args:
        joints_xyz: (J, 3) joint positions [m] already in the ROS frame ``frame_id`` (Z up).
        parents: parent index per joint, -1 for the root.
        lifetime_s: markers vanish this long after the last update, so a stopped stream does not
            leave a frozen ghost in RViz.
    """
    joints = np.asarray(joints_xyz, dtype=np.float64)
    if joints.ndim != 2 or joints.shape[1] != 3 or joints.shape[0] != len(parents):
        raise MessageError(f"joints has shape {joints.shape}, expected ({len(parents)}, 3)")
    _finite_vector("joints", joints)
    points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in joints]

    spheres = Marker()
    spheres.header.stamp, spheres.header.frame_id = stamp, frame_id
    spheres.ns, spheres.id = ns, 0
    spheres.type, spheres.action = Marker.SPHERE_LIST, Marker.ADD
    spheres.pose.orientation.w = 1.0
    spheres.scale.x = spheres.scale.y = spheres.scale.z = float(joint_radius_m)
    spheres.color = ColorRGBA(r=0.95, g=0.55, b=0.1, a=1.0)
    spheres.points = points
    spheres.lifetime = duration_msg(lifetime_s)

    bones = Marker()
    bones.header.stamp, bones.header.frame_id = stamp, frame_id
    bones.ns, bones.id = ns, 1
    bones.type, bones.action = Marker.LINE_LIST, Marker.ADD
    bones.pose.orientation.w = 1.0
    bones.scale.x = float(bone_width_m)
    bones.color = ColorRGBA(r=0.2, g=0.6, b=1.0, a=1.0)
    bones.points = [p for j, parent in enumerate(parents) if parent >= 0 for p in (points[parent], points[j])]
    bones.lifetime = duration_msg(lifetime_s)

    out = MarkerArray()
    out.markers = [spheres, bones]
    return out


def status_payload(state: str, **fields: Any) -> dict[str, Any]:
    """The status record (a dict with ``state`` first); unknown states are a programming error."""
    if state not in STATES:
        raise MessageError(f"unknown status state {state!r}; known: {', '.join(STATES)}")
    payload: dict[str, Any] = {"state": state}
    for key, value in fields.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None  # JSON has no NaN
        elif isinstance(value, np.generic):
            value = value.item()
        payload[key] = value
    return payload


def status_msg(state: str, **fields: Any) -> String:
    """std_msgs/String carrying the status as one JSON object (stable keys, ASCII only)."""
    return String(data=json.dumps(status_payload(state, **fields), ensure_ascii=True, sort_keys=False))


def decode_string_cdr(payload: bytes) -> bytes:
    """The text bytes of a serialized std_msgs/String (CDR), without decoding them as UTF-8.

    The node subscribes in raw mode so that a message with invalid UTF-8 (which a typed subscription
    would fail to deserialize inside the executor) is still seen and answered with a ``not_utf8``
    rejection. Layout: 4-byte encapsulation header (byte 1: 0 big endian, 1 little endian), uint32
    length including the terminating NUL, the bytes, NUL.

    Raises:
        ValueError: the payload is not a CDR string.
    """
    payload = bytes(payload)
    if len(payload) < 8:
        raise ValueError(f"serialized message too short ({len(payload)} bytes)")
    little = payload[1] & 1
    (n,) = struct.unpack("<I" if little else ">I", payload[4:8])
    if n == 0:
        return b""
    if 8 + n > len(payload):
        raise ValueError(f"string length {n} exceeds the {len(payload) - 8} bytes received")
    data = payload[8 : 8 + n]
    return data[:-1] if data.endswith(b"\x00") else data
