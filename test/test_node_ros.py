"""momask_node over real rclpy/DDS: a probe node publishes commands and records what the node publishes.

See ros_harness.py for how rclpy is set up here (own domain id per session, localhost discovery).
Most tests drive the node with the small deterministic generator/retargeter from motion_fakes; one
runs the real tiny MoMask and the real default-robot retargeter end to end. What the node's conductor
decides (stops, preempts, queue mode, bursts) is tested on a fake clock in test_conductor.py.
"""
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter

from momask_ros.ros.node import MomaskNode, ParameterError, decode_string_cdr
from momask_model.generation.loading import BundleNotFound
from momask_ros.stream.pipeline import MotionPipeline

from motion_fakes import FAKE_JOINTS, AngleRetargeter, ChunkStream, WalkGenerator
from ros_harness import DOMAIN_ID, Harness

RATE = 50.0


def fake_pipeline(**kwargs):
    r = AngleRetargeter()
    return MotionPipeline(WalkGenerator(**kwargs), r, r.joint_space, chunk_frames=8,
                          stream_factory=lambda fps: ChunkStream(r, fps))


@pytest.fixture
def harness(request):
    params = getattr(request, "param", {})
    h = Harness(fake_pipeline(), {"control_rate": RATE, "blend_s": 0.2, **params})
    yield h
    h.close()


def stamps(msgs):
    return np.array([m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in msgs])


def test_decode_string_cdr_round_trip():
    from rclpy.serialization import serialize_message
    from std_msgs.msg import String

    assert decode_string_cdr(serialize_message(String(data="walk \u00e9"))) == "walk \u00e9".encode()
    assert decode_string_cdr(serialize_message(String(data=""))) == b""
    with pytest.raises(ValueError, match="exceeds"):
        decode_string_cdr(b"\x00\x01\x00\x00\xff\x00\x00\x00abc")


def test_text_command_streams_joint_states_at_control_rate(harness):
    h = harness
    h.send("a person walks forward length=2s")
    done = h.wait_state("done", 10.0, text="a person walks forward")
    first = h.wait_state("playing", 1.0, id=done["id"])
    assert first["generation_ms"] >= 0 and first["latency_ms"] >= 0
    states = [s["state"] for s in h.by_text("a person walks forward")]
    assert states == ["accepted", "generating", "playing", "done"]

    js = list(h.joint_states)
    assert len(js) > 60
    assert all(list(m.name) == list(FAKE_JOINTS) for m in js)
    t = stamps(js)
    assert np.all(np.diff(t) > 0)  # monotonically increasing stamps
    assert np.median(np.diff(t)) == pytest.approx(1.0 / RATE, rel=0.2)  # at the configured rate
    space = AngleRetargeter.joint_space
    pos = np.array([m.position for m in js])
    vel = np.array([m.velocity for m in js])
    assert space.within(pos) and np.all(np.isfinite(vel))
    assert np.ptp(pos, axis=0).max() > 0.1  # it really moved

    h.wait_for(lambda: h.trajectories, 2.0, "JointTrajectory")
    traj = h.trajectories[0]
    assert list(traj.joint_names) == list(FAKE_JOINTS)
    tfs = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in traj.points])
    assert np.all(np.diff(tfs) > 0) and tfs[-1] == pytest.approx(done["duration_s"], abs=1e-3)
    assert space.within(np.array([p.positions for p in traj.points]))
    assert h.markers and len(h.markers[0].markers) == 2 and len(h.markers[0].markers[0].points) == 22
    assert h.poses and h.poses[-1].header.frame_id == "odom"
    # the reference twist a tracker reads: beside each base pose, same stamp, world frame
    assert stamps(h.twists).tolist() == stamps(h.poses).tolist() and h.twists[-1].header.frame_id == "odom"
    assert max(abs(m.twist.linear.x) + abs(m.twist.linear.y) for m in h.twists) > 0.1


@pytest.mark.parametrize("harness", [{"command_burst": 30}], indirect=True)
def test_bad_inputs_are_rejected_and_the_node_keeps_serving(harness):
    h = harness
    bad = {
        "": "empty",
        "   ": "empty",
        "x" * 5000: "too_long",
        "walk\x1b[2J forward": "control_characters",
        "walk length=nan": "bad_number",
        "walk length=99999s": "out_of_range",
        "walk speed=inf": "bad_number",
        "walk lenght=3s": "bad_option",
        "xyzzy": "unknown_words",
    }
    for text in bad:
        h.send(text)
    h.send_raw(b"walk \xff\xfe forward")
    h.send_raw(b"walk\x00forward")  # a typed String cannot carry NUL; raw CDR can
    h.wait_for(lambda: len(h.by_state("rejected")) >= len(bad) + 2, 5.0, "all rejections")
    reasons = [s["reason"] for s in h.by_state("rejected")]
    assert reasons == list(bad.values()) + ["not_utf8", "control_characters"]
    assert all(s["detail"] for s in h.by_state("rejected") if s["reason"] != "unknown_words")
    unknown = [s for s in h.by_state("rejected") if s["reason"] == "unknown_words"][0]
    assert unknown["unknown_words"] == ["xyzzy"]
    assert "known_words" in unknown and "known_skills" in unknown
    h.send("walk forward xyzzy length=1s")  # partly unknown: still no silent guess from the rest
    h.wait_for(lambda: len(h.by_state("rejected")) >= len(bad) + 3, 5.0, "partial rejection")
    last = h.by_state("rejected")[-1]
    assert last["reason"] == "unknown_words" and last["unknown_words"] == ["xyzzy"]
    h.send("walk forward length=1s")  # and the node keeps serving
    h.wait_state("done", 10.0, text="walk forward")


class GatedWalkGenerator(WalkGenerator):
    """A generator with a scope gate (as demo bundles have): only walking is in its scope."""

    def __init__(self):
        from momask_model.text.scope import ScopeGate
        from momask_model.text.encoders import BagOfWordsTextEncoder

        super().__init__()
        self.text_encoder = BagOfWordsTextEncoder(["person", "walks", "forward", "plays", "guitar"], dim=32)
        self.scope_gate = ScopeGate.build(self.text_encoder, {"walk": ["person walks forward"]}, threshold=0.8)


def test_out_of_scope_commands_are_rejected_naming_the_closest_skills():
    r = AngleRetargeter()
    pipeline = MotionPipeline(GatedWalkGenerator(), r, r.joint_space, chunk_frames=8,
                              stream_factory=lambda fps: ChunkStream(r, fps))
    h = Harness(pipeline, {"control_rate": RATE, "blend_s": 0.2})
    try:
        h.send("a person plays the guitar")
        refusal = h.wait_state("rejected", 5.0)
        assert refusal["reason"] == "out_of_scope" and refusal["similarity"] < refusal["threshold"] == 0.8
        assert refusal["closest_skills"][0]["skill"] == "walk" and "closest skills" in refusal["detail"]
        assert all("guitar" not in text for text, _, _ in pipeline.generator.calls)  # nothing generated for it
        h.send("a person walks forward | a person plays the guitar")  # a sequence: judged per segment
        h.wait_for(lambda: len(h.by_state("rejected")) >= 2, 5.0, "segment rejection")
        seg = h.by_state("rejected")[-1]
        assert seg["reason"] == "out_of_scope" and (seg["segment"], seg["segments"]) == (2, 2)
        h.send("a person walks forward length=1s")
        h.wait_state("done", 10.0, text="a person walks forward")
    finally:
        h.close()


def test_parameters_are_validated(harness):
    node = harness.node
    result = node.set_parameters([Parameter("queue_mode", value="random")])[0]
    assert not result.successful and "queue_mode" in result.reason
    assert not node.set_parameters([Parameter("blend_s", value=-1.0)])[0].successful
    assert not node.set_parameters([Parameter("control_rate", value=10.0)])[0].successful  # read-only
    assert node.set_parameters([Parameter("idle_behavior", value="rest")])[0].successful
    # guidance and steps default to the bundle's own (-1: not passed, MoMask uses its config's)
    assert not {"cond_scale", "res_cond_scale", "timesteps"} & set(node.pipeline.sampling)
    assert node.set_parameters([Parameter("cond_scale", value=2)])[0].successful  # int accepted for float
    assert node.pipeline.sampling["cond_scale"] == 2.0
    assert not node.set_parameters([Parameter("cond_scale", value=-2.0)])[0].successful
    assert not node.set_parameters([Parameter("timesteps", value=0)])[0].successful
    assert node.set_parameters([Parameter("cond_scale", value=-1.0)])[0].successful
    assert "cond_scale" not in node.pipeline.sampling
    assert node.set_parameters([Parameter("length_s", value=3.0)])[0].successful
    assert node.pipeline.default_length_frames == 60
    desc = node.describe_parameter("control_rate")
    assert desc.read_only and "Hz" in desc.description


def test_bad_start_parameters_and_missing_bundle_fail_loudly():
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    try:
        with pytest.raises(ParameterError, match="control_rate"):
            MomaskNode(pipeline=fake_pipeline(), context=ctx,
                       parameter_overrides=[Parameter("control_rate", value=-5.0)])
        with pytest.raises(ParameterError, match="device"):
            MomaskNode(pipeline=fake_pipeline(), context=ctx, parameter_overrides=[Parameter("device", value="gpu")])
        with pytest.raises(BundleNotFound, match="nowhere.pt"):
            MomaskNode(context=ctx, parameter_overrides=[Parameter("bundle_path", value="/nowhere.pt")])
    finally:
        rclpy.try_shutdown(context=ctx)


def test_use_sim_time_stamps_follow_the_clock_topic():
    from builtin_interfaces.msg import Time
    from rosgraph_msgs.msg import Clock

    h = Harness(fake_pipeline(), {"control_rate": RATE, "use_sim_time": True}, wait_ready=False)
    try:
        clock_pub = h.probe.create_publisher(Clock, "/clock", 10)
        sim = 1000.0
        for _ in range(60):
            sim += 0.02
            clock_pub.publish(Clock(clock=Time(sec=int(sim), nanosec=int((sim % 1) * 1e9))))
            time.sleep(0.01)
        h.wait_for(lambda: h.joint_states, 2.0, "a JointState under sim time")
        t = stamps(h.joint_states)
        assert np.all((t > 999.0) & (t < 1002.0))  # sim time, not wall time
    finally:
        h.close()


def test_real_tiny_momask_and_default_robot_end_to_end():
    from momask_model.generation.bundle import build_random_momask
    from momask_model.config import tiny_config

    pipeline = MotionPipeline.for_model(build_random_momask(tiny_config()), robot="default", chunk_frames=12)
    h = Harness(pipeline, {"control_rate": RATE, "timesteps": 3, "joint_command_topic": "/joint_command",
                           "idle_behavior": "rest", "rest_blend_s": 0.3})
    try:
        h.send("a person walks forward length=2s seed=4")
        done = h.wait_state("done", 20.0, text="a person walks forward")
        playing = h.by_state("playing", id=done["id"])[0]
        assert playing["generation_ms"] > 0 and playing["seed"] == 4
        space = pipeline.joint_space
        js = list(h.joint_states)
        assert all(list(m.name) == list(space.names) for m in js) and len(space.names) == 19
        assert space.within(np.array([m.position for m in js]))
        assert np.median(np.diff(stamps(js))) == pytest.approx(1.0 / RATE, rel=0.2)
        h.wait_for(lambda: h.trajectories, 2.0, "JointTrajectory")
        assert len(h.trajectories[0].points) == 40  # 2 s at the model frame rate (20 fps)
        assert h.joint_commands and list(h.joint_commands[-1].name) == list(space.names)
        time.sleep(0.6)  # idle_behavior=rest: back at the rest pose
        assert np.allclose(h.joint_states[-1].position, space.rest, atol=1e-6)
    finally:
        h.close()


@pytest.mark.parametrize("name", ["momask.yaml", "isaac_sim.yaml", "gazebo.yaml"])
def test_config_files_load_through_a_ros_params_file(name):
    """Each shipped YAML is read by rcl's own parameter-file parser and passes the node's checks."""
    import yaml

    from momask_ros.ros.node import PARAMETERS

    path = Path(__file__).resolve().parents[1] / "config" / name
    values = yaml.safe_load(path.read_text())["momask_node"]["ros__parameters"]
    assert set(values) <= set(PARAMETERS) | {"use_sim_time"}
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    try:
        node = MomaskNode(pipeline=fake_pipeline(), context=ctx, cli_args=["--ros-args", "--params-file", str(path)])
        for key, value in values.items():
            got = node.get_parameter(key).value
            assert got == pytest.approx(value) if isinstance(value, float) else got == value, key
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)


LEAK_PROBE = r"""
import gc, sys, time
sys.path.insert(0, sys.argv[1])
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import String
from ros_spin import BackgroundSpin

for _ in range(10):  # a busy executor torn down the harness's way, again and again
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=int(sys.argv[2]))
    a, b = Node("leak_a", context=ctx), Node("leak_b", context=ctx)
    pub = a.create_publisher(String, "leak_probe", 10)
    a.create_timer(0.001, lambda: pub.publish(String(data="x")))
    b.create_subscription(String, "leak_probe", lambda msg: time.sleep(0.0005), 10)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(a)
    executor.add_node(b)
    spin = BackgroundSpin(executor, ctx)
    time.sleep(0.05)
    spin.stop()
    a.destroy_node()
    b.destroy_node()
    rclpy.try_shutdown(context=ctx)
gc.collect()
"""


def test_the_harness_ends_without_an_unread_ros_exception():
    """Issue 24: after the summary rclpy printed "The following exception was never retrieved: cannot
    use Destroyable because destruction was requested": test_sim_ros spun a MultiThreadedExecutor and
    shut it down under running callbacks, whose failed tasks nobody reads. The ROS tests now spin one
    thread with `BackgroundSpin`, stopped before anything is destroyed."""
    import subprocess
    import sys

    here = Path(__file__).resolve().parent
    out = subprocess.run([sys.executable, "-c", LEAK_PROBE, str(here), str(DOMAIN_ID)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "never retrieved" not in out.stderr, out.stderr[-2000:]
    pooled = [p.name for p in here.glob("test_*.py")
              if p.name != Path(__file__).name and "MultiThreadedExecutor(" in p.read_text()]
    assert pooled == []  # no ROS test spins callbacks in a pool


def test_launch_file_declares_its_arguments():
    import ast

    path = Path(__file__).resolve().parents[1] / "launch" / "generate.launch.py"
    tree = ast.parse(path.read_text())
    declared = {node.args[0].value for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument"}
    assert declared == {"config", "robot", "robot_description_path", "device", "use_sim_time", "record", "namespace"}
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
