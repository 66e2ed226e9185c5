"""Sections of a reference the robot cannot do at all, cut out and bridged so the rest can be played.

A base tilted far past what a standing robot can hold (a flip, a handstand, the aerial of a gymnast's
spin, which the demo model's "spin" skill has: its source clip leaves the floor with both feet 1.2 m up)
is not a pose the policy can follow: clipping the base's roll and pitch leaves the legs in the air, and
the robot falls (measured: 5 of 5 demo spins). Such a section, widened by a margin for its take-off and
landing, is replaced by a smooth bridge from the pose before to the pose after, with the robot staying
where it is and facing where it faces; the rest of the motion continues from there, moved rigidly in
the ground plane. Conditioning reports what was skipped."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from .rotations import quat_wxyz_to_rpy, tilt_from_quat_wxyz
from .spec import TrackerError


@dataclass(frozen=True)
class SkippedSection:
    """[start_s, end_s] of the original motion [s], replaced by a bridge; the largest base tilt in it and
    why it was beyond the robot."""

    start_s: float
    end_s: float
    peak_tilt_rad: float
    reason: str = ""


@dataclass(frozen=True, eq=False)
class FeasibleMotion:
    """The motion with its impossible sections bridged: arrays as in `RobotReference` and, per sample,
    the original motion's time it stands for (bridges map linearly onto the section they replace)."""

    times_s: np.ndarray
    base_pos_world: np.ndarray
    base_quat_wxyz: np.ndarray
    joint_pos_rad: np.ndarray
    original_time_s: np.ndarray
    skipped: tuple[SkippedSection, ...]


def _sections(times: np.ndarray, bad: np.ndarray, margin_s: float) -> list[tuple[float, float]]:
    """Runs of `bad` samples, widened by margin_s, merged, within the motion."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], bad.astype(int), [0]])))
    runs = [(times[a] - margin_s, times[b - 1] + margin_s) for a, b in zip(edges[::2], edges[1::2])]
    merged: list[list[float]] = []
    for a, b in runs:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(max(a, times[0]), min(b, times[-1])) for a, b in merged]


def _section(t, tilt, joints, a, b, max_tilt_rad, joint_range_rad, joint_names) -> SkippedSection:
    inside = (t >= a) & (t <= b)
    peak = float(tilt[inside].max())
    if peak > max_tilt_rad or joint_range_rad is None:
        return SkippedSection(float(a), float(b), peak, f"base tilted {peak:.2f} rad")
    low, high = np.asarray(joint_range_rad, dtype=np.float64).T
    excess = np.maximum(joints[inside] - high, low - joints[inside]).max(axis=0)
    k = int(np.argmax(excess))
    name = joint_names[k] if joint_names is not None else f"joint {k}"
    value = joints[inside][np.argmax(np.abs(joints[inside][:, k])), k]
    return SkippedSection(float(a), float(b), peak, f"{name} at {value:.2f} rad")


def _yaw_rotation(angle: float) -> Rotation:
    return Rotation.from_euler("z", angle)


def bridge_impossible(times_s: np.ndarray, base_pos_world: np.ndarray, base_quat_wxyz: np.ndarray,
                      joint_pos_rad: np.ndarray, *, max_tilt_rad: float, joint_range_rad: np.ndarray | None = None,
                      joint_names: tuple[str, ...] | None = None, margin_s: float = 0.3,
                      bridge_s: float = 0.6) -> FeasibleMotion:
    """Cut out every section where the base tilts past max_tilt_rad or a joint leaves joint_range_rad (J, 2)
    (widened by margin_s) and bridge it in bridge_s [s]; a section at the start or the end is trimmed.

    Raises:
        TrackerError: nothing of the motion is left.
    """
    t = np.asarray(times_s, dtype=np.float64)
    pos, quat, joints = (np.asarray(a, dtype=np.float64) for a in (base_pos_world, base_quat_wxyz, joint_pos_rad))
    tilt = tilt_from_quat_wxyz(quat)
    bad = tilt > max_tilt_rad
    if joint_range_rad is not None:
        low, high = np.asarray(joint_range_rad, dtype=np.float64).T
        bad |= np.any((joints < low) | (joints > high), axis=1)
    sections = _sections(t, bad, margin_s) if bad.any() else []
    if not sections:
        return FeasibleMotion(t, pos, quat, joints, t.copy(), ())
    keep = np.ones(t.size, bool)
    for a, b in sections:
        keep &= ~((t >= a) & (t <= b))
    if keep.sum() < 2:
        raise TrackerError(f"the whole motion is beyond the robot (base tilt up to {tilt.max():.2f} rad)")
    dt = float(np.median(np.diff(t)))
    out = {k: [] for k in ("t", "pos", "quat", "q", "orig")}
    shift_t, turn, move = 0.0, _yaw_rotation(0.0), np.zeros(2)  # rigid map of the original samples still to come
    prev = None  # index of the last kept sample
    for k in range(t.size):
        if not keep[k]:
            continue
        if prev is not None and k != prev + 1:  # a bridged section lies between prev and k
            yaw_gap = quat_wxyz_to_rpy(quat[prev])[2] - quat_wxyz_to_rpy(quat[k])[2] + turn.as_euler("zyx")[0]
            new_turn = _yaw_rotation(yaw_gap)
            new_move = out["pos"][-1][:2] - new_turn.apply(np.array([*pos[k, :2], 0.0]))[:2]
            start_t, end_orig = out["t"][-1], t[k]
            end_t = start_t + bridge_s
            rot_a = Rotation.from_quat(out["quat"][-1][[1, 2, 3, 0]])
            rot_b = new_turn * Rotation.from_quat(quat[k][[1, 2, 3, 0]])
            slerp = Slerp([0.0, 1.0], Rotation.concatenate([rot_a, rot_b]))
            pos_a = out["pos"][-1]
            for s in np.arange(dt, bridge_s - 0.5 * dt, dt):
                x = s / bridge_s
                w = x * x * x * (x * (6.0 * x - 15.0) + 10.0)
                out["t"].append(start_t + s)
                out["pos"].append(np.array([pos_a[0], pos_a[1], (1 - w) * pos_a[2] + w * pos[k, 2]]))
                out["quat"].append(slerp([w]).as_quat()[0][[3, 0, 1, 2]])
                out["q"].append((1 - w) * joints[prev] + w * joints[k])
                out["orig"].append(t[prev] + x * (end_orig - t[prev]))
            shift_t, turn, move = end_t - t[k], new_turn, new_move
        if not out["t"]:
            shift_t = -t[k]  # a trimmed start: the motion begins here
        out["t"].append(t[k] + shift_t)
        out["pos"].append(np.array([*(turn.apply(np.array([*pos[k, :2], 0.0]))[:2] + move), pos[k, 2]]))
        out["quat"].append((turn * Rotation.from_quat(quat[k][[1, 2, 3, 0]])).as_quat()[[3, 0, 1, 2]])
        out["q"].append(joints[k])
        out["orig"].append(t[k])
        prev = k
    skipped = tuple(_section(t, tilt, joints, a, b, max_tilt_rad, joint_range_rad, joint_names) for a, b in sections)
    return FeasibleMotion(np.asarray(out["t"]), np.asarray(out["pos"]), np.asarray(out["quat"]),
                          np.asarray(out["q"]), np.asarray(out["orig"]), skipped)
