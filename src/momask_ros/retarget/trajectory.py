"""A robot joint trajectory at the control rate, and the cubic splines that sample it (Hermite pieces;
the retargeter's are those of the C2 B-spline over its keyframes, `bspline_knots`).

Why the velocity guarantee holds for the retargeter's output (`momask_ros.retarget.retargeter`): a cubic Hermite
piece whose slopes and secant are all bounded by s has a derivative bounded by 2 s everywhere
(|a(u)| + |b(u)| + c(u) <= 2 for the Hermite derivative basis). Positions are clipped to limits after
interpolation (velocity set to 0 where the clip is active, as the clipped curve is flat there).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- spline


def hermite(t0: float, h: float, p0, p1, m0, m1, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cubic Hermite value and derivative on [t0, t0 + h] for query times `t` (broadcast over columns)."""
    u = ((t - t0) / h)[:, None]
    u2, u3 = u * u, u * u * u
    pos = (2 * u3 - 3 * u2 + 1) * p0 + (u3 - 2 * u2 + u) * h * m0 + (-2 * u3 + 3 * u2) * p1 + (u3 - u2) * h * m1
    vel = ((6 * u2 - 6 * u) * p0 + (6 * u2 - 6 * u) * -p1) / h + (3 * u2 - 4 * u + 1) * m0 + (3 * u2 - 2 * u) * m1
    return pos, vel


def hermite_max_speed(h: float, p0, p1, m0, m1) -> np.ndarray:
    """Exact max |derivative| of each column of a cubic Hermite piece (the derivative is a quadratic)."""
    delta = (p1 - p0) / h
    a = 3 * (m0 + m1 - 2 * delta)          # derivative: a u^2 + b u + c, u in [0, 1]
    b = 2 * (3 * delta - 2 * m0 - m1)
    best = np.maximum(np.abs(m0), np.abs(m1))
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(np.abs(a) > 1e-12, -b / (2 * a), -1.0)
    inside = (u > 0) & (u < 1)
    vertex = np.abs(a * u * u + b * u + m0)
    return np.where(inside, np.maximum(best, vertex), best)


# ----------------------------------------------------------------------------------------------- output


@dataclass
class RobotTrajectory:
    """A joint trajectory at the control rate plus the floating-base pose.

    Attributes:
        joint_names: driven joints, column order of `positions` / `velocities`.
        times_s: (N,) sample times [s] from the start of the motion.
        positions: (N, nj) [rad] (or [m] for slide joints), always within `position_limits`.
        velocities: (N, nj) derivative of the interpolating spline [rad/s], within `velocity_limits`.
        base_position: (N, 3) floating-base position in the world (Z up) [m].
        base_quat_wxyz: (N, 4) floating-base orientation, unit quaternion w, x, y, z.
        keypoint_error_m: (K,) per input frame covered, mean distance [m] between the robot's keypoints
            (forward kinematics) and the scaled human targets.
        max_penetration_m: deepest foot point below the floor over the samples [m] (0 = none).
        position_limits: (nj, 2) limits the samples respect, or None.
        velocity_limits: (nj,) limits the velocities respect, or None.
        foot_contacts: (N, 2) bool, left / right foot in contact as the retargeter detected it (the
            nearest input frame), or (0, 2) when unknown; the physical checks use it.
    """

    joint_names: tuple[str, ...]
    times_s: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    base_position: np.ndarray
    base_quat_wxyz: np.ndarray
    keypoint_error_m: np.ndarray = field(default_factory=lambda: np.zeros(0))
    max_penetration_m: float = 0.0
    position_limits: np.ndarray | None = None
    velocity_limits: np.ndarray | None = None
    foot_contacts: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), bool))

    def __len__(self) -> int:
        return len(self.times_s)

    @property
    def duration_s(self) -> float:
        """Time of the last sample minus the first (0 for fewer than two samples)."""
        return float(self.times_s[-1] - self.times_s[0]) if len(self.times_s) > 1 else 0.0

    @classmethod
    def empty(cls, joint_names: tuple[str, ...], **limits) -> "RobotTrajectory":
        nj = len(joint_names)
        return cls(tuple(joint_names), np.zeros(0), np.zeros((0, nj)), np.zeros((0, nj)), np.zeros((0, 3)),
                   np.zeros((0, 4)), **limits)

    @classmethod
    def concatenate(cls, parts: "list[RobotTrajectory]") -> "RobotTrajectory":
        """Join consecutive chunks (e.g. from `RetargetStream`) into one trajectory."""
        if not parts:
            raise ValueError("concatenate needs at least one trajectory")
        names = parts[0].joint_names
        for p in parts:
            if p.joint_names != names:
                raise ValueError(f"joint names differ between chunks: {p.joint_names} vs {names}")
        return cls(
            names, np.concatenate([p.times_s for p in parts]), np.concatenate([p.positions for p in parts]),
            np.concatenate([p.velocities for p in parts]), np.concatenate([p.base_position for p in parts]),
            np.concatenate([p.base_quat_wxyz for p in parts]),
            np.concatenate([p.keypoint_error_m for p in parts]), max(p.max_penetration_m for p in parts),
            parts[0].position_limits, parts[0].velocity_limits,
            np.concatenate([p.foot_contacts for p in parts]) if all(len(p.foot_contacts) == len(p) for p in parts)
            else np.zeros((0, 2), bool))


# ----------------------------------------------------------------------------------------------- spline


def knot_slopes(times: np.ndarray | float, values: np.ndarray) -> np.ndarray:
    """Centred-difference slopes (one-sided at the ends): local, so chunked and batch runs agree.

    `times` is the knot times, or the uniform spacing [s].
    """
    if len(values) < 2:
        return np.zeros_like(values)
    return np.gradient(values, times, axis=0, edge_order=1)


def bspline_knots(dt: float, control: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hermite knot values and slopes of the uniform cubic B-spline over ``control`` points (spacing ``dt``).

    Why: a Hermite spline through the points with centred slopes (Catmull-Rom) is only C1, its
    acceleration jumps at every knot, and those jumps are the tallest acceleration and jerk peaks of a
    retargeted motion. The B-spline over the same points is C2 and, piece for piece, the cubic with
    knot values (P[k-1] + 4 P[k] + P[k+1]) / 6 and slopes (P[k+1] - P[k-1]) / (2 dt): the same look-ahead
    and the same Hermite pieces, so limits, velocity bounds and knot insertion work on it unchanged. A
    value is a convex combination of points (inside any box that holds them) and each secant a convex
    combination of the points' steps (never steeper than the steepest step).

    The first and last points are kept exactly (a mirrored ghost point beyond each: value P, one-sided
    slope), as a trajectory's own ends must be; where the points are a window of a longer trajectory,
    its first and last entries are therefore not the B-spline's and must not be used.
    """
    p = np.asarray(control, float)
    if len(p) < 2:
        return p.copy(), np.zeros_like(p)
    prev = np.concatenate([2 * p[:1] - p[1:2], p[:-1]])
    nxt = np.concatenate([p[1:], 2 * p[-1:] - p[-2:-1]])
    values = (prev + 4 * p + nxt) / 6.0
    slopes = (nxt - prev) / (2.0 * dt)
    return values, slopes


def slerp_wxyz(times: np.ndarray, quats_wxyz: np.ndarray, query: np.ndarray) -> np.ndarray:
    if len(times) == 1:
        return np.repeat(quats_wxyz[:1], len(query), axis=0)
    rots = Rotation.from_quat(quats_wxyz[:, [1, 2, 3, 0]])
    out = Slerp(times, rots)(np.clip(query, times[0], times[-1])).as_quat()[:, [3, 0, 1, 2]]
    return out * np.where(out[:, :1] < 0, -1.0, 1.0)


def sample_times(t_start: float, t_end: float, rate_hz: float) -> np.ndarray:
    """Grid t_start + i / rate up to t_end, with t_end itself appended when off the grid."""
    n = int(math.floor((t_end - t_start) * rate_hz + 1e-9))
    times = t_start + np.arange(n + 1) / rate_hz
    if t_end - times[-1] > 1e-9:
        times = np.append(times, t_end)
    return times


def resample(traj: RobotTrajectory, rate_hz: float) -> RobotTrajectory:
    """Resample a trajectory to `rate_hz` with cubic Hermite interpolation through its own samples.

    The first and last sample times are kept. The trajectory's velocities are the Hermite slopes, so a
    trajectory is reproduced at its own sample times. When the trajectory carries limits, positions are
    clipped to them and, should an interpolated piece exceed a velocity limit, time is stretched uniformly
    (time-scaling) until it does not: never a jump.

    Raises:
        ValueError: non-positive rate, or an empty trajectory.
    """
    if not (rate_hz > 0 and math.isfinite(rate_hz)):
        raise ValueError(f"rate_hz must be a positive number, got {rate_hz!r}")
    if len(traj) == 0:
        raise ValueError("cannot resample an empty trajectory")
    t = traj.times_s
    if len(t) == 1:
        return replace(traj)
    q, v = traj.positions, traj.velocities
    stretch = 1.0
    if traj.velocity_limits is not None:
        peak = max(float(np.max(hermite_max_speed(t[k + 1] - t[k], q[k], q[k + 1], v[k], v[k + 1])
                                / traj.velocity_limits)) for k in range(len(t) - 1))
        if peak > 1.0:
            stretch = peak * (1 + 1e-9)
            logger.warning("resample: interpolation would exceed a velocity limit by %.3g x; "
                           "stretching time by that factor", peak)
    new_t = sample_times(t[0], t[0] + (t[-1] - t[0]) * stretch, rate_hz)
    src_t = t[0] + (new_t - t[0]) / stretch
    src_t[-1] = t[-1]
    piece = np.clip(np.searchsorted(t, src_t, side="right") - 1, 0, len(t) - 2)
    pos = np.empty((len(new_t), q.shape[1]))
    vel = np.empty_like(pos)
    base = np.empty((len(new_t), 3))
    base_slopes = knot_slopes(t, traj.base_position)
    for k in np.unique(piece):
        sel = piece == k
        h = t[k + 1] - t[k]
        pos[sel], vel[sel] = hermite(t[k], h, q[k], q[k + 1], v[k], v[k + 1], src_t[sel])
        base[sel], _ = hermite(t[k], h, traj.base_position[k], traj.base_position[k + 1],
                                base_slopes[k], base_slopes[k + 1], src_t[sel])
    vel /= stretch
    if traj.position_limits is not None:
        pos, vel = clip_to_limits(pos, vel, traj.position_limits)
    contacts = traj.foot_contacts
    if len(contacts) == len(t):  # nearest original sample
        contacts = contacts[np.clip(np.searchsorted(t, src_t), 0, len(t) - 1)]
    return replace(traj, times_s=new_t, positions=pos, velocities=vel, base_position=base, foot_contacts=contacts,
                   base_quat_wxyz=slerp_wxyz(t, traj.base_quat_wxyz, src_t))


def clip_to_limits(pos: np.ndarray, vel: np.ndarray, limits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    clipped = np.clip(pos, limits[:, 0], limits[:, 1])
    vel = np.where(clipped != pos, 0.0, vel)  # the clipped curve is flat where the clip is active
    return clipped, vel
