"""`MotionProducer`: what the conductor's workers do: generate, retarget and check motions. The
conductor hands accepted jobs in; the producer hands playable clips and statuses out.

* The generation worker only generates, so a command's generation starts as soon as it is accepted
  (it never waits behind the retargeting of the clip that is playing). A long motion or a sequence
  is generated window by window, lazily: the first window plays while the next is generated, and
  a stop or preempt ends the generation of what has not been played.
* The retargeting worker fills clips chunk by chunk (its steps: `momask_ros.stream.retarget_worker`). It
  yields the CPU to a running generation while the playing clip has enough lead, and it drops work a
  newer continuation makes useless. How a continuation joins the playing clip is
  `momask_ros.stream.joins`' (a switch without a blend, or a fresh start with a blend whose status
  says why).
* Physical checks and rehearsal (``physical_checks``) are `momask_ros.stream.checking`'s: under reject
  a window is checked before it is queued for retargeting, under warn and rehearse on a third worker
  (rehearse: each retargeted span, in physics; a fresh clip waits for its rehearsal).

This module says what each worker does, one step at a time; `momask_ros.stream.workers` runs the
steps, on threads (the node) or on the caller's thread (the tests and the offline recorder, on the
conductor's fake clock). Statuses: whoever ends a job reports it, once. A job cancelled by a stop or
superseded by a newer command gets no further status.
"""
from __future__ import annotations

import collections
import enum
import logging
import math
import threading
import time
from typing import Callable, Iterator, TypeVar

from momask_ros.stream.checking import WindowChecks
from momask_ros.stream.job import (EndOfJob, FirstWindow, Job, LaterWindow, Report, RetargetTask, SpanRehearsal,
                                   TakeBack, WindowCheck)
from momask_ros.stream.joins import Joiner
from momask_ros.stream.pipeline import GeneratedMotion, MotionPipeline
from momask_ros.stream.rehearsing import Rehearser
from momask_ros.stream.retarget_worker import RetargetWorker
from momask_ros.stream.retargeting import RetargetSession
from momask_ros.stream.settings import ProducerSettings

log = logging.getLogger(__name__)

__all__ = ["MotionProducer", "Step"]

T = TypeVar("T")


class Step(enum.Enum):
    """Where a job's generation paused: a window was queued, or the next one waits for playback."""

    WINDOW = "window"
    WAIT = "wait"


class MotionProducer(RetargetWorker):
    """Generation, retargeting and check workers (see the module docstring).

    Args:
        pipeline: generation and retargeting.
        report: where statuses go (`Report`).
        settings: read per job; the conductor replaces them when a parameter changes.
        clock: [s], for the latencies the switches plan with (the conductor's clock in tests).
        rehearser: what ``physical_checks: rehearse`` runs (required for that mode).
    """

    #: A long motion's next window is generated when playback comes this close to its end [s].
    AHEAD_S = 2.0

    def __init__(self, pipeline: MotionPipeline, *, report: Report, settings: ProducerSettings = ProducerSettings(),
                 clock: Callable[[], float] = time.perf_counter, rehearser: Rehearser | None = None) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self._report = self.report = report
        self._clock = clock
        self.lock = threading.Condition()
        self._inbox: collections.deque[Job] = collections.deque()
        self._ready: collections.deque[Job] = collections.deque()   # fresh clips for the control loop
        self._tasks: collections.deque[RetargetTask] = collections.deque()  # retargeting work, in order
        self._checks: collections.deque[WindowCheck | SpanRehearsal] = collections.deque()  # warn's, rehearse's
        self._pending: list[Job] = []          # accepted, not yet playing, not ended
        self.session: RetargetSession[Job] | None = None  # what the control loop plays now
        self.generating: Job | None = None
        self.computing = False  # the model runs now (not while a long motion waits for its next window)
        self.model_ready = True  # `warm_up` runs when it is False
        self._shutdown = False
        self.joiner = Joiner(unit_frames=pipeline.unit_frames, lock=self.lock, clock=clock)
        self._last_generated: Job | None = None  # queue mode continues it
        self.checks = WindowChecks(self, rehearser)

    # ------------------------------------------------------------------ the conductor's side
    def waiting(self) -> int:
        """Commands accepted and waiting (not playing, not being generated)."""
        with self.lock:
            return sum(1 for j in self._pending if j is not self.generating)

    def submit(self, job: Job) -> None:
        """An accepted command (with the segments of its sequence). Preempt mode supersedes every
        command that has not started playing, and ends the generation of the playing motion's
        further windows."""
        with self.lock:
            if self.settings.queue_mode == "preempt":
                for old in self._pending:
                    old.cancelled = True
                    self._report("rejected", old, {"reason": "superseded", "detail": f"preempted by command {job.id}"})
                    if old.session is not None and old.switch == "continue":  # its frames are in the clip
                        self._tasks.append(TakeBack(old))
                self._pending.clear()
                self._inbox.clear()
                self._ready.clear()
                for seg_job in self._session_jobs():
                    seg_job.stop_generating = True
            for item in (job, *job.sequence):
                item.accepted_at = self._clock()
                self._pending.append(item)
                self._inbox.append(item)
            self.lock.notify_all()

    def submit_motion(self, job: Job, motion: GeneratedMotion) -> None:
        """A motion generated elsewhere (``momask-generate --mcap``): straight to retargeting."""
        with self.lock:
            job.motion = motion
            job.fields.update(generation_ms=round(motion.generation_ms, 1), seed=motion.seed)
            self._pending.append(job)
            self._last_generated = job
            self._tasks.extend([FirstWindow(job, motion), EndOfJob(job)])
            self.lock.notify_all()

    def stop(self) -> list[Job]:
        """Cancel everything that has not played (the caller reports it); the session ends."""
        with self.lock:
            dropped = list(self._pending)
            for job in dropped + self._session_jobs():
                job.cancelled = True
            self._pending.clear()
            self._inbox.clear()
            self._ready.clear()
            self._tasks.clear()
            self._close_session()
            self.lock.notify_all()
        return dropped

    def pop_ready(self, *, preempt: bool, idle: bool) -> Job | None:
        """A job whose fresh clip may start now (preempt mode: at once; queue mode: when idle)."""
        with self.lock:
            if self._ready and (preempt or idle):
                return self._ready.popleft()
        return None

    def playing(self, job: Job) -> None:
        """The control loop started playing ``job`` (its session is the one playing)."""
        with self.lock:
            if job in self._pending:
                self._pending.remove(job)
            if self.session is not job.session:
                self._close_session()
                self.session = job.session

    def ended(self) -> None:
        """The control loop left the playing session (it finished or was replaced)."""
        with self.lock:
            self._close_session()

    def shutdown(self) -> None:
        """Cancel everything; the workers return from their next wait."""
        with self.lock:
            self._shutdown = True
            for job in self._pending + self._session_jobs():
                job.cancelled = True
            self.lock.notify_all()

    def segment_at(self, session: RetargetSession[Job], frame: float) -> Job | None:
        """The job whose frames the session plays at ``frame`` (the last one starting at or before it)."""
        with self.lock:
            return next((j for s, j in reversed(session.segments) if s <= frame + 1e-6), None)

    def next_segment(self, session: RetargetSession[Job], job: Job) -> Job | None:
        """The job that follows ``job`` on the session's timeline, if one is committed."""
        with self.lock:
            later = [j for s, j in session.segments if s > job.switch_frame]
        return later[0] if later else None

    def _session_jobs(self) -> list[Job]:
        return [j for _, j in self.session.segments] if self.session is not None else []

    def _close_session(self) -> None:
        if self.session is not None:
            self.session.closed = True
        self.session = None

    # ------------------------------------------------------------------ the workers' side
    def take_job(self, *, wait: bool) -> Job | None:
        """The next job to generate (it is `generating` from now on), waiting for one when ``wait``."""
        with self.lock:
            job = self._take(self._inbox, wait)
            if job is not None:
                self.generating = job
            return job

    def take_task(self, *, wait: bool) -> RetargetTask | None:
        with self.lock:
            return self._take(self._tasks, wait)

    def take_check(self, *, wait: bool) -> WindowCheck | SpanRehearsal | None:
        with self.lock:
            return self._take(self._checks, wait)

    def pause(self, seconds: float) -> None:
        """Wait a little for playback to move on (a paced generation), or for new work."""
        with self.lock:
            self.lock.wait(seconds)

    def _take(self, queue: collections.deque[T], wait: bool) -> T | None:
        while wait and not queue and not self._shutdown:
            self.lock.wait(0.5)
        return None if self._shutdown or not queue else queue.popleft()

    def warm_up(self) -> None:
        """Run the model once so the first command does not pay for lazy initialisation (if asked)."""
        if self.model_ready:
            self._report("ready", None, {})
            return
        try:
            t0 = self._clock()
            ms = self.pipeline.warm_up()
            lead = self.pipeline.switch_lead_ms
            # half the warm-up's (a short continuation on a cold model): planned early costs a frame or two
            self.joiner.switch_lead.first_guess_ms = 0.5 * (lead if math.isfinite(lead) else (self._clock() - t0) * 1e3)
            self._report("ready", None, {"warmup_ms": round(ms, 1)})
        except Exception as exc:
            self._report("error", None, {"reason": "warm_up_failed", "detail": str(exc)[:300]})
        with self.lock:
            self.model_ready = True

    def generation(self, job: Job) -> Iterator[Step]:
        """The generation of a job from `take_job`, in steps; a failure is the job's rejection."""
        try:
            yield from self._produce(job)
        except Exception as exc:
            if not job.cancelled:
                with self.lock:
                    if job in self._pending:
                        self._pending.remove(job)
                self._report("rejected", job, {"reason": "generation_failed", "detail": str(exc)[:300]})
        finally:
            with self.lock:
                self.generating = None
                self.lock.notify_all()

    def _produce(self, job: Job) -> Iterator[Step]:
        """Generate ``job`` window by window, each queued for retargeting as it comes. A later window
        waits until playback comes within `AHEAD_S` (or three switch leads) of the end of what is
        generated: a stop or preempt then leaves the rest ungenerated, and the model stays free for new
        commands. Queue mode's waiting commands need the whole motion first (they continue its end),
        so they lift the pacing."""
        self._report("generating", job, {"wait_ms": round((self._clock() - job.accepted_at) * 1e3, 1)})
        t0 = self._clock()
        with self.lock:
            plan = self.joiner.plan(job, playing=self.session, last_generated=self._last_generated,
                                    settings=self.settings)
        job.switch_reason = plan.reason
        base = plan.base
        windows = self.pipeline.motions(job.command, after=None if base is None else base.motion,
                                        at_frame=None if base is None else plan.at)
        planned = job.command.length_frames or self.pipeline.default_length_frames
        parts: list[GeneratedMotion] = []
        offset = 0
        while True:
            if offset and planned is not None and offset < planned:
                while not self._may_generate(job, offset):
                    yield Step.WAIT
                if job.cancelled or job.stop_generating or self._shutdown:
                    break
            self.computing = True
            try:
                motion = next(windows, None)
            finally:
                self.computing = False
            if motion is None:
                break
            if job.cancelled or self._shutdown:
                return
            reject = self.settings.physical_checks == "reject"
            if parts and reject and not self.checks.physically_ok(job, motion, len(parts), offset):
                break  # a later window refused: the job ends where it would begin (reported)
            parts.append(motion)
            with self.lock:  # onto what the job holds: a switch may have spliced its first frames
                job.motion = motion if len(parts) == 1 else GeneratedMotion.join([job.motion, motion])
            job.fields.update(generation_ms=round(sum(p.generation_ms for p in parts), 1), seed=parts[0].seed,
                              windows=len(parts))
            if len(parts) == 1 and reject and not self.checks.physically_ok(job, motion):
                return
            last = planned is None or offset + motion.frames >= planned
            with self.lock:
                if len(parts) == 1:
                    self._last_generated = job
                    self._tasks.append(FirstWindow(job, motion, base, plan.at, t0, last))
                else:
                    self._tasks.append(LaterWindow(job, motion, offset, last))
                if self.settings.physical_checks == "warn":  # neither the first JointState nor a generation waits
                    self._checks.append(WindowCheck(job, motion, len(parts) - 1, offset))
                self.lock.notify_all()
            offset += motion.frames
            if job.stop_generating:
                break
            yield Step.WINDOW
        with self.lock:
            self._tasks.append(EndOfJob(job))
            self.lock.notify_all()

    def _may_generate(self, job: Job, generated: int) -> bool:
        """Whether ``job``'s next window may be generated now (or its generation is to end)."""
        with self.lock:
            if job.cancelled or job.stop_generating or self._shutdown or self._inbox:
                return True
            clip = job.clip
            ahead = max(self.AHEAD_S, 3 * self.joiner.lead_s(0.9)) * job.command.speed * self.pipeline.fps
            return clip is not None and job.start_frame + generated - clip.read_s * clip.fps < ahead

    # ------------------------------------------------------------------ check worker (`stream.checking`)
    def check(self, check: WindowCheck | SpanRehearsal, *, wait: bool) -> None:
        """Warn's check of one window (``wait``: once its clip has lead), or rehearse's run of one span."""
        self.checks.run(check, wait=wait)

    @property
    def stopping(self) -> bool:
        return self._shutdown

    def busy(self) -> bool:
        """The model runs, or commands wait for it (a check gives way)."""
        return self.computing or bool(self._inbox)

    def checks_waiting(self) -> bool:
        """Checks or spans wait for the check worker (a rehearsal's watch gives way to them)."""
        return bool(self._checks)

    def watch(self, job: Job | None) -> None:
        """Control loop, each tick: under rehearse, a watch of the motion ``job`` plays when one is due
        (`momask_ros.stream.rehearsing.Rehearser.watch_due`) and the check worker has nothing else to do."""
        checks = self.checks
        if job is None or not checks.rehearsing:
            return
        with self.lock:
            if self._checks or checks.running is not None or (task := checks.rehearser.watch_due(job)) is None:
                return
            self._checks.append(task)
            self.lock.notify_all()

    def refuse(self, job: Job, status: dict) -> None:
        """A job that has not started playing is refused (``rejected``): nothing of it plays."""
        with self.lock:
            if job.cancelled:
                return
            self.drop(job)
            if job.session is not None:
                job.session.closed = True
        self._report("rejected", job, status)

    def drop(self, job: Job) -> None:
        """A job that will never play waits no more."""
        with self.lock:
            job.cancelled = True
            for queue in (self._pending, self._inbox):
                if job in queue:
                    queue.remove(job)

    def restore(self, job: Job) -> Job | None:
        """A continuation that will not play (rehearse refused it: it falls, and no cut after its switch
        keeps the robot up; or a newer command superseded it, `TakeBack`) is taken back, and the motion it
        would have continued plays on to its own end, as that motion's rehearsal cleared it
        (`RetargetSession.restore`). Returns that motion's job, or None when it cannot be (playback reached
        the cut, or what was replaced was not that motion's whole, cleared end): the caller cuts instead,
        or playback ends where the continuation would begin. Either way the continuation is dropped."""
        with self.lock:
            session = job.session
            segments = session.segments if session is not None else []
            base = segments[-2][1] if len(segments) >= 2 and segments[-1][1] is job else None
            self.drop(job)  # stops its retargeting between two chunks
        if base is None or base.cancelled:
            return None
        return base if session.restore(job, job.cut_s, ends_at=base.end_frame, lock=self.lock) else None

    def drop_following(self, job: Job, reason: str) -> None:
        """The segments of ``job``'s sequence after it will not play (it was cut or refused): ``rejected``."""
        head = job
        while head.after is not None:
            head = head.after
        segments = [head, *head.sequence]
        for seg in segments[segments.index(job) + 1:]:
            if not seg.cancelled:
                self.drop(seg)
                self._report("rejected", seg, {"reason": reason, "detail": f"follows command {job.id}, which was "
                                                                           "cut or refused"})

    def release(self, job: Job) -> None:
        """Rehearse: a fresh job whose start the rehearsal cleared may start playing."""
        with self.lock:
            if not job.cancelled and job in self._pending and job not in self._ready:
                self._ready.append(job)
