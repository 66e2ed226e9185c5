"""`MoMask`: the whole text-to-motion model, and its generation API.

One module owns every part (text encoder, RVQ-VAE, masked and residual transformers, length
estimator, normaliser) so that a bundle checkpoint, the CLI and the ROS node all load and call it the
same way. Generation follows design/momask.md §7.1: M-Transformer -> R-Transformer -> VQ decoder ->
de-normalise -> crop -> recover joints.
"""
from __future__ import annotations

import logging
import math
from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch
from torch import nn

from momask_model.config import MoMaskConfig
from momask_model.nets.fastpath import FastPathOptions
from momask_model.generation import editing
from momask_model.generation import longform
from momask_model.motion.features import features_to_joints
from momask_model.motion.normalization import Normalizer
from momask_model.generation.results import (
    MAX_LONG_FRAMES,
    GenerationError,
    GenerationResult,
    check_cond_vector,
    validate_texts,
)

log = logging.getLogger(__name__)

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
        #: `momask_model.text.scope.ScopeGate` of a bundle trained on a few skills (None: every text is in scope).
        self.scope_gate = None
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

    @property
    def then_separates_segments(self) -> bool:
        """Whether ``then`` between clauses separates the segments of a prompt (`momask_model.generation.prompt`).

        The bundle's ``dataset.then_separates_segments`` when set; otherwise derived: True for a model
        trained on single skills (its bundle lists ``skills``, as the packaged demo does), False for
        HumanML3D/KIT models, whose captions use "then" inside one motion.
        """
        flag = self.config.dataset.then_separates_segments
        if flag is not None:
            return bool(flag)
        return bool((getattr(self, "bundle_meta", None) or {}).get("skills"))

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
        self, lengths: int | Sequence[int] | None, cond: torch.Tensor, generator: torch.Generator | None,
        *, allow_long: bool = False,
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
            longest = MAX_LONG_FRAMES if allow_long else self.max_length
            if not unit <= n <= longest:
                raise GenerationError(
                    f"length {i} = {n} frames is out of range [{unit}, {longest}] "
                    f"({longest / self.config.dataset.fps:.1f} s at {self.config.dataset.fps:g} fps)"
                )
            tokens.append(n // unit)
        return torch.tensor(tokens, dtype=torch.long, device=self.device)

    @torch.no_grad()
    def estimate_lengths(self, texts: str | Sequence[str], *, seed: int | None = None) -> np.ndarray:
        """Frames the length estimator gives each text (sampled, as `generate` does without lengths):
        what a continuation without a length uses, so it lasts as long as the same command afresh."""
        cond, _ = self.conditions(texts, None, fast=True)
        return self._token_lengths(None, cond, self._generator(seed)).cpu().numpy() * self.unit_length

    def _generator(self, seed: int | None) -> torch.Generator | None:
        if seed is None:
            return None
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(seed))
        return gen

    def sampling_options(
        self,
        *,
        timesteps: int | None = None,
        cond_scale: float | None = None,
        res_cond_scale: float | None = None,
        temperature: float | None = None,
        topk_filter_thres: float | None = None,
        gsample: bool | None = None,
    ) -> dict:
        """The sampling settings of one call: the given ones, the bundle's defaults for the rest (checked)."""
        s = self.config.sampling
        out = dict(
            timesteps=s.timesteps if timesteps is None else timesteps,
            cond_scale=s.cond_scale if cond_scale is None else cond_scale,
            res_cond_scale=s.res_cond_scale if res_cond_scale is None else res_cond_scale,
            temperature=s.temperature if temperature is None else temperature,
            topk_filter_thres=s.topk_filter_thres if topk_filter_thres is None else topk_filter_thres,
            gsample=s.gsample if gsample is None else gsample,
        )
        if out["timesteps"] < 1:
            raise GenerationError(f"timesteps must be >= 1, got {out['timesteps']}")
        if not (out["temperature"] > 0 and math.isfinite(out["temperature"])):
            raise GenerationError(f"temperature must be > 0, got {out['temperature']}")
        for name in ("cond_scale", "res_cond_scale"):
            if not (out[name] >= 0 and math.isfinite(out[name])):
                raise GenerationError(f"{name} must be >= 0 (1 = text only, more = stronger guidance), got {out[name]}")
        return out

    def conditions(
        self, texts: str | Sequence[str] | None, cond: torch.Tensor | None, *, fast: bool, batch: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked-transformer condition, residual-transformer condition), each (B, cond_dim).

        From a precomputed ``cond`` (used for both, repeated to ``batch`` rows when it has one row) or
        from the texts. The reference path (``fast=False``) encodes the text once per transformer, as
        the official code does; the fast path encodes each text once (cached).
        """
        if cond is not None:
            vec = check_cond_vector(cond, self.config.text_encoder.dim, batch).to(self.device)
            if batch is not None and vec.shape[0] == 1 and batch > 1:
                vec = vec.expand(batch, -1)
            return vec, vec
        if texts is None:
            raise GenerationError("give a text or a precomputed condition (cond=)")
        texts = validate_texts(texts)
        if batch is not None and len(texts) == 1 and batch > 1:
            texts = texts * batch
        if batch is not None and len(texts) != batch:
            raise GenerationError(f"{len(texts)} texts given for {batch} motions")
        first = self.encode_text(texts, cache=fast)
        return first, (first if fast else self.encode_text(texts, cache=False))

    def transformer_kwargs(self, fast: bool) -> tuple[dict, dict]:
        """Fast-path keyword arguments of (masked, residual) generate/edit calls."""
        return (self._fast_kwargs(self.mask_transformer.generate, fast),
                self._fast_kwargs(self.residual_transformer.generate, fast))

    # ------------------------------------------------------------------ API
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
        **sampling,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Text (or a precomputed condition ``cond`` (B, cond_dim)) -> (tokens (B, N, Q) with -1 at
        padding, token lengths (B,)).

        Sampling keywords: timesteps, cond_scale, res_cond_scale, temperature, topk_filter_thres,
        gsample (defaults from the bundle). Lengths beyond the model's window (``max_length``) are
        generated in windows (`momask_model.generation.longform`, ``overlap_tokens`` fixed tokens per join).

        ``fast`` selects the optimised execution path (fused conditional/unconditional batch-first
        batch, text embedding cached per command and computed only up to the end-of-text token,
        per-call constants built once, ``torch.inference_mode``; options in ``self.fast_options``);
        ``fast=False`` runs the reference loop as the paper and the official code do (including the
        official's second text encoding, by the residual transformer). Both compute the
        same thing; at a fixed seed in float32 they give the same tokens (unless ``fast_options``
        enables bf16 on a GPU).
        """
        opts = self.sampling_options(**sampling)
        batch = None if cond is None or texts is not None else check_cond_vector(cond, self.config.text_encoder.dim).shape[0]
        if texts is not None:
            batch = len(validate_texts(texts))
        cond_m, cond_r = self.conditions(texts, cond, fast=fast, batch=batch)
        generator = self._generator(seed)
        token_lens = self._token_lengths(lengths, cond_m, generator, allow_long=True)
        if int(token_lens.max()) * self.unit_length > self.max_length:
            return longform.long_tokens(self, cond_m, cond_r, token_lens, overlap_tokens=overlap_tokens,
                               generator=generator, fast=fast, sampling=opts)
        m_kw, r_kw = self.transformer_kwargs(fast)
        base = self.mask_transformer.generate(
            cond_m, token_lens, timesteps=opts["timesteps"], cond_scale=opts["cond_scale"],
            temperature=opts["temperature"], topk_filter_thres=opts["topk_filter_thres"], gsample=opts["gsample"],
            generator=generator, **m_kw,
        )
        codes = self.residual_transformer.generate(
            base, cond_r, token_lens, temperature=1.0, topk_filter_thres=opts["topk_filter_thres"],
            cond_scale=opts["res_cond_scale"], generator=generator, **r_kw,
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
        self, texts: str | Sequence[str] | None, lengths: int | Sequence[int] | None = None, **kwargs
    ) -> GenerationResult:
        """Text(s) -> motions. ``lengths`` in frames (None: sampled from the length estimator), any
        length up to ``MAX_LONG_FRAMES``: beyond the model's window it is made in windows and decoded
        as one sequence (see `generate_long`).

        Keyword arguments are those of `generate_tokens` (seed, fast, cond, overlap_tokens,
        timesteps, cond_scale, res_cond_scale, temperature, topk_filter_thres, gsample).
        """
        codes, token_lens = self.generate_tokens(texts, lengths, **kwargs)
        return self.decode_tokens(codes, token_lens)

    # ------------------------------------------------------------------ editing, long motions, sequences
    def edit(self, source, sections, texts=None, **kwargs) -> GenerationResult:
        """Regenerate ``sections`` of a source motion to follow the text, keeping the rest; see `editing.edit`."""
        return editing.edit(self, source, sections, texts, **kwargs)

    def encode_motion(self, source) -> torch.Tensor:
        """A source motion (features, ``.npz``/``.npy`` path, or result) -> its tokens (1, N, Q)."""
        return editing.encode_source(self, editing.load_source(self, source))

    def continue_motion(self, prev_tokens, prev_joints, at_frame: int, text, length: int, **kwargs) -> GenerationResult:
        """A new motion that continues ``prev`` from ``at_frame``; see `longform.continue_motion`."""
        return longform.continue_motion(self, prev_tokens, prev_joints, at_frame, text, length, **kwargs)

    def generate_long(self, texts, length, **kwargs) -> GenerationResult:
        """Any length up to ``MAX_LONG_FRAMES``, in windows, decoded as one sequence; see `longform.generate_long`."""
        return longform.generate_long(self, texts, length, **kwargs)

    def iter_windows(self, texts, length, **kwargs):
        """The windows of `generate_long` one by one, aligned to one world frame; see `longform.iter_windows`."""
        return longform.iter_windows(self, texts, length, **kwargs)

    def generate_sequence(self, segments, **kwargs):
        """One result per segment, each continuing the one before; see `longform.generate_sequence`."""
        return longform.generate_sequence(self, segments, **kwargs)

    def generate_sequence_motion(self, segments, **kwargs) -> GenerationResult:
        """A whole sequence as one motion decoded at once; see `longform.generate_sequence_motion`."""
        return longform.generate_sequence_motion(self, segments, **kwargs)


def _accepts(fn, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
