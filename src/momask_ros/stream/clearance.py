"""Rehearse's side of the control loop (``physical_checks: rehearse``), kept out of `Conductor`'s timing.

The rehearser needs to know where a fresh motion's stream would start (`stream_start`: the pose held
now, and the clip that plays and where the new motion takes over from it). Playback in turn honours
what the rehearsal said about its clip: it plays only what the rehearsal cleared (`MotionClip.covers`),
holding the pose where the clearance ends while the rehearsal is behind (`note_hold` counts that time
in the job's ``rehearsal_held_s``), and it stops at the clip's cut before a predicted fall
(`MotionClip.stop_at_s`: `cut_due`), decelerating into a hold (`after_cut`) whose ``done``
(`cut_fields`) sends the tracker back to standing, as the rehearsal of the cut did.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from momask_ros.stream.clip import MotionClip
from momask_ros.stream.followed import StreamStart
from momask_ros.stream.job import Job
from momask_ros.stream.playback import MotionPlayback, Playback, ReturnPlayback, StopPlayback
from momask_ros.stream.settings import StreamSettings
from momask_ros.stream.state import JointSpace, RobotPose, Sample

__all__ = ["after_cut", "cut_due", "cut_fields", "note_hold", "stream_start"]


def stream_start(settings: StreamSettings, held: Sample, play: MotionPlayback | None,
                 job: Job | None, *, ended: tuple[MotionClip, int] | None = None, now_ns: int = 0) -> StreamStart:
    """Where a fresh motion's stream would start (the rehearser's thread asks): blended from the ``held``
    pose, taking over from the clip that plays (``play``, for ``job``; idle: None) now (preempt) or at
    its end (queue); idle, after the clip that ``ended`` (played to its end at that clock time [ns])."""
    start = StreamStart(held.pose(), settings.blend_s, settings.period_ns * 1e-9)
    if play is None or job is None:
        if ended is None:
            return start
        return dataclasses.replace(start, ended=ended[0], since_end_s=max(now_ns - ended[1], 0) * 1e-9)
    clip = play.clip
    if settings.producer.queue_mode == "preempt":
        return dataclasses.replace(start, playing=clip, takeover_s=max(clip.read_s, 0.0), speed=play.speed)
    times, q, pos, quat = clip.span(clip.duration_s, clip.duration_s)
    end = RobotPose(q[-1], pos[-1], quat[-1]) if len(times) else start.pose
    return dataclasses.replace(start, pose=end, playing=clip, takeover_s=clip.duration_s, speed=play.speed)


def cut_due(play: MotionPlayback, t: float) -> bool:
    """Playback at ``t`` reached its clip's cut (its last playable sample, half a frame before)."""
    clip = play.clip
    return clip.stop_at_s is not None and play.clip_time(t) + 0.5 / clip.fps >= clip.stop_at_s - 1e-9


def cut_fields(play: MotionPlayback, job: Job, t: float) -> dict[str, Any]:
    """The ``done`` of a job cut at playback time ``t``: what played of it, and ``cut``."""
    played = max(play.clip_time(t) - job.switch_frame / play.clip.fps, 0.0) / play.speed
    return {**job.fields, "duration_s": round(played, 3), "cut": True}


def after_cut(last: Sample, space: JointSpace, settings: StreamSettings) -> Playback:
    """What plays after a cut: a deceleration into a hold of ``last`` (then to rest with ``idle_behavior: rest``)."""
    if settings.idle_behavior == "rest":
        return ReturnPlayback(last, space.rest, space, stop_s=settings.stop_blend_s, blend_s=settings.rest_blend_s)
    return StopPlayback(last, space, stop_s=settings.stop_blend_s)


def note_hold(play: MotionPlayback, job: Job | None, t: float, period_s: float) -> None:
    """A period at playback time ``t`` held the pose: when its samples are written but not yet cleared
    (the rehearsal is behind), the job's ``rehearsal_held_s`` says for how long in all."""
    clip = play.clip
    c = play.clip_time(t) + 0.5 / clip.fps
    if job is not None and c > clip.verified_s and (clip.complete or c <= clip.available_s):
        job.fields["rehearsal_held_s"] = round(job.fields.get("rehearsal_held_s", 0.0) + period_s, 3)
