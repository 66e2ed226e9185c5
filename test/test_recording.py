"""MCAP recording: bags in MCAP's ros2 profile, the node's per-motion bags compared message by message
with what a subscriber received over DDS, and `momask-generate --mcap` without a ROS graph."""
import copy
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
                            "/base_pose", "/base_twist", "/momask/human_skeleton", "/momask/status"}
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


# --------------------------------------------------------------------------- other tools read the bags
def _rosbags_messages(path):
    """Every message of a bag as rosbags (an independent reader) decodes it: (topic, type, log ns, raw, msg)."""
    from rosbags.highlevel import AnyReader

    with AnyReader([Path(path)]) as reader:
        return [(c.topic, c.msgtype, t, bytes(raw), reader.deserialize(raw, c.msgtype))
                for c, t, raw in reader.messages()]


def _as_published(type_name, msg):
    """A rosbags message as the rclpy message it stands for (re-serialized by rosbags, read by rclpy)."""
    from rclpy.serialization import deserialize_message
    from rosbags.typesys import Stores, get_typestore
    from rosidl_runtime_py.utilities import get_message

    store = get_typestore(Stores.ROS2_KILTED)
    return deserialize_message(bytes(store.serialize_cdr(msg, type_name)), get_message(type_name))


def _round_trip(msg):
    """What a subscriber receives for an rclpy message (float32 fields rounded as on the wire)."""
    from rclpy.serialization import deserialize_message, serialize_message

    return deserialize_message(serialize_message(msg), type(msg))


def _sample_messages():
    from sensor_msgs.msg import BatteryState, Image, NavSatFix
    from std_msgs.msg import Empty

    stamp = time_msg(1234.5)
    names = [f"joint_{i}" for i in range(19)]
    image = Image(height=2, width=3, encoding="mono8", step=3, data=bytes(range(6)))
    image.header.stamp = stamp
    battery = BatteryState(voltage=48.5, cell_voltage=[3.7, 3.8, 3.9], location="back", serial_number="x1")
    fix = NavSatFix(latitude=48.1, longitude=11.5, position_covariance=[float(i) for i in range(9)],
                    position_covariance_type=2)
    return {
        "sensor_msgs/msg/JointState": joint_state_msg(names, np.linspace(-1, 1, 19), np.ones(19), stamp),
        "trajectory_msgs/msg/JointTrajectory": joint_trajectory_msg(names, [0.0, 0.5, 1.0], np.zeros((3, 19)),
                                                                    np.ones((3, 19)), stamp),
        "geometry_msgs/msg/PoseStamped": pose_stamped_msg([1.0, 2.0, 0.9], [0.0, 0.0, 0.0, 1.0], stamp, "odom"),
        "visualization_msgs/msg/MarkerArray": skeleton_marker_array(np.arange(66.0).reshape(22, 3) / 100,
                                                                    [-1] + list(range(21)), stamp, "odom"),
        "std_msgs/msg/String": status_msg("done", id=7, text="walk"),
        "std_msgs/msg/Empty": Empty(),
        "sensor_msgs/msg/Image": image,
        "sensor_msgs/msg/BatteryState": battery,
        "sensor_msgs/msg/NavSatFix": fix,
    }


def test_cdr_is_exact_deterministic_and_zero_padded():
    from rclpy.serialization import deserialize_message
    from rosbags.typesys import Stores, get_typestore

    from momask_ros.ros.cdr import serialize_cdr

    store = get_typestore(Stores.ROS2_KILTED)
    for type_name, msg in _sample_messages().items():
        data = serialize_cdr(msg)
        assert serialize_cdr(copy.deepcopy(msg)) == data, type_name  # same message, same bytes
        decoded = store.deserialize_cdr(data, type_name)  # rosbags checks the size to the byte
        # rosbags writes exactly these bytes for the content (its padding is zero), and rclpy reads them
        assert bytes(store.serialize_cdr(decoded, type_name)) == data, type_name
        assert deserialize_message(data, type(msg)) == _round_trip(msg), type_name


def test_a_bag_file_is_read_by_rosbags_message_for_message(tmp_path):
    sent = list(_sample_messages().items())[:5]  # the five types the node publishes
    with BagWriter(tmp_path / "a.mcap") as bag:
        for i, (type_name, msg) in enumerate(sent):
            bag.write(f"/t{i}", msg, 1_000 + i)
    got = _rosbags_messages(tmp_path / "a.mcap")
    assert [(topic, type_name, t) for topic, type_name, t, _, _ in got] == \
        [(f"/t{i}", type_name, 1_000 + i) for i, (type_name, _) in enumerate(sent)]
    for (_, type_name, _, _, msg), (_, original) in zip(got, sent):
        assert _as_published(type_name, msg) == _round_trip(original), type_name


def test_the_node_records_rosbag2_folders_that_rosbags_reads_as_received(tmp_path):
    import yaml

    h = Harness(fake_pipeline(), {"control_rate": RATE, "record": str(tmp_path / "bags")})
    try:
        h.send("a short motion length=1s")
        done = h.wait_state("done", 10.0)
        time.sleep(0.2)
        received, trajectories = list(h.joint_states), list(h.trajectories)
    finally:
        h.close()
    folder = Path(done["bag"])
    assert folder.is_dir() and folder.parent == tmp_path / "bags"
    assert sorted(p.name for p in folder.iterdir()) == sorted(["metadata.yaml", f"{folder.name}_0.mcap"])
    info = yaml.safe_load((folder / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    got = _rosbags_messages(folder)  # the folder reader: metadata.yaml, then the type hashes checked
    assert info["storage_identifier"] == "mcap" and info["message_count"] == len(got)
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in info["topics_with_message_count"]}
    assert counts == {topic: sum(1 for g in got if g[0] == topic) for topic in counts}
    assert all(t["topic_metadata"]["type_description_hash"].startswith("RIHS01_")
               for t in info["topics_with_message_count"])
    assert info["starting_time"]["nanoseconds_since_epoch"] == got[0][2]
    by_stamp = {_ns(m.header.stamp): m for m in received}
    js = [(t, _as_published(type_name, msg)) for _, type_name, t, _, msg in got if type_name.endswith("JointState")]
    assert len(js) > 20
    for log_ns, msg in js:  # every JointState equals the one a subscriber received
        assert log_ns == _ns(msg.header.stamp) and msg == by_stamp[_ns(msg.header.stamp)]
    (traj,) = [_as_published(n, m) for _, n, _, _, m in got if n.endswith("JointTrajectory")]
    assert traj == trajectories[-1]
    for _, type_name, _, _, msg in got:  # and every other message decodes
        _as_published(type_name, msg)


def test_momask_generate_bag_is_read_by_rosbags_as_written(tmp_path, monkeypatch):
    from momask_model.cli.main import generate_main

    written = []
    original = BagWriter.write

    def spy(self, topic, msg, log_time_ns):
        written.append((topic, log_time_ns, copy.deepcopy(msg)))
        original(self, topic, msg, log_time_ns)

    monkeypatch.setattr(BagWriter, "write", spy)
    assert generate_main(["--text", "a person walks forward", "--length", "20", "--seed", "1", "--device", "cpu",
                          "--out", str(tmp_path / "a.npz"), "--mcap", str(tmp_path / "a.mcap")]) == 0
    got = _rosbags_messages(tmp_path / "a.mcap")
    assert len(got) == len(written) and {"sensor_msgs/msg/JointState", "trajectory_msgs/msg/JointTrajectory"} <= \
        {type_name for _, type_name, _, _, _ in got}
    by_key = {(topic, t): msg for topic, t, msg in written}
    assert len(by_key) == len(written)
    for topic, type_name, t, _, msg in got:
        assert _as_published(type_name, msg) == _round_trip(by_key[(topic, t)]), (topic, t)


# --------------------------------------------------------------------------- one publishing path
def test_offline_bag_is_what_the_nodes_conductor_publishes(tmp_path):
    """``momask-generate --mcap`` plays the motion on the node's own conductor (a fake clock) and converts
    its ticks as the node does: the node's topics (the base twist included, stamped like each JointState),
    its statuses with their fields, and a JointTrajectory on the same curve as the JointStates."""
    from momask_ros.ros.recording import record_motion_offline
    from momask_ros.stream.commands import MotionCommand

    pipeline = fake_pipeline()
    motion = pipeline.generate(MotionCommand("a person walks", length_frames=40, seed=2))
    start_ns = 1_700_000_000_000_000_000
    info = record_motion_offline(tmp_path / "w.mcap", pipeline, motion, start_ns=start_ns, motion_id=7)
    bag = _bag_by_topic(tmp_path / "w.mcap")
    assert set(bag) == {"/joint_states", "/joint_trajectory_controller/joint_trajectory", "/base_pose", "/base_twist",
                        "/momask/human_skeleton", "/momask/status"}
    js = [m for _, m in bag["/joint_states"]]
    stamps_ns = [_ns(m.header.stamp) for m in js]
    assert stamps_ns[0] == start_ns and set(np.diff(stamps_ns)) == {20_000_000}
    assert [_ns(m.header.stamp) for _, m in bag["/base_twist"]] == stamps_ns == [_ns(m.header.stamp) for _, m in
                                                                                  bag["/base_pose"]]
    playing, done = (json.loads(m.data) for _, m in bag["/momask/status"])
    assert (playing["state"], playing["id"], playing["switch"], playing["stamp_s"]) == ("playing", 7, "start", 1.7e9)
    assert done["state"] == "done" and done["duration_s"] == info["duration_s"] == pytest.approx(39 / 20)
    (_, traj), = bag["/joint_trajectory_controller/joint_trajectory"]
    assert _ns(traj.header.stamp) == start_ns
    by_time = {round((ns - start_ns) * 1e-9, 6): m for ns, m in zip(stamps_ns, js)}
    shared = [(p, by_time[round(p.time_from_start.sec + p.time_from_start.nanosec * 1e-9, 6)]) for p in traj.points
              if round(p.time_from_start.sec + p.time_from_start.nanosec * 1e-9, 6) in by_time]
    assert len(shared) >= 10
    for point, state in shared:
        assert np.allclose(point.positions, state.position, atol=1e-12)


def test_a_bag_file_carries_rosbag2s_metadata_record_and_version_9_qos(tmp_path):
    """What ``ros2 bag info FILE.mcap`` reads when there is no metadata.yaml: the ``rosbag2`` record's
    format version (9), which says the channels' QoS are names (``keep_last``, ``reliable``)."""
    import yaml

    stamp = time_msg(3.0)
    with BagWriter(tmp_path / "a.mcap", qos_depth={"/status": 50}) as bag:
        bag.write("/status", status_msg("done", id=1), 10)
        bag.write("/joint_states", joint_state_msg(["a"], [0.5], [0.0], stamp), 20)
    with open(tmp_path / "a.mcap", "rb") as f:
        reader = make_reader(f)
        records = [m for m in reader.iter_metadata() if m.name == "rosbag2"]
        channels = {c.topic: c for c in reader.get_summary().channels.values()}
    (record,) = records
    info = yaml.safe_load(record.metadata["serialized_metadata"])
    assert info["version"] == 9 and info["message_count"] == 2 and info["storage_identifier"] == "mcap"
    qos = yaml.safe_load(channels["/status"].metadata["offered_qos_profiles"])
    assert qos[0]["history"] == "keep_last" and qos[0]["depth"] == 50 and qos[0]["reliability"] == "reliable"
    assert channels["/joint_states"].metadata["topic_type_hash"].startswith("RIHS01_")
