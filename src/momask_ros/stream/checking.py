"""What a motion must pass before it plays, per ``physical_checks``: the work of the producer's check
worker, and the gate the generation worker applies under reject.

* warn / reject: every generated window is retargeted on its own and checked
  (`momask_ros.physics.checks.MotionGate`); `window_decision` says what follows. Under reject the
  generation worker asks `WindowChecks.physically_ok` before the window is queued for retargeting, so a
  refused window never plays (a refused first window refuses the command; a refused later one cuts the
  motion where it begins); under warn the check worker runs it once the clip has lead and no generation
  runs, and the summaries reach the ``playing``/``done`` statuses they are ready for.
* rehearse: each span of robot samples a job retargets is rehearsed in physics on the check worker
  (`momask_ros.stream.rehearsing`): a fresh clip waits for it, and nothing plays past what it cleared.
"""
from __future__ import annotations

import logging
import math
import time
import weakref
from typing import Any, Protocol

from momask_ros.physics.checks import MotionGate, window_decision
from momask_ros.stream.job import Job, RetargetTask, SpanRehearsal, WindowCheck
from momask_ros.stream.pipeline import GeneratedMotion
from momask_ros.stream.rehearsing import Host, Rehearser

log = logging.getLogger(__name__)

__all__ = ["CheckHost", "WindowChecks"]


class CheckHost(Host, Protocol):
    """What the checks need of their producer (`momask_ros.stream.producer.MotionProducer`)."""

    settings: Any  # ProducerSettings
    pipeline: Any  # MotionPipeline
    stopping: bool

    def busy(self) -> bool:
        """The model runs or commands wait for it: a check gives way."""


class WindowChecks:
    """The checks and rehearsals of one `MotionProducer`'s motions (module docstring).

    Args:
        producer: whose jobs, lock, settings and statuses these are.
        rehearser: what ``physical_checks: rehearse`` runs (None: that mode is not available).
    """

    #: warn's check waits until the clip is retargeted this far ahead of playback [s].
    YIELD_LEAD_S = 0.5
    #: rehearse: a fresh clip retargeted this far past `Rehearser.margin_s` waits for its start to clear [s].
    GIVE_WAY_S = 0.5

    def __init__(self, producer: CheckHost, rehearser: Rehearser | None = None) -> None:
        self._producer = producer
        self.rehearser = rehearser
        self._gate: MotionGate | None = None  # physical checks, built on first use
        #: rehearse: jobs whose first span is rehearsed as it is retargeted -> where it ends (None: not known yet)
        self._open: weakref.WeakKeyDictionary[Job, float | None] = weakref.WeakKeyDictionary()
        self._running: Job | None = None  # whose span is being rehearsed now

    @property
    def running(self) -> Job | None:
        """The job whose span (or watch) the check worker rehearses now."""
        return self._running

    @property
    def rehearsing(self) -> bool:
        return self._producer.settings.physical_checks == "rehearse" and self.rehearser is not None

    # ------------------------------------------------------------------ the check worker
    def run(self, item: WindowCheck | SpanRehearsal, *, wait: bool) -> None:
        """Warn's check of one window, once its clip has lead and no generation runs (``wait``), or
        rehearse's run of one span. Never raises: a check that fails lets the motion play (warn), a
        rehearsal that fails cuts or refuses it (nothing plays unrehearsed)."""
        if isinstance(item, SpanRehearsal):
            self._running = item.job
            try:
                self.rehearser.run(item, self._producer, end=lambda idle: self._span_end(item.job, idle))
            except Exception as exc:
                log.exception("rehearsal")
                self._unrehearsable(item, f"{type(exc).__name__}: {exc}"[:300])
            finally:
                self._running = None
            return
        try:
            if wait and not item.job.cancelled:
                self._wait_for_lead(item.job)
            if not item.job.cancelled:
                self.physically_ok(item.job, item.motion, item.window, item.offset)
        except Exception:  # a check never takes the worker down; the motion plays unchecked
            log.exception("physical check")

    def _wait_for_lead(self, job: Job, timeout_s: float = 5.0) -> None:
        """Hold warn's check until the job's clip is retargeted `YIELD_LEAD_S` ahead of playback and no
        generation runs: run at once, it halves the CPU of the first chunks (the clip underruns) or
        of a command's generation."""
        producer = self._producer
        end = time.perf_counter() + timeout_s
        with producer.lock:
            while not (job.cancelled or producer.stopping) and time.perf_counter() < end:
                clip = job.clip
                lead = clip is not None and (clip.complete or clip.available_s - max(clip.read_s, 0.0) > self.YIELD_LEAD_S)
                if lead and not producer.busy():
                    return
                producer.lock.wait(0.02)

    # ------------------------------------------------------------------ warn, reject
    def physically_ok(self, job: Job, motion: GeneratedMotion, window: int = 0, offset: int = 0) -> bool:
        """The physical checks of one window of a job (``offset`` its first frame in the job's motion),
        decided by `window_decision`: the summary goes into the job's status fields (``physical`` for
        the first window, a line per window in ``physical_windows``); under reject a failing first
        window refuses the job, a failing later one cuts it there. False = not to be played (reported)."""
        producer = self._producer
        if self._gate is None:
            self._gate = MotionGate(producer.pipeline.retargeter)
        if not self._gate.available:
            return True
        settings = producer.settings
        summary = self._gate.summary(motion.joints_yup, motion.fps, settings.physical_thresholds)
        decision = window_decision(settings.physical_checks, window, summary, start_s=offset / motion.fps)
        if window == 0:
            job.fields["physical"] = summary
        if decision.entry is not None:
            job.fields["physical_windows"] = [*job.fields.get("physical_windows", []), decision.entry]
        if decision.play:
            return True
        if decision.refuse_job:
            producer.refuse(job, decision.status)
            return False
        with producer.lock:
            if job.cancelled:
                return False
            job.stop_generating = job.cut = True
        producer.report("rejected", job, decision.status)
        return False

    # ------------------------------------------------------------------ rehearse
    def open_span(self, job: Job) -> SpanRehearsal:
        """A fresh clip's first span, taken as the clip opens: it is rehearsed as the retargeting writes
        it, so the first JointState waits only for the rehearsal of its first `Rehearser.margin_s`; it
        ends where the task writing it ends (`span_after`)."""
        with self._producer.lock:
            self._open[job] = None
            job.rehearsed_s, job.rehearsals = math.inf, 1
        return SpanRehearsal(job, 0, 0.0, math.inf, fresh=True)

    def gives_way(self, job: Job) -> bool:
        """Whether the retargeting of ``job``'s fresh clip waits (between two chunks) for the rehearsal that
        clears its start, running beside it: it wrote what that rehearsal needs (`Rehearser.margin_s` and
        `GIVE_WAY_S`), and the two share one interpreter, so the first JointState waits for the rehearsal
        alone. (Stepped workers never rehearse during a retargeting: nothing waits.)"""
        clip = job.clip
        return (self._running is job and clip is not None and clip.verified_s == -math.inf and not job.cancelled
                and clip.available_s > (self.rehearser.margin_s + self.GIVE_WAY_S) * job.command.speed)

    def span_after(self, task: RetargetTask) -> SpanRehearsal | None:
        """After a retargeting task of a job, the samples it wrote since its last span, to rehearse (its
        last window is flushed first, so the span ends where the motion ends); an open span ends there
        instead. Call without the lock."""
        job, session = task.job, task.job.session
        if session is None or session.closed or job.cancelled:
            return None
        if getattr(task, "last", False) and session.segments and session.segments[-1][1] is job:
            session.finish()
        with self._producer.lock:
            if job.rehearsed_s == math.inf:  # its open span goes on to here
                job.rehearsed_s = self._open[job] = session.clip.available_s
                return None
        clip, fresh = session.clip, job.rehearsed_s is None and job.switch != "continue"
        start = job.rehearsed_s if job.rehearsed_s is not None else (0.0 if fresh else job.cut_s)
        if clip.available_s <= start + 1e-9:
            return None
        span = SpanRehearsal(job, job.rehearsals, start, clip.available_s, fresh=fresh, since=len(clip.replaced))
        job.rehearsed_s, job.rehearsals = clip.available_s, job.rehearsals + 1
        return span

    def _span_end(self, job: Job, idle: bool) -> float | None:
        """Where ``job``'s open span ends: where its retargeting task ended, else, once its clip stopped
        growing (``idle``: the task was interrupted), where the clip is now (a later task's span follows)."""
        with self._producer.lock:
            end = self._open.get(job)
            if end is None and idle and job.clip is not None:
                end = self._open[job] = job.rehearsed_s = job.clip.available_s
            return end

    def _unrehearsable(self, task: SpanRehearsal, detail: str) -> None:
        producer, clip = self._producer, task.job.clip
        status = {"reason": "rehearsal_failed", "detail": detail}
        if clip is None:
            return
        producer.drop_following(task.job, status["reason"])
        if task.fresh and clip.verified_s <= task.start_s:
            producer.refuse(task.job, status)
        else:
            clip.cut(max(task.start_s, clip.read_s))
            producer.report("rejected", task.job, status)
