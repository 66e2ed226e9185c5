"""Rehearsal in the robot stream (``physical_checks: rehearse``): no motion reaches the robot that the
whole-body tracker, rehearsing it on a copy of the simulator, predicts would make it fall.

What is rehearsed is what will play, as the robot will get it: each span of robot samples a job
retargets into its clip (a fresh motion from its start, each later window, a continuation from its cut),
once the retargeting worker has written it (a fresh clip's first span: as it writes it, chunk by chunk),
goes through the tracker's live conditioning as the node would stream it (`momask_ros.stream.followed`),
and the tracker drives a copy of the live simulator
(`momask_ros.stream.tracked_loop.TrackedSimulation`), faster than real time, on the check worker
(`SpanRehearsal`; the rehearsal itself, its snapshots and its cut search are
`momask_ros.tracker.rehearsal.Rehearsal`'s). It starts where the robot will be: a continuation, or a
fresh motion taking over from one that plays, from the state and tracker memory the rehearsal of what
plays predicted at the takeover; a motion from idle within a few seconds of the last one's end (the
tracker still blending it out, the robot settling), from what that motion's rehearsal predicted there,
blending in from the tracker's weight then; else from the robot's measured state when a source gives
one, else from standing (each window's ``rehearsed_from`` says which); a robot standing still is
rehearsed with the memory of a tracker that has held it standing (`Rehearsal.standing_memory`: with a
fresh tracker's empty memory, a 1.5 s walk ended 0.01 rad off the live run; with it, 1e-7). A
takeover is rehearsed from the measured state too when the robot has drifted from the prediction
(tilting `DIVERGED_TILT_RAD` more than predicted for now). A rehearsed robot counts as fallen a margin
sooner than the tracker's own detection (`momask_ros.stream.rehearsal_setup`, which also loads the
rehearsal the node runs): a prediction that comes close to a fall is one.

With the memory of the robot's own tracker as well (``tracker/memory``: its observation history and last
action), a rehearsal from the measured state continues as that tracker would, and a motion that starts
now (a preempt, or one from idle) starts from the robot as it is rather than from a prediction. And a
motion that plays is watched: every `WATCH_EVERY_S` the rest of it is rehearsed again,
`WATCH_HORIZON_S` ahead, from the robot as it is (a prediction chained from a long dance's start drifts
after a few seconds); a fall the watch finds cuts it like any other (``rehearsed_from: watched``).

While it runs, the clip's playable limit (`MotionClip.verified_s`) follows it `Rehearser.margin_s`
behind, so every cut it may still plan lies ahead of playback; playback that catches up holds the pose
until more is cleared (the job's ``rehearsal_held_s`` says how long). A fresh clip starts playing once
the limit passes its start: the first JointState waits for the rehearsal of its first `margin_s` only,
not for the rest of its window to be retargeted; a continuation plays on to its cut while its
rehearsal gets ahead.

The verdict, as `momask_ros.tracker.rehearsal.rehearsal_decision` gives it:

* stays up: the span is playable; its line goes into the job's ``physical_windows``;
* falls, with a cut the rehearsal verified: a ``rejected`` status at once (``falls_in_rehearsal``, the fall
  time, ``stops_at_s``); the clip is cut there (`MotionClip.cut`), the conductor returns to standing,
  and ``done`` follows with what played; later segments of its sequence are refused;
* falls, no safe cut (or beyond the robot altogether: ``beyond_robot``): a fresh job that has not started
  is refused (``rejected``; nothing of it plays); a continuation none of which would play is taken back
  (``kept_playing``): the motion it would have continued plays on to its end, as that motion's own
  rehearsal cleared it (where playback has not reached the cut and that end was rehearsed whole);
  else the job is cut where playback is (its span's start at the latest).
"""
from __future__ import annotations

import dataclasses
import math
import time
import weakref
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from momask_ros.stream.clip import MotionClip
from momask_ros.stream.followed import SpanStream, StreamStart
from momask_ros.stream.job import Job, SpanRehearsal
from momask_ros.stream.state import RobotPose
from momask_ros.tracker.controller import TrackerMemory
from momask_ros.tracker.live_reference import REFERENCE_DELAY_S
from momask_ros.tracker.rehearsal import Rehearsal, RehearsalResult, rehearsal_decision
from momask_ros.tracker.rollout import RobotState
from momask_ros.tracker.rotations import tilt_from_quat_wxyz
from momask_ros.tracker.spec import TrackerError

__all__ = ["Host", "Rehearser"]


#: A motion taking over is rehearsed from the robot's measured state, not from the rehearsal of what plays,
#: when the robot tilts this much more than that rehearsal predicted for now [rad] (bench_rehearsal
#: stream, seed 12: an 8 s dance left the robot at tilt 0.51 where its rehearsal predicted 0.28).
DIVERGED_TILT_RAD = 0.15
#: While a motion plays, the rest of it is rehearsed again (a watch) every `WATCH_EVERY_S` of playback
#: [s of the robot's clock], `WATCH_HORIZON_S` ahead, from the robot's measured state and its tracker's
#: memory: a prediction chained from the motion's start holds for a few seconds only (bench_rehearsal
#: stream, seed 27: within 0.03 rad for 3.5 s, then 0.53 rad live against 0.16 predicted). A watch that
#: falls cuts the motion, no sooner than `WATCH_CUT_AFTER_S` after where the tracker followed it then.
WATCH_EVERY_S = 1.0
WATCH_HORIZON_S = 4.0
WATCH_CUT_AFTER_S = 0.3


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

    def checks_waiting(self) -> bool:
        """Spans wait for rehearsal (a watch gives way to them)."""

    def drop_following(self, job: Job, reason: str) -> None:
        """The later segments of ``job``'s sequence are refused (they would continue a stopped motion)."""

    def restore(self, job: Job) -> Job | None:
        """A continuation is dropped and, where it can be, taken back: the motion it continued plays on
        (returned; None: the caller cuts)."""


class Rehearser:
    """Rehearses the spans of the clips the stream plays (module docstring). One check worker runs it.

    Args:
        rehearsal: the rehearsal (its tracker, robot model, cut lead and attempts).
        joint_names: the stream's joint order (its clips' columns).
        state: the robot's measured state now, or None (rehearsals then start from standing).
        memory: the memory of the robot's own tracker now (`Tracker.memory`), or None: a rehearsal from
            the measured state then starts with a standing tracker's memory, or a fresh one's. With both,
            a motion that plays is watched (`watch_due`).
        step_s: rehearsed time between two raises of the playable limit [s of the rehearsal's clock]; also
            the spacing of the predicted states a preempting motion is rehearsed from (the last one at or
            before its takeover: at 0.25 s a jog was up to a stride out of phase, and the dance that
            preempted it fell live but not in rehearsal; bench_rehearsal stream, seed 7).
    """

    def __init__(self, rehearsal: Rehearsal, *, joint_names: Sequence[str],
                 state: Callable[[], RobotState | None] = lambda: None,
                 memory: Callable[[], TrackerMemory | None] = lambda: None, step_s: float = 0.05) -> None:
        self.rehearsal = rehearsal
        self.state = state
        self.memory = memory
        #: where a fresh motion's stream starts: the conductor that plays the spans sets it
        self.stream_start: Callable[[], StreamStart] = lambda: StreamStart(
            RobotPose(np.zeros(len(joint_names)), base_valid=False), 0.0, 0.02)
        self.step_s = float(step_s)
        names = list(joint_names)
        self._order = np.array([names.index(j) for j in rehearsal.bundle.spec.joint_names])
        self.spans = 0  # rehearsed so far (diagnostics)
        #: a live tracker's memory while its robot stands still (`Rehearsal.standing_memory`), made up
        #: front so that no command's first JointState waits for it
        self._standing = rehearsal.standing_memory()
        #: per clip: (clip time, the rehearsed robot's state, tracker memory and live conditioning state
        #: there, the job whose rehearsal it is) along its rehearsals, in the order rehearsed (`_predicted`)
        self._trails: weakref.WeakKeyDictionary[MotionClip, list[tuple[float, RobotState, TrackerMemory, dict,
                                                                       Job]]] = weakref.WeakKeyDictionary()
        #: per clip rehearsed to its end: (robot time since its stream stopped, state, memory, the job whose
        #: rehearsal it is, the clip time of that end) while the rehearsed robot blends out and settles; a
        #: motion from idle soon after starts there (`_settling`)
        self._afters: weakref.WeakKeyDictionary[MotionClip, list[tuple[float, RobotState, TrackerMemory, Job,
                                                                       float]]] = weakref.WeakKeyDictionary()
        #: per playing job: the clip time its last watch started from
        self._watched: weakref.WeakKeyDictionary[Job, float] = weakref.WeakKeyDictionary()
        self.watches = 0  # run so far (diagnostics)

    @property
    def margin_s(self) -> float:
        """How far behind the rehearsal playback stays [s of motion]: the earliest cut it may plan."""
        return self.rehearsal.lead_s * self.rehearsal.max_cut_attempts

    def run(self, task: SpanRehearsal, host: Host, *,
            end: Callable[[bool], float | None] = lambda idle: None) -> RehearsalResult | None:
        """Rehearse one span, raising its clip's playable limit as it goes, and act on the verdict. An open
        span (``end_s`` inf) is rehearsed as the retargeting writes it, up to ``end(idle)`` once that is
        known (``idle``: the clip stopped growing; it then ends where the clip is)."""
        job, clip = task.job, task.job.clip
        if clip is None or self._gone(job) or (clip.stop_at_s is not None and task.start_s >= clip.stop_at_s):
            return None
        if task.watch:
            return self._watch(task, host)
        start, state, memory, carried = task.start_s, None, None, None
        fresh = self.stream_start() if task.fresh else None
        # from the robot's state where the stream takes over, as rehearsed: a continuation in its own
        # clip; a fresh start in the clip that plays, now or at its end; from idle, in the blend-out and
        # settling of the clip that ended, while that was rehearsed (else measured, or standing)
        over, at = (clip, task.start_s) if fresh is None else (fresh.playing, fresh.takeover_s)
        known = self._predicted(over, at) if over is not None else []
        after = fresh is not None and fresh.playing is None and fresh.ended is not None
        if after:
            entries = self._settling(fresh.ended)
            if entries and fresh.since_end_s <= entries[-1][0] + self.step_s:
                known = [entry for entry in entries if entry[0] <= fresh.since_end_s + 1e-9]
        if known and fresh is not None and self._from_robot(fresh, after):
            known = []
        if known:
            state, memory = known[-1][1:3]  # a trail's entry, or a settling's
            if fresh is None:
                start, carried = known[-1][0], known[-1][3]
            memory = dataclasses.replace(memory, next_policy_s=None)  # its policy clock was the other run's
        stream = SpanStream(job, start, order=self._order, spec=self.rehearsal.bundle.spec,
                            following=memory is not None and not after, fresh=fresh, carried=carried)
        while (reference := stream.update(task.end_s)) is None and not math.isfinite(task.end_s):
            if (task := self._await(task, clip, end)) is None:
                return None
        if reference is None:  # a few samples (a flushed tail): nothing a tracker could fall on
            clip.verify(task.end_s, since=task.since)
            if task.fresh:
                host.release(job)
            return None
        origin = "predicted" if memory is not None else "measured"
        if memory is None:
            state, memory = self._measured()
            origin = "measured" if state is not None else "standing"
        return self._rehearse(task, host, stream, reference, state, memory, start, origin, end)

    def watch_due(self, job: Job) -> SpanRehearsal | None:
        """A watch of the motion ``job`` plays (the control loop asks each tick), when one is due: its clip
        is written and cleared to its end (no span of it waits), the tracker follows it past the job's
        switch, the robot's measured state and its tracker's memory are known, and playback moved on
        `WATCH_EVERY_S` since the job's start or its last watch."""
        clip = job.clip
        if clip is None or self._gone(job) or not clip.complete or clip.failed is not None:
            return None
        end = clip.stop_at_s if clip.stop_at_s is not None else clip.duration_s
        followed = clip.read_s - REFERENCE_DELAY_S * job.command.speed
        since = self._watched.get(job, job.switch_frame / clip.fps)
        if (clip.verified_s < end - 1e-6 or followed >= end or followed < since + WATCH_EVERY_S * job.command.speed
                or not self._predicted(clip, followed) or self.state() is None or self.memory() is None):
            return None
        self._watched[job] = followed
        return SpanRehearsal(job, job.rehearsals, followed, end, fresh=False, since=len(clip.replaced), watch=True)

    def _watch(self, task: SpanRehearsal, host: Host) -> RehearsalResult | None:
        """A watch (`watch_due`): the rest of the clip from where the tracker follows it, as the node streams
        it on, from the robot's measured state and its tracker's memory; the conditioning's state is the
        latest prediction's for there. It adds nothing to what later rehearsals start from."""
        known = self._predicted(task.job.clip, task.start_s)
        state, memory = self.state(), self.memory()
        if not known or state is None or memory is None:
            return None
        self.watches += 1
        with host.lock:  # the job's statuses say how often it was watched
            task.job.fields["watched"] = task.job.fields.get("watched", 0) + 1
        stream = SpanStream(task.job, known[-1][0], order=self._order, spec=self.rehearsal.bundle.spec,
                            following=True, fresh=None, carried=known[-1][3])
        reference = stream.update(task.end_s)
        if reference is None:
            return None
        return self._rehearse(task, host, stream, reference, state, dataclasses.replace(memory, next_policy_s=None),
                              known[-1][0], "watched", lambda idle: None)

    def _measured(self) -> tuple[RobotState | None, TrackerMemory | None]:
        """The robot's measured state and the memory its rehearsal starts with: its own tracker's when
        known, else that of a tracker holding it standing when it stands still, else none (a fresh start)."""
        state, memory = self.state(), self.memory()
        if memory is not None and state is not None:
            return state, dataclasses.replace(memory, next_policy_s=None)  # its policy clock is the live one's
        if state is None or self.rehearsal.settled(state):
            return state, self._standing  # the robot stands still: so has its tracker, for a while
        return state, None

    def _rehearse(self, task: SpanRehearsal, host: Host, stream: SpanStream, reference, state: RobotState | None,
                  memory: TrackerMemory | None, start: float, origin: str,
                  end: Callable[[bool], float | None]) -> RehearsalResult | None:
        """Rehearse a span's stream (`run`), raising the clip's playable limit, and act on the verdict; a
        watch rehearses `WATCH_HORIZON_S` ahead only, and acts only on a fall."""
        job, clip = task.job, task.job.clip
        speed = job.command.speed  # the stream's clock is the playback's: clip time = speed x stream time
        trail = self._trails.setdefault(clip, [])
        stopped_at = None  # the rehearsed time where the clip's stream stopped (a span that ends the clip)
        if not task.watch:
            self.spans += 1
        try:
            run = self.rehearsal.start(reference, state, memory)
        except TrackerError as exc:  # conditioning finds nothing of it within the robot
            result = RehearsalResult.beyond_robot(str(exc))
            if not task.watch:
                self._apply(task, host, result, start, origin)
            return result
        if task.watch:
            run.earliest_cut_s = WATCH_CUT_AFTER_S
        released = not task.fresh
        horizon = WATCH_HORIZON_S if task.watch else math.inf
        while True:
            target = min(run.rehearsed_s + self.step_s, run.end_s, run.reference.known_s, horizon)
            first = run.reference.play_start_s + self.margin_s + 1.0 / clip.fps / speed  # clears the first sample
            if not released and run.rehearsed_s < first:
                target = min(target, first)  # the first JointState waits for this: no further than it needs
            if target <= run.rehearsed_s + 1e-9:  # caught up with the retargeting: follow it further
                if (task := self._await(task, clip, end)) is None:
                    return None
                run.reference.grow(stream.update(task.end_s))
                continue
            result = run.advance(target)
            if self._gone(job) or (task.watch and host.checks_waiting()):
                return None  # a watch gives way to the spans that wait
            if result.falls or result.complete:
                break
            if task.watch:
                if run.rehearsed_s >= horizon - 1e-9:
                    return result  # stays up as far as a watch looks
                continue  # it clears nothing and leaves no prediction behind
            follows = start + run.reference.motion_time_s(run.rehearsed_s) * speed  # the clip time followed now
            if follows < task.end_s - 1e-9:  # where a continuation of it would start from
                trail.append((follows, self.rehearsal.simulation.state(), self.rehearsal.tracker.memory(),
                              run.reference.carried(), job))
            elif clip.complete and task.end_s >= clip.duration_s - 1e-6:  # past its end: a motion from idle
                # started soon after starts from here
                stopped_at = run.rehearsed_s if stopped_at is None else stopped_at
                state_now, memory_now = self.rehearsal.simulation.state(), self.rehearsal.tracker.memory()
                self._afters.setdefault(clip, []).append(
                    (run.rehearsed_s - stopped_at, state_now, memory_now, job, clip.duration_s))
            # playback stays margin_s of the robot's clock behind (past the motion's end too: a short one
            # need not be rehearsed to its end before it starts); its end is cleared by the verdict
            playable = min(start + (run.rehearsed_s - run.reference.play_start_s - self.margin_s) * speed, follows)
            if playable > task.start_s:
                clip.verify(min(playable, task.end_s - 1e-6), since=task.since)
                if not released:
                    host.release(job)
                    released = True
        self._apply(task, host, result, start, origin)
        return result

    def _predicted(self, clip: MotionClip, at_s: float) -> list[tuple]:
        """The trail of ``clip`` up to clip time ``at_s``: what its rehearsals predicted, without the
        predictions for a job that will never play (superseded, refused or taken back: the clip plays
        what it continued instead); the last entry is the latest prediction for then."""
        return [entry for entry in self._trails.get(clip, ()) if entry[0] <= at_s + 1e-9 and not entry[4].cancelled]

    def _settling(self, clip: MotionClip) -> list[tuple]:
        """The predicted blend-out and settling after ``clip``'s end as it played: the latest rehearsal
        that reached the end the clip has now (a continuation may have replaced it, or a cut ended it
        sooner: none then) by a job that plays."""
        end = clip.stop_at_s if clip.stop_at_s is not None else clip.duration_s
        valid = [e for e in self._afters.get(clip, ()) if not e[3].cancelled and abs(e[4] - end) < 1e-6]
        return [e for e in valid if e[3] is valid[-1][3]] if valid else []

    def _from_robot(self, fresh: StreamStart, after: bool) -> bool:
        """Whether a fresh motion starts from the robot's measured state rather than from the prediction of
        what played before it: with its tracker's memory known, when it starts now (a preempt, or from
        idle: ``after``), the robot as it is; and when the robot is not where that prediction put it."""
        now = after or (fresh.playing is not None and fresh.takeover_s <= fresh.playing.read_s + 1e-6)
        if now and self.memory() is not None and self.state() is not None:
            return True
        return fresh.playing is not None and self._diverged(fresh.playing, fresh.speed)

    def _diverged(self, playing: MotionClip, speed: float = 1.0) -> bool:
        """The measured robot tilts `DIVERGED_TILT_RAD` more than the rehearsal of ``playing`` (played at
        ``speed``) predicted for now: where the tracker follows it, `REFERENCE_DELAY_S` behind its read
        time. Predictions chained over a long motion drift from the robot."""
        measured = self.state()
        followed = playing.read_s - REFERENCE_DELAY_S * speed
        now = self._predicted(playing, followed)
        if measured is None or not now:
            return False
        m, p = (float(tilt_from_quat_wxyz(x.base_quat_wxyz)) for x in (measured, now[-1][1]))
        return m > p + DIVERGED_TILT_RAD

    #: An open span whose clip stopped growing this long (its retargeting was interrupted) ends there [s].
    OPEN_IDLE_S = 1.0

    def _await(self, task: SpanRehearsal, clip: MotionClip, end: Callable[[bool], float | None]) -> SpanRehearsal | None:
        """An open span, once its clip has more samples: with its end when that is known now (None: the
        job is gone)."""
        have, idle_at = clip.available_s, time.perf_counter() + self.OPEN_IDLE_S
        while not self._gone(task.job):
            idle = clip.complete or clip.failed is not None or time.perf_counter() > idle_at
            end_s = end(idle)
            if end_s is None and idle:
                end_s = clip.available_s
            if end_s is not None:
                return dataclasses.replace(task, end_s=max(float(end_s), task.start_s))
            if clip.available_s > have:
                return task
            time.sleep(0.005)
        return None

    @staticmethod
    def _gone(job: Job) -> bool:
        return job.cancelled or job.session is None or job.session.closed

    def _apply(self, task: SpanRehearsal, host: Host, result: RehearsalResult, start: float,
               rehearsed_from: str) -> None:
        """Act on a span's verdict; ``start``: the clip time its rehearsal started from; ``rehearsed_from``:
        the robot state it started from (``predicted`` by the rehearsal of what played, ``measured``, or
        ``standing``), said in the window's entry."""
        job, clip = task.job, task.job.clip
        speed, origin = job.command.speed, job.start_frame / clip.fps
        decision = rehearsal_decision(task.window, result, start_s=(start - origin) / speed)
        if task.watch and decision.status is None:
            return  # a watch only speaks of a fall
        with host.lock:
            entry = {**decision.entry, "rehearsed_from": rehearsed_from}
            job.fields["physical_windows"] = [*job.fields.get("physical_windows", []), entry]
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
        if task.watch:  # playback went on while it ran
            stop = min(max(stop, clip.read_s), task.end_s)
        elif not task.fresh and stop <= job.switch_frame / clip.fps + 1e-9 and (kept := host.restore(job)) is not None:
            # nothing of the continuation would play: the motion it continues plays on as rehearsed
            host.report("rejected", job, {**decision.status, "kept_playing": kept.id,
                                          "detail": f"{decision.status.get('detail', '')}; command {kept.id} plays on"})
            return
        with host.lock:
            job.stop_generating = job.cut = True
        clip.cut(stop)
        host.report("rejected", job, {**decision.status, "stops_at_s": round((stop - origin) / speed, 3)})
        if stop <= job.switch_frame / clip.fps + 1e-9 and not task.watch:
            host.drop(job)  # a continuation cut before it takes over: it never plays
        elif task.fresh:
            host.release(job)
