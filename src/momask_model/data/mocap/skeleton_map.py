"""Source skeleton -> the 22 HumanML3D joints, as data (one YAML file per source skeleton).

A map has two parts, both keyed by HumanML3D joint names (``momask_model.motion.skeleton.JOINT_NAMES``,
SMPL order; ``left_foot``/``right_foot`` are the toes):

``joints``
    target name -> source joint name, for joints the source has. Source names match
    case-insensitively and ignore a namespace prefix ending in ``:`` (``mixamorig:Hips``,
    ``mixamorig1:Hips`` and ``Hips`` are the same joint), because exporters rename them freely.

``derived``
    a list, evaluated in order, of joints the source lacks, each computed by a named geometric
    rule from joints already placed (targets) or from a source joint's world frame. Rules
    run after unit scaling and the axis change, so lengths are metres and +Y is up:

    ``lerp`` (``from``, ``to``, ``t``)
        ``p = p_from + t (p_to - p_from)``: a point on the segment between two target joints.
        Spine joints sit on the pelvis-chest-neck line at fixed fractions; collars a fraction of
        the way from the neck to the shoulder. Both ends move with the body, so the result does.
    ``local_offset`` (``source_joint``, ``offset_m``)
        ``p = p_j + R_j offset``: a point rigidly attached to a source body, the offset given in that
        joint's own axes (the file's axes, in metres). The most faithful rule where the source has
        rotations: a toe rides on the ankle's body, a head on the neck's body, through flips too.
    ``extend`` (``from``, ``to``, ``length_m``)
        ``p = p_to + length unit(p_to - p_from)``: continue a bone past its end (head above the
        neck along the spine3->neck direction) when no rotation is usable.
    ``ground_forward`` (``from``, ``length_m``, ``drop_m``)
        ``p = p_from + length f - drop y``, with ``f`` the body's forward direction (left hip minus
        right hip, crossed with up) projected on the ground plane: a toe for sources without feet.
        Only valid for upright motion; prefer ``local_offset``.

Optional keys: ``name``, ``description``, ``unit_m`` (metres per source unit, a hint for formats
whose unit is not metres or centimetres, e.g. CMU's 0.056444), ``up_axis``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from momask_model.data.mocap.errors import SkeletonMapError
from momask_model.data.mocap.kinematics import PoseSequence, forward_kinematics
from momask_model.motion.features import normalize_joint_positions
from momask_model.motion.skeleton import JOINT_NAMES

logger = logging.getLogger(__name__)

__all__ = ["DerivedJoint", "SkeletonMap", "normalize_joint_name", "available_skeleton_maps", "load_skeleton_map", "poses_to_humanml3d_joints"]

_RULE_PARAMS: dict[str, tuple[str, ...]] = {
    "lerp": ("from", "to", "t"),
    "local_offset": ("source_joint", "offset_m"),
    "extend": ("from", "to", "length_m"),
    "ground_forward": ("from", "length_m", "drop_m"),
}
_UP = np.array([0.0, 1.0, 0.0])


def normalize_joint_name(name: str) -> str:
    """Case-folded joint name without a namespace prefix (text up to the last ``:``)."""
    return name.rsplit(":", 1)[-1].strip().lower()


@dataclass(frozen=True)
class DerivedJoint:
    """One target joint computed by a named rule (see the module docstring)."""

    joint: str
    rule: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class SkeletonMap:
    """How to obtain the 22 HumanML3D joints from one source skeleton."""

    name: str
    joints: Mapping[str, str]
    derived: tuple[DerivedJoint, ...] = ()
    description: str = ""
    unit_m: float | None = None
    up_axis: str | None = None
    source_path: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        where = self.source_path or self.name
        known = set(JOINT_NAMES)
        placed: set[str] = set()
        for target in self.joints:
            if target not in known:
                raise SkeletonMapError(f"{where}: unknown target joint {target!r} in 'joints' (valid: {JOINT_NAMES})")
            placed.add(target)
        for d in self.derived:
            if d.joint not in known:
                raise SkeletonMapError(f"{where}: unknown derived joint {d.joint!r}")
            if d.joint in placed:
                raise SkeletonMapError(f"{where}: joint {d.joint!r} is defined twice")
            if d.rule not in _RULE_PARAMS:
                raise SkeletonMapError(f"{where}: joint {d.joint!r} uses unknown rule {d.rule!r} (valid: {sorted(_RULE_PARAMS)})")
            missing = [k for k in _RULE_PARAMS[d.rule] if k not in d.params]
            extra = [k for k in d.params if k not in _RULE_PARAMS[d.rule]]
            if missing or extra:
                raise SkeletonMapError(
                    f"{where}: rule {d.rule!r} of joint {d.joint!r} needs {_RULE_PARAMS[d.rule]}, "
                    f"missing {missing}, unexpected {extra}"
                )
            for key in ("from", "to"):
                ref = d.params.get(key)
                if ref is not None and ref not in placed:
                    raise SkeletonMapError(
                        f"{where}: rule for {d.joint!r} refers to {ref!r} before it is placed"
                    )
            if d.rule == "ground_forward" and not {"left_hip", "right_hip"} <= placed:
                raise SkeletonMapError(f"{where}: rule 'ground_forward' for {d.joint!r} needs left_hip and right_hip placed first")
            placed.add(d.joint)
        absent = [j for j in JOINT_NAMES if j not in placed]
        if absent:
            raise SkeletonMapError(f"{where}: the map does not place {absent}")

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source_path: str = "") -> "SkeletonMap":
        """Build from the parsed YAML (schema in the module docstring)."""
        where = source_path or "<dict>"
        if not isinstance(data, Mapping):
            raise SkeletonMapError(f"{where}: a skeleton map must be a mapping, got {type(data).__name__}")
        allowed = {"name", "description", "joints", "derived", "unit_m", "up_axis"}
        unknown = set(data) - allowed
        if unknown:
            raise SkeletonMapError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")
        joints = data.get("joints") or {}
        if not isinstance(joints, Mapping):
            raise SkeletonMapError(f"{where}: 'joints' must map target names to source names")
        derived = []
        for i, entry in enumerate(data.get("derived") or []):
            if not isinstance(entry, Mapping) or "joint" not in entry or "rule" not in entry:
                raise SkeletonMapError(f"{where}: derived[{i}] needs 'joint' and 'rule', got {entry!r}")
            params = {k: v for k, v in entry.items() if k not in ("joint", "rule")}
            derived.append(DerivedJoint(str(entry["joint"]), str(entry["rule"]), params))
        up = data.get("up_axis")
        if up is not None and str(up).lower() not in ("y", "z"):
            raise SkeletonMapError(f"{where}: up_axis must be 'y' or 'z', got {up!r}")
        return cls(
            name=str(data.get("name", Path(source_path).stem if source_path else "unnamed")),
            joints={str(k): str(v) for k, v in joints.items()},
            derived=tuple(derived),
            description=str(data.get("description", "")),
            unit_m=None if data.get("unit_m") is None else float(data["unit_m"]),
            up_axis=None if up is None else str(up).lower(),
            source_path=source_path,
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> "SkeletonMap":
        """Read a map from a YAML file."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise SkeletonMapError(f"{path}: cannot read skeleton map: {exc}") from exc
        return cls.from_dict(data, source_path=str(path))

    # -- application ----------------------------------------------------------------------

    def source_joints(self) -> list[str]:
        """Every source joint the map reads."""
        names = list(self.joints.values())
        names += [d.params["source_joint"] for d in self.derived if d.rule == "local_offset"]
        return names

    def resolve(self, source_names: Sequence[str]) -> dict[str, int]:
        """Index of every source joint the map needs in ``source_names`` (prefix/case-insensitive).

        Raises:
            SkeletonMapError: a needed joint is missing, naming it and the joints available.
        """
        exact = {n: i for i, n in enumerate(source_names)}
        loose: dict[str, int] = {}
        for i, n in enumerate(source_names):
            loose.setdefault(normalize_joint_name(n), i)
        out, missing = {}, []
        for name in self.source_joints():
            if name in exact:
                out[name] = exact[name]
            elif normalize_joint_name(name) in loose:
                out[name] = loose[normalize_joint_name(name)]
            else:
                missing.append(name)
        if missing:
            raise SkeletonMapError(
                f"skeleton map {self.name!r} needs source joints {missing} that the skeleton lacks "
                f"(it has {list(source_names)})"
            )
        return out

    def fits(self, source_names: Sequence[str]) -> bool:
        """True if every source joint the map reads exists in ``source_names``."""
        try:
            self.resolve(source_names)
        except SkeletonMapError:
            return False
        return True

    def apply(
        self,
        positions: np.ndarray,
        rotations: np.ndarray,
        source_names: Sequence[str],
    ) -> np.ndarray:
        """22 HumanML3D joints from source joint positions and world rotations.

        Args:
            positions: (N, J, 3) source joint world positions, metres, Y up.
            rotations: (N, J, 3, 3) source joint world rotations in the same (Y-up) world.
            source_names: the J source joint names.

        Returns:
            (N, 22, 3) float64 in ``JOINT_NAMES`` order.
        """
        index = self.resolve(source_names)
        n = positions.shape[0]
        out: dict[str, np.ndarray] = {t: positions[:, index[s]] for t, s in self.joints.items()}
        for d in self.derived:
            p = d.params
            if d.rule == "lerp":
                t = float(p["t"])
                out[d.joint] = out[p["from"]] + t * (out[p["to"]] - out[p["from"]])
            elif d.rule == "local_offset":
                j = index[p["source_joint"]]
                offset = np.asarray(p["offset_m"], dtype=np.float64).reshape(3)
                out[d.joint] = positions[:, j] + rotations[:, j] @ offset
            elif d.rule == "extend":
                bone = out[p["to"]] - out[p["from"]]
                unit = bone / np.maximum(np.linalg.norm(bone, axis=-1, keepdims=True), 1e-9)
                out[d.joint] = out[p["to"]] + float(p["length_m"]) * unit
            elif d.rule == "ground_forward":
                across = out["left_hip"] - out["right_hip"]
                fwd = np.cross(across, _UP)
                fwd[:, 1] = 0.0
                fwd /= np.maximum(np.linalg.norm(fwd, axis=-1, keepdims=True), 1e-9)
                out[d.joint] = out[p["from"]] + float(p["length_m"]) * fwd - float(p["drop_m"]) * _UP
        result = np.stack([out[name] for name in JOINT_NAMES], axis=1)
        assert result.shape == (n, len(JOINT_NAMES), 3)
        return result


def available_skeleton_maps() -> list[str]:
    """Names of the skeleton maps shipped with the package (``data/skeletons/*.yaml``)."""
    folder = resources.files("momask_model.data").joinpath("skeletons")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_skeleton_map(name_or_path: str | Path | SkeletonMap) -> SkeletonMap:
    """A shipped map by name (``cmu``, ``mixamo``, ``deepmimic_humanoid3d``) or a YAML path."""
    if isinstance(name_or_path, SkeletonMap):
        return name_or_path
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return SkeletonMap.from_yaml(path)
    resource = resources.files("momask_model.data").joinpath("skeletons", f"{name_or_path}.yaml")
    if not resource.is_file():
        raise SkeletonMapError(
            f"no skeleton map named {str(name_or_path)!r}; shipped: {available_skeleton_maps()}"
        )
    with resources.as_file(resource) as real:
        return SkeletonMap.from_yaml(real)


def poses_to_humanml3d_joints(
    poses: PoseSequence,
    skeleton_map: SkeletonMap,
    *,
    world_to_target: np.ndarray,
    scale_m: float,
    normalize: bool,
) -> np.ndarray:
    """Source poses -> (N, 22, 3) HumanML3D joints [m, Y up].

    Forward kinematics, then ``scale_m`` (metres per source unit), then the world rotation
    ``world_to_target`` (3x3, must be proper: a reflection would swap left and right), then the
    skeleton map, then optionally ``motion.normalize_joint_positions`` (floor at y = 0, first
    root at the origin, first frame facing +Z), which is what ``joints_to_features`` does.
    """
    if not np.isclose(np.linalg.det(world_to_target), 1.0, atol=1e-6):
        raise ValueError("the axis change must be a proper rotation (det +1): a reflection would swap left and right")
    pos, rot = forward_kinematics(poses)
    pos = scale_m * pos @ world_to_target.T
    rot = world_to_target @ rot
    joints = skeleton_map.apply(pos, rot, poses.skeleton.joint_names)
    return normalize_joint_positions(joints) if normalize else joints
