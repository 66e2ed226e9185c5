"""BVH export of generated joint positions (T, 22, 3) [m, Y-up], exact and with sensible rotations.

MoMask produces joint positions, and its bones are not rigid: over a 30 s demo walk a bone's length
spans up to 17-20 cm (shin, hand; std up to 3 cm, median range 7-9 cm; ``benchmarks/bench_bvh.py``).
A file with only rotations on a fixed skeleton cannot reproduce such positions (it is off by up to
17-19 cm, 1.8 cm on average), so every joint carries a translation channel as well (its position in
its parent's frame): any reader that honours the channels (Blender, this project's ``bvh_to_joints``)
gets the positions back exactly. ``OFFSET`` holds a clean rest skeleton (mean bone lengths, T-pose
arms, legs straight down), so a reader that keeps only rotations still shows the motion, with fixed
bones. ``translations="root"`` writes that classic rotations-only file instead.

Rotations are chosen to read well, not only to point bones (``joint_rotations``):

* pelvis and upper chest (the two joints with several children) get the frame their children span
  (left-right axis, then up), so the rest pose's hip and collar offsets are the motion's own;
* every other bone turns by the smallest rotation from its parent (no twist), except that
* thighs and upper arms twist about their own axis so that the knee and elbow bend about the
  joint's local x axis (a hinge, the sign kept continuous through straight limbs), and
* feet keep their left-right axis horizontal, so a foot is flat whenever the motion's foot is.

Joint names are those of the official MoMask BVH template (Hips, LeftUpLeg, ... RightHand), which
its Blender bone maps expect; ``momask_model/data/skeletons/momask.yaml`` maps them back, so the
project's importer reads the files without a hand-written map.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from momask_model.motion.skeleton import T2M_SKELETON

__all__ = ["BVH_JOINT_NAMES", "BvhExportError", "joint_rotations", "rest_offsets", "save_bvh", "write_bvh_text"]

#: Official MoMask template names, in SMPL (HumanML3D) joint order.
BVH_JOINT_NAMES: tuple[str, ...] = (
    "Hips", "LeftUpLeg", "RightUpLeg", "Spine", "LeftLeg", "RightLeg", "Spine1", "LeftFoot", "RightFoot",
    "Spine2", "LeftToe", "RightToe", "Neck", "LeftShoulder", "RightShoulder", "Head", "LeftArm", "RightArm",
    "LeftForeArm", "RightForeArm", "LeftHand", "RightHand",
)

PARENTS = T2M_SKELETON.parents
_UP = np.array([0.0, 1.0, 0.0])
_LEFT, _FORWARD = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])  # HumanML3D: +X left, +Z forward
_FRAMED = {0: (1, 2, 3), 9: (13, 14, 12)}  # joint: (left child, right child, up child)
# Rest directions of the bones that are not measured (the bone from the parent to this joint).
_REST_DIR = {
    4: -_UP, 5: -_UP, 7: -_UP, 8: -_UP,            # legs straight down
    6: _UP, 9: _UP, 15: _UP,                       # spine and head straight up
    16: _LEFT, 18: _LEFT, 20: _LEFT,               # T-pose arms
    17: -_LEFT, 19: -_LEFT, 21: -_LEFT,
}
# Joints whose twist makes the next joint a hinge: joint -> (child, grandchild, rest bend direction).
_HINGES = {1: (4, 7, -_FORWARD), 2: (5, 8, -_FORWARD), 16: (18, 20, _FORWARD), 17: (19, 21, _FORWARD)}
_FEET = {7: 10, 8: 11}  # ankle -> toe
# Upper arms swing from a reference direction (in the collar's frame) instead of the T-pose one: the
# smallest rotation is undefined opposite its reference, and an arm across the chest is common while
# one up, back and across (opposite this reference) is out of reach.
_SWING_REF = {16: np.array([1.0, -1.0, 1.0]) / np.sqrt(3), 17: np.array([-1.0, -1.0, 1.0]) / np.sqrt(3)}
_END_SITE_M = {10: 0.05, 11: 0.05, 15: 0.10, 20: 0.08, 21: 0.08}


class BvhExportError(ValueError):
    """Input to the BVH exporter is unusable (wrong shape, NaN, bad option)."""


def _check(joints: np.ndarray) -> np.ndarray:
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (22, 3) or joints.shape[0] < 1:
        raise BvhExportError(f"joints must have shape (T, 22, 3), got {joints.shape}")
    if not np.isfinite(joints).all():
        raise BvhExportError("joints contain NaN or inf")
    return joints


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _children(j: int) -> list[int]:
    return [c for c, p in enumerate(PARENTS) if p == j]


def _frame(left: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Rotation matrices (T, 3, 3) whose columns are the left axis, the up axis made orthogonal, forward."""
    x = _unit(left)
    y = _unit(up - (up * x).sum(-1, keepdims=True) * x)
    return np.stack([x, y, np.cross(x, y)], axis=-1)


def _swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotations (T, 3, 3) taking unit vectors a to unit vectors b."""
    axis = np.cross(a, b)
    sin, cos = np.linalg.norm(axis, axis=-1), (a * b).sum(-1)
    angle = np.arctan2(sin, cos)
    # opposite vectors: any axis perpendicular to a
    fallback = np.cross(a, np.where(np.abs(a[:, :1]) < 0.9, _LEFT, _UP))
    axis = np.where((sin < 1e-9)[:, None], fallback, axis)
    return Rotation.from_rotvec(_unit(axis) * angle[:, None]).as_matrix()


def _basis(axis: np.ndarray, across: np.ndarray) -> np.ndarray:
    """Rotation matrices (T, 3, 3) with columns across, axis x across, axis (unit, orthogonal inputs)."""
    return np.stack([across, np.cross(axis, across), axis], axis=-1)


def _signed_angle(have: np.ndarray, want: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Angle (T,) [rad] turning ``have`` onto ``want`` about ``axis`` (all (T, 3), both ⟂ axis)."""
    return np.arctan2((np.cross(have, want) * axis).sum(-1), (have * want).sum(-1))


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _framed_offsets(joints: np.ndarray, j: int) -> dict[int, np.ndarray]:
    """Mean offsets of a framed joint's children in the joint's own frame (the motion's own geometry)."""
    left, right, up = _FRAMED[j]
    frame = _frame(joints[:, left] - joints[:, right], joints[:, up] - joints[:, j])
    return {c: np.einsum("tba,tb->a", frame, joints[:, c] - joints[:, j]) / len(joints) for c in _children(j)}


def _foot_pitch(joints: np.ndarray, ankle: int, toe: int) -> float:
    """Standing pitch of the ankle->toe bone [rad], measured on frames with the toe near its lowest."""
    bone = joints[:, toe] - joints[:, ankle]
    pitch = np.arcsin(np.clip(-bone[:, 1] / np.maximum(np.linalg.norm(bone, axis=-1), 1e-12), -1, 1))
    low = joints[:, toe, 1] <= joints[:, toe, 1].min() + 0.02
    return float(np.median(pitch[low]))


def rest_offsets(joints: np.ndarray) -> np.ndarray:
    """Rest skeleton (22, 3) [m]: each joint's offset from its parent.

    Mean bone lengths; hips, spine, neck and collars where the motion has them relative to the pelvis
    and chest frames; legs down, arms out (T-pose), feet forward at their standing pitch.
    """
    joints = _check(joints)
    offsets = np.zeros((22, 3))
    for j in _FRAMED:
        for c, off in _framed_offsets(joints, j).items():
            offsets[c] = off
    for j, direction in _REST_DIR.items():
        offsets[j] = direction * np.linalg.norm(joints[:, j] - joints[:, PARENTS[j]], axis=-1).mean()
    for ankle, toe in _FEET.items():
        pitch = _foot_pitch(joints, ankle, toe)
        length = np.linalg.norm(joints[:, toe] - joints[:, ankle], axis=-1).mean()
        offsets[toe] = length * np.array([0.0, -np.sin(pitch), np.cos(pitch)])
    return offsets


def joint_rotations(joints: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
    """World rotation matrices (T, 22, 3, 3) of every joint (rules in the module docstring).

    The rest skeleton ``offsets`` (default :func:`rest_offsets`) has identity rotations; the rotation of a
    joint with one child maps that child's rest offset direction onto the motion's bone direction.
    """
    joints = _check(joints)
    offsets = rest_offsets(joints) if offsets is None else offsets
    T = len(joints)
    glob = np.zeros((T, 22, 3, 3))
    for j in range(22):  # parents precede children in SMPL order
        p = PARENTS[j]
        parent = glob[:, p] if p >= 0 else np.broadcast_to(np.eye(3), (T, 3, 3))
        kids = _children(j)
        if j in _FRAMED:
            left, right, up = _FRAMED[j]
            glob[:, j] = _frame(joints[:, left] - joints[:, right], joints[:, up] - joints[:, j])
            continue
        if not kids:  # a leaf: no bone to point, keep the parent's orientation
            glob[:, j] = parent
            continue
        child = kids[0]
        rest_dir = _unit(offsets[child])
        bone = _unit(joints[:, child] - joints[:, j])
        ref = _SWING_REF.get(j, rest_dir)
        to_ref = _swing(rest_dir[None], ref[None])[0]
        rot = _swing(np.einsum("tab,b->ta", parent, ref), bone) @ parent @ to_ref
        if j in _HINGES:
            _, grandchild, bend_rest = _HINGES[j]
            have = np.einsum("tab,b->ta", rot, bend_rest)
            nxt = joints[:, grandchild] - joints[:, child]
            perp = nxt - (nxt * bone).sum(-1, keepdims=True) * bone
            sin_bend = np.linalg.norm(perp, axis=-1) / np.maximum(np.linalg.norm(nxt, axis=-1), 1e-12)
            angle = _signed_angle(have, _unit(perp), bone)
            # the bend direction is noise below ~6 degrees of bend and sure above ~20: where it is
            # unsure, the twist is carried over in time from the frames where it is sure
            sure = np.clip((sin_bend - 0.1) / 0.24, 0.0, 1.0)
            good = np.flatnonzero(sure >= 0.5)
            if len(good):
                unwrapped = np.unwrap(angle[good])
                held = np.interp(np.arange(T), good, unwrapped)
                angle = sure * (held + _wrap(angle - held)) + (1.0 - sure) * held
            else:
                angle = np.zeros(T)
            rot = Rotation.from_rotvec(bone * angle[:, None]).as_matrix() @ rot
        elif j in _FEET:
            level = np.cross(_UP, bone)  # horizontal and across the foot
            # a foot pointing up or down has no level axis: it takes the knee's (the ankle's own hinge axis)
            knee_axis = np.einsum("tab,b->ta", parent, _LEFT)
            knee_axis = _unit(knee_axis - (knee_axis * bone).sum(-1, keepdims=True) * bone)
            agree = (_unit(level) * knee_axis).sum(-1)
            level = np.where((agree < 0)[:, None], -level, level)  # upside down: the same side as the knee's
            # level only where it is well defined and close to the knee's axis (not for a leg held sideways)
            weight = (np.clip((np.linalg.norm(level, axis=-1) - 0.1) / 0.3, 0.0, 1.0)
                      * np.clip((np.abs(agree) - 0.3) / 0.4, 0.0, 1.0))[:, None]
            across = _unit(weight * _unit(level) + (1.0 - weight) * knee_axis)
            rot = _basis(bone, across) @ _basis(rest_dir[None], _LEFT[None])[0].T
        glob[:, j] = rot
    return glob


def write_bvh_text(joints: np.ndarray, *, fps: float = 20.0, translations: str = "all") -> str:
    """The BVH file content for ``joints`` (T, 22, 3) [m, Y-up]; see :func:`save_bvh`."""
    joints = _check(joints)
    if translations not in ("all", "root"):
        raise BvhExportError(f"translations must be 'all' or 'root', got {translations!r}")
    if not fps > 0:
        raise BvhExportError(f"fps must be positive, got {fps}")
    offsets = rest_offsets(joints)
    glob = joint_rotations(joints, offsets)
    T = len(joints)
    local_rot = np.empty_like(glob)
    local_pos = np.empty((T, 22, 3))
    for j, p in enumerate(PARENTS):
        if p < 0:
            local_rot[:, j], local_pos[:, j] = glob[:, j], joints[:, j]
        else:
            local_rot[:, j] = np.swapaxes(glob[:, p], -1, -2) @ glob[:, j]
            local_pos[:, j] = np.einsum("tba,tb->ta", glob[:, p], joints[:, j] - joints[:, p])
    euler = Rotation.from_matrix(local_rot.reshape(-1, 3, 3)).as_euler("ZYX", degrees=True).reshape(T, 22, 3)

    lines = ["HIERARCHY"]
    order: list[int] = []
    pos_channels = "Xposition Yposition Zposition"
    rot_channels = "Zrotation Yrotation Xrotation"

    def emit(j: int, depth: int) -> None:
        order.append(j)
        pad = "  " * depth
        lines.append(f"{pad}{'ROOT' if PARENTS[j] < 0 else 'JOINT'} {BVH_JOINT_NAMES[j]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET " + " ".join(f"{v:.6f}" for v in offsets[j]))
        if PARENTS[j] < 0 or translations == "all":
            lines.append(f"{pad}  CHANNELS 6 {pos_channels} {rot_channels}")
        else:
            lines.append(f"{pad}  CHANNELS 3 {rot_channels}")
        kids = _children(j)
        for c in kids:
            emit(c, depth + 1)
        if not kids:
            end = _unit(offsets[j]) * _END_SITE_M.get(j, 0.05)
            lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET " + " ".join(f"{v:.6f}" for v in end),
                          f"{pad}  }}"])
        lines.append(f"{pad}}}")

    emit(0, 0)
    lines += ["MOTION", f"Frames: {T}", f"Frame Time: {1.0 / fps:.6f}"]
    for t in range(T):
        vals: list[float] = []
        for j in order:
            if PARENTS[j] < 0 or translations == "all":
                vals.extend(local_pos[t, j])
            vals.extend(euler[t, j])
        lines.append(" ".join(f"{v:.6f}" for v in vals))
    return "\n".join(lines) + "\n"


def save_bvh(joints: np.ndarray, path: str | Path, *, fps: float = 20.0, translations: str = "all") -> Path:
    """Write joint positions (T, 22, 3) [m, Y-up] as a BVH file (metres, ZYX Euler channels in degrees).

    ``translations="all"`` (default) gives every joint position channels, so the file reproduces the
    positions exactly; ``"root"`` writes rotations only below the root (fixed rest bone lengths).
    """
    text = write_bvh_text(joints, fps=fps, translations=translations)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
