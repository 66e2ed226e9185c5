"""The closed loop's messages between a PD controller (`momask_tracker`) and a robot (`momask_sim`, or a
real robot's bridge), all standard message types, converted here so both ends read one contract:

* ``tracker/pd_gains`` std_msgs/String, latched (transient local), published once by the controller:
  JSON ``{"joint_names": [...], "control_period_s": 0.02, "gain_sets": {"tracking": {"kp": [...],
  "kd": [...], "torque_limit_nm": [...]}, "safe": {...}}}`` (per joint, that order).
* ``tracker/pd_command`` sensor_msgs/JointState, one per measured state the controller answers:
  ``header.stamp`` = the stamp of that state, ``header.frame_id`` = the gain set to apply, ``name`` and
  ``position`` = the PD targets [rad] (velocity and effort empty: the drive damps towards zero speed).
  The robot applies torque = clip(kp (target - q) - kd q', +-torque_limit) every physics step.
* ``imu`` sensor_msgs/Imu: orientation (world), angular velocity and linear acceleration (specific
  force) in the IMU frame, as a real G1 reports its pelvis IMU.

Why gains in a latched message and not in each command: they change only with the gain set (tracking or
the damped safe mode), and a JointState has no field for them; the set's name travels with each target.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import String

GAIN_FIELDS = ("kp", "kd", "torque_limit_nm")


class PdMessageError(ValueError):
    """A PD gains or command message that cannot be used; the message says what is wrong."""


def stamp_ns(stamp: Time) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


@dataclass(frozen=True, eq=False)
class PdGains:
    """Gain sets of one controller: per set name, kp, kd and torque limits in `joint_names` order."""

    joint_names: tuple[str, ...]
    control_period_s: float
    sets: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]


def pd_gains_msg(joint_names: Sequence[str], control_period_s: float,
                 sets: Mapping[str, Mapping[str, Sequence[float]]]) -> String:
    """The latched gains message (module docstring); `sets` maps a name to kp, kd and torque_limit_nm."""
    payload = {"joint_names": list(joint_names), "control_period_s": float(control_period_s),
               "gain_sets": {name: {k: [float(v) for v in values[k]] for k in GAIN_FIELDS}
                             for name, values in sets.items()}}
    return String(data=json.dumps(payload))


def parse_pd_gains(text: str) -> PdGains:
    """Read a gains message; PdMessageError on anything malformed."""
    try:
        raw: Any = json.loads(text)
        names = tuple(str(n) for n in raw["joint_names"])
        period = float(raw["control_period_s"])
        sets = {}
        for name, values in raw["gain_sets"].items():
            arrays = tuple(np.asarray(values[k], dtype=np.float64) for k in GAIN_FIELDS)
            if any(a.shape != (len(names),) or not np.all(np.isfinite(a)) or np.any(a < 0) for a in arrays):
                raise PdMessageError(f"gain set {name!r} needs {len(names)} finite values >= 0 per field")
            sets[str(name)] = arrays
    except PdMessageError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PdMessageError(f"malformed PD gains message: {type(exc).__name__}: {exc}") from None
    if not sets or not period > 0:
        raise PdMessageError("PD gains message needs at least one gain set and control_period_s > 0")
    return PdGains(joint_names=names, control_period_s=period, sets=sets)


def pd_command_msg(joint_names: Sequence[str], target_rad: Sequence[float], gain_set: str, stamp: Time) -> JointState:
    msg = JointState(name=list(joint_names), position=[float(v) for v in target_rad])
    msg.header.stamp = stamp
    msg.header.frame_id = gain_set
    return msg


def imu_msg(quat_wxyz: Sequence[float], ang_vel_rad_s: Sequence[float], lin_acc_m_s2: Sequence[float], stamp: Time,
            frame_id: str) -> Imu:
    """sensor_msgs/Imu; covariances left 0 ("unknown"), as most robot drivers publish them."""
    msg = Imu()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    o = msg.orientation
    o.w, o.x, o.y, o.z = (float(v) for v in quat_wxyz)
    a, lin = msg.angular_velocity, msg.linear_acceleration
    a.x, a.y, a.z = (float(v) for v in ang_vel_rad_s)
    lin.x, lin.y, lin.z = (float(v) for v in lin_acc_m_s2)
    return msg


def imu_quat_wxyz(msg: Imu) -> np.ndarray:
    o = msg.orientation
    return np.array([o.w, o.x, o.y, o.z], dtype=np.float64)


def imu_gyro(msg: Imu) -> np.ndarray:
    a = msg.angular_velocity
    return np.array([a.x, a.y, a.z], dtype=np.float64)


def pd_arrays(gains: PdGains, joint_names: Sequence[str], command: JointState) -> tuple[np.ndarray, ...]:
    """A PD command as (targets, kp, kd, torque limits) in `joint_names` order (the robot's joints).

    Raises PdMessageError: unknown gain set, or a command or gains message that lacks some joint."""
    if command.header.frame_id not in gains.sets:
        raise PdMessageError(f"PD command names gain set {command.header.frame_id!r}; known: {sorted(gains.sets)}")
    names = list(command.name)
    if len(command.position) != len(names):
        raise PdMessageError(f"PD command has {len(names)} names and {len(command.position)} positions")
    missing = [j for j in joint_names if j not in names or j not in gains.joint_names]
    if missing:
        raise PdMessageError(f"PD command or gains lack joints {missing[:5]} of the robot")
    targets = np.asarray(command.position, dtype=np.float64)[[names.index(j) for j in joint_names]]
    cols = [gains.joint_names.index(j) for j in joint_names]
    return (targets, *(a[cols] for a in gains.sets[command.header.frame_id]))
