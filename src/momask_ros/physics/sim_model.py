"""The MuJoCo model the simulator steps: the robot's own description plus what a simulation needs.

Why a module of its own: the model is where the base modes differ (how the base is held, which drives move
the joints); `Simulator` only steps what it is given. Added in every mode: a floor and a light when the
description has none, and an IMU on the base body (orientation, gyro and accelerometer sensors at the
description's IMU site on that body, e.g. the G1's ``imu_in_pelvis``, else at the body's origin), read
as a real robot's IMU reads.

Drives: ``fixed`` / ``harness`` / ``free`` get one MuJoCo position actuator per driven joint (PD gains and
an effort clamp, implicit-in-velocity integration); ``tracked`` gets one torque motor per driven joint,
its torque computed by the simulator from a PD command every physics step. A tracked model otherwise
keeps the description as written (contacts, friction, solver, integrator): a tracker's robot model is
the one its policy was validated on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import mujoco
import numpy as np

from momask_ros.robot.actuation import Actuation
from momask_ros.robot.model import Robot

IMU_SITE = "momask_imu"
IMU_SENSORS = {"quat": "momask_imu_quat", "gyro": "momask_imu_gyro", "accel": "momask_imu_accel"}
DRIVE_PREFIX = "momask_pd_"


@dataclass(frozen=True, eq=False)
class PdDrive:
    """A tracked model's PD command per driven joint: torque = clip(kp (q* - q) - kd q', +-limit)."""

    target_rad: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    torque_limit_nm: np.ndarray

    @classmethod
    def checked(cls, n: int, target_rad: Sequence[float], kp: Sequence[float], kd: Sequence[float],
                torque_limit_nm: Sequence[float]) -> "PdDrive":
        """One finite value per joint each, gains and limits >= 0; ValueError naming what is wrong."""
        arrays = []
        for label, values in (("targets", target_rad), ("kp", kp), ("kd", kd), ("torque limits", torque_limit_nm)):
            v = np.array(values, dtype=np.float64).reshape(-1)
            if v.shape != (n,) or not np.all(np.isfinite(v)):
                raise ValueError(f"a PD command needs {n} finite {label}, got {v.size} ({np.isfinite(v).sum()} finite)")
            if label != "targets" and np.any(v < 0):
                raise ValueError(f"PD {label} must be >= 0")
            arrays.append(v)
        return cls(*arrays)

    def torque_nm(self, q: np.ndarray, qd: np.ndarray) -> np.ndarray:
        tau = self.kp * (self.target_rad - q) - self.kd * qd
        return np.clip(tau, -self.torque_limit_nm, self.torque_limit_nm)


@dataclass(frozen=True, eq=False)
class ImuReading:
    """What the base IMU measures: orientation in the world (w, x, y, z), angular velocity [rad/s] and
    specific force [m/s^2] (linear acceleration minus gravity: +9.81 up at rest), both in the IMU frame."""

    quat_wxyz: np.ndarray
    ang_vel_rad_s: np.ndarray
    lin_acc_m_s2: np.ndarray


def _in_world(geom) -> bool:
    return geom.parent is not None and geom.parent.name == "world"


def _add_imu(spec: mujoco.MjSpec, base) -> None:
    existing = [s for s in base.sites if "imu" in s.name.lower()]
    site = existing[0].name if existing else base.add_site(name=IMU_SITE).name
    for kind, sensor in ((mujoco.mjtSensor.mjSENS_FRAMEQUAT, "quat"), (mujoco.mjtSensor.mjSENS_GYRO, "gyro"),
                         (mujoco.mjtSensor.mjSENS_ACCELEROMETER, "accel")):
        spec.add_sensor(name=IMU_SENSORS[sensor], type=kind, objtype=mujoco.mjtObj.mjOBJ_SITE, objname=site)


def _contacts(spec: mujoco.MjSpec, robot: Robot, friction: float | None) -> None:
    if not robot.profile.sim.self_collision:
        # robot geoms: contype 2, conaffinity 1 -> never each other; world geoms get bit 2 in conaffinity
        for geom in spec.geoms:
            if geom.contype or geom.conaffinity:
                if _in_world(geom):
                    geom.conaffinity = int(geom.conaffinity) | 2
                    geom.contype = int(geom.contype) | 1
                else:
                    geom.contype, geom.conaffinity = 2, 1
    if friction is not None:
        for geom in spec.geoms:
            if geom.contype or geom.conaffinity:
                geom.friction = [friction, *list(geom.friction)[1:]]


def build_sim_model(robot: Robot, act: Actuation, *, mode: str, harness_timeconst_s: float,
                    friction: float | None, timestep_s: float | None) -> mujoco.MjModel:
    """The compiled model of `robot` for one base mode (module docstring).

    Args:
        robot: its description, profile and rest pose.
        act: effort limits and PD gains of the driven joints.
        mode: fixed | harness | free | tracked.
        harness_timeconst_s: harness weld time constant [s].
        friction: sliding friction of every collision geom, None = the description's (ignored when tracked).
        timestep_s: physics step [s]; None = the profile's ``sim.timestep_s`` (not when tracked), else the
            description's.
    """
    spec = mujoco.MjSpec.from_file(str(robot.description_path))
    for item in [*spec.actuators, *spec.keys]:  # its own motors; keyframes sized for its own joints
        spec.delete(item)
    base = spec.body(robot.profile.base_body)
    free = [j for j in base.joints if int(j.type) == int(mujoco.mjtJoint.mjJNT_FREE)]
    b = robot.base_qpos_index
    rest_pos, rest_quat = robot.rest_qpos[b:b + 3], robot.rest_qpos[b + 3:b + 7]
    if mode == "fixed":
        for j in free:
            spec.delete(j)
        base.pos, base.quat = list(rest_pos), list(rest_quat)
    elif not free:
        base.add_freejoint()
    if mode == "harness":
        harness = spec.worldbody.add_body(name="momask_harness", mocap=True, pos=list(rest_pos), quat=list(rest_quat))
        weld = spec.add_equality(type=mujoco.mjtEq.mjEQ_WELD, objtype=mujoco.mjtObj.mjOBJ_BODY,
                                 name1=harness.name, name2=robot.profile.base_body)
        weld.solref = [harness_timeconst_s, 1.0]
    if not any(int(g.type) == int(mujoco.mjtGeom.mjGEOM_PLANE) for g in spec.worldbody.geoms):
        floor = spec.worldbody.add_geom(name="momask_floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05],
                                        rgba=[0.75, 0.78, 0.8, 1])
        floor.contype, floor.conaffinity = 1, 1
    if not spec.worldbody.lights:
        spec.worldbody.add_light(pos=[0, 0, 4], dir=[0, 0, -1])
    _add_imu(spec, base)
    if mode == "tracked":
        for name, effort in zip(act.joint_names, act.effort):
            spec.add_actuator(name=f"{DRIVE_PREFIX}{name}", target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT,
                              gaintype=mujoco.mjtGain.mjGAIN_FIXED, biastype=mujoco.mjtBias.mjBIAS_NONE,
                              gainprm=[1.0] + [0] * 9, forcelimited=True, forcerange=[-effort, effort])
        if timestep_s:
            spec.option.timestep = timestep_s
        return spec.compile()
    _contacts(spec, robot, friction)
    for name, kp, kd, effort in zip(act.joint_names, act.kp, act.kd, act.effort):
        spec.add_actuator(name=f"{DRIVE_PREFIX}{name}", target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT,
                          gaintype=mujoco.mjtGain.mjGAIN_FIXED, biastype=mujoco.mjtBias.mjBIAS_AFFINE,
                          gainprm=[kp] + [0] * 9, biasprm=[0, -kp, -kd] + [0] * 7,
                          forcelimited=True, forcerange=[-effort, effort])
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    step = timestep_s or robot.profile.sim.timestep_s
    if step:
        spec.option.timestep = step
    return spec.compile()
