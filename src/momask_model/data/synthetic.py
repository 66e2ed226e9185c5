"""Procedural 22-joint motions (a walking, turning stick figure) for tests and smoke runs.

Real motion data cannot ship with the package, yet the data pipeline, the VQ and the transformers
all need clips with plausible structure (periodic legs, opposite arm swing, a root that travels
and turns, feet that touch the floor). These clips are built by forward kinematics on a fixed
SMPL-like rest skeleton, so bone lengths stay constant and the HumanML3D extraction applies.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from momask_model.motion.skeleton import T2M_SKELETON

# Rest offsets from the parent [m]; Y up, facing +Z, left side at +X (HumanML3D convention).
_REST_OFFSETS = np.array(
    [
        (0.0, 0.0, 0.0),  # 0 pelvis (root, placed separately)
        (0.09, -0.07, 0.0),  # 1 left_hip
        (-0.09, -0.07, 0.0),  # 2 right_hip
        (0.0, 0.10, -0.01),  # 3 spine1
        (0.0, -0.38, 0.0),  # 4 left_knee
        (0.0, -0.38, 0.0),  # 5 right_knee
        (0.0, 0.13, 0.0),  # 6 spine2
        (0.0, -0.40, -0.02),  # 7 left_ankle
        (0.0, -0.40, -0.02),  # 8 right_ankle
        (0.0, 0.05, 0.02),  # 9 spine3
        (0.0, -0.05, 0.12),  # 10 left_foot (toe)
        (0.0, -0.05, 0.12),  # 11 right_foot (toe)
        (0.0, 0.21, -0.02),  # 12 neck
        (0.07, 0.12, 0.0),  # 13 left_collar
        (-0.07, 0.12, 0.0),  # 14 right_collar
        (0.0, 0.10, 0.05),  # 15 head
        (0.12, 0.02, 0.0),  # 16 left_shoulder
        (-0.12, 0.02, 0.0),  # 17 right_shoulder
        (0.0, -0.26, 0.0),  # 18 left_elbow
        (0.0, -0.26, 0.0),  # 19 right_elbow
        (0.0, -0.25, 0.0),  # 20 left_wrist
        (0.0, -0.25, 0.0),  # 21 right_wrist
    ]
)
_PELVIS_HEIGHT = 0.93


def synthetic_walk(
    n_frames: int,
    *,
    fps: float = 20.0,
    speed: float = 1.2,
    turn_rate: float = 0.3,
    step_hz: float = 0.9,
    arm_swing: float = 0.5,
    phase: float = 0.0,
    heading: float = 0.0,
) -> np.ndarray:
    """A walking stick figure as global joint positions.

    Args:
        n_frames: number of position frames.
        fps: frame rate [Hz].
        speed: forward speed [m/s].
        turn_rate: yaw rate [rad/s] (positive turns left, towards +X when facing +Z).
        step_hz: gait cycles per second (one left and one right step each).
        arm_swing: arm swing amplitude [rad]; arms swing opposite to the legs.
        phase: gait phase offset [rad].
        heading: initial yaw [rad] about +Y.

    Returns:
        (n_frames, 22, 3) float32 positions [m], Y up, in ``JOINT_NAMES`` order.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    t = np.arange(n_frames) / fps
    w = 2 * np.pi * step_hz * t + phase
    yaw = heading + turn_rate * t

    local = {j: np.zeros((n_frames, 3)) for j in range(22)}  # rotation vectors in the parent frame
    local[1][:, 0] = -0.45 * np.sin(w)  # left hip flexion (rotation about -x swings the leg forward)
    local[2][:, 0] = 0.45 * np.sin(w)
    local[4][:, 0] = 0.6 * np.clip(np.sin(w + np.pi / 2), 0, None)  # knees bend backwards
    local[5][:, 0] = 0.6 * np.clip(np.sin(w - np.pi / 2), 0, None)
    local[16][:, 0] = arm_swing * np.sin(w)
    local[17][:, 0] = -arm_swing * np.sin(w)
    local[18][:, 0] = -0.3 - 0.2 * np.sin(w)
    local[19][:, 0] = -0.3 + 0.2 * np.sin(w)
    local[3][:, 1] = 0.1 * np.sin(w)  # trunk counter-rotation
    local[0][:, 1] = yaw

    global_rot: list[Rotation | None] = [None] * 22
    pos = np.zeros((n_frames, 22, 3))
    step = speed / fps * np.stack((np.sin(yaw), np.zeros_like(yaw), np.cos(yaw)), axis=-1)
    pos[:, 0] = np.cumsum(step, axis=0) - step[0]
    pos[:, 0, 1] = _PELVIS_HEIGHT + 0.02 * np.cos(2 * w)
    for j in range(22):
        rot = Rotation.from_rotvec(local[j])
        parent = T2M_SKELETON.parents[j]
        if parent < 0:
            global_rot[j] = rot
            continue
        parent_rot = global_rot[parent]
        assert parent_rot is not None
        pos[:, j] = pos[:, parent] + parent_rot.apply(_REST_OFFSETS[j])
        global_rot[j] = parent_rot * rot
    pos[..., 1] -= pos[..., 1].min()
    return pos.astype(np.float32)
