"""What the control loop passes around: the robot's joints (`JointSpace`), a pose and a published sample,
and the stream's errors (`PipelineError`; `Cancelled`, a stop or preempt that ended work on purpose)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from momask_ros.robot.model import Robot

__all__ = ["Cancelled", "JointSpace", "PipelineError", "RobotPose", "Sample"]


class PipelineError(RuntimeError):
    """A motion could not be produced (generation or retargeting failed, bad shapes)."""


class Cancelled(PipelineError):
    """Work stopped because nothing will play it (a stop, a preempt, a shutdown): not a failure."""


@dataclass(frozen=True)
class JointSpace:
    """The robot's actuated joints: names, limits [rad or m] and rest pose, in publishing order.

    With a robot model (`from_robot`) it also knows where the robot stands at rest (``rest_base``:
    base position and quaternion w, x, y, z) and the lowest point of its feet for a pose
    (``lowest_foot_z(positions, base_position, base_quat_wxyz) -> z [m]``): a blend into a motion
    uses both to start from the standing robot and keep its feet out of the floor.
    """

    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    rest: np.ndarray
    rest_base: tuple[np.ndarray, np.ndarray] | None = None
    lowest_foot_z: Callable[[np.ndarray, np.ndarray, np.ndarray], float] | None = field(
        default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.names)
        if n == 0 or len(set(self.names)) != n:
            raise ValueError(f"joint names must be non-empty and unique, got {self.names}")
        for name in ("lower", "upper", "rest"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != (n,):
                raise ValueError(f"{name} has shape {arr.shape}, expected ({n},)")
            object.__setattr__(self, name, arr)
        if np.any(self.lower > self.upper):
            bad = int(np.flatnonzero(self.lower > self.upper)[0])
            raise ValueError(f"joint {self.names[bad]!r}: lower {self.lower[bad]} > upper {self.upper[bad]}")
        object.__setattr__(self, "rest", self.clip(self.rest))

    def clip(self, positions: np.ndarray) -> np.ndarray:
        return np.clip(positions, self.lower, self.upper)

    def within(self, positions: np.ndarray, tol: float = 1e-9) -> bool:
        p = np.asarray(positions)
        return bool(np.all(np.isfinite(p)) and np.all(p >= self.lower - tol) and np.all(p <= self.upper + tol))

    @classmethod
    def from_robot(cls, robot: "Robot") -> "JointSpace":
        """From a robot model: its driven joints, their limits and rest pose, where it stands at rest,
        and the lowest point of its feet (forward kinematics on a data of the control loop's own)."""
        import mujoco

        limits = np.asarray(robot.position_limits, dtype=np.float64)
        b = int(robot.base_qpos_index)
        rest_base = (np.array(robot.rest_qpos[b:b + 3], float), np.array(robot.rest_qpos[b + 3:b + 7], float))
        data = mujoco.MjData(robot.model)   # the control loop's own (one thread calls it)

        def lowest(positions: np.ndarray, base_position: np.ndarray, base_quat_wxyz: np.ndarray) -> float:
            return robot.lowest_foot_z(robot.forward(robot.full_qpos(positions, base_position, base_quat_wxyz), data))

        return cls(tuple(str(n) for n in robot.joint_names), limits[:, 0], limits[:, 1],
                   np.asarray(robot.rest_positions, dtype=np.float64), rest_base, lowest)


@dataclass
class RobotPose:
    """Joint positions plus floating-base pose (position [m], orientation w, x, y, z), ROS axes."""

    positions: np.ndarray
    base_position: np.ndarray = field(default_factory=lambda: np.zeros(3))
    base_quat_wxyz: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0, 0.0]))
    base_valid: bool = True  # False before the first motion: nothing is known about the base yet


@dataclass
class Sample(RobotPose):
    """What the control loop publishes at one tick: the pose, joint velocities, the base's twist (world
    frame, the derivative of the published base pose) and the human skeleton."""

    velocities: np.ndarray = field(default_factory=lambda: np.zeros(0))
    human_joints: np.ndarray | None = None  # (22, 3) [m], ROS axes, placed like the robot's base
    base_linear_velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))   # [m/s], world frame
    base_angular_velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))  # [rad/s], world frame

    def held(self) -> "Sample":
        """This pose held still (velocities zero): what the stream publishes while the clip underruns."""
        return Sample(self.positions, self.base_position, self.base_quat_wxyz, self.base_valid,
                      np.zeros_like(self.positions), self.human_joints)

    def pose(self) -> RobotPose:
        return RobotPose(self.positions.copy(), self.base_position.copy(), self.base_quat_wxyz.copy(),
                         self.base_valid)

