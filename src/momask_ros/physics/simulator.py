"""A MuJoCo physics simulation of the robot (no ROS; `sim_node` wraps it).

The model is the robot's own description (the one the retargeter uses, or a tracker's robot model) in a
model from `momask_ros.physics.sim_model` (floor, drives, an IMU on the base body). The base is in one of four
modes:

* ``fixed``: the free joint removed, the pelvis welded where the rest pose stands;
* ``harness``: a mocap body follows the commanded base pose and a soft weld pulls the pelvis to it (how
  Isaac users replay kinematic motion with physics on the joints);
* ``free``: full physics; `fallen` says when the pelvis has dropped or tipped over;
* ``tracked``: full physics, the joints driven by torque motors from a PD command (`command_pd`: targets,
  per-joint kp, kd and torque limits) recomputed every physics step, torque = clip(kp (q* - q) - kd q',
  +-limit), as a real robot's motor drivers and a tracking policy's sim2sim do.

In the first three modes each driven joint has a MuJoCo position actuator (PD gains and an effort clamp
from `momask_ros.robot.actuation`; velocity feed-forward through the set-point, ctrl = q* + kd/kp v*;
implicit-in-velocity integration keeps stiff drives stable at the 2 ms step), commanded by
`command_joints` (by name, as Isaac's /joint_command) or `follow_trajectory` (time-parameterised
interpolation as ros2_control's joint_trajectory_controller: linear with positions only, cubic Hermite
with velocities, starting from the current set-point when the first point is later than the start).
No self-collision there unless the profile's ``sim.self_collision`` asks for it (simulators ship that
way, and descriptions often overlap at the rest pose).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import mujoco
import numpy as np
from scipy.interpolate import CubicHermiteSpline, make_interp_spline

from momask_ros.robot.actuation import robot_actuation
from momask_ros.robot.model import Robot

from .sim_model import DRIVE_PREFIX, IMU_SENSORS, ImuReading, PdDrive, build_sim_model

MODES = ("fixed", "harness", "free", "tracked")


class SimError(ValueError):
    """A command the simulator cannot apply (unknown joint, wrong sizes, non-finite values, bad times)."""


@dataclass(frozen=True)
class SimOptions:
    """Simulator settings.

    Attributes:
        mode: fixed | harness | free | tracked (module docstring).
        timestep_s: physics step; None = the profile's ``sim.timestep_s`` (not when tracked), else the
            description's.
        harness_timeconst_s: time constant of the soft harness weld (smaller = stiffer; MuJoCo keeps it
            >= 2 timesteps). Stiff by default: a soft harness lets foot-floor contacts bend the legs.
        fall_height_fraction: free and tracked modes: fallen when the pelvis is below this fraction of its
            start height...
        fall_tilt_rad: ...or tilted more than this from upright.
        command_hold_s: streamed set-points (and the harness target) move on with their velocity for at
            most this long after a command, so a 50 Hz stream drives the 500 Hz physics smoothly; after
            it they hold (a stalled stream stops the robot, it does not run away).
        friction: sliding friction of every collision geom (MuJoCo takes the larger of a pair's two), None =
            the description's (always when tracked). 0.5 is Isaac Sim's default ground material; at MuJoCo's default 1.0 the foot sliding a kinematic motion has (several mm per sample) is resisted
            so hard in harness mode that it bends the stance hip by 0.2 rad.
        command_blend_s: a new streamed command does not jump the set-point (or the harness target): the
            gap to where the previous one had got fades out over this time (one 50 Hz period), since a
            stiff drive turns every step in its set-point into a torque spike.
    """

    mode: str = "harness"
    timestep_s: float | None = None
    harness_timeconst_s: float = 0.005
    fall_height_fraction: float = 0.6
    fall_tilt_rad: float = 1.0
    command_hold_s: float = 0.05
    command_blend_s: float = 0.02
    friction: float | None = 0.5


class _Trajectory:
    """A JointTrajectory in simulator time: positions (and velocities) of some driven joints."""

    def __init__(self, columns: np.ndarray, start_s: float, times: np.ndarray, positions: np.ndarray,
                 velocities: np.ndarray | None) -> None:
        self.columns, self.start_s, self.end_s = columns, start_s, start_s + float(times[-1])
        self.final = positions[-1]
        if len(times) == 1:
            self.spline = None
        elif velocities is not None:
            self.spline = CubicHermiteSpline(times, positions, velocities, axis=0)
        else:
            self.spline = make_interp_spline(times, positions, k=1, axis=0)

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        u = t - self.start_s
        if self.spline is None or u >= self.end_s - self.start_s:
            return self.final, np.zeros_like(self.final)
        u = max(u, 0.0)
        return self.spline(u), self.spline.derivative()(u)


class Simulator:
    """Physics of one robot (module docstring). Not thread-safe: one owner steps it.

    Args:
        robot: from `load_robot` (its description, profile, rest pose).
        options: `SimOptions`.
    """

    def __init__(self, robot: Robot, options: SimOptions = SimOptions()) -> None:
        if options.mode not in MODES:
            raise SimError(f"mode must be one of {', '.join(MODES)}, got {options.mode!r}")
        self.robot = robot
        self.options = options
        self.actuation = robot_actuation(robot)
        self.model = build_sim_model(robot, self.actuation, mode=options.mode,
                                     harness_timeconst_s=options.harness_timeconst_s, friction=options.friction,
                                     timestep_s=options.timestep_s)
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.joint_names = robot.joint_names
        jids = [m.joint(n).id for n in self.joint_names]
        self.qpos_index = np.array([m.jnt_qposadr[j] for j in jids])
        self.dof_index = np.array([m.jnt_dofadr[j] for j in jids])
        self.actuator_index = np.array([m.actuator(f"{DRIVE_PREFIX}{n}").id for n in self.joint_names])
        sensors = {k: m.sensor(name).id for k, name in IMU_SENSORS.items()}
        self._imu = {k: slice(m.sensor_adr[i], m.sensor_adr[i] + m.sensor_dim[i]) for k, i in sensors.items()}
        self._column = {n: i for i, n in enumerate(self.joint_names)}
        self.base_body_id = m.body(robot.profile.base_body).id
        self._free = [j for j in range(m.njnt) if int(m.jnt_type[j]) == int(mujoco.mjtJoint.mjJNT_FREE)
                      and m.jnt_bodyid[j] == self.base_body_id]
        self._mocap = int(m.body_mocapid[m.body("momask_harness").id]) if options.mode == "harness" else -1
        self._ratio = self.actuation.kd / self.actuation.kp
        b = robot.base_qpos_index
        self._start_positions = robot.rest_positions.copy()
        self._start_base = robot.rest_qpos[b:b + 7].copy()
        self.rest_base_height = float(self._start_base[2])
        self.reset()

    # ------------------------------------------------------------------ state
    @property
    def tracked(self) -> bool:
        return self.options.mode == "tracked"

    def set_start_state(self, joint_positions: Sequence[float] | None = None,
                        base_position: Sequence[float] | None = None,
                        base_quat_wxyz: Sequence[float] | None = None) -> None:
        """Where `reset` puts the robot (default: the profile's rest pose), e.g. a tracker's standing start
        (joint positions in `joint_names` order, base pose in the world); then resets, keeping the time."""
        if joint_positions is not None:
            q = np.asarray(joint_positions, float).reshape(-1)
            if q.shape != self._start_positions.shape or not np.all(np.isfinite(q)):
                raise SimError(f"start pose needs {self._start_positions.size} finite joint positions")
            self._start_positions = q.copy()
        for values, part, size in ((base_position, slice(0, 3), 3), (base_quat_wxyz, slice(3, 7), 4)):
            if values is not None:
                v = np.asarray(values, float).reshape(-1)
                if v.shape != (size,) or not np.all(np.isfinite(v)):
                    raise SimError(f"start base pose needs {size} finite values, got {values}")
                self._start_base[part] = v
        self._start_base[3:7] /= np.linalg.norm(self._start_base[3:7])
        self.rest_base_height = float(self._start_base[2])
        self.reset(keep_time=True)

    def reset(self, keep_time: bool = False) -> None:
        """Start pose, zero velocity, set-points there, no PD command or push; time 0 unless `keep_time`
        (a reset while other nodes run on this clock must not send it backwards)."""
        m, d = self.model, self.data
        now = float(d.time)
        mujoco.mj_resetData(m, d)
        if keep_time:
            d.time = now
        d.qpos[self.qpos_index] = self._start_positions
        if self._free:
            adr = m.jnt_qposadr[self._free[0]]
            d.qpos[adr:adr + 7] = self._start_base
        self.pd: PdDrive | None = None
        self._synced_s = math.nan
        self._push_until_s = -math.inf
        self.target_positions = self._start_positions.copy()
        self.target_velocities = np.zeros(len(self.joint_names))
        self._trajectory: _Trajectory | None = None
        self._command_s = 0.0          # when the last set-points / base target arrived (sim time)
        self._base_s = 0.0
        self._base_target = self._start_base[:3].copy()
        self._base_velocity = np.zeros(3)
        self._joint_offset = np.zeros(len(self.joint_names))  # continuity offsets, fading over command_blend_s
        self._base_offset = np.zeros(3)
        mujoco.mj_forward(m, d)

    @property
    def time_s(self) -> float:
        return float(self.data.time)

    @property
    def timestep_s(self) -> float:
        return float(self.model.opt.timestep)

    # ------------------------------------------------------------------ commands
    def _columns(self, names: Sequence[str]) -> np.ndarray:
        unknown = [n for n in names if n not in self._column]
        if unknown:
            raise SimError(f"unknown joint(s) {unknown[:5]}; the robot drives {len(self._column)} joints "
                           f"({', '.join(self.joint_names[:3])}, ...)")
        if len(set(names)) != len(names):
            raise SimError("duplicate joint names in the command")
        return np.array([self._column[n] for n in names], dtype=int)

    def command_joints(self, names: Sequence[str], positions: Sequence[float],
                       velocities: Sequence[float] | None = None) -> None:
        """Set-points by joint name (other joints keep theirs); cancels a running trajectory."""
        self._position_drives()
        cols = self._columns(list(names))
        pos = np.asarray(positions, float).reshape(-1)
        if pos.shape != (len(cols),) or not np.all(np.isfinite(pos)):
            raise SimError(f"need {len(cols)} finite positions, got {pos.shape[0]}")
        vel = np.zeros(len(cols)) if velocities is None or len(velocities) == 0 else np.asarray(velocities, float)
        if vel.shape != (len(cols),) or not np.all(np.isfinite(vel)):
            raise SimError(f"velocities must be empty or {len(cols)} finite values")
        before = self._streamed_target() if self._trajectory is None else self.target_positions.copy()
        self._hold_targets()
        lims = self.robot.position_limits[cols]
        self.target_positions[cols] = np.clip(pos, lims[:, 0], lims[:, 1])
        self.target_velocities[cols] = vel
        self._command_s = self.time_s
        self._trajectory = None
        self._joint_offset = before - self.target_positions

    def _position_drives(self) -> None:
        if self.tracked:
            raise SimError("tracked mode takes PD commands (targets with gains), not joint set-points")

    def command_pd(self, target_rad: Sequence[float], kp: Sequence[float], kd: Sequence[float],
                   torque_limit_nm: Sequence[float]) -> None:
        """Tracked mode: drive the joints by PD (one value per joint, `joint_names` order: targets [rad],
        kp [N m/rad], kd [N m s/rad], torque limits [N m]) from the next physics step until the next
        command. Before the first command the motors give no torque."""
        if not self.tracked:
            raise SimError(f"PD commands need mode 'tracked' (this simulator is {self.options.mode!r})")
        try:
            self.pd = PdDrive.checked(len(self.joint_names), target_rad, kp, kd, torque_limit_nm)
        except ValueError as exc:
            raise SimError(str(exc)) from None

    def push(self, force_world_n: Sequence[float], torque_world_nm: Sequence[float] = (0.0, 0.0, 0.0),
             duration_s: float = 0.2) -> None:
        """Apply a wrench to the base body (world frame, at its origin) for `duration_s` of simulated time."""
        f, tq = np.asarray(force_world_n, float), np.asarray(torque_world_nm, float)
        if f.shape != (3,) or tq.shape != (3,) or not (np.all(np.isfinite(f)) and np.all(np.isfinite(tq))):
            raise SimError("a push needs a finite force (3) and torque (3)")
        if not (math.isfinite(duration_s) and duration_s > 0):
            raise SimError(f"push duration must be > 0 s, got {duration_s}")
        self.data.xfrc_applied[self.base_body_id] = np.concatenate([f, tq])
        self._push_until_s = self.time_s + float(duration_s)

    def _fade(self, since_s: float) -> float:
        blend = self.options.command_blend_s
        return max(0.0, 1.0 - (self.time_s - since_s) / blend) if blend > 0 else 0.0

    def _streamed_target(self) -> np.ndarray:
        """The set-point of a streamed command now: extrapolated, plus the fading continuity offset."""
        return self._extrapolated() + self._fade(self._command_s) * self._joint_offset

    def _hold_targets(self) -> None:
        """Freeze the extrapolated set-points of the previous command (a new one replaces some of them)."""
        if self._trajectory is None:
            self.target_positions = self._extrapolated()
            self.target_velocities = np.where(self.time_s - self._command_s < self.options.command_hold_s,
                                              self.target_velocities, 0.0)
            self._command_s = self.time_s

    def _extrapolated(self) -> np.ndarray:
        ahead = min(self.time_s - self._command_s, self.options.command_hold_s)
        lims = self.robot.position_limits
        return np.clip(self.target_positions + ahead * self.target_velocities, lims[:, 0], lims[:, 1])

    def follow_trajectory(self, names: Sequence[str], times_s: Sequence[float], positions: np.ndarray,
                          velocities: np.ndarray | None = None, start_delay_s: float = 0.0) -> float:
        """Execute a JointTrajectory: points at `times_s` after now + `start_delay_s`. Returns its end time."""
        self._position_drives()
        cols = self._columns(list(names))
        times = np.asarray(times_s, float).reshape(-1)
        pos = np.asarray(positions, float).reshape(len(times), -1) if len(times) else np.zeros((0, len(cols)))
        if len(times) == 0 or pos.shape[1] != len(cols):
            raise SimError(f"trajectory needs points with {len(cols)} positions each")
        if not (np.all(np.isfinite(times)) and np.all(np.isfinite(pos))) or times[0] < 0 or np.any(np.diff(times) <= 0):
            raise SimError("trajectory times must be finite, >= 0 and strictly increasing, positions finite")
        vel = None
        if velocities is not None and len(velocities):
            vel = np.asarray(velocities, float).reshape(pos.shape)
            if not np.all(np.isfinite(vel)):
                raise SimError("trajectory velocities must be finite")
        lims = self.robot.position_limits[cols]
        pos = np.clip(pos, lims[:, 0], lims[:, 1])
        if times[0] > 0:  # as joint_trajectory_controller: start from where the joints are commanded now
            times = np.concatenate([[0.0], times])
            pos = np.concatenate([self.target_positions[cols][None], pos])
            if vel is not None:
                vel = np.concatenate([self.target_velocities[cols][None], vel])
        self._trajectory = _Trajectory(cols, self.time_s + max(0.0, start_delay_s), times, pos, vel)
        self._joint_offset[:] = 0.0
        return self._trajectory.end_s

    @property
    def trajectory_active(self) -> bool:
        return self._trajectory is not None and self.time_s < self._trajectory.end_s

    def set_base_target(self, position: Sequence[float], quat_wxyz: Sequence[float],
                        velocity: Sequence[float] | None = None) -> None:
        """Harness mode: where the soft weld pulls the pelvis (ignored in the other modes); with a linear
        `velocity` [m/s] the target moves on between commands (for up to ``command_hold_s``)."""
        p, q = np.asarray(position, float), np.asarray(quat_wxyz, float)
        if p.shape != (3,) or q.shape != (4,) or not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))):
            raise SimError("base pose needs a finite position (3) and quaternion (4)")
        norm = np.linalg.norm(q)
        if norm < 1e-9:
            raise SimError("base quaternion has zero norm")
        v = np.zeros(3) if velocity is None else np.asarray(velocity, float)
        if v.shape != (3,) or not np.all(np.isfinite(v)):
            raise SimError("base velocity needs 3 finite values")
        before = self._base_goal()
        self._base_target, self._base_velocity, self._base_s = p, v, self.time_s
        self._base_offset = before - p
        if self._mocap >= 0:
            self.data.mocap_quat[self._mocap] = q / norm

    def _base_goal(self) -> np.ndarray:
        ahead = min(self.time_s - self._base_s, self.options.command_hold_s)
        return self._base_target + ahead * self._base_velocity + self._fade(self._base_s) * self._base_offset

    # ------------------------------------------------------------------ stepping
    def reference(self) -> tuple[np.ndarray, np.ndarray]:
        """The set-points (positions, velocities) the drives track now (a trajectory sampled, or the
        streamed command moved on by its velocity): the reference of ros2_control's controller_state."""
        if self.tracked:
            target = self.pd.target_rad.copy() if self.pd is not None else self.joint_positions()
            return target, np.zeros(len(self.joint_names))
        traj = self._trajectory
        if traj is not None:
            pos, vel = traj.sample(self.time_s)
            self.target_positions[traj.columns] = pos
            self.target_velocities[traj.columns] = vel
            return self.target_positions.copy(), self.target_velocities.copy()
        fresh = self.time_s - self._command_s < self.options.command_hold_s
        speed = self.target_velocities.copy() if fresh else np.zeros(len(self.joint_names))
        return self._streamed_target(), speed

    def step(self, n: int = 1) -> None:
        """Advance `n` physics steps."""
        d = self.data
        for _ in range(n):
            if self._push_until_s > -math.inf and d.time >= self._push_until_s - 1e-9:
                d.xfrc_applied[self.base_body_id] = 0.0
                self._push_until_s = -math.inf
            if self.tracked:
                pd = self.pd
                if pd is not None:
                    d.ctrl[self.actuator_index] = pd.torque_nm(d.qpos[self.qpos_index], d.qvel[self.dof_index])
                mujoco.mj_step(self.model, d)
                continue
            target, speed = self.reference()
            if self._mocap >= 0:
                d.mocap_pos[self._mocap] = self._base_goal()
            d.ctrl[self.actuator_index] = target + self._ratio * speed
            mujoco.mj_step(self.model, d)

    # ------------------------------------------------------------------ measurements
    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self.qpos_index].copy()

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self.dof_index].copy()

    def _kinematics(self) -> None:
        """Body poses and the IMU's orientation and gyro at the current state: `mj_step` leaves them as they
        were before its last integration (1 step old). Position and velocity stages only, so the contact
        solver's warm start, and hence the trajectory, is untouched. The accelerometer stays 1 step old."""
        if self._synced_s == self.data.time:
            return
        m, d = self.model, self.data
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        mujoco.mj_sensorPos(m, d)
        mujoco.mj_comVel(m, d)
        mujoco.mj_sensorVel(m, d)
        self._synced_s = float(d.time)

    def imu(self) -> ImuReading:
        """The base IMU now: orientation, gyro (the IMU frame) and accelerometer."""
        self._kinematics()
        s = self.data.sensordata
        return ImuReading(quat_wxyz=s[self._imu["quat"]].copy(), ang_vel_rad_s=s[self._imu["gyro"]].copy(),
                          lin_acc_m_s2=s[self._imu["accel"]].copy())

    def joint_efforts(self) -> np.ndarray:
        """Drive torques applied in the last step [N m] (clamped to the effort limits)."""
        return self.data.actuator_force[self.actuator_index].copy()

    def base_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Pelvis position [m] and orientation (w, x, y, z) in the world."""
        self._kinematics()
        d, b = self.data, self.base_body_id
        return d.xpos[b].copy(), d.xquat[b].copy()

    def tilt_rad(self) -> float:
        """Angle between the pelvis z axis and the world's up."""
        self._kinematics()
        z = self.data.xmat[self.base_body_id].reshape(3, 3)[:, 2]
        return float(math.acos(float(np.clip(z[2], -1.0, 1.0))))

    @property
    def fallen(self) -> bool:
        """Free and tracked modes: the pelvis dropped below the fall height or tipped over."""
        if self.options.mode not in ("free", "tracked"):
            return False
        self._kinematics()
        height = float(self.data.xpos[self.base_body_id, 2])
        return height < self.options.fall_height_fraction * self.rest_base_height or self.tilt_rad() > self.options.fall_tilt_rad


def measure_real_time_factor(sim: Simulator, seconds: float = 2.0) -> float:
    """Simulated seconds per wall second when stepping as fast as possible on this thread."""
    steps = max(1, int(round(seconds / sim.timestep_s)))
    start = time.perf_counter()
    sim.step(steps)
    return steps * sim.timestep_s / (time.perf_counter() - start)

