"""Where each quantity sits in a HumanML3D feature vector (design/momask.md §1.3).

Every model reads and writes this vector (263-d for the 22-joint SMPL skeleton, 251-d for KIT), so its
layout lives in one place that skeletons, conversion and normalisation all size their arrays from.
``InvalidMotionError`` lives here too: it is the error of every motion module, and this is the one
they all import.
"""
from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)
"""Functions that take numpy or torch and return the same kind."""


class InvalidMotionError(ValueError):
    """A motion array has the wrong shape, too few frames, or non-finite values."""



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
