"""Rigid ground-plane alignment of joint trajectories: where a continuation starts and which way it faces.

Features encode a motion relative to its own first frame (root at the origin facing +Z), so a motion
that continues another must be turned about +Y and shifted on the ground to where the other one is.
The heading is read from the joints themselves (hips and shoulders, as HumanML3D does), so any
Y-up joint array can be continued, whatever produced it.
"""
from __future__ import annotations

import numpy as np

from momask_model.motion.skeleton import skeleton_for


def facing_yaw(joints: np.ndarray) -> np.ndarray:
    """Heading about +Y of each pose (..., J, 3) [rad]; 0 faces +Z, pi/2 faces +X.

    Forward = up x across, across = (r_hip - l_hip) + (r_shoulder - l_shoulder), as in HumanML3D.
    """
    joints = np.asarray(joints, dtype=np.float64)
    r_hip, l_hip, r_sdr, l_sdr = skeleton_for(joints.shape[-2]).face_joint_indx
    across = joints[..., r_hip, :] - joints[..., l_hip, :] + joints[..., r_sdr, :] - joints[..., l_sdr, :]
    forward_x, forward_z = across[..., 2], -across[..., 0]  # (0, 1, 0) x across
    return np.arctan2(forward_x, forward_z)


def rotate_yaw(points: np.ndarray, angle: float) -> np.ndarray:
    """Rotate points (..., 3) about +Y by ``angle`` [rad] (a heading of a becomes a + angle)."""
    c, s = np.cos(angle), np.sin(angle)
    out = np.array(points, dtype=np.float64, copy=True)
    x, z = out[..., 0].copy(), out[..., 2].copy()
    out[..., 0] = c * x + s * z
    out[..., 2] = -s * x + c * z
    return out


def align_to_pose(joints: np.ndarray, anchor: int, target: np.ndarray) -> np.ndarray:
    """Turn and shift ``joints`` (T, J, 3) on the ground so frame ``anchor`` has ``target``'s (J, 3)
    root x/z and heading (heights are untouched: features carry the absolute root height)."""
    joints = np.asarray(joints, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    angle = float(facing_yaw(target) - facing_yaw(joints[anchor]))
    pivot = joints[anchor, 0] * np.array([1.0, 0.0, 1.0])
    moved = rotate_yaw(joints - pivot, angle)
    return moved + target[0] * np.array([1.0, 0.0, 1.0])


def aligned_error(source: np.ndarray, other: np.ndarray, *, root_relative: bool = True) -> float:
    """Mean per-joint distance [m] between two clips (T, J, 3) after aligning ``other``'s first frame
    to ``source``'s on the ground (x/z and heading): how well a section's motion is preserved,
    wherever the motion before it left the body. ``root_relative`` (default) subtracts each frame's
    root first, as the MPJPE of the VQ evaluation does, so root drift within the clip does not count."""
    aligned = align_to_pose(other, 0, source[0])
    source = np.asarray(source, dtype=np.float64)
    if root_relative:
        aligned = aligned - aligned[:, :1]
        source = source - source[:, :1]
    return float(np.linalg.norm(aligned - source, axis=-1).mean())
