"""Text in: the frozen sentence encoders that condition MoMask (CLIP, a sentence-transformer, a small
bag-of-words for tests) behind one `TextEncoder` interface, and the scope gate that refuses what a
model was never trained to do."""
from momask_model.text.base import TextEncoder, TextEncoderError, TextEncoderWeightsMissing

__all__ = ["TextEncoder", "TextEncoderError", "TextEncoderWeightsMissing"]
