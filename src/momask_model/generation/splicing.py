"""Splice edits (``mode="splice"``): each section made from the text alone, set between the kept motion.

For models trained on single skills (the packaged demo), which inpaint the context's skill whatever
the text says (`momask_model.generation.editing`). What the demo model makes of a section, and so
what this module does (figures: 6 s walks, seeds 0-4, the skill recognizer; ``bench_edits.py``):

* **A skill needs about 3 s.** Asked for 2 s, the model's kick reads as a punch and its spin as a
  flip with no room to turn (at 40 frames alone: kick 1/5, spin 0/5; at 60 frames: 5/5, 5/5). A
  section's content is generated over at least ``MIN_SPAN_TOKENS`` tokens, and the section takes
  the span's last tokens: a spin reads as one only through to its end (its first second is a
  wind-up), kicks and jumps read right wherever the section falls in their span.
* **The section is decoded within its own span.** The VQ decoder reaches 10 tokens (2 s) either
  side, so decoded between kept walk tokens every frame of a 2 s section mixes in the walk: the
  same tokens read as the skill less often (2 s of a jump's span: 0/5 that way, 5/5 within the span).
  The same reach changed the kept frames (5-7 cm above the VQ floor): kept frames are now the
  source's own decode, equal to its VQ reconstruction.
* **Joins are crossfades.** Each section is turned and shifted on the ground to start where the
  kept motion is, the kept motion after it goes on from its last frame, and at both joins the two
  crossfade inside the section (`compose`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from momask_model.config import SamplingConfig
from momask_model.generation.core import TokenModel
from momask_model.generation.longform import long_tokens
from momask_model.generation.results import GenerationResult
from momask_model.generation.streaming import fade_in_weights
from momask_model.motion.features import features_to_joints
from momask_model.motion.ground_alignment import align_to_pose

#: Shortest span [tokens] a section's content is generated over (15 = 3 s at 20 fps): the demo
#: model's kicks and spins read as those skills from about 3 s on (``bench_edits.py``).
MIN_SPAN_TOKENS = 15
#: Frames over which the kept motion crossfades into a section and back (0.3 s at 20 fps). Longer
#: fades blur a section into the walk around it (a 3 s right-leg kick is named a kick from the
#: result's joints in 5 of 5 seeds with 6 frames, 3 with 8, 0 with 15); shorter ones raise the jerk
#: at the joins (peak jerk 0.71x the in-clip P95 with 6, 0.79x with 4; ``bench_joins.py``).
FADE_FRAMES = 6


def section_motion(model: TokenModel, cond_m: torch.Tensor, cond_r: torch.Tensor, n: int, *, sampling: SamplingConfig,
                   generator: torch.Generator | None, fast: bool) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """(tokens (B, n, Q), features (B, n * unit, D), joints (B, n * unit, J, 3)) of an ``n``-token
    section made from the text alone: a motion of ``max(n, MIN_SPAN_TOKENS)`` tokens (in windows past
    the model's window), of which the section is the last ``n`` tokens, decoded within it."""
    span = max(n, MIN_SPAN_TOKENS)
    lens = torch.full((cond_m.shape[0],), span, dtype=torch.long, device=cond_m.device)
    if span <= model.window_tokens:
        codes = model.sample_tokens(cond_m, cond_r, lens, sampling=sampling, generator=generator, fast=fast)
    else:
        codes = long_tokens(model, cond_m, cond_r, lens, overlap_tokens=None, sampling=sampling,
                            generator=generator, fast=fast)
    decoded = model.decode_tokens(codes, lens.cpu())
    start = (span - n) * model.unit_length
    return codes[:, span - n :], decoded.features[:, start:], decoded.joints[:, start:]


def compose(kept: np.ndarray, pieces: Sequence[tuple[int, int, np.ndarray]], fade: int = FADE_FRAMES) -> np.ndarray:
    """Joints (T, J, 3) of a splice edit: ``kept`` (the source's decode) with each piece (start,
    end, joints (end - start, J, 3)) set in at [start, end).

    A piece is turned and shifted on the ground to start where the kept motion would be; the kept
    motion after it is placed on its last frame (it goes on from where, and facing where, the piece
    left the body). At each join the kept motion crossfades into the piece (and back) over ``k``
    frames inside the piece, ``k`` at most ``fade`` and a quarter of the piece (half at the motion's
    ends), with quintic smootherstep weights: no step in position, velocity or acceleration.
    """
    kept = np.asarray(kept, np.float64)
    out, total = kept.copy(), kept.shape[0]
    for a, b, piece in sorted(pieces, key=lambda p: p[0]):
        n, ends = b - a, (a > 0) + (b < total)
        k = min(fade, n // (2 * ends)) if ends else 0
        ramp = fade_in_weights(k)[:, None, None]
        before = align_to_pose(kept, a - 1, out[a - 1]) if a > 0 else kept
        seg = align_to_pose(piece, 0, before[a])
        if a > 0 and k:
            seg[:k] = (1.0 - ramp) * before[a : a + k] + ramp * seg[:k]
        if b < total:
            after = align_to_pose(kept, b - 1, seg[-1])
            if k:
                seg[n - k :] = (1.0 - ramp) * seg[n - k :] + ramp * after[b - k : b]
            out[b:] = after[b:]
        out[a:b] = seg
    return out


def splice_result(model: TokenModel, source: torch.Tensor, codes: torch.Tensor,
                  pieces: Sequence[tuple[int, int, np.ndarray, np.ndarray]]) -> GenerationResult:
    """The edit's result from the source's tokens (1, N, Q), the spliced ones (B, N, Q) and each
    section's (start frame, end frame, features (B, n, D), joints (B, n, J, 3)): kept frames are the
    source's own decode (its VQ reconstruction), sections their own motion, set in by `compose`."""
    feats = model.decode_features(source[0])
    joints = features_to_joints(feats, model.config.dataset.joints_num)
    batch, total = codes.shape[0], feats.shape[0]
    out_feats = np.repeat(feats[None], batch, axis=0)
    out_joints = np.zeros((batch,) + joints.shape, dtype=np.float32)
    for i in range(batch):
        for a, b, f, _ in pieces:
            out_feats[i, a:b] = f[i]
        out_joints[i] = compose(joints, [(a, b, j[i]) for a, b, _, j in pieces])
    return GenerationResult(features=out_feats, joints=out_joints, lengths=np.full(batch, total, dtype=np.int64),
                            tokens=codes.cpu().numpy(), fps=model.config.dataset.fps,
                            marks=tuple((a, b) for a, b, _, _ in pieces))
