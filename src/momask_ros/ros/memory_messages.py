"""``tracker/memory``: what the whole-body tracker remembers, published so that a rehearsal started from
the robot's measured state continues exactly as this tracker would (`momask_ros.stream.rehearsing`).

A tracker's next action depends on more than the robot's state: the policy reads its last few
observation frames and its last raw action (`momask_ros.tracker.TrackerMemory`). A rehearsal that starts
with an empty history and a zero action drifts from the robot at once when the robot is moving (a walk
taking over from a robot still leaning 0.44 rad: 0.45 rad live against 0.19 predicted 0.4 s later), so
`momask_tracker` publishes its memory after each policy tick and `momask_node` keeps the latest.

Message: std_msgs/Float64MultiArray, ``data`` = the history frames, oldest first, each ``frame`` values,
then the last raw action; ``layout.dim`` = ``history`` (frames), ``frame`` (values per frame),
``last_action`` (values), each with its size, so a reader checks the layout before it uses the data.
"""
from __future__ import annotations

import numpy as np
from std_msgs.msg import Float64MultiArray, MultiArrayDimension

from momask_ros.tracker.controller import TrackerMemory

__all__ = ["MemoryMessageError", "memory_from_msg", "tracker_memory_msg"]

LABELS = ("history", "frame", "last_action")


class MemoryMessageError(ValueError):
    """A ``tracker/memory`` message of another layout than the reader's tracker (one line: what differs)."""


def tracker_memory_msg(memory: TrackerMemory) -> Float64MultiArray:
    """The message of a tracker's memory (its policy clock and held command stay with the tracker)."""
    history = np.asarray(memory.history, dtype=np.float64)
    action = np.asarray(memory.last_action, dtype=np.float64).reshape(-1)
    frames, width = history.shape
    msg = Float64MultiArray()
    msg.layout.dim = [MultiArrayDimension(label=label, size=size, stride=stride) for label, size, stride
                      in zip(LABELS, (frames, width, action.size), (frames * width, width, action.size))]
    msg.data = np.concatenate([history.reshape(-1), action]).tolist()
    return msg


def memory_from_msg(msg: Float64MultiArray, *, history_length: int, frame_dim: int,
                    num_joints: int) -> TrackerMemory:
    """The memory in ``msg``, for a tracker whose history is ``history_length`` frames of ``frame_dim``
    values and whose action has ``num_joints``. Raises `MemoryMessageError`."""
    dims = [(d.label, int(d.size)) for d in msg.layout.dim]
    want = list(zip(LABELS, (history_length, frame_dim, num_joints)))
    if dims != want:
        raise MemoryMessageError(f"tracker memory layout {dims} is not this tracker's {want}")
    data = np.asarray(msg.data, dtype=np.float64)
    n = history_length * frame_dim
    if data.size != n + num_joints or not np.isfinite(data).all():
        raise MemoryMessageError(f"tracker memory has {data.size} values (want {n + num_joints}, all finite)")
    frames = data[:n].reshape(history_length, frame_dim)
    return TrackerMemory(tuple(frame.copy() for frame in frames), data[n:].copy())
