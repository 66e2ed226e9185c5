"""The policy's observation, laid out exactly as TWIST2 was trained on (design/tracker.md).

One frame = mimic (35: reference) + proprio (92: the robot's own state). The policy input is the current
frame, the previous `history_length` frames oldest first (zeros before the start), then the mimic vector
again in the "future" slot: 127 + 10 * 127 + 35 = 1432 float32 values."""
from __future__ import annotations

from collections import deque

import numpy as np

from .rotations import quat_wxyz_to_rpy
from .spec import MIMIC_BASE_DIM, TrackerSpec

# mimic vector slices
MIMIC_ROOT_VEL_XY = slice(0, 2)
MIMIC_ROOT_HEIGHT = 2
MIMIC_ROOT_ROLL_PITCH = slice(3, 5)
MIMIC_YAW_RATE = 5
MIMIC_JOINTS_START = MIMIC_BASE_DIM


def mimic_vector(root_vel_xy_root: np.ndarray, root_height_m: float, root_roll_pitch_rad: np.ndarray,
                 yaw_rate_root_rad_s: float, joint_pos_rad: np.ndarray) -> np.ndarray:
    """The reference part of a frame (6 + J values).

    Args:
        root_vel_xy_root: reference root linear velocity x, y in the root frame [m/s].
        root_height_m: reference root height above the floor [m].
        root_roll_pitch_rad: reference root roll and pitch [rad].
        yaw_rate_root_rad_s: reference angular velocity about the root z axis [rad/s].
        joint_pos_rad: reference joint positions in the tracker's order [rad].
    """
    return np.concatenate([np.asarray(root_vel_xy_root, np.float64).reshape(2), [float(root_height_m)],
                           np.asarray(root_roll_pitch_rad, np.float64).reshape(2), [float(yaw_rate_root_rad_s)],
                           np.asarray(joint_pos_rad, np.float64).reshape(-1)])


class ObservationBuilder:
    """Turns (mimic, measured state, last action) into the flat policy input, keeping the history."""

    def __init__(self, *, default_pose_rad: np.ndarray, ang_vel_scale: float, joint_vel_scale: float,
                 zeroed_joint_vel_indices: tuple[int, ...], history_length: int):
        self.default_pose_rad = np.asarray(default_pose_rad, dtype=np.float64)
        self.num_joints = self.default_pose_rad.size
        self.ang_vel_scale = float(ang_vel_scale)
        self.joint_vel_scale = float(joint_vel_scale)
        self.velocity_mask = np.ones(self.num_joints)
        self.velocity_mask[list(zeroed_joint_vel_indices)] = 0.0
        self.history_length = int(history_length)
        self.mimic_dim = MIMIC_BASE_DIM + self.num_joints
        self.proprio_dim = 5 + 3 * self.num_joints
        self.frame_dim = self.mimic_dim + self.proprio_dim
        self.input_dim = self.frame_dim * (1 + self.history_length) + self.mimic_dim
        self._history: deque[np.ndarray] = deque(maxlen=self.history_length)
        self.reset()

    @classmethod
    def from_spec(cls, spec: TrackerSpec) -> "ObservationBuilder":
        return cls(default_pose_rad=spec.default_pose_rad, ang_vel_scale=spec.ang_vel_scale,
                   joint_vel_scale=spec.joint_vel_scale, zeroed_joint_vel_indices=spec.zeroed_joint_vel_indices,
                   history_length=spec.history_length)

    def reset(self) -> None:
        """Forget the history (zeros), as at the start of an episode."""
        self._history.clear()
        for _ in range(self.history_length):
            self._history.append(np.zeros(self.frame_dim))

    @property
    def history(self) -> tuple[np.ndarray, ...]:
        """The remembered frames, oldest first (copies)."""
        return tuple(frame.copy() for frame in self._history)

    def restore(self, history: tuple[np.ndarray, ...]) -> None:
        """Continue from remembered frames (`history` of another builder of the same layout)."""
        if len(history) != self.history_length or any(np.shape(f) != (self.frame_dim,) for f in history):
            raise ValueError(f"history must be {self.history_length} frames of {self.frame_dim} values")
        self._history.clear()
        self._history.extend(np.array(f, dtype=np.float64) for f in history)

    def proprio(self, base_ang_vel_body_rad_s: np.ndarray, base_quat_wxyz: np.ndarray, joint_pos_rad: np.ndarray,
                joint_vel_rad_s: np.ndarray, last_action: np.ndarray) -> np.ndarray:
        """The robot's own state (5 + 3 J values): scaled gyro, roll/pitch, q - q0, masked scaled qd, action."""
        roll_pitch = quat_wxyz_to_rpy(base_quat_wxyz)[:2]
        return np.concatenate([
            np.asarray(base_ang_vel_body_rad_s, np.float64).reshape(3) * self.ang_vel_scale,
            roll_pitch,
            np.asarray(joint_pos_rad, np.float64).reshape(-1) - self.default_pose_rad,
            np.asarray(joint_vel_rad_s, np.float64).reshape(-1) * self.joint_vel_scale * self.velocity_mask,
            np.asarray(last_action, np.float64).reshape(-1),
        ])

    def build(self, mimic: np.ndarray, proprio: np.ndarray) -> np.ndarray:
        """Policy input (input_dim,) float32 for this tick; then the frame joins the history."""
        mimic = np.asarray(mimic, dtype=np.float64)
        if mimic.shape != (self.mimic_dim,) or proprio.shape != (self.proprio_dim,):
            raise ValueError(f"mimic {mimic.shape} / proprio {proprio.shape} != "
                             f"({self.mimic_dim},) / ({self.proprio_dim},)")
        frame = np.concatenate([mimic, proprio])
        flat = np.concatenate([frame, *self._history, mimic]).astype(np.float32)
        self._history.append(frame)  # deque(maxlen): the oldest frame drops off the front
        return flat
