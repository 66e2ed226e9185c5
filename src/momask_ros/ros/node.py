"""`momask_node`: text commands in, robot joint motion out (ROS 2, rclpy).

A thin adapter in the manner of ``demo_nodes_py``: it declares and checks the parameters
(`momask_ros.stream.parameters`), hands commands and stops to a `momask_ros.stream.conductor.Conductor`,
and at ``control_rate`` ticks the conductor with the ROS clock and publishes what it returns, converted by
`momask_ros.ros.messages`. What plays, when motions switch and which statuses go out is the
conductor's; the generation and retargeting workers are its producer's (`momask_ros.stream.producer`).
The executor thread runs the subscriptions and the timer and is the only thread that publishes.

Topics (defaults, relative to the node's namespace, each set by a parameter; details in
docs/ros_interface.md):

* in  ``momask/command`` std_msgs/String: a text command; ``momask/stop`` std_msgs/Empty: blend into a
  hold of the current pose and drop waiting commands.
* out ``joint_states`` sensor_msgs/JointState at ``control_rate`` (and ``joint_command_topic``, off by
  default); ``joint_trajectory_controller/joint_trajectory`` trajectory_msgs/JointTrajectory, the whole
  motion once retargeted (``time_from_start`` 0 at its first streamed JointState); ``base_pose``
  geometry_msgs/PoseStamped and ``base_twist`` geometry_msgs/TwistStamped (world-frame linear and
  angular velocity), both stamped like the JointState; ``momask/human_skeleton``
  visualization_msgs/MarkerArray; ``momask/status`` std_msgs/String, JSON: ready, accepted, generating,
  playing, then exactly one of done, rejected or stopped per command (error for internal failures).

With ``record`` set to a folder, each played motion is also written there as a bag of what was published
while it played (`momask_ros.ros.recording`); its path is in the motion's ``playing`` status.

With ``physical_checks: rehearse`` the node loads the whole-body tracker (``tracker_dir``) at start and
rehearses every motion in physics before it plays (`momask_ros.stream.rehearsing`), from the robot's
state on the ``measured_*`` topics when they are set (`momask_ros.ros.measured_state`).
"""
from __future__ import annotations

import sys
from typing import Any

from geometry_msgs.msg import PoseStamped, TwistStamped
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Empty, String
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import MarkerArray

from momask_ros.ros.messages import decode_string_cdr, status_payload
from momask_ros.ros.publishing import Outgoing, status_messages, stream_messages
from momask_ros.ros.recording import MotionRecorder
from momask_ros.stream.conductor import Conductor
from momask_ros.stream.job import Job
from momask_ros.stream.parameters import PARAMETERS, ParameterError, coerce as _coerce
from momask_ros.stream.pipeline import MotionPipeline
from momask_ros.stream.rehearsal_setup import RehearsalUnavailable, load_rehearsal
from momask_ros.stream.rehearsing import Rehearser
from momask_ros.stream.settings import StreamSettings

__all__ = ["MomaskNode", "ParameterError", "PARAMETERS", "decode_string_cdr", "main"]


class MomaskNode(Node):
    """Text -> humanoid motion node. See the module docstring for topics, `PARAMETERS` for parameters.

    Args:
        pipeline: an already built `MotionPipeline` (tests, embedding); None loads the bundle and the
            robot named by the parameters.
        node_name: ROS node name.
        **node_kwargs: passed to ``rclpy.node.Node`` (``context``, ``namespace``, ``parameter_overrides``...).
    """

    def __init__(self, *, pipeline: MotionPipeline | None = None, node_name: str = "momask_node", **node_kwargs: Any):
        super().__init__(node_name, **node_kwargs)
        try:
            self._setup(pipeline)
        except BaseException:
            super().destroy_node()  # leave no half-built node registered with the context
            raise

    def _setup(self, pipeline: MotionPipeline | None) -> None:
        self._p: dict[str, Any] = {}
        for name, spec in PARAMETERS.items():
            descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only,
                                             dynamic_typing=isinstance(spec.default, float) or spec.off_is_false)
            self._p[name] = _coerce(name, self.declare_parameter(name, spec.default, descriptor).value)  # fails loudly
        self.add_on_set_parameters_callback(self._on_set_parameters)
        p = self._p
        if pipeline is None:
            # Loaded here, not in a worker: a missing bundle or device stops start-up with a clear error.
            from momask_ros.robot.model import load_robot

            # The robot first: a missing description fails in milliseconds, before the model loads.
            robot = load_robot(p["robot"], description=p["robot_description_path"] or None)
            pipeline = MotionPipeline.from_bundle(p["bundle_path"] or None, robot=robot, device=p["device"],
                                                  chunk_frames=p["chunk_frames"])
        self.pipeline = pipeline
        self._names = list(pipeline.joint_space.names)

        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        kinds = {"joint_state_topic": JointState, "joint_command_topic": JointState,
                 "trajectory_topic": JointTrajectory, "base_pose_topic": PoseStamped,
                 "base_twist_topic": TwistStamped, "markers_topic": MarkerArray}
        self._pubs = {key: self.create_publisher(kind, p[key], 10) for key, kind in kinds.items() if p[key]}
        self._pubs["status_topic"] = self._status_pub = self.create_publisher(String, p["status_topic"], reliable)
        self.create_subscription(String, p["command_topic"], self._on_command, reliable, raw=True)
        self.create_subscription(Empty, p["stop_topic"], self._on_stop, 10)
        self._recorder = None
        if p["record"]:  # an unusable folder stops start-up (BagError)
            self._recorder = MotionRecorder(p["record"], qos_depth={self._status_pub.topic_name: 50},
                                            on_error=self._record_failed)
        rehearser = self._rehearser() if p["physical_checks"] == "rehearse" else None  # RehearsalUnavailable
        self.conductor = Conductor(pipeline, StreamSettings.from_parameters(p), now_ns=self._now_ns(),
                                   on_begin=self._begin, rehearser=rehearser)
        self.create_timer(1.0 / p["control_rate"], self._on_tick)
        self.conductor.start(warm_up=p["warm_up"])
        self.get_logger().info(
            f"momask_node up: {len(self._names)} joints at {p['control_rate']:g} Hz on "
            f"{self.resolve_topic_name(p['joint_state_topic'])}; "
            f"commands on {self.resolve_topic_name(p['command_topic'])}")

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _rehearser(self) -> Rehearser:
        """The tracker's rehearsal of this robot, from its measured state when the topics are set."""
        from momask_ros.ros.measured_state import MeasuredStateListener

        p = self._p
        rehearsal = load_rehearsal(p["tracker_dir"], self._names, robot=p["robot"])
        spec = rehearsal.bundle.spec
        listener = MeasuredStateListener(self, joint_state_topic=p["measured_joint_state_topic"],
                                         imu_topic=p["measured_imu_topic"],
                                         base_pose_topic=p["measured_base_pose_topic"],
                                         memory_topic=p["measured_tracker_memory_topic"], spec=spec,
                                         joint_names=spec.joint_names, standing_height_m=spec.standing_height_m,
                                         now_s=lambda: self._now_ns() * 1e-9)
        self.get_logger().info(f"rehearsing every motion with {spec.name} from {rehearsal.bundle.directory}")
        return Rehearser(rehearsal, joint_names=self._names, state=listener.state, memory=listener.memory)

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        updates = {}
        for param in params:
            if param.name in PARAMETERS:
                try:
                    updates[param.name] = _coerce(param.name, param.value)
                except ParameterError as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
        if updates.get("physical_checks") == "rehearse" and not self.conductor.can_rehearse:
            try:
                self.conductor.use_rehearser(self._rehearser())
            except RehearsalUnavailable as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        self._p.update(updates)
        self.conductor.configure(StreamSettings.from_parameters(self._p))
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ inputs
    def _on_command(self, payload: bytes) -> None:
        try:
            raw = decode_string_cdr(payload)
        except ValueError as exc:
            self.conductor.malformed(str(exc))
            return
        self.conductor.command(raw, self._now_ns())

    def _on_stop(self, _msg: Empty) -> None:
        self.conductor.stop(self._now_ns())

    # ------------------------------------------------------------------ outputs
    def _on_tick(self) -> None:
        now_ns = self._now_ns()
        tick = self.conductor.tick(now_ns)
        try:
            for out in stream_messages(tick, names=self._names, frame_id=self._p["frame_id"], now_ns=now_ns,
                                       keys=self._pubs):
                self._publish(out)
        except Exception as exc:  # a message that cannot be built: say so (next tick), keep ticking
            self.conductor.error("internal", f"{type(exc).__name__}: {exc}"[:200])
        for out in status_messages(tick, now_ns=now_ns):
            try:
                self._publish(out)
            except Exception:  # the status topic itself failed: nothing left to tell
                continue
            text = f"{out.state}: {out.msg.data}"
            if out.state in ("rejected", "error"):
                self.get_logger().warning(text, throttle_duration_sec=1.0)
            else:
                self.get_logger().info(text)

    def _publish(self, out: Outgoing) -> None:
        """Publish, and write into the bag of the motion playing (when recording)."""
        publisher = self._pubs[out.key]
        publisher.publish(out.msg)
        if self._recorder is None:
            return
        if out.state is not None:
            self._recorder.write_status(out.motion_id, out.state, publisher.topic_name, out.msg, out.log_ns)
        elif out.motion_id is not None:
            self._recorder.write(out.motion_id, publisher.topic_name, out.msg, out.log_ns)

    def _begin(self, job: Job) -> None:
        """A motion starts playing: its bag opens (when recording), its path in its statuses."""
        if self._recorder is not None:
            path = self._recorder.open(job.id, job.command.text)
            if path is not None:
                job.fields["bag"] = str(path)

    def _record_failed(self, reason: str) -> None:
        self.conductor.error("record_failed", reason)

    # ------------------------------------------------------------------ introspection and shutdown
    def status_snapshot(self) -> dict:
        """A small summary for tests and diagnostics."""
        return status_payload("ready", **self.conductor.snapshot())

    def destroy_node(self) -> None:
        self.conductor.shutdown()
        if self._recorder is not None:
            self._recorder.close_all()  # a bag is readable only once finished
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``momask_node`` executable."""
    from momask_ros.ros.main import run_node

    return run_node(MomaskNode, "momask_node", args)


if __name__ == "__main__":
    sys.exit(main())
