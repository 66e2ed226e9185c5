"""Reference conditioning: turn any robot reference motion into what a tracker can follow well.

Where tracking quality comes from (design/tracker.md; each step measured with benchmarks/bench_tracker.py
on the demo model's skills): start from and return to the tracker's standing pose with C2-smooth ramps;
base velocities as exact derivatives of a smoothing spline (no moving-average lag, no finite-difference
spikes); a motion faster than the robot can walk is slowed down instead of sent; turning faster than the
robot can is limited (`base_path`); sections no robot pose matches (a flip) are bridged (`feasibility`);
the arms' swing is scaled about the standing pose; reference roll/pitch and joints stay within what the
robot, and the human motions its policy learnt from, do. The report says what was changed.

Timeline of a `ConditionedReference` (t [s] from its start): blend from standing to the first frame
(`blend_in_s`, motion frozen) -> playback whose speed eases 0 -> 1/stretch -> 0 (`ease_s` each end) ->
blend from the last frame back to standing (`blend_out_s`) -> standing forever. The component does not
care how the reference was produced (retargeting, mocap, a file)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.interpolate import make_interp_spline

from .base_path import BasePath
from .feasibility import SkippedSection, bridge_impossible
from .observation import mimic_vector
from .rotations import body_rate_z_from_rpy_rates, quat_wxyz_to_rpy, rpy_to_matrix, rpy_to_quat_wxyz
from .spec import TrackerError, TrackerSpec, check_reference_joints

_BASE = 6  # x, y, z, roll, pitch, yaw (unwrapped) in the motion signal


def smootherstep(x):
    """Quintic ramp 0 -> 1 on [0, 1] with zero 1st and 2nd derivatives at both ends (C2)."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6.0 * x - 15.0) + 10.0)


def smootherstep_rate(x):
    """d/dx smootherstep."""
    x = np.clip(x, 0.0, 1.0)
    return 30.0 * x * x * (x - 1.0) ** 2


def smootherstep_integral(x):
    """Integral of smootherstep from 0 to x (x in [0, 1]); equals 1/2 at x = 1."""
    x = np.clip(x, 0.0, 1.0)
    return x ** 4 * (x * (x - 3.0) + 2.5)


def reorder_joints(joint_pos_rad: np.ndarray, from_names: Sequence[str], to_names: Sequence[str]) -> np.ndarray:
    """Columns of (N, len(from_names)) joint positions rearranged into `to_names` order.

    Raises TrackerError naming the joints that `to_names` needs but `from_names` lacks, or names that are
    not the tracker's (a reference with extra joints is likely for another robot)."""
    from_names, to_names = list(from_names), list(to_names)
    joint_pos_rad = np.asarray(joint_pos_rad, dtype=np.float64)
    if joint_pos_rad.shape[-1] != len(from_names):
        raise TrackerError(f"reference has {joint_pos_rad.shape[-1]} joint columns but {len(from_names)} names")
    missing = [j for j in to_names if j not in from_names]
    unknown = [j for j in from_names if j not in to_names]
    if missing or unknown:
        raise TrackerError(f"reference joints do not match the tracker: missing {missing}, unknown {unknown}")
    return joint_pos_rad[..., [from_names.index(j) for j in to_names]]


def reference_joint_ranges(spec: TrackerSpec, joint_range_rad: np.ndarray | None) -> np.ndarray | None:
    """(J, 2) ranges reference joints are clipped into: the robot's (hardware, `joint_range_rad`) within the
    spec's reference ranges (what the policy's human motions do); None when neither is given."""
    ranges, ref = joint_range_rad, spec.reference_joint_range_rad
    if ref is None or ranges is None:
        return ref if ranges is None else np.asarray(ranges, dtype=np.float64)
    ranges = np.asarray(ranges, dtype=np.float64)
    return np.column_stack([np.maximum(ranges[:, 0], ref[:, 0]), np.minimum(ranges[:, 1], ref[:, 1])])


@dataclass(frozen=True, eq=False)
class RobotReference:
    """A reference motion for the robot, world frame Z-up, base = pelvis.

    times_s (N,) increasing; base_pos_world (N, 3) [m]; base_quat_wxyz (N, 4); joint_pos_rad (N, J) in
    the tracker's joint order (use `reorder_joints`); joint_names, when given, are checked against it."""

    times_s: np.ndarray
    base_pos_world: np.ndarray
    base_quat_wxyz: np.ndarray
    joint_pos_rad: np.ndarray
    joint_names: tuple[str, ...] | None = None

    def __post_init__(self):
        t = np.asarray(self.times_s, dtype=np.float64)
        n = t.shape[0] if t.ndim == 1 else -1
        if n < 2 or np.any(np.diff(t) <= 0):
            raise TrackerError(f"reference times must be 1-D, strictly increasing, >= 2 samples; got shape {t.shape}")
        for name, width in (("base_pos_world", 3), ("base_quat_wxyz", 4), ("joint_pos_rad", None)):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.ndim != 2 or value.shape[0] != n or (width and value.shape[1] != width):
                raise TrackerError(f"reference {name} has shape {value.shape}, expected ({n}, {width or 'J'})")
            if not np.all(np.isfinite(value)):
                raise TrackerError(f"reference {name} has non-finite values")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "times_s", t)
        if self.joint_names is not None and len(self.joint_names) != self.joint_pos_rad.shape[1]:
            raise TrackerError(f"reference has {self.joint_pos_rad.shape[1]} joint columns "
                               f"but {len(self.joint_names)} joint names")

    @property
    def duration_s(self) -> float:
        return float(self.times_s[-1] - self.times_s[0])

    @classmethod
    def from_trajectory(cls, trajectory, joint_names: Sequence[str]) -> "RobotReference":
        """A retargeted `momask_ros.retarget.trajectory.RobotTrajectory` (what the node plays) as a reference
        in the tracker's joint order `joint_names` (raises TrackerError when the joints differ)."""
        joints = reorder_joints(trajectory.positions, trajectory.joint_names, joint_names)
        return cls(np.asarray(trajectory.times_s, dtype=np.float64), trajectory.base_position,
                   trajectory.base_quat_wxyz, joints, joint_names=tuple(joint_names))


@dataclass(frozen=True, eq=False)
class ReferenceSample:
    """The conditioned reference at one time: the policy's mimic vector and the full pose it came from."""

    t_s: float
    phase: str  # "blend_in", "motion", "blend_out" or "standing"
    mimic: np.ndarray  # (6 + J,)
    base_pos_world: np.ndarray  # (3,) [m]
    base_quat_wxyz: np.ndarray  # (4,)
    base_rpy_rad: np.ndarray  # (3,)
    base_lin_vel_world: np.ndarray  # (3,) [m/s]
    base_lin_vel_xy_root: np.ndarray  # (2,) [m/s]
    yaw_rate_root_rad_s: float
    joint_pos_rad: np.ndarray  # (J,)


@dataclass(frozen=True)
class ConditioningReport:
    """What conditioning changed, for a status line: slowing down and clipping are not silent."""

    time_stretch: float  # >= 1: the motion plays this many times slower
    peak_base_speed_mps: float  # of the reference as given
    peak_tilt_rad: float  # largest |roll| or |pitch| of the reference as given
    tilt_clipped: bool
    clipped_joints: tuple[str, ...] = field(default_factory=tuple)
    peak_yaw_rate_rad_s: float = 0.0  # largest |yaw rate| as played (after slowing), before the limit
    yaw_rate_limit_rad_s: float = np.inf
    skipped: tuple[SkippedSection, ...] = ()  # sections beyond the robot, bridged (original motion times)
    scaled_joints: tuple[str, ...] = ()  # joints whose swing about the standing pose was scaled down
    min_joint_scale: float = 1.0

    @property
    def skipped_s(self) -> float:
        return float(sum(s.end_s - s.start_s for s in self.skipped))

    @property
    def slowed(self) -> bool:
        """Played noticeably slower than given (a stretch within 0.5 % is not worth a note)."""
        return self.time_stretch > 1.005

    @property
    def yaw_rate_limited(self) -> bool:
        return self.peak_yaw_rate_rad_s > self.yaw_rate_limit_rad_s

    def summary(self) -> str:
        notes = []
        if self.slowed:
            notes.append(f"slowed {self.time_stretch:.2f}x (reference base speed {self.peak_base_speed_mps:.2f} m/s)")
        if self.skipped:
            spans = ", ".join(f"{s.start_s:.1f}-{s.end_s:.1f} s: {s.reason}" for s in self.skipped)
            notes.append(f"skipped {self.skipped_s:.1f} s beyond the robot ({spans})")
        if self.yaw_rate_limited:
            notes.append(f"turning limited to {self.yaw_rate_limit_rad_s:.1f} rad/s (reference turned at "
                         f"{self.peak_yaw_rate_rad_s:.1f} rad/s)")
        if self.tilt_clipped:
            notes.append(f"roll/pitch clipped (reference reached {self.peak_tilt_rad:.2f} rad)")
        if self.scaled_joints:
            notes.append(f"swing of {len(self.scaled_joints)} joints scaled to {self.min_joint_scale:.0%}")
        if self.clipped_joints:
            notes.append(f"joints clipped to range: {', '.join(self.clipped_joints)}")
        return "; ".join(notes) if notes else "reference used as given"


@dataclass(frozen=True)
class _Stop:
    """From t_s on, playback decelerates to rest over ease_s, then the weight ramps to standing."""

    t_s: float
    tau_s: float
    rate: float
    weight: float
    ease_s: float


class ConditionedReference:
    """A reference that can be sampled at any time t [s] from its start (see the module docstring).

    `stop(t)` and `reanchor(t, ...)` change the object in place: it is owned by one controller."""

    def __init__(self, reference: RobotReference, *, standing_pose_rad: np.ndarray, standing_height_m: float,
                 joint_range_rad: np.ndarray | None = None, joint_names: Sequence[str] | None = None,
                 max_base_speed_mps: float = np.inf, max_tilt_rad: float = np.pi / 2, blend_in_s: float = 1.0,
                 blend_out_s: float = 1.0, ease_s: float = 0.5, velocity_cutoff_hz: float = 6.0,
                 max_yaw_rate_rad_s: float = np.inf, skip_tilt_rad: float = np.inf,
                 skip_outside_rad: np.ndarray | None = None, joint_scale: np.ndarray | None = None):
        q_stand = np.asarray(standing_pose_rad, dtype=np.float64)
        n_joints = q_stand.size
        if reference.joint_pos_rad.shape[1] != n_joints:
            raise TrackerError(f"reference has {reference.joint_pos_rad.shape[1]} joints, tracker has {n_joints}")
        if min(blend_in_s, blend_out_s, ease_s) < 0 or velocity_cutoff_hz <= 0 or max_base_speed_mps <= 0:
            raise TrackerError("blend and ease times must be >= 0, cutoff and speed cap > 0")
        names = tuple(joint_names) if joint_names is not None else tuple(f"joint_{i}" for i in range(n_joints))
        feasible = bridge_impossible(reference.times_s - reference.times_s[0], reference.base_pos_world,
                                     reference.base_quat_wxyz, reference.joint_pos_rad, max_tilt_rad=skip_tilt_rad,
                                     joint_range_rad=skip_outside_rad, joint_names=names)
        t = feasible.times_s
        self._original_time = feasible.original_time_s
        self._feasible_time = t
        rpy = quat_wxyz_to_rpy(feasible.base_quat_wxyz)
        rpy[:, 2] = np.unwrap(rpy[:, 2])
        peak_tilt = float(np.abs(rpy[:, :2]).max())
        rpy[:, :2] = np.clip(rpy[:, :2], -max_tilt_rad, max_tilt_rad)
        joints = feasible.joint_pos_rad
        scale = np.ones(n_joints) if joint_scale is None else np.asarray(joint_scale, dtype=np.float64)
        if scale.shape != (n_joints,) or np.any(scale < 0):
            raise TrackerError(f"joint_scale must be {n_joints} values >= 0, got shape {scale.shape}")
        joints = q_stand + scale * (joints - q_stand)
        clipped: tuple[str, ...] = ()
        if joint_range_rad is not None:
            low, high = np.asarray(joint_range_rad, dtype=np.float64).T
            outside = np.any((joints < low - 1e-9) | (joints > high + 1e-9), axis=0)
            clipped = tuple(n for n, o in zip(names, outside) if o)
            joints = np.clip(joints, low, high)
            self._joint_low, self._joint_high = low, high
        else:
            self._joint_low, self._joint_high = np.full(n_joints, -np.inf), np.full(n_joints, np.inf)
        base = BasePath.fit(t, np.concatenate([feasible.base_pos_world, rpy], axis=1), cutoff_hz=velocity_cutoff_hz)
        peak_speed = base.peak_speed_mps()
        stretch = max(1.0, peak_speed / max_base_speed_mps)
        peak_yaw_rate = base.peak_yaw_rate_rad_s() / stretch
        if peak_yaw_rate > max_yaw_rate_rad_s:
            base = base.with_yaw_rate_limit(max_yaw_rate_rad_s, rate_scale=1.0 / stretch)
        self._base = base
        self._joint_spline = make_interp_spline(t, joints, k=min(3, t.size - 1))
        self._joint_rate = self._joint_spline.derivative()

        self.report = ConditioningReport(time_stretch=stretch, peak_base_speed_mps=peak_speed,
                                         peak_tilt_rad=peak_tilt, tilt_clipped=peak_tilt > max_tilt_rad,
                                         clipped_joints=clipped, peak_yaw_rate_rad_s=peak_yaw_rate,
                                         yaw_rate_limit_rad_s=float(max_yaw_rate_rad_s), skipped=feasible.skipped,
                                         scaled_joints=tuple(n for n, k in zip(names, scale) if k != 1.0),
                                         min_joint_scale=float(scale.min()))
        self._q_stand = q_stand
        self._height = float(standing_height_m)
        self._max_tilt = float(max_tilt_rad)
        self._motion_s = float(t[-1])
        self._rate = 1.0 / stretch
        self._blend_in = float(blend_in_s)
        self._blend_out = float(blend_out_s)
        self._ease = min(float(ease_s), self._motion_s * stretch)
        self._play_start = self._blend_in
        self._yaw_offset = 0.0
        self._offset_xy = np.zeros(2)
        tau_natural = self._motion_s - self._rate * self._ease / 2
        self._stop = _Stop(self._play_start + self._motion_s * stretch, tau_natural, self._rate, 1.0, self._ease)
        self._anchor_in = self._standing_anchor(0.0)
        self._anchor_out = self._standing_anchor(self._motion_s)

    @classmethod
    def from_spec(cls, reference: RobotReference, spec: TrackerSpec,
                  joint_range_rad: np.ndarray | None = None) -> "ConditionedReference":
        """Conditioning with the spec's standing pose, limits and timings; joint ranges: the bundle's (the
        robot's hardware) within the spec's reference ranges."""
        if reference.joint_names is not None:
            check_reference_joints(spec, reference.joint_names)
        return cls(reference, standing_pose_rad=spec.default_pose_rad, standing_height_m=spec.standing_height_m,
                   joint_range_rad=reference_joint_ranges(spec, joint_range_rad), joint_names=spec.joint_names,
                   max_base_speed_mps=spec.max_base_speed_mps, max_tilt_rad=spec.max_reference_tilt_rad,
                   blend_in_s=spec.blend_in_s, blend_out_s=spec.blend_out_s, ease_s=spec.ease_s,
                   velocity_cutoff_hz=spec.velocity_cutoff_hz, max_yaw_rate_rad_s=spec.max_reference_yaw_rate_rad_s,
                   skip_tilt_rad=spec.skip_tilt_rad, skip_outside_rad=spec.skip_joint_range_rad,
                   joint_scale=spec.reference_joint_scale)

    def _standing_anchor(self, tau: float) -> np.ndarray:
        """Standing pose at the motion's xy and heading at motion time tau: [x, y, z, r, p, yaw, q...]."""
        m = self._base(tau)
        return np.concatenate([[m[0], m[1], self._height, 0.0, 0.0, m[5]], self._q_stand])

    # ---- time warp and blend weight -------------------------------------------------------------

    def _before_stop(self, t: float) -> tuple[float, float, float, float]:
        """(tau, dtau/dt, weight, dweight/dt) on the undisturbed start schedule."""
        if t < self._blend_in:
            x = t / self._blend_in
            return 0.0, 0.0, float(smootherstep(x)), float(smootherstep_rate(x)) / self._blend_in
        t_play = t - self._play_start
        if self._ease > 0 and t_play < self._ease:
            x = t_play / self._ease
            return (self._rate * self._ease * float(smootherstep_integral(x)),
                    self._rate * float(smootherstep(x)), 1.0, 0.0)
        return self._rate * (self._ease / 2 + t_play - self._ease), self._rate, 1.0, 0.0

    def _warp(self, t: float) -> tuple[float, float, float, float, bool]:
        """(tau, dtau/dt, weight, dweight/dt, stopping) at time t."""
        stop = self._stop
        if t < stop.t_s:
            return (*self._before_stop(t), False)
        tau, rate = stop.tau_s, 0.0
        if stop.ease_s > 0:
            x = min((t - stop.t_s) / stop.ease_s, 1.0)
            tau = stop.tau_s + stop.rate * stop.ease_s * (x - float(smootherstep_integral(x)))
            rate = stop.rate * (1.0 - float(smootherstep(x)))
        tau = min(tau, self._motion_s)
        t_w = t - stop.t_s - stop.ease_s
        if t_w <= 0:
            return tau, rate, stop.weight, 0.0, True
        if self._blend_out == 0:
            return tau, rate, 0.0, 0.0, True
        x = t_w / self._blend_out
        return (tau, rate, stop.weight * (1.0 - float(smootherstep(x))),
                -stop.weight * float(smootherstep_rate(x)) / self._blend_out, True)

    # ---- public ----------------------------------------------------------------------------------

    @property
    def end_s(self) -> float:
        """Time from which the reference is standing still."""
        return self._stop.t_s + self._stop.ease_s + self._blend_out

    @property
    def time_stretch(self) -> float:
        return self.report.time_stretch

    @property
    def play_start_s(self) -> float:
        """Time at which the motion itself starts playing (after the blend from standing)."""
        return self._play_start

    def motion_time_s(self, t_s: float) -> float:
        """Time in the original reference (from its first sample) that the conditioned time t plays (a
        bridge over a skipped section maps onto the section)."""
        return float(np.interp(self._warp(float(t_s))[0], self._feasible_time, self._original_time))

    def stop(self, t_s: float) -> None:
        """Blend to standing from wherever the reference is at t: decelerate playback, then ramp out."""
        t_s = float(t_s)
        if t_s >= self._stop.t_s:
            return  # already stopping
        tau, rate, weight, _ = self._before_stop(max(t_s, 0.0))
        ease = 0.0
        if rate > 0:
            ease = min(self._ease, 2.0 * (self._motion_s - tau) / rate) if self._ease > 0 else 0.0
        self._stop = _Stop(max(t_s, 0.0), tau, rate, weight, max(ease, 0.0))
        self._anchor_out = self._standing_anchor(tau + rate * ease / 2)

    def reanchor(self, t_s: float, base_pos_world: np.ndarray, base_quat_wxyz: np.ndarray) -> None:
        """Move the reference rigidly in the ground plane so that, at time t, its base xy and heading are
        the robot's measured ones (for continuations: the next motion starts where the robot is)."""
        sample = self.sample(t_s)
        yaw_measured = float(quat_wxyz_to_rpy(base_quat_wxyz)[2])
        delta = yaw_measured - float(sample.base_rpy_rad[2])
        c, s = np.cos(delta), np.sin(delta)
        rot = np.array([[c, -s], [s, c]])
        # new map: x -> R(delta) (old(x) - p_ref) + p_measured, with old(x) = R(a) x + offset
        self._offset_xy = rot @ (self._offset_xy - sample.base_pos_world[:2]) + np.asarray(base_pos_world)[:2]
        self._yaw_offset += delta

    def sample(self, t_s: float) -> ReferenceSample:
        """The conditioned reference at time t [s] (any t; before 0 is standing at the start)."""
        t = float(t_s)
        tau, tau_rate, w, w_rate, stopping = self._warp(max(t, 0.0))
        motion = np.concatenate([self._base(tau), self._joint_spline(tau)])
        motion_rate = np.concatenate([self._base.rate(tau), self._joint_rate(tau)]) * tau_rate
        if tau >= self._motion_s:
            motion_rate[:] = 0.0
        anchor = self._anchor_out if stopping else self._anchor_in
        value = (1.0 - w) * anchor + w * motion
        rate = w_rate * (motion - anchor) + w * motion_rate

        rpy = value[3:6].copy()
        rpy[:2] = np.clip(rpy[:2], -self._max_tilt, self._max_tilt)
        rpy[2] += self._yaw_offset
        c, s = np.cos(self._yaw_offset), np.sin(self._yaw_offset)
        rot = np.array([[c, -s], [s, c]])
        pos = np.array([*(rot @ value[:2] + self._offset_xy), value[2]])
        vel_world = np.array([*(rot @ rate[:2]), rate[2]])
        vel_root = rpy_to_matrix(rpy).T @ vel_world
        yaw_rate_root = float(body_rate_z_from_rpy_rates(rpy, rate[3:6]))
        joints = np.clip(value[_BASE:], self._joint_low, self._joint_high)
        mimic = mimic_vector(vel_root[:2], pos[2], rpy[:2], yaw_rate_root, joints)
        if t < self._blend_in and not stopping:
            phase = "blend_in"
        elif not stopping or (tau < self._motion_s and w >= 1.0 and tau_rate > 0):
            phase = "motion"
        elif w > 0.0:
            phase = "blend_out"
        else:
            phase = "standing"
        return ReferenceSample(t_s=t, phase=phase, mimic=mimic, base_pos_world=pos,
                               base_quat_wxyz=rpy_to_quat_wxyz(rpy), base_rpy_rad=rpy, base_lin_vel_world=vel_world,
                               base_lin_vel_xy_root=vel_root[:2], yaw_rate_root_rad_s=yaw_rate_root,
                               joint_pos_rad=joints)
