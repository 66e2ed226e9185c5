"""`momask_node`: text commands in, robot joint motion out (ROS 2, rclpy).

The node is a thin shell around `momask_ros.stream.pipeline`: it declares and validates parameters, turns
messages into `MotionCommand`s (`momask_ros.stream.commands`), hands them to `momask_ros.stream.producer` (a
generation worker and a retargeting worker, so the executor stays responsive and a command's
generation never waits behind retargeting), and at the control rate publishes whatever the active
playback (`momask_ros.stream.playback`) says. Every message is converted by `momask_ros.ros.messages`.

Switching: a command arriving while a motion plays is generated as a continuation of it from a
switch time a little ahead and joins it without a blend (``switch_mode=continue``); queue mode
continues at the end of the current motion; long motions and sequences stream window by window.
Statuses say how each motion started (``switch``: start, continue, blend + ``switch_reason``).

Threads: the executor thread runs subscriptions and the control timer (and is the only thread that
publishes); the producer's workers generate and retarget. No callback lets an exception escape: a
bad message becomes a ``rejected`` status, an internal failure an ``error`` status, and the node
keeps serving.

Topics (defaults; names are relative to the node's namespace and set by parameters):

* in  ``momask/command`` std_msgs/String: a text command (syntax: `momask_ros.stream.commands`).
* in  ``momask/stop`` std_msgs/Empty: blend into a hold of the current pose, drop waiting commands.
* out ``joint_states`` sensor_msgs/JointState at ``control_rate`` (name, position, velocity).
* out ``joint_command_topic`` (off; ``/joint_command`` for Isaac Sim): the same JointState stream.
* out ``joint_trajectory_controller/joint_trajectory`` trajectory_msgs/JointTrajectory: the whole
  motion once retargeted; ``time_from_start`` 0 is the stamp of its first streamed JointState.
* out ``base_pose`` geometry_msgs/PoseStamped: the floating base (after the first motion).
* out ``momask/status`` std_msgs/String, JSON: ``state`` (ready, accepted, generating, playing, done,
  rejected, stopped, error), ``id``, ``text``, ``reason``/``detail`` for rejections, timings
  (``wait_ms`` = accepted -> generation started, ``generation_ms``, ``latency_ms`` = command received
  -> the first published JointState computed from its motion, ``stamp_s`` = that JointState's stamp:
  for a fresh start the first sample of its blend-in, for a continuation the first sample it changes,
  up to 4 frames before its switch frame, which ``switch_latency_ms`` / ``switch_stamp_s`` give),
  ``switch`` (``switch_slip_frames``: frames the switch came after the planned token), ``physical``
  (with ``physical_checks``: torque ratio, ZMP, feet, self-collision; a motion refused under ``reject``
  is ``rejected`` with reason ``physically_infeasible``). Each
  command ends with exactly one of done, rejected or stopped (a stop lists the commands it
  dropped in ``dropped_ids``).
* out ``momask/human_skeleton`` visualization_msgs/MarkerArray: the generated human, for RViz.

With ``record`` set to a folder, each played motion is also written there as an MCAP bag of what was
published while it played (`momask_ros.ros.recording`); the bag's path is in its ``playing`` status.
"""
from __future__ import annotations

import collections
import math
import sys
from typing import Any

import numpy as np
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import JointState
from std_msgs.msg import Empty, String
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import MarkerArray

from momask_ros.stream.commands import BurstLimiter, CommandLimits, CommandRejected, parse_sequence_command, preview
from momask_ros.ros.messages import (
    decode_string_cdr,
    joint_state_msg,
    joint_trajectory_msg,
    pose_stamped_msg,
    skeleton_marker_array,
    status_msg,
    status_payload,
)
from momask_ros.stream.parameters import PARAMETERS, ParameterError, coerce as _coerce
from momask_ros.physics.checks import thresholds_from
from momask_ros.stream.pipeline import MotionPipeline
from momask_ros.stream.playback import BlendToPosePlayback, HoldPlayback, MotionPlayback, StopPlayback
from momask_ros.stream.producer import Job, MotionProducer
from momask_ros.ros.recording import MotionRecorder
from momask_ros.stream.state import RobotPose, Sample

__all__ = ["MomaskNode", "ParameterError", "PARAMETERS", "decode_string_cdr", "main"]


class MomaskNode(Node):
    """Text -> humanoid motion node. See the module docstring for topics, `PARAMETERS` for parameters.

    Args:
        pipeline: an already built `MotionPipeline` (tests, embedding); None loads the bundle and the
            robot named by the parameters.
        node_name: ROS node name.
        **node_kwargs: passed to ``rclpy.node.Node`` (``context``, ``namespace``, ``parameter_overrides``...).
    """

    #: Longest stall of the control loop whose missed samples are still published [s].
    CATCH_UP_S = 1.0

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
            descriptor = ParameterDescriptor(
                description=spec.description, read_only=spec.read_only, dynamic_typing=isinstance(spec.default, float) or spec.off_is_false
            )
            value = self.declare_parameter(name, spec.default, descriptor).value
            self._p[name] = _coerce(name, value)  # raises ParameterError at start-up: fail loudly
        self.add_on_set_parameters_callback(self._on_set_parameters)

        if pipeline is None:
            # Loading happens here (not in the worker) so a missing bundle or device stops start-up
            # with a clear error instead of leaving a node that silently never moves.
            from momask_ros.robot.model import load_robot

            # The robot first: a missing description fails in milliseconds, before the model loads.
            robot = load_robot(self._p["robot"], description=self._p["robot_description_path"] or None)
            pipeline = MotionPipeline.from_bundle(
                self._p["bundle_path"] or None, robot=robot, device=self._p["device"],
                chunk_frames=self._p["chunk_frames"],
            )
        self.pipeline = pipeline
        self._apply_pipeline_settings()
        space = pipeline.joint_space
        self._names = list(space.names)

        # statuses are queued by every thread and published by the executor thread
        self._events: collections.deque[tuple[str, dict]] = collections.deque(maxlen=10_000)
        self._next_id = 0
        self._producer = MotionProducer(
            pipeline, report=lambda state, job, fields: self._status(state, job, **fields),
            options=lambda: {"queue_mode": self._p["queue_mode"], "switch_mode": self._p["switch_mode"],
                             "control_period_s": self._tick_dt, "physical_checks": self._p["physical_checks"],
                             "physical_thresholds": thresholds_from(self._p)})

        # executor-thread state
        self._limiter: BurstLimiter[Job] = BurstLimiter(rate_hz=self._p["command_rate"], burst=self._p["command_burst"])
        self._active: Any = HoldPlayback(RobotPose(space.rest.copy(), base_valid=False))
        self._active_job: Job | None = None
        self._t0 = self._now_s()
        self._t_served = 0.0
        self._last: Sample = self._active.sample(0.0)
        self._playing_sent = False
        self._trajectory_sent = False
        self._last_marker_s = -math.inf
        self._last_pub_s: float | None = None
        self._tick_dt = 1.0 / self._p["control_rate"]

        # ROS interfaces
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        self._js_pub = self.create_publisher(JointState, self._p["joint_state_topic"], 10)
        self._cmd_pub = (self.create_publisher(JointState, self._p["joint_command_topic"], 10)
                         if self._p["joint_command_topic"] else None)
        self._traj_pub = (self.create_publisher(JointTrajectory, self._p["trajectory_topic"], 10)
                          if self._p["trajectory_topic"] else None)
        self._pose_pub = (self.create_publisher(PoseStamped, self._p["base_pose_topic"], 10)
                          if self._p["base_pose_topic"] else None)
        self._marker_pub = (self.create_publisher(MarkerArray, self._p["markers_topic"], 10)
                            if self._p["markers_topic"] else None)
        self._status_pub = self.create_publisher(String, self._p["status_topic"], reliable)
        self.create_subscription(String, self._p["command_topic"], self._on_command, reliable, raw=True)
        self.create_subscription(Empty, self._p["stop_topic"], self._on_stop, 10)
        self._recorder = None
        if self._p["record"]:  # an unusable folder stops start-up (BagError)
            self._recorder = MotionRecorder(
                self._p["record"], qos_depth={self._status_pub.topic_name: 50},
                on_error=lambda reason: self._status("error", reason="record_failed", detail=reason[:300]))
        self._timer = self.create_timer(self._tick_dt, self._on_tick)

        self._producer.start(warm_up=self._p["warm_up"])
        self.get_logger().info(
            f"momask_node up: {len(self._names)} joints at {self._p['control_rate']:g} Hz on "
            f"{self.resolve_topic_name(self._p['joint_state_topic'])}; commands on "
            f"{self.resolve_topic_name(self._p['command_topic'])}"
        )

    # ------------------------------------------------------------------ helpers
    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    @staticmethod
    def _human_parents(joints_num: int) -> list[int]:
        from momask_model.motion.skeleton import skeleton_for

        return list(skeleton_for(joints_num).parents)

    def _apply_pipeline_settings(self) -> None:
        p, pipe = self._p, self.pipeline
        pipe.sampling = {k: p[k] for k in ("timesteps", "cond_scale", "res_cond_scale", "temperature")
                         if p[k] != -1}  # -1: the bundle's own setting (None in MoMask.generate)
        pipe.seed = None if p["seed"] < 0 else int(p["seed"])
        frames = None
        if p["length_s"] > 0:
            unit = pipe.unit_frames
            frames = int(min(pipe.max_frames, max(unit, math.floor(p["length_s"] * pipe.fps / unit + 0.5) * unit)))
        pipe.default_length_frames = frames
        self._limits: CommandLimits = pipe.command_limits(max_chars=p["max_command_chars"])

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        updates = {}
        for param in params:
            if param.name not in PARAMETERS:
                continue
            try:
                updates[param.name] = _coerce(param.name, param.value)
            except ParameterError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        self._p.update(updates)
        self._apply_pipeline_settings()
        if {"command_rate", "command_burst"} & set(updates):
            self._limiter.rate_hz = float(self._p["command_rate"])
            self._limiter.burst = int(self._p["command_burst"])
        return SetParametersResult(successful=True)

    def _status(self, state: str, job: Job | None = None, **fields: Any) -> None:
        """Queue a status for publishing by the executor thread (workers never publish)."""
        if job is not None:
            fields = {"id": job.id, "text": preview(job.command.text), **fields}
        self._events.append((state, fields))

    def _flush_status(self) -> None:
        while self._events:
            state, fields = self._events.popleft()
            msg = status_msg(state, **fields)
            self._status_pub.publish(msg)
            if self._recorder is not None:
                active = self._active_job.id if self._active_job is not None else None
                self._recorder.write_status(fields.get("id", active), state, self._status_pub.topic_name, msg,
                                            self.get_clock().now().nanoseconds)
            if state in ("rejected", "error"):
                self.get_logger().warning(f"{state}: {msg.data}", throttle_duration_sec=1.0)
            else:
                self.get_logger().info(f"{state}: {msg.data}")

    # ------------------------------------------------------------------ subscriptions
    def _on_command(self, payload: bytes) -> None:
        try:
            self._handle_command(payload)
        except Exception as exc:  # never let a message take the node down
            self._status("error", reason="internal", detail=f"{type(exc).__name__}: {exc}"[:200])

    def _handle_command(self, payload: bytes) -> None:
        now = self._now_s()
        self._next_id += 1
        cid = self._next_id
        try:
            raw = decode_string_cdr(payload)
        except ValueError as exc:
            self._status("rejected", id=cid, reason="malformed", detail=str(exc))
            return
        try:
            commands = parse_sequence_command(raw, self._limits, then_separates=self.pipeline.then_separates)
        except CommandRejected as exc:
            self._status("rejected", id=cid, text=preview(raw), reason=exc.reason, detail=str(exc))
            return
        job = Job(cid, commands[0], now)
        if len(commands) > 1:  # a sequence: one job per segment, each continuing the one before
            for command in commands[1:]:
                self._next_id += 1
                job.sequence.append(Job(self._next_id, command, now, after=(job.sequence or [job])[-1]))
            for k, seg in enumerate([job, *job.sequence]):
                seg.fields.update(segment=k + 1, segments=len(commands))
        for k, command in enumerate(commands):
            refusal = self.pipeline.check_text(command.text)
            if refusal is not None:
                # What the model says it cannot do (out of scope, unknown words) would be a silent guess.
                where = {"segment": k + 1, "segments": len(commands)} if len(commands) > 1 else {}
                self._status("rejected", job, reason=refusal.reason, detail=refusal.message[:300],
                             **where, **refusal.fields)
                return
        offer = self._limiter.offer(job, now)
        if offer.superseded is not None:
            self._status("rejected", offer.superseded, reason="coalesced",
                         detail=f"superseded by command {job.id} during a burst")
        if offer.admitted is not None:
            self._enqueue(offer.admitted)

    def _enqueue(self, job: Job) -> None:
        """A command is accepted here (the place for checks that gate acceptance)."""
        if self._p["queue_mode"] == "queue" and self._producer.waiting() >= self._p["max_queue"]:
            self._status("rejected", job, reason="queue_full", detail=f"{self._p['max_queue']} commands waiting")
            return
        for item in (job, *job.sequence):
            self._status("accepted", item, **item.fields)
        self._producer.submit(job)

    def _on_stop(self, _msg: Empty) -> None:
        try:
            dropped = self._producer.stop()
            pending = self._limiter.clear()
            if pending is not None:
                dropped.append(pending)
            stopped = self._active_job
            if stopped is not None:
                stopped.cancelled = True
            self._start(StopPlayback(self._last, self.pipeline.joint_space, stop_s=self._p["stop_blend_s"]), None)
            self._status("stopped", stopped, dropped=len(dropped), dropped_ids=[j.id for j in dropped])
        except Exception as exc:
            self._status("error", reason="internal", detail=f"{type(exc).__name__}: {exc}"[:200])

    # ------------------------------------------------------------------ control loop
    def _start(self, playback: Any, job: Job | None) -> None:
        if job is None and self._active_job is not None:
            self._producer.ended()
        self._active = playback
        self._active_job = job
        self._t0 = self._now_s()
        self._t_served = 0.0
        self._playing_sent = False
        self._trajectory_sent = False
        if job is not None:
            self._begin(job)

    def _begin(self, job: Job) -> None:
        """A motion starts playing (afresh, or at a switch): the place for what follows a motion."""
        if self._recorder is not None:
            path = self._recorder.open(job.id, job.command.text)
            if path is not None:
                job.fields["bag"] = str(path)

    def _record(self, publisher: Any, msg: Any, stamp: Any) -> None:
        """Write a message just published into the bag of the motion playing (when recording)."""
        if self._recorder is not None and self._active_job is not None:
            ns = stamp.sec * 1_000_000_000 + stamp.nanosec
            self._recorder.write(self._active_job.id, publisher.topic_name, msg, ns)

    def _on_tick(self) -> None:
        try:
            self._tick()
        except Exception as exc:  # keep the control loop alive whatever happens
            self._status("error", reason="internal", detail=f"{type(exc).__name__}: {exc}"[:200])
        finally:
            try:
                self._flush_status()
            except Exception:
                pass

    def _tick(self) -> None:
        # One clock reading per tick: the sample is computed for it and stamped with it, so the
        # stamps describe the poses exactly even when a tick runs late.
        stamp_time = self.get_clock().now()
        now = stamp_time.nanoseconds * 1e-9
        released = self._limiter.poll(now)
        if released is not None:
            self._enqueue(released)
        self._catch_up(now)

        job = self._producer.pop_ready(preempt=self._p["queue_mode"] == "preempt", idle=self._active_job is None)
        if job is not None:  # a motion that starts afresh: blend into it from the current pose
            if self._active_job is not None and self._active_job is not job:
                self._active_job.stop_generating = True
                self._status("done", self._active_job, preempted_by=job.id)
            self._start(MotionPlayback(job.clip, self._last.pose(), speed=job.command.speed,
                                       blend_s=self._p["blend_s"]), job)
            self._producer.playing(job)

        t = now - self._t0
        if isinstance(self._active, MotionPlayback):
            self._follow_segments(t)
        sample = self._active.sample(t)
        served = sample is not None
        if sample is None:
            failed = getattr(getattr(self._active, "clip", None), "failed", None)
            if failed is not None:
                if self._active_job is not None and not self._active_job.cancelled:
                    self._status("rejected", self._active_job, reason="retarget_failed", detail=str(failed)[:300])
                self._start(HoldPlayback(self._last.pose()), None)
                sample = self._active.sample(0.0)
            else:
                # Underrun: the clip is still being retargeted. Pause its clock and hold the pose.
                self._t0 = now - self._t_served
                last = self._last
                sample = Sample(last.positions, last.base_position, last.base_quat_wxyz, last.base_valid,
                                np.zeros_like(last.positions), last.human_joints)
        else:
            self._t_served = max(t, 0.0)
        if served and self._active_job is not None and not self._playing_sent:
            self._playing_sent = True
            job = self._active_job
            switch = {"switch": job.switch, **({"switch_reason": job.switch_reason} if job.switch_reason else {})}
            if job.first_sample is None:  # a fresh start: this is its first JointState
                job.first_sample = (now, (now - job.received_s) * 1e3)
            else:  # a continuation: its first JointState came before its switch frame (the retargeter's cut)
                switch.update(switch_latency_ms=round((now - job.received_s) * 1e3, 1), switch_stamp_s=round(now, 4))
            stamp, latency = job.first_sample
            self._status("playing", job, latency_ms=round(latency, 1), stamp_s=round(stamp, 4),
                         duration_s=round(job.command_duration_s(self._active.clip.fps), 3), **switch, **job.fields)

        moving = self._active_job is not None or not isinstance(self._active, HoldPlayback)
        if moving or self._p["publish_when_idle"]:
            self._publish_sample(sample, now, stamp_time.to_msg())
        self._last = sample

        if self._active_job is not None and not self._trajectory_sent and self._active.clip.complete:
            self._trajectory_sent = True
            self._publish_trajectory()

        if self._active.finished(t):
            self._finish_active(sample)

    def _catch_up(self, now: float) -> None:
        """A tick that ran late (a loaded CPU) first publishes the samples of the control periods it
        missed, stamped at their own times, so the stream neither drops nor repeats a period (up to
        `CATCH_UP_S`: a sim clock that jumps is not replayed)."""
        dt, last = self._tick_dt, self._last_pub_s
        if last is None or not 1.5 * dt < now - last < self.CATCH_UP_S:
            return
        if not (self._active_job is not None or not isinstance(self._active, HoldPlayback)
                or self._p["publish_when_idle"]):
            return
        clock_type = self.get_clock().clock_type
        k = last + dt
        while now - k > 0.5 * dt:
            sample = self._active.sample(k - self._t0)
            if sample is None:
                return
            self._publish_sample(sample, k, Time(nanoseconds=int(round(k * 1e9)), clock_type=clock_type).to_msg())
            self._last = sample
            k += dt

    def _follow_segments(self, t: float) -> None:
        """Continuations join the playing clip: at each switch, the next job is the one playing."""
        play, job = self._active, self._active_job
        if job is None or job.session is None:
            return
        clip_t = play.clip_time(t)
        frame = clip_t * play.clip.fps
        upcoming = self._producer.next_segment(job.session, job)
        if upcoming is not None and upcoming.first_sample is None and clip_t >= upcoming.cut_s:
            # the continuation's first JointState: the first one its motion changes (the retargeter's
            # smoothing window starts the change a few frames before the new motion's switch frame)
            upcoming.first_sample = (self._t0 + t, (self._t0 + t - upcoming.received_s) * 1e3)
        current = self._producer.segment_at(job.session, frame)
        if current is None or current is job:
            return
        if frame < job.end_frame - 1e-6:
            self._status("done", job, preempted_by=current.id, **job.fields)
        else:
            self._status("done", job, duration_s=round(job.command_duration_s(play.clip.fps), 3), **job.fields)
        self._active_job = current
        self._playing_sent = False
        self._trajectory_sent = False
        play.change_speed(t, current.command.speed)
        self._producer.playing(current)
        self._begin(current)

    def _finish_active(self, sample: Sample) -> None:
        job = self._active_job
        if job is not None:
            self._status("done", job, duration_s=round(job.command_duration_s(self._active.clip.fps), 3),
                         retarget_ms=round(job.clip.retarget_ms, 1), **job.fields)
        self._start(HoldPlayback(sample.pose()), None)
        if job is not None and self._p["idle_behavior"] == "rest":
            self._start(BlendToPosePlayback(sample.pose(), self.pipeline.joint_space.rest,
                                            self.pipeline.joint_space, duration_s=self._p["rest_blend_s"]), None)

    def _publish_sample(self, sample: Sample, now_s: float, stamp: Any) -> None:
        self._last_pub_s = now_s
        msg = joint_state_msg(self._names, sample.positions, sample.velocities, stamp)
        self._js_pub.publish(msg)
        self._record(self._js_pub, msg, stamp)
        if self._cmd_pub is not None:
            self._cmd_pub.publish(msg)
            self._record(self._cmd_pub, msg, stamp)
        if self._pose_pub is not None and sample.base_valid:
            pose = pose_stamped_msg(sample.base_position, sample.base_quat_wxyz, stamp, self._p["frame_id"])
            self._pose_pub.publish(pose)
            self._record(self._pose_pub, pose, stamp)
        rate = self._p["marker_rate"]
        human = sample.human_joints
        if (self._marker_pub is not None and rate > 0 and human is not None
                and now_s - self._last_marker_s >= 1.0 / rate - 1e-6):
            self._last_marker_s = now_s
            parents = self._human_parents(human.shape[0])
            markers = skeleton_marker_array(human, parents, stamp, self._p["frame_id"])
            self._marker_pub.publish(markers)
            self._record(self._marker_pub, markers, stamp)

    def _publish_trajectory(self) -> None:
        if self._traj_pub is None:
            return
        play, job = self._active, self._active_job
        start = max(play.play_time(job.switch_frame / play.clip.fps), 0.0)
        times, positions, velocities = play.trajectory(from_s=start)
        # time_from_start 0 is when this motion started streaming, so the controller and the
        # JointState stream follow the same timeline.
        stamp = Time(nanoseconds=int((self._t0 + start) * 1e9), clock_type=self.get_clock().clock_type).to_msg()
        trajectory = joint_trajectory_msg(self._names, times, positions, velocities, stamp)
        self._traj_pub.publish(trajectory)
        self._record(self._traj_pub, trajectory, self.get_clock().now().to_msg())

    # ------------------------------------------------------------------ introspection and shutdown
    def status_snapshot(self) -> dict:
        """A small summary for tests and diagnostics."""
        prod = self._producer
        return status_payload("ready", waiting=prod.waiting(), generating=prod.generating is not None,
                              model_ready=prod.model_ready, workers_alive=prod.alive,
                              playing=self._active_job.id if self._active_job else None)

    def destroy_node(self) -> None:
        if not hasattr(self, "_producer"):  # construction failed half-way
            return super().destroy_node()
        self._producer.shutdown()
        if self._recorder is not None:
            self._recorder.close_all()  # an MCAP file is readable only once finished
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``momask_node`` executable."""
    from momask_ros.ros.main import run_node

    return run_node(MomaskNode, "momask_node", args)


if __name__ == "__main__":
    sys.exit(main())
