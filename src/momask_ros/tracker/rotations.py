"""Rotation conversions the tracker needs, quaternions scalar-first (wxyz) like MuJoCo.

Roll/pitch/yaw are the Z-Y-X (yaw, then pitch, then roll) Euler angles: the convention TWIST2's
observation uses for "root roll and pitch". Functions accept a single value or a leading batch axis."""
from __future__ import annotations

import numpy as np


def quat_wxyz_to_rpy(quat_wxyz: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions -> (..., 3) roll, pitch, yaw [rad]."""
    q = np.asarray(quat_wxyz, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    roll = np.arctan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))
    pitch = np.arcsin(np.clip(2.0 * (w * y - z * x), -1.0, 1.0))
    yaw = np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
    return np.stack([roll, pitch, yaw], axis=-1)


def rpy_to_quat_wxyz(rpy: np.ndarray) -> np.ndarray:
    """(..., 3) roll, pitch, yaw [rad] -> (..., 4) unit quaternions wxyz."""
    rpy = np.asarray(rpy, dtype=np.float64)
    cr, sr = np.cos(rpy[..., 0] / 2), np.sin(rpy[..., 0] / 2)
    cp, sp = np.cos(rpy[..., 1] / 2), np.sin(rpy[..., 1] / 2)
    cy, sy = np.cos(rpy[..., 2] / 2), np.sin(rpy[..., 2] / 2)
    return np.stack([cr * cp * cy + sr * sp * sy,
                     sr * cp * cy - cr * sp * sy,
                     cr * sp * cy + sr * cp * sy,
                     cr * cp * sy - sr * sp * cy], axis=-1)


def rpy_to_matrix(rpy: np.ndarray) -> np.ndarray:
    """(..., 3) roll, pitch, yaw -> (..., 3, 3) rotation matrices body -> world (R = Rz Ry Rx)."""
    rpy = np.asarray(rpy, dtype=np.float64)
    cr, sr = np.cos(rpy[..., 0]), np.sin(rpy[..., 0])
    cp, sp = np.cos(rpy[..., 1]), np.sin(rpy[..., 1])
    cy, sy = np.cos(rpy[..., 2]), np.sin(rpy[..., 2])
    rows = [[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr]]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def body_rate_z_from_rpy_rates(rpy: np.ndarray, rpy_rate: np.ndarray) -> np.ndarray:
    """Angular velocity about the body z axis [rad/s] from Z-Y-X Euler angles and their time rates."""
    rpy, rate = np.asarray(rpy, dtype=np.float64), np.asarray(rpy_rate, dtype=np.float64)
    roll, pitch = rpy[..., 0], rpy[..., 1]
    return rate[..., 2] * np.cos(roll) * np.cos(pitch) - rate[..., 1] * np.sin(roll)


def tilt_from_quat_wxyz(quat_wxyz: np.ndarray) -> np.ndarray:
    """Angle between the body z axis and the world vertical [rad]."""
    q = np.asarray(quat_wxyz, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y = q[..., 1], q[..., 2]
    return np.arccos(np.clip(1.0 - 2.0 * (x * x + y * y), -1.0, 1.0))
