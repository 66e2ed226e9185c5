"""What a conductor's tick publishes, as ROS messages by topic: the one conversion that both the node
(which publishes them) and the offline recorder (which writes them into a bag) go through, so a bag
made without ROS holds what the node would have sent.

Each message comes with the topic parameter it goes out on (``joint_state_topic``, ...), the time it
is logged at (a stream message's own stamp; the tick's time for a trajectory or a status) and the
motion whose bag records it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Collection, Iterator, Sequence

from builtin_interfaces.msg import Time

from momask_ros.ros.messages import (joint_state_msg, joint_trajectory_msg, pose_stamped_msg, skeleton_marker_array,
                                     status_msg, twist_stamped_msg)
from momask_ros.stream.conductor import Tick

__all__ = ["Outgoing", "stamp_msg", "status_messages", "stream_messages"]


@dataclass(frozen=True)
class Outgoing:
    """One message to publish: its topic parameter (``key``), the message, its log time [ns], the motion
    playing (None when idle) and, for a status, its state."""

    key: str
    msg: Any
    log_ns: int
    motion_id: int | None
    state: str | None = None


def stamp_msg(ns: int) -> Time:
    """A clock time [ns] as builtin_interfaces/Time, exact to the nanosecond."""
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


@lru_cache(maxsize=4)
def _human_parents(joints_num: int) -> tuple[int, ...]:
    from momask_model.motion.skeleton import skeleton_for

    return tuple(skeleton_for(joints_num).parents)


def stream_messages(tick: Tick, *, names: Sequence[str], frame_id: str, now_ns: int,
                    keys: Collection[str]) -> Iterator[Outgoing]:
    """The stream messages of ``tick`` for the topics in ``keys`` (the enabled ones), in publishing
    order: per sample the JointState (also on ``joint_command_topic``), base pose, base twist and
    skeleton; then the trajectories.

    Raises:
        momask_ros.ros.messages.MessageError: a value cannot go into a message (e.g. not finite).
    """
    for out in tick.samples:
        sample, stamp, ns, motion = out.sample, stamp_msg(out.stamp_ns), out.stamp_ns, out.motion_id
        joints = joint_state_msg(names, sample.positions, sample.velocities, stamp)
        for key in ("joint_state_topic", "joint_command_topic"):
            if key in keys:
                yield Outgoing(key, joints, ns, motion)
        if sample.base_valid and "base_pose_topic" in keys:
            yield Outgoing("base_pose_topic", pose_stamped_msg(sample.base_position, sample.base_quat_wxyz, stamp,
                                                               frame_id), ns, motion)
        if sample.base_valid and "base_twist_topic" in keys:
            twist = twist_stamped_msg(sample.base_linear_velocity, sample.base_angular_velocity, stamp, frame_id)
            yield Outgoing("base_twist_topic", twist, ns, motion)
        if out.markers and "markers_topic" in keys:
            human = sample.human_joints
            markers = skeleton_marker_array(human, _human_parents(human.shape[0]), stamp, frame_id)
            yield Outgoing("markers_topic", markers, ns, motion)
    for trajectory in tick.trajectories:
        if "trajectory_topic" in keys:
            msg = joint_trajectory_msg(names, trajectory.times_s, trajectory.positions, trajectory.velocities,
                                       stamp_msg(trajectory.stamp_ns))
            yield Outgoing("trajectory_topic", msg, now_ns, trajectory.motion_id)


def status_messages(tick: Tick, *, now_ns: int) -> Iterator[Outgoing]:
    """The statuses of ``tick`` as std_msgs/String JSON, on ``status_topic``."""
    for status in tick.statuses:
        msg = status_msg(status.state, **status.fields)
        yield Outgoing("status_topic", msg, now_ns, status.motion_id, status.state)
