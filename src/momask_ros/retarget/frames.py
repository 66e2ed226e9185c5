"""Frames: HumanML3D axes -> ROS axes, and the planar re-anchoring of a motion's base path.

A generated motion lives in its own frame (it starts at the origin, facing +Z). The robot is
somewhere else, facing somewhere else: `BaseAnchor` is the rotation about +Z plus the horizontal
offset that puts the motion's start where the robot stands, applied alike to the base path, the
base orientation and the human skeleton. Consecutive motions of one continuous stream share one
anchor (their frames already agree); a motion that starts afresh gets its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from momask_model.motion.quaternion import qmul, qrot, quat_about_z, yaw_of

__all__ = ["BaseAnchor", "human_yup_to_ros"]


def human_yup_to_ros(joints_yup: np.ndarray) -> np.ndarray:
    """HumanML3D axes (Y up, facing +Z, left +X) -> ROS REP 103 (Z up, X forward, Y left).

    x_ros = z_h, y_ros = x_h, z_ros = y_h: a proper rotation (no mirroring).
    """
    j = np.asarray(joints_yup)
    return np.stack((j[..., 2], j[..., 0], j[..., 1]), axis=-1)



@dataclass(frozen=True)
class BaseAnchor:
    """A rotation about +Z (``quat``) followed by a horizontal shift (``offset``, z = 0)."""

    quat: np.ndarray = field(default_factory=lambda: quat_about_z(0.0))
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3))

    @classmethod
    def placing(cls, motion_position: np.ndarray, motion_quat_wxyz: np.ndarray, robot_position: np.ndarray,
                robot_quat_wxyz: np.ndarray) -> "BaseAnchor":
        """The anchor that moves a motion's base pose onto the robot's heading and floor position."""
        rot = quat_about_z(yaw_of(robot_quat_wxyz) - yaw_of(motion_quat_wxyz))
        rotated = qrot(rot, np.asarray(motion_position, float))
        return cls(rot, np.array([robot_position[0] - rotated[0], robot_position[1] - rotated[1], 0.0]))

    def points(self, p: np.ndarray) -> np.ndarray:
        """Positions (..., 3) in the robot's world."""
        return qrot(self.quat, np.asarray(p, float)) + self.offset

    def orientation(self, quat_wxyz: np.ndarray) -> np.ndarray:
        return qmul(self.quat, quat_wxyz)
