"""Rehearsal in the robot stream (``physical_checks: rehearse``): no motion reaches the robot that the
whole-body tracker, rehearsing it on a copy of the simulator, predicts would make it fall.

What is rehearsed is what will play, as the robot will get it: each span of robot samples a job
retargets into its clip (a fresh motion from its start, each later window, a continuation from its cut),
once the retargeting worker has written it, goes through the tracker's live conditioning as the node
would stream it (`LiveFollowed`), and the tracker drives a copy of the live simulator
(`momask_ros.stream.tracked_loop.TrackedSimulation`), faster than real time, on the check worker
(`SpanRehearsal`; the rehearsal itself, its snapshots and its cut search are
`momask_ros.tracker.rehearsal.Rehearsal`'s). It starts where the robot will be: a continuation, or a
fresh motion taking over from one that plays, from the state and tracker memory the rehearsal of what
plays predicted at the takeover; a motion from idle from the robot's measured state when a source gives
one, else from standing. A rehearsed
robot counts as fallen a margin sooner than the tracker's own detection (`REHEARSAL_MAX_TILT_RAD`,
`REHEARSAL_MIN_BASE_HEIGHT_M`): a prediction that comes close to a fall is one.

While it runs, the clip's playable limit (`MotionClip.verified_s`) follows it `Rehearser.margin_s`
behind, so every cut it may still plan lies ahead of playback; playback that catches up holds the pose
until more is cleared. A fresh clip starts playing once the limit passes its start (the first
JointState waits for that); a continuation plays on to its cut while its rehearsal gets ahead.

The verdict, as `momask_ros.tracker.rehearsal.rehearsal_decision` gives it:

* stays up: the span is playable; its line goes into the job's ``physical_windows``;
* falls, with a cut the rehearsal verified: a ``rejected`` status at once (``falls_in_rehearsal``, the fall
  time, ``stops_at_s``); the clip is cut there (`MotionClip.cut`), the conductor returns to standing,
  and ``done`` follows with what played; later segments of its sequence are refused;
* falls, no safe cut (or beyond the robot altogether: ``beyond_robot``): a fresh job that has not started
  is refused (``rejected``; nothing of it plays); one that plays is cut where playback is (its span's
  start at the latest).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from momask_model.motion.quaternion import qinv, qmul
from momask_ros.stream.clip import MotionClip
from momask_ros.stream.job import Job, SpanRehearsal
from momask_ros.stream.playback import MotionPlayback
from momask_ros.stream.state import RobotPose
from momask_ros.stream.tracked_loop import TrackedSimulation
from momask_ros.tracker.controller import TrackerMemory
from momask_ros.tracker.live_reference import LiveReference
from momask_ros.tracker.reference import ReferenceSample, RobotReference
from momask_ros.tracker.rehearsal import Rehearsal, RehearsalResult, rehearsal_decision
from momask_ros.tracker.rollout import RobotState
from momask_ros.tracker.spec import TrackerBundle, TrackerError

__all__ = ["Host", "LiveFollowed", "RehearsalUnavailable", "Rehearser", "StreamStart", "Streamed", "load_rehearsal"]


#: A fall's first cut is tried this long before it, each next one as much earlier [s]: playback stays
#: `CUT_LEAD_S` x `CUT_ATTEMPTS` behind the rehearsal, which is also what a fresh motion's start waits for.
CUT_LEAD_S = 0.5
CUT_ATTEMPTS = 4
#: The rehearsed robot "falls" this much sooner than the tracker's own detection would say: its base tilts
#: past `REHEARSAL_MAX_TILT_RAD` or drops below `REHEARSAL_MIN_BASE_HEIGHT_M` (the spec's are 1.0 rad and
#: 0.35 m). A rehearsal is a prediction: a motion that comes close to a fall in it may fall on the robot.
REHEARSAL_MAX_TILT_RAD = 0.75
REHEARSAL_MIN_BASE_HEIGHT_M = 0.45


class RehearsalUnavailable(ValueError):
    """``physical_checks: rehearse`` cannot run: no usable tracker folder, or a robot the tracker does not
    drive (one line: what and what to do)."""


def load_rehearsal(tracker_dir: str | Path | None, joint_names: Sequence[str], *, robot: str = "") -> Rehearsal:
    """The rehearsal of the tracker in ``tracker_dir`` ('' or None: the download cache) for a robot whose
    joints are ``joint_names`` (any order; the tracker's set). Raises `RehearsalUnavailable`."""
    from momask_ros.tracker import default_tracker_dir, load_spec, load_tracker

    spec = load_spec()  # the robot first: it needs no files and says more than a missing folder
    if sorted(joint_names) != sorted(spec.joint_names):
        raise RehearsalUnavailable(
            f"physical_checks: rehearse works only for robots the tracker drives ({spec.name}: "
            f"{spec.num_joints} joints, {spec.joint_names[0]}, ...); robot {robot or '?'!r} has {len(joint_names)} "
            "other joints: use robot g1, or physical_checks off, warn or reject")
    folder = Path(tracker_dir).expanduser() if tracker_dir else default_tracker_dir()
    try:
        bundle = load_tracker(folder)
        spec = bundle.spec
        strict = dataclasses.replace(spec, fall_max_tilt_rad=min(spec.fall_max_tilt_rad, REHEARSAL_MAX_TILT_RAD),
                                     fall_min_base_height_m=max(spec.fall_min_base_height_m, REHEARSAL_MIN_BASE_HEIGHT_M))
        bundle = dataclasses.replace(bundle, spec=strict)
        rehearsal = Rehearsal(bundle, conditioning=lambda reference: LiveFollowed(reference, bundle),
                              lead_s=CUT_LEAD_S, max_cut_attempts=CUT_ATTEMPTS)
    except TrackerError as exc:
        raise RehearsalUnavailable(f"physical_checks: rehearse needs the tracker (tracker_dir {str(folder)!r}): "
                                   f"{exc}") from None
    rehearsal.simulation = TrackedSimulation(bundle)  # a copy of the live simulator, not the tracker's own
    return rehearsal


@dataclasses.dataclass(frozen=True, eq=False)
class Streamed(RobotReference):
    """A motion as the node streams it (its samples at the control rate, joints in the tracker's order),
    with the base twist it publishes (world frame, (N, 3) each; None: the pose's differences);
    ``from_standing``: the tracker blends it in from standing (nothing plays before it), else it follows
    it at once (it continues, or takes over from, a motion the tracker is following)."""

    base_lin_vel_world: np.ndarray | None = None
    base_ang_vel_world: np.ndarray | None = None
    from_standing: bool = True
    delay_s: float = 0.1  # the tracker follows the stream this far behind (0: the robot is already following it)
    open: bool = False  # more of it is coming (`LiveFollowed.grow`): nothing is followed past its last sample


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
        self._data: dict[str, Any] = {}  # the stream so far, shared by shallow copies
        self._blend_in = bool(getattr(stream, "from_standing", True))
        self._bundle, self._dt = bundle, 1.0 / bundle.spec.policy_rate_hz
        self.play_start_s = float(getattr(stream, "delay_s", 0.1))
        self._cut_s: float | None = None  # where `stop` stopped it, on the stream's clock
        self._take(stream)
        self._follow()

    def _take(self, stream: RobotReference) -> None:
        times = stream.times_s - stream.times_s[0]
        pose = (stream.base_pos_world, stream.base_quat_wxyz, stream.joint_pos_rad)
        twist = (getattr(stream, "base_lin_vel_world", None), getattr(stream, "base_ang_vel_world", None))
        self._data.update(times=times, pose=pose, twist=twist if twist[0] is not None else _twist(times, *pose[:2]),
                          open=bool(getattr(stream, "open", False)))

    def grow(self, stream: RobotReference) -> None:
        """The stream so far, longer (its first samples are those followed already; ``stream.open``: more
        is coming)."""
        if not self._data["open"]:
            raise ValueError("the stream has ended; it cannot grow")
        self._take(stream)

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
        return self.play_start_s + self._stop_s if self.open else self.end_s

    def _follow(self) -> None:
        """Start following afresh (with the current stop); samples are made as the rehearsal asks for them."""
        spec = self._bundle.spec
        live = LiveReference(standing_pose_rad=spec.default_pose_rad, standing_height_m=spec.standing_height_m,
                             joint_names=spec.joint_names, joint_range_rad=self._bundle.joint_range_rad,
                             max_base_speed_mps=spec.max_base_speed_mps, max_tilt_rad=spec.max_reference_tilt_rad,
                             blend_in_s=spec.blend_in_s if self._blend_in else 0.0, blend_out_s=spec.blend_out_s)
        live.begin(0.0)
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
        r = qmul(quat[i + 1], qinv(quat[i]))
        r = r if r[0] >= 0 else -r
        sin = float(np.linalg.norm(r[1:]))
        if sin > 1e-12:
            angular[i] = r[1:] * (2.0 * np.arctan2(sin, r[0]) / sin / (times[i + 1] - times[i]))
    return linear, angular


@dataclasses.dataclass(frozen=True)
class _Notes:
    notes: list

    def summary(self) -> str:
        return "; ".join(self.notes) if self.notes else "reference used as given"


@dataclasses.dataclass(frozen=True)
class StreamStart:
    """Where a fresh motion's stream would start now (`Conductor.use_rehearser` says): from ``pose`` with a
    ``blend_s`` blend, one sample every ``period_s``; taking over from ``playing`` (the clip that plays, or
    None when idle) at its clip time ``takeover_s`` (now, or its end when the new motion waits for it)."""

    pose: RobotPose
    blend_s: float
    period_s: float
    playing: MotionClip | None = None
    takeover_s: float = 0.0


class Host(Protocol):
    """What a `Rehearser` needs of the producer whose spans it rehearses."""

    lock: Any

    def report(self, state: str, job: Job | None, fields: dict) -> None: ...

    def release(self, job: Job) -> None:
        """A fresh job may start playing (its clip's start is cleared)."""

    def refuse(self, job: Job, status: dict) -> None:
        """A fresh job that has not started is refused (``rejected`` with ``status``; nothing plays)."""

    def drop(self, job: Job) -> None:
        """A job that will never play (its motion is cut before it takes over) waits no more."""

    def drop_following(self, job: Job, reason: str) -> None:
        """The later segments of ``job``'s sequence are refused (they would continue a stopped motion)."""


class Rehearser:
    """Rehearses the spans of the clips the stream plays (module docstring). One check worker runs it.

    Args:
        rehearsal: the rehearsal (its tracker, robot model, cut lead and attempts).
        joint_names: the stream's joint order (its clips' columns).
        state: the robot's measured state now, or None (rehearsals then start from standing).
        step_s: rehearsed time between two raises of the playable limit [s of the rehearsal's clock].
    """

    def __init__(self, rehearsal: Rehearsal, *, joint_names: Sequence[str],
                 state: Callable[[], RobotState | None] = lambda: None, step_s: float = 0.25) -> None:
        self.rehearsal = rehearsal
        self.state = state
        #: where a fresh motion's stream starts: the conductor that plays the spans sets it
        self.stream_start: Callable[[], StreamStart] = lambda: StreamStart(
            RobotPose(np.zeros(len(joint_names)), base_valid=False), 0.0, 0.02)
        self.step_s = float(step_s)
        names = list(joint_names)
        self._order = np.array([names.index(j) for j in rehearsal.bundle.spec.joint_names])
        self.spans = 0  # rehearsed so far (diagnostics)
        #: per clip: (clip time, the rehearsed robot's state and tracker memory there) along its rehearsals
        self._trails: weakref.WeakKeyDictionary[MotionClip, list[tuple[float, RobotState, TrackerMemory]]] = \
            weakref.WeakKeyDictionary()

    @property
    def margin_s(self) -> float:
        """How far behind the rehearsal playback stays [s of motion]: the earliest cut it may plan."""
        return self.rehearsal.lead_s * self.rehearsal.max_cut_attempts

    def reference(self, job: Job, task: SpanRehearsal, *, start_s: float | None = None,
                  following: bool = False, fresh: StreamStart | None = None) -> Streamed | None:
        """The span (from clip time ``start_s``, default its start) as the node will stream it: its samples
        played as the conductor plays them (blended in from the pose it holds, for a ``fresh`` start; at
        the job's speed), joints in the tracker's order; ``following``: the rehearsed robot is already
        following the stream there. None when the span is too short to be a motion."""
        times, q, pos, quat = job.clip.span(task.start_s if start_s is None else start_s, task.end_s)
        if times.shape[0] < 2 or times[-1] - times[0] < 1e-3:
            return None
        clip = job.clip
        frames = max(2, int(np.ceil((times[-1] - times[0]) * clip.fps)) + 2)
        copy_ = MotionClip(joint_space=clip.joint_space, fps=clip.fps, human_joints_ros=np.zeros((frames, 22, 3)))
        copy_.append(times - times[0], q, pos, quat)
        copy_.finish()
        pose, blend_s, period_s = RobotPose(q[0].copy(), pos[0].copy(), quat[0].copy()), 0.0, 0.02
        if fresh is not None:  # else a continuation or a later window: no blend, the stream goes straight on
            pose, blend_s, period_s = fresh.pose, fresh.blend_s, fresh.period_s
        play = MotionPlayback(copy_, pose, speed=job.command.speed, blend_s=blend_s)
        out, t = [], 0.0
        while (sample := play.sample(t)) is not None:
            out.append((t, sample))
            if play.finished(t):
                break
            t += period_s
        if len(out) < 2:
            return None
        spec = self.rehearsal.bundle.spec
        return Streamed(np.array([t for t, _ in out]), np.array([s.base_position for _, s in out]),
                        np.array([s.base_quat_wxyz for _, s in out]),
                        np.array([s.positions for _, s in out])[:, self._order], joint_names=spec.joint_names,
                        base_lin_vel_world=np.array([s.base_linear_velocity for _, s in out]),
                        base_ang_vel_world=np.array([s.base_angular_velocity for _, s in out]),
                        from_standing=fresh is not None and fresh.playing is None and not following,
                        delay_s=0.0 if following else 0.1)

    def run(self, task: SpanRehearsal, host: Host) -> RehearsalResult | None:
        """Rehearse one span, raising its clip's playable limit as it goes, and act on the verdict."""
        job, clip = task.job, task.job.clip
        if clip is None or self._gone(job) or (clip.stop_at_s is not None and task.start_s >= clip.stop_at_s):
            return None
        start, state, memory = task.start_s, None, None
        fresh = self.stream_start() if task.fresh else None
        # from the robot's state where the stream takes over, as rehearsed: a continuation in its own
        # clip; a fresh start in the clip that plays, now or at its end (else measured, or standing)
        over, at = (clip, task.start_s) if fresh is None else (fresh.playing, fresh.takeover_s)
        known = [entry for entry in self._trails.get(over, ())
                 if entry[0] <= at + 1e-9] if over is not None else []
        if known:
            _, state, memory = known[-1]
            if fresh is None:
                start = known[-1][0]
            memory = dataclasses.replace(memory, next_policy_s=None)  # its policy clock was the other run's
        reference = self.reference(job, task, start_s=start, following=memory is not None, fresh=fresh)
        if reference is None:  # a few samples (a flushed tail): nothing a tracker could fall on
            clip.verify(task.end_s, since=task.since)
            if task.fresh:
                host.release(job)
            return None
        speed = job.command.speed  # the stream's clock is the playback's: clip time = speed x stream time
        trail = self._trails.setdefault(clip, [])
        self.spans += 1
        try:
            run = self.rehearsal.start(reference, self.state() if memory is None else state, memory)
        except TrackerError as exc:  # conditioning finds nothing of it within the robot
            result = RehearsalResult.beyond_robot(str(exc))
            self._apply(task, host, result, start)
            return result
        while True:
            result = run.advance(min(run.rehearsed_s + self.step_s, run.end_s))
            if self._gone(job):
                return None
            if result.falls or result.complete:
                break
            follows = start + run.reference.motion_time_s(run.rehearsed_s) * speed  # the clip time followed now
            if follows < task.end_s - 1e-9:  # where a continuation of it would start from
                trail.append((follows, self.rehearsal.simulation.state(), self.rehearsal.tracker.memory()))
            playable = follows - self.margin_s * speed
            if playable > task.start_s:
                clip.verify(min(playable, task.end_s), since=task.since)
                if task.fresh:
                    host.release(job)
        self._apply(task, host, result, start)
        return result

    @staticmethod
    def _gone(job: Job) -> bool:
        return job.cancelled or job.session is None or job.session.closed

    def _apply(self, task: SpanRehearsal, host: Host, result: RehearsalResult, start: float) -> None:
        """Act on a span's verdict; ``start``: the clip time its rehearsal started from."""
        job, clip = task.job, task.job.clip
        speed, origin = job.command.speed, job.start_frame / clip.fps
        decision = rehearsal_decision(task.window, result, start_s=(start - origin) / speed)
        with host.lock:
            job.fields["physical_windows"] = [*job.fields.get("physical_windows", []), decision.entry]
        if decision.status is None:  # stays up
            clip.verify(task.end_s, since=task.since)
            if task.fresh:
                host.release(job)
            return
        host.drop_following(job, decision.status["reason"])  # the rest would continue a motion that stops
        if task.fresh and decision.refuse_job and clip.verified_s <= task.start_s:
            host.refuse(job, decision.status)  # not started: nothing of it plays
            return
        # a verified cut, else (no safe cut) where playback is now: the span's start at the latest
        stop = start + result.cut.motion_time_s * speed if result.cut is not None else max(task.start_s, clip.read_s)
        with host.lock:
            job.stop_generating = job.cut = True
        clip.cut(stop)
        host.report("rejected", job, {**decision.status, "stops_at_s": round((stop - origin) / speed, 3)})
        if stop <= job.switch_frame / clip.fps + 1e-9:
            host.drop(job)  # a continuation cut before it takes over: it never plays
        elif task.fresh:
            host.release(job)
