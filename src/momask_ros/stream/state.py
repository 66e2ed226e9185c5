"""What the control loop passes around: the robot's joints (`JointSpace`), a pose and a published sample."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["JointSpace", "PipelineError", "RobotPose", "Sample"]


class PipelineError(RuntimeError):
    """A motion could not be produced (generation or retargeting failed, bad shapes)."""


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
    def from_robot(cls, robot: Any) -> "JointSpace":
        """From a `momask_ros.robot.model.Robot` (or anything exposing names, limits and a rest pose)."""
        names = _first_attr(robot, ("joint_names", "actuated_joint_names"))
        limits = _first_attr(robot, ("position_limits", "joint_limits", "limits"), required=False)
        if limits is not None:
            limits = np.asarray(limits, dtype=np.float64)
            lower, upper = limits[:, 0], limits[:, 1]
        else:
            lower = np.asarray(_first_attr(robot, ("lower", "lower_limits", "q_min")), dtype=np.float64)
            upper = np.asarray(_first_attr(robot, ("upper", "upper_limits", "q_max")), dtype=np.float64)
        rest = _first_attr(robot, ("rest_positions", "rest_pose", "q_rest", "default_positions"), required=False)
        rest = np.zeros(len(names)) if rest is None else np.asarray(rest, dtype=np.float64)
        rest_base, lowest = None, None
        if all(hasattr(robot, a) for a in ("rest_qpos", "base_qpos_index", "full_qpos", "forward", "lowest_foot_z")):
            import mujoco

            b = int(robot.base_qpos_index)
            rest_base = (np.array(robot.rest_qpos[b:b + 3], float), np.array(robot.rest_qpos[b + 3:b + 7], float))
            data = mujoco.MjData(robot.model)   # the control loop's own (one thread calls it)

            def lowest(positions, base_position, base_quat_wxyz) -> float:
                return robot.lowest_foot_z(robot.forward(robot.full_qpos(positions, base_position, base_quat_wxyz),
                                                         data))
        return cls(tuple(str(n) for n in names), lower, upper, rest, rest_base, lowest)


def _first_attr(obj: Any, names: Sequence[str], required: bool = True) -> Any:
    for name in names:
        value = getattr(obj, name, None)
        if callable(value):
            value = value()
        if value is not None:
            return value
    if required:
        raise PipelineError(f"{type(obj).__name__} has none of the attributes {list(names)}")
    return None


@dataclass
class RobotPose:
    """Joint positions plus floating-base pose (position [m], orientation w, x, y, z), ROS axes."""

    positions: np.ndarray
    base_position: np.ndarray = field(default_factory=lambda: np.zeros(3))
    base_quat_wxyz: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0, 0.0]))
    base_valid: bool = True  # False before the first motion: nothing is known about the base yet


@dataclass
class Sample(RobotPose):
    """What the control loop publishes at one tick."""

    velocities: np.ndarray = field(default_factory=lambda: np.zeros(0))
    human_joints: np.ndarray | None = None  # (22, 3) [m], ROS axes, placed like the robot's base

    def pose(self) -> RobotPose:
        return RobotPose(self.positions.copy(), self.base_position.copy(), self.base_quat_wxyz.copy(),
                         self.base_valid)

