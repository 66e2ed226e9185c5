"""Left/right mirror images of motions and captions: the "M" copies of HumanML3D."""
from __future__ import annotations

import re

import numpy as np
import torch

from momask_model.motion.feature_layout import ArrayT, InvalidMotionError
from momask_model.motion.skeleton import T2M_SKELETON, SkeletonSpec


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
