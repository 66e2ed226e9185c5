"""How a job's motion joins what plays: the plan made when its generation starts, the join made when
its first window is ready (the frames and the crossfade come from `momask_ros.stream.switching`).

A plan says what the job continues: nothing (a fresh start), the playing motion from a token ``at``
chosen on the measured switch latencies, the previous segment of its sequence or the last queued
motion from its end, or nothing with a reason when it could have continued but may not (blend
requested, a model or retargeter that cannot continue). The join rewinds the playing session's
stream to the first frame whose cut is still ahead of playback and pushes the continuation there;
when playback passed that cut meanwhile it retries, and after `Joiner.SWITCH_ATTEMPTS` (or past
`switching.MAX_SLIP_FRAMES`) it gives up: the job starts afresh with a blend (``late``).
"""
from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

from momask_ros.stream.clip import SwitchTooLate
from momask_ros.stream.job import FirstWindow, Job
from momask_ros.stream.retargeting import RetargetSession
from momask_ros.stream.settings import ProducerSettings
from momask_ros.stream.switching import LatencyStats, join_frame, plan_token, splice

__all__ = ["Joiner", "Plan"]


@dataclass(frozen=True)
class Plan:
    """What a job continues: ``base``'s motion from its frame ``at`` (None: a fresh start, and
    ``reason`` says why when a continuation was possible in principle)."""

    base: Job | None = None
    at: int = 0
    reason: str | None = None


class Joiner:
    """Plans and makes the joins of one producer, measuring how long they take.

    Args:
        unit_frames: the model's token length [frames] (continuations start on a token boundary).
        lock: the producer's lock (the plan is made under it; the join takes it for the job's state).
        clock: the producer's clock [s] (latencies are measured on it).
    """

    #: Attempts at a switch whose cut playback passed while its first chunk was being retargeted.
    SWITCH_ATTEMPTS = 3

    def __init__(self, *, unit_frames: int, lock: threading.Condition, clock: Callable[[], float]) -> None:
        self._unit = int(unit_frames)
        self._lock = lock
        self._clock = clock
        #: generation start -> continuation committed to the clip, and the commit's own part (rewind +
        #: first chunk) [ms]; first guesses until measured (the warm-up replaces the first)
        self.switch_lead = LatencyStats(500.0)
        self.first_chunk = LatencyStats(20.0)

    def lead_s(self, q: float) -> float:
        """The ``q`` quantile of the time from a continuation's generation start to its first
        retargeted chunk [s], measured online on the recent switches (the warm-up's before any)."""
        return self.switch_lead.quantile(q) / 1e3

    def commit_margin_s(self) -> float:
        """How far ahead of playback a switch's cut must be when its first chunk starts [s of playback]:
        the upper quartile of the recent first chunks (a chunk that takes longer, rarely, finds its
        cut played and is retried one frame later: `SwitchTooLate` leaves the clip as it was)."""
        return self.first_chunk.quantile(0.75) / 1e3

    def plan(self, job: Job, *, playing: RetargetSession[Job] | None, last_generated: Job | None,
             settings: ProducerSettings) -> Plan:
        """What ``job`` continues, as its generation starts (call with the lock held).

        Args:
            playing: the session playing now; last_generated: the last job generated (queue mode).
        """
        session = playing
        queue = settings.queue_mode == "queue" or job.after is not None
        if job.after is not None:  # the next segment of a sequence: it continues the one before
            base = job.after
            if base.cancelled or base.motion is None or (base.session is not None and base.session.closed):
                return Plan()
            session = base.session
        elif queue:
            # the last motion generated (it may not play yet: the tasks keep their order)
            base = last_generated
            if base is None or base.cancelled or (base.session is not None and base.session.closed):
                return Plan()
            session = base.session
        elif session is None or session.closed or not session.segments:
            return Plan()
        if session is not None and session.clip.stop_at_s is not None:
            return Plan(reason="motion_cut")  # rehearse cuts it before a fall: nothing continues it
        if settings.switch_mode == "blend":
            return Plan(reason="blend_requested")
        if session is not None and not session.can_continue:
            return Plan(reason="retargeter_cannot_continue")
        if queue:
            if base.motion is None or base.motion.tokens is None:
                return Plan(reason="model_cannot_continue")
            return Plan(base, base.motion.frames)
        fps = session.clip.fps
        played = max(session.clip.read_s, 0.0)
        base = next((j for s, j in reversed(session.segments) if s <= played * fps), session.segments[0][1])
        if base.cancelled or base.motion is None or base.motion.tokens is None:
            return Plan(reason="model_cannot_continue")
        # the fastest recent switch: planned early, the switch moves on a frame or two; late, it waits
        at = plan_token(played_s=played, lead_s=self.lead_s(0.0) * base.command.speed,
                        base_start=base.start_frame, base_frames=base.motion.frames,
                        unit=self._unit, fps=fps, cut_time=session.cut_time)
        return Plan(base, at)

    def join(self, task: FirstWindow, *, stopped: Callable[[], bool]) -> str | None:
        """Join ``task.job`` to ``task.base``'s session: at the base's frame ``task.at``, or at the first
        frame after it whose cut is still ahead of playback (crossfading from the base there).

        Returns:
            None once joined; else why the job must start afresh instead (``motion_ended``,
            ``retargeter_cannot_continue``, ``late``).

        Raises:
            Cancelled, PipelineError: from the session's push (``stopped()`` is asked between chunks).
        """
        job, base, motion, at = task.job, task.base, task.motion, task.at
        session = base.session
        if session is None or session.closed:
            return "motion_ended"
        if not session.can_continue:
            return "retargeter_cannot_continue"
        resume, detail = session.frames, "no frame within the slip limit after the token is still ahead of playback"
        tried: int | None = None  # where a failed attempt rewound the stream to (its frames are old ones again)
        for _ in range(self.SWITCH_ATTEMPTS):
            with self._lock:
                old = base.motion.joints_yup
            f = join_frame(at=at, base_start=base.start_frame, base_frames=old.shape[0],
                           deadline_s=max(session.clip.read_s, 0.0) + self.commit_margin_s() * base.command.speed,
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
                session.push(frames, at_frame=resume, final=False, cancelled=lambda: job.cancelled or stopped(),
                             on_commit=self._committer(task, joined, f, resume, self._clock()),
                             repeat_frames=0 if tried is None else switch_frame - resume)
                return None
            except SwitchTooLate as exc:
                detail = f"playback passed the cut while the first chunk was retargeted ({exc})"
                tried = resume
        job.fields["switch_detail"] = detail[:200]
        self.switch_lead.add((self._clock() - task.t0) * 1e3)
        session.abandon()
        return "late"

    def _committer(self, task: FirstWindow, joined: np.ndarray, f: int, resume: int,
                   pushed_at: float) -> Callable[[float], None]:
        """What happens once a switch's first samples are in the clip (it is certain then)."""
        job, base, session = task.job, task.base, task.base.session

        def commit(cut_s: float) -> None:
            now = self._clock()
            lead_ms, chunk_ms = (now - task.t0) * 1e3, (now - pushed_at) * 1e3
            with self._lock:
                session.segments[:] = [(s, j) for s, j in session.segments if s < resume or j is base]
                session.segments.append((base.start_frame + f, job))
                job.motion = dataclasses.replace(task.motion, joints_yup=joined)
                job.session, job.switch = session, "continue"
                job.start_frame, job.switch_frame, job.cut_s = base.start_frame + task.at, base.start_frame + f, cut_s
            job.fields.update(switch_lead_ms=round(lead_ms, 1), switch_slip_frames=f - task.at,
                              switch_chunk_ms=round(chunk_ms, 1))
            self.switch_lead.add(lead_ms)
            self.first_chunk.add(chunk_ms)
        return commit
