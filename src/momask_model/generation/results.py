"""What every generation entry point returns and the checks they share (no model code here).

`GenerationResult` and `GenerationError` live apart from `MoMask` so that the editing and long-motion
modules, which the model calls, can use them without importing the model.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

MAX_TEXT_CHARS = 1000
#: Longest motion generate() / generate_long() produce, in windows of the model's maximum length [frames].
MAX_LONG_FRAMES = 6000


class GenerationError(ValueError):
    """A generation request is invalid (bad text, bad length, missing length estimator)."""


@dataclass
class GenerationResult:
    """Generated motions, padded to the longest one.

    features: (B, T, D) de-normalised features; frames at or after ``lengths[b]`` are zero.
    joints: (B, T, J, 3) joint positions [m], Y-up, 20 fps for HumanML3D; frames after the length repeat
        the last valid pose so a consumer that ignores ``lengths`` never sees a jump to the origin.
    lengths: (B,) valid frames per motion (multiples of the unit length).
    tokens: (B, T/unit, Q) token ids, -1 at padding.
    fps: frame rate of features and joints.
    marks: frame ranges [start, end) a preview highlights: the edited sections of an edit, the
        segments of a sequence (empty for a plain generation).
    """

    features: np.ndarray
    joints: np.ndarray
    lengths: np.ndarray
    tokens: np.ndarray
    fps: float
    marks: tuple[tuple[int, int], ...] = ()

    def motion(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(features (L, D), joints (L, J, 3)) of one motion, cropped to its length."""
        n = int(self.lengths[index])
        return self.features[index, :n], self.joints[index, :n]


def check_cond_vector(cond, dim: int, batch: int | None = None) -> torch.Tensor:
    """A precomputed condition (B, dim) (or (dim,)) as a float tensor; anything else is a `GenerationError`."""
    if not isinstance(cond, torch.Tensor):
        cond = torch.as_tensor(np.asarray(cond, dtype=np.float32))
    if cond.ndim == 1:
        cond = cond.unsqueeze(0)
    if cond.ndim != 2 or cond.shape[1] != dim or cond.shape[0] < 1:
        raise GenerationError(f"cond must have shape (B, {dim}), got {tuple(cond.shape)}")
    if batch is not None and cond.shape[0] not in (1, batch):
        raise GenerationError(f"cond has {cond.shape[0]} rows for {batch} motions")
    if not cond.is_floating_point() or not bool(torch.isfinite(cond).all()):
        raise GenerationError("cond must be a finite float tensor")
    return cond.float()


def text_problem(text: str, max_chars: int = MAX_TEXT_CHARS) -> str | None:
    """What is wrong with one prompt ("is empty", ...), or None. Whitespace runs count as one space.

    Control characters other than whitespace (NUL, ESC, DEL, ...) are refused, as the node refuses
    them in a command: a NUL would cut the text short in any C string on the way.
    """
    clean = " ".join(text.split())
    if not clean:
        return "is empty"
    if len(clean) > max_chars:
        return f"has {len(clean)} characters; the limit is {max_chars}"
    for i, ch in enumerate(clean):
        if unicodedata.category(ch) == "Cc":
            return f"contains control character U+{ord(ch):04X} at position {i}"
    return None


def validate_texts(texts: str | Sequence[str], max_chars: int = MAX_TEXT_CHARS) -> list[str]:
    """Normalise a text or list of texts; empty, non-str, overlong or control-character texts raise `GenerationError`."""
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, Sequence) or len(texts) == 0:
        raise GenerationError("texts must be a non-empty string or a non-empty list of strings")
    out = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise GenerationError(f"text {i} is {type(text).__name__}, expected str")
        problem = text_problem(text, max_chars)
        if problem:
            raise GenerationError(f"text {i} {problem}")
        out.append(" ".join(text.split()))
    return out
