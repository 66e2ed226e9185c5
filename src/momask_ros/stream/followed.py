"""The stream a rehearsal follows (``physical_checks: rehearse``, `momask_ros.stream.rehearsing`): a span
of a job's clip as the node will stream it to the robot (`SpanStream`, from where it starts:
`StreamStart`), and that stream as the live tracker follows it (`LiveFollowed`), the reference a
`momask_ros.tracker.rehearsal.Rehearsal` runs. Both grow while the clip is still being retargeted, so
a rehearsal can start with its first chunk and stay just behind the retargeting.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import numpy as np

from momask_model.motion.quaternion import qinv, qmul, rotation_vector
from momask_ros.stream.clip import MotionClip
from momask_ros.stream.job import Job
from momask_ros.stream.playback import MotionPlayback
from momask_ros.stream.state import RobotPose
from momask_ros.tracker.live_reference import REFERENCE_DELAY_S, LiveReference, blend_out_weight
from momask_ros.tracker.reference import ReferenceSample, RobotReference
from momask_ros.tracker.spec import TrackerBundle, TrackerSpec

__all__ = ["LiveFollowed", "SpanStream", "StreamStart", "Streamed"]


@dataclasses.dataclass(frozen=True, eq=False)
class Streamed(RobotReference):
    """A motion as the node streams it (its samples at the control rate, joints in the tracker's order),
    with the base twist it publishes (world frame, (N, 3) each; None: the pose's differences);
    ``from_standing``: the tracker blends it in from standing (nothing plays before it), else it follows
    it at once (it continues, or takes over from, a motion the tracker is following)."""

    base_lin_vel_world: np.ndarray | None = None
    base_ang_vel_world: np.ndarray | None = None
    from_standing: bool = True
    delay_s: float = REFERENCE_DELAY_S  # the tracker follows it this far behind (0: already following it)
    open: bool = False  # more of it is coming (`LiveFollowed.grow`): nothing is followed past its last sample
    blend_from: float = 0.0  # from_standing: the tracker's blend weight as it begins (a blend-out under way)
    carried: dict | None = None  # the live conditioning's state where it begins (`LiveReference.carried`)

    @classmethod
    def of(cls, reference: RobotReference) -> "Streamed":
        """``reference`` as the node streams it: itself when it is a `Streamed`, else its samples with the
        defaults (blended in from standing, its twist from the pose's differences)."""
        if isinstance(reference, Streamed):
            return reference
        return cls(**{f.name: getattr(reference, f.name) for f in dataclasses.fields(RobotReference)})


class LiveFollowed:
    """What the live tracker follows while the node streams a motion, as a reference a `Rehearsal` can
    run, stop and measure. The stream goes through the tracker's own live conditioning (`LiveReference`:
    blended in from standing as it plays, roll, pitch and joints clipped, speed capped, velocities from
    the twist) sample by sample, ``delay_s`` behind the robot's clock as the tracker node follows it;
    where the stream stops (its end, or a cut: `stop`) the node holds the pose and says ``done``, and
    the reference blends back to standing. Nothing is slowed down or skipped: the node plays the motion
    as it is. Times [s]: the robot's clock from the stream's first sample; `motion_time_s` maps them onto
    the stream's. The policy's input does not depend on the path's placement: `reanchor` moves nothing.

    An ``open`` stream is still being retargeted: it is followed up to its last sample (`known_s`) and
    `grow` adds the next ones (copies share them: a cut planned later sees the same stream)."""

    time_stretch = 1.0

    def __init__(self, stream: RobotReference, bundle: TrackerBundle) -> None:
        stream = Streamed.of(stream)
        self._data: dict[str, Any] = {}  # the stream so far, shared by shallow copies
        self._blend_in, self._blend_from, self._carried = stream.from_standing, float(stream.blend_from), stream.carried
        self._bundle, self._dt = bundle, 1.0 / bundle.spec.policy_rate_hz
        self.play_start_s = float(stream.delay_s)
        self._cut_s: float | None = None  # where `stop` stopped it, on the stream's clock
        self._take(stream)
        self._follow()

    def _take(self, stream: Streamed) -> None:
        times = stream.times_s - stream.times_s[0]
        pose = (stream.base_pos_world, stream.base_quat_wxyz, stream.joint_pos_rad)
        twist = (stream.base_lin_vel_world, stream.base_ang_vel_world)
        self._data.update(times=times, pose=pose, twist=twist if twist[0] is not None else _twist(times, *pose[:2]),
                          open=bool(stream.open))

    def grow(self, stream: RobotReference) -> None:
        """The stream so far, longer (its first samples are those followed already; ``stream.open``: more
        is coming)."""
        if not self._data["open"]:
            raise ValueError("the stream has ended; it cannot grow")
        self._take(Streamed.of(stream))

    @property
    def _stop_s(self) -> float:
        """Where the stream stops (its last sample, or the cut) on the stream's clock [s]."""
        last = float(self._data["times"][-1])
        return last if self._cut_s is None else min(self._cut_s, last)

    @property
    def open(self) -> bool:
        return self._data["open"] and self._cut_s is None

    @property
    def end_s(self) -> float:
        """Where the reference stands still again (inf while the stream is open) [s]."""
        return math.inf if self.open else self.play_start_s + self._stop_s + self._bundle.spec.blend_out_s

    @property
    def known_s(self) -> float:
        """How far the reference can be followed now [s]: the stream's last sample while open."""
        return self.play_start_s + self._stop_s if self.open else math.inf

    def _follow(self) -> None:
        """Start following afresh (with the current stop); samples are made as the rehearsal asks for them."""
        spec = self._bundle.spec
        live = LiveReference.from_spec(spec, self._bundle.joint_range_rad,
                                       blend_in_s=spec.blend_in_s if self._blend_in else 0.0)
        live.begin(0.0, from_weight=self._blend_from if self._blend_in else None)
        if self._blend_in and self._blend_from > 0.0 and self.play_start_s > 0.0:
            # a blend-out under way: until the stream is followed, the tracker follows what the node holds
            # (the stream's first sample, held still), not standing (a 1 rad jump of the arms after a dance's cut)
            pos, quat, q = self._data["pose"]
            live.push(-self.play_start_s, pos[0], quat[0], q[0], base_lin_vel_world=np.zeros(3),
                      base_ang_vel_world=np.zeros(3))
        if self._carried is not None:  # a continuation: the hold of a section beyond the robot goes on
            live.carry_on(self._carried, 0.0)
        self._state = {"live": live, "rows": [], "k": 0, "last": 0, "ended": False}  # shared by shallow copies

    def _row(self, n: int) -> ReferenceSample:
        """Sample n of the robot's clock, following the stream up to it first (they arrive in order)."""
        st, data, stop = self._state, self._data, self._stop_s
        live, rows, (pos, quat, q), times, twist = st["live"], st["rows"], data["pose"], data["times"], data["twist"]
        while len(rows) <= n:
            t = len(rows) * self._dt - self.play_start_s  # the stream's clock
            while st["k"] < times.size and times[st["k"]] <= min(t, stop) + 1e-9:
                k = st["k"]
                live.push(float(times[k]), pos[k], quat[k], q[k], base_lin_vel_world=twist[0][k],
                          base_ang_vel_world=twist[1][k])
                st["last"], st["k"] = k, k + 1
            if t > stop + 1e-9:  # the node holds the pose where it stopped and says done
                if self.open:
                    raise ValueError(f"followed to {t:.3f} s, past the stream's last sample ({stop:.3f} s)")
                if not st["ended"]:
                    live.end(stop)
                    st["ended"] = True
                last = st["last"]
                live.push(float(t), pos[last], quat[last], q[last])
            rows.append(live.sample(float(t)))
        return rows[n]

    def carried(self) -> dict:
        """The live conditioning's state at the last sampled time (`LiveReference.carried`)."""
        return self._state["live"].carried()

    @property
    def report(self) -> "_Notes":
        return _Notes(self._state["live"].report.notes())

    def __deepcopy__(self, memo: dict) -> "LiveFollowed":
        return copy.copy(self)  # what it has followed is the same for both; `stop` starts afresh

    def sample(self, t_s: float) -> ReferenceSample:
        n = max(int(round(t_s / self._dt)), 0)
        return self._row(n if self.open else min(n, int(np.ceil(self.end_s / self._dt)) + 1))

    def stop(self, t_s: float) -> None:
        """The stream stops at robot time t_s [s]: the pose holds there and blends back to standing."""
        if t_s - self.play_start_s < self._stop_s:
            self._cut_s = max(float(t_s) - self.play_start_s, 0.0)
            self._follow()

    def reanchor(self, t_s: float, base_pos_world: np.ndarray, base_quat_wxyz: np.ndarray) -> None:
        pass

    def motion_time_s(self, t_s: float) -> float:
        """The stream's time at robot time t_s [s] (held at its stop)."""
        return float(min(max(t_s - self.play_start_s, 0.0), self._stop_s))


def _twist(times: np.ndarray, pos: np.ndarray, quat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The base twist the node streams with each sample (world frame): the position's central difference
    and the rotation to the next sample over its interval (`MotionClip.base_rates` at a sample)."""
    linear = np.gradient(pos, times, axis=0) if times.size > 1 else np.zeros_like(pos)
    angular = np.zeros_like(pos)
    for i in range(times.size - 1):
        angular[i] = rotation_vector(qmul(quat[i + 1], qinv(quat[i]))) / (times[i + 1] - times[i])
    return linear, angular


@dataclasses.dataclass(frozen=True)
class _Notes:
    notes: list

    def summary(self) -> str:
        return "; ".join(self.notes) if self.notes else "reference used as given"


class SpanStream:
    """A span of a job's clip as the node will stream it: its samples played as the conductor plays them
    (blended in from the pose it holds, for a ``fresh`` start; at the job's speed), joints in the
    tracker's order (``order``: their columns in the clip); ``following``: the rehearsed robot is already following the stream there. While
    the clip is still being written it goes as far as its samples are final (up to the one before the
    last: the next chunk still changes that one's rates)."""

    def __init__(self, job: Job, start_s: float, *, order: np.ndarray, spec: TrackerSpec, following: bool,
                 fresh: StreamStart | None, carried: dict | None = None) -> None:
        self.job, self.start_s, self._order, self._spec = job, float(start_s), order, spec
        self._carried = carried  # the conditioning's state where it is followed from (a continuation)
        self._following, self._fresh = following, fresh
        self._out: list = []  # (time, Sample) streamed so far
        self._ended = False

    def update(self, end_s: float) -> Streamed | None:
        """The stream so far, to clip time ``end_s`` when finite (it then ends there), else as far as the
        clip is written; None while it has fewer than two samples."""
        clip, final = self.job.clip, math.isfinite(end_s)
        times, q, pos, quat = clip.span(self.start_s, end_s if final else clip.available_s)
        if times.shape[0] < (2 if final else 3) or times[-1] - times[0] < 1e-3:
            return None
        frames = max(2, int(np.ceil((times[-1] - times[0]) * clip.fps)) + 2)
        copy_ = MotionClip(joint_space=clip.joint_space, fps=clip.fps, human_joints_ros=np.zeros((frames, 22, 3)))
        copy_.append(times - times[0], q, pos, quat)
        pose, blend_s, period_s = RobotPose(q[0].copy(), pos[0].copy(), quat[0].copy()), 0.0, 0.02
        if self._fresh is not None:  # else a continuation or a later window: no blend, the stream goes straight on
            pose, blend_s, period_s = self._fresh.pose, self._fresh.blend_s, self._fresh.period_s
        if final:
            copy_.finish()
        limit = math.inf if final else times[-2] - times[0] - 0.5 / clip.fps  # clip time with final samples
        play = MotionPlayback(copy_, pose, speed=self.job.command.speed, blend_s=blend_s)
        out = self._out
        while not self._ended:
            t = len(out) * period_s
            if play.clip_time(t) > limit or (sample := play.sample(t)) is None:
                break
            out.append((t, sample))
            self._ended = final and play.finished(t)
        if len(out) < 2:
            return None
        spec, order = self._spec, self._order
        return Streamed(np.array([t for t, _ in out]), np.array([s.base_position for _, s in out]),
                        np.array([s.base_quat_wxyz for _, s in out]),
                        np.array([s.positions for _, s in out])[:, order], joint_names=spec.joint_names,
                        base_lin_vel_world=np.array([s.base_linear_velocity for _, s in out]),
                        base_ang_vel_world=np.array([s.base_angular_velocity for _, s in out]),
                        from_standing=self._fresh is not None and self._fresh.playing is None and not self._following,
                        blend_from=self._fresh.blend_weight(spec) if self._fresh is not None else 0.0,
                        carried=self._carried,
                        delay_s=0.0 if self._following else REFERENCE_DELAY_S, open=not final)


@dataclasses.dataclass(frozen=True)
class StreamStart:
    """Where a fresh motion's stream would start now (`Conductor.use_rehearser` says): from ``pose`` with a
    ``blend_s`` blend, one sample every ``period_s``; taking over from ``playing`` (the clip that plays, or
    None when idle, played at ``speed``) at its clip time ``takeover_s`` (now, or its end when the new
    motion waits for it);
    idle, ``since_end_s`` after the clip that ``ended`` last (the tracker may still be blending it out)."""

    pose: RobotPose
    blend_s: float
    period_s: float
    playing: MotionClip | None = None
    takeover_s: float = 0.0
    speed: float = 1.0
    ended: MotionClip | None = None
    since_end_s: float = math.inf

    def blend_weight(self, spec: TrackerSpec) -> float:
        """The tracker's blend weight when this stream starts: 0 (standing), or still on the way down from
        the clip that ended ``since_end_s`` ago (its blend-out started where the stream stopped)."""
        if self.playing is not None or self.ended is None:
            return 0.0
        return blend_out_weight(self.since_end_s, spec.blend_out_s)
