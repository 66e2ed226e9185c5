"""Where a continuation joins the playing motion, and how its first frames are spliced in.

No ROS, no threads: the producer asks these functions, the tests call them directly.

A switch has two moments. When a preempting command's generation starts, `plan_token` picks the
token boundary ``at`` the continuation is generated from (MoMask fixes the playing motion's tokens
before it). When the continuation is ready, `join_frame` picks the frame ``f >= at`` where playback
actually switches: the first frame whose retargeting cut is still ahead of playback by the time
the first chunk is retargeted. The continuation's frames between ``at`` and ``f`` were played as
the old motion's; `splice` keeps those and crossfades old into new over `FADE_FRAMES` from ``f``
(both start from the same tokens and pose at ``at``, so they differ little there).

So ``at`` is planned on the fastest recent switch (the low end of the measured latencies): a
switch planned too early only moves ``f`` on by a frame or two (no waiting), one planned too late
makes playback wait for ``at``. The latency is then what an idle command pays (generation and first
chunk) plus at most a frame, instead of a fixed safety margin and the rounding up to the next
4-frame token.
"""
from __future__ import annotations

import collections
import math
from typing import Callable

import numpy as np

from momask_model.generation.streaming import fade_in_weights

__all__ = ["FADE_FRAMES", "LatencyStats", "MAX_SLIP_FRAMES", "join_frame", "plan_token", "splice"]

#: Frames over which the old motion fades into the continuation when the switch comes after ``at``
#: (1 s at 20 fps, as MoMask's own pose ramp at a continuation: faster, planted feet slide).
FADE_FRAMES = 20
#: The latest switch after ``at`` [frames] (0.6 s at 20 fps): later, the two motions have diverged
#: too far for a short crossfade and the continuation starts afresh with a blend (status ``late``).
MAX_SLIP_FRAMES = 12


class LatencyStats:
    """Recent durations of one step [ms] as a distribution (quantiles, not a fixed margin).

    Args:
        first_guess_ms: what `quantile` says before anything was measured.
        size: how many recent measurements count (a loaded machine changes the figures).
    """

    def __init__(self, first_guess_ms: float, size: int = 16) -> None:
        self.first_guess_ms = float(first_guess_ms)
        self._recent: collections.deque[float] = collections.deque(maxlen=int(size))

    def add(self, ms: float) -> None:
        if math.isfinite(ms) and ms >= 0:
            self._recent.append(float(ms))

    def __len__(self) -> int:
        return len(self._recent)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0..1) of the recent measurements [ms], or the first guess before any."""
        if not self._recent:
            return self.first_guess_ms
        return float(np.quantile(np.fromiter(self._recent, float), q))


def plan_token(*, played_s: float, lead_s: float, base_start: int, base_frames: int, unit: int, fps: float,
               cut_time: Callable[[int], float]) -> int:
    """The token boundary [frames into the base motion] to generate a continuation from.

    Playback is at ``played_s`` (clip time) and the continuation is expected ready ``lead_s`` of clip
    time later; ``cut_time(frame)`` is the clip time from which the retargeted samples change when the
    session continues from timeline ``frame``. Returns the last unit multiple at or before the first
    frame whose cut is still ahead then (at least one unit, at most the base's last whole token).
    """
    ahead = played_s + lead_s
    f = max(0, int(math.ceil(ahead * fps - base_start)))
    while f < base_frames and cut_time(base_start + f) <= ahead:
        f += 1
    return min(max(unit, f // unit * unit), max(unit, base_frames // unit * unit))


def join_frame(*, at: int, base_start: int, base_frames: int, deadline_s: float,
               cut_time: Callable[[int], float]) -> int | None:
    """The first frame ``f >= at`` [into the base motion] whose cut is after ``deadline_s`` (clip time
    playback will have reached once the first chunk is in), or None when that is more than
    `MAX_SLIP_FRAMES` after ``at`` or too near the base's end for the crossfade (too late)."""
    f = at
    while cut_time(base_start + f) <= deadline_s:
        f += 1
        if f - at > MAX_SLIP_FRAMES:
            return None
    if f > at and f + 2 > base_frames:
        return None
    return f


def splice(old: np.ndarray, new: np.ndarray, at: int, f: int) -> np.ndarray:
    """The continuation as the session holds it from ``at``: ``old``'s frames [at, f) (played), then
    ``old`` fading into ``new`` over `FADE_FRAMES` (smootherstep weights), then ``new``.

    Args:
        old: (T_old, J, 3) the base motion's human frames (its frame 0 is the base's start).
        new: (T_new, J, 3) the continuation (its frame 0 is what would be the base's frame ``at``).
    """
    new = np.asarray(new, dtype=np.float64)
    if f <= at:
        return new.copy()
    old = np.asarray(old, dtype=np.float64)
    out = new.copy()
    out[: f - at] = old[at:f]
    k = max(0, min(FADE_FRAMES, old.shape[0] - f, new.shape[0] - (f - at)))
    if k:
        w = fade_in_weights(k)[:, None, None]  # as MoMask's own pose ramp: no step of acceleration at f
        out[f - at : f - at + k] = (1.0 - w) * old[f : f + k] + w * new[f - at : f - at + k]
    return out
