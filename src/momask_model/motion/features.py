"""HumanML3D features <-> joint positions (design/momask.md §1.5–1.6).

MoMask never sees joint positions: models read and write the feature vector (``feature_layout``).
``features_to_joints`` is the exact ``recover_from_ric``; ``joints_to_features`` is the HumanML3D
``process_file`` recipe, quirks included, so features we extract match the released data.

Conventions: quaternions are (w, x, y, z), Hamilton product, ``qrot(q, v) = v + 2 (w u×v + u×(u×v))``;
feature frame ``t`` is built from position frames ``t`` and ``t+1`` (N positions -> N-1 frames).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from momask_model.motion.feature_layout import ArrayT, InvalidMotionError, feature_dim
from momask_model.motion.quaternion import qinv as _np_qinv, qmul as _np_qmul, qrot as _np_qrot
from momask_model.motion.skeleton import T2M_SKELETON, SkeletonSpec


# ---------------------------------------------------------------------------------------------
# Quaternion helpers beyond momask_model.motion.quaternion: numpy for extraction, torch for recovery
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
