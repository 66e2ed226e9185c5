"""The retargeting worker's steps, a part of `momask_ros.stream.producer.MotionProducer`: each task fills
a job's clip, chunk by chunk: a fresh start, a join onto the playing clip (`momask_ros.stream.joins`), a
later window, or the flush at a job's end; or it takes a superseded continuation back out of it.
Between chunks it gives way to a running generation while the clip has lead, and to the rehearsal that
clears a fresh clip's start, and it drops work that a waiting continuation, a stop or a shutdown makes
useless.
"""
from __future__ import annotations

import collections
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Callable

import numpy as np

from momask_ros.stream.job import (FirstWindow, Job, LaterWindow, Report, RetargetTask, SpanRehearsal, TakeBack,
                                   WindowCheck)
from momask_ros.stream.retargeting import RetargetSession
from momask_ros.stream.state import Cancelled, PipelineError

if TYPE_CHECKING:
    from momask_ros.stream.checking import WindowChecks
    from momask_ros.stream.joins import Joiner
    from momask_ros.stream.pipeline import GeneratedMotion, MotionPipeline

log = logging.getLogger(__name__)

__all__ = ["RetargetWorker"]


class RetargetWorker:
    """The retargeting worker's side of the producer (whose state it shares: the lock, the queues)."""

    #: The retargeting worker yields to a running generation while the clip is this far ahead [s].
    YIELD_LEAD_S = 0.5
    #: Chunk size of background retargeting while a generation runs [frames]: it gives way within one
    #: such chunk when the generation needs the CPU or a switch arrives.
    BACKGROUND_CHUNK_FRAMES = 4

    # the producer's state this side reads and writes
    pipeline: MotionPipeline
    lock: threading.Condition
    joiner: Joiner
    checks: WindowChecks
    computing: bool
    _report: Report
    _shutdown: bool
    _ready: collections.deque[Job]
    _tasks: collections.deque[RetargetTask]
    _checks: collections.deque[WindowCheck | SpanRehearsal]
    restore: Callable[[Job], Job | None]

    def retarget(self, task: RetargetTask) -> None:
        """One task from `take_task`: a job's clip started, joined, extended or flushed."""
        job = task.job
        if isinstance(task, TakeBack):
            self.restore(job)
            return
        if job.cancelled:
            return
        try:
            if isinstance(task, FirstWindow) and task.base is not None:
                reason = self.joiner.join(task, stopped=lambda: self._shutdown)
                if reason is not None:
                    self._fresh(job, task.motion, reason)
            elif isinstance(task, FirstWindow):
                self._fresh(job, task.motion, job.switch_reason)
            elif isinstance(task, LaterWindow):
                self._extend(job, task.motion, task.offset)
            elif job.session is not None and job.session.segments and job.session.segments[-1][1] is job:
                job.session.finish()  # the end: nothing more of this job; flush unless continued
            if self.checks.rehearsing and (span := self.checks.span_after(task)) is not None:
                with self.lock:
                    self._checks.append(span)
                    self.lock.notify_all()
        except Cancelled:
            pass  # a stop, a preempt or a shutdown: nothing will play it
        except PipelineError as exc:
            if not job.cancelled:
                self._report("rejected", job, {"reason": "retarget_failed", "detail": str(exc)[:300]})
        except Exception as exc:  # keep the worker alive whatever happens
            log.exception("retargeting worker")
            if not job.cancelled:
                self._report("rejected", job, {"reason": "retarget_failed", "detail": f"{type(exc).__name__}: {exc}"})

    def _chunk_limit(self) -> int | None:
        return self.BACKGROUND_CHUNK_FRAMES if self.computing or self._switch_waiting() else None

    def _switch_waiting(self) -> bool:
        with self.lock:
            return any(isinstance(t, FirstWindow) and t.base is not None for t in self._tasks)

    def _interrupt(self, job: Job, session: RetargetSession[Job]) -> Callable[[], bool]:
        """Between chunks: give way to a running generation while the clip has lead, and stop work a
        waiting continuation, a stop or a shutdown makes useless."""
        def check() -> bool:
            clip = session.clip
            while (self.computing and not self._shutdown and not job.cancelled  # lead in playback seconds
                   and (clip.available_s - max(clip.read_s, 0.0)) / job.command.speed > self.YIELD_LEAD_S
                   and not self._switch_waiting()):
                time.sleep(0.005)
            while self.checks.gives_way(job) and not (self._shutdown or session.closed or self._switch_waiting()):
                time.sleep(0.005)  # rehearse: the rehearsal that clears a fresh clip's start goes first
            return job.cancelled or self._shutdown or session.closed or self._switch_waiting()
        return check

    def _fresh(self, job: Job, motion: GeneratedMotion, reason: str | None) -> None:
        session = self.pipeline.open_session(motion)
        session.segments.append((0, job))
        job.session, job.start_frame, job.switch_frame = session, 0, 0
        if reason is not None:
            job.switch, job.switch_reason = "blend", reason
        gated = self.checks.rehearsing
        if gated:
            session.clip.verified_s = -math.inf  # plays once its rehearsal clears the start (`release`)
        with self.lock:
            if job.cancelled:
                return
            if not gated:
                self._ready.append(job)
            else:  # its rehearsal follows the retargeting from the first chunk on
                self._checks.append(self.checks.open_span(job))
                self.lock.notify_all()
        session.push(motion.joints_yup, final=False, cancelled=self._interrupt(job, session),
                     chunk_limit=self._chunk_limit)

    def _extend(self, job: Job, motion: GeneratedMotion, offset: int) -> None:
        session = job.session
        if session is None or session.closed or session.segments[-1][1] is not job:
            return  # continued by a newer command meanwhile: this window will never play
        at = job.start_frame + offset
        if at > session.frames:  # an earlier push was interrupted: its frames come first
            done = session.frames - job.start_frame
            frames = np.concatenate([job.motion.joints_yup[done : at - job.start_frame], motion.joints_yup])
            at = session.frames
        else:
            frames = motion.joints_yup
        session.push(frames, at_frame=at, final=False, cancelled=self._interrupt(job, session),
                     chunk_limit=self._chunk_limit)
