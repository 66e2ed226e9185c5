"""`MoMask`: the whole text-to-motion model, and its generation API.

One module owns every part (text encoder, RVQ-VAE, masked and residual transformers, length
estimator, normaliser) so that a bundle checkpoint, the CLI and the ROS node all load and call it the
same way. Generation follows design/momask.md §7.1: M-Transformer -> R-Transformer -> VQ decoder ->
de-normalise -> crop -> recover joints.
"""
from __future__ import annotations

import logging
import math
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .config import MoMaskConfig
from .fastpath import FastPathOptions
from .motion import Normalizer, features_to_joints

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 1000


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
    """

    features: np.ndarray
    joints: np.ndarray
    lengths: np.ndarray
    tokens: np.ndarray
    fps: float

    def motion(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(features (L, D), joints (L, J, 3)) of one motion, cropped to its length."""
        n = int(self.lengths[index])
        return self.features[index, :n], self.joints[index, :n]


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


class MoMask(nn.Module):
    """Text -> 3D human motion (MoMask, Guo et al. CVPR 2024)."""

    def __init__(
        self,
        *,
        config: MoMaskConfig,
        vq: nn.Module,
        mask_transformer: nn.Module,
        residual_transformer: nn.Module,
        text_encoder: nn.Module,
        normalizer: Normalizer,
        length_estimator: nn.Module | None = None,
        text_cache_size: int = 256,
    ) -> None:
        super().__init__()
        self.config = config.validate()
        self.vq = vq
        self.mask_transformer = mask_transformer
        self.residual_transformer = residual_transformer
        self.length_estimator = length_estimator
        self.text_encoder = text_encoder
        self.normalizer = normalizer
        self._text_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._text_cache_size = text_cache_size
        #: How the fast path executes (GPU bf16 / compile are opt-in here); see `FastPathOptions`.
        self.fast_options = FastPathOptions()
        self.eval()

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        return next(self.vq.parameters()).device

    @property
    def unit_length(self) -> int:
        return self.config.dataset.unit_length

    @property
    def max_length(self) -> int:
        return self.config.dataset.max_motion_length

    def unknown_words(self, text: str) -> list[str]:
        """Words the text encoder cannot represent (always empty for CLIP)."""
        fn = getattr(self.text_encoder, "unknown_words", None)
        return list(fn(text)) if fn is not None else []

    def encode_text(self, texts: list[str], *, cache: bool = True, fast: bool | None = None) -> torch.Tensor:
        """Text condition (B, cond_dim) on the model's device; cached per text when ``cache``.

        ``fast`` (default: same as ``cache``) lets the encoder skip work that cannot change the result
        (CLIP: positions after the last end-of-text token); each distinct text is encoded once.
        """
        fast = cache if fast is None else fast
        if not cache:
            return self._run_text_encoder(texts, fast)
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            emb = self._run_text_encoder(missing, fast)
            for text, vec in zip(missing, emb):
                self._text_cache[text] = vec
                if len(self._text_cache) > self._text_cache_size:
                    self._text_cache.popitem(last=False)
        for t in texts:
            self._text_cache.move_to_end(t)
        return torch.stack([self._text_cache[t] for t in texts])

    def clear_text_cache(self) -> None:
        """Forget cached text embeddings (benchmarks measuring a cold command use it)."""
        self._text_cache.clear()

    def _run_text_encoder(self, texts: list[str], fast: bool) -> torch.Tensor:
        encode = self.text_encoder.encode
        out = encode(texts, fast=True) if fast and _accepts(encode, "fast") else encode(texts)
        return out.float().to(self.device)

    def _token_lengths(
        self, lengths: int | Sequence[int] | None, cond: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        batch = cond.shape[0]
        unit, max_tokens = self.unit_length, self.max_length // self.unit_length
        if lengths is None:
            if self.length_estimator is None:
                raise GenerationError("this bundle has no length estimator: pass lengths (frames)")
            return self.length_estimator.sample(cond, generator=generator).long().clamp(1, max_tokens)
        if isinstance(lengths, (int, np.integer)):
            lengths = [int(lengths)] * batch
        if len(lengths) != batch:
            raise GenerationError(f"{len(lengths)} lengths given for {batch} texts")
        tokens = []
        for i, n in enumerate(lengths):
            if isinstance(n, float) and not math.isfinite(n):
                raise GenerationError(f"length {i} is {n}")
            n = int(n)
            if not unit <= n <= self.max_length:
                raise GenerationError(
                    f"length {i} = {n} frames is out of range [{unit}, {self.max_length}] "
                    f"({self.max_length / self.config.dataset.fps:.1f} s at {self.config.dataset.fps:g} fps)"
                )
            tokens.append(n // unit)
        return torch.tensor(tokens, dtype=torch.long, device=self.device)

    def _generator(self, seed: int | None) -> torch.Generator | None:
        if seed is None:
            return None
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(seed))
        return gen

    # ------------------------------------------------------------------ API
    @torch.inference_mode()
    def generate_tokens(
        self,
        texts: str | Sequence[str],
        lengths: int | Sequence[int] | None = None,
        *,
        seed: int | None = None,
        timesteps: int | None = None,
        cond_scale: float | None = None,
        res_cond_scale: float | None = None,
        temperature: float | None = None,
        topk_filter_thres: float | None = None,
        gsample: bool | None = None,
        fast: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Text -> (tokens (B, N, Q) with -1 at padding, token lengths (B,)).

        ``fast`` selects the optimised execution path (fused conditional/unconditional batch-first
        batch, text embedding cached per command and computed only up to the end-of-text token,
        per-call constants built once, ``torch.inference_mode``; options in ``self.fast_options``);
        ``fast=False`` runs the reference loop as the paper and the official code do (including the
        official's second text encoding, by the residual transformer). Both compute the
        same thing; at a fixed seed in float32 they give the same tokens (unless ``fast_options``
        enables bf16 on a GPU).
        """
        s = self.config.sampling
        timesteps = s.timesteps if timesteps is None else timesteps
        cond_scale = s.cond_scale if cond_scale is None else cond_scale
        res_cond_scale = s.res_cond_scale if res_cond_scale is None else res_cond_scale
        temperature = s.temperature if temperature is None else temperature
        topk_filter_thres = s.topk_filter_thres if topk_filter_thres is None else topk_filter_thres
        gsample = s.gsample if gsample is None else gsample
        if timesteps < 1:
            raise GenerationError(f"timesteps must be >= 1, got {timesteps}")
        if not (temperature > 0 and math.isfinite(temperature)):
            raise GenerationError(f"temperature must be > 0, got {temperature}")
        for name, scale in (("cond_scale", cond_scale), ("res_cond_scale", res_cond_scale)):
            if not (scale >= 0 and math.isfinite(scale)):
                raise GenerationError(f"{name} must be >= 0 (1 = text only, more = stronger guidance), got {scale}")
        texts = validate_texts(texts)
        generator = self._generator(seed)
        cond = self.encode_text(texts, cache=fast)
        token_lens = self._token_lengths(lengths, cond, generator)
        extra = self._fast_kwargs(self.mask_transformer.generate, fast)
        base = self.mask_transformer.generate(
            cond,
            token_lens,
            timesteps=timesteps,
            cond_scale=cond_scale,
            temperature=temperature,
            topk_filter_thres=topk_filter_thres,
            gsample=gsample,
            generator=generator,
            **extra,
        )
        if not fast:
            # The reference runs as the official code does: each transformer encodes the text itself.
            cond = self.encode_text(texts, cache=False)
        extra = self._fast_kwargs(self.residual_transformer.generate, fast)
        codes = self.residual_transformer.generate(
            base,
            cond,
            token_lens,
            temperature=1.0,
            topk_filter_thres=topk_filter_thres,
            cond_scale=res_cond_scale,
            generator=generator,
            **extra,
        )
        return codes, token_lens

    def _fast_kwargs(self, fn, fast: bool) -> dict:
        if not (fast and _accepts(fn, "fused_cfg")):
            return {}
        extra: dict = {"fused_cfg": True}
        if _accepts(fn, "fast_options"):
            extra["fast_options"] = self.fast_options
        return extra

    @torch.inference_mode()
    def decode_tokens(self, codes: torch.Tensor, token_lens: torch.Tensor) -> GenerationResult:
        """Tokens -> de-normalised features and joints, cropped per motion."""
        feats = self.vq.decode(codes)  # (B, unit*N, D), normalised
        feats = np.asarray(self.normalizer.denormalize(feats.float().cpu().numpy()), dtype=np.float32)
        lengths = token_lens.cpu().numpy() * self.unit_length
        joints_num = self.config.dataset.joints_num
        joints = np.zeros(feats.shape[:2] + (joints_num, 3), dtype=np.float32)
        for b, n in enumerate(lengths):
            feats[b, n:] = 0.0
            joints[b, :n] = features_to_joints(feats[b, :n], joints_num)
            joints[b, n:] = joints[b, n - 1]
        return GenerationResult(
            features=feats.astype(np.float32),
            joints=joints,
            lengths=lengths.astype(np.int64),
            tokens=codes.cpu().numpy(),
            fps=self.config.dataset.fps,
        )

    def generate(
        self, texts: str | Sequence[str], lengths: int | Sequence[int] | None = None, **kwargs
    ) -> GenerationResult:
        """Text(s) -> motions. ``lengths`` in frames (None: sampled from the length estimator).

        Keyword arguments are those of `generate_tokens` (seed, timesteps, cond_scale, res_cond_scale,
        temperature, topk_filter_thres, gsample, fast).
        """
        codes, token_lens = self.generate_tokens(texts, lengths, **kwargs)
        return self.decode_tokens(codes, token_lens)


def _accepts(fn, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
