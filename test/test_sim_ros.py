"""momask_sim over real rclpy/DDS: the demo walk tracked in harness mode, free-mode standing, JointTrajectory.

Each test spins the simulator node (and, for the walk, momask_node with the packaged demo model) with a
probe node in one process; see ros_harness.py for the domain id and discovery set-up.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from momask_ros.ros.messages import duration_msg
from momask_ros.ros.sim_node import SimNode

from ros_harness import DEEP, DOMAIN_ID, RELIABLE, wait_until
from ros_spin import BackgroundSpin


#: Every node and topic of these tests lives here, away from what other tests' processes may still publish.
NAMESPACE = "/sim_test"


class SimHarness:
    def __init__(self, sim_params: dict, *, with_momask: bool = False, momask_params: dict | None = None,
                 sim_process: bool = False):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=DOMAIN_ID)
        self.nodes = []
        self.sim = None
        self.processes = []
        if sim_process:  # its own process, as `ros2 launch` runs it: no GIL shared with the test
            self.processes.append(self._start("momask_ros.ros.sim_node", sim_params))
        else:
            self.sim = SimNode(context=self.context, namespace=NAMESPACE,
                               parameter_overrides=[Parameter(k, value=v) for k, v in sim_params.items()])
            self.nodes.append(self.sim)
        if with_momask:  # so is momask_node: its control timer then ticks as it would on a robot computer
            self.processes.append(self._start("momask_ros.ros.node", momask_params or {}))
        self.probe = Node("sim_test_probe", context=self.context, namespace=NAMESPACE)
        self.nodes.append(self.probe)
        self.measured, self.commanded, self.statuses, self.sim_status = [], [], [], []
        self.probe.create_subscription(JointState, "joint_states", self.measured.append, DEEP)
        self.probe.create_subscription(JointState, "joint_command", self.commanded.append, DEEP)
        self.reference = []
        self.probe.create_subscription(JointState, "sim/joint_reference", self.reference.append, DEEP)
        self.imu = []
        self.probe.create_subscription(Imu, "imu", self.imu.append, DEEP)
        self.probe.create_subscription(String, "momask/status", self._on_status, DEEP)
        self.probe.create_subscription(String, "sim/status", lambda m: self.sim_status.append(json.loads(m.data)), DEEP)
        self.cmd_pub = self.probe.create_publisher(String, "momask/command", RELIABLE)
        self.traj_pub = self.probe.create_publisher(JointTrajectory, "joint_trajectory_controller/joint_trajectory", 10)
        self.executor = SingleThreadedExecutor(context=self.context)  # (a pool's failed tasks go unread: ros_harness)
        for n in self.nodes:
            self.executor.add_node(n)
        self._spin = BackgroundSpin(self.executor, self.context)

    @staticmethod
    def _start(module: str, params: dict) -> subprocess.Popen:
        args = [f"{k}:={str(v).lower() if isinstance(v, bool) else v}" for k, v in params.items()]
        env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), OMP_NUM_THREADS="1")
        return subprocess.Popen([sys.executable, "-m", module, "--ros-args", "-r", f"__ns:={NAMESPACE}",
                                 *[x for a in args for x in ("-p", a)]],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _on_status(self, msg):
        self.statuses.append(dict(json.loads(msg.data), received_s=time.time()))

    def wait_for(self, predicate, timeout, what):
        return wait_until(predicate, timeout, lambda: f"{what}; momask {self.statuses[-4:]}; sim {self.sim_status[-2:]}")

    def close(self):
        for process in self.processes:
            process.send_signal(signal.SIGINT)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self._spin.stop()
        for n in self.nodes:
            n.destroy_node()
        rclpy.try_shutdown(context=self.context)


def stamp(msg):
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def test_harness_mode_tracks_the_demo_walk():
    """momask_node (packaged demo model, default humanoid) streams into the simulator in harness mode."""
    h = SimHarness({"mode": "harness", "publish_rate": 100.0, "joint_command_topic": "joint_command"}, sim_process=True,
                   with_momask=True, momask_params={"device": "cpu", "joint_state_topic": "momask/joint_states",
                                                    "joint_command_topic": "joint_command", "seed": 3,
                                                    "trajectory_topic": "momask/trajectory_unused"})
    try:
        # (its "ready" status may go out before the probe is discovered: wait for its idle stream instead)
        h.wait_for(lambda: h.commanded and h.cmd_pub.get_subscription_count() > 0, 60.0, "momask_node streaming")
        h.wait_for(lambda: h.sim_status and h.measured, 60.0, "simulator publishing")
        h.wait_for(lambda: h.cmd_pub.get_subscription_count() > 0, 10.0, "command subscriber")
        h.cmd_pub.publish(String(data="a person walks forward length=4s"))
        playing = h.wait_for(lambda: [s for s in h.statuses if s["state"] == "playing"], 120.0, "playing")[0]
        done = h.wait_for(lambda: [s for s in h.statuses if s["state"] == "done"], 60.0, "done")[0]
        time.sleep(0.3)
    finally:
        h.close()
    assert done["id"] == playing["id"]
    cmd = [m for m in h.commanded]
    names = list(cmd[0].name)
    ct = np.array([stamp(m) for m in cmd])
    cq = np.array([m.position for m in cmd])
    # The whole walk, from its first JointState (the `playing` status's stamp) to the end: the blend from
    # the standing robot into the walking clip starts where the simulator stands and keeps the feet out of
    # the floor (`MotionPlayback`), so the start is tracked as closely as the walk.
    start = playing["stamp_s"]
    meas = [m for m in h.measured if start < stamp(m) < min(ct[-1], done["received_s"])]
    assert len(meas) > 150, len(meas)
    assert list(meas[0].name) == names
    mt = np.array([stamp(m) for m in meas])
    mq = np.array([m.position for m in meas])
    want = np.stack([np.interp(mt, ct, cq[:, j]) for j in range(len(names))], axis=1)
    err = np.abs(mq - want)
    assert np.ptp(cq, axis=0).max() > 0.3, "the walk should move the joints"
    rms = float(np.sqrt(np.mean(err ** 2)))
    per_joint = dict(zip(names, np.sqrt(np.mean(err ** 2, axis=0)).round(3)))
    assert rms < 0.05, f"joint RMS tracking error {rms:.4f} rad; per joint {per_joint}"
    # The max against the set-point the simulator was tracking at that instant (published with the same
    # stamp): by stamp against the stream it is usually 0.04-0.13 rad, but a late DDS delivery on a busy
    # machine adds velocity x delay to it, which is not the simulator's tracking.
    ref = {stamp(m): np.array(m.position) for m in h.reference}
    rows = [i for i, m in enumerate(meas) if stamp(m) in ref]
    assert len(rows) > 0.8 * len(meas)
    reference = np.array([ref[stamp(meas[i])] for i in rows])
    ferr = np.abs(mq[rows] - reference)
    worst = np.unravel_index(int(ferr.argmax()), ferr.shape)
    assert ferr.max() < 0.2, f"max tracking error {ferr.max():.3f} rad on {names[worst[1]]}"  # issue 17's target
    # and the reference is the stream it was sent (up to delivery delay and the 50 ms first-order hold)
    assert float(np.sqrt(np.mean((reference - want[rows]) ** 2))) < 0.05
    print(f"harness tracking: RMS {rms:.4f} rad vs the stream; max {ferr.max():.3f} rad vs the tracked "
          f"set-point; max {err.max():.3f} rad vs the stream by stamp")
    assert not any(s.get("fallen") for s in h.sim_status)


def test_free_mode_holds_the_rest_pose_upright_for_10_s():
    h = SimHarness({"mode": "free", "real_time_factor": 0.0, "publish_rate": 50.0, "publish_clock": True})
    try:
        last = h.wait_for(lambda: [s for s in h.sim_status if s["sim_time_s"] >= 10.0], 60.0, "10 s simulated")[0]
        rest = h.sim.sim.rest_base_height
    finally:
        h.close()
    assert not any(s["fallen"] for s in h.sim_status)
    assert abs(last["base_height_m"] - rest) < 0.05
    assert h.measured and h.measured[-1].name
    final = h.sim.sim.joint_positions()  # the state the last status described
    assert np.abs(final - h.sim.sim.robot.rest_positions).max() < 0.05
    # the pelvis IMU, stamped as joint_states: upright, still, gravity's reaction on the accelerometer
    imu = {stamp(m): m for m in h.imu}
    assert sum(stamp(m) in imu for m in h.measured) >= 0.9 * len(h.measured)
    last = h.imu[-1]
    acc, gyro = last.linear_acceleration, last.angular_velocity
    assert np.hypot(acc.x, acc.y) < 0.5 and abs(acc.z - 9.81) < 0.3 and abs(last.orientation.w) > 0.99
    assert max(abs(gyro.x), abs(gyro.y), abs(gyro.z)) < 0.05


def test_joint_trajectory_runs_to_its_end_within_tolerance():
    h = SimHarness({"mode": "fixed", "publish_rate": 100.0})
    try:
        h.wait_for(lambda: h.traj_pub.get_subscription_count() > 0, 10.0, "trajectory subscriber")
        names = ["left_elbow_joint", "right_shoulder_pitch_joint", "left_knee_joint"]
        msg = JointTrajectory(joint_names=names)
        goals = [[0.6, -0.4, 0.5], [0.3, -0.8, 1.0]]
        for t, q in zip((0.4, 0.8), goals):
            msg.points.append(JointTrajectoryPoint(positions=q, time_from_start=duration_msg(t)))
        h.traj_pub.publish(msg)
        final = h.wait_for(lambda: [s for s in h.sim_status if s.get("trajectory") not in (None, "none", "executing")],
                           15.0, "trajectory finished")[0]
        time.sleep(0.1)
        # an unknown joint is rejected with a reason, and the simulator keeps running
        bad = JointTrajectory(joint_names=["no_such_joint"],
                              points=[JointTrajectoryPoint(positions=[0.0], time_from_start=duration_msg(0.1))])
        h.traj_pub.publish(bad)
        h.wait_for(lambda: [s for s in h.sim_status if "no_such_joint" in s.get("rejected", "")], 5.0, "rejection")
        # the measured state is at the goal (waited for: on a loaded machine the newest message this
        # probe has received may still be one from before the simulator settled)
        idx = [list(h.measured[-1].name).index(n) for n in names]
        h.wait_for(lambda: [m for m in h.measured[-3:] if np.allclose(np.array(m.position)[idx], goals[-1], atol=0.05)],
                   5.0, "measured joints at the goal")
    finally:
        h.close()
    assert final["trajectory"] == "succeeded", final
    last = h.measured[-1]
    mid = [m for m in h.measured if m.effort]
    assert mid and len(mid[-1].effort) == len(last.name)
