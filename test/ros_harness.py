"""Run a `MomaskNode` and a probe node in one process over real DDS (loopback), for pytest.

rclpy here comes from PyPI wheels (ros-rclpy, rmw_fastrtps_cpp): ``import rclpy`` works from the venv
with no sourced setup script and no RMW_IMPLEMENTATION (Fast DDS is the default). Each test session
picks its own ROS domain id in 100..200 (several agents run tests on this machine at once) and keeps
discovery on localhost; both are passed to ``rclpy.init`` / set before it, never taken from a shell.

Both nodes spin on one thread (`ros_spin.BackgroundSpin`), stopped before anything is destroyed.
"""
from __future__ import annotations

import json
import os
import random
import time
from typing import Any, Callable

import rclpy
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Empty, String
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import MarkerArray

from momask_ros.ros.node import MomaskNode
from ros_spin import BackgroundSpin

DOMAIN_ID = int(os.environ.get("MOMASK_TEST_DOMAIN_ID", random.SystemRandom().randint(100, 200)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
DEEP = QoSProfile(depth=2000, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)


def wait_until(predicate: Callable[[], Any], timeout: float, what: Callable[[], str]) -> Any:
    """Poll `predicate` until it returns something truthy (returned) or `timeout` s pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what()}")


class Harness:
    """The node under test, a probe node that publishes commands and records outputs, and an executor
    spinning both on a background thread."""

    def __init__(self, pipeline: Any, params: dict[str, Any] | None = None, *, namespace: str = "",
                 wait_ready: bool = True) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=DOMAIN_ID)
        overrides = [Parameter(k, value=v) for k, v in (params or {}).items()]
        self.node = MomaskNode(pipeline=pipeline, context=self.context, namespace=namespace or None,
                               parameter_overrides=overrides)
        self.probe = Node("momask_test_probe", context=self.context, namespace=namespace or None)
        self.joint_states: list[JointState] = []
        self.joint_commands: list[JointState] = []
        self.statuses: list[dict] = []
        self.received_s: list[float] = []
        self.trajectories: list[JointTrajectory] = []
        self.markers: list[MarkerArray] = []
        self.poses: list[PoseStamped] = []
        self.twists: list[TwistStamped] = []
        p = self.node.get_parameter
        probe = self.probe
        probe.create_subscription(JointState, p("joint_state_topic").value, self.joint_states.append, DEEP)
        if p("joint_command_topic").value:
            probe.create_subscription(JointState, p("joint_command_topic").value, self.joint_commands.append, DEEP)
        probe.create_subscription(String, p("status_topic").value, self._on_status, DEEP)
        probe.create_subscription(JointTrajectory, p("trajectory_topic").value, self.trajectories.append, 10)
        probe.create_subscription(MarkerArray, p("markers_topic").value, self.markers.append, 50)
        probe.create_subscription(PoseStamped, p("base_pose_topic").value, self.poses.append, DEEP)
        probe.create_subscription(TwistStamped, p("base_twist_topic").value, self.twists.append, DEEP)
        self.cmd_pub = probe.create_publisher(String, p("command_topic").value, RELIABLE)
        self.stop_pub = probe.create_publisher(Empty, p("stop_topic").value, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(probe)
        self._spin = BackgroundSpin(self.executor, self.context)
        if wait_ready:  # (under sim time nothing is published before the first /clock message)
            self.wait_for(lambda: self.cmd_pub.get_subscription_count() > 0 and self.by_state("ready"), 10.0,
                          "node ready and subscribed")

    def _on_status(self, msg: String) -> None:
        self.received_s.append(time.time())  # wall clock = ROS time without sim time
        self.statuses.append(json.loads(msg.data))

    def received_at(self, status: dict) -> float:
        """When the probe received ``status`` (wall clock) [s]."""
        return next(t for s, t in zip(list(self.statuses), list(self.received_s)) if s is status)

    # ------------------------------------------------------------------ helpers
    def send(self, text: str) -> None:
        self.cmd_pub.publish(String(data=text))

    def send_raw(self, text_bytes: bytes) -> None:
        """Publish a std_msgs/String whose payload is arbitrary bytes (e.g. invalid UTF-8)."""
        n = len(text_bytes) + 1
        payload = b"\x00\x01\x00\x00" + n.to_bytes(4, "little") + text_bytes + b"\x00"
        payload += b"\x00" * (-len(payload) % 4)
        self.cmd_pub.publish(payload)

    def stop(self) -> None:
        self.stop_pub.publish(Empty())

    def by_state(self, state: str, **match: Any) -> list[dict]:
        return [s for s in list(self.statuses) if s["state"] == state and all(s.get(k) == v for k, v in match.items())]

    def by_text(self, text: str) -> list[dict]:
        return [s for s in list(self.statuses) if s.get("text") == text]

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str = "condition") -> Any:
        return wait_until(predicate, timeout, lambda: f"{what}; statuses: {self.statuses[-8:]}")

    def wait_state(self, state: str, timeout: float = 10.0, **match: Any) -> dict:
        return self.wait_for(lambda: self.by_state(state, **match), timeout, f"status {state} {match}")[0]

    def close(self) -> None:
        """Stop spinning (the callback running finishes), then tear down in order."""
        self._spin.stop()
        self.node.destroy_node()
        self.probe.destroy_node()
        rclpy.try_shutdown(context=self.context)
