"""The robot's measured state for ``physical_checks: rehearse``: the latest JointState, Imu and base
PoseStamped a robot (or `momask_sim`) publishes, as the `RobotState` a rehearsal starts from, and the
latest memory its tracker publishes (``tracker/memory``, `momask_ros.ros.memory_messages`).

Only what the topics carry is used: joint positions and velocities, base position (the pose topic; else
the origin at the standing height), orientation and gyro (the Imu). The base's linear velocity is not
measured and taken as zero. A state older than `MAX_AGE_S` (on the node's clock), or one with joints
missing, is not used: the rehearsal then starts from standing. A memory older than `MAX_AGE_S` (a
tracker that stopped its policy: fallen, or gone) or of another layout is not used either.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float64MultiArray

from momask_ros.ros.memory_messages import MemoryMessageError, memory_from_msg
from momask_ros.ros.pd_messages import imu_gyro, imu_quat_wxyz
from momask_ros.tracker.controller import TrackerMemory
from momask_ros.tracker.observation import ObservationBuilder
from momask_ros.tracker.rollout import RobotState
from momask_ros.tracker.spec import TrackerSpec

__all__ = ["MeasuredStateListener"]

#: A measured state older than this is stale (the robot stopped publishing) [s].
MAX_AGE_S = 0.5


class MeasuredStateListener:
    """Subscribes ``node`` to the measured topics (an empty topic name: not subscribed).

    Args:
        joint_names: the tracker's joints, the order of `RobotState`.
        standing_height_m: base height when no pose topic gives one.
        now_s: the node's clock [s].
        memory_topic: the tracker's ``tracker/memory`` ('' = none); ``spec``, the tracker's, gives its layout.
    """

    def __init__(self, node: Node, *, joint_state_topic: str, imu_topic: str, base_pose_topic: str,
                 joint_names: Sequence[str], standing_height_m: float, now_s: Callable[[], float],
                 memory_topic: str = "", spec: TrackerSpec | None = None) -> None:
        self._node = node
        self._memory: tuple[float, TrackerMemory] | None = None
        self._layout = None
        if memory_topic and spec is not None:
            obs = ObservationBuilder.from_spec(spec)
            self._layout = {"history_length": obs.history_length, "frame_dim": obs.frame_dim,
                            "num_joints": spec.num_joints}
            node.create_subscription(Float64MultiArray, memory_topic, self._on_memory, 10)
        self._names = list(joint_names)
        self._height = float(standing_height_m)
        self._now_s = now_s
        self._joints: tuple[float, np.ndarray, np.ndarray] | None = None
        self._imu: tuple[np.ndarray, np.ndarray] | None = None
        self._pos: np.ndarray | None = None
        self._order: dict[tuple[str, ...], np.ndarray | None] = {}
        if joint_state_topic:
            node.create_subscription(JointState, joint_state_topic, self._on_joints, 10)
        if imu_topic:
            node.create_subscription(Imu, imu_topic, self._on_imu, 10)
        if base_pose_topic:
            node.create_subscription(PoseStamped, base_pose_topic, self._on_pose, 10)

    def _on_joints(self, msg: JointState) -> None:
        key = tuple(msg.name)
        if key not in self._order:
            self._order[key] = (np.array([key.index(j) for j in self._names])
                                if set(self._names) <= set(key) else None)
        order = self._order[key]
        if order is None or len(msg.velocity) != len(msg.name):
            return
        self._joints = (self._now_s(), np.asarray(msg.position)[order], np.asarray(msg.velocity)[order])

    def _on_imu(self, msg: Imu) -> None:
        self._imu = (imu_quat_wxyz(msg), imu_gyro(msg))

    def _on_memory(self, msg: Float64MultiArray) -> None:
        try:
            self._memory = (self._now_s(), memory_from_msg(msg, **self._layout))
        except MemoryMessageError as exc:
            self._memory = None
            self._node.get_logger().warning(f"tracker memory not used: {exc}", throttle_duration_sec=10.0)

    def memory(self) -> TrackerMemory | None:
        """The tracker's latest memory, or None (none, stale or unusable)."""
        memory = self._memory
        if memory is None or self._now_s() - memory[0] > MAX_AGE_S:
            return None
        return memory[1]

    def _on_pose(self, msg: PoseStamped) -> None:
        p = msg.pose.position
        self._pos = np.array([p.x, p.y, p.z])

    def state(self) -> RobotState | None:
        """The latest measured state, or None (none yet, stale, or no orientation)."""
        joints, imu = self._joints, self._imu
        if joints is None or imu is None or self._now_s() - joints[0] > MAX_AGE_S:
            return None
        quat, gyro = imu
        pos = self._pos if self._pos is not None else np.array([0.0, 0.0, self._height])
        return RobotState(pos.copy(), quat.copy(), np.zeros(3), gyro.copy(), joints[1].copy(), joints[2].copy())
