"""Reference conditioning for a reference that arrives as a stream (a ROS topic), one sample at a time.

`ConditionedReference` fits splines to a whole motion; a live stream has only what has arrived, so the
same conditioning is done causally here:

* samples are stamped and kept until `buffer_s` behind the last sampled time, so a stream published
  ahead of the robot's clock (a planner, a test, a burst after a stall) keeps its start (at most
  `max_samples`, the oldest dropped first); sampling at t interpolates between stamps and, past the
  newest, moves on with its velocities for at most `max_extrapolation_s` (about one DDS hop), then holds;
* base velocities come from the stream's twist when it carries one (no lag), else from differences of
  consecutive poses (half a period of lag);
* blend in from the tracker's standing pose when a motion begins (`begin`), back to standing when it ends
  (`end`, `stop`) or when the stream stalls for `stall_s` (a generator that died, a CPU too busy to
  publish; when the stream comes back before an `end`, it blends in again); a blend starts from the
  current weight, so a motion that begins while the last one blends out takes over smoothly;
* `reanchor` places the stream's path where the robot is (heading and ground position) for continuations:
  what the policy sees (root-frame velocities, height, roll, pitch, joints) does not change, the reported
  reference path does;
* within the robot's ability, as `ConditionedReference` does offline and with the same spec limits:
  horizontal speed capped (velocity scaled down: a stream cannot be slowed), turning rate softly limited
  (the same `soft_saturate`; the root-frame velocity the policy reads is kept, the reported heading and
  path turn at the limited rate), the arms' swing scaled about the standing pose, roll/pitch and joints clipped
  (the robot's ranges within the spec's reference ranges); `report` says what was changed since the
  last `begin`. Without these a streamed dance, spin or sneak fell that the offline conditioning keeps
  up (benchmarks/bench_rehearsal.py, stream);
* where no robot pose matches the stream (the spec's `skip_beyond`: base tilt, hip yaw; a flip, a
  leg wound up in a spin), the last pose that does settles to standing, still, until the stream comes
  back within reach, and it then blends onto the stream over `resume_s`: the causal form of the offline
  bridge (`feasibility`), which cannot look ahead to the landing: the robot plays the wind-up and stands.
"""
from __future__ import annotations

import bisect
import copy
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .base_path import soft_saturate
from .observation import mimic_vector
from .reference import ReferenceSample, reference_joint_ranges, smootherstep
from .rotations import quat_wxyz_to_rpy, rpy_to_matrix, rpy_to_quat_wxyz
from .spec import TrackerError, TrackerSpec

#: How far behind the robot's clock a live tracker follows a streamed reference (the tracker node's
#: default ``reference_delay``), so a sample a DDS hop late is still on time [s].
REFERENCE_DELAY_S = 0.1


@dataclass
class LiveReport:
    """What conditioning changed in the current motion (for the tracker's status)."""

    peak_speed_mps: float = 0.0  # of the stream as received
    speed_capped: bool = False
    peak_yaw_rate_rad_s: float = 0.0  # of the stream as received (blended)
    yaw_rate_limit_rad_s: float = np.inf
    tilt_clipped: bool = False
    clipped_joints: set[str] = field(default_factory=set)
    scaled_joints: set[str] = field(default_factory=set)  # whose swing about the standing pose was scaled
    min_joint_scale: float = 1.0
    held_s: float = 0.0  # time a pose was held because the stream was beyond the robot
    held_because: str = ""

    @property
    def yaw_rate_limited(self) -> bool:
        return self.peak_yaw_rate_rad_s > self.yaw_rate_limit_rad_s

    def notes(self) -> list[str]:
        notes = []
        if self.speed_capped:
            notes.append(f"speed capped (reference reached {self.peak_speed_mps:.2f} m/s)")
        if self.yaw_rate_limited:
            notes.append(f"turning limited to {self.yaw_rate_limit_rad_s:.1f} rad/s (reference turned at "
                         f"{self.peak_yaw_rate_rad_s:.1f} rad/s)")
        if self.scaled_joints:
            notes.append(f"swing of {len(self.scaled_joints)} joints scaled to {self.min_joint_scale:.0%}")
        if self.held_s > 0:
            notes.append(f"held a pose {self.held_s:.1f} s beyond the robot ({self.held_because})")
        if self.tilt_clipped:
            notes.append("roll/pitch clipped")
        if self.clipped_joints:
            notes.append(f"joints clipped to range: {', '.join(sorted(self.clipped_joints))}")
        return notes


@dataclass(frozen=True)
class _Ramp:
    """Blend weight from t0: smootherstep from w0 up to 1 (or down to 0) over duration_s."""

    t0: float
    w0: float
    up: bool
    duration_s: float

    def at(self, t: float) -> tuple[float, float]:
        """(weight, d weight / dt) at t."""
        if self.duration_s <= 0:
            return (1.0 if self.up else 0.0), 0.0
        x = min(max((t - self.t0) / self.duration_s, 0.0), 1.0)
        s, ds = float(smootherstep(x)), 30.0 * x * x * (x - 1.0) ** 2 / self.duration_s
        return (self.w0 + (1.0 - self.w0) * s, (1.0 - self.w0) * ds) if self.up else (self.w0 * (1.0 - s), -self.w0 * ds)


def blend_out_weight(since_s: float, blend_out_s: float) -> float:
    """The blend weight ``since_s`` into a blend-out from a motion to standing over ``blend_out_s``."""
    return _Ramp(0.0, 1.0, False, float(blend_out_s)).at(float(since_s))[0]


class LiveReference:
    """A streamed reference, sampled at any time t [s] on the stream's clock (module docstring).

    Owned by one controller thread; `push` samples as they arrive, `sample(t)` with t non-decreasing."""

    def __init__(self, *, standing_pose_rad: np.ndarray, standing_height_m: float, joint_names: Sequence[str],
                 joint_range_rad: np.ndarray | None = None, max_base_speed_mps: float = np.inf,
                 max_tilt_rad: float = np.pi / 2, max_yaw_rate_rad_s: float = np.inf,
                 joint_scale: np.ndarray | None = None, skip_tilt_rad: float = np.inf,
                 skip_outside_rad: np.ndarray | None = None, resume_s: float = 0.5, blend_in_s: float = 1.0,
                 blend_out_s: float = 1.0, stall_s: float = 0.5, max_extrapolation_s: float = 0.05,
                 buffer_s: float = 3.0, max_samples: int = 30_000):
        self._q_stand = np.asarray(standing_pose_rad, dtype=np.float64)
        self._names = tuple(joint_names)
        if self._q_stand.size != len(self._names):
            raise TrackerError(f"standing pose has {self._q_stand.size} joints, names {len(self._names)}")
        self._height = float(standing_height_m)
        low, high = (np.asarray(joint_range_rad, np.float64).T if joint_range_rad is not None
                     else (np.full(self._q_stand.size, -np.inf), np.full(self._q_stand.size, np.inf)))
        self._low, self._high = low, high
        scale = np.ones(self._q_stand.size) if joint_scale is None else np.asarray(joint_scale, dtype=np.float64)
        if scale.shape != self._q_stand.shape or np.any(scale < 0) or max_yaw_rate_rad_s <= 0:
            raise TrackerError(f"joint_scale must be {self._q_stand.size} values >= 0 and the yaw rate limit > 0")
        self._scale, self._scaled = scale, scale != 1.0
        self._max_speed, self._max_tilt = float(max_base_speed_mps), float(max_tilt_rad)
        self._max_yaw_rate = float(max_yaw_rate_rad_s)
        self._skip_tilt, self._resume_s = float(skip_tilt_rad), max(float(resume_s), 1e-6)
        unbounded = (np.full(self._q_stand.size, -np.inf), np.full(self._q_stand.size, np.inf))
        self._skip_low, self._skip_high = (np.asarray(skip_outside_rad, np.float64).T
                                           if skip_outside_rad is not None else unbounded)
        self._last_row: np.ndarray | None = None  # the last row sampled within reach
        self._held: tuple[float, np.ndarray] | None = None  # (since t, last row within reach) while beyond
        self._held_out: np.ndarray | None = None
        self._resume: tuple[float, np.ndarray] | None = None  # (from t, held row): blending back onto the stream
        self._blend_in, self._blend_out = float(blend_in_s), float(blend_out_s)
        self._stall, self._max_extra, self._buffer = float(stall_s), float(max_extrapolation_s), float(buffer_s)
        self._max_samples = int(max_samples)
        self._t: list[float] = []
        self._rows: list[np.ndarray] = []  # [x y z roll pitch yaw(unwrapped) | v_world(3) w_world(3) | q | qd]
        self._ramp = _Ramp(-np.inf, 0.0, False, 0.0)
        self._events: list[tuple[float, bool]] = []
        self._stalled = False  # blended out because the stream stopped, not because the motion ended
        self._yaw_offset, self._offset_xy = 0.0, np.zeros(2)
        # what the turning limit has taken off the heading, and the path it moved, since the last anchor
        self._yaw_lag, self._path_shift, self._shift_rate = 0.0, np.zeros(2), np.zeros(2)
        self._last_sample_s: float | None = None
        self.begins_s: float | None = None  # the last motion's begin (`begin`), for status and tests
        self._anchor_request: tuple[np.ndarray, np.ndarray] | None = None
        self.report = self._new_report()

    @classmethod
    def from_spec(cls, spec: TrackerSpec, joint_range_rad: np.ndarray | None = None, **kwargs) -> "LiveReference":
        """Conditioning with the spec's standing pose, blends and limits, as `ConditionedReference.from_spec`
        (joint ranges: the robot's, `joint_range_rad`, within the spec's); keyword arguments override."""
        limits = dict(max_base_speed_mps=spec.max_base_speed_mps, max_tilt_rad=spec.max_reference_tilt_rad,
                      max_yaw_rate_rad_s=spec.max_reference_yaw_rate_rad_s, joint_scale=spec.reference_joint_scale,
                      skip_tilt_rad=spec.skip_tilt_rad, skip_outside_rad=spec.skip_joint_range_rad,
                      resume_s=spec.ease_s, blend_in_s=spec.blend_in_s, blend_out_s=spec.blend_out_s)
        return cls(standing_pose_rad=spec.default_pose_rad, standing_height_m=spec.standing_height_m,
                   joint_names=spec.joint_names, joint_range_rad=reference_joint_ranges(spec, joint_range_rad),
                   **{**limits, **kwargs})

    def _new_report(self) -> LiveReport:
        return LiveReport(yaw_rate_limit_rad_s=self._max_yaw_rate,
                          min_joint_scale=float(self._scale.min()) if self._scaled.any() else 1.0)

    # ---- input ------------------------------------------------------------------------------------

    def push(self, t_s: float, base_pos_world: np.ndarray, base_quat_wxyz: np.ndarray, joint_pos_rad: np.ndarray,
             *, base_lin_vel_world: np.ndarray | None = None, base_ang_vel_world: np.ndarray | None = None,
             joint_vel_rad_s: np.ndarray | None = None) -> None:
        """One stream sample at stamp t_s (joints in the tracker's order); a repeated stamp replaces it.

        Raises TrackerError on wrong sizes or non-finite values (the sample is dropped)."""
        n = self._q_stand.size
        parts = [(base_pos_world, 3, "base position"), (base_quat_wxyz, 4, "base quaternion"),
                 (joint_pos_rad, n, "joint positions"), (base_lin_vel_world, 3, "base linear velocity"),
                 (base_ang_vel_world, 3, "base angular velocity"), (joint_vel_rad_s, n, "joint velocities")]
        values = []
        for value, size, what in parts:
            if value is None:
                values.append(np.full(size, np.nan))
                continue
            v = np.asarray(value, dtype=np.float64).reshape(-1)
            if v.shape != (size,) or not np.all(np.isfinite(v)):
                raise TrackerError(f"reference {what} needs {size} finite values, got {v.size}")
            values.append(v)
        pos, quat, q, v, w, qd = values
        rpy = quat_wxyz_to_rpy(quat)
        i = bisect.bisect_left(self._t, t_s)
        if i > 0:  # unwrap yaw against the sample before it
            prev = self._rows[i - 1][5]
            rpy[2] = prev + (rpy[2] - prev + np.pi) % (2 * np.pi) - np.pi
        row = np.concatenate([pos, rpy, v, w, q, qd])
        if i < len(self._t) and self._t[i] == t_s:
            self._rows[i] = row
        else:
            self._t.insert(i, float(t_s))
            self._rows.insert(i, row)
        self._prune()
        if self._stalled and t_s > self._ramp.t0:  # the stream is back: blend in again from this sample
            self._stalled = False
            self._schedule(t_s, True)

    def carried(self) -> dict:
        """What a follower of the same stream, going on from the last sampled time, needs to sample as this
        one would: the hold of a section beyond the robot and the blend back from it (times relative to
        that time). A rehearsal rehearses a stream span by span; the live tracker follows it as one."""
        t = self._last_sample_s if self._last_sample_s is not None else 0.0
        return copy.deepcopy({"held": _shifted(self._held, -t), "resume": _shifted(self._resume, -t),
                              "held_out": self._held_out, "last_row": self._last_row})

    def carry_on(self, carried: dict, t_s: float) -> None:
        """Go on from another follower's `carried` state, as at t_s on this one's clock."""
        carried = copy.deepcopy(carried)
        self._held, self._resume = _shifted(carried["held"], t_s), _shifted(carried["resume"], t_s)
        self._held_out, self._last_row = carried["held_out"], carried["last_row"]

    def _prune(self) -> None:
        """Drop what lies `buffer_s` behind the last sampled time (one sample before it stays to
        interpolate from), and the oldest beyond `max_samples`."""
        keep_from = -np.inf if self._last_sample_s is None else self._last_sample_s - self._buffer
        drop = max(bisect.bisect_left(self._t, keep_from) - 1, len(self._t) - self._max_samples, 0)
        if drop:
            del self._t[:drop], self._rows[:drop]

    def begin(self, t_s: float, *, from_weight: float | None = None) -> None:
        """A motion begins at t_s (may be ahead): blend in from the current weight (``from_weight``: from
        that weight, as a tracker whose blend-out was under way; a rehearsal starting mid-way)."""
        if from_weight is not None:
            self._ramp = _Ramp(float(t_s), min(max(float(from_weight), 0.0), 1.0), False, np.inf)
        self._schedule(t_s, True)
        self.begins_s = float(t_s)
        self.report = self._new_report()

    def end(self, t_s: float) -> None:
        """The motion ends (or is stopped) at t_s: blend back to standing."""
        self._stalled = False
        self._schedule(t_s, False)

    stop = end  # `Tracker.stop` calls reference.stop(t)

    def reanchor(self, base_pos_world: np.ndarray, base_quat_wxyz: np.ndarray) -> None:
        """Place the stream's path where the robot is, at the next `sample` time that the stream covers."""
        self._anchor_request = (np.asarray(base_pos_world, np.float64)[:2].copy(),
                                np.asarray(base_quat_wxyz, np.float64).copy())

    # ---- state ------------------------------------------------------------------------------------

    @property
    def newest_s(self) -> float | None:
        return self._t[-1] if self._t else None

    @property
    def oldest_s(self) -> float | None:
        return self._t[0] if self._t else None

    @property
    def samples(self) -> int:
        """How many stream samples are held (from `buffer_s` behind the last sampled time on)."""
        return len(self._t)

    def _schedule(self, t_s: float, up: bool) -> None:
        t = max(float(t_s), self._ramp.t0)
        bisect.insort(self._events, (t, up))

    def _advance(self, t: float) -> None:
        while self._events and self._events[0][0] <= t:
            t_e, up = self._events.pop(0)
            self._ramp = _Ramp(t_e, self._ramp.at(t_e)[0], up, self._blend_in if up else self._blend_out)
        if self._ramp.up and not self._events:
            stall_at = max(self._t[-1] if self._t else -np.inf, self._ramp.t0) + self._stall
            if t > stall_at:
                self._ramp = _Ramp(stall_at, self._ramp.at(stall_at)[0], False, self._blend_out)
                self._stalled = True

    def _motion(self, t: float) -> np.ndarray:
        """Interpolated row at t, velocity columns filled (stream twist, else pose differences)."""
        ts, rows = self._t, self._rows
        i = bisect.bisect_right(ts, t)
        if len(ts) == 1 or i == 0:
            row = rows[0].copy()
        elif i == len(ts):
            row = rows[-1].copy()
        else:
            a = (t - ts[i - 1]) / (ts[i] - ts[i - 1])
            row = (1 - a) * rows[i - 1] + a * rows[i]
        if np.isnan(row[6]) or np.isnan(row[9]):  # no twist: backward difference of the bracketing pair
            j = min(max(i, 1), len(ts) - 1)
            if j >= 1:
                rate = (rows[j][:6] - rows[j - 1][:6]) / (ts[j] - ts[j - 1])
                if np.isnan(row[6]):
                    row[6:9] = rate[:3]
                if np.isnan(row[9]):
                    row[9:12] = self._world_rate(row[3:6], rate[3:6])
            else:
                row[6:12] = np.where(np.isnan(row[6:12]), 0.0, row[6:12])
        n = self._q_stand.size
        qd = row[12 + n:]
        ahead = min(t - ts[-1], self._max_extra) if i == len(ts) else 0.0
        if ahead > 0:
            row[:3] += ahead * row[6:9]
            row[12:12 + n] += ahead * np.where(np.isnan(qd), 0.0, qd)
        return row

    def _within_reach(self, t: float, row: np.ndarray, dt: float) -> np.ndarray:
        """The row; while the stream is beyond the robot (base tilted past the skip tilt, a joint outside
        its skip range), the last pose within reach settling to standing over `blend_out_s`, still (a
        take-off pose held for seconds toppled the robot); back within reach, a blend onto the stream."""
        n = self._q_stand.size
        q = row[12:12 + n]
        tilt = float(np.arccos(np.clip(np.cos(row[3]) * np.cos(row[4]), -1.0, 1.0)))
        outside = np.flatnonzero((q < self._skip_low) | (q > self._skip_high))
        if tilt > self._skip_tilt or outside.size:
            if self._held is None:
                last = self._last_row if self._last_row is not None else row
                self._held = (t, last.copy())
            since, last = self._held
            stand = np.concatenate([last[:2], [self._height, 0.0, 0.0, last[5]], np.zeros(6), self._q_stand,
                                    np.zeros(n)])
            x = (t - since) / self._blend_out if self._blend_out > 0 else 1.0
            out = last + float(smootherstep(x)) * (stand - last)
            out[6:12], out[12 + n:] = 0.0, 0.0
            self._resume = None
            self.report.held_s += dt
            self.report.held_because = (f"base tilt {tilt:.2f} rad" if tilt > self._skip_tilt
                                        else f"{self._names[outside[0]]} at {q[outside[0]]:.2f} rad")
            self._held_out = out
            return out
        if self._held is not None:
            self._resume, self._held = (t, self._held_out), None
        out = row
        if self._resume is not None and t - self._resume[0] < self._resume_s:
            a, held = float(smootherstep((t - self._resume[0]) / self._resume_s)), self._resume[1]
            out = row.copy()
            out[:6] = held[:6] + a * (row[:6] - held[:6])
            out[12:12 + n] = held[12:12 + n] + a * (q - held[12:12 + n])
            out[6:12] = a * row[6:12]
        else:
            self._resume = None
        self._last_row = out  # what a hold would start from
        return out

    @staticmethod
    def _world_rate(rpy: np.ndarray, rpy_rate: np.ndarray) -> np.ndarray:
        """World angular velocity from Z-Y-X Euler angles and their rates."""
        roll, pitch, yaw = rpy
        dr, dp, dy = rpy_rate
        return np.array([dr * np.cos(pitch) * np.cos(yaw) - dp * np.sin(yaw),
                         dr * np.cos(pitch) * np.sin(yaw) + dp * np.cos(yaw),
                         dy - dr * np.sin(pitch)])

    def sample(self, t_s: float) -> ReferenceSample:
        """The conditioned reference at time t_s on the stream's clock."""
        t = float(t_s)
        self._advance(t)
        w, _ = self._ramp.at(t)
        n = self._q_stand.size
        if self._t:
            row = self._motion(t)
        else:
            row = np.concatenate([[0.0, 0.0, self._height], np.zeros(9), self._q_stand, np.zeros(n)])
        if self._anchor_request is not None and self._t and t >= self._t[0]:
            xy, quat = self._anchor_request
            self._yaw_offset = float(quat_wxyz_to_rpy(quat)[2]) - row[5]
            self._offset_xy = xy - self._rot(self._yaw_offset) @ row[:2]
            self._yaw_lag, self._path_shift, self._shift_rate = 0.0, np.zeros(2), np.zeros(2)
            self._anchor_request = None
        dt = 0.0 if self._last_sample_s is None else min(max(t - self._last_sample_s, 0.0), 0.1)
        self._last_sample_s = t
        self._prune()
        row = self._within_reach(t, row, dt if w > 0 else 0.0)
        vel_world = row[6:9].copy()
        speed = float(np.linalg.norm(vel_world[:2]))
        if w > 0:
            self.report.peak_speed_mps = max(self.report.peak_speed_mps, speed)
        if speed > self._max_speed:
            vel_world[:2] *= self._max_speed / speed
            self.report.speed_capped |= w > 0
        rp = np.clip(row[3:5], -self._max_tilt, self._max_tilt)
        scaled = self._q_stand + self._scale * (row[12:12 + n] - self._q_stand)
        q = np.clip(scaled, self._low, self._high)
        ang_world = w * row[9:12]
        turn = float(soft_saturate(ang_world[2], self._max_yaw_rate))
        if w > 0:
            self.report.tilt_clipped |= bool(np.any(rp != row[3:5]))
            self.report.clipped_joints |= {self._names[k] for k in np.flatnonzero(q != scaled)}
            swung = np.flatnonzero(self._scaled & (q != self._q_stand))
            self.report.scaled_joints |= {self._names[k] for k in swung}
            self.report.peak_yaw_rate_rad_s = max(self.report.peak_yaw_rate_rad_s, abs(float(ang_world[2])))
        rpy = np.array([w * rp[0], w * rp[1], row[5]])
        joints = (1.0 - w) * self._q_stand + w * q
        height = (1.0 - w) * self._height + w * row[2]
        frame = rpy_to_matrix(rpy).T  # the stream's heading: the root-frame velocity the policy reads is kept
        vel_root = frame @ (w * vel_world)
        ang_root = frame @ np.array([ang_world[0], ang_world[1], turn])
        mimic = mimic_vector(vel_root[:2], height, rpy[:2], float(ang_root[2]), joints)
        # the reported heading turns at the limited rate; the path follows the velocity under that heading
        self._yaw_lag += dt * (float(ang_world[2]) - turn)
        rot, rot_out = self._rot(self._yaw_offset), self._rot(self._yaw_offset - self._yaw_lag)
        shift_rate = (rot_out - rot) @ (w * vel_world[:2])
        self._path_shift += 0.5 * dt * (self._shift_rate + shift_rate)
        self._shift_rate = shift_rate
        rpy_out = rpy + np.array([0.0, 0.0, self._yaw_offset - self._yaw_lag])
        pos = np.array([*(rot @ row[:2] + self._offset_xy + self._path_shift), height])
        vel_out = np.array([*(rot_out @ (w * vel_world[:2])), w * vel_world[2]])
        if self._ramp.up:
            phase = "motion" if w >= 1.0 else "blend_in"
        else:
            phase = "blend_out" if w > 0.0 else "standing"
        return ReferenceSample(t_s=t, phase=phase, mimic=mimic, base_pos_world=pos,
                               base_quat_wxyz=rpy_to_quat_wxyz(rpy_out), base_rpy_rad=rpy_out,
                               base_lin_vel_world=vel_out, base_lin_vel_xy_root=vel_root[:2],
                               yaw_rate_root_rad_s=float(ang_root[2]), joint_pos_rad=joints)

    def weight(self, t_s: float) -> float:
        """Blend weight of the stream at t_s (0 standing, 1 the stream as conditioned)."""
        self._advance(float(t_s))
        return self._ramp.at(float(t_s))[0]

    @staticmethod
    def _rot(angle: float) -> np.ndarray:
        c, s = np.cos(angle), np.sin(angle)
        return np.array([[c, -s], [s, c]])


def _shifted(timed: tuple[float, np.ndarray] | None, dt: float) -> tuple[float, np.ndarray] | None:
    """A ``(time, row)`` state with its time moved by ``dt`` (None stays None)."""
    return None if timed is None else (timed[0] + dt, timed[1])
