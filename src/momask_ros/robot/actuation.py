"""Effort limits and PD gains of a robot's driven joints: the profile's ``sim:`` section over MJCF defaults.

Why one place: the physical checks compare inverse-dynamics torques against the same effort limits the
simulator clamps its PD torques to, so "over the limit" means the same thing in both.

Defaults, per driven joint, when the profile gives no value:

* effort [N m]: the joint's ``actuatorfrcrange`` if limited; else the actuator on it (``forcerange`` if
  limited, else ``ctrlrange`` x gear for a direct torque motor); else ``sim.effort_default``; else an error.
* kp [N m/rad]: ``sim.kp_default`` or effort / ``saturation_error_rad`` (the drive saturates at that error).
* kd [N m s/rad]: ``damping_ratio`` x 2 sqrt(kp I) minus the joint's own damping (at least 0), with I the
  joint's inertia at the rest pose (armature included): critically damped by default.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import mujoco
import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from momask_ros.robot.model import Robot


@dataclass(frozen=True)
class Actuation:
    """Per driven joint (robot.joint_names order): effort limit, PD gains and where the limit came from."""

    joint_names: tuple[str, ...]
    effort: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    effort_source: tuple[str, ...]


def _mjcf_effort(model: mujoco.MjModel, jid: int) -> tuple[float | None, str]:
    if model.jnt_actfrclimited[jid]:
        lo, hi = model.jnt_actfrcrange[jid]
        return float(max(abs(lo), abs(hi))), "joint actuatorfrcrange"
    for a in range(model.nu):
        if model.actuator_trntype[a] != mujoco.mjtTrn.mjTRN_JOINT or model.actuator_trnid[a, 0] != jid:
            continue
        gear = abs(float(model.actuator_gear[a, 0])) or 1.0
        if model.actuator_forcelimited[a]:
            return float(np.abs(model.actuator_forcerange[a]).max()) * gear, "actuator forcerange"
        direct = model.actuator_gainprm[a, 0] == 1.0 and not np.any(model.actuator_biasprm[a, :3])
        if model.actuator_ctrllimited[a] and direct:
            return float(np.abs(model.actuator_ctrlrange[a]).max()) * gear, "actuator ctrlrange"
    return None, ""


def robot_actuation(robot: "Robot") -> Actuation:
    """Effort limits and PD gains of `robot` (module docstring for the defaults).

    Raises:
        ProfileError: a driven joint has no effort limit in the MJCF and the profile gives none.
    """
    from momask_ros.robot.profile import ProfileError

    model, cfg = robot.model, robot.profile.sim
    data = mujoco.MjData(model)
    data.qpos[:] = robot.rest_qpos
    mujoco.mj_forward(model, data)
    inertia = np.zeros((model.nv, model.nv))
    mujoco.mj_fullM(model, data, inertia)
    effort, kp, kd, source = [], [], [], []
    for name, jid, dof in zip(robot.joint_names, robot.joint_ids, robot.dof_index):
        if name in cfg.effort:
            value, src = cfg.effort[name], "profile sim.effort"
        else:
            value, src = _mjcf_effort(model, int(jid))
            if value is None and cfg.effort_default is not None:
                value, src = cfg.effort_default, "profile sim.effort_default"
        if value is None or value <= 0:
            raise ProfileError(f"joint {name!r} of {robot.profile.name!r} has no effort limit in its description; "
                               "set sim.effort or sim.effort_default in the profile")
        gain = cfg.kp.get(name, cfg.kp_default if cfg.kp_default is not None else value / cfg.saturation_error_rad)
        crit = 2.0 * cfg.damping_ratio * np.sqrt(gain * inertia[dof, dof]) - model.dof_damping[dof]
        effort.append(value)
        kp.append(gain)
        kd.append(cfg.kd.get(name, max(0.0, float(crit))))
        source.append(src)
    return Actuation(robot.joint_names, np.array(effort), np.array(kp), np.array(kd), tuple(source))
