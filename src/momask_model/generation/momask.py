"""`MoMask`: the whole text-to-motion model and its one generation API.

Every entry point (a bundle, the CLI, the ROS node) loads and calls the model the same way. Plain
generation follows design/momask.md §7.1 (M-Transformer -> R-Transformer -> VQ decoder ->
de-normalise -> crop -> recover joints); long motions, continuations, sequences and edits are the
model's temporal inpainting over windows (`longform`, `sequences`, `editing`), all built from the
token-level steps of `TokenModel`.

Sampling settings travel as one frozen `SamplingConfig` (``sampling=``; default: the bundle's).
For convenience every public method also takes its fields as keywords (``cond_scale=2``), None
keeping the bundle's value; `TokenModel.sampling_config` is the one place that turns them into a
checked `SamplingConfig`.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch

from momask_model.config import SamplingConfig
from momask_model.generation import editing, longform, sequences
from momask_model.generation.core import RESIDUAL_MODES, TokenModel
from momask_model.generation.results import GenerationError, GenerationResult


class MoMask(TokenModel):
    """Text -> 3D human motion (MoMask, Guo et al. CVPR 2024).

    Joints are (B, T, J, 3) [m], Y-up, at ``config.dataset.fps``; lengths are frames, whole tokens
    of ``unit_length`` frames. ``fast`` selects the optimised execution path (fused conditional /
    unconditional batch, text embedding cached per command and computed only up to the end-of-text
    token, per-call constants built once, ``torch.inference_mode``; options in ``fast_options``);
    ``fast=False`` runs the reference loop as the paper and the official code do (including the
    official's second text encoding, by the residual transformer). Both give the same tokens at a
    fixed seed in float32 (unless ``fast_options`` enables bf16 on a GPU).
    """

    @torch.inference_mode()
    def generate_tokens(
        self,
        texts: str | Sequence[str] | None,
        lengths: int | Sequence[int] | None = None,
        *,
        seed: int | None = None,
        fast: bool = True,
        cond: torch.Tensor | None = None,
        overlap_tokens: int | None = None,
        sampling: SamplingConfig | None = None,
        **sampling_overrides: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Text (or a precomputed condition ``cond`` (B, cond_dim)) -> (tokens (B, N, Q) with -1 at
        padding, token lengths (B,)).

        Lengths beyond the model's window (``max_length``) are generated in windows
        (`momask_model.generation.longform`, ``overlap_tokens`` fixed tokens per join).
        """
        opts = self.sampling_config(sampling, **sampling_overrides)
        batch = self.batch_size(texts, cond) if texts is not None or cond is not None else None
        cond_m, cond_r = self.conditions(texts, cond, fast=fast, batch=batch)
        generator = self.random_generator(seed)
        token_lens = self.token_lengths(lengths, cond_m, generator, allow_long=True)
        if int(token_lens.max()) > self.window_tokens:
            codes = longform.long_tokens(self, cond_m, cond_r, token_lens, overlap_tokens=overlap_tokens,
                                         sampling=opts, generator=generator, fast=fast)
            return codes, token_lens
        return self.sample_tokens(cond_m, cond_r, token_lens, sampling=opts, generator=generator, fast=fast), token_lens

    def generate(
        self,
        texts: str | Sequence[str] | None,
        lengths: int | Sequence[int] | None = None,
        *,
        seed: int | None = None,
        fast: bool = True,
        cond: torch.Tensor | None = None,
        overlap_tokens: int | None = None,
        sampling: SamplingConfig | None = None,
        **sampling_overrides: Any,
    ) -> GenerationResult:
        """Text(s) -> motions.

        Args:
            texts: one text or one per motion (or None with ``cond``).
            lengths: frames per motion (one for all, or one each); None samples them from the length
                estimator. Any length up to ``MAX_LONG_FRAMES``: past the model's window it is made
                in windows and decoded as one sequence.
            seed: makes the sampling reproducible.
            fast: the fast path (default) or the reference loop (see the class docstring).
            cond: (B, cond_dim) precomputed text condition instead of ``texts``.
            overlap_tokens: tokens fixed at each join of a long motion (default: the measured choice).
            sampling / sampling_overrides: see the module docstring.
        """
        codes, token_lens = self.generate_tokens(texts, lengths, seed=seed, fast=fast, cond=cond,
                                                 overlap_tokens=overlap_tokens, sampling=sampling,
                                                 **sampling_overrides)
        return self.decode_tokens(codes, token_lens)

    def generate_long(self, texts: str | Sequence[str] | None, length: int, **kwargs: Any) -> GenerationResult:
        """Motions of any length up to ``MAX_LONG_FRAMES``; `generate` with one length for all."""
        return self.generate(texts, length, **kwargs)

    @torch.inference_mode()
    def estimate_lengths(self, texts: str | Sequence[str], *, seed: int | None = None) -> np.ndarray:
        """Frames the length estimator gives each text (sampled, as `generate` does without lengths):
        what a continuation without a length uses, so it lasts as long as the same command afresh."""
        cond, _ = self.conditions(texts, None, fast=True)
        return self.token_lengths(None, cond, self.random_generator(seed)).cpu().numpy() * self.unit_length

    def iter_windows(
        self,
        texts: str | Sequence[str] | None,
        length: int,
        *,
        overlap_tokens: int | None = None,
        seed: int | None = None,
        fast: bool = True,
        cond: torch.Tensor | None = None,
        sampling: SamplingConfig | None = None,
        **sampling_overrides: Any,
    ) -> Iterator[GenerationResult]:
        """The windows of `generate_long` (same tokens at the same seed), decoded and yielded one by one.

        Each result holds only that window's new frames, continuing the previous one in one world frame,
        and comes as soon as its window is generated: the last ``decoder_reach`` tokens' frames of each
        window (which depend on the next window's tokens) come with the next one.
        """
        return longform.iter_windows(self, texts, length, sampling=self.sampling_config(sampling, **sampling_overrides),
                                     overlap_tokens=overlap_tokens, seed=seed, fast=fast, cond=cond)

    def continue_motion(
        self,
        prev_tokens: np.ndarray | torch.Tensor,
        prev_joints: np.ndarray,
        at_frame: int,
        text: str | None,
        length: int,
        *,
        context_tokens: int | None = None,
        seed: int | None = None,
        fast: bool = True,
        cond: torch.Tensor | None = None,
        sampling: SamplingConfig | None = None,
        **sampling_overrides: Any,
    ) -> GenerationResult:
        """A new motion that takes over from a previous one at ``at_frame`` (the preempt/queue switch).

        Args:
            prev_tokens: (N_prev, Q) token ids of the previous motion (no padding).
            prev_joints: (T_prev, J, 3) its joints [m, Y-up] in the caller's frame.
            at_frame: switch frame, a multiple of the unit in [unit, T_prev]; T_prev queues after its end.
            text / cond: what the new motion does (a precomputed (1, cond_dim) condition replaces the text).
            length: frames of the new motion from the switch on (a multiple of the unit; may exceed the window).
            context_tokens: previous tokens before the switch kept fixed (default ``DEFAULT_CONTEXT_TOKENS``).
        Returns:
            A batch-1 `GenerationResult` starting at the switch: frame 0 is the frame that would have been
            ``prev`` frame ``at_frame``, placed after ``prev_joints[at_frame - 1]`` (root position and
            heading aligned, the pose difference faded out over ``BLEND_FRAMES``); ``tokens`` are the
            new tokens only.
        """
        return longform.continue_motion(
            self, prev_tokens, prev_joints, at_frame, text, length,
            sampling=self.sampling_config(sampling, **sampling_overrides), context_tokens=context_tokens, seed=seed,
            fast=fast, cond=cond,
        )

    def generate_sequence(
        self,
        segments: sequences.Segments,
        *,
        num_samples: int = 1,
        context_tokens: int | None = None,
        seed: int | None = None,
        fast: bool = True,
        sampling: SamplingConfig | None = None,
        **sampling_overrides: Any,
    ) -> Iterator[GenerationResult]:
        """One `GenerationResult` per segment, each a continuation of the one before in one world frame
        (concatenating their joints gives the whole motion, equal to `generate_sequence_motion`'s up to
        float rounding). A segment is yielded once the next one's tokens exist (its last frames are
        decoded knowing what follows).

        Args:
            segments: a prompt (``"walk length=3s | jump"``; ``then`` separates segments when the
                bundle says so), a `Segment`, or a list of segments or texts.
            num_samples: motions per segment (a batch of sequences).
            context_tokens: tokens of the segment before fixed at each join (default: the measured choice).
        """
        return sequences.generate_sequence(
            self, segments, sampling=self.sampling_config(sampling, **sampling_overrides), num_samples=num_samples,
            context_tokens=context_tokens, seed=seed, fast=fast,
        )

    def generate_sequence_motion(
        self,
        segments: sequences.Segments,
        *,
        num_samples: int = 1,
        context_tokens: int | None = None,
        seed: int | None = None,
        fast: bool = True,
        sampling: SamplingConfig | None = None,
        **sampling_overrides: Any,
    ) -> GenerationResult:
        """The whole sequence as one motion, its token chain decoded at once (no seam); ``marks`` are the
        segments' frame ranges of the first motion. Same tokens as `generate_sequence` at the same seed."""
        return sequences.generate_sequence_motion(
            self, segments, sampling=self.sampling_config(sampling, **sampling_overrides), num_samples=num_samples,
            context_tokens=context_tokens, seed=seed, fast=fast,
        )

    def edit(
        self,
        source: editing.Source,
        sections: str | Sequence | None,
        texts: str | Sequence[str] | None = None,
        *,
        residual: str = "keep",
        mode: str = "auto",
        cond: torch.Tensor | None = None,
        seed: int | None = None,
        fast: bool = True,
        source_index: int = 0,
        sampling: SamplingConfig | None = None,
        **sampling_overrides: Any,
    ) -> GenerationResult:
        """Regenerate ``sections`` of ``source`` so they follow the text; the rest of the motion is kept.

        Args:
            source: (T, D) de-normalised features, a `GenerationResult`, a ``momask-generate`` ``.npz``
                or a HumanML3D ``new_joint_vecs`` ``.npy`` (see `editing.load_source`).
            sections: one or more sections (`momask_model.generation.sections`: ``2s:4s``, ``40:80``,
                ``0.25,0.5``, ``:2s``, ``6s:``). No section returns the source's own tokens, decoded.
            texts: the text (one, or one per edit of a batch); or ``cond`` (B, cond_dim) instead.
            residual: ``"keep"`` (default) or ``"regenerate"`` (the official whole-motion residual pass),
                for inpainted sections.
            mode: ``"inpaint"`` (the paper's editing: the kept motion is the context), ``"splice"``
                (each section made from the text alone, over at least 3 s, and set in between the
                kept frames with crossfades; `momask_model.generation.splicing`) or ``"auto"``
                (default: splice for a model trained on single skills, which inpaints the context's
                skill whatever the text; see `momask_model.generation.editing`).
            seed, fast: as in generation (fast and reference paths give the same tokens).
            sampling / sampling_overrides: as in generation, except that the residual guidance
                defaults to 2 (``EDIT_RES_COND_SCALE``, the official edit's) unless given.
        Returns:
            A `GenerationResult` of the source's length (cropped to the token unit); ``marks`` are the
            edited sections in frames.
        Raises:
            SectionError: a bad section, naming it. GenerationError: a bad source, text or option.
        """
        if residual not in RESIDUAL_MODES:
            raise GenerationError(f"residual must be one of {RESIDUAL_MODES}, got {residual!r}")
        if sampling is None and sampling_overrides.get("res_cond_scale") is None:
            sampling_overrides["res_cond_scale"] = editing.EDIT_RES_COND_SCALE
        return editing.edit(self, source, sections, texts, sampling=self.sampling_config(sampling, **sampling_overrides),
                            residual=residual, mode=mode, cond=cond, seed=seed, fast=fast, source_index=source_index)

    def encode_motion(self, source: editing.Source, index: int = 0) -> torch.Tensor:
        """A source motion (features, ``.npz``/``.npy`` path, or result) -> its tokens (1, N, Q)."""
        return self.encode_features(editing.model_source(self, source, index))
