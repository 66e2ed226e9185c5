"""Decoding a token chain piece by piece, so that the pieces join as one decode of the whole chain.

A piece of new tokens is decoded with the tokens before it (and, once known, those after it) as VQ
decoder context, so its frames equal those of the whole chain decoded at once; its joints are then
turned and shifted on the ground (`align_to_pose`) onto the last frame already given out, so that
concatenating the pieces gives one motion in one world frame. A continuation of a motion that was
already shown fades its pose difference at the join out (`fade_in_weights`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from momask_model.generation.core import TokenModel
from momask_model.generation.results import GenerationResult
from momask_model.motion.features import features_to_joints
from momask_model.motion.ground_alignment import align_to_pose

#: Frames over which a preempted motion's pose difference at the switch fades out (1 s at 20 fps).
BLEND_FRAMES = 20
#: Tokens before a piece the VQ decoder is given when a piece is decoded on its own (streaming);
#: more than the decoder's receptive field, so the frames after the join decode as in one sequence.
DECODE_CONTEXT_TOKENS = 32


def fade_in_weights(k: int) -> np.ndarray:
    """Weights (k,) of something fading in over ``k`` frames, just after 0 to just before 1: the quintic
    smootherstep at (i + 1) / (k + 1), flat in velocity and acceleration at both ends, so a fade adds
    no jump and no step of acceleration where it starts or ends (a cubic smoothstep or a raised
    cosine does, and it shows as a jerk peak)."""
    x = (np.arange(k) + 1.0) / (k + 1.0)
    return x * x * x * (x * (6.0 * x - 15.0) + 10.0)


def pad_codes(codes: Sequence[torch.Tensor]) -> torch.Tensor:
    """List of (n_b, Q) -> (B, max n, Q) padded with -1."""
    n = max(c.shape[0] for c in codes)
    out = torch.full((len(codes), n, codes[0].shape[1]), -1, dtype=torch.long, device=codes[0].device)
    for b, c in enumerate(codes):
        out[b, : c.shape[0]] = c
    return out


def decode_after(
    model: TokenModel, before: torch.Tensor, new: torch.Tensor, anchor: np.ndarray | None,
    after: torch.Tensor | None = None, *, blend: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Features and joints of ``new`` tokens decoded between ``before`` and ``after`` (their nearest
    tokens are decoder context, so the frames equal those of the whole sequence decoded at once),
    turned and shifted so the frame before ``new`` lands on ``anchor`` (J, 3).

    ``blend``: ``anchor`` is a pose that was already shown, decoded with other tokens after it (a
    preempted motion); the pose difference at the join then fades out over the first
    ``BLEND_FRAMES`` frames (`fade_in_weights` reversed), so the switch has no jump and no step of
    acceleration.
    """
    unit, reach = model.unit_length, model.decoder_reach
    d = min(before.shape[0], max(DECODE_CONTEXT_TOKENS, reach))
    tail = after[:reach] if after is not None else new[:0]
    feats = model.decode_features(torch.cat([before[before.shape[0] - d :], new, tail]))
    feats = feats[: feats.shape[0] - tail.shape[0] * unit]
    joints = features_to_joints(feats, model.config.dataset.joints_num).astype(np.float64)
    if d and anchor is not None:
        joints = align_to_pose(joints, d * unit - 1, anchor)
        if blend:
            k = min(BLEND_FRAMES, joints.shape[0] - d * unit)
            ramp = 1.0 - fade_in_weights(k)
            offset = np.asarray(anchor, dtype=np.float64) - joints[d * unit - 1]
            joints[d * unit : d * unit + k] += ramp[:, None, None] * offset
    return feats[d * unit :], joints[d * unit :].astype(np.float32)


def pack_results(
    model: TokenModel, features: Sequence[np.ndarray], joints: Sequence[np.ndarray], tokens: Sequence[torch.Tensor],
    marks: tuple[tuple[int, int], ...] = (),
) -> GenerationResult:
    """Per-motion arrays -> one padded `GenerationResult` (joints past a motion's end hold its last pose)."""
    lengths = np.array([f.shape[0] for f in features], dtype=np.int64)
    t = int(lengths.max())
    feats = np.zeros((len(features), t, features[0].shape[1]), dtype=np.float32)
    out_joints = np.zeros((len(features), t) + joints[0].shape[1:], dtype=np.float32)
    for b, (f, j) in enumerate(zip(features, joints)):
        feats[b, : f.shape[0]] = f
        out_joints[b, : j.shape[0]] = j
        out_joints[b, j.shape[0] :] = j[-1]
    return GenerationResult(features=feats, joints=out_joints, lengths=lengths, tokens=pad_codes(tokens).cpu().numpy(),
                            fps=model.config.dataset.fps, marks=marks)


def decode_chain(model: TokenModel, codes: Sequence[torch.Tensor], marks: tuple[tuple[int, int], ...] = ()
                 ) -> GenerationResult:
    """Whole token chains (one (n_b, Q) per motion), each decoded at once: no seam anywhere."""
    feats = [model.decode_features(c) for c in codes]
    joints = [features_to_joints(f, model.config.dataset.joints_num) for f in feats]
    return pack_results(model, feats, joints, codes, marks=marks)


class PieceDecoder:
    """Decodes pieces of new tokens one after another, each seeing the tokens before it (``hist``) and,
    where known, those after it, and starting where the previous piece's joints ended."""

    def __init__(self, model: TokenModel, batch: int) -> None:
        self.model = model
        self.hist = [model.empty_tokens()] * batch
        self.anchors: list[np.ndarray | None] = [None] * batch

    def emit(self, pieces: list[torch.Tensor], afters: list[torch.Tensor | None]) -> GenerationResult:
        feats, joints = [], []
        for b, (piece, after) in enumerate(zip(pieces, afters)):
            f, jt = decode_after(self.model, self.hist[b], piece, self.anchors[b], after)
            self.hist[b], self.anchors[b] = torch.cat([self.hist[b], piece]), jt[-1]
            feats.append(f)
            joints.append(jt)
        return pack_results(self.model, feats, joints, pieces)


class StreamDecoder(PieceDecoder):
    """Decodes each window's new tokens as soon as they are generated, all but the last
    `TokenModel.decoder_reach` ones (their frames depend on the tokens that follow): those are decoded
    with the next window, so the yielded pieces join without a seam, as one whole decode would give
    them, and the first piece comes after one window's generation."""

    def __init__(self, model: TokenModel, batch: int, total_tokens: int) -> None:
        super().__init__(model, batch)
        self.reach = model.decoder_reach
        self.left = int(total_tokens)
        self.pending = [model.empty_tokens()] * batch

    def push(self, pieces: list[torch.Tensor]) -> GenerationResult | None:
        self.pending = [torch.cat([p, piece]) for p, piece in zip(self.pending, pieces)]
        self.left -= pieces[0].shape[0]
        keep = 0 if self.left <= 0 else self.reach  # the last window: everything
        n = self.pending[0].shape[0] - keep
        if n <= 0:
            return None
        emitted = [p[:n] for p in self.pending]
        afters = [p[n:] if keep else None for p in self.pending]
        self.pending = [p[n:] for p in self.pending]
        return self.emit(emitted, afters)


class LaggedDecoder(PieceDecoder):
    """Decodes each chunk of new tokens once the next chunk is known, so its last frames see what
    follows (as in one whole decode) and the yielded pieces join without a seam (sequences: each
    segment whole)."""

    def __init__(self, model: TokenModel, batch: int) -> None:
        super().__init__(model, batch)
        self.pending: list[torch.Tensor] | None = None

    def push(self, pieces: list[torch.Tensor]) -> GenerationResult | None:
        out = None if self.pending is None else self.emit(self.pending, list(pieces))
        self.pending = pieces
        return out

    def flush(self) -> GenerationResult:
        assert self.pending is not None, "flush() after at least one push()"
        out = self.emit(self.pending, [None] * len(self.pending))
        self.pending = None
        return out
