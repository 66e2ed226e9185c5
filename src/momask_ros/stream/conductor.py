"""`Conductor`: the control loop of the robot stream, pure and clock-injected (no ROS, no threads).

The node (`momask_ros.ros.node`) and the offline recorder (``momask-generate --mcap``) both feed it:
commands and stops as they arrive, and a tick per control period, each with the time of its clock
[ns]. Each `tick` returns what to publish (`Tick`): the samples of the periods it covers, a
JointTrajectory when a motion is fully retargeted, and the statuses raised since the last tick. It owns

* the active playback (`momask_ros.stream.playback`) and which job it plays;
* each job's lifecycle and statuses: accepted through ``playing`` to exactly one of ``done``,
  ``rejected`` or ``stopped`` (its `MotionProducer` generates and retargets, and reports from its
  workers, which may be threads);
* catching up: a tick that comes late first steps through the control periods it missed, stamped at
  their own times, so the stream neither drops nor repeats a period (up to `Conductor.CATCH_UP_S`);
  a period whose clip is not retargeted yet holds the last pose, the clip's clock paused;
* following segments: continuations, later windows and sequence segments join the playing clip, and
  the job playing changes at each switch frame;
* the latency fields: ``latency_ms``/``stamp_s`` (command received -> its first published sample),
  ``switch_latency_ms``/``switch_stamp_s`` for a continuation; a ``done`` says who goes on
  (``preempted_by``, ``continued_by``) or, at an end or a cut, ``end_stamp_s`` (the last sample's stamp:
  a tracker blends out once it has followed the stream to there, `momask_ros.tracker.node_status`);
* under ``physical_checks: rehearse``, playing only what the rehearsal cleared, and the cut of a motion
  before a fall it predicts (`momask_ros.stream.clearance`).
"""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from momask_ros.stream.clearance import after_cut, cut_due, cut_fields, note_hold, stream_start
from momask_ros.stream.clip import MotionClip
from momask_ros.stream.commands import BurstLimiter, CommandRejected, parse_sequence_command, preview
from momask_ros.stream.job import Job
from momask_ros.stream.pipeline import GeneratedMotion, MotionPipeline
from momask_ros.stream.playback import BlendToPosePlayback, HoldPlayback, MotionPlayback, Playback, StopPlayback
from momask_ros.stream.producer import MotionProducer
from momask_ros.stream.rehearsing import Rehearser
from momask_ros.stream.settings import StreamSettings
from momask_ros.stream.state import RobotPose, Sample
from momask_ros.stream.workers import SteppedWorkers, WorkerThreads

__all__ = ["Conductor", "Published", "Status", "Tick", "TrajectoryOut"]


@dataclass(frozen=True)
class Published:
    """One control period's sample, stamped ``stamp_ns``; ``markers``: the skeleton is due (its rate);
    ``motion_id``: the job whose motion plays (its bag records it), None when idle."""

    stamp_ns: int
    sample: Sample
    markers: bool
    motion_id: int | None


@dataclass(frozen=True)
class TrajectoryOut:
    """A whole motion for JointTrajectory: ``time_from_start`` 0 is ``stamp_ns``, the stamp of its first
    streamed sample; times [s], positions and velocities (N, J) in the joint space's order."""

    stamp_ns: int
    times_s: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    motion_id: int


@dataclass(frozen=True)
class Status:
    """A status to publish: its ``state``, its JSON ``fields`` and whose bag it belongs in."""

    state: str
    fields: dict[str, Any]
    motion_id: int | None


@dataclass(frozen=True)
class Tick:
    """What one tick publishes, in order: samples, then trajectories, then statuses."""

    samples: tuple[Published, ...]
    trajectories: tuple[TrajectoryOut, ...]
    statuses: tuple[Status, ...]


class Conductor:
    """The control loop (see the module docstring).

    Args:
        pipeline: generation and retargeting.
        settings: what the stream follows (`configure` replaces them).
        now_ns: the clock's time now [ns].
        clock: [s], what the producer measures its latencies on (monotonic; a fake clock in tests).
        on_begin: called when a job's motion starts playing, before its ``playing`` status is made
            (the node opens its bag there and puts the path in ``job.fields``).
        rehearser: what ``physical_checks: rehearse`` runs (`momask_ros.stream.rehearsing`); without
            one that mode is refused (ValueError).
    """

    #: Longest stall of the control loop whose missed periods are still stepped through [s].
    CATCH_UP_S = 1.0

    def __init__(self, pipeline: MotionPipeline, settings: StreamSettings, *, now_ns: int,
                 clock: Callable[[], float] = time.perf_counter,
                 on_begin: Callable[[Job], None] = lambda job: None, rehearser: Rehearser | None = None) -> None:
        self.pipeline = pipeline
        self._events: collections.deque[tuple[str, dict[str, Any]]] = collections.deque(maxlen=10_000)
        self.producer = MotionProducer(pipeline, report=self._report, settings=settings.producer, clock=clock)
        self._threads: WorkerThreads | None = None
        self._stepped = SteppedWorkers(self.producer)
        self._limiter: BurstLimiter[Job] = BurstLimiter(rate_hz=settings.command_rate_hz, burst=settings.command_burst)
        if rehearser is not None:
            self.use_rehearser(rehearser)
        self.configure(settings)
        self._on_begin = on_begin
        self.next_id = 0
        self._playback: Playback = HoldPlayback(RobotPose(pipeline.joint_space.rest.copy(), base_valid=False))
        self._motion: MotionPlayback | None = None  # the playback, while it plays a job's clip
        self._job: Job | None = None
        self._ended: tuple[MotionClip, int] | None = None  # the last clip that played to its end, and when
        self._t0_ns = self._now_ns = int(now_ns)
        self._t_served = 0.0
        self._last: Sample = self._playback.sample(0.0)
        self._playing_sent = False
        self._trajectory_sent = False
        self._last_marker_ns: int | None = None
        self._last_pub_ns: int | None = None

    # ------------------------------------------------------------------ settings and workers
    def configure(self, settings: StreamSettings) -> None:
        """New settings (a parameter changed): for the next command, tick and window."""
        if settings.producer.physical_checks == "rehearse" and self.producer.checks.rehearser is None:
            raise ValueError("physical_checks: rehearse needs a rehearser (the tracker); none was loaded")
        self.settings = settings
        self.producer.settings = settings.producer
        self._limiter.rate_hz, self._limiter.burst = settings.command_rate_hz, settings.command_burst
        pipe = self.pipeline
        pipe.sampling = dict(settings.sampling)
        pipe.seed = settings.seed
        pipe.default_length_frames = settings.default_length_frames(pipe.fps, pipe.unit_frames, pipe.max_frames)
        self._limits = pipe.command_limits(max_chars=settings.max_command_chars)

    @property
    def can_rehearse(self) -> bool:
        return self.producer.checks.rehearser is not None

    def use_rehearser(self, rehearser: Rehearser) -> None:
        """What ``physical_checks: rehearse`` runs from now on (set it before switching to that mode); it
        rehearses the stream as this conductor plays it (from the pose it holds, with its blend)."""
        rehearser.stream_start = lambda: stream_start(self.settings, self._last, self._motion, self._job,
                                                      ended=self._ended, now_ns=self._now_ns)
        self.producer.checks.rehearser = rehearser

    def start(self, *, warm_up: bool) -> None:
        """Run the producer's workers on threads (the node)."""
        self._threads = WorkerThreads(self.producer)
        self._threads.start(warm_up=warm_up)

    def run_pending(self) -> None:
        """Do the producer's queued work now, on this thread (no `start`: tests, offline)."""
        self._stepped.run_pending()

    def shutdown(self) -> None:
        self.producer.shutdown()
        if self._threads is not None:
            self._threads.join()

    def snapshot(self) -> dict[str, Any]:
        """A small summary for tests and diagnostics."""
        prod = self.producer
        return {"waiting": prod.waiting(), "generating": prod.generating is not None, "model_ready": prod.model_ready,
                "workers_alive": self._threads is not None and self._threads.alive,
                "playing": self._job.id if self._job is not None else None}

    # ------------------------------------------------------------------ inputs
    def command(self, raw: str | bytes, now_ns: int) -> None:
        """A text command as received (syntax: `momask_ros.stream.commands`)."""
        try:
            self._command(raw, now_ns * 1e-9)
        except Exception as exc:  # never let a message take the stream down
            self._internal(exc)

    def malformed(self, detail: str) -> None:
        """A command message that is not even a string (the node could not decode it)."""
        self.next_id += 1
        self._report("rejected", None, {"id": self.next_id, "reason": "malformed", "detail": detail})

    def play(self, motion: GeneratedMotion, now_ns: int, *, motion_id: int | None = None) -> Job:
        """A motion generated elsewhere, played as a command of its own (``momask-generate --mcap``)."""
        self.next_id = self.next_id + 1 if motion_id is None else int(motion_id)
        job = Job(self.next_id, motion.command, now_ns * 1e-9)
        self.producer.submit_motion(job, motion)
        return job

    def stop(self, now_ns: int) -> None:
        """Blend into a hold of the current pose; drop whatever waits."""
        try:
            dropped = self.producer.stop()
            pending = self._limiter.clear()
            if pending is not None:
                dropped.append(pending)
            stopped = self._job
            if stopped is not None:
                stopped.cancelled = True
            self._start(StopPlayback(self._last, self.pipeline.joint_space, stop_s=self.settings.stop_blend_s),
                        None, now_ns)
            self._report("stopped", stopped, {"dropped": len(dropped), "dropped_ids": [j.id for j in dropped]})
        except Exception as exc:
            self._internal(exc)

    def error(self, reason: str, detail: str) -> None:
        """A failure, as an ``error`` status (the stream goes on)."""
        self._report("error", None, {"reason": reason, "detail": detail[:300]})

    def _internal(self, exc: BaseException) -> None:
        self.error("internal", f"{type(exc).__name__}: {exc}"[:200])

    def _report(self, state: str, job: Job | None, fields: dict[str, Any]) -> None:
        """Queue a status (from any thread); the next tick hands it out."""
        if job is not None:
            fields = {"id": job.id, "text": preview(job.command.text), **fields}
        self._events.append((state, dict(fields)))

    def _command(self, raw: str | bytes, now_s: float) -> None:
        self.next_id += 1
        cid = self.next_id
        try:
            commands = parse_sequence_command(raw, self._limits, then_separates=self.pipeline.then_separates)
        except CommandRejected as exc:
            self._report("rejected", None, {"id": cid, "text": preview(raw), "reason": exc.reason, "detail": str(exc)})
            return
        job = Job(cid, commands[0], now_s)
        if len(commands) > 1:  # a sequence: one job per segment, each continuing the one before
            for command in commands[1:]:
                self.next_id += 1
                job.sequence.append(Job(self.next_id, command, now_s, after=(job.sequence or [job])[-1]))
            for k, seg in enumerate([job, *job.sequence]):
                seg.fields.update(segment=k + 1, segments=len(commands))
        for k, command in enumerate(commands):
            refusal = self.pipeline.check_text(command.text)
            if refusal is not None:
                # What the model says it cannot do (out of scope, unknown words) would be a silent guess.
                where = {"segment": k + 1, "segments": len(commands)} if len(commands) > 1 else {}
                self._report("rejected", job, {"reason": refusal.reason, "detail": refusal.message[:300],
                                               **where, **refusal.fields})
                return
        offer = self._limiter.offer(job, now_s)
        if offer.superseded is not None:
            self._report("rejected", offer.superseded,
                         {"reason": "coalesced", "detail": f"superseded by command {job.id} during a burst"})
        if offer.admitted is not None:
            self._enqueue(offer.admitted)

    def _enqueue(self, job: Job) -> None:
        """A command is accepted here (the place for checks that gate acceptance)."""
        settings = self.settings
        if settings.producer.queue_mode == "queue" and self.producer.waiting() >= settings.max_queue:
            self._report("rejected", job, {"reason": "queue_full", "detail": f"{settings.max_queue} commands waiting"})
            return
        for item in (job, *job.sequence):
            self._report("accepted", item, item.fields)
        self.producer.submit(job)

    # ------------------------------------------------------------------ the control loop
    def tick(self, now_ns: int) -> Tick:
        """One control tick at clock time ``now_ns``: what to publish (`Tick`). Never raises: a failure
        becomes an ``error`` status and the stream goes on."""
        samples: list[Published] = []
        trajectories: list[TrajectoryOut] = []
        try:
            released = self._limiter.poll(now_ns * 1e-9)
            if released is not None:
                self._enqueue(released)
            self._catch_up(now_ns, samples, trajectories)
            self._take_ready(now_ns)
            self._step(now_ns, samples, trajectories)
            self.producer.watch(self._job)
        except Exception as exc:  # keep the control loop alive whatever happens
            self._internal(exc)
        active = self._job.id if self._job is not None else None
        statuses = []
        while self._events:
            state, fields = self._events.popleft()
            statuses.append(Status(state, fields, fields.get("id", active)))
        return Tick(tuple(samples), tuple(trajectories), tuple(statuses))

    def _catch_up(self, now_ns: int, samples: list[Published], trajectories: list[TrajectoryOut]) -> None:
        """A late tick first steps through the periods it missed (a loaded CPU), each at its own time,
        so no interval of the stream exceeds a period and a half; a clock that jumps further than
        `CATCH_UP_S` (a sim clock) is not replayed."""
        period, last = self.settings.period_ns, self._last_pub_ns
        if last is None or not 1.5 * period < now_ns - last < self.CATCH_UP_S * 1e9 or not self._publishing():
            return
        k = last + period
        while now_ns - k > 0.5 * period:
            self._step(k, samples, trajectories)
            k += period

    def _take_ready(self, now_ns: int) -> None:
        """A motion that starts afresh: it blends in from the current pose (preempting what plays)."""
        job = self.producer.pop_ready(preempt=self.settings.producer.queue_mode == "preempt", idle=self._job is None)
        if job is None:
            return
        if self._job is not None and self._job is not job:
            self._job.stop_generating = True
            self._report("done", self._job, {"preempted_by": job.id})
        self._start(MotionPlayback(job.clip, self._last.pose(), speed=job.command.speed, blend_s=self.settings.blend_s),
                    job, now_ns)
        self.producer.playing(job)

    def _step(self, now_ns: int, samples: list[Published], trajectories: list[TrajectoryOut]) -> None:
        """One control period at ``now_ns``: the sample, its statuses, the trajectory, the end."""
        now, self._now_ns = now_ns * 1e-9, now_ns
        t = (now_ns - self._t0_ns) * 1e-9
        if self._motion is not None and (cut_due(self._motion, t) or self._into_superseded(t)):  # done, then stand
            clip, ended = self._motion.clip, self._job is not None and not self._job.cancelled
            if ended:
                self._report("done", self._job, {**cut_fields(self._motion, self._job, t),
                                                 "end_stamp_s": round(now, 4)})
            self._start(after_cut(self._last, self.pipeline.joint_space, self.settings), None, now_ns)
            if ended:  # the robot's tracker blends out from here, as after a motion's end
                self._ended = (clip, now_ns)
            t = 0.0
        if self._motion is not None:
            self._follow_segments(t, now)
        sample = self._playback.sample(t)
        served = sample is not None
        if sample is None:
            failed = self._motion.clip.failed if self._motion is not None else None
            if failed is not None:
                if self._job is not None and not self._job.cancelled:
                    self._report("rejected", self._job, {"reason": "retarget_failed", "detail": str(failed)[:300]})
                self._start(HoldPlayback(self._last.pose()), None, now_ns)
                sample = self._playback.sample(0.0)
            else:  # underrun: the clip is still being retargeted (or rehearsed); pause its clock and hold
                note_hold(self._motion, self._job, t, self.settings.period_ns * 1e-9)
                self._t0_ns = now_ns - int(round(self._t_served * 1e9))
                sample = self._last.held()
        else:
            self._t_served = max(t, 0.0)
        if served and self._job is not None and not self._playing_sent:
            self._playing_sent = True
            self._report("playing", self._job, self._playing_fields(self._job, now))
        if self._publishing():
            samples.append(self._published(now_ns, sample))
        self._last = sample
        if self._job is not None and not self._trajectory_sent and self._motion.clip.settled:
            self._trajectory_sent = True
            trajectories.append(self._trajectory())
        if self._playback.finished(t):
            self._finish(sample, now_ns)

    def _publishing(self) -> bool:
        moving = self._job is not None or not isinstance(self._playback, HoldPlayback)
        return moving or self.settings.publish_when_idle

    def _published(self, now_ns: int, sample: Sample) -> Published:
        self._last_pub_ns = now_ns
        rate = self.settings.marker_rate_hz
        due = (rate > 0 and sample.human_joints is not None
               and (self._last_marker_ns is None or (now_ns - self._last_marker_ns) * 1e-9 >= 1.0 / rate - 1e-6))
        if due:
            self._last_marker_ns = now_ns
        return Published(now_ns, sample, due, self._job.id if self._job is not None else None)

    def _playing_fields(self, job: Job, now: float) -> dict[str, Any]:
        switch: dict[str, Any] = {"switch": job.switch}
        if job.switch_reason:
            switch["switch_reason"] = job.switch_reason
        if job.first_sample is None:  # a fresh start: this is its first sample
            job.first_sample = (now, (now - job.received_s) * 1e3)
        else:  # a continuation: its first sample came before its switch frame (the retargeter's cut)
            switch.update(switch_latency_ms=round((now - job.received_s) * 1e3, 1), switch_stamp_s=round(now, 4))
        stamp, latency = job.first_sample
        return {"latency_ms": round(latency, 1), "stamp_s": round(stamp, 4),
                "duration_s": round(job.command_duration_s(self._motion.clip.fps), 3), **switch, **job.fields}

    def _trajectory(self) -> TrajectoryOut:
        play, job = self._motion, self._job
        start = max(play.play_time(job.switch_frame / play.clip.fps), 0.0)
        times, positions, velocities = play.trajectory(from_s=start)
        # time_from_start 0 is when this motion started streaming: the controller and the stream share a timeline
        return TrajectoryOut(self._t0_ns + int(round(start * 1e9)), times, positions, velocities, job.id)

    def _start(self, playback: Playback, job: Job | None, now_ns: int) -> None:
        if job is None and self._job is not None:
            self.producer.ended()
        self._playback = playback
        self._motion = playback if isinstance(playback, MotionPlayback) else None
        self._job = job
        self._t0_ns = now_ns
        self._t_served = 0.0
        self._playing_sent = self._trajectory_sent = False
        if job is not None:
            self._ended = None
            self._on_begin(job)

    def _into_superseded(self, t: float) -> bool:
        """Playback at ``t`` reached a continuation that a newer command superseded before it played (its
        frames are in the clip, but the newer command has not taken over, or was refused): it must not
        play, so the playing motion ends there as if cut."""
        play, job = self._motion, self._job
        if job is None or job.session is None:
            return False
        upcoming = self.producer.segment_at(job.session, play.clip_time(t) * play.clip.fps)
        return upcoming is not None and upcoming is not job and upcoming.cancelled

    def _follow_segments(self, t: float, now: float) -> None:
        """Continuations join the playing clip: at each switch, the next job is the one playing."""
        play, job = self._motion, self._job
        if job is None or job.session is None:
            return
        clip_t = play.clip_time(t)
        frame = clip_t * play.clip.fps
        upcoming = self.producer.next_segment(job.session, job)
        if upcoming is not None and upcoming.first_sample is None and clip_t >= upcoming.cut_s:
            # the continuation's first sample: the first one its motion changes (the retargeter's
            # smoothing window starts the change a few frames before the new motion's switch frame)
            upcoming.first_sample = (now, (now - upcoming.received_s) * 1e3)
        current = self.producer.segment_at(job.session, frame)
        if current is None or current is job:
            return
        if frame < job.end_frame - 1e-6:
            self._report("done", job, {"preempted_by": current.id, **job.fields})
        else:  # the robot's tracker goes straight on (`momask_ros.tracker.node_status`)
            self._report("done", job, {"duration_s": round(job.command_duration_s(play.clip.fps), 3),
                                       "continued_by": current.id, **job.fields})
        self._job = current
        self._playing_sent = self._trajectory_sent = False
        play.change_speed(t, current.command.speed)
        self.producer.playing(current)
        self._on_begin(current)

    def _finish(self, sample: Sample, now_ns: int) -> None:
        job = self._job
        if job is not None:
            self._ended = (self._motion.clip, now_ns)  # played to its end: a next motion takes over there
            self._report("done", job, {"duration_s": round(job.command_duration_s(self._motion.clip.fps), 3),
                                       "retarget_ms": round(job.clip.retarget_ms, 1),
                                       "end_stamp_s": round(now_ns * 1e-9, 4), **job.fields})
        self._start(HoldPlayback(sample.pose()), None, now_ns)
        if job is not None and self.settings.idle_behavior == "rest":
            space = self.pipeline.joint_space
            self._start(BlendToPosePlayback(sample.pose(), space.rest, space, duration_s=self.settings.rest_blend_s),
                        None, now_ns)
