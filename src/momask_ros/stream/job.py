"""A command on its way to the robot (`Job`) and the work items the producer's workers pass each other.

A job is made when a command arrives and lives until its final status. Between the generation
worker and the retargeting worker travel typed tasks, in order: `FirstWindow` (start the job's clip,
or join the playing one), `LaterWindow` (the next window of a long motion), `EndOfJob` (nothing more
comes), `TakeBack` (a superseded continuation leaves the clip); `WindowCheck` goes to the check worker
under ``physical_checks: warn``, `SpanRehearsal` under ``rehearse`` (once the window is retargeted: the
rehearsal runs on the robot samples that will play).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from momask_ros.stream.clip import MotionClip
from momask_ros.stream.commands import MotionCommand
from momask_ros.stream.pipeline import GeneratedMotion
from momask_ros.stream.retargeting import RetargetSession

__all__ = ["EndOfJob", "FirstWindow", "Job", "LaterWindow", "Report", "RetargetTask", "SpanRehearsal", "TakeBack",
           "WindowCheck"]

#: ``(state, job or None, fields)``: a status for the conductor to publish (called from any thread).
Report = Callable[[str, "Job | None", dict], None]


@dataclass(eq=False)
class Job:
    """One accepted command on its way to the robot (one segment of a sequence)."""

    id: int
    command: MotionCommand
    received_s: float                      # clock time of arrival (the conductor's clock) [s]
    accepted_at: float = 0.0               # when the producer took it (the producer's clock) [s]
    cancelled: bool = False                # nothing more of it is produced or played
    stop_generating: bool = False          # preempted while playing: no further windows
    session: "RetargetSession[Job] | None" = None
    start_frame: int = 0                   # where its motion's frame 0 is on its session's timeline [frames]
    switch_frame: int = 0                  # where it takes over on that timeline (>= start_frame) [frames]
    motion: GeneratedMotion | None = None  # generated so far (windows joined)
    switch: str = "start"                  # start (afresh) | continue (seamless) | blend (afresh, fallback)
    switch_reason: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # what its statuses carry (timings, checks, bag)
    cut_s: float = math.inf                # clip time from which a continuation changes the samples
    first_sample: tuple[float, float] | None = None  # (stamp [s], latency [ms]) of its first JointState
    after: "Job | None" = None             # the segment before this one in a sequence
    sequence: "list[Job]" = field(default_factory=list)  # the segments after this one (first segment only)
    cut: bool = False                      # a later window was refused: it ends with what was generated
    rehearsed_s: float | None = None       # rehearse: clip time up to which its samples are queued for rehearsal
    rehearsals: int = 0                    # rehearse: spans of it queued so far

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


@dataclass(frozen=True)
class FirstWindow:
    """A job's first window: a clip of its own (``base`` None), or a continuation joining ``base``'s
    session at token frame ``at`` of ``base``'s motion. ``t0`` is when its generation started
    (the producer's clock) [s]."""

    job: Job
    motion: GeneratedMotion
    base: Job | None = None
    at: int = 0
    t0: float = 0.0
    last: bool = False  # the job's last window (rehearse flushes the clip after it)


@dataclass(frozen=True)
class LaterWindow:
    """The next window of a long motion; ``offset`` is its first frame in the job's motion."""

    job: Job
    motion: GeneratedMotion
    offset: int
    last: bool = False


@dataclass(frozen=True)
class EndOfJob:
    """The job's generation is over: flush its clip unless a continuation took over."""

    job: Job


@dataclass(frozen=True)
class TakeBack:
    """A continuation superseded before it played: the motion it joined gets back what its frames replaced
    (`MotionProducer.restore`), so it ends as it was rehearsed, not where the continuation would begin."""

    job: Job


RetargetTask = Union[FirstWindow, LaterWindow, EndOfJob, TakeBack]


@dataclass(frozen=True)
class WindowCheck:
    """Warn's physical check of window ``window`` (``offset`` its first frame in the job's motion)."""

    job: Job
    motion: GeneratedMotion
    window: int
    offset: int


@dataclass(frozen=True)
class SpanRehearsal:
    """Rehearse's run of ``job``'s clip samples from clip time ``start_s`` to ``end_s`` [s], its span
    number ``window`` (0: the first). ``fresh``: the clip starts with it, and its playback waits for the
    rehearsal to clear a start; ``since``: how many replacements the clip had when the span was taken;
    ``watch``: the rest of a motion that plays, rehearsed again from the robot's measured state
    (`momask_ros.stream.rehearsing.Rehearser.watch_due`)."""

    job: Job
    window: int
    start_s: float
    end_s: float
    fresh: bool
    since: int = 0
    watch: bool = False
