"""Synthetic references to exercise a tracker without a motion generator (tests, benchmarks).

The policy tracks joints before velocities: a reference that glides the base forward with the legs held
at the default pose makes the robot stand still (measured), so the walk here swings the legs."""
from __future__ import annotations

import numpy as np

from .reference import RobotReference
from .spec import TrackerSpec


def synthetic_walk(spec: TrackerSpec, *, speed_mps: float = 0.5, duration_s: float = 4.0, step_hz: float = 0.9,
                   fps: float = 50.0) -> RobotReference:
    """A straight walk along +x at speed_mps [m/s]: level base at standing height, alternating leg swing
    (hip pitch +-0.15 rad, knee lift 0.6 rad, ankle compensation) ramped in over 0.5 s, arms at q0.

    Needs the G1-style joint names `<side>_hip_pitch_joint`, `_knee_joint`, `_ankle_pitch_joint`."""
    t = np.arange(0.0, duration_s, 1.0 / fps)
    names = list(spec.joint_names)
    q = np.tile(spec.default_pose_rad, (t.size, 1))
    ramp = np.clip(t / 0.5, 0.0, 1.0)
    for side, offset in (("left", 0.0), ("right", np.pi)):
        phase = 2.0 * np.pi * step_hz * t + offset
        lift = np.maximum(0.0, np.sin(phase)) * ramp
        q[:, names.index(f"{side}_hip_pitch_joint")] += 0.15 * (np.cos(phase) * ramp - lift)
        q[:, names.index(f"{side}_knee_joint")] += 0.6 * lift
        q[:, names.index(f"{side}_ankle_pitch_joint")] -= 0.3 * lift
    pos = np.stack([speed_mps * t, np.zeros_like(t), np.full_like(t, spec.standing_height_m)], axis=1)
    return RobotReference(t, pos, np.tile([1.0, 0.0, 0.0, 0.0], (t.size, 1)), q, joint_names=spec.joint_names)


def standing_reference(spec: TrackerSpec, *, duration_s: float = 1.0, fps: float = 50.0) -> RobotReference:
    """The default pose held still at standing height for duration_s."""
    t = np.arange(0.0, duration_s + 0.5 / fps, 1.0 / fps)
    pos = np.tile([0.0, 0.0, spec.standing_height_m], (t.size, 1))
    return RobotReference(t, pos, np.tile([1.0, 0.0, 0.0, 0.0], (t.size, 1)),
                          np.tile(spec.default_pose_rad, (t.size, 1)), joint_names=spec.joint_names)
