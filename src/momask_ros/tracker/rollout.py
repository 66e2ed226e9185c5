"""Offline closed loop: the tracker driving the tracker's own MuJoCo robot, to measure a reference.

Physics at the model's 1 ms step; the PD torque is recomputed every physics step from the latest policy
command (as the authors' sim2sim does); the policy runs at the tracker's rate. The robot starts standing
(base height from the spec, level, joints at the spec's start pose) or from a given `RobotState`.
Deterministic: MuJoCo and a single-threaded ONNX session give the same trajectory for the same inputs."""
from __future__ import annotations

import time
from dataclasses import dataclass

import mujoco
import numpy as np

from .controller import MeasuredState, PdCommand, Tracker, TrackerState
from .reference import ConditionedReference
from .rotations import quat_wxyz_to_rpy, rpy_to_quat_wxyz
from .spec import TrackerBundle, TrackerSpec


@dataclass(frozen=True, eq=False)
class RobotState:
    """The whole state of the robot: what a rehearsal starts from (a simulator knows it; a real robot's
    state estimator gives base pose and velocity). Joint order = the tracker's."""

    base_pos_world: np.ndarray  # (3,) [m]
    base_quat_wxyz: np.ndarray  # (4,)
    base_lin_vel_world: np.ndarray  # (3,) [m/s]
    base_ang_vel_body_rad_s: np.ndarray  # (3,) gyro, base frame
    joint_pos_rad: np.ndarray  # (J,)
    joint_vel_rad_s: np.ndarray  # (J,)

    @classmethod
    def standing(cls, spec: TrackerSpec, *, xy: tuple[float, float] = (0.0, 0.0), yaw_rad: float = 0.0) -> "RobotState":
        """At rest on the spec's start pose and standing height, at xy [m] facing yaw [rad]."""
        return cls(np.array([xy[0], xy[1], spec.standing_height_m]), rpy_to_quat_wxyz(np.array([0.0, 0.0, yaw_rad])),
                   np.zeros(3), np.zeros(3), np.array(spec.sim_start_pose_rad), np.zeros(spec.num_joints))


class TrackerSimulation:
    """The tracker's robot model in MuJoCo, free base, torque-controlled joints in the spec's order."""

    def __init__(self, bundle: TrackerBundle):
        self.spec = bundle.spec
        self.model = mujoco.MjModel.from_xml_path(str(bundle.model_path))
        self.data = mujoco.MjData(self.model)
        hinge = range(1, self.model.njnt)  # load_tracker checked: free base first, then the joints in order
        self._qpos = np.array([self.model.jnt_qposadr[j] for j in hinge])
        self._qvel = np.array([self.model.jnt_dofadr[j] for j in hinge])
        self.dt_s = float(self.model.opt.timestep)
        self.reset()

    def reset(self, state: RobotState | None = None) -> None:
        """Standing start (base at the spec's height, identity orientation, the spec's start pose), or
        `state`; the clock restarts at 0."""
        state = state if state is not None else RobotState.standing(self.spec)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:3] = state.base_pos_world
        self.data.qpos[3:7] = np.asarray(state.base_quat_wxyz) / np.linalg.norm(state.base_quat_wxyz)
        self.data.qpos[self._qpos] = state.joint_pos_rad
        self.data.qvel[:3] = state.base_lin_vel_world
        self.data.qvel[3:6] = state.base_ang_vel_body_rad_s
        self.data.qvel[self._qvel] = state.joint_vel_rad_s
        mujoco.mj_forward(self.model, self.data)

    def state(self) -> RobotState:
        """The current state (free joint: linear velocity in the world, angular velocity in the base)."""
        q, qd = self.joint_state()
        return RobotState(self.base_pos_world, self.base_quat_wxyz, self.data.qvel[:3].copy(),
                          self.data.qvel[3:6].copy(), q, qd)

    @property
    def time_s(self) -> float:
        return float(self.data.time)

    @property
    def base_pos_world(self) -> np.ndarray:
        return self.data.qpos[:3].copy()

    @property
    def base_quat_wxyz(self) -> np.ndarray:
        return self.data.qpos[3:7].copy()

    def joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        return self.data.qpos[self._qpos].copy(), self.data.qvel[self._qvel].copy()

    def measured(self) -> MeasuredState:
        """IMU-like state: the free joint's angular velocity is already in the base frame in MuJoCo."""
        q, qd = self.joint_state()
        return MeasuredState(joint_pos_rad=q, joint_vel_rad_s=qd, base_quat_wxyz=self.base_quat_wxyz,
                             base_ang_vel_body_rad_s=self.data.qvel[3:6].copy(),
                             base_height_m=float(self.data.qpos[2]))

    def step(self, torque_nm: np.ndarray) -> None:
        self.data.ctrl[:] = torque_nm
        mujoco.mj_step(self.model, self.data)

    def hold(self, command: PdCommand, steps: int) -> None:
        """Apply a PD command for `steps` physics steps, the torque recomputed at each."""
        for _ in range(steps):
            q, qd = self.joint_state()
            self.step(command.torque_nm(q, qd))


def decimation(tracker: Tracker, sim: TrackerSimulation) -> int:
    """Physics steps per policy tick."""
    return max(1, int(round(tracker.policy_period_s / sim.dt_s)))


def reanchored_deviation_m(times_s: np.ndarray, pos: np.ndarray, quat: np.ndarray, ref_pos: np.ndarray,
                           ref_quat: np.ndarray, every_s: float) -> float:
    """Largest horizontal robot-reference distance [m] when the reference is re-anchored (moved rigidly in
    the ground plane onto the robot's xy and heading) every every_s [s], as each new command is.

    Re-anchoring does not change what the policy sees (its reference is in the root frame), so the
    robot's path is the same; only the reference it is compared with moves."""
    yaw, ref_yaw = quat_wxyz_to_rpy(quat)[:, 2], quat_wxyz_to_rpy(ref_quat)[:, 2]
    worst = 0.0
    for start in np.arange(times_s[0], times_s[-1] + 1e-9, every_s):
        sel = (times_s >= start - 1e-9) & (times_s < start + every_s - 1e-9)
        if not sel.any():
            continue
        k = int(np.argmax(sel))
        delta = yaw[k] - ref_yaw[k]
        c, s = np.cos(delta), np.sin(delta)
        moved = (ref_pos[sel, :2] - ref_pos[k, :2]) @ np.array([[c, s], [-s, c]]) + pos[k, :2]
        worst = max(worst, float(np.linalg.norm(pos[sel, :2] - moved, axis=1).max()))
    return worst


@dataclass(frozen=True, eq=False)
class RolloutResult:
    """Per-control-step logs (K steps) and summary figures of one closed-loop run."""

    times_s: np.ndarray  # (K,)
    joint_pos_rad: np.ndarray  # (K, J)
    ref_joint_pos_rad: np.ndarray  # (K, J)
    base_pos_world: np.ndarray  # (K, 3)
    ref_base_pos_world: np.ndarray  # (K, 3)
    fell: bool
    fall_time_s: float | None
    fall_reason: str | None
    mean_joint_error_rad: float  # mean |q - q_ref| over steps and joints
    base_height_error_m: float  # mean |z - z_ref|
    path_deviation_m: float  # largest horizontal distance between the robot's and the reference's base
    final_path_deviation_m: float
    realtime_factor: float  # simulated seconds per wall-clock second (physics + policy)
    policy_ms_per_call: float  # mean wall time of a control tick that ran the policy
    time_stretch: float  # of the reference (1: played at its own speed)
    base_quat_wxyz: np.ndarray | None = None  # (K, 4)
    ref_base_quat_wxyz: np.ndarray | None = None  # (K, 4)

    def reanchored_path_deviation_m(self, every_s: float = 2.0) -> float:
        """`path_deviation_m` with the reference re-anchored to the robot every every_s [s]."""
        if self.base_quat_wxyz is None or self.ref_base_quat_wxyz is None or self.times_s.size == 0:
            return self.path_deviation_m
        return reanchored_deviation_m(self.times_s, self.base_pos_world, self.base_quat_wxyz,
                                      self.ref_base_pos_world, self.ref_base_quat_wxyz, every_s)

    def summary(self) -> str:
        status = f"fell at {self.fall_time_s:.2f} s ({self.fall_reason})" if self.fell else "stayed up"
        return (f"{status}; joint error {self.mean_joint_error_rad:.3f} rad, height error "
                f"{self.base_height_error_m:.3f} m, path deviation {self.path_deviation_m:.2f} m, "
                f"{self.realtime_factor:.1f}x real time, policy {self.policy_ms_per_call:.2f} ms")


def rollout(tracker: Tracker, reference: ConditionedReference | None, duration_s: float, *,
            simulation: TrackerSimulation | None = None, anchor_to_robot: bool = True,
            stop_on_fall: bool = True, start: RobotState | None = None) -> RolloutResult:
    """Run `reference` (None: stand) through `tracker` on the tracker's robot for duration_s [s].

    Args:
        tracker: the controller; it is reset first.
        reference: what to track, started at simulated time 0.
        duration_s: simulated time [s].
        simulation: reuse a loaded model (it is reset); default loads the bundle's model.
        anchor_to_robot: re-anchor the reference's xy and heading to the robot's start pose (the policy
            ignores both; this makes the path deviation meaningful).
        stop_on_fall: end the run at the first fall.
        start: the robot's state at time 0; default standing at the origin.
    """
    sim = simulation if simulation is not None else TrackerSimulation(tracker.bundle)
    sim.reset(start)
    tracker.reset()
    if reference is not None:
        if anchor_to_robot:
            reference.reanchor(0.0, sim.base_pos_world, sim.base_quat_wxyz)
        tracker.set_reference(reference, start_s=0.0)
    spec = tracker.spec
    every = decimation(tracker, sim)
    n_ticks = int(round(duration_s / sim.dt_s)) // every
    logs: dict[str, list] = {k: [] for k in ("t", "q", "q_ref", "pos", "pos_ref", "quat", "quat_ref")}
    standing_pos = np.array([*sim.base_pos_world[:2], spec.standing_height_m])
    standing_quat = rpy_to_quat_wxyz(np.array([0.0, 0.0, quat_wxyz_to_rpy(sim.base_quat_wxyz)[2]]))
    policy_wall = 0.0
    wall_start = time.perf_counter()
    for i in range(n_ticks):
        t = i * every * sim.dt_s
        measured = sim.measured()
        tick = time.perf_counter()
        command = tracker.step(t, measured)
        policy_wall += time.perf_counter() - tick
        sample = tracker.last_sample
        logs["t"].append(t)
        logs["q"].append(measured.joint_pos_rad)
        logs["q_ref"].append(sample.joint_pos_rad if sample is not None else spec.default_pose_rad)
        logs["pos"].append(sim.base_pos_world)
        logs["pos_ref"].append(sample.base_pos_world if sample is not None else standing_pos)
        logs["quat"].append(measured.base_quat_wxyz)
        logs["quat_ref"].append(sample.base_quat_wxyz if sample is not None else standing_quat)
        if stop_on_fall and tracker.state is TrackerState.FALLEN:
            break
        sim.hold(command, every)
    wall = time.perf_counter() - wall_start
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in logs.items()}
    horizontal = np.linalg.norm(arrays["pos"][:, :2] - arrays["pos_ref"][:, :2], axis=1)
    return RolloutResult(
        times_s=arrays["t"], joint_pos_rad=arrays["q"], ref_joint_pos_rad=arrays["q_ref"],
        base_pos_world=arrays["pos"], ref_base_pos_world=arrays["pos_ref"],
        fell=tracker.state is TrackerState.FALLEN, fall_time_s=tracker.fall_time_s, fall_reason=tracker.fall_reason,
        mean_joint_error_rad=float(np.mean(np.abs(arrays["q"] - arrays["q_ref"]))),
        base_height_error_m=float(np.mean(np.abs(arrays["pos"][:, 2] - arrays["pos_ref"][:, 2]))),
        path_deviation_m=float(horizontal.max()), final_path_deviation_m=float(horizontal[-1]),
        realtime_factor=float(sim.time_s / wall) if wall > 0 else float("inf"),
        policy_ms_per_call=1e3 * policy_wall / max(len(logs["t"]), 1),
        time_stretch=reference.time_stretch if reference is not None else 1.0,
        base_quat_wxyz=arrays["quat"], ref_base_quat_wxyz=arrays["quat_ref"],
    )
