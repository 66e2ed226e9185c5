"""`MotionClip`: the robot motion being played, filled chunk by chunk while the control loop reads it.

A clip is one continuous timeline. It starts with one motion and grows with every continuation
of it (a preempting or queued command, the next window of a long motion, the next segment of a
sequence). One writer (the retargeting worker) appends robot samples with their times; the reader
(the control loop) interpolates inside the samples already written: joint and base positions on the
cubic Hermite curve through the samples and their velocities, so a control tick that lands between
two samples (ticks jitter by milliseconds) reads the retargeter's smooth curve, not a polyline whose
kinks would show as acceleration and jerk noise; the base's twist is that curve's derivative and the
slerp's rate (`base_rates`), and `positions_at` reads the same curve on a whole time grid (the
JointTrajectory) without marking it played. A continuation replaces the
tail of the clip from its cut time on (`append(..., replace_from=...)`); the clip remembers how far
it has been read and refuses a replacement of anything already played (`SwitchTooLate`), so what
was published is never rewritten. Robot samples may come at any rate (the retargeter's control
rate); the human skeleton stays at the model's frame rate.

Under ``physical_checks: rehearse`` a clip also says how far it may be played (`verified_s`: what the
rehearsal has cleared; a continuation that replaces samples lowers it to its cut) and where its playback
is cut (`stop_at_s`, before a fall the rehearsal predicts). Other clips are playable to their end. The
clip keeps what the latest continuation replaced, until playback reaches its cut: a continuation the
rehearsal refuses gives it back (`restore`), so the motion it would have continued plays on as that
motion's own rehearsal cleared it.
"""
from __future__ import annotations

import dataclasses
import math
import threading

import numpy as np

from momask_model.motion.quaternion import qinv, qmul, qslerp, rotation_vector

from momask_ros.stream.commands import MotionCommand
from momask_ros.stream.state import JointSpace, PipelineError

__all__ = ["MotionClip", "SwitchTooLate"]


def _pieces(times: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For query times ``t``: the samples ``i``, ``j`` around each, the span between them and the
    fraction ``a`` in [0, 1] of the way (held at both ends)."""
    n = times.shape[0]
    i = np.clip(np.searchsorted(times, t, side="right") - 1, 0, max(n - 2, 0))
    j = np.minimum(i + 1, n - 1)
    span = times[j] - times[i]
    safe = np.where(span > 0, span, 1.0)
    a = np.where(span > 0, np.clip((t - times[i]) / safe, 0.0, 1.0), 0.0)
    return i, j, span, a


def _piece(times: np.ndarray, t: float) -> tuple[int, int, float, float]:
    """`_pieces` for one time, in plain floats (the control loop reads a few per tick)."""
    n = times.shape[0]
    i = min(max(int(np.searchsorted(times, t, side="right")) - 1, 0), max(n - 2, 0))
    j = min(i + 1, n - 1)
    span = float(times[j] - times[i])
    a = 0.0 if span <= 0 else min(max((t - float(times[i])) / span, 0.0), 1.0)
    return i, j, span, a


def _hermite(values: np.ndarray, slopes: np.ndarray, i, j, span, a) -> np.ndarray:
    """The cubic Hermite pieces through samples ``values`` with ``slopes``: at one fraction ``a`` of
    the span between samples ``i`` and ``j``, or at arrays of them (one row each)."""
    if isinstance(a, np.ndarray):
        a, span = a[:, None], span[:, None]
    a2, a3 = a * a, a * a * a
    return ((2 * a3 - 3 * a2 + 1) * values[i] + (-2 * a3 + 3 * a2) * values[j]
            + span * ((a3 - 2 * a2 + a) * slopes[i] + (a3 - a2) * slopes[j]))


def _hermite_rate(values: np.ndarray, slopes: np.ndarray, i: int, j: int, span: float, a: float) -> np.ndarray:
    """The derivative of `_hermite` at one fraction ``a``."""
    if span <= 0:
        return np.zeros_like(values[i])
    a2 = a * a
    return ((6 * a2 - 6 * a) * (values[i] - values[j]) / span
            + (3 * a2 - 4 * a + 1) * slopes[i] + (3 * a2 - 2 * a) * slopes[j])


#: The per-sample arrays of a `MotionClip`.
_SAMPLE_ARRAYS = ("times_s", "positions", "velocities", "base_position", "base_velocity", "base_quat_wxyz")


@dataclasses.dataclass(frozen=True)
class _Tail:
    """What a continuation replaced in a clip from its cut on (`MotionClip.restore` puts it back): the
    sample arrays from index ``first`` (the sample before the cut, whose base velocity the new samples
    changed, when there is one), the human frames, whether the clip was complete, its playable limit
    and its stop."""

    cut_s: float
    first: int
    arrays: dict[str, np.ndarray]
    human_joints: np.ndarray
    complete: bool
    verified_s: float
    stop_at_s: float | None

    @classmethod
    def of(cls, clip: "MotionClip", cut_s: float, start: int, stop_at_s: float | None) -> "_Tail":
        """The tail of ``clip`` (locked by the caller) that a replacement from sample ``start`` takes out."""
        first = max(start - 1, 0)
        arrays = {name: getattr(clip, name)[first:clip._ready].copy() for name in _SAMPLE_ARRAYS}
        return cls(cut_s, first, arrays, clip.human_joints, clip._complete, clip.verified_s, stop_at_s)


class SwitchTooLate(PipelineError):
    """A continuation arrived after the playback passed its cut time; the caller falls back to a blend."""


class MotionClip:
    """Robot samples (times [s], joint positions, base position, base quaternion) plus human frames.

    Args:
        joint_space: the robot's joints (samples are clipped to its limits on arrival).
        fps: the human motion's frame rate.
        human_joints_ros: (T, J, 3) the first motion's human joints in ROS axes.
        command: the command of the first motion (informational).
        generation_ms: its generation time (informational).
        capacity: robot samples to allocate up front (the buffer grows as needed).
    """

    def __init__(self, *, joint_space: JointSpace, fps: float, human_joints_ros: np.ndarray,
                 command: MotionCommand | None = None,
                 generation_ms: float = float("nan"), capacity: int = 256) -> None:
        n = int(human_joints_ros.shape[0])
        if n < 2:
            raise PipelineError(f"a motion needs at least 2 frames, got {n}")
        if not (fps > 0 and math.isfinite(fps)):
            raise PipelineError(f"fps must be positive, got {fps}")
        self.joint_space = joint_space
        self.fps = float(fps)
        self.command = command
        self.generation_ms = generation_ms
        self.human_joints = np.asarray(human_joints_ros, dtype=np.float64)
        cap = max(2, int(capacity))
        self.times_s = np.zeros(cap)
        self.positions = np.zeros((cap, len(joint_space.names)))
        self.velocities = np.zeros((cap, len(joint_space.names)))
        self.base_position = np.zeros((cap, 3))
        self.base_velocity = np.zeros((cap, 3))
        self.base_quat_wxyz = np.tile([1.0, 0.0, 0.0, 0.0], (cap, 1))
        self._ready = 0
        self._complete = False
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._read_s = -math.inf
        self.retarget_ms = 0.0
        self.first_chunk_ms = float("nan")
        self.verified_s = math.inf  # playable up to this clip time (rehearse: what the rehearsal cleared) [s]
        self.stop_at_s: float | None = None  # rehearse: playback is cut here and returns to standing [s]
        self.replaced: list[float] = []  # the cut time of every continuation that replaced samples [s]
        self._replaced_tail: _Tail | None = None  # what the latest replacement took out (`restore`)

    # ------------------------------------------------------------------ state
    @property
    def human_frames(self) -> int:
        return self.human_joints.shape[0]

    @property
    def frames_ready(self) -> int:
        """Robot samples written so far."""
        return self._ready

    @property
    def complete(self) -> bool:
        return self._complete

    @property
    def failed(self) -> BaseException | None:
        return self._error

    @property
    def duration_s(self) -> float:
        """The timeline's length [s]: the last robot sample once complete, the human frames' before."""
        if self._complete and self._ready:
            return float(self.times_s[self._ready - 1])
        return (self.human_frames - 1) / self.fps

    @property
    def available_s(self) -> float:
        return float(self.times_s[self._ready - 1]) if self._ready else -math.inf

    @property
    def read_s(self) -> float:
        """The latest clip time the reader has used [s] (-inf before the first read)."""
        return self._read_s

    def samples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(times, positions, base positions, base quats) written so far (views)."""
        n = self._ready
        return self.times_s[:n], self.positions[:n], self.base_position[:n], self.base_quat_wxyz[:n]

    # ------------------------------------------------------------------ writer
    def set_human(self, frames_ros: np.ndarray, *, at_frame: int) -> None:
        """Human frames from ``at_frame`` on are ``frames_ros`` (a continuation or the next window)."""
        frames = np.asarray(frames_ros, dtype=np.float64)
        if not 0 <= at_frame <= self.human_frames:
            raise PipelineError(f"human frames continue at {at_frame}, the clip has {self.human_frames}")
        with self._lock:
            self.human_joints = np.concatenate([self.human_joints[:at_frame], frames])

    def append(self, times_s: np.ndarray, positions: np.ndarray, base_position: np.ndarray,
               base_quat_wxyz: np.ndarray, velocities: np.ndarray | None = None, *,
               base_velocity: np.ndarray | None = None, replace_from: float | None = None) -> None:
        """Add the next robot samples; positions are clipped to the joint limits here, once.

        Args:
            velocities: the joint velocities at the samples (the retargeter's spline derivative);
                None: finite differences of these samples' positions. Zero where a position is clipped.
            base_velocity: (N, 3) the base's velocity at the samples [m/s]; None: central differences
                of the base positions (with the sample before them, so chunks join smoothly).
            replace_from: drop every sample at or after this time first (a continuation's cut), in
                the same locked step, so the reader sees either the old tail or the new one. It may be
                at or before what the reader has used only when the new samples repeat every sample
                the reader used exactly (a stream rewound and pushed the same frames again).

        Raises:
            SwitchTooLate: ``replace_from`` is not ahead of what the reader has already used (and the
                new samples do not repeat it).
            PipelineError: non-finite values or times that do not increase.
        """
        times = np.asarray(times_s, dtype=np.float64).reshape(-1)
        positions = np.asarray(positions, dtype=np.float64)
        k = times.shape[0]
        if not (np.all(np.isfinite(positions)) and np.all(np.isfinite(base_position)) and np.all(np.isfinite(times))):
            raise PipelineError(f"retargeter returned non-finite values in samples {self._ready}..{self._ready + k}")
        if velocities is None:
            velocities = np.gradient(positions, times, axis=0) if k > 1 else np.zeros_like(positions)
        velocities = np.asarray(velocities, dtype=np.float64)
        if velocities.shape != positions.shape or not np.all(np.isfinite(velocities)):
            raise PipelineError(f"retargeter velocities of shape {velocities.shape} are not finite values "
                                f"shaped like its positions {positions.shape}")
        clipped = self.joint_space.clip(positions)
        velocities = np.where(clipped != positions, 0.0, velocities)  # the clipped curve is flat there
        base_position = np.asarray(base_position, dtype=np.float64).reshape(k, 3)
        with self._lock:
            start = self._ready
            if replace_from is not None:
                start = int(np.searchsorted(self.times_s[: self._ready], replace_from, side="left"))
                if replace_from <= self._read_s and not self._repeats_what_was_read(start, times, positions,
                                                                                   base_position, base_quat_wxyz):
                    raise SwitchTooLate(f"cut at {replace_from:.3f} s, already played up to {self._read_s:.3f} s")
                stop_at_s = self.stop_at_s
                if self.stop_at_s is not None:  # the motion is cut for a predicted fall: join before the cut
                    if replace_from > self.stop_at_s:
                        raise SwitchTooLate(f"cut at {replace_from:.3f} s, after the rehearsal's stop at "
                                            f"{self.stop_at_s:.3f} s")
                    self.stop_at_s = None  # what falls is replaced: the continuation is rehearsed on its own
                self._replaced_tail = _Tail.of(self, float(replace_from), start, stop_at_s)
                self._ready = start
                self._complete = False
                self.replaced.append(float(replace_from))
                if math.isfinite(self.verified_s):  # rehearsed clip: the new samples wait for their rehearsal
                    self.verified_s = min(self.verified_s, float(replace_from))
            if k == 0:
                return
            if base_velocity is None:
                base_velocity = self._base_differences(start, times, base_position)
            prev = self.times_s[start - 1] if start else -math.inf
            if times[0] <= prev or np.any(np.diff(times) <= 0):
                raise PipelineError(f"retargeter sample times are not increasing at sample {start}")
            if start + k > self.times_s.shape[0]:
                self._grow(start + k)
            self.times_s[start : start + k] = times
            self.positions[start : start + k] = clipped
            self.velocities[start : start + k] = velocities
            self.base_position[start : start + k] = base_position
            self.base_velocity[start : start + k] = base_velocity
            quat = np.asarray(base_quat_wxyz, dtype=np.float64)
            self.base_quat_wxyz[start : start + k] = quat / np.linalg.norm(quat, axis=-1, keepdims=True)
            self._ready = start + k  # publish the samples only after they are written

    def _repeats_what_was_read(self, start: int, times: np.ndarray, positions: np.ndarray, base: np.ndarray,
                               quat: np.ndarray) -> bool:
        """Whether new samples from index ``start`` on equal, bit for bit, every old sample the reader
        used (those up to the first one after `read_s`, which it interpolated towards)."""
        used = min(int(np.searchsorted(self.times_s[: self._ready], self._read_s, side="right")) + 1, self._ready)
        n = used - start
        if n <= 0 or n > times.shape[0]:
            return False
        quat = np.asarray(quat[:n], dtype=np.float64)
        return (np.array_equal(times[:n], self.times_s[start:used])
                and np.array_equal(self.joint_space.clip(positions[:n]), self.positions[start:used])
                and np.array_equal(np.asarray(base[:n], dtype=np.float64), self.base_position[start:used])
                and np.array_equal(quat / np.linalg.norm(quat, axis=-1, keepdims=True), self.base_quat_wxyz[start:used]))

    def _base_differences(self, start: int, times: np.ndarray, base: np.ndarray) -> np.ndarray:
        """Central differences of the base positions, the sample before ``start`` included (locked). That
        sample's own rate was one-sided (its next one was unknown): it becomes central too, unless
        playback is already past the sample before it (the curve being played stays as it is)."""
        if start:
            times = np.concatenate([self.times_s[start - 1 : start], times])
            base = np.concatenate([self.base_position[start - 1 : start], base])
            if start >= 2 and self._read_s < self.times_s[start - 2] and times.shape[0] > 1:
                around = slice(start - 2, start)
                self.base_velocity[start - 1] = np.gradient(
                    np.concatenate([self.base_position[around], base[1:2]]),
                    np.concatenate([self.times_s[around], times[1:2]]), axis=0)[1]
        rate = np.gradient(base, times, axis=0) if times.shape[0] > 1 else np.zeros_like(base)
        return rate[1:] if start else rate

    def _grow(self, needed: int) -> None:
        # New arrays, old ones left intact: a reader holding the old reference still sees valid data.
        cap = max(needed, 2 * self.times_s.shape[0])

        def grown(a: np.ndarray) -> np.ndarray:
            out = np.zeros((cap,) + a.shape[1:])
            out[: a.shape[0]] = a
            return out

        for name in _SAMPLE_ARRAYS:
            setattr(self, name, grown(getattr(self, name)))

    def finish(self) -> None:
        if self._ready < 2:
            raise PipelineError(f"retargeter produced {self._ready} samples; a motion needs at least 2")
        self._complete = True

    def fail(self, error: BaseException) -> None:
        self._error = error

    # ------------------------------------------------------------------ reader
    def covers(self, t_s: float) -> bool:
        """True when the samples around clip time ``t_s`` are written (or the clip is complete) and may
        be played (`verified_s`)."""
        if t_s > self.verified_s and not (self._complete and self.verified_s >= self.duration_s - 1e-9):
            return False
        return self._ready >= 2 and (self._complete or t_s <= self.available_s)

    @property
    def settled(self) -> bool:
        """Complete, playable to its end and not cut: the whole motion may go out as a JointTrajectory."""
        return self._complete and self.stop_at_s is None and self.verified_s >= self.duration_s - 1e-9

    def verify(self, up_to_s: float, *, since: int) -> None:
        """Rehearse: playable up to clip time ``up_to_s`` [s], but not past a replacement made after the
        first ``since`` ones (those samples are no longer the ones rehearsed); never lowers the limit."""
        with self._lock:
            cap = min(self.replaced[since:], default=math.inf)
            self.verified_s = max(self.verified_s, min(float(up_to_s), cap))

    def cut(self, at_s: float) -> None:
        """Rehearse: playback stops at clip time ``at_s`` [s], which the rehearsal cleared (nothing after it plays)."""
        with self._lock:
            self.stop_at_s = self.verified_s = float(at_s)

    def restore(self, cut_s: float, human_frames: int) -> bool:
        """Rehearse: undo the latest replacement, the continuation's from clip time ``cut_s`` [s], when
        playback has not reached its cut: the samples and human frames it replaced, the completeness, the
        playable limit and the stop they had come back. False (nothing changes) when another replacement
        came after it, playback reached the cut, or what it replaced was not a whole motion's end (the
        clip complete at ``human_frames`` frames) cleared to its last sample: only that was rehearsed as
        it would play on."""
        with self._lock:
            tail = self._replaced_tail
            if (tail is None or tail.cut_s != cut_s or self._read_s >= cut_s or not tail.complete
                    or tail.human_joints.shape[0] != human_frames
                    or tail.verified_s < float(tail.arrays["times_s"][-1]) - 1e-9):
                return False
            n = tail.first + tail.arrays["times_s"].shape[0]
            if n > self.times_s.shape[0]:
                self._grow(n)
            for name, values in tail.arrays.items():
                getattr(self, name)[tail.first:n] = values
            self._ready, self._complete, self.human_joints = n, True, tail.human_joints
            self.verified_s, self.stop_at_s = tail.verified_s, tail.stop_at_s
            self._replaced_tail = None
            return True

    def span(self, start_s: float, end_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Copies of (times, joint positions, base positions, base quats) of the samples from clip time
        ``start_s`` to ``end_s`` [s], taken in one locked step (a continuation may be replacing the tail)."""
        with self._lock:
            times = self.times_s[: self._ready]
            sel = slice(int(np.searchsorted(times, start_s - 1e-9)), int(np.searchsorted(times, end_s + 1e-9, "right")))
            return (times[sel].copy(), self.positions[sel].copy(), self.base_position[sel].copy(),
                    self.base_quat_wxyz[sel].copy())

    def at(self, t_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Interpolated (positions, base position, base quat, human joints) at clip time [s].

        Callers keep ``t_s <= available_s`` (beyond it the last sample is held); joint and base
        positions follow the cubic Hermite piece through the two samples around ``t_s`` and their
        velocities (callers clip to the limits), the orientation is slerped. Marks ``t_s`` as played.
        """
        with self._lock:
            self._read_s = max(self._read_s, t_s)
            i, j, span, a = _piece(self.times_s[: self._ready], t_s)
            pos = _hermite(self.positions, self.velocities, i, j, span, a)
            base = _hermite(self.base_position, self.base_velocity, i, j, span, a)
            q0, q1 = self.base_quat_wxyz[i].copy(), self.base_quat_wxyz[j].copy()
            human_all = self.human_joints
        quat = q0 if a <= 0.0 else qslerp(q0, q1, a)
        n = human_all.shape[0]
        f = min(max(t_s * self.fps, 0.0), n - 1)
        h = min(int(f), n - 2)
        b = f - h
        human = (1 - b) * human_all[h] + b * human_all[h + 1]
        return pos, base, quat, human

    def base_rates(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(linear [m/s], angular [rad/s]) velocity of the base at clip time [s], world frame: the
        derivative of the curve `at` reads (zero outside the samples, where the pose is held)."""
        with self._lock:
            times = self.times_s[: self._ready]
            if self._ready < 2 or not times[0] <= t_s <= times[-1]:
                return np.zeros(3), np.zeros(3)
            i, j, span, a = _piece(times, t_s)
            linear = _hermite_rate(self.base_position, self.base_velocity, i, j, span, a)
            q0, q1 = self.base_quat_wxyz[i].copy(), self.base_quat_wxyz[j].copy()
        # the slerp turns at a constant rate about one world axis between two samples
        angular = rotation_vector(qmul(q1, qinv(q0))) / span if span > 0 else np.zeros(3)
        return linear, angular

    def positions_at(self, times_s: np.ndarray) -> np.ndarray:
        """Joint positions (N, J) on the same curve as `at`, for a grid of clip times [s]; nothing is
        marked played (a JointTrajectory looks ahead of playback)."""
        with self._lock:
            i, j, span, a = _pieces(self.times_s[: self._ready], np.asarray(times_s, dtype=np.float64).reshape(-1))
            return _hermite(self.positions, self.velocities, i, j, span, a)
