"""`RetargetSession`: one retargeting stream feeding one `MotionClip`, from its first motion
through every continuation of it.

The stream keeps its state (calibration, IK warm start, planted feet, smoothing window) from one
motion to the next, and a continuation rewinds it to the switch frame, so the robot motion through a
switch is what retargeting the joined human motion in one go gives: no re-calibration, no jump of
the base. No ROS, no threads of its own (the producer's retargeting worker is its one writer).
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable, Generic, Protocol, Sequence, TypeVar

import numpy as np

from momask_ros.retarget.frames import human_yup_to_ros
from momask_ros.stream.clip import MotionClip, SwitchTooLate
from momask_ros.stream.state import Cancelled, JointSpace, PipelineError

__all__ = ["BatchStream", "FIRST_CHUNK_FRAMES", "RetargetSession", "SWITCH_CHUNK_FRAMES", "Stream", "Trajectory"]


class Trajectory(Protocol):
    """What a retargeter returns (`momask_ros.retarget.trajectory.RobotTrajectory`, or a test's stand-in)."""

    joint_names: Sequence[str]
    times_s: np.ndarray
    positions: np.ndarray


class Stream(Protocol):
    """A chunked retargeter (`momask_ros.retarget.retargeter.RetargetStream`); ``rewind(frame) -> cut
    time`` and ``cut_time(frame)`` when it can continue a motion, ``calibrate(joints)`` when it
    calibrates up front."""

    def push(self, joints_yup: np.ndarray) -> Trajectory: ...

    def finish(self) -> Trajectory: ...


Owner = TypeVar("Owner")


def _traj_arrays(traj: Trajectory, joint_space: JointSpace
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """A RobotTrajectory's (times, positions in joint_space order, base position, base quat wxyz,
    velocities in joint_space order or None when it has none)."""
    names = [str(n) for n in traj.joint_names]
    positions = np.asarray(traj.positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != len(names):
        raise PipelineError(f"retargeter positions have shape {positions.shape} for {len(names)} joints")
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in joint_space.names if n not in index]
    if missing:
        raise PipelineError(f"retargeter output lacks joints {missing}")
    order = [index[n] for n in joint_space.names]
    positions = positions[:, order]
    n = positions.shape[0]
    velocities = getattr(traj, "velocities", None)
    if velocities is not None:
        velocities = np.asarray(velocities, dtype=np.float64)
        velocities = velocities[:, order] if velocities.shape == (n, len(names)) else None
    base = getattr(traj, "base_position", None)
    quat = getattr(traj, "base_quat_wxyz", None)
    base = np.zeros((n, 3)) if base is None else np.asarray(base, dtype=np.float64).reshape(n, 3)
    quat = np.tile([1.0, 0, 0, 0], (n, 1)) if quat is None else np.asarray(quat, dtype=np.float64).reshape(n, 4)
    times = np.asarray(traj.times_s, dtype=np.float64).reshape(-1)
    if times.shape[0] != n:
        raise PipelineError(f"retargeter gave {times.shape[0]} times for {n} samples")
    return times, positions, base, quat, velocities


#: Human frames in the first retargeted chunk once the stream is calibrated up front: enough for the
#: smoothing and spline look-ahead to release the first samples.
FIRST_CHUNK_FRAMES = 6
#: Human frames in a switch's first chunk: the rewound stream has its smoothing window already, so
#: two frames release the first changed samples (what the switch waits for); chunks then double.
SWITCH_CHUNK_FRAMES = 2


class RetargetSession(Generic[Owner]):
    """One retargeting stream feeding one clip, from its first motion through every continuation.

    ``frames`` human frames have been pushed (frame 0 is the clip's time 0). `push` with ``at_frame``
    before that rewinds the stream first (``stream.rewind(frame) -> cut time``) and replaces the
    clip's samples from the cut time on with the new ones; the cut is a few frames before
    ``at_frame`` (the smoothing window), so it must still be ahead of playback (`SwitchTooLate`).
    ``segments`` says whose motion (an ``Owner``: the producer's jobs) plays from which frame.

    Args:
        clip: the clip it fills; stream: the retargeter it pushes human frames through.
        joint_space: the clip's joint order; chunk_frames: the largest chunk [human frames].
        calibrated: the stream needs no calibration on the first motion.
    """

    def __init__(self, clip: MotionClip, stream: Stream, *, joint_space: JointSpace, chunk_frames: int,
                 calibrated: bool) -> None:
        self.clip = clip
        self.stream = stream
        self.joint_space = joint_space
        self.chunk_frames = int(chunk_frames)
        self.frames = 0
        self.closed = False  # set by the owner when playback left this clip: nothing more joins it
        self._replaced_at = 0  # the human frame from which the latest push replaced the clip's samples
        self.segments: list[tuple[int, Owner]] = []  # (start frame, owner) of each motion on the timeline
        self._calibrated = calibrated
        self._lock = threading.Lock()  # one writer at a time
        self.first_chunk_ms = float("nan")  # of the latest push: what the switch had to wait for

    @property
    def can_continue(self) -> bool:
        """Whether a motion can join this session without a blend (the stream can rewind)."""
        return self.stream is not None and hasattr(self.stream, "rewind")

    def cut_time(self, frame: int) -> float:
        """Clip time from which samples change when the session continues from human ``frame``
        (beyond the frames pushed so far: extrapolated at the same look-ahead)."""
        if not self.can_continue:
            return math.inf if frame >= self.frames and not self.clip.complete else -math.inf
        if frame > self.frames:
            return float(self.stream.cut_time(self.frames)) + (frame - self.frames) / self.clip.fps
        return float(self.stream.cut_time(frame))

    def push(self, joints_yup: np.ndarray, *, at_frame: int | None = None, final: bool = True,
             cancelled: Callable[[], bool] = lambda: False,
             on_commit: Callable[[float], None] = lambda cut_s: None,
             chunk_limit: Callable[[], int | None] = lambda: None, repeat_frames: int = 0) -> None:
        """Retarget human frames (Y-up) continuing at ``at_frame`` (default: the end), chunk by chunk:
        a small first chunk, then doubling up to ``chunk_frames``, each at most ``chunk_limit()``
        frames when that is not None (asked before each chunk: small chunks give way sooner).

        ``final`` flushes the stream's look-ahead at the end (a later push rewinds that flush).
        ``on_commit(cut_s)`` runs right after the first new samples are in the clip (the switch is
        certain; samples differ from the clip time ``cut_s`` on). ``repeat_frames``: the first frames
        are those pushed there before (a switch retried later after playback passed its cut): they
        go in the first chunk, and the clip takes samples already played when they come out equal.

        Raises:
            SwitchTooLate: the cut is no longer ahead of playback (nothing was changed in the clip).
            Cancelled: ``cancelled()`` said stop between two chunks (the clip keeps what it has).
            PipelineError: retargeting failed; the clip is marked failed.
        """
        with self._lock:
            self._push(np.asarray(joints_yup, dtype=np.float64), self.frames if at_frame is None else int(at_frame),
                       final, cancelled, on_commit, chunk_limit, int(repeat_frames))

    def restore(self, owner: Owner, cut_s: float, *, ends_at: int, lock: Any) -> bool:
        """Take back the last segment, ``owner``'s continuation from clip time ``cut_s`` (its rehearsal
        refused it), once a push in progress has returned: the clip gets back what it replaced
        (`MotionClip.restore`), the motion before it ending at human frame ``ends_at``; ``lock`` guards
        ``segments`` (taken after this session's own). The stream went on with the continuation's
        frames, so ``frames`` goes back to where it took over: a later join pushes the motion's own frames
        again from there (the same samples; too late once playback passed them, and it starts afresh).
        False (nothing changes) when ``owner`` is not the last segment or the clip cannot."""
        with self._lock, lock:
            if (self.closed or len(self.segments) < 2 or self.segments[-1][1] is not owner
                    or not self.clip.restore(cut_s, ends_at)):
                return False
            self.segments.pop()
            self.frames = min(ends_at, self._replaced_at)
            return True

    def abandon(self) -> None:
        """Nothing more joins this session (a switch that came too late may have rewound its stream):
        the clip ends with the samples it has."""
        with self._lock:
            self.closed = True
            if self.clip.frames_ready >= 2 and not self.clip.complete:
                self.clip.finish()

    def finish(self) -> None:
        """Flush the stream's look-ahead: the clip is complete (until a continuation rewinds it)."""
        with self._lock:
            if not self.clip.complete and self.frames:
                self.clip.append(*_traj_arrays(self.stream.finish(), self.joint_space))
                self.clip.finish()

    def _push(self, joints: np.ndarray, at_frame: int, final: bool, cancelled: Callable[[], bool],
              on_commit: Callable[[float], None], chunk_limit: Callable[[], int | None],
              repeat_frames: int = 0) -> None:
        clip, stream = self.clip, self.stream
        if not 0 <= at_frame <= self.frames:
            raise PipelineError(f"cannot continue at frame {at_frame} of {self.frames}")
        replace_from = None
        if at_frame < self.frames or clip.complete:
            if not self.can_continue:
                raise SwitchTooLate("this retargeter cannot continue a motion")
            cut = float(stream.cut_time(at_frame))
            if cut <= clip.read_s and not repeat_frames:
                raise SwitchTooLate(f"cut at {cut:.3f} s, already played up to {clip.read_s:.3f} s")
            replace_from = float(stream.rewind(at_frame))
            self._replaced_at = at_frame
        self.frames = at_frame
        human = human_yup_to_ros(joints)
        if replace_from is None:
            clip.set_human(human, at_frame=at_frame)
        self.first_chunk_ms = float("nan")
        t0 = time.perf_counter()
        n = joints.shape[0]
        first = self.chunk_frames
        calibrate = getattr(stream, "calibrate", None)  # an optional part of the stream's protocol
        if not self._calibrated and calibrate is not None:
            # The whole motion is here: calibrate on it now, so a small first chunk yields samples.
            calibrate(joints)
            first = min(self.chunk_frames, FIRST_CHUNK_FRAMES)
        elif replace_from is not None:  # the switch waits for this chunk
            first = repeat_frames + min(self.chunk_frames, SWITCH_CHUNK_FRAMES)
        self._calibrated = True
        start, size = 0, first
        try:
            while start < n:
                if cancelled():
                    raise Cancelled(f"retargeting stopped at frame {at_frame + start}")
                limit = chunk_limit()
                end = min(n, start + (size if limit is None else max(1, min(size, int(limit)))))
                out = stream.push(joints[start:end])
                self.frames = at_frame + end
                if len(out.times_s):
                    self._append(out, replace_from, human, at_frame, t0, on_commit)
                    replace_from = None
                start, size = end, min(self.chunk_frames, 2 * size)
            if final:
                self._append(stream.finish(), replace_from, human, at_frame, t0, on_commit)
                clip.finish()
        except (SwitchTooLate, Cancelled):
            raise
        except Exception as exc:
            error = exc if isinstance(exc, PipelineError) else PipelineError(f"retargeting failed: {exc}")
            clip.fail(error)
            raise error from exc
        finally:
            clip.retarget_ms += (time.perf_counter() - t0) * 1e3
            if math.isnan(clip.first_chunk_ms):
                clip.first_chunk_ms = self.first_chunk_ms

    def _append(self, out: Trajectory, replace_from: float | None, human: np.ndarray, at_frame: int, t0: float,
                on_commit: Callable[[float], None]) -> None:
        # SwitchTooLate here leaves the clip as it was and the stream rewound: the caller pushes again
        # from the same frame (a later switch) or abandons the session.
        self.clip.append(*_traj_arrays(out, self.joint_space), replace_from=replace_from)
        if replace_from is not None:
            self.clip.set_human(human, at_frame=at_frame)
        if math.isnan(self.first_chunk_ms):
            self.first_chunk_ms = (time.perf_counter() - t0) * 1e3
            on_commit(float(self.clip.times_s[0]) if replace_from is None else replace_from)


class BatchStream:
    """A stream made of a batch retargeter (no ``stream_factory``): one call at the end; no rewind.

    Args:
        retarget: ``(joints_yup (T, 22, 3), fps) -> trajectory``, the whole motion at once.
    """

    def __init__(self, retarget: Callable[[np.ndarray, float], Trajectory], fps: float) -> None:
        self.retarget, self.fps, self.frames = retarget, fps, []

    def push(self, joints_yup: np.ndarray) -> Trajectory:
        self.frames.append(joints_yup)
        return _EMPTY

    def finish(self) -> Trajectory:
        return self.retarget(np.concatenate(self.frames), self.fps)


class _Empty:
    joint_names: tuple[str, ...] = ()
    times_s = np.zeros(0)
    positions = np.zeros((0, 0))


_EMPTY = _Empty()
