"""The loaded robot: a profile (`momask_ros.robot.profile`) compiled onto its MuJoCo description.

`load_robot` finds the profile (a packaged name, a Menagerie model or a YAML path) and its description;
`Robot` compiles the model with the profile's keypoint sites, checks every name in the profile against it,
and holds what the retargeter needs: joint addresses, limits, the standing rest pose, the feet's contact
corners.
"""
from __future__ import annotations

import importlib.resources
import logging
import os
from pathlib import Path

import mujoco
import numpy as np
import yaml

from momask_ros.robot.profile import MENAGERIE, PACKAGED_ROBOTS, ProfileError, RobotProfile, profile_warnings

logger = logging.getLogger(__name__)


def _joint_dofs(model: mujoco.MjModel, jid: int) -> int:
    return {int(mujoco.mjtJoint.mjJNT_FREE): 6, int(mujoco.mjtJoint.mjJNT_BALL): 3}.get(int(model.jnt_type[jid]), 1)


def _body_corner_points(model: mujoco.MjModel, body_id: int) -> np.ndarray:
    """Corners (8, 3) of the box bounding every geom of a body, in the body frame [m].

    Used as the foot's contact points: cheap to transform per frame and conservative (never above the
    real geometry), which is what a no-penetration guarantee needs.
    """
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for g in np.flatnonzero(model.geom_bodyid == body_id):
        center, half = model.geom_aabb[g, :3], model.geom_aabb[g, 3:]
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
        local = center + signs * half
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, model.geom_quat[g])
        in_body = model.geom_pos[g] + local @ rot.reshape(3, 3).T
        lo, hi = np.minimum(lo, in_body.min(0)), np.maximum(hi, in_body.max(0))
    if not np.all(np.isfinite(lo)):
        raise ProfileError(f"foot body {model.body(body_id).name!r} has no geometry to keep above the floor")
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


class Robot:
    """A compiled MuJoCo model with the profile's keypoint sites, limits and rest pose.

    Attributes:
        profile: the profile it was built from.
        model: MuJoCo model (keypoint sites ``momask_kp_<human joint>`` added).
        joint_names: driven joints in output order.
        qpos_index / dof_index: (nj,) addresses of the driven joints in qpos / qvel.
        position_limits: (nj, 2) [rad] (profile overrides applied; +-inf where unlimited).
        velocity_limits: (nj,) [rad/s].
        rest_qpos: (nq,) standing rest configuration, lowest foot point on z = 0.
        base_qpos_index: start of the free joint's 7 qpos entries (xyz, quat wxyz).
        foot_body_ids: (left, right) body ids; foot_points_body: (2, 8, 3) contact corners per foot.
    """

    def __init__(self, profile: RobotProfile, description_path: Path) -> None:
        self.profile = profile
        self.description_path = description_path
        try:
            spec = mujoco.MjSpec.from_file(str(description_path))
        except Exception as exc:  # MuJoCo raises ValueError with its own parser message
            raise ProfileError(f"MuJoCo could not load {description_path}: {exc}") from exc

        base = spec.body(profile.base_body)
        if base is None:
            raise ProfileError(f"base_body {profile.base_body!r} is not a body of {description_path.name}")
        if base.parent.name != spec.worldbody.name:
            top = base
            while top.parent.name != spec.worldbody.name:
                top = top.parent
            raise ProfileError(
                f"base_body {profile.base_body!r} is inside body {base.parent.name!r}: the floating base must be a "
                f"direct child of the world (<worldbody>); use the top body {top.name!r} as base_body")
        for kp in profile.keypoints:
            body = spec.body(kp.body)
            if body is None:
                raise ProfileError(f"keypoint {kp.human!r}: unknown body {kp.body!r} in {description_path.name}")
            body.add_site(name=kp.site_name, pos=list(kp.offset_m), size=[0.01, 0.01, 0.01], group=5)
        for side, name in (("left_foot_body", profile.left_foot_body), ("right_foot_body", profile.right_foot_body)):
            if spec.body(name) is None:
                raise ProfileError(f"floor.{side}: unknown body {name!r} in {description_path.name}")
        if not any(int(j.type) == int(mujoco.mjtJoint.mjJNT_FREE) for j in base.joints):
            # URDF imports are fixed to the world; the retargeter needs a floating base.
            base.add_freejoint()
        try:
            model = spec.compile()
        except Exception as exc:
            raise ProfileError(f"MuJoCo could not compile {description_path}: {exc}") from exc
        self.model = model

        base_id = model.body(profile.base_body).id
        free = [j for j in range(model.njnt) if model.jnt_bodyid[j] == base_id
                and int(model.jnt_type[j]) == int(mujoco.mjtJoint.mjJNT_FREE)]
        if not free or model.body_parentid[base_id] != 0:
            raise ProfileError(f"base_body {profile.base_body!r} must be a child of the world with a free joint")
        self.base_body_id = base_id
        self.base_joint_id = free[0]
        self.base_qpos_index = int(model.jnt_qposadr[free[0]])

        names = [model.joint(j).name for j in range(model.njnt)]
        for jn in profile.driven_joints:
            if jn not in names:
                raise ProfileError(f"driven joint {jn!r} is not a joint of {description_path.name}")
            jid = model.joint(jn).id
            if int(model.jnt_type[jid]) not in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)):
                raise ProfileError(f"driven joint {jn!r} must be a hinge or slide joint")
        for section, keys in (("rest_pose", profile.rest_pose), ("limits.velocity", profile.velocity_limits),
                              ("limits.position", profile.position_limits), ("sim", profile.sim.joint_names())):
            for jn in keys:
                if jn not in profile.driven_joints:
                    raise ProfileError(f"{section}: {jn!r} is not a driven joint (unknown or not in driven_joints)")

        self.joint_names: tuple[str, ...] = profile.driven_joints
        jids = [model.joint(j).id for j in self.joint_names]
        self.joint_ids = np.array(jids)
        self.qpos_index = np.array([model.jnt_qposadr[j] for j in jids])
        self.dof_index = np.array([model.jnt_dofadr[j] for j in jids])
        lims = np.empty((len(jids), 2))
        for i, (jn, jid) in enumerate(zip(self.joint_names, jids)):
            if jn in profile.position_limits:
                model.jnt_range[jid] = profile.position_limits[jn]
                model.jnt_limited[jid] = 1
            lims[i] = model.jnt_range[jid] if model.jnt_limited[jid] else (-np.inf, np.inf)
            if not model.jnt_limited[jid]:
                logger.warning("joint %s of %s has no position limit", jn, profile.name)
        self.position_limits = lims
        self.velocity_limits = np.array([profile.velocity_limits.get(j, profile.velocity_default)
                                         for j in self.joint_names])
        self.warnings: list[str] = profile_warnings(profile)
        for warning in self.warnings:
            logger.warning("%s: %s", profile.name, warning)
        # Joints that are neither driven nor the floating base stay frozen at rest.
        driven_set = set(jids)
        self.frozen_dofs = [int(model.jnt_dofadr[j]) + k for j in range(model.njnt)
                            if j not in driven_set and j != self.base_joint_id for k in range(_joint_dofs(model, j))]

        self.foot_body_ids = (model.body(profile.left_foot_body).id, model.body(profile.right_foot_body).id)
        self.foot_points_body = np.stack([_body_corner_points(model, b) for b in self.foot_body_ids])
        self.keypoints = profile.keypoints
        self.keypoint_site_ids = np.array([model.site(k.site_name).id for k in self.keypoints])
        for i, pair in enumerate(profile.self_collision.pairs or ()):
            for body in (*pair[0], *pair[1]):
                if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body) < 0:
                    raise ProfileError(f"self_collision.pairs[{i}]: unknown body {body!r} in {description_path.name}")

        qpos = model.qpos0.copy()
        rest = np.array([profile.rest_pose.get(j, 0.0) for j in self.joint_names])
        qpos[self.qpos_index] = np.clip(rest, lims[:, 0], lims[:, 1])
        b = self.base_qpos_index
        qpos[b:b + 3] = 0.0
        qpos[b + 3:b + 7] = (1.0, 0.0, 0.0, 0.0)
        data = mujoco.MjData(model)
        data.qpos[:] = qpos
        mujoco.mj_kinematics(model, data)
        qpos[b + 2] = -self.lowest_foot_z(data)
        self.rest_qpos = qpos
        self.rest_positions = qpos[self.qpos_index].copy()

    def lowest_foot_z(self, data: mujoco.MjData) -> float:
        """Lowest z [m] of either foot's contact corners for kinematics already computed in `data`."""
        return float(min(self.foot_points_z(data)))

    def foot_points_z(self, data: mujoco.MjData) -> tuple[float, float]:
        """Lowest z [m] of the left and right foot for kinematics already computed in `data`."""
        out = []
        for k, bid in enumerate(self.foot_body_ids):
            rot = data.xmat[bid].reshape(3, 3)
            out.append(float((data.xpos[bid, 2] + self.foot_points_body[k] @ rot[2]).min()))
        return out[0], out[1]

    def forward(self, qpos: np.ndarray, data: mujoco.MjData | None = None) -> mujoco.MjData:
        """Run forward kinematics for a full qpos and return the MjData holding body/site poses."""
        data = data if data is not None else mujoco.MjData(self.model)
        data.qpos[:] = qpos
        mujoco.mj_kinematics(self.model, data)
        return data

    def full_qpos(self, joint_positions: np.ndarray, base_position: np.ndarray, base_quat_wxyz: np.ndarray) -> np.ndarray:
        """Assemble a qpos from driven-joint values and a base pose (other joints at rest)."""
        qpos = self.rest_qpos.copy()
        qpos[self.qpos_index] = joint_positions
        b = self.base_qpos_index
        qpos[b:b + 3] = base_position
        qpos[b + 3:b + 7] = base_quat_wxyz
        return qpos

    def __repr__(self) -> str:
        return f"Robot({self.profile.name!r}, {len(self.joint_names)} driven joints, {self.description_path})"


def packaged_profile_path(name: str) -> Path:
    """Path of a profile shipped in ``momask_ros/robots`` (``default``, ``h1``, ``g1``)."""
    resource = importlib.resources.files("momask_ros.robot") / "profiles" / f"{name}.yaml"
    return Path(str(resource))


def menagerie_profile_path(name: str) -> Path:
    """The packaged profile whose ``menagerie`` key names this Menagerie model.

    Raises:
        ProfileError: no packaged profile fits it.
    """
    fits = {}
    for robot in PACKAGED_ROBOTS:
        path = packaged_profile_path(robot)
        key = (yaml.safe_load(path.read_text()) or {}).get("menagerie")
        if key is not None:
            fits[str(key).partition("/")[0]] = path
    if name.partition("/")[0] not in fits:
        raise ProfileError(f"no packaged profile fits Menagerie's {name!r} (fitted: {', '.join(sorted(fits))}); "
                           f"write one (momask_ros/robot/profiles/README.md) with description: {MENAGERIE}{name}")
    return fits[name.partition("/")[0]]


def load_robot(name_or_path: str | os.PathLike, description: str | os.PathLike | None = None) -> Robot:
    """Load a robot from a packaged profile name, a Menagerie name or a profile YAML path.

    Args:
        name_or_path: ``"default"``, ``"h1"``, ``"g1"``, ``"menagerie:<name>[/<entry>]"`` (the packaged
            profile fitted to that Menagerie model, described by Menagerie's file), or a profile YAML.
        description: optional MJCF/URDF path (or ``menagerie:<name>``) overriding the profile's
            description (users point the shipped H1/G1 profiles at their own copy of Unitree's files
            this way).

    Returns:
        The validated `Robot`.

    Raises:
        ProfileError: unknown name, missing file, or a profile entry that does not match the model.
    """
    if isinstance(name_or_path, str) and name_or_path.startswith(MENAGERIE):
        reference = name_or_path.removeprefix(MENAGERIE)
        profile = RobotProfile.from_yaml(menagerie_profile_path(reference))
        return Robot(profile, profile.resolve_description(description or name_or_path))
    if isinstance(name_or_path, str) and name_or_path in PACKAGED_ROBOTS:
        path = packaged_profile_path(name_or_path)
    else:
        path = Path(name_or_path)
        if not path.suffix and not path.exists():
            raise ProfileError(f"unknown robot {str(name_or_path)!r}; packaged: {PACKAGED_ROBOTS}, "
                               f"{MENAGERIE}<name>, or give a YAML path")
    profile = RobotProfile.from_yaml(path)
    return Robot(profile, profile.resolve_description(description))
