"""Skeletons and the HumanML3D motion representation (design/momask.md §1.3–1.6).

MoMask never sees joint positions: every model reads and writes the HumanML3D feature vector
(263-d for the 22-joint SMPL skeleton, 251-d for KIT). This module is the single place that knows
that layout. It converts features back to joints (``features_to_joints``, the exact
``recover_from_ric``), extracts features from joints (``joints_to_features``, the HumanML3D
``process_file`` recipe including its quirks), normalises features (``Normalizer``,
``compute_mean_std``) and mirrors motions and captions for left/right augmentation.

Conventions, kept identical to the data the released checkpoints were trained on:

* positions are metres, Y up, the body faces +Z and its left side is at +X;
* quaternions are (w, x, y, z), Hamilton product, ``qrot(q, v) = v + 2 (w u×v + u×(u×v))``;
* feature frame ``t`` is built from position frames ``t`` and ``t+1`` (N positions -> N-1 frames).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence, TypeVar

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from .quaternion import qinv as _np_qinv, qmul as _np_qmul, qrot as _np_qrot

logger = logging.getLogger(__name__)

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


class InvalidMotionError(ValueError):
    """A motion array has the wrong shape, too few frames, or non-finite values."""


# ---------------------------------------------------------------------------------------------
# Skeletons
# ---------------------------------------------------------------------------------------------

JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
)
"""The 22 HumanML3D joints in SMPL order (``left_foot``/``right_foot`` are the toes)."""


def _parents_from_chains(joints_num: int, chains: Sequence[Sequence[int]]) -> tuple[int, ...]:
    parents = [-2] * joints_num
    parents[chains[0][0]] = -1
    for chain in chains:
        for parent, child in zip(chain[:-1], chain[1:]):
            parents[child] = parent
    missing = [j for j, p in enumerate(parents) if p == -2]
    if missing:
        raise ValueError(f"kinematic chains do not reach joints {missing}")
    return tuple(parents)


@dataclass(frozen=True)
class SkeletonSpec:
    """Everything the feature extraction needs to know about a skeleton.

    Attributes:
        name: dataset name (``t2m`` or ``kit``).
        joints_num: number of joints J (root is joint 0).
        parents: parent index per joint, -1 for the root (derived from the chains).
        kinematic_chain: chains from a root-ish joint to an end effector; the IK walks them in order
            and restarts the accumulated rotation at the root rotation for every chain (as HumanML3D).
        raw_offsets: (J, 3) unit rest direction of each joint from its parent; the IK rotates it
            onto the observed bone direction.
        face_joint_indx: (r_hip, l_hip, r_shoulder, l_shoulder) used to find the facing direction.
        fid_l, fid_r: (ankle, toe) joint indices of the left and right foot, for foot contacts.
        foot_threshold: squared per-frame displacement [m²] below which a foot joint is in contact.
        mirror_pairs: (left, right) joint index pairs swapped by ``mirror_joints``.
    """

    name: str
    joints_num: int
    parents: tuple[int, ...]
    kinematic_chain: tuple[tuple[int, ...], ...]
    raw_offsets: tuple[tuple[float, float, float], ...]
    face_joint_indx: tuple[int, int, int, int]
    fid_l: tuple[int, int]
    fid_r: tuple[int, int]
    foot_threshold: float
    mirror_pairs: tuple[tuple[int, int], ...] = ()

    @property
    def feature_dim(self) -> int:
        return feature_dim(self.joints_num)

    @property
    def raw_offsets_array(self) -> np.ndarray:
        return np.asarray(self.raw_offsets, dtype=np.float64)


_T2M_CHAINS = ((0, 2, 5, 8, 11), (0, 1, 4, 7, 10), (0, 3, 6, 9, 12, 15), (9, 14, 17, 19, 21), (9, 13, 16, 18, 20))
_T2M_OFFSETS = (
    (0, 0, 0), (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, -1, 0), (0, 1, 0), (0, -1, 0),
    (0, -1, 0), (0, 1, 0), (0, 0, 1), (0, 0, 1), (0, 1, 0), (1, 0, 0), (-1, 0, 0), (0, 0, 1),
    (0, -1, 0), (0, -1, 0), (0, -1, 0), (0, -1, 0), (0, -1, 0), (0, -1, 0),
)
T2M_SKELETON = SkeletonSpec(
    name="t2m",
    joints_num=22,
    parents=_parents_from_chains(22, _T2M_CHAINS),
    kinematic_chain=_T2M_CHAINS,
    raw_offsets=tuple(tuple(float(c) for c in o) for o in _T2M_OFFSETS),  # type: ignore[misc]
    face_joint_indx=(2, 1, 17, 16),
    fid_l=(7, 10),
    fid_r=(8, 11),
    foot_threshold=0.002,
    mirror_pairs=((1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21)),
)

_KIT_CHAINS = ((0, 11, 12, 13, 14, 15), (0, 16, 17, 18, 19, 20), (0, 1, 2, 3, 4), (3, 5, 6, 7), (3, 8, 9, 10))
_KIT_OFFSETS = (
    (0, 0, 0), (0, 1, 0), (0, 1, 0), (0, 1, 0), (0, 1, 0), (1, 0, 0), (0, -1, 0), (0, -1, 0),
    (-1, 0, 0), (0, -1, 0), (0, -1, 0), (1, 0, 0), (0, -1, 0), (0, -1, 0), (0, 0, 1), (0, 0, 1),
    (-1, 0, 0), (0, -1, 0), (0, -1, 0), (0, 0, 1), (0, 0, 1),
)
KIT_SKELETON = SkeletonSpec(
    name="kit",
    joints_num=21,
    parents=_parents_from_chains(21, _KIT_CHAINS),
    kinematic_chain=_KIT_CHAINS,
    raw_offsets=tuple(tuple(float(c) for c in o) for o in _KIT_OFFSETS),  # type: ignore[misc]
    face_joint_indx=(11, 16, 5, 8),
    fid_l=(19, 20),
    fid_r=(14, 15),
    foot_threshold=0.05,
    mirror_pairs=((11, 16), (12, 17), (13, 18), (14, 19), (15, 20), (5, 8), (6, 9), (7, 10)),
)

_SKELETONS = {22: T2M_SKELETON, 21: KIT_SKELETON}


def skeleton_for(joints_num: int) -> SkeletonSpec:
    """The known skeleton with ``joints_num`` joints (22: HumanML3D, 21: KIT)."""
    try:
        return _SKELETONS[joints_num]
    except KeyError:
        raise InvalidMotionError(f"no skeleton with joints_num={joints_num}; known: {sorted(_SKELETONS)}") from None


def feature_dim(joints_num: int) -> int:
    """Length of one feature frame: 4 root + 3(J-1) ric + 6(J-1) rot + 3J vel + 4 contacts."""
    if joints_num < 2:
        raise InvalidMotionError(f"joints_num must be >= 2, got {joints_num}")
    return 4 + 9 * (joints_num - 1) + 3 * joints_num + 4


def feature_slices(joints_num: int) -> dict[str, slice]:
    """The seven feature groups (§1.3), in order; their std is replaced by the group mean."""
    j = joints_num
    ric_end = 4 + 3 * (j - 1)
    rot_end = ric_end + 6 * (j - 1)
    vel_end = rot_end + 3 * j
    return {
        "root_rot_vel": slice(0, 1),
        "root_lin_vel": slice(1, 3),
        "root_y": slice(3, 4),
        "ric": slice(4, ric_end),
        "rot6d": slice(ric_end, rot_end),
        "local_vel": slice(rot_end, vel_end),
        "foot_contact": slice(vel_end, vel_end + 4),
    }


def joints_num_from_dim(dim: int) -> int:
    """Inverse of ``feature_dim`` (D = 12J - 1)."""
    if (dim + 1) % 12 != 0 or dim < feature_dim(2):
        raise InvalidMotionError(f"feature size {dim} is not 12*J-1 for any joint count J")
    return (dim + 1) // 12


# ---------------------------------------------------------------------------------------------
# Quaternion helpers beyond momask_model.quaternion: numpy for extraction, torch for recovery
# ---------------------------------------------------------------------------------------------


def _np_normalize(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    if np.any(norm < 1e-12):
        raise InvalidMotionError("cannot normalise a zero-length vector (coincident joints or a degenerate pose)")
    return v / norm


def _np_qbetween(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Shortest-arc rotation taking direction ``a`` onto ``b``: normalize([|a||b| + a·b, a×b])."""
    w = np.sqrt((a * a).sum(-1, keepdims=True) * (b * b).sum(-1, keepdims=True)) + (a * b).sum(-1, keepdims=True)
    return _np_normalize(np.concatenate((w, np.cross(a, b)), axis=-1))


def _np_quat_to_cont6d(q: np.ndarray) -> np.ndarray:
    """First two columns [col0, col1] of the rotation matrix of unit quaternions q (..., 4)."""
    w, x, y, z = np.moveaxis(q, -1, 0)
    col0 = np.stack((1 - 2 * (y * y + z * z), 2 * (x * y + w * z), 2 * (x * z - w * y)), axis=-1)
    col1 = np.stack((2 * (x * y - w * z), 1 - 2 * (x * x + z * z), 2 * (y * z + w * x)), axis=-1)
    return np.concatenate((col0, col1), axis=-1)


def cont6d_to_matrix(cont6d: ArrayT) -> ArrayT:
    """6D rotation -> (…, 3, 3) matrix by Gram–Schmidt (§1.5): x = n(c0), z = n(x × c1), y = z × x."""
    if isinstance(cont6d, torch.Tensor):
        x = torch.nn.functional.normalize(cont6d[..., 0:3], dim=-1)
        z = torch.nn.functional.normalize(torch.cross(x, cont6d[..., 3:6], dim=-1), dim=-1)
        y = torch.cross(z, x, dim=-1)
        return torch.stack((x, y, z), dim=-1)
    x = _np_normalize(cont6d[..., 0:3])
    z = _np_normalize(np.cross(x, cont6d[..., 3:6]))
    y = np.cross(z, x)
    return np.stack((x, y, z), axis=-1)


def _torch_qrot(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    u = q[..., 1:]
    uv = torch.cross(u, v, dim=-1)
    return v + 2.0 * (q[..., :1] * uv + torch.cross(u, uv, dim=-1))


def _torch_qinv(q: torch.Tensor) -> torch.Tensor:
    return torch.cat((q[..., :1], -q[..., 1:]), dim=-1)


# ---------------------------------------------------------------------------------------------
# Features -> joints (recover_root_rot_pos / recover_from_ric, §1.6)
# ---------------------------------------------------------------------------------------------


def _check_features(features: np.ndarray | torch.Tensor, joints_num: int) -> None:
    dim = feature_dim(joints_num)
    if features.ndim < 2 or features.shape[-1] != dim:
        raise InvalidMotionError(
            f"features must have shape (..., T, {dim}) for joints_num={joints_num}, got {tuple(features.shape)}"
        )
    finite = torch.isfinite(features).all() if isinstance(features, torch.Tensor) else np.isfinite(features).all()
    if not bool(finite):
        raise InvalidMotionError("features contain NaN or infinite values")


def recover_root_rot_pos(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Root heading quaternions (…, T, 4) and root positions (…, T, 3) from features (§1.6 steps 1–4)."""
    half_yaw_vel = features[..., 0]
    # Exclusive cumulative sum: frame 0 has heading 0, frame t the sum of the first t increments.
    # Shift, then sum (as the official code): ``cumsum(x) - x`` rounds differently (2.6e-5 m on a
    # fast spin), so the same features would give other joints.
    shifted = torch.zeros_like(half_yaw_vel)
    shifted[..., 1:] = half_yaw_vel[..., :-1]
    half_yaw = torch.cumsum(shifted, dim=-1)
    zeros = torch.zeros_like(half_yaw)
    r_rot = torch.stack((torch.cos(half_yaw), zeros, torch.sin(half_yaw), zeros), dim=-1)

    vel = torch.zeros(features.shape[:-1] + (3,), dtype=features.dtype, device=features.device)
    vel[..., 1:, 0] = features[..., :-1, 1]
    vel[..., 1:, 2] = features[..., :-1, 2]
    root = torch.cumsum(_torch_qrot(_torch_qinv(r_rot), vel), dim=-2)
    root = torch.cat((root[..., :1], features[..., 3:4], root[..., 2:3]), dim=-1)
    return r_rot, root


def _recover_from_ric_torch(features: torch.Tensor, joints_num: int) -> torch.Tensor:
    r_rot, root = recover_root_rot_pos(features)
    ric = features[..., 4 : 4 + 3 * (joints_num - 1)]
    ric = ric.reshape(ric.shape[:-1] + (joints_num - 1, 3))
    q = _torch_qinv(r_rot)[..., None, :].expand(ric.shape[:-1] + (4,))
    body = _torch_qrot(q, ric)
    body = body + torch.stack((root[..., 0], torch.zeros_like(root[..., 0]), root[..., 2]), dim=-1)[..., None, :]
    return torch.cat((root[..., None, :], body), dim=-2)


def features_to_joints(features: ArrayT, joints_num: int = 22) -> ArrayT:
    """Global joint positions from (de-normalised) features: the exact HumanML3D ``recover_from_ric``.

    Args:
        features: (…, T, D) with D = ``feature_dim(joints_num)``, numpy or torch. Must already be
            de-normalised (``Normalizer.denormalize``).
        joints_num: 22 for HumanML3D, 21 for KIT.

    Returns:
        (…, T, J, 3) positions in the same array kind and dtype (torch keeps device and autograd).
        Frame 0's root is at x = z = 0 facing +Z, as the features encode heading and root motion
        relative to the first frame.

    Raises:
        InvalidMotionError: wrong feature size or non-finite values.
    """
    _check_features(features, joints_num)
    if isinstance(features, torch.Tensor):
        return _recover_from_ric_torch(features, joints_num)
    arr = np.asarray(features)
    work = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64 if arr.dtype == np.float64 else np.float32))
    return _recover_from_ric_torch(work, joints_num).numpy().astype(arr.dtype if arr.dtype.kind == "f" else np.float32)


# ---------------------------------------------------------------------------------------------
# Joints -> features (HumanML3D process_file, §1.5)
# ---------------------------------------------------------------------------------------------


def _check_positions(positions: np.ndarray, skeleton: SkeletonSpec, min_frames: int = 2) -> np.ndarray:
    arr = np.asarray(positions, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (skeleton.joints_num, 3):
        raise InvalidMotionError(
            f"positions must have shape (N, {skeleton.joints_num}, 3) for skeleton {skeleton.name!r}, "
            f"got {tuple(arr.shape)}"
        )
    if arr.shape[0] < min_frames:
        raise InvalidMotionError(f"need at least {min_frames} position frames, got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise InvalidMotionError("positions contain NaN or infinite values")
    return arr


def _facing_quat(positions: np.ndarray, r_hip: int, l_hip: int, r_sdr: int, l_sdr: int) -> np.ndarray:
    """Rotation taking the horizontal facing direction of each frame onto +Z."""
    across = (positions[..., r_hip, :] - positions[..., l_hip, :]) + (
        positions[..., r_sdr, :] - positions[..., l_sdr, :]
    )
    across = _np_normalize(across)
    forward = _np_normalize(np.cross(np.array([0.0, 1.0, 0.0]), across))
    return _np_qbetween(forward, np.broadcast_to(np.array([0.0, 0.0, 1.0]), forward.shape))


def normalize_joint_positions(positions: np.ndarray, skeleton: SkeletonSpec = T2M_SKELETON) -> np.ndarray:
    """Floor, origin and facing normalisation of ``process_file`` steps 2–4.

    Shifts so the lowest joint over the whole clip is at y = 0, moves the first frame's root to
    x = z = 0 and rotates about Y so the first frame faces +Z. These are the positions the features
    describe: ``features_to_joints(joints_to_features(p))`` equals ``normalize_joint_positions(p)[:-1]``.

    Args:
        positions: (N, J, 3) metres, Y up.

    Returns:
        (N, J, 3) float64.
    """
    pos = _check_positions(positions, skeleton, min_frames=1).copy()
    pos[..., 1] -= pos[..., 1].min()
    pos -= pos[0, 0] * np.array([1.0, 0.0, 1.0])
    r_hip, l_hip, r_sdr, l_sdr = skeleton.face_joint_indx
    q0 = _facing_quat(pos[0], r_hip, l_hip, r_sdr, l_sdr)
    return _np_qrot(np.broadcast_to(q0, pos.shape[:-1] + (4,)), pos)


def foot_contacts(
    positions: np.ndarray, skeleton: SkeletonSpec = T2M_SKELETON, *, threshold: float | None = None
) -> np.ndarray:
    """(N-1, 4) contacts [l_ankle, l_toe, r_ankle, r_toe]: 1 if the squared step < threshold [m²]."""
    thr = skeleton.foot_threshold if threshold is None else threshold
    step = ((positions[1:] - positions[:-1]) ** 2).sum(-1)
    idx = list(skeleton.fid_l) + list(skeleton.fid_r)
    return (step[:, idx] < thr).astype(np.float32)


def positional_ik(
    positions: np.ndarray, skeleton: SkeletonSpec = T2M_SKELETON, *, smooth_sigma: float = 20.0
) -> np.ndarray:
    """Per-frame local joint quaternions (N, J, 4) from positions, as HumanML3D's IK computes them.

    The root quaternion turns the Gaussian-smoothed (sigma in frames) facing direction onto +Z,
    with frame 0 forced to identity. The facing direction here reproduces the quirk of §1.5 step 6:
    ``face_joint_indx`` is unpacked as (l_hip, r_hip, r_sdr, l_sdr), so the hip term enters with the
    opposite sign of the shoulder term. Each bone's quaternion is ``R_chain⁻¹ · between(raw_offset,
    bone_dir)`` where ``R_chain`` is accumulated along each kinematic chain starting from the root
    quaternion (a chain that starts at a spine joint restarts from the root rotation, as the original).
    """
    n = positions.shape[0]
    a, b, c, d = skeleton.face_joint_indx
    l_hip, r_hip, r_sdr, l_sdr = a, b, c, d  # the quirk: same list, different unpacking than step 4
    across = _np_normalize(
        (positions[:, r_hip] - positions[:, l_hip]) + (positions[:, r_sdr] - positions[:, l_sdr])
    )
    forward = np.cross(np.array([0.0, 1.0, 0.0]), across)
    if smooth_sigma > 0:
        forward = gaussian_filter1d(forward, smooth_sigma, axis=0, mode="nearest")
    forward = _np_normalize(forward)
    root_quat = _np_qbetween(forward, np.broadcast_to(np.array([0.0, 0.0, 1.0]), forward.shape))
    root_quat[0] = (1.0, 0.0, 0.0, 0.0)

    quats = np.zeros((n, skeleton.joints_num, 4))
    quats[..., 0] = 1.0
    quats[:, 0] = root_quat
    offsets = skeleton.raw_offsets_array
    for chain in skeleton.kinematic_chain:
        acc = root_quat
        for parent, child in zip(chain[:-1], chain[1:]):
            bone = _np_normalize(positions[:, child] - positions[:, parent])
            world = _np_qbetween(np.broadcast_to(offsets[child], bone.shape), bone)
            local = _np_qmul(_np_qinv(acc), world)
            quats[:, child] = local
            acc = _np_qmul(acc, local)
    return quats


def joints_to_features(
    positions: np.ndarray,
    skeleton: SkeletonSpec = T2M_SKELETON,
    *,
    feet_thre: float | None = None,
) -> np.ndarray:
    """HumanML3D feature extraction (``process_file``, §1.5) from global joint positions.

    Steps: floor, origin, face +Z (``normalize_joint_positions``); foot contacts; per-frame IK with
    the documented facing quirk (``positional_ik``); 6D rotations; root-relative "ric" positions and
    local velocities rotated by the root heading.

    Deviations from the original script, both deliberate:

    * No retargeting to the target skeleton (HumanML3D first re-poses every clip onto subject
      ``000021``'s bone lengths). The bone lengths of the input are kept, so features from a
      different body keep that body's proportions; ric/velocity/root slices of a clip that already
      has the target proportions match the released data.
    * The relative root rotation is canonicalised to w >= 0 before taking ``arcsin`` of its y
      component, so headings that cross ±180° between frames still encode the right sign; for every
      other frame this is identical to the original.

    Args:
        positions: (N, J, 3) global positions in metres, Y up, N >= 2.
        skeleton: ``T2M_SKELETON`` or ``KIT_SKELETON`` (or a custom spec).
        feet_thre: foot contact threshold [m²]; defaults to ``skeleton.foot_threshold``.

    Returns:
        (N-1, D) float32 features, D = ``feature_dim(J)``.

    Raises:
        InvalidMotionError: wrong shape, fewer than 2 frames, non-finite values or degenerate poses.
    """
    pos = normalize_joint_positions(_check_positions(positions, skeleton), skeleton)
    n, j = pos.shape[:2]
    contacts = foot_contacts(pos, skeleton, threshold=feet_thre)

    quats = positional_ik(pos, skeleton)
    r_rot = quats[:, 0]
    cont6d = _np_quat_to_cont6d(quats)

    # Root: linear velocity seen from the next frame's heading, half yaw increment, height.
    root_vel = _np_qrot(r_rot[1:], pos[1:, 0] - pos[:-1, 0])
    r_vel = _np_qmul(r_rot[1:], _np_qinv(r_rot[:-1]))
    r_vel = np.where(r_vel[:, :1] < 0, -r_vel, r_vel)
    rot_vel = np.arcsin(np.clip(r_vel[:, 2:3], -1.0, 1.0))
    root_y = pos[:-1, 0, 1:2]

    # ric: root x/z removed, rotated into the heading frame (root y stays absolute).
    rel = pos - pos[:, :1] * np.array([1.0, 0.0, 1.0])
    ric = _np_qrot(np.broadcast_to(r_rot[:, None], rel.shape[:-1] + (4,)), rel)

    local_vel = _np_qrot(np.broadcast_to(r_rot[:-1, None], (n - 1, j, 4)), pos[1:] - pos[:-1])

    feats = np.concatenate(
        (
            rot_vel,
            root_vel[:, [0, 2]],
            root_y,
            ric[:-1, 1:].reshape(n - 1, -1),
            cont6d[:-1, 1:].reshape(n - 1, -1),
            local_vel.reshape(n - 1, -1),
            contacts,
        ),
        axis=-1,
    ).astype(np.float32)
    assert feats.shape[1] == feature_dim(j)
    return feats


# ---------------------------------------------------------------------------------------------
# Normalisation (§1.3, §1.4)
# ---------------------------------------------------------------------------------------------


def _feat_bias_dims(joints_num: int) -> np.ndarray:
    """Root (0:4) and contact (last 4) dims, the ones MoMask's VQ dataset divides by feat_bias."""
    dim = feature_dim(joints_num)
    return np.r_[0:4, dim - 4 : dim]


def compute_mean_std(
    feature_arrays: Iterable[np.ndarray],
    joints_num: int = 22,
    *,
    feat_bias: float = 5.0,
    double_feat_bias: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Dataset mean and std over all frames, with HumanML3D's group-mean std and MoMask's feat_bias.

    The per-dimension std is replaced by its mean inside each of the seven feature groups
    (``feature_slices``), which is how HumanML3D's ``Std.npy`` was made: dimensions of one kind share
    one scale so that, e.g., a rarely moving joint is not blown up. Then the root (0:4) and contact
    (last 4) dims are divided by ``feat_bias`` so the reconstruction loss weighs them more.

    ``feat_bias=1.0`` gives exactly the dataset ``Std.npy`` as HumanML3D ships it. The default
    (``feat_bias=5``, applied once) is what we use for our own training. The released MoMask
    checkpoints (and the official evaluator) divided twice by accident (/25, design §1.4):
    ``double_feat_bias=True`` reproduces their ``meta/std.npy``.

    Args:
        feature_arrays: iterable of (T_i, D) feature arrays (de-normalised).
        joints_num: 22 or 21; fixes D and the groups.

    Returns:
        (mean, std), each float32 (D,).
    """
    dim = feature_dim(joints_num)
    arrays = [np.asarray(a, dtype=np.float64) for a in feature_arrays]
    if not arrays:
        raise InvalidMotionError("compute_mean_std needs at least one feature array")
    for i, a in enumerate(arrays):
        if a.ndim != 2 or a.shape[1] != dim:
            raise InvalidMotionError(f"feature array {i} has shape {a.shape}, expected (T, {dim})")
        if not np.isfinite(a).all():
            raise InvalidMotionError(f"feature array {i} contains NaN or infinite values")
    if feat_bias <= 0:
        raise ValueError(f"feat_bias must be > 0, got {feat_bias}")
    data = np.concatenate(arrays, axis=0)
    mean = data.mean(axis=0)
    std = data.std(axis=0)
    for sl in feature_slices(joints_num).values():
        std[sl] = std[sl].mean()
    std = apply_feat_bias(std, joints_num, feat_bias=feat_bias, times=2 if double_feat_bias else 1)
    if np.any(std <= 0):
        bad = [name for name, sl in feature_slices(joints_num).items() if np.any(std[sl] <= 0)]
        raise InvalidMotionError(f"feature groups {bad} have zero variance; add more varied motion")
    return mean.astype(np.float32), std.astype(np.float32)


def apply_feat_bias(std: np.ndarray, joints_num: int = 22, *, feat_bias: float = 5.0, times: int = 1) -> np.ndarray:
    """Copy of ``std`` with root and contact dims divided by ``feat_bias ** times`` (§1.4)."""
    out = np.array(std, dtype=np.float64 if np.asarray(std).dtype == np.float64 else np.float32, copy=True)
    out[_feat_bias_dims(joints_num)] /= feat_bias**times
    return out


class Normalizer:
    """Z-normalisation of features with a fixed mean/std (works on numpy arrays and torch tensors).

    Args:
        mean, std: (D,) arrays; float32 or float64 (released checkpoints ship float64 meta files).

    Raises:
        ValueError: shapes differ, values are not finite, or some std is not positive.
    """

    def __init__(self, mean: np.ndarray | torch.Tensor, std: np.ndarray | torch.Tensor) -> None:
        m = np.asarray(mean.detach().cpu() if isinstance(mean, torch.Tensor) else mean, dtype=np.float64)
        s = np.asarray(std.detach().cpu() if isinstance(std, torch.Tensor) else std, dtype=np.float64)
        if m.ndim != 1 or m.shape != s.shape:
            raise ValueError(f"mean and std must be 1-D of equal length, got {m.shape} and {s.shape}")
        if not (np.isfinite(m).all() and np.isfinite(s).all()):
            raise ValueError("mean/std contain NaN or infinite values")
        if np.any(s <= 0):
            raise ValueError(f"std must be positive; dims {np.flatnonzero(s <= 0)[:10].tolist()} are not")
        self.mean = m.astype(np.float32)
        self.std = s.astype(np.float32)
        self._torch_cache: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def _stats_like(self, x: ArrayT) -> tuple[ArrayT, ArrayT]:
        if x.shape[-1] != self.dim:
            raise InvalidMotionError(f"feature size {x.shape[-1]} does not match the normalizer's {self.dim}")
        if isinstance(x, torch.Tensor):
            key = (x.dtype, x.device)
            if key not in self._torch_cache:
                self._torch_cache[key] = (
                    torch.as_tensor(self.mean, dtype=x.dtype, device=x.device),
                    torch.as_tensor(self.std, dtype=x.dtype, device=x.device),
                )
            return self._torch_cache[key]  # type: ignore[return-value]
        dtype = x.dtype if np.asarray(x).dtype.kind == "f" else np.float32
        return self.mean.astype(dtype), self.std.astype(dtype)  # type: ignore[return-value]

    def normalize(self, x: ArrayT) -> ArrayT:
        """(x - mean) / std over the last axis."""
        mean, std = self._stats_like(x)
        return (x - mean) / std

    def denormalize(self, x: ArrayT) -> ArrayT:
        """x * std + mean over the last axis."""
        mean, std = self._stats_like(x)
        return x * std + mean

    def with_feat_bias(self, feat_bias: float = 5.0, *, times: int = 1) -> "Normalizer":
        """A normalizer whose root and contact std are divided by ``feat_bias ** times`` (§1.4)."""
        std = apply_feat_bias(self.std, joints_num_from_dim(self.dim), feat_bias=feat_bias, times=times)
        return Normalizer(self.mean, std)

    def save(self, directory: str | Path, *, names: tuple[str, str] = ("mean.npy", "std.npy")) -> None:
        """Write float32 ``mean.npy``/``std.npy`` (or other ``names``) into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / names[0], self.mean)
        np.save(d / names[1], self.std)

    @classmethod
    def from_dir(cls, path: str | Path) -> "Normalizer":
        """Load from a dataset root (``Mean.npy``/``Std.npy``) or a checkpoint (``meta/mean.npy``...).

        Looks, in order, for ``Mean.npy``+``Std.npy``, ``mean.npy``+``std.npy`` and
        ``meta/mean.npy``+``meta/std.npy`` inside ``path``.

        Raises:
            FileNotFoundError: none of these pairs exists (the message lists what was tried).
        """
        root = Path(path)
        candidates = [(root / "Mean.npy", root / "Std.npy"), (root / "mean.npy", root / "std.npy"),
                      (root / "meta" / "mean.npy", root / "meta" / "std.npy")]
        for mean_path, std_path in candidates:
            if mean_path.is_file() and std_path.is_file():
                return cls(np.load(mean_path), np.load(std_path))
        tried = ", ".join(f"{m.relative_to(root)}+{s.name}" for m, s in candidates)
        raise FileNotFoundError(f"no mean/std files in {root} (tried {tried})")

    def __repr__(self) -> str:
        return f"Normalizer(dim={self.dim})"


# ---------------------------------------------------------------------------------------------
# Mirroring (the "M" copies of HumanML3D)
# ---------------------------------------------------------------------------------------------


def mirror_joints(positions: ArrayT, skeleton: SkeletonSpec = T2M_SKELETON) -> ArrayT:
    """Left/right mirror image of a motion: negate x and swap left and right joints.

    Args:
        positions: (…, J, 3) numpy or torch.

    Returns:
        Same kind and shape; the input is not modified.
    """
    if positions.ndim < 2 or positions.shape[-2:] != (skeleton.joints_num, 3):
        raise InvalidMotionError(
            f"positions must end in ({skeleton.joints_num}, 3) for skeleton {skeleton.name!r}, "
            f"got {tuple(positions.shape)}"
        )
    perm = list(range(skeleton.joints_num))
    for left, right in skeleton.mirror_pairs:
        perm[left], perm[right] = right, left
    sign = [-1.0, 1.0, 1.0]
    if isinstance(positions, torch.Tensor):
        return positions[..., perm, :] * torch.tensor(sign, dtype=positions.dtype, device=positions.device)
    return positions[..., perm, :] * np.asarray(sign, dtype=positions.dtype)


_MIRROR_WORDS = {
    "left": "right", "right": "left",
    "clockwise": "counterclockwise", "counterclockwise": "clockwise", "anticlockwise": "clockwise",
    "counter-clockwise": "clockwise", "anti-clockwise": "clockwise",
}
# "left"/"right" also as the first part of leftward(s), rightmost, left-hand, ...; never inside
# another word (so "upright", "bright" stay untouched).
_MIRROR_RE = re.compile(
    r"\b(counter-clockwise|anti-clockwise|counterclockwise|anticlockwise|clockwise|left|right)"
    r"(?=(?:wards?|most|hand(?:ed)?|side|s)?\b)",
    re.IGNORECASE,
)


def _match_case(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def mirror_caption(text: str) -> str:
    """Swap left/right (and clockwise/counterclockwise) words, keeping their case."""
    return _MIRROR_RE.sub(lambda m: _match_case(_MIRROR_WORDS[m.group(1).lower()], m.group(1)), text)
