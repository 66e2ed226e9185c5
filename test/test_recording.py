"""MCAP recording: bags in MCAP's ros2 profile, the node's per-motion bags compared message by message
with what a subscriber received over DDS, and `momask-generate --mcap` without a ROS graph."""
import json
import time
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader

from momask_ros.ros.messages import (
    joint_state_msg,
    joint_trajectory_msg,
    pose_stamped_msg,
    skeleton_marker_array,
    status_msg,
    time_msg,
)
from momask_ros.ros.recording import BagError, BagWriter, MotionRecorder, message_definition, read_bag

from motion_fakes import FAKE_JOINTS
from ros_harness import Harness
from test_node_ros import RATE, fake_pipeline, stamps


def _ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def _installed_fields(type_name: str) -> list[str]:
    """Field lines of the installed .msg (comments and blank lines dropped)."""
    package, _, name = type_name.split("/")
    import sys

    text = (Path(sys.prefix) / "share" / package / "msg" / f"{name}.msg").read_text()
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def test_bag_follows_the_ros2_profile_and_round_trips_every_message_type(tmp_path):
    stamp = time_msg(1234.5)
    names = ["a", "b", "c"]
    sent = {
        "/joint_states": joint_state_msg(names, [0.1, -0.2, 0.3], [1.0, 2.0, -3.0], stamp),
        "/traj": joint_trajectory_msg(names, [0.0, 0.5], np.zeros((2, 3)), np.ones((2, 3)), stamp),
        "/base_pose": pose_stamped_msg([1.0, 2.0, 0.9], [0.0, 0.0, 0.0, 1.0], stamp, "odom"),
        "/markers": skeleton_marker_array(np.arange(66.0).reshape(22, 3) / 100, [-1] + list(range(21)), stamp, "odom"),
        "/status": status_msg("done", id=7, text="walk"),
    }
    path = tmp_path / "all.mcap"
    with BagWriter(path, qos_depth={"/status": 50}) as bag:
        for i, (topic, msg) in enumerate(sent.items()):
            bag.write(topic, msg, 1_000 + i)

    with open(path, "rb") as f:
        reader = make_reader(f)
        header = reader.get_header()
        summary = reader.get_summary()
    assert header.profile == "ros2"
    assert {s.encoding for s in summary.schemas.values()} == {"ros2msg"}
    channels = {c.topic: c for c in summary.channels.values()}
    assert {c.message_encoding for c in channels.values()} == {"cdr"}
    assert "depth: 50" in channels["/status"].metadata["offered_qos_profiles"]
    assert "depth: 10" in channels["/joint_states"].metadata["offered_qos_profiles"]
    types = {summary.schemas[c.schema_id].name for c in channels.values()}
    assert types == {"sensor_msgs/msg/JointState", "trajectory_msgs/msg/JointTrajectory",
                     "geometry_msgs/msg/PoseStamped", "visualization_msgs/msg/MarkerArray", "std_msgs/msg/String"}

    got = read_bag(path)
    assert [(topic, log_ns) for topic, _, log_ns, _ in got] == [(t, 1_000 + i) for i, t in enumerate(sent)]
    decoded = {topic: msg for topic, _, _, msg in got}
    js = decoded["/joint_states"]
    assert list(js.name) == names and list(js.position) == [0.1, -0.2, 0.3] and list(js.velocity) == [1.0, 2.0, -3.0]
    assert (js.header.stamp.sec, js.header.stamp.nanosec) == (1234, 500_000_000)
    traj = decoded["/traj"]
    assert list(traj.joint_names) == names and traj.points[1].time_from_start.nanosec == 500_000_000
    assert decoded["/base_pose"].pose.orientation.z == 1.0 and decoded["/base_pose"].header.frame_id == "odom"
    markers = decoded["/markers"].markers
    assert len(markers) == 2 and len(markers[0].points) == 22 and markers[0].points[21].z == pytest.approx(0.65)
    assert json.loads(decoded["/status"].data) == {"state": "done", "id": 7, "text": "walk"}


@pytest.mark.parametrize("type_name", ["sensor_msgs/msg/JointState", "visualization_msgs/msg/MarkerArray"])
def test_schema_is_the_installed_definition_with_its_dependencies(type_name):
    text = message_definition(type_name)
    blocks = text.split("=" * 80 + "\n")
    main = [line.split("#")[0].strip() for line in blocks[0].splitlines() if line.split("#")[0].strip()]
    assert main == _installed_fields(type_name)
    used = {block.splitlines()[0].removeprefix("MSG: ") for block in blocks[1:]}
    assert "std_msgs/Header" in used and "builtin_interfaces/Time" in used
    if type_name.endswith("MarkerArray"):
        assert {"visualization_msgs/Marker", "geometry_msgs/Pose", "std_msgs/ColorRGBA"} <= used
    assert len(used) == len(blocks) - 1  # each dependency once
    with pytest.raises(BagError, match="no_such_msgs"):
        message_definition("no_such_msgs/msg/Thing")


def test_recorder_rejects_an_unusable_folder(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(BagError, match="a_file"):
        MotionRecorder(blocker / "bags")


def _bag_by_topic(path):
    out = {}
    for topic, _, log_ns, msg in read_bag(path):
        out.setdefault(topic, []).append((log_ns, msg))
    return out


def test_node_records_each_motion_and_the_bag_matches_what_was_published(tmp_path):
    h = Harness(fake_pipeline(), {"control_rate": RATE, "blend_s": 0.2, "record": str(tmp_path / "bags"),
                                  "joint_command_topic": "/joint_command"})
    try:
        h.send("first motion length=4s")
        playing = h.wait_state("playing", 10.0, text="first motion")
        time.sleep(0.5)
        h.send("second motion length=1s")
        done2 = h.wait_state("done", 10.0, text="second motion")
        done1 = h.wait_state("done", 1.0, text="first motion")
        time.sleep(0.3)  # a few idle samples after the motion: they must not be in its bag
        received = list(h.joint_states)
        trajectories = list(h.trajectories)
        poses = list(h.poses)
    finally:
        h.close()

    assert done1["preempted_by"] == done2["id"]
    first, second = Path(playing["bag"]), Path(done2["bag"])
    assert first != second and first.parent == second.parent == tmp_path / "bags"
    assert sorted(p.name for p in first.parent.iterdir()) == sorted([first.name, second.name])
    by_stamp = {_ns(m.header.stamp): m for m in received}
    for path, done in ((first, done1), (second, done2)):
        bag = _bag_by_topic(path)
        assert set(bag) == {"/joint_states", "/joint_command", "/joint_trajectory_controller/joint_trajectory",
                            "/base_pose", "/momask/human_skeleton", "/momask/status"}
        js = bag["/joint_states"]
        assert len(js) > 20
        for log_ns, msg in js:  # every recorded JointState is one that was published, bit for bit
            sub = by_stamp[_ns(msg.header.stamp)]
            assert log_ns == _ns(msg.header.stamp)
            assert list(msg.name) == list(sub.name) == list(FAKE_JOINTS)
            assert list(msg.position) == list(sub.position) and list(msg.velocity) == list(sub.velocity)
        lo, hi = js[0][0], js[-1][0]
        published = [m for m in received if lo <= _ns(m.header.stamp) <= hi]
        assert len(published) == len(js)  # and none published while it played is missing
        assert [_ns(m.header.stamp) for _, m in bag["/joint_command"]] == [log for log, _ in js]
        statuses = [json.loads(m.data) for _, m in bag["/momask/status"]]
        assert [s["state"] for s in statuses] == ["playing", "done"] and statuses[-1] == done
        assert len(bag["/base_pose"]) == len(js) and bag["/momask/human_skeleton"]
    # the motions follow each other in the stream: the first bag ends where the second begins
    first_js, second_js = _bag_by_topic(first)["/joint_states"], _bag_by_topic(second)["/joint_states"]
    assert first_js[-1][0] < second_js[0][0]
    assert second_js[-1][0] < max(stamps(received)) * 1e9  # the idle hold afterwards is not recorded
    (_, traj), = _bag_by_topic(second)["/joint_trajectory_controller/joint_trajectory"]
    sent = trajectories[-1]
    assert [list(p.positions) for p in traj.points] == [list(p.positions) for p in sent.points]
    assert (traj.header.stamp.sec, traj.header.stamp.nanosec) == (sent.header.stamp.sec, sent.header.stamp.nanosec)
    pose_stamps = {_ns(p.header.stamp) for p in poses}
    assert {_ns(m.header.stamp) for _, m in _bag_by_topic(second)["/base_pose"]} <= pose_stamps


def test_stop_closes_the_bag_with_the_stopped_status(tmp_path):
    h = Harness(fake_pipeline(), {"control_rate": RATE, "record": str(tmp_path)})
    try:
        h.send("walk for a while length=6s")
        playing = h.wait_state("playing", 10.0)
        time.sleep(0.3)
        h.stop()
        h.wait_state("stopped", 2.0)
        time.sleep(0.2)
        assert h.node._recorder.open_bags == []  # finished while the node runs: readable at once
        bag = _bag_by_topic(playing["bag"])
    finally:
        h.close()
    assert [json.loads(m.data)["state"] for _, m in bag["/momask/status"]] == ["playing", "stopped"]


def test_momask_generate_writes_the_robot_stream_as_a_bag(tmp_path):
    from momask_model.cli.main import generate_main

    args = ["--text", "a person walks forward", "--length", "40", "--seed", "3", "--device", "cpu"]
    assert generate_main(args + ["--out", str(tmp_path / "a.npz"), "--mcap", str(tmp_path / "a.mcap")]) == 0
    bag = _bag_by_topic(tmp_path / "a.mcap")
    js = [m for _, m in bag["/joint_states"]]
    from momask_ros.robot.model import load_robot

    robot = load_robot("default")
    assert all(list(m.name) == list(robot.joint_names) for m in js)
    t = np.array([_ns(m.header.stamp) for m in js]) * 1e-9
    assert np.allclose(np.diff(t), 1.0 / 50.0, atol=1e-6)  # the node's control rate
    done = json.loads(bag["/momask/status"][-1][1].data)
    assert done["duration_s"] == pytest.approx(39 / 20)  # 40 frames at 20 fps
    assert 0 <= t[-1] - t[0] - done["duration_s"] < 1.0 / 50.0  # streamed to the end, one tick at most past it
    pos = np.array([m.position for m in js])
    lo, hi = robot.position_limits[:, 0], robot.position_limits[:, 1]
    assert np.all(pos >= lo - 1e-9) and np.all(pos <= hi + 1e-9) and np.ptp(pos, axis=0).max() > 0.05
    (_, traj), = bag["/joint_trajectory_controller/joint_trajectory"]
    assert len(traj.points) == 40 and list(traj.joint_names) == list(robot.joint_names)
    assert len(bag["/base_pose"]) == len(js) and len(bag["/momask/human_skeleton"]) == pytest.approx(21, abs=1)
    assert [json.loads(m.data)["state"] for _, m in bag["/momask/status"]] == ["playing", "done"]
    # same seed, same stream
    assert generate_main(args + ["--out", str(tmp_path / "b.npz"), "--mcap", str(tmp_path / "b.mcap")]) == 0
    again = [m for _, m in _bag_by_topic(tmp_path / "b.mcap")["/joint_states"]]
    assert [list(m.position) for m in again] == [list(m.position) for m in js]


def test_momask_generate_mcap_with_a_robot_it_cannot_load_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    from momask_model.cli.main import generate_main

    monkeypatch.delenv("MOMASK_ROS_H1_DESCRIPTION", raising=False)
    code = generate_main(["--text", "a person walks forward", "--length", "20", "--device", "cpu", "--robot", "h1",
                          "--out", str(tmp_path / "a.npz"), "--mcap", str(tmp_path / "a.mcap")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "--robot-description /path/to/h1.xml" in err
    assert not (tmp_path / "a.mcap").exists()
