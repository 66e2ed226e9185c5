"""Unit quaternions (w, x, y, z), Hamilton product, numpy float64: one set for the whole project.

`momask_model.motion.features` uses them (vectorised over frames and joints) to extract and recover the
HumanML3D features; `momask_ros` uses the same functions on single quaternions in its control
loop, where scipy's ``Rotation`` (~0.1 ms per object) would cost more than the whole tick's maths.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["qinv", "qmul", "qrot", "qslerp", "quat_about_z", "rotation_vector", "yaw_of"]


def qmul(q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Hamilton product q·r over (..., 4)."""
    w1, x1, y1, z1 = np.moveaxis(np.asarray(q), -1, 0)
    w2, x2, y2, z2 = np.moveaxis(np.asarray(r), -1, 0)
    return np.stack(
        (
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ),
        axis=-1,
    )


def qinv(q: np.ndarray) -> np.ndarray:
    """Inverse of unit quaternions (the conjugate)."""
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors (..., 3) by unit quaternions (..., 4) (broadcast): v + 2 (w u×v + u×(u×v))."""
    q = np.asarray(q)
    u = q[..., 1:]
    uv = np.cross(u, v)
    return v + 2.0 * (q[..., :1] * uv + np.cross(u, uv))


def qslerp(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    """Shortest-arc spherical interpolation between two unit quaternions (w in [0, 1])."""
    dot = float(np.dot(a, b))
    if dot < 0.0:
        b, dot = -b, -dot
    if dot > 0.9995:  # nearly equal: normalised lerp is exact enough and avoids 0/0
        q = a + w * (b - a)
    else:
        theta = math.acos(min(1.0, dot))
        q = (math.sin((1 - w) * theta) * a + math.sin(w * theta) * b) / math.sin(theta)
    return q / np.linalg.norm(q)


def rotation_vector(q: np.ndarray) -> np.ndarray:
    """The rotation vector [rad] (axis times angle) of one unit quaternion, on the short arc."""
    q = q if q[0] >= 0 else -q
    s = float(np.linalg.norm(q[1:]))
    return np.zeros(3) if s < 1e-12 else q[1:] * (2.0 * math.atan2(s, q[0]) / s)


def quat_about_z(angle: float) -> np.ndarray:
    """Rotation by ``angle`` [rad] about +Z."""
    return np.array([math.cos(angle / 2), 0.0, 0.0, math.sin(angle / 2)])


def yaw_of(quat_wxyz: np.ndarray) -> float:
    """Heading [rad] about +Z: the angle of the body's x axis projected on the floor."""
    w, x, y, z = (float(v) for v in quat_wxyz)
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
