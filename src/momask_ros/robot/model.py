"""Robots as data: a MuJoCo description plus a small YAML retargeting profile.

Any humanoid whose description MuJoCo can load (MJCF, or URDF) is usable without code changes: the profile
says which robot bodies follow which human joints, how hard, and which joints are driven. Everything is
checked at load time, so a typo in a profile fails with :class:`ProfileError` naming the bad entry instead of
silently producing a wrong motion later.

Profile schema (YAML; see ``robot/profiles/README.md`` for a worked example)::

    name: unitree_h1                      # free text, used in logs
    description: unitree_h1/h1.xml        # MJCF/URDF; relative to the profile file, or absolute, or
                                          #   menagerie:<name>[/<entry>] (MuJoCo Menagerie, see below)
    description_env: MOMASK_ROS_H1_DESCRIPTION   # optional env var that overrides `description`
    menagerie: unitree_h1                 # optional: the Menagerie model this profile fits, so that
                                          #   load_robot("menagerie:unitree_h1") picks this profile
    base_body: pelvis                     # floating-base body (a free joint is added if it has none)
    control_rate_hz: 50.0                 # default output rate of the retargeter
    driven_joints: [left_hip_yaw_joint, ...]     # output order; every other joint is frozen at rest
    rest_pose: {left_elbow_joint: 1.2}    # radians; unspecified joints -> 0 clipped into range
    posture_weight: 0.05                  # cost pulling towards the rest pose (resolves redundancy)
    keypoints:                            # human joint -> robot point (the GMR-style matching table)
      - human: left_wrist                 # one of the 22 SMPL-order joint names
        body: left_elbow_link             # robot body
        offset_m: [0.26, 0.0, 0.0]        # point in the body frame (default origin)
        position_weight: 4.0              # 0 = used only for scaling and diagnostics
        orientation: left_foot            # optional frame derived from positions:
                                          #   pelvis | torso | left_foot | right_foot
        orientation_weight: 2.0
    scale: {legs: auto, torso: auto, arms: auto}   # numbers, or auto (robot / human segment lengths)
    limits:
      velocity_default: 10.0              # rad/s for driven joints without an entry below
      velocity: {left_knee_joint: 14.0}
      position: {torso_joint: [-1.0, 1.0]}  # radians, overrides (narrows or sets) the file's range
    floor:
      left_foot_body: left_ankle_link     # bodies whose geometry must stay above z = 0
      right_foot_body: right_ankle_link
    self_collision: {...}                 # optional: IK self-collision avoidance (profile_sections.py)
    sim: {...}                            # optional: PD gains, effort limits of the simulator (profile_sections.py)

Auto scaling needs, per part, keypoints for: legs = hip, knee, ankle (left or right); arms = shoulder,
elbow, wrist; torso = pelvis and both shoulders.

MuJoCo Menagerie: with the optional ``mujoco-menagerie`` package installed, a description
``menagerie:<name>[/<entry>]`` is fetched through it (downloaded once, then cached by that package), and
``load_robot("menagerie:<name>")`` loads the packaged profile that names ``<name>`` in its ``menagerie`` key.
"""
from __future__ import annotations

import importlib.resources
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import mujoco
import numpy as np
import yaml

from momask_ros.robot.profile_sections import SectionError, SelfCollisionConfig, SimConfig, parse_self_collision, parse_sim

logger = logging.getLogger(__name__)

#: The 22 HumanML3D / SMPL joint names, in data order: a copy of ``momask_model.motion.skeleton.JOINT_NAMES``, kept
#: here so profile loading and ``momask-robot-check`` need no torch (test_robot checks the two agree).
HUMAN_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
#: Orientation frames derived from joint positions (x forward, y left, z up when standing at rest).
HUMAN_FRAMES: tuple[str, ...] = ("pelvis", "torso", "left_foot", "right_foot")
PACKAGED_ROBOTS: tuple[str, ...] = ("default", "h1", "g1")
SCALE_PARTS: tuple[str, ...] = ("legs", "torso", "arms")

_TOP_KEYS = {
    "name", "description", "description_env", "base_body", "control_rate_hz", "driven_joints", "rest_pose",
    "posture_weight", "keypoints", "scale", "limits", "floor", "menagerie", "self_collision", "sim",
}
MENAGERIE = "menagerie:"

_KEYPOINT_KEYS = {"human", "body", "offset_m", "position_weight", "orientation", "orientation_weight"}


class ProfileError(ValueError):
    """A robot profile or description is invalid; the message names the offending entry."""


class DescriptionNotFound(ProfileError):
    """The profile's robot description (MJCF/URDF) is not on this machine (`file_name`: what to look for)."""

    def __init__(self, message: str, file_name: str) -> None:
        super().__init__(message)
        self.file_name = file_name


def menagerie_description(reference: str) -> Path:
    """The XML of a MuJoCo Menagerie model, ``<name>`` or ``<name>/<entry>`` (default: the robot alone).

    The optional ``mujoco-menagerie`` package downloads the model once and caches it.

    Raises:
        ProfileError: the package is not installed, the name or entry is unknown, or the download failed.
    """
    name, _, entry = reference.removeprefix(MENAGERIE).partition("/")
    try:
        import mujoco_menagerie
    except ImportError:
        raise ProfileError(f"{MENAGERIE}{reference.removeprefix(MENAGERIE)} needs the optional package "
                           "mujoco-menagerie (pip install mujoco-menagerie), or give the MJCF/URDF file "
                           "itself (robot_description_path)") from None
    try:
        model = mujoco_menagerie.get(name)
        return Path(model.xml(entry or model.default_model))
    except LookupError as exc:  # unknown robot or entry point: the package names the near matches
        raise ProfileError(f"{MENAGERIE}{name}: {exc}") from None
    except Exception as exc:  # offline, checksum, disk: say what failed on one line
        raise ProfileError(f"cannot fetch Menagerie model {name!r} (it is downloaded once, then cached; offline?): "
                           f"{type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class KeypointSpec:
    """One row of the human-to-robot matching table.

    Attributes:
        human: SMPL joint name whose (scaled) position the robot point follows.
        body: robot body carrying the point.
        offset_m: point in the body frame [m].
        position_weight: IK position cost; 0 keeps the row for scaling and diagnostics only.
        orientation: name of a derived human frame the body should align with, or None.
        orientation_weight: IK orientation cost (ignored without `orientation`).
    """

    human: str
    body: str
    offset_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    position_weight: float = 1.0
    orientation: str | None = None
    orientation_weight: float = 0.0

    @property
    def site_name(self) -> str:
        """Name of the MuJoCo site added at this keypoint (unique per human joint)."""
        return f"momask_kp_{self.human}"


def _as_float(value: Any, what: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ProfileError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ProfileError(f"{what} must be finite, got {value!r}")
    return out


@dataclass(frozen=True)
class RobotProfile:
    """Parsed, schema-checked retargeting profile (names are checked against the model in `load_robot`)."""

    name: str
    description: str
    base_body: str
    driven_joints: tuple[str, ...]
    keypoints: tuple[KeypointSpec, ...]
    left_foot_body: str
    right_foot_body: str
    control_rate_hz: float = 50.0
    description_env: str | None = None
    menagerie: str | None = None
    rest_pose: Mapping[str, float] = field(default_factory=dict)
    posture_weight: float = 0.05
    scale: Mapping[str, float | None] = field(default_factory=dict)
    velocity_default: float = 10.0
    velocity_default_given: bool = False
    velocity_limits: Mapping[str, float] = field(default_factory=dict)
    position_limits: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    base_dir: Path | None = None
    self_collision: SelfCollisionConfig = field(default_factory=SelfCollisionConfig)
    sim: SimConfig = field(default_factory=SimConfig)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base_dir: Path | None = None) -> "RobotProfile":
        """Build a profile from a parsed YAML mapping.

        Args:
            data: the YAML content.
            base_dir: folder that relative description paths are resolved against.

        Raises:
            ProfileError: unknown or missing keys, bad values.
        """
        if not isinstance(data, Mapping):
            raise ProfileError(f"profile must be a mapping, got {type(data).__name__}")
        unknown = set(data) - _TOP_KEYS
        if unknown:
            raise ProfileError(f"unknown profile key(s): {sorted(unknown)}")
        for key in ("name", "description", "base_body", "driven_joints", "keypoints", "floor"):
            if key not in data:
                raise ProfileError(f"profile is missing the required key {key!r}")

        driven = data["driven_joints"]
        if not isinstance(driven, list) or not driven or not all(isinstance(j, str) for j in driven):
            raise ProfileError(f"driven_joints must be a non-empty list of joint names, got {driven!r}")
        if len(set(driven)) != len(driven):
            raise ProfileError(f"driven_joints has duplicates: {driven}")

        keypoints = []
        raw_kps = data["keypoints"]
        if not isinstance(raw_kps, list) or not raw_kps:
            raise ProfileError("keypoints must be a non-empty list")
        for i, raw in enumerate(raw_kps):
            if not isinstance(raw, Mapping):
                raise ProfileError(f"keypoints[{i}] must be a mapping, got {raw!r}")
            bad = set(raw) - _KEYPOINT_KEYS
            if bad:
                raise ProfileError(f"keypoints[{i}] has unknown key(s) {sorted(bad)}")
            if "human" not in raw or "body" not in raw:
                raise ProfileError(f"keypoints[{i}] needs 'human' and 'body'")
            human = raw["human"]
            if human not in HUMAN_JOINT_NAMES:
                raise ProfileError(f"keypoints[{i}]: unknown human joint {human!r}; known: {HUMAN_JOINT_NAMES}")
            frame = raw.get("orientation")
            if frame is not None and frame not in HUMAN_FRAMES:
                raise ProfileError(f"keypoints[{i}]: unknown orientation frame {frame!r}; known: {HUMAN_FRAMES}")
            offset = raw.get("offset_m", [0.0, 0.0, 0.0])
            if not isinstance(offset, (list, tuple)) or len(offset) != 3:
                raise ProfileError(f"keypoints[{i}].offset_m must be 3 numbers, got {offset!r}")
            pw = _as_float(raw.get("position_weight", 1.0), f"keypoints[{i}].position_weight")
            ow = _as_float(raw.get("orientation_weight", 1.0 if frame else 0.0), f"keypoints[{i}].orientation_weight")
            if pw < 0 or ow < 0:
                raise ProfileError(f"keypoints[{i}]: weights must be >= 0, got {pw}, {ow}")
            keypoints.append(KeypointSpec(
                human=human, body=str(raw["body"]),
                offset_m=tuple(_as_float(v, f"keypoints[{i}].offset_m") for v in offset),  # type: ignore[arg-type]
                position_weight=pw, orientation=frame, orientation_weight=ow if frame else 0.0))
        humans = [k.human for k in keypoints]
        if len(set(humans)) != len(humans):
            raise ProfileError(f"a human joint appears in more than one keypoint: {humans}")
        if "pelvis" not in humans:
            raise ProfileError("keypoints must include the human 'pelvis' (the base follows it)")

        floor = data["floor"]
        if not isinstance(floor, Mapping) or set(floor) != {"left_foot_body", "right_foot_body"}:
            raise ProfileError(f"floor must have exactly left_foot_body and right_foot_body, got {floor!r}")

        scale: dict[str, float | None] = {part: None for part in SCALE_PARTS}
        raw_scale = data.get("scale") or {}
        if not isinstance(raw_scale, Mapping):
            raise ProfileError(f"scale must be a mapping, got {raw_scale!r}")
        for part, value in raw_scale.items():
            if part not in SCALE_PARTS:
                raise ProfileError(f"unknown scale part {part!r}; known: {SCALE_PARTS}")
            if value != "auto":
                value = _as_float(value, f"scale.{part}")
                if value <= 0:
                    raise ProfileError(f"scale.{part} must be > 0, got {value}")
            scale[part] = None if value == "auto" else value

        limits = data.get("limits") or {}
        if not isinstance(limits, Mapping) or set(limits) - {"velocity_default", "velocity", "position"}:
            raise ProfileError(f"limits accepts velocity_default, velocity, position; got {limits!r}")
        vdef = _as_float(limits.get("velocity_default", 10.0), "limits.velocity_default")
        vel = {str(k): _as_float(v, f"limits.velocity.{k}") for k, v in (limits.get("velocity") or {}).items()}
        for name, value in [("velocity_default", vdef), *vel.items()]:
            if value <= 0:
                raise ProfileError(f"velocity limit {name} must be > 0, got {value}")
        pos = {}
        for k, v in (limits.get("position") or {}).items():
            if not isinstance(v, (list, tuple)) or len(v) != 2:
                raise ProfileError(f"limits.position.{k} must be [lower, upper], got {v!r}")
            lo, hi = (_as_float(x, f"limits.position.{k}") for x in v)
            if lo >= hi:
                raise ProfileError(f"limits.position.{k}: lower {lo} must be < upper {hi}")
            pos[str(k)] = (lo, hi)

        rate = _as_float(data.get("control_rate_hz", 50.0), "control_rate_hz")
        if rate <= 0:
            raise ProfileError(f"control_rate_hz must be > 0, got {rate}")
        rest = {str(k): _as_float(v, f"rest_pose.{k}") for k, v in (data.get("rest_pose") or {}).items()}
        try:
            sections = {"self_collision": parse_self_collision(data.get("self_collision")),
                        "sim": parse_sim(data.get("sim"))}
        except SectionError as exc:
            raise ProfileError(str(exc)) from None
        return cls(
            name=str(data["name"]), description=str(data["description"]), base_body=str(data["base_body"]),
            driven_joints=tuple(driven), keypoints=tuple(keypoints),
            left_foot_body=str(floor["left_foot_body"]), right_foot_body=str(floor["right_foot_body"]),
            control_rate_hz=rate, description_env=data.get("description_env"), rest_pose=rest,
            menagerie=None if data.get("menagerie") is None else str(data["menagerie"]),
            posture_weight=_as_float(data.get("posture_weight", 0.05), "posture_weight"), scale=scale,
            velocity_default=vdef, velocity_default_given="velocity_default" in limits, velocity_limits=vel,
            position_limits=pos, base_dir=base_dir, **sections,
        )

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "RobotProfile":
        """Read a profile file; relative description paths resolve against its folder."""
        path = Path(path)
        if not path.is_file():
            raise ProfileError(f"profile file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ProfileError(f"profile {path} is not valid YAML: {exc}") from exc
        return cls.from_dict(data, base_dir=path.resolve().parent)

    def resolve_description(self, override: str | os.PathLike | None = None) -> Path:
        """Find the description file: `override`, else ``$description_env``, else `description`.

        Each may be ``menagerie:<name>[/<entry>]`` (`menagerie_description`).

        Raises:
            DescriptionNotFound: the file does not exist (the message says how to point at a copy).
            ProfileError: a Menagerie description cannot be had.
        """
        if override is not None:
            candidate, source = str(override), "the description argument"
        elif self.description_env and os.environ.get(self.description_env):
            candidate, source = os.environ[self.description_env], f"${self.description_env}"
        else:
            candidate, source = self.description, "the profile's description"
        if candidate.startswith(MENAGERIE):
            return menagerie_description(candidate)
        path = Path(candidate).expanduser()
        if source == "the profile's description" and not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        if not path.is_file():
            wanted = Path(self.description).name
            hints = [f"give the MJCF/URDF: robot_description_path:=/path/to/{wanted} (Python: load_robot(..., "
                     "description=PATH))"]
            if self.description_env:
                hints.append(f"${self.description_env}")
            if self.menagerie:
                hints.append(f"robot:={MENAGERIE}{self.menagerie} with mujoco-menagerie installed")
            raise DescriptionNotFound(
                f"robot description for {self.name!r} not found at {path} (from {source}); {' or '.join(hints)}",
                wanted)
        return path


def profile_warnings(profile: RobotProfile) -> list[str]:
    """What a profile leaves to defaults that may not fit the robot (loads, but deserves a look).

    * driven joints whose velocity limit is the built-in default (no ``limits.velocity`` entry and no
      explicit ``limits.velocity_default``): MJCF carries no velocity limits, so the profile must;
    * ``scale`` parts left ``auto`` without the keypoints that measure them, which then fall back to
      the legs' ratio.
    """
    out = []
    if not profile.velocity_default_given:
        defaulted = [j for j in profile.driven_joints if j not in profile.velocity_limits]
        if defaulted:
            out.append(f"velocity limit of {len(defaulted)} driven joint(s) defaults to {profile.velocity_default:g} "
                       f"rad/s (the description has none, the profile sets none): {', '.join(defaulted)}; set "
                       f"limits.velocity from the datasheet, or limits.velocity_default")
    humans = {k.human for k in profile.keypoints}
    needs = {"arms": [("shoulder", "elbow", "wrist")], "legs": [("hip", "knee", "ankle")]}
    for part, (chain,) in needs.items():
        if profile.scale.get(part) is None:
            sides = [[f"{side}_{n}" for n in chain if f"{side}_{n}" not in humans] for side in ("left", "right")]
            if all(sides):
                missing = sorted({m for side in sides for m in side})
                fallback = "the legs' ratio" if part == "arms" else "nothing (retargeting will fail)"
                out.append(f"scale.{part} is auto but no side has {', '.join(chain)} keypoints (missing: "
                           f"{', '.join(missing)}), so it falls back to {fallback}; add them or give a number")
    if profile.scale.get("torso") is None and not {"left_shoulder", "right_shoulder"} <= humans:
        out.append("scale.torso is auto but the profile lacks left_shoulder/right_shoulder keypoints, so it falls "
                   "back to the legs' ratio; add them (weight 0 is fine) or give a number")
    return out


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
