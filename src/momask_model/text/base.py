"""What every frozen text encoder shares: the `TextEncoder` interface, input checks and errors.

Its own module so that encoders living elsewhere (``momask_model.text.sentence``) and the factory in
``momask_model.text.encoders`` both build on it without importing each other in a circle.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn


class TextEncoderError(ValueError):
    """A text encoder cannot be built or used as asked."""


class TextEncoderWeightsMissing(TextEncoderError, FileNotFoundError):
    """The requested text-encoder weights are not available locally (and could not be downloaded)."""


def validate_texts(texts: Sequence[str]) -> list[str]:
    """Check a batch of texts: a non-empty list/tuple of non-blank strings.

    Raises:
        TypeError: ``texts`` is a bare string or not a sequence, or an element is not a str.
        ValueError: the batch is empty or a text is empty / whitespace only.
    """
    if isinstance(texts, (str, bytes)) or not isinstance(texts, (list, tuple)):
        raise TypeError(f"texts must be a list of str, got {type(texts).__name__}: {texts!r}")
    if not texts:
        raise ValueError("texts is empty; give at least one sentence")
    for i, text in enumerate(texts):
        validate_text(text, where=f"texts[{i}]")
    return list(texts)


def validate_text(text: str, *, where: str = "text") -> str:
    """Check one text is a non-blank str; returns it."""
    if not isinstance(text, str):
        raise TypeError(f"{where} must be a str, got {type(text).__name__}: {text!r}")
    if not text.strip():
        raise ValueError(f"{where} is empty or whitespace only: {text!r}")
    return text


class TextEncoder(nn.Module):
    """Frozen sentence encoder: ``encode(texts) -> (B, dim)`` float32 without gradients.

    Subclasses implement ``_encode`` (already-validated texts) and ``describe``. The module always
    stays in eval mode and its parameters never require gradients.
    """

    dim: int

    def encode(self, texts: Sequence[str], *, fast: bool = False) -> torch.Tensor:
        """Encode a batch of sentences.

        Args:
            texts: list of non-blank strings.
            fast: let the encoder skip work that cannot change the result (CLIP: positions after the
                last end-of-text token of the batch); ``False`` runs the reference computation.
        Returns:
            (B, dim) float32 tensor on the encoder's device.
        """
        texts = validate_texts(texts)
        with torch.inference_mode() if fast else torch.no_grad():
            return (self._encode_fast(texts) if fast else self._encode(texts)).float()

    def forward(self, texts: Sequence[str]) -> torch.Tensor:  # nn.Module call syntax == encode
        return self.encode(texts)

    def unknown_words(self, text: str) -> list[str]:
        """Words of ``text`` the encoder cannot represent (always empty for CLIP's byte-level BPE)."""
        validate_text(text)
        return []

    def describe(self) -> dict[str, Any]:
        """JSON-able description from which ``build_text_encoder`` rebuilds this encoder."""
        raise NotImplementedError

    def _encode(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def _encode_fast(self, texts: list[str]) -> torch.Tensor:
        """Same result as ``_encode``, computed with less work where a subclass knows how."""
        return self._encode(texts)

    def train(self, mode: bool = True) -> "TextEncoder":
        """Frozen encoder: always stays in eval mode whatever ``mode`` asks."""
        return super().train(False)

    def _freeze(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)
        self.train(False)
