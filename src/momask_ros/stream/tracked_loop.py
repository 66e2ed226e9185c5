"""The robot end of the closed loop in one process, lock-step: what ``momask_tracker`` and ``momask_sim``
(``clock: lock_step``) do over ROS, without DDS, for benchmarks and `make demo`'s tracked replay.

The stream's samples (a conductor's ticks, or a recorded JointState + base pose stream) go into the
tracker's live reference conditioning (`momask_ros.tracker.LiveReference`) as they are stamped; the
node's statuses begin and end its motions there (``playing``: blend in and re-anchor on the robot;
``done`` not preempted, ``stopped``: back to standing). Each control period the tracker answers the
simulated robot's measured state (joints, pelvis IMU, base height) with PD targets, followed
``reference_delay_s`` behind the robot's clock as the tracker node does, and the tracked simulator
(`momask_ros.physics.simulator.Simulator`, the tracker's own robot model, 1 ms physics) advances exactly
one period. The clock is the simulator's [s]; stream stamps are mapped onto it by ``t0_s``.

`TrackedSimulation` is that simulator as the tracker's offline loops see a simulation (reset to a state,
the measured state, a PD command held for some steps): a rehearsal runs on a copy of it, so what it
predicts is what the live simulator does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import mujoco
import numpy as np

from momask_ros.physics.simulator import SimOptions, Simulator
from momask_ros.tracker import LiveReference, MeasuredState, PdCommand, Tracker, TrackerBundle, TrackerState
from momask_ros.tracker.live_reference import REFERENCE_DELAY_S
from momask_ros.tracker.node_status import reference_event
from momask_ros.tracker.rollout import RobotState
from momask_ros.tracker.spec import check_joint_names

__all__ = ["TrackedLoop", "TrackedReport", "TrackedSimulation", "replay_stream"]


@dataclass
class TrackedReport:
    """What happened to the tracked robot: its falls (the tracker's detection and the simulator's) and
    how closely it followed the reference while a motion played."""

    fell: bool = False
    fall_time_s: float | None = None
    fall_reason: str | None = None
    sim_fell: bool = False
    simulated_s: float = 0.0
    errors: list[float] = field(default_factory=list)  # mean |q - q_ref| per period with a motion [rad]
    base_height_m: float = float("nan")
    tilt_rad: float = float("nan")

    @property
    def mean_joint_error_rad(self) -> float:
        return float(np.mean(self.errors)) if self.errors else float("nan")

    @property
    def standing(self) -> bool:
        """Up and not fallen at the end."""
        return not (self.fell or self.sim_fell)


class TrackedSimulation:
    """The tracked `Simulator` of a tracker's robot model (free base, the tracker's PD torques every 1 ms
    step, the pelvis IMU), with the interface of `momask_ros.tracker.rollout.TrackerSimulation`: what the
    live robot is in this project's simulation, for a rehearsal or a closed loop to run on."""

    def __init__(self, bundle: TrackerBundle) -> None:
        from momask_ros.robot.model import load_robot

        spec = self.spec = bundle.spec
        self.sim = Simulator(load_robot("g1", description=bundle.model_path), SimOptions(mode="tracked"))
        check_joint_names(spec.joint_names, self.sim.joint_names, "tracked robot")
        self.sim.set_start_state(spec.sim_start_pose_rad, [0.0, 0.0, spec.standing_height_m], [1.0, 0.0, 0.0, 0.0])
        joint = self.sim.model.body_jntadr[self.sim.base_body_id]
        self._qadr, self._vadr = int(self.sim.model.jnt_qposadr[joint]), int(self.sim.model.jnt_dofadr[joint])
        self.dt_s = self.sim.timestep_s

    @property
    def model(self):
        return self.sim.model

    @property
    def data(self):
        return self.sim.data

    @property
    def time_s(self) -> float:
        return self.sim.time_s

    def reset(self, state: RobotState | None = None) -> None:
        """The standing start (time 0), or `state` (joints in the tracker's order = the simulator's)."""
        self.sim.reset()
        if state is not None:
            d, q, v = self.sim.data, self._qadr, self._vadr
            quat = np.asarray(state.base_quat_wxyz, dtype=np.float64)
            d.qpos[q:q + 3], d.qpos[q + 3:q + 7] = state.base_pos_world, quat / np.linalg.norm(quat)
            d.qvel[v:v + 3], d.qvel[v + 3:v + 6] = state.base_lin_vel_world, state.base_ang_vel_body_rad_s
            d.qpos[self.sim.qpos_index], d.qvel[self.sim.dof_index] = state.joint_pos_rad, state.joint_vel_rad_s
            mujoco.mj_forward(self.sim.model, d)

    def state(self) -> RobotState:
        """The whole state now (what a measured state source reports of the live robot)."""
        d, q, v = self.sim.data, self._qadr, self._vadr
        return RobotState(d.qpos[q:q + 3].copy(), d.qpos[q + 3:q + 7].copy(), d.qvel[v:v + 3].copy(),
                          d.qvel[v + 3:v + 6].copy(), self.sim.joint_positions(), self.sim.joint_velocities())

    @property
    def base_pos_world(self) -> np.ndarray:
        return self.sim.data.qpos[self._qadr:self._qadr + 3].copy()

    @property
    def base_quat_wxyz(self) -> np.ndarray:
        return self.sim.data.qpos[self._qadr + 3:self._qadr + 7].copy()

    def measured(self) -> MeasuredState:
        """What the robot reports: joints, the pelvis IMU's orientation and gyro, the base height."""
        sim = self.sim
        imu = sim.imu()
        return MeasuredState(joint_pos_rad=sim.joint_positions(), joint_vel_rad_s=sim.joint_velocities(),
                             base_quat_wxyz=imu.quat_wxyz, base_ang_vel_body_rad_s=imu.ang_vel_rad_s,
                             base_height_m=float(sim.base_pose()[0][2]))

    def hold(self, command: PdCommand, steps: int, each=None) -> None:
        """Apply a PD command for `steps` physics steps (``each()`` after every one)."""
        self.sim.command_pd(command.target_rad, command.kp, command.kd, command.torque_limit_nm)
        for _ in range(steps):
            self.sim.step()
            if each is not None:
                each()


class TrackedLoop:
    """The tracker and the tracked simulator of one robot, stepped one control period at a time.

    Args:
        bundle: the tracker folder (`momask_ros.tracker.load_tracker`); its robot model is simulated.
        policy_rate_hz: the tracker's policy rate (default: the spec's); one period per `step`.
        reference_delay_s: the reference is followed this far behind the robot's clock [s].
        t0_s: the stream's clock at the simulator's time 0 [s] (stamps are mapped by it).
        video: an MP4 of the simulation (`momask_ros.physics.video.VideoRecorder`, every frame at
            ``video_fps`` and ``video_size`` [px]), written by `close`.
    """

    def __init__(self, bundle: TrackerBundle, *, policy_rate_hz: float | None = None,
                 reference_delay_s: float = REFERENCE_DELAY_S, t0_s: float = 0.0, video: str | Path | None = None,
                 video_fps: float = 20.0, video_size: tuple[int, int] = (640, 360)) -> None:
        spec = self.spec = bundle.spec
        self.simulation = TrackedSimulation(bundle)
        self.sim = self.simulation.sim
        self.tracker = Tracker(bundle, policy_rate_hz=policy_rate_hz)
        self.reference = LiveReference.from_spec(spec, bundle.joint_range_rad)
        self.delay_s, self.t0_s = float(reference_delay_s), float(t0_s)
        self.period_steps = max(1, int(round(self.tracker.policy_period_s / self.sim.timestep_s)))
        self.report = TrackedReport()
        self._orders: dict[tuple[str, ...], np.ndarray] = {}
        self._recorder = None
        if video is not None:
            from momask_ros.physics.video import VideoRecorder

            self._recorder = VideoRecorder(self.sim, video, fps=video_fps, width=video_size[0], height=video_size[1],
                                           block=True)

    @property
    def time_s(self) -> float:
        return self.sim.time_s

    def _order(self, names: Sequence[str]) -> np.ndarray:
        key = tuple(names)
        if key not in self._orders:
            check_joint_names(sorted(self.spec.joint_names), sorted(key), "stream")
            self._orders[key] = np.array([key.index(j) for j in self.spec.joint_names])
        return self._orders[key]

    # ------------------------------------------------------------------ the stream in
    def push(self, stamp_s: float, names: Sequence[str], positions: np.ndarray, base_position: np.ndarray,
             base_quat_wxyz: np.ndarray, *, velocities: np.ndarray | None = None,
             base_linear_velocity: np.ndarray | None = None, base_angular_velocity: np.ndarray | None = None) -> None:
        """One stream sample (the node's JointState, base pose and twist), stamped on the stream's clock."""
        order = self._order(names)
        self.reference.push(stamp_s - self.t0_s, base_position, base_quat_wxyz, np.asarray(positions)[order],
                            base_lin_vel_world=base_linear_velocity, base_ang_vel_world=base_angular_velocity,
                            joint_vel_rad_s=None if velocities is None or len(velocities) == 0
                            else np.asarray(velocities)[order])

    def status(self, state: str, fields: Mapping[str, Any]) -> None:
        """A node status, as the tracker node reads it: motions begin and end on the reference."""
        event = reference_event(state, fields, max(self.time_s - self.delay_s, 0.0), self.t0_s)
        if event is not None and event[0] == "begin" and self.tracker.accepts_commands():
            if self.tracker.reference is not self.reference:
                self.tracker.set_reference(self.reference, start_s=self.delay_s)
            self.reference.begin(event[1])
            position, quat = self.sim.base_pose()
            self.reference.reanchor(position, quat)
        elif event is not None and event[0] == "end":
            self.reference.end(event[1])

    # ------------------------------------------------------------------ the robot
    def step(self) -> None:
        """One control period: the tracker answers the measured state, physics runs the period."""
        sim, report = self.sim, self.report
        measured = self.simulation.measured()
        command = self.tracker.step(sim.time_s, measured)
        if self.tracker.state is TrackerState.FALLEN and not report.fell:
            report.fell, report.fall_time_s = True, self.tracker.fall_time_s
            report.fall_reason = self.tracker.fall_reason
        sample = self.tracker.last_sample
        if sample is not None and sample.phase != "standing":
            report.errors.append(float(np.mean(np.abs(measured.joint_pos_rad - sample.joint_pos_rad))))
        self.simulation.hold(command, self.period_steps,
                             None if self._recorder is None else self._recorder.maybe_capture)
        report.sim_fell = report.sim_fell or sim.fallen
        report.simulated_s = sim.time_s
        report.base_height_m, report.tilt_rad = float(sim.base_pose()[0][2]), sim.tilt_rad()

    def close(self) -> Path | None:
        """Finish the video (if any); its path."""
        return self._recorder.close() if self._recorder is not None else None


def replay_stream(loop: TrackedLoop, stamps_s: np.ndarray, names: Sequence[str], positions: np.ndarray,
                  velocities: np.ndarray | None, base_stamps_s: np.ndarray, base_position: np.ndarray,
                  base_quat_wxyz: np.ndarray, *, begin_s: float, end_s: float, settle_s: float = 2.0) -> TrackedReport:
    """A recorded stream (JointStates and base poses by stamp, as received) played into ``loop`` as it
    would arrive: the motion begins at stream time ``begin_s`` and ends at ``end_s``, then ``settle_s``
    more of standing. Stamps are on the stream's clock (``loop.t0_s`` maps them)."""
    base_at = np.clip(np.searchsorted(base_stamps_s, stamps_s), 0, max(len(base_stamps_s) - 1, 0))
    k, begun, ended = 0, False, False
    while loop.time_s + loop.t0_s < end_s + settle_s:
        now = loop.time_s + loop.t0_s
        while k < len(stamps_s) and stamps_s[k] <= now + 1e-9:
            if len(base_stamps_s):
                loop.push(stamps_s[k], names, positions[k], base_position[base_at[k]], base_quat_wxyz[base_at[k]],
                          velocities=None if velocities is None else velocities[k])
            k += 1
        if not begun and now >= begin_s - 1e-9:
            begun = True
            loop.status("playing", {"stamp_s": begin_s})
        if not ended and now >= end_s - 1e-9:
            ended = True
            loop.status("done", {})
        loop.step()
    return loop.report
