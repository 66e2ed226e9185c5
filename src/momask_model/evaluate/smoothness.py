"""Smoothness at transitions: FlowMDM's Peak Jerk and Area Under the Jerk (Barquero et al., CVPR 2024).

Jerk is the third time derivative of joint positions. Per frame we take the largest jerk magnitude
over the joints (a join shows in whichever limb jumps); around a transition, Peak Jerk (PJ) is the
maximum of that curve in a window and Area Under the Jerk (AUJ) its integral over the window. The
same window statistics taken *inside* single clips of the same model are the reference a join is
compared against ("no visible seam" = a join no jerkier than the clips' own motion).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

#: Half-width of the window around a transition [frames]: 10 frames each side = 1 s at 20 fps.
WINDOW_HALF = 10


def jerk_curve(joints: np.ndarray, fps: float) -> np.ndarray:
    """(T, J, 3) positions [m] -> (T - 3,) max over joints of |d^3 p / dt^3| [m/s^3].

    Sample i is the third finite difference over frames i..i+3, centred at frame i + 1.5.
    """
    p = np.asarray(joints, dtype=np.float64)
    if p.ndim != 3 or p.shape[0] < 4:
        raise ValueError(f"need joints (T >= 4, J, 3), got {p.shape}")
    third = p[3:] - 3 * p[2:-1] + 3 * p[1:-2] - p[:-3]
    return np.linalg.norm(third, axis=-1).max(axis=-1) * fps**3


@dataclass(frozen=True)
class JerkStats:
    """PJ [m/s^3] and AUJ [m/s^2] of one window."""

    peak: float
    area: float


def window_stats(curve: np.ndarray, centre: float, fps: float, half: int = WINDOW_HALF) -> JerkStats:
    """PJ and AUJ of the jerk samples whose centre lies in [centre - half, centre + half)."""
    centres = np.arange(curve.shape[0]) + 1.5
    inside = (centres >= centre - half) & (centres < centre + half)
    if not inside.any():
        raise ValueError(f"no jerk sample in the window around frame {centre}")
    values = curve[inside]
    return JerkStats(peak=float(values.max()), area=float(values.sum() / fps))


def transition_stats(joints: np.ndarray, joins: Iterable[int], fps: float, half: int = WINDOW_HALF) -> list[JerkStats]:
    """PJ/AUJ around each join; a join at frame k is the step between frames k - 1 and k."""
    curve = jerk_curve(joints, fps)
    return [window_stats(curve, k - 0.5, fps, half) for k in joins]


def in_clip_stats(clips: Sequence[np.ndarray], fps: float, half: int = WINDOW_HALF, stride: int = 4) -> list[JerkStats]:
    """PJ/AUJ of windows inside single clips (every ``stride`` frames, windows fully inside the clip)."""
    out = []
    for joints in clips:
        curve = jerk_curve(joints, fps)
        for centre in range(half + 2, joints.shape[0] - half - 1, stride):
            out.append(window_stats(curve, centre - 0.5, fps, half))
    return out


def percentile(stats: Sequence[JerkStats], q: float = 95.0) -> JerkStats:
    """The q-th percentile of PJ and of AUJ over windows."""
    return JerkStats(peak=float(np.percentile([s.peak for s in stats], q)),
                     area=float(np.percentile([s.area for s in stats], q)))
