"""`MotionProducer`: the node's two workers, generating and retargeting, and how motions join.

No ROS here: the node hands accepted jobs in, the producer hands playable clips and statuses out.

* The generation worker only generates, so a command's generation starts as soon as it is accepted
  (it never waits behind the retargeting of the clip that is playing). A long motion or a sequence
  is generated window by window, lazily: the first window plays while the next is generated, and
  a stop or preempt ends the generation of what has not been played.
* The retargeting worker fills clips chunk by chunk. It yields the CPU to a running generation while
  the playing clip has enough lead, and it drops work a newer continuation makes useless.
* Joining (`momask_ros.stream.switching`): a command that arrives while a motion plays is generated at
  once as a continuation of it from a token boundary a little ahead (a low quantile of the switch
  latencies measured online), and when it is ready it joins at the first frame whose retargeting
  cut is still ahead of playback, crossfading from the old motion if that is after the token
  boundary. The same retargeting stream continues from its own state there (`RetargetSession`), so
  playback switches without a blend. Queue mode continues at the end of the last motion. When the
  switch comes too late for that, or the model or retargeter cannot continue, the motion starts
  afresh with a blend and its status says why.
* Physical checks (``physical_checks``, `momask_ros.physics.checks.MotionGate`): every window of a
  command (each segment of a sequence, each continuation, each later window of a long motion) is
  checked right after generation, and `window_decision` says what follows. Under reject the check
  runs before the window is queued for retargeting, so a refused window never plays (a refused
  first window refuses the command; a refused later one cuts the motion where it begins); under warn
  it runs on a third worker, once the clip has lead and no generation runs (so it never delays a
  command's generation), and the summaries reach the ``playing``/``done`` statuses they are ready for.

Statuses: whoever ends a job reports it, once. A job cancelled by a stop or superseded by a newer
command gets no further status from the workers.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from momask_ros.stream.clip import MotionClip, SwitchTooLate
from momask_ros.stream.commands import MotionCommand
from momask_ros.physics.checks import MotionGate, Thresholds, window_decision
from momask_ros.stream.pipeline import GeneratedMotion, MotionPipeline
from momask_ros.stream.retargeting import RetargetSession
from momask_ros.stream.state import PipelineError
from momask_ros.stream.switching import LatencyStats, join_frame, plan_token, splice

log = logging.getLogger(__name__)

__all__ = ["Job", "MotionProducer"]


@dataclass(eq=False)
class Job:
    """One accepted command on its way to the robot."""

    id: int
    command: MotionCommand
    received_s: float                      # ROS time of arrival [s]
    accepted_at: float = field(default_factory=time.perf_counter)
    cancelled: bool = False                # nothing more of it is produced or played
    stop_generating: bool = False          # preempted while playing: no further windows
    session: RetargetSession | None = None
    start_frame: int = 0                   # where its motion's frame 0 is on its session's timeline [frames]
    switch_frame: int = 0                  # where it takes over on that timeline (>= start_frame) [frames]
    motion: GeneratedMotion | None = None  # generated so far (windows joined)
    switch: str = "start"                  # start (afresh) | continue (seamless) | blend (afresh, fallback)
    switch_reason: str | None = None
    fields: dict = field(default_factory=dict)
    cut_s: float = math.inf                # clip time from which a continuation changes the samples
    first_sample: tuple[float, float] | None = None  # (stamp [s], latency [ms]) of its first JointState
    after: "Job | None" = None             # the segment before this one in a sequence
    sequence: "list[Job]" = field(default_factory=list)  # the segments after this one (first segment only)
    cut: bool = False                      # a later window was refused: it ends with what was generated

    @property
    def clip(self) -> MotionClip | None:
        return None if self.session is None else self.session.clip

    @property
    def end_frame(self) -> int:
        return self.start_frame + (self.motion.frames if self.motion is not None else 0)

    def command_duration_s(self, fps: float) -> float:
        """How long this motion plays [s]: its last frame's time when it starts a clip, its frames'
        span when it continues one."""
        generated = self.motion.frames if self.motion is not None else 0
        if self.start_frame == 0:
            frames = (generated if self.cut else (self.command.length_frames or generated)) - 1
        else:  # from the switch frame on (a switch after the token boundary plays a little less)
            frames = self.end_frame - self.switch_frame
        return max(frames, 0) / fps / self.command.speed


class MotionProducer:
    """Generation and retargeting workers for the node (see the module docstring).

    Args:
        pipeline: generation and retargeting.
        report: ``(state, job, fields)`` for statuses (called from worker threads).
        options: ``() -> dict`` read per job: ``queue_mode`` (preempt|queue), ``switch_mode``
            (continue|blend), ``control_period_s``, ``physical_checks`` (off|warn|reject) and
            ``physical_thresholds`` (`Thresholds`).
    """

    #: The retargeting worker yields to a running generation while the clip is this far ahead [s].
    YIELD_LEAD_S = 0.5
    #: A long motion's next window is generated when playback comes this close to its end [s].
    AHEAD_S = 2.0

    def __init__(self, pipeline: MotionPipeline, *, report: Callable[[str, Job | None, dict], None],
                 options: Callable[[], dict]) -> None:
        self.pipeline = pipeline
        self._report = report
        self._options = options
        self.lock = threading.Condition()
        self._inbox: collections.deque[Job] = collections.deque()
        self._ready: collections.deque[Job] = collections.deque()   # fresh clips for the control loop
        self._tasks: collections.deque[tuple] = collections.deque()  # retargeting work, in order
        self._checks: collections.deque[tuple[Job, GeneratedMotion, int, int]] = collections.deque()  # warn's
        self._pending: list[Job] = []          # accepted, not yet playing, not ended
        self.session: RetargetSession | None = None  # what the control loop plays now
        self.generating: Job | None = None
        self.computing = False  # the model runs now (not while a long motion waits for its next window)
        self.model_ready = False
        self._shutdown = False
        #: generation start -> continuation committed to the clip, and the commit's own part (rewind +
        #: first chunk) [ms]; first guesses until measured (the warm-up replaces the first)
        self.switch_lead = LatencyStats(500.0)
        self.first_chunk = LatencyStats(20.0)
        self._last_generated: Job | None = None  # queue mode continues it
        self._threads: list[threading.Thread] = []
        self._gate: MotionGate | None = None   # physical checks, built on first use

    # ------------------------------------------------------------------ node side
    def start(self, *, warm_up: bool) -> None:
        self.model_ready = not warm_up
        for name, target in (("momask_generate", self._generate_loop), ("momask_retarget", self._retarget_loop),
                             ("momask_check", self._check_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def alive(self) -> bool:
        """Both workers are running."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def waiting(self) -> int:
        """Commands accepted and waiting (not playing, not being generated)."""
        with self.lock:
            return sum(1 for j in self._pending if j is not self.generating)

    def submit(self, job: Job) -> None:
        """An accepted command (with the segments of its sequence). Preempt mode supersedes every
        command that has not started playing, and ends the generation of the playing motion's
        further windows."""
        with self.lock:
            if self._options()["queue_mode"] == "preempt":
                for old in self._pending:
                    old.cancelled = True
                    self._report("rejected", old, {"reason": "superseded", "detail": f"preempted by command {job.id}"})
                self._pending.clear()
                self._inbox.clear()
                self._ready.clear()
                for seg_job in self._session_jobs():
                    seg_job.stop_generating = True
            for item in (job, *job.sequence):
                self._pending.append(item)
                self._inbox.append(item)
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
        with self.lock:
            self._shutdown = True
            for job in self._pending + self._session_jobs():
                job.cancelled = True
            self.lock.notify_all()
        for thread in self._threads:
            thread.join(timeout=5.0)

    def segment_at(self, session: RetargetSession, frame: float) -> Job | None:
        """The job whose frames the session plays at ``frame`` (the last one starting at or before it)."""
        with self.lock:
            return next((j for s, j in reversed(session.segments) if s <= frame + 1e-6), None)

    def next_segment(self, session: RetargetSession, job: Job) -> Job | None:
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

    def _take(self, queue: collections.deque) -> Any:
        """A worker's next item of ``queue``, waiting for one (call with the lock held); None on shutdown."""
        while not queue and not self._shutdown:
            self.lock.wait(0.5)
        return None if self._shutdown else queue.popleft()

    # ------------------------------------------------------------------ generation worker
    def _generate_loop(self) -> None:
        if not self.model_ready:
            try:
                t0 = time.perf_counter()
                ms = self.pipeline.warm_up()
                lead = getattr(self.pipeline, "switch_lead_ms", math.nan)
                # half the warm-up's (a short continuation on a cold model): planned early costs a frame or two
                self.switch_lead.first_guess_ms = 0.5 * (lead if math.isfinite(lead) else (time.perf_counter() - t0) * 1e3)
                self._report("ready", None, {"warmup_ms": round(ms, 1)})
            except Exception as exc:
                self._report("error", None, {"reason": "warm_up_failed", "detail": str(exc)[:300]})
            with self.lock:
                self.model_ready = True
        else:
            self._report("ready", None, {})
        while True:
            with self.lock:
                job = self._take(self._inbox)
                if job is None:
                    return
                self.generating = job
            try:
                self._produce(job)
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

    def _produce(self, job: Job) -> None:
        wait_ms = (time.perf_counter() - job.accepted_at) * 1e3
        self._report("generating", job, {"wait_ms": round(wait_ms, 1)})
        t0 = time.perf_counter()
        with self.lock:
            base, at, reason = self._plan(job)
        job.switch_reason = reason
        windows = self.pipeline.motions(job.command, after=None if base is None else base.motion, at_frame=at)
        parts: list[GeneratedMotion] = []
        offset = 0
        for motion in self._paced(job, windows):
            if job.cancelled or self._shutdown:
                return
            mode = self._options().get("physical_checks", "off")
            if parts and mode == "reject" and not self._physically_ok(job, motion, len(parts), offset):
                break  # a later window refused: the job ends where it would begin (reported)
            parts.append(motion)
            with self.lock:  # onto what the job holds: a switch may have spliced its first frames
                job.motion = motion if len(parts) == 1 else GeneratedMotion.join([job.motion, motion])
            job.fields.update(generation_ms=round(sum(p.generation_ms for p in parts), 1), seed=parts[0].seed,
                              windows=len(parts))
            if len(parts) == 1 and mode == "reject" and not self._physically_ok(job, motion):
                return
            with self.lock:
                if len(parts) == 1:
                    self._last_generated = job
                    self._tasks.append(("first", job, motion, base, at, t0))
                else:
                    self._tasks.append(("window", job, motion, None, offset, t0))
                self.lock.notify_all()
            if mode == "warn":  # on the check worker: neither the first JointState nor a generation waits
                with self.lock:
                    self._checks.append((job, motion, len(parts) - 1, offset))
                    self.lock.notify_all()
            offset += motion.frames
            if job.stop_generating:
                break
        with self.lock:
            self._tasks.append(("end", job, None, None, None, t0))
            self.lock.notify_all()

    def _check_loop(self) -> None:
        """The check worker: warn's physical checks, each once its clip has lead and no generation runs."""
        while True:
            with self.lock:
                check = self._take(self._checks)
            if check is None:
                return
            job, motion, window, offset = check
            if job.cancelled:
                continue
            try:
                self._wait_for_lead(job)
                if not job.cancelled:
                    self._physically_ok(job, motion, window, offset)
            except Exception:  # a check never takes the worker down; the motion plays unchecked
                log.exception("physical check")

    def _wait_for_lead(self, job: Job, timeout_s: float = 5.0) -> None:
        """Hold warn's check until the job's clip is retargeted `YIELD_LEAD_S` ahead of playback and no
        generation runs: run at once, it halves the CPU of the first chunks (the clip underruns) or
        of a command's generation."""
        end = time.perf_counter() + timeout_s
        with self.lock:
            while not (job.cancelled or self._shutdown) and time.perf_counter() < end:
                clip = job.clip
                lead = clip is not None and (clip.complete or clip.available_s - max(clip.read_s, 0.0) > self.YIELD_LEAD_S)
                if lead and not self.computing and not self._inbox:
                    return
                self.lock.wait(0.02)

    def _physically_ok(self, job: Job, motion: GeneratedMotion, window: int = 0, offset: int = 0) -> bool:
        """The physical checks of one window of a job (``offset`` its first frame in the job's motion),
        decided by `window_decision`: the summary goes into the job's status fields (``physical`` for
        the first window, a line per window in ``physical_windows``); under reject a failing first
        window refuses the job, a failing later one cuts it there. False = not to be played (reported)."""
        if self._gate is None:
            self._gate = MotionGate(self.pipeline.retargeter)
        if not self._gate.available:
            return True
        opts = self._options()
        summary = self._gate.summary(motion.joints_yup, motion.fps, opts.get("physical_thresholds", Thresholds()))
        decision = window_decision(opts.get("physical_checks", "off"), window, summary, start_s=offset / motion.fps)
        if window == 0:
            job.fields["physical"] = summary
        if decision.entry is not None:
            job.fields["physical_windows"] = [*job.fields.get("physical_windows", []), decision.entry]
        if decision.play:
            return True
        with self.lock:
            if job.cancelled:
                return False
            if decision.refuse_job:
                job.cancelled = True
                if job in self._pending:
                    self._pending.remove(job)
            else:
                job.stop_generating = job.cut = True
        self._report("rejected", job, decision.status)
        return False

    def _paced(self, job: Job, windows):
        """The windows of ``job``, each generated only once playback comes within `AHEAD_S` (or
        three switch leads) of the end of what is generated: a stop or preempt then leaves the rest
        ungenerated, and the model stays free for new commands. Queue mode's waiting commands need
        the whole motion first (they continue its end), so they lift the pacing."""
        windows = iter(windows)
        generated = 0
        planned = job.command.length_frames or self.pipeline.default_length_frames
        while True:
            if generated and planned is not None and generated < planned:
                with self.lock:
                    while not (job.cancelled or job.stop_generating or self._shutdown or self._inbox):
                        clip = job.clip
                        ahead = max(self.AHEAD_S, 3 * self._lead_s(0.9)) * job.command.speed * self.pipeline.fps
                        if clip is not None and job.start_frame + generated - clip.read_s * clip.fps < ahead:
                            break
                        self.lock.wait(0.02)
                    if job.cancelled or job.stop_generating or self._shutdown:
                        return
            self.computing = True
            try:
                motion = next(windows)
            except StopIteration:
                return
            finally:
                self.computing = False
            generated += motion.frames
            yield motion

    def _lead_s(self, q: float) -> float:
        """The ``q`` quantile of the time from a continuation's generation start to its first
        retargeted chunk [s], measured online on the recent switches (the warm-up's before any)."""
        return self.switch_lead.quantile(q) / 1e3

    def _commit_margin_s(self) -> float:
        """How far ahead of playback a switch's cut must be when its first chunk starts [s of playback]:
        the upper quartile of the recent first chunks (a chunk that takes longer, rarely, finds its
        cut played and is retried one frame later: `SwitchTooLate` leaves the clip as it was)."""
        return self.first_chunk.quantile(0.75) / 1e3

    def _plan(self, job: Job) -> tuple[Job | None, int | None, str | None]:
        """(motion to continue, its switch frame, why not) for a job about to be generated (locked)."""
        opts = self._options()
        session = self.session
        queue = opts["queue_mode"] == "queue" or job.after is not None
        if job.after is not None:  # the next segment of a sequence: it continues the one before
            base = job.after
            if base.cancelled or base.motion is None or (base.session is not None and base.session.closed):
                return None, None, None
            session = base.session
        elif queue:
            # the last motion generated (it may not play yet: the tasks keep their order)
            base = self._last_generated
            if base is None or base.cancelled or (base.session is not None and base.session.closed):
                return None, None, None
            session = base.session
        elif session is None or session.closed or not session.segments:
            return None, None, None
        if opts.get("switch_mode", "continue") == "blend":
            return None, None, "blend_requested"
        if not self.pipeline.can_continue:
            return None, None, "model_cannot_continue"
        if session is not None and not session.can_continue:
            return None, None, "retargeter_cannot_continue"
        if queue:
            if base.motion is None or base.motion.tokens is None:
                return None, None, "model_cannot_continue"
            return base, base.motion.frames, None
        fps = session.clip.fps
        played = max(session.clip.read_s, 0.0)
        base = next((j for s, j in reversed(session.segments) if s <= played * fps), session.segments[0][1])
        if base.cancelled or base.motion is None or base.motion.tokens is None:
            return None, None, "model_cannot_continue"
        # the fastest recent switch: planned early, the switch moves on a frame or two; late, it waits
        at = plan_token(played_s=played, lead_s=self._lead_s(0.0) * base.command.speed,
                        base_start=base.start_frame, base_frames=base.motion.frames,
                        unit=self.pipeline.unit_frames, fps=fps, cut_time=session.cut_time)
        return base, at, None

    # ------------------------------------------------------------------ retargeting worker
    def _retarget_loop(self) -> None:
        while True:
            with self.lock:
                task = self._take(self._tasks)
            if task is None:
                return
            kind, job = task[0], task[1]
            if job.cancelled:
                continue
            try:
                if kind == "first" and task[3] is not None:
                    self._switch(job, task[2], task[3], task[4], task[5])
                elif kind == "first":
                    self._fresh(job, task[2], job.switch_reason)
                elif kind == "window":
                    self._extend(job, task[2], task[4])
                elif job.session is not None and job.session.segments and job.session.segments[-1][1] is job:
                    job.session.finish()  # "end": nothing more of this job; flush unless continued
            except PipelineError as exc:
                if str(exc) != "cancelled" and not job.cancelled:
                    self._report("rejected", job, {"reason": "retarget_failed", "detail": str(exc)[:300]})
            except Exception as exc:  # keep the worker alive whatever happens
                log.exception("retargeting worker")
                if not job.cancelled:
                    self._report("rejected", job, {"reason": "retarget_failed", "detail": f"{type(exc).__name__}: {exc}"})

    #: Chunk size of background retargeting while a generation runs [frames]: it gives way within one
    #: such chunk when the generation needs the CPU or a switch arrives.
    BACKGROUND_CHUNK_FRAMES = 4

    def _chunk_limit(self) -> int | None:
        return self.BACKGROUND_CHUNK_FRAMES if self.computing or self._switch_waiting() else None

    def _switch_waiting(self) -> bool:
        with self.lock:
            return any(t[0] == "first" and t[3] is not None for t in self._tasks)

    def _interrupt(self, job: Job, session: RetargetSession) -> Callable[[], bool]:
        """Between chunks: give way to a running generation while the clip has lead, and stop work a
        waiting continuation, a stop or a shutdown makes useless."""
        def check() -> bool:
            clip = session.clip
            while (self.computing and not self._shutdown and not job.cancelled  # lead in playback seconds
                   and (clip.available_s - max(clip.read_s, 0.0)) / job.command.speed > self.YIELD_LEAD_S
                   and not self._switch_waiting()):
                time.sleep(0.005)
            return job.cancelled or self._shutdown or session.closed or self._switch_waiting()
        return check

    def _fresh(self, job: Job, motion: GeneratedMotion, reason: str | None) -> None:
        session = self.pipeline.open_session(motion)
        session.segments.append((0, job))
        job.session, job.start_frame, job.switch_frame = session, 0, 0
        if reason is not None:
            job.switch, job.switch_reason = "blend", reason
        with self.lock:
            if job.cancelled:
                return
            self._ready.append(job)
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

    #: Attempts at a switch whose cut playback passed while its first chunk was being retargeted.
    SWITCH_ATTEMPTS = 3

    def _switch(self, job: Job, motion: GeneratedMotion, base: Job, at: int, t0: float) -> None:
        """Join ``job`` to ``base``'s session: at ``base``'s frame ``at``, or at the first frame after it
        whose cut is still ahead of playback (crossfading from ``base`` there), else afresh (blend)."""
        session = base.session
        if session is None or session.closed:
            return self._fresh(job, motion, "motion_ended")
        if not session.can_continue:
            return self._fresh(job, motion, "retargeter_cannot_continue")
        resume, detail = session.frames, "no frame within the slip limit after the token is still ahead of playback"
        tried: int | None = None  # where a failed attempt rewound the stream to (its frames are old ones again)
        for _ in range(self.SWITCH_ATTEMPTS):
            with self.lock:
                old = base.motion.joints_yup
            f = join_frame(at=at, base_start=base.start_frame, base_frames=old.shape[0],
                           deadline_s=max(session.clip.read_s, 0.0) + self._commit_margin_s() * base.command.speed,
                           cut_time=session.cut_time)
            if f is None:
                break
            switch_frame = base.start_frame + f
            later = [s for s, j in session.segments if s > base.switch_frame]
            resume = min([switch_frame, session.frames, resume, *later])
            joined = splice(old, motion.joints_yup, at, f)
            r = resume - base.start_frame
            frames = np.concatenate([old[r:at], joined[max(r - at, 0):]])
            try:
                session.push(frames, at_frame=resume, final=False,
                             cancelled=lambda: job.cancelled or self._shutdown,
                             on_commit=self._committer(job, base, session, motion, joined, at, f, resume, t0),
                             repeat_frames=0 if tried is None else switch_frame - resume)
                return
            except SwitchTooLate as exc:
                detail = f"playback passed the cut while the first chunk was retargeted ({exc})"
                tried = resume
                continue
        job.fields["switch_detail"] = detail[:200]
        self.switch_lead.add((time.perf_counter() - t0) * 1e3)
        session.abandon()
        self._fresh(job, motion, "late")

    def _committer(self, job: Job, base: Job, session: RetargetSession, motion: GeneratedMotion,
                   joined: np.ndarray, at: int, f: int, resume: int, t0: float) -> Callable[[float], None]:
        """What happens once a switch's first samples are in the clip (it is certain then)."""
        def commit(cut_s: float) -> None:
            lead_ms = (time.perf_counter() - t0) * 1e3
            with self.lock:
                session.segments[:] = [(s, j) for s, j in session.segments if s < resume or j is base]
                session.segments.append((base.start_frame + f, job))
                job.motion = dataclasses.replace(motion, joints_yup=joined)
                job.session, job.switch = session, "continue"
                job.start_frame, job.switch_frame, job.cut_s = base.start_frame + at, base.start_frame + f, cut_s
            job.fields.update(switch_lead_ms=round(lead_ms, 1), switch_slip_frames=f - at,
                              switch_chunk_ms=round(session.first_chunk_ms, 1))
            self.switch_lead.add(lead_ms)
            self.first_chunk.add(session.first_chunk_ms)
        return commit
