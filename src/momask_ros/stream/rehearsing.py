"""Rehearsal in the robot stream (``physical_checks: rehearse``): no motion reaches the robot that the
whole-body tracker, rehearsing it on a copy of the simulator, predicts would make it fall.

What is rehearsed is what will play, as the robot will get it: each span of robot samples a job
retargets into its clip (a fresh motion from its start, each later window, a continuation from its cut),
once the retargeting worker has written it, goes through the tracker's live conditioning as the node
would stream it (`LiveFollowed`), and the tracker drives a copy of the live simulator
(`momask_ros.stream.tracked_loop.TrackedSimulation`) from the robot's measured state when a source gives
one, else from standing, faster than real time, on the check worker (`SpanRehearsal`; the rehearsal
itself, its snapshots and its cut search are `momask_ros.tracker.rehearsal.Rehearsal`'s). A rehearsed
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
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from momask_ros.stream.job import Job, SpanRehearsal
from momask_ros.stream.tracked_loop import TrackedSimulation
from momask_ros.tracker.live_reference import LiveReference
from momask_ros.tracker.reference import ReferenceSample, RobotReference
from momask_ros.tracker.rehearsal import Rehearsal, RehearsalResult, rehearsal_decision
from momask_ros.tracker.rollout import RobotState
from momask_ros.tracker.spec import TrackerBundle, TrackerError

__all__ = ["Host", "LiveFollowed", "RehearsalUnavailable", "Rehearser", "load_rehearsal"]


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


class LiveFollowed:
    """What the live tracker follows while the node streams a motion, as a reference a
    `Rehearsal` can run, stop and measure: the motion's samples go through the tracker's own live
    conditioning (`LiveReference`: blended in from standing as it plays, roll, pitch and joints clipped,
    speed capped, the same velocities) as they would arrive at ``rate_hz``; where the stream stops (its
    end, or a cut: `stop`) the pose is held and the reference blends back to standing, as the tracker
    does on the node's ``done``. Nothing is slowed down or skipped: the node plays the motion as it is.
    Times [s] from the start of the motion; the policy's input does not depend on the path's placement,
    so `reanchor` has nothing to move."""

    play_start_s = 0.0
    time_stretch = 1.0

    def __init__(self, reference: RobotReference, bundle: TrackerBundle, *, rate_hz: float = 50.0) -> None:
        self._times = reference.times_s - reference.times_s[0]
        self._pose = (reference.base_pos_world, reference.base_quat_wxyz, reference.joint_pos_rad)
        self._bundle, self._dt = bundle, 1.0 / rate_hz
        self._stop_s = float(self._times[-1])
        self._follow()

    def _follow(self) -> None:
        spec = self._bundle.spec
        live = LiveReference.from_spec(spec, self._bundle.joint_range_rad)
        live.begin(0.0)
        self.end_s = self._stop_s + spec.blend_out_s
        grid = np.arange(0.0, self.end_s + self._dt + 1e-9, self._dt)
        k, last, rows = 0, 0, []
        pos, quat, q = self._pose
        for t in grid:  # pushed as they arrive (the live buffer keeps only its last seconds)
            while k < self._times.size and self._times[k] <= min(t, self._stop_s) + 1e-9:
                live.push(float(self._times[k]), pos[k], quat[k], q[k])
                last, k = k, k + 1
            if t > self._stop_s + 1e-9:  # the node holds the pose where it stopped and says done
                if not rows or rows[-1].t_s <= self._stop_s + 1e-9:
                    live.end(self._stop_s)
                live.push(float(t), pos[last], quat[last], q[last])
            rows.append(live.sample(float(t)))
        self._rows = rows
        self.report = _Notes(live.report.notes())

    def __deepcopy__(self, memo: dict) -> "LiveFollowed":
        return copy.copy(self)  # its samples are never changed in place (`stop` makes new ones)

    def sample(self, t_s: float) -> ReferenceSample:
        return self._rows[min(max(int(round(t_s / self._dt)), 0), len(self._rows) - 1)]

    def stop(self, t_s: float) -> None:
        """The stream stops at t_s [s]: hold there and blend back to standing."""
        if t_s < self._stop_s:
            self._stop_s = max(float(t_s), 0.0)
            self._follow()

    def reanchor(self, t_s: float, base_pos_world: np.ndarray, base_quat_wxyz: np.ndarray) -> None:
        pass

    def motion_time_s(self, t_s: float) -> float:
        return float(min(max(t_s, 0.0), self._stop_s))


@dataclasses.dataclass(frozen=True)
class _Notes:
    notes: list

    def summary(self) -> str:
        return "; ".join(self.notes) if self.notes else "reference used as given"


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
        self.step_s = float(step_s)
        names = list(joint_names)
        self._order = np.array([names.index(j) for j in rehearsal.bundle.spec.joint_names])
        self.spans = 0  # rehearsed so far (diagnostics)

    @property
    def margin_s(self) -> float:
        """How far behind the rehearsal playback stays [s of motion]: the earliest cut it may plan."""
        return self.rehearsal.lead_s * self.rehearsal.max_cut_attempts

    def reference(self, job: Job, task: SpanRehearsal) -> RobotReference | None:
        """The span's samples as the tracker's reference, on the playback's clock (the job's speed);
        None when the span is too short to be a motion."""
        times, q, pos, quat = job.clip.span(task.start_s, task.end_s)
        if times.shape[0] < 2 or times[-1] - times[0] < 1e-3:
            return None
        spec = self.rehearsal.bundle.spec
        return RobotReference((times - times[0]) / job.command.speed, pos, quat, q[:, self._order],
                              joint_names=spec.joint_names)

    def run(self, task: SpanRehearsal, host: Host) -> RehearsalResult | None:
        """Rehearse one span, raising its clip's playable limit as it goes, and act on the verdict."""
        job, clip = task.job, task.job.clip
        if clip is None or self._gone(job) or (clip.stop_at_s is not None and task.start_s >= clip.stop_at_s):
            return None
        reference = self.reference(job, task)
        if reference is None:  # a few samples (a flushed tail): nothing a tracker could fall on
            clip.verify(task.end_s, since=task.since)
            if task.fresh:
                host.release(job)
            return None
        speed = job.command.speed
        self.spans += 1
        try:
            run = self.rehearsal.start(reference, self.state())
        except TrackerError as exc:  # conditioning finds nothing of it within the robot
            result = RehearsalResult.beyond_robot(str(exc))
            self._apply(task, host, result)
            return result
        while True:
            result = run.advance(min(run.rehearsed_s + self.step_s, run.end_s))
            if self._gone(job):
                return None
            if result.falls or result.complete:
                break
            playable = task.start_s + (run.reference.motion_time_s(run.rehearsed_s) - self.margin_s) * speed
            if playable > task.start_s:
                clip.verify(min(playable, task.end_s), since=task.since)
                if task.fresh:
                    host.release(job)
        self._apply(task, host, result)
        return result

    @staticmethod
    def _gone(job: Job) -> bool:
        return job.cancelled or job.session is None or job.session.closed

    def _apply(self, task: SpanRehearsal, host: Host, result: RehearsalResult) -> None:
        job, clip = task.job, task.job.clip
        speed, origin = job.command.speed, job.start_frame / clip.fps
        decision = rehearsal_decision(task.window, result, start_s=(task.start_s - origin) / speed)
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
        stop = task.start_s + result.cut.motion_time_s * speed if result.cut is not None else max(task.start_s,
                                                                                                   clip.read_s)
        with host.lock:
            job.stop_generating = job.cut = True
        clip.cut(stop)
        host.report("rejected", job, {**decision.status, "stops_at_s": round((stop - origin) / speed, 3)})
        if stop <= job.switch_frame / clip.fps + 1e-9:
            host.drop(job)  # a continuation cut before it takes over: it never plays
        elif task.fresh:
            host.release(job)
