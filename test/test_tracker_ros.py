"""The closed loop over ROS, in real processes: `momask_tracker` (TWIST2) drives `momask_sim` (the tracker's
own G1, free base, 1 ms physics) in lock-step, the reference streamed by a probe as momask_node streams it.

Needs ../shared/trackers/twist2 (skips without it). Two identical runs go side by side (lock-step makes the
CPU load irrelevant to the result); the second one then gets pushed over.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import PoseStamped, TwistStamped, WrenchStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Empty, Float64MultiArray, String

from momask_ros.ros.memory_messages import memory_from_msg
from momask_ros.ros.messages import pose_stamped_msg, time_msg
from momask_ros.tracker import load_spec
from momask_ros.tracker.observation import ObservationBuilder
from momask_ros.tracker.policy import pd_target_rad
from momask_ros.tracker.synthetic import synthetic_walk

from ros_harness import DEEP, DOMAIN_ID, wait_until

TWIST2 = Path(__file__).resolve().parents[2] / "shared" / "trackers" / "twist2"
pytestmark = pytest.mark.skipif(not TWIST2.is_dir(), reason=f"tracker files not found at {TWIST2}")
SPEC = load_spec()
START_S = 0.5   # the walk's first sample (simulated time)
RUN_S = 7.5     # blend in 1 s, walk 4 s, stall 0.25 s, blend out 1 s, then standing
COMPARE_S = 7.0
WIDE = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _start(module: str, namespace: str, params: dict) -> subprocess.Popen:
    args = [x for k, v in params.items() for x in ("-p", f"{k}:={str(v).lower() if isinstance(v, bool) else v}")]
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), OMP_NUM_THREADS="1", MUJOCO_GL="osmesa")
    return subprocess.Popen([sys.executable, "-m", module, "--ros-args", "-r", f"__ns:={namespace}", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stamp(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


class Loop:
    """A tracker process, then a lock-step simulator process, and a probe node in this process."""

    def __init__(self, context, namespace: str):
        self.ns = namespace
        self.node = Node("tracker_test_probe", context=context, namespace=namespace)
        n = self.node
        self.poses, self.commands, self.joints, self.imu = [], [], [], []
        self.sim_status, self.tracker_status, self.gains, self.memories = [], [], [], []
        n.create_subscription(PoseStamped, "sim/base_pose", self.poses.append, DEEP)
        n.create_subscription(JointState, "tracker/pd_command", self.commands.append, DEEP)
        n.create_subscription(JointState, "joint_states", self.joints.append, DEEP)
        n.create_subscription(Imu, "imu", self.imu.append, DEEP)
        n.create_subscription(Float64MultiArray, "tracker/memory", self.memories.append, DEEP)
        n.create_subscription(String, "sim/status", lambda m: self.sim_status.append(json.loads(m.data)), DEEP)
        n.create_subscription(String, "tracker/status", lambda m: self.tracker_status.append(json.loads(m.data)), DEEP)
        n.create_subscription(String, "tracker/pd_gains", lambda m: self.gains.append(json.loads(m.data)), LATCHED)
        self.ref_joints = n.create_publisher(JointState, "reference/joint_states", WIDE)
        self.ref_pose = n.create_publisher(PoseStamped, "reference/base_pose", WIDE)
        self.ref_twist = n.create_publisher(TwistStamped, "reference/base_twist", WIDE)
        self.ref_status = n.create_publisher(String, "momask/status", WIDE)
        self.push_pub = n.create_publisher(WrenchStamped, "sim/push", 10)
        self.sim_reset = n.create_publisher(Empty, "sim/reset", 10)
        self.tracker_reset = n.create_publisher(Empty, "tracker/reset", 10)
        self.processes = [_start("momask_ros.ros.tracker_node", namespace, {"tracker": TWIST2})]

    def wait(self, predicate, timeout: float, what: str):
        return wait_until(predicate, timeout, lambda: f"{self.ns}: {what}; tracker {self.tracker_status[-2:]}; "
                                                      f"sim {self.sim_status[-1:]}")

    def stream_walk(self) -> None:
        """The synthetic 0.5 m/s walk as momask_node streams a motion: JointState (position + velocity),
        base pose and world twist at 50 Hz, stamped ahead of the simulation, then its `playing` status.

        Returns once the tracker holds the walk's newest samples without a gap and has taken the status,
        so that the simulation starts from the same reference every run (on a loaded machine a `playing`
        taken after the simulation started would begin the walk later)."""
        pubs = (self.ref_joints, self.ref_pose, self.ref_twist, self.ref_status)
        self.wait(lambda: all(p.get_subscription_count() > 0 for p in pubs), 60, "tracker subscribed")
        walk = synthetic_walk(SPEC)
        stamps = START_S + walk.times_s
        last = float(stamps[-1])

        def complete(s: dict) -> bool:
            ref = s["reference"]
            if ref["newest_s"] is None or ref["newest_s"] < last - 1e-6:
                return False
            held = int(np.sum(stamps >= ref["oldest_s"] - 1e-6))
            return ref["samples"] == held and ref["begins_s"] == START_S

        for attempt in range(3):  # a repeated stamp replaces its sample: sending again is harmless
            self._publish_walk(walk)
            if attempt == 0 or not any(s["reference"]["begins_s"] == START_S for s in self.tracker_status):
                self.ref_status.publish(String(data=json.dumps({"state": "playing", "id": 1, "stamp_s": START_S,
                                                                "switch": "start", "text": "synthetic walk"})))
            try:
                self.wait(lambda: [s for s in self.tracker_status[-3:] if complete(s)], 20, "the whole walk received")
                return
            except AssertionError:
                if attempt == 2:
                    raise

    def _publish_walk(self, walk) -> None:
        qd = np.gradient(walk.joint_pos_rad, walk.times_s, axis=0)
        v = np.gradient(walk.base_pos_world, walk.times_s, axis=0)
        for k, t in enumerate(walk.times_s):
            stamp = time_msg(START_S + t)
            js = JointState(name=list(SPEC.joint_names), position=walk.joint_pos_rad[k].tolist(), velocity=qd[k].tolist())
            js.header.stamp = stamp
            twist = TwistStamped()
            twist.header.stamp = stamp
            twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z = (float(x) for x in v[k])
            self.ref_joints.publish(js)
            self.ref_pose.publish(pose_stamped_msg(walk.base_pos_world[k], walk.base_quat_wxyz[k], stamp, "odom"))
            self.ref_twist.publish(twist)
            if k % 20 == 0:
                time.sleep(0.01)

    def start_sim(self, **extra) -> None:
        params = {"robot": "g1", "tracker": TWIST2, "mode": "tracked", "clock": "lock_step",
                  "real_time_factor": 0.0, "publish_clock": False,
                  "lock_step_subscribers": 2, **extra}  # the tracker and this probe see every state
        self.processes.append(_start("momask_ros.ros.sim_node", self.ns, params))

    def sim_time(self) -> float:
        return self.sim_status[-1]["sim_time_s"] if self.sim_status else 0.0

    def close(self) -> str:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        output = ""
        for process in self.processes:
            try:
                output += process.communicate(timeout=15)[0]
            except subprocess.TimeoutExpired:
                process.kill()
                output += process.communicate()[0]
        return output


@pytest.fixture(scope="module")
def loops():
    """Two identical lock-step runs of the walk, side by side: A closed after RUN_S, B left running."""
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    a, b = Loop(context, "/tracker_test_a"), Loop(context, "/tracker_test_b")
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(a.node)
    executor.add_node(b.node)
    thread = threading.Thread(target=lambda: _spin(executor), daemon=True)
    thread.start()
    try:
        for loop in (a, b):
            loop.stream_walk()
        a.start_sim()
        b.start_sim(push_duration=0.4)
        for loop in (a, b):
            loop.wait(lambda: loop.sim_time() >= RUN_S, 120, f"{RUN_S} s simulated")
            # the probe's own callbacks may lag the simulation on a loaded machine: the tests read what it
            # has received, so wait until every stream it checks reaches RUN_S
            loop.wait(lambda: all(msgs and _stamp(msgs[-1]) >= RUN_S - 0.05
                                  for msgs in (loop.poses, loop.joints, loop.imu, loop.commands)),
                      60, "the probe caught up with the simulation")
        a.output = a.close()
        yield a, b
    finally:
        for loop in (a, b):
            loop.close()
        executor.shutdown(timeout_sec=1.0)
        for loop in (a, b):
            loop.node.destroy_node()
        rclpy.try_shutdown(context=context)
        thread.join(timeout=2.0)


def _spin(executor):
    try:
        executor.spin()
    except Exception:  # context shut down
        pass


def _trajectory(loop: Loop, until_s: float) -> dict[float, np.ndarray]:
    return {_stamp(m): np.array([m.pose.position.x, m.pose.position.y, m.pose.position.z,
                                 m.pose.orientation.w, m.pose.orientation.x]) for m in list(loop.poses)
            if _stamp(m) <= until_s}


def test_free_base_g1_walks_forward_then_stands_without_falling(loops):
    a, _ = loops
    assert not any(s["fallen"] for s in a.sim_status) and not any(s["fallen"] for s in a.tracker_status)
    phases = [s["reference"]["phase"] for s in a.tracker_status]
    assert {"blend_in", "motion", "blend_out"} <= set(phases) and phases[-1] == "standing", phases
    path = _trajectory(a, RUN_S)
    times = sorted(path)
    start, end = path[times[0]], path[times[-1]]
    print(f"\nlock-step walk: base moved {end[0] - start[0]:.2f} m forward, {end[1] - start[1]:.2f} m sideways")
    assert end[0] - start[0] > 0.3, f"the base moved {end[0] - start[0]:.2f} m forward"
    assert min(p[2] for p in path.values()) > 0.65  # the pelvis never sagged towards a fall
    final = [m for m in a.joints if _stamp(m) >= RUN_S - 0.5]
    q = np.array(final[-1].position)
    assert np.abs(q - SPEC.default_pose_rad).mean() < 0.08, "standing again at the end"
    # the measured state the tracker read: an IMU beside every joint state, upright at the end
    imu = {_stamp(m): m for m in a.imu}
    assert all(_stamp(m) in imu for m in final)
    last = imu[_stamp(final[-1])]
    assert abs(last.linear_acceleration.z - 9.81) < 1.0 and abs(last.orientation.w) > 0.98
    # lock-step: one PD command per control period (20 ms at 50 Hz), stamped with the state it answers
    stamps = sorted({round(_stamp(m), 4) for m in a.commands})
    assert np.allclose(np.diff(stamps), 0.02, atol=1e-4)
    assert {m.header.frame_id for m in a.commands} == {"tracking"}
    # its memory after each policy tick (here every period): the last action it holds is the command's
    obs = ObservationBuilder.from_spec(SPEC)
    memories = [memory_from_msg(m, history_length=obs.history_length, frame_dim=obs.frame_dim,
                                num_joints=SPEC.num_joints) for m in list(a.memories)]
    # a latest-value topic (depth 10, as its reader needs only the newest): a probe lagging behind a lock-step
    # run faster than real time misses some (88% received in one run), so this asks for most, not all
    assert len(memories) >= 0.5 * len(a.commands)
    targets = {tuple(np.round(m.position, 9)) for m in a.commands}
    assert all(tuple(np.round(pd_target_rad(SPEC, m.last_action), 9)) in targets for m in memories[-50:])


def test_lock_step_gives_the_same_trajectory_twice(loops):
    a, b = loops
    ta, tb = _trajectory(a, COMPARE_S), _trajectory(b, COMPARE_S)
    assert len(ta) > 300 and sorted(ta) == sorted(tb)
    worst = max(float(np.abs(ta[t] - tb[t]).max()) for t in ta)
    assert worst == 0.0, f"runs differ by up to {worst}"
    ca = {_stamp(m): list(m.position) for m in a.commands if _stamp(m) <= COMPARE_S}
    cb = {_stamp(m): list(m.position) for m in b.commands if _stamp(m) <= COMPARE_S}
    assert ca == cb


def test_a_push_makes_it_fall_then_damped_refused_until_reset(loops):
    _, b = loops
    gains = b.gains[-1]["gain_sets"]
    assert all(k == 0.0 for k in gains["safe"]["kp"]) and all(k > 0.0 for k in gains["safe"]["kd"])
    push = WrenchStamped()
    push.wrench.force.y = 400.0
    b.push_pub.publish(push)
    fallen = b.wait(lambda: [s for s in b.tracker_status if s["fallen"]], 60, "tracker fallen")[0]
    assert fallen["state"] == "fallen" and fallen["fall_time_s"] > RUN_S and "tilt" in fallen["fall_reason"]
    b.wait(lambda: [s for s in b.sim_status if s["fallen"]], 30, "sim/status fallen")
    b.wait(lambda: len([m for m in b.commands if m.header.frame_id == "safe"]) > 5, 10, "damped commands")
    fall_s = fallen["fall_time_s"]
    assert {m.header.frame_id for m in b.commands if _stamp(m) < fall_s - 1e-6} == {"tracking"}
    assert {m.header.frame_id for m in b.commands if _stamp(m) >= fall_s - 1e-6} == {"safe"}
    # a new command is refused, with the reason, until a reset
    b.ref_status.publish(String(data=json.dumps({"state": "accepted", "id": 2, "text": "a person jogs"})))
    refused = b.wait(lambda: [s for s in b.tracker_status if (s.get("refused") or {}).get("id") == 2], 10,
                     "refusal")[0]["refused"]
    assert "fallen" in refused["reason"] and "reset" in refused["reason"]
    b.tracker_reset.publish(Empty())  # the robot is down: the reset waits for it to be upright
    b.sim_reset.publish(Empty())
    b.wait(lambda: [s for s in b.tracker_status if s.get("reset") == "done" and not s["fallen"]], 30,
           "tracker reset")
    b.wait(lambda: b.tracker_status[-1]["state"] == "standing" and not b.sim_status[-1]["fallen"], 10,
           "standing again")


def _broken_folders(tmp_path: Path) -> dict[str, Path]:
    """A tracker folder whose weights fail their sha256, and one whose robot model renamed a joint."""
    bad_hash = tmp_path / "bad_hash"
    bad_hash.mkdir()
    weights = bytearray((TWIST2 / "twist2_1017_20k.onnx").read_bytes())
    weights[-1] ^= 0xFF
    (bad_hash / "twist2_1017_20k.onnx").write_bytes(bytes(weights))
    (bad_hash / "g1").symlink_to(TWIST2 / "g1")
    bad_joint = tmp_path / "bad_joint"
    (bad_joint / "g1").mkdir(parents=True)
    (bad_joint / "twist2_1017_20k.onnx").symlink_to(TWIST2 / "twist2_1017_20k.onnx")
    (bad_joint / "g1" / "meshes").symlink_to(TWIST2 / "g1" / "meshes")
    xml = (TWIST2 / "g1" / "g1_sim2sim_29dof.xml").read_text()
    (bad_joint / "g1" / "g1_sim2sim_29dof.xml").write_text(xml.replace('"left_knee_joint"', '"left_knee"'))
    return {"missing": tmp_path / "no_such_folder", "hash": bad_hash, "joint": bad_joint}


def test_bad_tracker_folder_hash_or_joints_stop_the_nodes_with_one_clear_line(tmp_path):
    folders = _broken_folders(tmp_path)
    expected = {"missing": "tracker folder not found", "hash": "has sha256",
                "joint": "joints do not match the tracker: missing ['left_knee_joint'], unknown ['left_knee']"}
    runs = {name: _start("momask_ros.ros.tracker_node", f"/tracker_bad_{name}", {"tracker": path})
            for name, path in folders.items()}
    for name, process in runs.items():
        output = process.communicate(timeout=120)[0]
        fatal = [line for line in output.splitlines() if "FATAL" in line]
        assert process.returncode == 1, f"{name}: exit {process.returncode}\n{output}"
        assert len(fatal) == 1 and expected[name] in fatal[0], f"{name}:\n{output}"
        assert "Traceback" not in output
