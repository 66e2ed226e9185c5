"""Robot profiles: the YAML that says how a MuJoCo-loadable humanoid follows a human (schema and checks).

Any humanoid whose description MuJoCo can load (MJCF, or URDF) is usable without code changes: the profile
says which robot bodies follow which human joints, how hard, and which joints are driven. Everything is
checked at load time, so a typo in a profile fails with :class:`ProfileError` naming the bad entry instead of
silently producing a wrong motion later: the schema here, the names against the model in `momask_ros.robot.model`.

Profile schema (YAML; see ``robot/profiles/README.md`` for a worked example)::

    name: unitree_h1                      # free text, used in logs
    description: unitree_h1/h1.xml        # MJCF/URDF; relative to the profile file, or absolute, or
                                          #   menagerie:<name>[/<entry>] (MuJoCo Menagerie, see below)
    description_env: MOMASK_ROS_H1_DESCRIPTION   # optional env var that overrides `description`
    menagerie: unitree_h1                 # optional: the Menagerie model this profile fits, so that
                                          #   load_robot("menagerie:unitree_h1") picks this profile
    base_body: pelvis                     # floating-base body (a free joint is added if it has none)
    control_rate_hz: 50.0                 # default output rate of the retargeter
    driven_joints: [right_hip_roll_joint, ...]   # output order (the controller's motor order); every other
                                          #   joint is frozen at rest
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

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from momask_ros.robot.profile_sections import SectionError, SelfCollisionConfig, SimConfig, parse_self_collision, parse_sim

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
