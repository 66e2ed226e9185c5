"""Default topic names of momask_node, in one place.

The node declares them as parameter defaults; the offline recorder (`momask-generate --mcap`) writes
its bags on the same names, so a bag made without ROS looks like one recorded from the node.
"""
from __future__ import annotations

DEFAULT_TOPICS: dict[str, str] = {
    "joint_state_topic": "joint_states",
    "trajectory_topic": "joint_trajectory_controller/joint_trajectory",
    "base_pose_topic": "base_pose",
    "base_twist_topic": "base_twist",
    "markers_topic": "momask/human_skeleton",
    "command_topic": "momask/command",
    "stop_topic": "momask/stop",
    "status_topic": "momask/status",
}
