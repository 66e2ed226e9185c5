"""Offline closed loop: the tracker driving the tracker's own MuJoCo robot, to measure a reference.

Physics at the model's 1 ms step; the PD torque is recomputed every physics step from the latest policy
command (as the authors' sim2sim does); the policy runs at the tracker's rate. The robot starts standing
(base height from the spec, level, joints at the spec's start pose). Deterministic: MuJoCo and a
single-threaded ONNX session give the same trajectory for the same inputs."""
from __future__ import annotations

import time
from dataclasses import dataclass

import mujoco
import numpy as np

from .controller import MeasuredState, Tracker, TrackerState
from .reference import ConditionedReference
from .spec import TrackerBundle


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

    def reset(self) -> None:
        """Standing start: base at the spec's height, identity orientation, the spec's start pose."""
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:7] = [0.0, 0.0, self.spec.standing_height_m, 1.0, 0.0, 0.0, 0.0]
        self.data.qpos[self._qpos] = self.spec.sim_start_pose_rad
        mujoco.mj_forward(self.model, self.data)

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

    def summary(self) -> str:
        status = f"fell at {self.fall_time_s:.2f} s ({self.fall_reason})" if self.fell else "stayed up"
        return (f"{status}; joint error {self.mean_joint_error_rad:.3f} rad, height error "
                f"{self.base_height_error_m:.3f} m, path deviation {self.path_deviation_m:.2f} m, "
                f"{self.realtime_factor:.1f}x real time, policy {self.policy_ms_per_call:.2f} ms")


def rollout(tracker: Tracker, reference: ConditionedReference | None, duration_s: float, *,
            simulation: TrackerSimulation | None = None, anchor_to_robot: bool = True,
            stop_on_fall: bool = True) -> RolloutResult:
    """Run `reference` (None: stand) through `tracker` on the tracker's robot for duration_s [s].

    Args:
        tracker: the controller; it is reset first.
        reference: what to track, started at simulated time 0.
        duration_s: simulated time [s].
        simulation: reuse a loaded model (it is reset); default loads the bundle's model.
        anchor_to_robot: re-anchor the reference's xy and heading to the robot's start pose (the policy
            ignores both; this makes the path deviation meaningful).
        stop_on_fall: end the run at the first fall.
    """
    sim = simulation if simulation is not None else TrackerSimulation(tracker.bundle)
    sim.reset()
    tracker.reset()
    if reference is not None:
        if anchor_to_robot:
            reference.reanchor(0.0, sim.base_pos_world, sim.base_quat_wxyz)
        tracker.set_reference(reference, start_s=0.0)
    spec = tracker.spec
    decimation = max(1, int(round(tracker.policy_period_s / sim.dt_s)))
    n_steps = int(round(duration_s / sim.dt_s))
    logs: dict[str, list] = {k: [] for k in ("t", "q", "q_ref", "pos", "pos_ref")}
    standing_pos = np.array([0.0, 0.0, spec.standing_height_m])
    policy_wall, command = 0.0, None
    wall_start = time.perf_counter()
    for i in range(n_steps):
        if i % decimation == 0:
            t = i * sim.dt_s
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
            if stop_on_fall and tracker.state is TrackerState.FALLEN:
                break
        q, qd = sim.joint_state()
        sim.step(command.torque_nm(q, qd))
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
    )
