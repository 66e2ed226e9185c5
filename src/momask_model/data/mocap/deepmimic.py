"""DeepMimic motion clips (JSON key frames of the humanoid3d character) -> HumanML3D joints.

File format (``motions/humanoid3d_<skill>.txt``): ``{"Loop": "wrap"|"none", "Frames": [[...], ...]}``.
Each frame is ``duration [s]``, then every joint of the character in ID order: the root as
position (3, metres) + world quaternion (4, w x y z); spherical joints as a quaternion (4) relative
to the parent; revolute joints (knees, elbows) as one angle [rad] about the joint's local Z;
fixed joints (wrists) contribute nothing. For humanoid3d that is 44 numbers. The skeleton comes
from the character file (``characters/humanoid3d.txt``: ``Skeleton.Joints`` with ``Parent`` and
``AttachX/Y/Z`` offsets).

The world is Y up like HumanML3D, but the character's rest pose faces +X with its right side at
+Z. HumanML3D faces +Z with the left side at +X, so the converter turns the world by -90° about
+Y (x -> z, z -> -x): a proper rotation, never a reflection, so left stays left.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from momask_model.data.mocap.errors import MocapFormatError
from momask_model.data.mocap.kinematics import (
    PoseSequence,
    SourceSkeleton,
    loop_cycles,
    resample,
)
from momask_model.data.mocap.skeleton_map import SkeletonMap, load_skeleton_map, poses_to_humanml3d_joints

logger = logging.getLogger(__name__)

__all__ = ["DeepMimicCharacter", "DeepMimicClip", "load_deepmimic_character", "load_deepmimic_clip", "deepmimic_to_joints", "DEEPMIMIC_TO_HUMANML3D"]

#: World rotation from the DeepMimic frame (faces +X, right +Z, Y up) to HumanML3D's (faces +Z,
#: left +X, Y up): -90° about +Y. Columns are the images of x, y, z.
DEEPMIMIC_TO_HUMANML3D = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])

_DOFS = {"none": 7, "spherical": 4, "revolute": 1, "fixed": 0}


@dataclass(frozen=True)
class DeepMimicCharacter:
    """Skeleton of a DeepMimic character: names, parents, attach offsets [m], joint types."""

    skeleton: SourceSkeleton
    offsets_m: np.ndarray  # (J, 3)
    types: tuple[str, ...]

    @property
    def frame_size(self) -> int:
        """Numbers per key frame: duration + every joint's degrees of freedom."""
        return 1 + sum(_DOFS[t] for t in self.types)


@dataclass(frozen=True)
class DeepMimicClip:
    """One parsed clip: the pose key frames and whether it may be looped."""

    name: str
    poses: PoseSequence
    loop: bool
    path: Path


def _read_json(path: Path) -> object:
    try:
        text = path.read_text()
    except OSError as exc:
        raise MocapFormatError(path, "", f"cannot read file: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MocapFormatError(path, f"line {exc.lineno}", f"invalid JSON: {exc.msg}") from exc


def load_deepmimic_character(path: str | Path) -> DeepMimicCharacter:
    """Read ``Skeleton.Joints`` of a DeepMimic character file.

    Raises:
        MocapFormatError: missing keys, unknown joint type, parents out of order, non-zero
            ``AttachTheta`` (a rotated attach frame, which no humanoid file uses).
    """
    path = Path(path)
    data = _read_json(path)
    try:
        joints = data["Skeleton"]["Joints"]  # type: ignore[index]
    except (KeyError, TypeError) as exc:
        raise MocapFormatError(path, "key 'Skeleton.Joints'", "missing") from exc
    names, parents, offsets, types = [], [], [], []
    for i, joint in enumerate(joints):
        key = f"key 'Skeleton.Joints[{i}]'"
        try:
            if int(joint["ID"]) != i:
                raise MocapFormatError(path, key, f"joint IDs must be 0..J-1 in order, got ID {joint['ID']}")
            jtype = str(joint["Type"])
            if jtype not in _DOFS:
                raise MocapFormatError(path, key + ".Type", f"unknown joint type {jtype!r} (known: {sorted(_DOFS)})")
            theta = [float(joint.get(f"AttachTheta{a}", 0.0)) for a in "XYZ"]
            if any(abs(t) > 1e-9 for t in theta):
                raise MocapFormatError(path, key, f"non-zero AttachTheta {theta} is not supported")
            names.append(str(joint["Name"]))
            parents.append(int(joint["Parent"]))
            offsets.append([float(joint[f"Attach{a}"]) for a in "XYZ"])
            types.append(jtype)
        except (KeyError, TypeError, ValueError) as exc:
            raise MocapFormatError(path, key, f"bad or missing field: {exc}") from exc
    try:
        skeleton = SourceSkeleton(tuple(names), tuple(parents))
    except ValueError as exc:
        raise MocapFormatError(path, "key 'Skeleton.Joints'", str(exc)) from exc
    if types[0] != "none":
        raise MocapFormatError(path, "key 'Skeleton.Joints[0].Type'", f"the root must have type 'none', got {types[0]!r}")
    return DeepMimicCharacter(skeleton, np.asarray(offsets, dtype=np.float64), tuple(types))


def load_deepmimic_clip(path: str | Path, character: DeepMimicCharacter) -> DeepMimicClip:
    """Parse a DeepMimic motion file into key-framed poses (source frame: Y up, faces +X).

    Key times are the running sum of the per-frame durations (the last frame's duration, 0 in
    these files, is unused).

    Raises:
        MocapFormatError: naming the file and the key or frame index that is wrong (missing
            ``Frames``, wrong number of values in a frame, non-finite values, zero-length quaternion,
            non-positive duration).
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict) or "Frames" not in data:
        raise MocapFormatError(path, "key 'Frames'", "missing")
    loop_value = data.get("Loop", "none")
    if loop_value not in ("wrap", "none"):
        raise MocapFormatError(path, "key 'Loop'", f"expected 'wrap' or 'none', got {loop_value!r}")
    frames = data["Frames"]
    if not isinstance(frames, list) or len(frames) < 2:
        raise MocapFormatError(path, "key 'Frames'", "needs a list of at least 2 key frames")
    size = character.frame_size
    rows = []
    for i, frame in enumerate(frames):
        if not isinstance(frame, list) or len(frame) != size:
            got = len(frame) if isinstance(frame, list) else type(frame).__name__
            raise MocapFormatError(path, f"key 'Frames[{i}]'", f"expected {size} numbers per frame, got {got}")
        try:
            row = np.asarray(frame, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise MocapFormatError(path, f"key 'Frames[{i}]'", f"non-numeric value: {exc}") from exc
        if not np.isfinite(row).all():
            raise MocapFormatError(path, f"key 'Frames[{i}]'", "contains NaN or infinity")
        rows.append(row)
    table = np.stack(rows)
    durations = table[:-1, 0]
    bad = np.flatnonzero(durations <= 0)
    if bad.size:
        raise MocapFormatError(path, f"key 'Frames[{bad[0]}]'", f"frame duration must be > 0, got {durations[bad[0]]}")
    times = np.concatenate(([0.0], np.cumsum(durations)))

    n, j = len(table), character.skeleton.joints_num
    trans = np.broadcast_to(character.offsets_m, (n, j, 3)).copy()
    quats = np.zeros((n, j, 4))
    quats[..., 0] = 1.0
    col = 1
    for k, jtype in enumerate(character.types):
        if jtype == "none":
            trans[:, k] = table[:, col : col + 3]
            quats[:, k] = table[:, col + 3 : col + 7]
        elif jtype == "spherical":
            quats[:, k] = table[:, col : col + 4]
        elif jtype == "revolute":
            half = table[:, col] / 2
            quats[:, k] = np.stack((np.cos(half), np.zeros(n), np.zeros(n), np.sin(half)), -1)
        col += _DOFS[jtype]
    norms = np.linalg.norm(quats, axis=-1)
    bad_frame, bad_joint = np.nonzero(norms < 1e-6)
    if bad_frame.size:
        raise MocapFormatError(
            path,
            f"key 'Frames[{bad_frame[0]}]'",
            f"zero quaternion for joint {character.skeleton.joint_names[bad_joint[0]]!r}",
        )
    quats /= norms[..., None]
    poses = PoseSequence(character.skeleton, times, trans, quats)
    name = path.stem.removeprefix("humanoid3d_")
    return DeepMimicClip(name=name, poses=poses, loop=loop_value == "wrap", path=path)


def deepmimic_to_joints(
    clip: DeepMimicClip,
    *,
    skeleton_map: SkeletonMap | str = "deepmimic_humanoid3d",
    fps: float = 20.0,
    cycles: int = 1,
    speed: float = 1.0,
    blend_s: float = 0.2,
    min_turn_deg: float = 15.0,
    extra_turn_deg: float = 0.0,
    normalize: bool = True,
) -> np.ndarray:
    """HumanML3D-style joint positions of a clip.

    Steps: loop ``cycles`` times (wrap clips only, carrying the root's displacement and heading
    over and closing the pose seam over ``blend_s``; per-cycle turns under ``min_turn_deg`` are
    capture non-closure, not carried, see ``kinematics.loop_cycles``); resample to ``fps`` at ``speed``; forward
    kinematics; turn the world so the rest pose faces +Z with the left at +X; map to 22 joints;
    optionally floor/origin/facing normalisation (``motion.normalize_joint_positions``, as
    ``joints_to_features`` does).

    Args:
        clip: from :func:`load_deepmimic_clip`.
        skeleton_map: a map or the name of a shipped one.
        fps: output frame rate (HumanML3D: 20).
        cycles: repetitions of a ``wrap`` clip; must be 1 for a ``none`` clip.
        speed: playback speed factor (> 1 faster, fewer frames).
        blend_s: seconds before each seam over which the cycle is closed (0: no blending).
        min_turn_deg: smallest per-cycle heading change carried over to the next cycle.
        extra_turn_deg: heading change added per cycle (augmentation, see ``loop_cycles``).
        normalize: apply floor, origin and facing normalisation.

    Returns:
        (N, 22, 3) float64, metres, Y up.
    """
    if cycles > 1 and not clip.loop:
        raise ValueError(f"clip {clip.name!r} has Loop 'none' and cannot be repeated ({cycles} cycles asked)")
    poses = clip.poses
    if cycles > 1:
        mean_dt = poses.duration_s / max(poses.frames - 1, 1)
        poses = loop_cycles(
            poses, cycles, blend_frames=int(round(blend_s / mean_dt)),
            min_turn_deg=min_turn_deg,
            extra_turn_deg=extra_turn_deg,
        )
    poses = resample(poses, fps, speed=speed)
    return poses_to_humanml3d_joints(
        poses, load_skeleton_map(skeleton_map), world_to_target=DEEPMIMIC_TO_HUMANML3D, scale_m=1.0, normalize=normalize
    )

