"""What the stream asks of a text-to-motion model, as one typed contract.

`momask_model.generation.momask.MoMask` meets it, and so do the tests' small stand-ins
(``test/motion_fakes.py``): the pipeline calls these members and nothing else, so a model is checked
by the type checker, not probed at run time.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping, Protocol, Sequence

import numpy as np

__all__ = ["Generated", "Generator"]


class Generated(Protocol):
    """One batch of generated motions (`momask_model.generation.results.GenerationResult` has more)."""

    joints: np.ndarray  #: (B, T, J, 3) joint positions [m], HumanML3D axes (Y up)
    lengths: np.ndarray  #: (B,) valid frames per motion
    tokens: np.ndarray | None  #: (B, T / unit, Q) token ids (what a continuation continues)
    fps: float


class Generator(Protocol):
    """A text-to-motion model as the stream uses it.

    Sampling options (guidance, temperature, ...) reach ``generate``, ``continue_motion`` and
    ``iter_windows`` as keyword arguments, unchanged.
    """

    #: What the bundle says of itself: ``skills`` names what a single-skill model was trained on.
    bundle_meta: Mapping[str, Any]

    @property
    def fps(self) -> float:
        """Frame rate of the motions [frames/s]."""

    @property
    def unit_length(self) -> int:
        """Frames per token: lengths and switch frames are multiples of it."""

    @property
    def max_length(self) -> int:
        """Frames of one window: longer motions are generated window by window."""

    @property
    def then_separates_segments(self) -> bool:
        """Whether ``then`` between clauses starts a new segment of a command."""

    @property
    def estimates_lengths(self) -> bool:
        """Whether `estimate_lengths` works (the bundle has a length estimator)."""

    def generate(self, texts: Sequence[str], lengths: Sequence[int] | None = None, *, seed: int | None = None,
                 **sampling: Any) -> Generated:
        """One motion per text, of ``lengths`` frames (None: the length estimator's)."""

    def continue_motion(self, prev_tokens: np.ndarray, prev_joints: np.ndarray, at_frame: int, text: str,
                        length: int, *, seed: int | None = None, **sampling: Any) -> Generated:
        """A motion of ``length`` frames for ``text`` that is ``prev``'s from its frame ``at_frame`` on."""

    def iter_windows(self, texts: Sequence[str], length: int, *, seed: int | None = None,
                     **sampling: Any) -> Iterator[Generated]:
        """A motion longer than a window, yielded window by window as each is generated."""

    def estimate_lengths(self, texts: Sequence[str], *, seed: int | None = None) -> np.ndarray:
        """Frames the length estimator gives each text."""
