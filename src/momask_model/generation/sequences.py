"""Sequences: several segments (``walk length=3s | jump | kick``), each continuing the one before.

A sequence is one token chain: each segment's tokens are generated after the chain so far, with its
last ``context_tokens`` tokens fixed (`longform.extend_windows`), conditioned on the segment's own
text. `generate_sequence` yields one result per segment as pieces of that chain (streaming);
`generate_sequence_motion` decodes the whole chain at once. Both give the same tokens at one seed.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from momask_model.config import SamplingConfig
from momask_model.generation.core import TokenModel
from momask_model.generation.longform import check_context, extend_windows
from momask_model.generation.prompt import PromptError, Segment, parse_segment, parse_sequence, round_to_unit
from momask_model.generation.results import MAX_LONG_FRAMES, GenerationError, GenerationResult, validate_texts
from momask_model.generation.streaming import LaggedDecoder, decode_chain

#: What a sequence may be given as: a prompt string, one segment, or a list of segments / texts.
Segments = str | Segment | Sequence[Segment | str]


def parse_segments(model: TokenModel, segments: Segments) -> list[Segment]:
    """A prompt string (`momask_model.generation.prompt`, ``then`` per the bundle) or a list of `Segment`/str."""
    limits = dict(fps=model.config.dataset.fps, unit=model.unit_length, max_frames=MAX_LONG_FRAMES)
    if isinstance(segments, str):
        try:
            return parse_sequence(segments, then_separates=model.then_separates_segments, **limits)
        except PromptError as exc:
            raise GenerationError(str(exc)) from None
    if isinstance(segments, Segment):
        segments = [segments]
    out = []
    for i, seg in enumerate(segments or []):
        try:
            if isinstance(seg, str):
                seg = parse_segment(seg, **limits)
            elif not isinstance(seg, Segment):
                raise GenerationError(f"is a {type(seg).__name__}, expected a Segment or text")
            validate_texts(seg.text)
            if seg.length_frames is not None:
                frames = max(model.unit_length, round_to_unit(seg.length_frames, model.unit_length))
                if frames > MAX_LONG_FRAMES:
                    raise GenerationError(f"length {seg.length_frames} frames exceeds {MAX_LONG_FRAMES}")
                seg = Segment(seg.text, frames, seg.speed, seg.seed)
        except (PromptError, GenerationError) as exc:
            raise GenerationError(f"segment {i + 1} of {len(segments)}: {exc}") from None
        out.append(seg)
    if not out:
        raise GenerationError("a sequence needs at least one segment")
    return out


def sequence_tokens(
    model: TokenModel, segments: Segments, *, sampling: SamplingConfig, num_samples: int = 1,
    context_tokens: int | None = None, seed: int | None = None, fast: bool = True,
) -> Iterator[tuple[Segment, list[torch.Tensor]]]:
    """Per segment: (segment, its new tokens per sample).

    Each segment continues the one before (``context_tokens`` fixed); a segment's ``seed`` restarts
    the random stream for it; a segment without a length takes one from the length estimator.
    """
    segs = parse_segments(model, segments)
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise GenerationError(f"num_samples must be an integer >= 1, got {num_samples!r}")
    context = check_context(model, context_tokens)
    generator = model.random_generator(seed)
    hist = [model.empty_tokens()] * num_samples
    for i, seg in enumerate(segs):
        gen = model.random_generator(seg.seed) if seg.seed is not None else generator
        cond_m, cond_r = model.conditions([seg.text], None, fast=fast, batch=num_samples)
        if seg.length_frames is None:
            try:
                counts = model.token_lengths(None, cond_m, gen).tolist()
            except GenerationError as exc:
                raise GenerationError(f"segment {i + 1} ({seg.text!r}) has no length: {exc}") from None
        else:
            counts = [seg.length_frames // model.unit_length] * num_samples
        parts: list[list[torch.Tensor]] = [[] for _ in range(num_samples)]
        for active, pieces in extend_windows(model, hist, cond_m, cond_r, counts, context=context, sampling=sampling,
                                             generator=gen, fast=fast):
            for b, piece in zip(active, pieces):
                parts[b].append(piece)
        new = [torch.cat(p) for p in parts]
        hist = [torch.cat([h, n]) for h, n in zip(hist, new)]
        yield seg, new


def generate_sequence(model: TokenModel, segments: Segments, *, sampling: SamplingConfig, num_samples: int = 1,
                      context_tokens: int | None = None, seed: int | None = None, fast: bool = True,
                      ) -> Iterator[GenerationResult]:
    """`MoMask.generate_sequence` (its docstring says what each argument means); ``sampling`` is resolved."""
    decoder: LaggedDecoder | None = None
    for _, new in sequence_tokens(model, segments, sampling=sampling, num_samples=num_samples,
                                  context_tokens=context_tokens, seed=seed, fast=fast):
        decoder = decoder or LaggedDecoder(model, len(new))
        done = decoder.push(new)
        if done is not None:
            yield done
    if decoder is not None:
        yield decoder.flush()


def generate_sequence_motion(model: TokenModel, segments: Segments, *, sampling: SamplingConfig, num_samples: int = 1,
                             context_tokens: int | None = None, seed: int | None = None, fast: bool = True,
                             ) -> GenerationResult:
    """`MoMask.generate_sequence_motion` (its docstring says what each argument means)."""
    unit = model.unit_length
    parts: list[list[torch.Tensor]] = []
    marks, start = [], 0
    for _, new in sequence_tokens(model, segments, sampling=sampling, num_samples=num_samples,
                                  context_tokens=context_tokens, seed=seed, fast=fast):
        parts = parts or [[] for _ in new]
        for b, n in enumerate(new):
            parts[b].append(n)
        marks.append((start, start + new[0].shape[0] * unit))
        start = marks[-1][1]
    return decode_chain(model, [torch.cat(p) for p in parts], marks=tuple(marks))
