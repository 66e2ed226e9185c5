"""Array -> message conversions (message classes only, no running ROS graph)."""
import json
import math

import numpy as np
import pytest

from momask_ros.ros.messages import (
    MessageError,
    duration_msg,
    joint_state_msg,
    joint_trajectory_msg,
    pose_stamped_msg,
    skeleton_marker_array,
    status_msg,
    time_msg,
)
from visualization_msgs.msg import Marker


def test_time_and_duration_are_exact_in_nanoseconds():
    t = time_msg(12.000000001)
    assert (t.sec, t.nanosec) == (12, 1)
    d = duration_msg(1.5)
    assert (d.sec, d.nanosec) == (1, 500_000_000)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(MessageError):
            time_msg(bad)


def test_joint_state_fields():
    msg = joint_state_msg(["a", "b"], np.array([0.1, -0.2]), [1.0, 2.0], time_msg(3.25), "base")
    assert list(msg.name) == ["a", "b"]
    assert list(msg.position) == pytest.approx([0.1, -0.2])
    assert list(msg.velocity) == pytest.approx([1.0, 2.0])
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (3, 250_000_000, "base")
    assert len(joint_state_msg(["a"], [0.0], None, time_msg(0)).velocity) == 0


def test_joint_state_refuses_nan_and_wrong_sizes():
    with pytest.raises(MessageError, match=r"position\[1\]"):
        joint_state_msg(["a", "b"], [0.0, math.nan], None, time_msg(0))
    with pytest.raises(MessageError, match="3 values, expected 2"):
        joint_state_msg(["a", "b"], [0.0, 1.0, 2.0], None, time_msg(0))


def test_joint_trajectory_points_and_times():
    times = np.array([0.0, 0.05, 0.1])
    pos = np.arange(6, dtype=float).reshape(3, 2)
    msg = joint_trajectory_msg(["j1", "j2"], times, pos, np.ones_like(pos), time_msg(0))
    assert list(msg.joint_names) == ["j1", "j2"]
    assert len(msg.points) == 3
    assert list(msg.points[2].positions) == [4.0, 5.0]
    tfs = msg.points[1].time_from_start
    assert (tfs.sec, tfs.nanosec) == (0, 50_000_000)
    with pytest.raises(MessageError, match="increasing"):
        joint_trajectory_msg(["j1", "j2"], [0.0, 0.0, 0.1], pos, None, time_msg(0))
    with pytest.raises(MessageError, match="shape"):
        joint_trajectory_msg(["j1"], times, pos, None, time_msg(0))


def test_pose_stamped_normalises_quaternion():
    msg = pose_stamped_msg([1, 2, 3], [2.0, 0, 0, 0], time_msg(1), "odom")
    assert msg.header.frame_id == "odom"
    assert (msg.pose.position.x, msg.pose.position.z) == (1.0, 3.0)
    assert msg.pose.orientation.w == 1.0
    with pytest.raises(MessageError, match="zero norm"):
        pose_stamped_msg([0, 0, 0], [0, 0, 0, 0], time_msg(1), "odom")


def test_skeleton_markers_have_one_bone_per_non_root_joint():
    parents = [-1, 0, 1, 0]
    joints = np.array([[0, 0, 1], [0, 0.1, 0.5], [0, 0.1, 0.0], [0, 0, 1.5]])
    arr = skeleton_marker_array(joints, parents, time_msg(0), "odom")
    spheres, bones = arr.markers
    assert spheres.type == Marker.SPHERE_LIST and len(spheres.points) == 4
    assert bones.type == Marker.LINE_LIST and len(bones.points) == 2 * 3
    # the first bone goes from the root to joint 1
    assert (bones.points[0].z, bones.points[1].z) == (1.0, 0.5)
    with pytest.raises(MessageError):
        skeleton_marker_array(joints[:3], parents, time_msg(0), "odom")


def test_status_is_json_with_state_first_and_no_nan():
    msg = status_msg("rejected", reason="empty", generation_ms=math.nan, text="caf\u00e9")
    data = json.loads(msg.data)
    assert list(data)[0] == "state" and data["state"] == "rejected"
    assert data["generation_ms"] is None and data["text"] == "caf\u00e9"
    assert msg.data.isascii()
    with pytest.raises(MessageError, match="unknown status"):
        status_msg("exploded")
