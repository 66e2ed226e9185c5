"""Pose sequences of a source skeleton: forward kinematics, resampling, looping and axis changes.

Every importer (DeepMimic, BVH) reduces its file to a :class:`PoseSequence`: per key frame, each
joint's translation from its parent and its local rotation, at arbitrary (possibly non-uniform)
key times. Time operations (looping, speed change, resampling to 20 fps) are done here on local
rotations (slerp) rather than on joint positions, because interpolating positions of a fast
rotation (a flip sampled at 16 Hz) would shorten the bones.

Quaternions are (w, x, y, z), Hamilton product, like the rest of the project.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from momask_model.motion.quaternion import qinv, qmul

__all__ = [
    "SourceSkeleton",
    "PoseSequence",
    "forward_kinematics",
    "resample",
    "loop_cycles",
    "quat_to_matrix",
    "matrix_to_quat",
    "quat_mul",
    "yaw_quat",
]


# ---------------------------------------------------------------------------------------------
# Quaternion helpers (numpy, (..., 4) w x y z)
# ---------------------------------------------------------------------------------------------


quat_mul = qmul  # Hamilton product q·r over (..., 4) w x y z: the project's one


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) unit-normalised quaternions -> (..., 3, 3) rotation matrices."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack(
        (
            np.stack((1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)), -1),
            np.stack((2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)), -1),
            np.stack((2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)), -1),
        ),
        axis=-2,
    )


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 4) quaternions with w >= 0."""
    from scipy.spatial.transform import Rotation

    flat = m.reshape(-1, 3, 3)
    xyzw = Rotation.from_matrix(flat).as_quat()
    wxyz = np.concatenate((xyzw[:, 3:], xyzw[:, :3]), axis=-1)
    wxyz = np.where(wxyz[:, :1] < 0, -wxyz, wxyz)
    return wxyz.reshape(m.shape[:-2] + (4,))


def yaw_quat(angle_rad: np.ndarray | float) -> np.ndarray:
    """Rotation(s) about +Y by ``angle_rad``."""
    a = np.asarray(angle_rad, dtype=np.float64) / 2
    return np.stack((np.cos(a), np.zeros_like(a), np.sin(a), np.zeros_like(a)), axis=-1)


def _slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Shortest-arc spherical interpolation, vectorised; ``t`` broadcasts against q[..., :1]."""
    dot = (q0 * q1).sum(-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot).clip(max=1.0)
    theta = np.arccos(dot)
    sin_theta = np.sin(theta)
    small = sin_theta < 1e-6
    safe = np.where(small, 1.0, sin_theta)
    w0 = np.where(small, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    w1 = np.where(small, t, np.sin(t * theta) / safe)
    out = w0 * q0 + w1 * q1
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceSkeleton:
    """Joint names and parent indices of a source skeleton (parents precede children, root = -1)."""

    joint_names: tuple[str, ...]
    parents: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.joint_names) != len(self.parents):
            raise ValueError(f"{len(self.joint_names)} names but {len(self.parents)} parents")
        for j, p in enumerate(self.parents):
            if not (p == -1 if j == 0 else 0 <= p < j):
                raise ValueError(f"joint {self.joint_names[j]!r} has parent {p}: parents must precede children")

    @property
    def joints_num(self) -> int:
        return len(self.joint_names)


@dataclass(frozen=True)
class PoseSequence:
    """Key-framed poses of one source skeleton.

    Attributes:
        skeleton: names and parents.
        times_s: (N,) strictly increasing key times [s], starting at 0.
        local_translations: (N, J, 3) each joint's origin in its parent's frame (source units);
            the root's entry is its world position.
        local_quats_wxyz: (N, J, 4) each joint's rotation relative to its parent (root: world).
    """

    skeleton: SourceSkeleton
    times_s: np.ndarray
    local_translations: np.ndarray
    local_quats_wxyz: np.ndarray

    def __post_init__(self) -> None:
        n, j = len(self.times_s), self.skeleton.joints_num
        if self.local_translations.shape != (n, j, 3) or self.local_quats_wxyz.shape != (n, j, 4):
            raise ValueError(
                f"pose arrays must be ({n}, {j}, 3) and ({n}, {j}, 4), got "
                f"{self.local_translations.shape} and {self.local_quats_wxyz.shape}"
            )
        if n > 1 and not np.all(np.diff(self.times_s) > 0):
            raise ValueError("key times must be strictly increasing")

    @property
    def duration_s(self) -> float:
        return float(self.times_s[-1] - self.times_s[0])

    @property
    def frames(self) -> int:
        return len(self.times_s)


# ---------------------------------------------------------------------------------------------
# Operations
# ---------------------------------------------------------------------------------------------


def forward_kinematics(seq: PoseSequence) -> tuple[np.ndarray, np.ndarray]:
    """World positions (N, J, 3) and world rotation matrices (N, J, 3, 3) of every joint."""
    local_rot = quat_to_matrix(seq.local_quats_wxyz)
    n, j = seq.frames, seq.skeleton.joints_num
    pos = np.zeros((n, j, 3))
    rot = np.zeros((n, j, 3, 3))
    for k, parent in enumerate(seq.skeleton.parents):
        if parent < 0:
            pos[:, k] = seq.local_translations[:, k]
            rot[:, k] = local_rot[:, k]
        else:
            pos[:, k] = pos[:, parent] + np.einsum("nab,nb->na", rot[:, parent], seq.local_translations[:, k])
            rot[:, k] = rot[:, parent] @ local_rot[:, k]
    return pos, rot


def resample(seq: PoseSequence, fps: float, *, speed: float = 1.0) -> PoseSequence:
    """Sample the sequence at ``fps`` frames per second of *output* time.

    ``speed`` > 1 plays the motion faster (fewer output frames): output frame k shows source time
    ``k * speed / fps``. Rotations are slerped, translations interpolated linearly. The last
    output frame is the last one at or before the end of the source.
    """
    if fps <= 0 or speed <= 0:
        raise ValueError(f"fps and speed must be positive, got fps={fps}, speed={speed}")
    step = speed / fps
    count = int(np.floor(seq.duration_s / step + 1e-9)) + 1
    t_out = seq.times_s[0] + np.arange(count) * step
    idx = np.clip(np.searchsorted(seq.times_s, t_out, side="right") - 1, 0, max(seq.frames - 2, 0))
    if seq.frames == 1:
        alpha = np.zeros(count)
        nxt = idx
    else:
        nxt = idx + 1
        span = seq.times_s[nxt] - seq.times_s[idx]
        alpha = np.clip((t_out - seq.times_s[idx]) / span, 0.0, 1.0)
    a = alpha[:, None, None]
    trans = (1 - a) * seq.local_translations[idx] + a * seq.local_translations[nxt]
    quats = _slerp(seq.local_quats_wxyz[idx], seq.local_quats_wxyz[nxt], a)
    return PoseSequence(seq.skeleton, t_out - t_out[0], trans, quats)


def loop_cycles(
    seq: PoseSequence,
    cycles: int,
    *,
    blend_frames: int = 0,
    min_turn_deg: float = 0.0,
    extra_turn_deg: float = 0.0,
) -> PoseSequence:
    """Repeat a cyclic clip ``cycles`` times, carrying the root's displacement and heading over.

    The last key frame of a cycle and the first of the next show the same instant, so the
    duplicate is dropped. Cycle k+1 is cycle k moved by the rigid horizontal transform (yaw about
    +Y and x/z translation) that takes the first frame's root onto the last frame's root; the root
    height is not carried over. The yaw is the twist about +Y of ``q_last · q_first⁻¹``, which
    stays well defined when the body is prone or upside down (a crawl, a flip), unlike the
    heading of a body axis.

    Mocap cycles rarely close exactly: a walk that goes straight can end with the pelvis turned
    by 7°. Turns smaller than ``min_turn_deg`` are treated as such non-closure and not carried
    (otherwise a looped straight walk would curve). With ``blend_frames`` > 0 the remaining
    mismatch between the last pose and the (turned) first pose is spread over the last
    ``blend_frames`` key frames of each cycle (local rotations, root included, and root height),
    so the seam has no jump.

    Args:
        seq: one cycle, Y up, ``times_s[0] == 0``.
        cycles: number of repetitions (>= 1).
        blend_frames: key frames over which to close the seam.
        min_turn_deg: smallest per-cycle heading change that is carried over [deg].
        extra_turn_deg: added to the carried heading change of every cycle [deg] (augmentation:
            makes a looped walk curve; closed by the seam blend, so use small values).
    """
    if cycles < 1:
        raise ValueError(f"cycles must be >= 1, got {cycles}")
    n = seq.frames
    if cycles == 1 or n < 2:
        return seq
    trans = seq.local_translations.copy()
    quats = seq.local_quats_wxyz.copy()
    delta_root = quat_mul(quats[-1, 0], qinv(quats[0, 0]))
    yaw = 2.0 * np.arctan2(delta_root[2], delta_root[0])
    yaw = (yaw + np.pi) % (2 * np.pi) - np.pi
    if abs(np.degrees(yaw)) < min_turn_deg:
        yaw = 0.0
    yaw += np.radians(extra_turn_deg)
    q_yaw = yaw_quat(yaw)
    rot_yaw = quat_to_matrix(q_yaw)
    if blend_frames > 0:
        b = min(blend_frames, n - 1)
        w = np.zeros(n)
        w[n - b :] = np.arange(1, b + 1) / b
        # The pose the last frame should show so that the next cycle starts without a jump:
        # the first pose, with the root turned by the cycle's heading change.
        target = quats[0].copy()
        target[0] = quat_mul(q_yaw, quats[0, 0])
        delta = quat_mul(target, qinv(quats[-1]))
        delta = np.where(delta[..., :1] < 0, -delta, delta)
        ident = np.zeros_like(delta)
        ident[..., 0] = 1.0
        partial = _slerp(
            np.broadcast_to(ident, quats.shape), np.broadcast_to(delta, quats.shape), w[:, None, None]
        )
        quats = quat_mul(partial, quats)
        trans[:, 0, 1] += w * (trans[0, 0, 1] - trans[-1, 0, 1])

    all_t, all_q, times = [trans], [quats], [seq.times_s]
    cur_t, cur_q = trans, quats
    for k in range(1, cycles):
        moved = (cur_t[:, 0] - cur_t[0, 0]) @ rot_yaw.T
        nxt_t = cur_t.copy()
        nxt_t[:, 0, 0] = cur_t[-1, 0, 0] + moved[:, 0]
        nxt_t[:, 0, 2] = cur_t[-1, 0, 2] + moved[:, 2]
        nxt_t[:, 0, 1] = trans[:, 0, 1]
        nxt_q = cur_q.copy()
        nxt_q[:, 0] = quat_mul(np.broadcast_to(q_yaw, cur_q[:, 0].shape), cur_q[:, 0])
        all_t.append(nxt_t[1:])
        all_q.append(nxt_q[1:])
        times.append(seq.times_s[1:] + k * seq.duration_s)
        cur_t, cur_q = nxt_t, nxt_q
    return PoseSequence(seq.skeleton, np.concatenate(times), np.concatenate(all_t), np.concatenate(all_q))
