"""The 22-joint HumanML3D (SMPL) and 21-joint KIT skeletons: joints, chains, rest offsets, feet.

Kept identical to the data the released checkpoints were trained on: positions are metres, Y up,
the body faces +Z and its left side is at +X.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from momask_model.motion.feature_layout import InvalidMotionError, feature_dim


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
