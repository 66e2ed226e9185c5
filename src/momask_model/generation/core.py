"""The parts of a MoMask and the token-level steps every generation is made of.

`TokenModel` holds the text encoder, RVQ-VAE, masked and residual transformers, length estimator
and normaliser, and offers the few steps that plain generation, long motions, continuations,
sequences and edits all compose: text -> conditions, lengths -> token counts, one window of tokens
sampled or inpainted, tokens <-> features. `momask_model.generation.momask.MoMask` adds the public
API on top; the algorithms (`longform`, `sequences`, `editing`, `streaming`) take a `TokenModel`,
so they are typed without importing the class that imports them.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import fields
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from momask_model.config import MoMaskConfig, SamplingConfig
from momask_model.generation.results import (
    MAX_LONG_FRAMES,
    GenerationError,
    GenerationResult,
    check_cond_vector,
    validate_texts,
)
from momask_model.motion.features import features_to_joints
from momask_model.motion.normalization import Normalizer
from momask_model.nets.fastpath import FastPathOptions
from momask_model.nets.length import LengthEstimator
from momask_model.nets.masked import MaskTransformer
from momask_model.nets.residual import ResidualTransformer
from momask_model.nets.vq import RVQVAE
from momask_model.text.base import TextEncoder
from momask_model.text.scope import ScopeGate

#: How an inpainting pass treats the residual layers: keep the source's in kept positions, or
#: regenerate all of them (the official edit script).
RESIDUAL_MODES = ("keep", "regenerate")
SAMPLING_FIELDS = tuple(f.name for f in fields(SamplingConfig))


class TokenModel(nn.Module):
    """A MoMask's parts and its token-level steps (see the module docstring)."""

    def __init__(
        self,
        *,
        config: MoMaskConfig,
        vq: RVQVAE,
        mask_transformer: MaskTransformer,
        residual_transformer: ResidualTransformer,
        text_encoder: TextEncoder,
        normalizer: Normalizer,
        length_estimator: LengthEstimator | None = None,
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
        #: The bundle's ``meta`` (training run, skills of a demo model, official source files).
        self.bundle_meta: dict[str, Any] = {}
        #: The scope gate of a bundle trained on a few skills (None: every text is in scope).
        self.scope_gate: ScopeGate | None = None
        #: How the fast path executes (GPU bf16 / compile are opt-in here); see `FastPathOptions`.
        self.fast_options = FastPathOptions()
        self._text_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._text_cache_size = text_cache_size
        self._decoder_reach: int | None = None
        self.eval()

    # ------------------------------------------------------------------ sizes
    @property
    def device(self) -> torch.device:
        return next(self.vq.parameters()).device

    @property
    def fps(self) -> float:
        """Frame rate of the motions (20 for HumanML3D)."""
        return float(self.config.dataset.fps)

    @property
    def estimates_lengths(self) -> bool:
        """Whether the bundle has a length estimator (`estimate_lengths`, generation without lengths)."""
        return self.length_estimator is not None

    @property
    def unit_length(self) -> int:
        """Frames per token (4)."""
        return self.config.dataset.unit_length

    @property
    def max_length(self) -> int:
        """Frames of the model's window (196)."""
        return self.config.dataset.max_motion_length

    @property
    def window_tokens(self) -> int:
        """Tokens of the model's window (49)."""
        return self.max_length // self.unit_length

    @property
    def single_skill_model(self) -> bool:
        """Whether the model was trained on single-skill clips (its bundle lists ``skills``, as the
        packaged demo does): it has never seen a transition between skills."""
        return bool(self.bundle_meta.get("skills"))

    @property
    def then_separates_segments(self) -> bool:
        """Whether ``then`` between clauses separates the segments of a prompt (`momask_model.generation.prompt`).

        The bundle's ``dataset.then_separates_segments`` when set; otherwise derived: True for a model
        trained on single skills (its bundle lists ``skills``, as the packaged demo does), False for
        HumanML3D/KIT models, whose captions use "then" inside one motion.
        """
        return then_separates_segments(self.config, self.bundle_meta)

    # ------------------------------------------------------------------ text
    def unknown_words(self, text: str) -> list[str]:
        """Words the text encoder cannot represent (always empty for CLIP)."""
        return list(self.text_encoder.unknown_words(text))

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
        return self.text_encoder.encode(texts, fast=fast).float().to(self.device)

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

    def batch_size(self, texts: str | Sequence[str] | None, cond: torch.Tensor | None) -> int:
        """Motions a call makes: one per text, else one per row of ``cond``, else one."""
        if texts is not None:
            return len(validate_texts(texts))
        if cond is not None:
            return check_cond_vector(cond, self.config.text_encoder.dim).shape[0]
        return 1

    # ------------------------------------------------------------------ call settings
    def sampling_config(self, sampling: SamplingConfig | None = None, **overrides: Any) -> SamplingConfig:
        """The sampling settings of one call, checked: ``sampling`` (default: the bundle's), with every
        override that is not None on top (None keeps the bundle's value, as a node parameter of -1 does).

        Raises:
            GenerationError: an unknown option, or a value out of range.
        """
        unknown = sorted(set(overrides) - set(SAMPLING_FIELDS))
        if unknown:
            raise GenerationError(f"unknown sampling option(s) {unknown}; the options are {list(SAMPLING_FIELDS)}")
        base = self.config.sampling if sampling is None else sampling
        values = {name: getattr(base, name) for name in SAMPLING_FIELDS}  # a subclass (EvalConfig) -> its sampling part
        values.update({k: v for k, v in overrides.items() if v is not None})
        out = SamplingConfig(**values)
        if isinstance(out.timesteps, bool) or not isinstance(out.timesteps, (int, np.integer)) or out.timesteps < 1:
            raise GenerationError(f"timesteps must be an integer >= 1, got {out.timesteps!r}")
        if not (out.temperature > 0 and math.isfinite(out.temperature)):
            raise GenerationError(f"temperature must be > 0, got {out.temperature}")
        for name in ("cond_scale", "res_cond_scale"):
            value = getattr(out, name)
            if not (value >= 0 and math.isfinite(value)):
                raise GenerationError(f"{name} must be >= 0 (1 = text only, more = stronger guidance), got {value}")
        if not 0 <= out.topk_filter_thres < 1:
            raise GenerationError(f"topk_filter_thres must be in [0, 1), got {out.topk_filter_thres}")
        return out

    def random_generator(self, seed: int | None) -> torch.Generator | None:
        """A generator on the model's device seeded with ``seed`` (None: torch's global stream)."""
        if seed is None:
            return None
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(seed))
        return gen

    def token_lengths(
        self, lengths: int | Sequence[int] | None, cond: torch.Tensor, generator: torch.Generator | None,
        *, allow_long: bool = False,
    ) -> torch.Tensor:
        """Token counts (B,) of motions of ``lengths`` frames (rounded down to the unit), or sampled
        from the length estimator when None; one length may serve the whole batch."""
        batch = cond.shape[0]
        unit = self.unit_length
        if lengths is None:
            if self.length_estimator is None:
                raise GenerationError("this bundle has no length estimator: pass lengths (frames)")
            return self.length_estimator.sample(cond, generator=generator).long().clamp(1, self.window_tokens)
        if isinstance(lengths, (int, np.integer)):
            lengths = [int(lengths)] * batch
        if len(lengths) != batch:
            raise GenerationError(f"{len(lengths)} lengths given for {batch} texts")
        tokens = []
        longest = MAX_LONG_FRAMES if allow_long else self.max_length
        for i, n in enumerate(lengths):
            if isinstance(n, float) and not math.isfinite(n):
                raise GenerationError(f"length {i} is {n}")
            n = int(n)
            if not unit <= n <= longest:
                raise GenerationError(
                    f"length {i} = {n} frames is out of range [{unit}, {longest}] "
                    f"({longest / self.config.dataset.fps:.1f} s at {self.config.dataset.fps:g} fps)"
                )
            tokens.append(n // unit)
        return torch.tensor(tokens, dtype=torch.long, device=self.device)

    def _transformer_options(self, fast: bool) -> dict[str, Any]:
        return {"fused_cfg": fast, "fast_options": self.fast_options}

    # ------------------------------------------------------------------ one window of tokens
    @torch.inference_mode()
    def sample_tokens(
        self, cond_m: torch.Tensor, cond_r: torch.Tensor, token_lens: torch.Tensor, *, sampling: SamplingConfig,
        generator: torch.Generator | None, fast: bool,
    ) -> torch.Tensor:
        """Tokens (B, N, Q) of motions of ``token_lens`` tokens (at most one window), -1 at padding:
        the masked transformer's base layer, then the residual transformer's layers (§7.1)."""
        base = self.mask_transformer.generate(cond_m, token_lens, **sampling.masked_kwargs(), generator=generator,
                                              **self._transformer_options(fast))
        return self.residual_transformer.generate(
            base, cond_r, token_lens, temperature=1.0, topk_filter_thres=sampling.topk_filter_thres,
            cond_scale=sampling.res_cond_scale, generator=generator, **self._transformer_options(fast),
        )

    @torch.inference_mode()
    def inpaint(
        self,
        codes: torch.Tensor,
        token_lens: torch.Tensor,
        edit_mask: torch.Tensor,
        cond_m: torch.Tensor,
        cond_r: torch.Tensor,
        *,
        sampling: SamplingConfig,
        generator: torch.Generator | None,
        fast: bool,
        residual: str = "keep",
    ) -> torch.Tensor:
        """Regenerate the tokens at ``edit_mask`` (B, N) of ``codes`` (B, N, Q), the rest fixed: the core
        of every edit, continuation and window. ``residual`` is one of `RESIDUAL_MODES`. Returns (B, N, Q),
        -1 at padding."""
        if residual not in RESIDUAL_MODES:
            raise GenerationError(f"residual must be one of {RESIDUAL_MODES}, got {residual!r}")
        base_src = torch.where(codes[..., 0] < 0, 0, codes[..., 0])
        base = self.mask_transformer.edit(cond_m, base_src, token_lens, edit_mask, **sampling.masked_kwargs(),
                                          generator=generator, **self._transformer_options(fast))
        keep = dict(keep_codes=codes, keep_mask=~edit_mask) if residual == "keep" else {}
        return self.residual_transformer.generate(
            base, cond_r, token_lens, temperature=1.0, topk_filter_thres=sampling.topk_filter_thres,
            cond_scale=sampling.res_cond_scale, generator=generator, **keep, **self._transformer_options(fast),
        )

    # ------------------------------------------------------------------ tokens <-> features
    @torch.inference_mode()
    def encode_features(self, features: np.ndarray) -> torch.Tensor:
        """De-normalised features (T, D) -> tokens (1, T/unit, Q) (the VQ's nearest codes)."""
        norm = np.asarray(self.normalizer.normalize(features), dtype=np.float32)
        return self.vq.encode(torch.from_numpy(norm)[None].to(self.device)).long()

    @torch.inference_mode()
    def decode_features(self, codes: torch.Tensor) -> np.ndarray:
        """Tokens (n, Q) -> de-normalised features (n * unit, D), one motion on its own."""
        feats = self.vq.decode(codes[None].to(self.device))[0].float().cpu().numpy()
        return np.asarray(self.normalizer.denormalize(feats), dtype=np.float32)

    @torch.inference_mode()
    def decode_tokens(self, codes: torch.Tensor, token_lens: torch.Tensor) -> GenerationResult:
        """Tokens (B, N, Q) -> de-normalised features and joints, cropped per motion."""
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

    @property
    def decoder_reach(self) -> int:
        """How many tokens to either side of a token the VQ decoder's output depends on (measured once
        per model by changing one token: the decoder is a stack of convolutions, so its reach is fixed)."""
        if self._decoder_reach is None:
            unit, q, n, nb = self.unit_length, self.config.vq.num_quantizers, 128, self.config.vq.nb_code
            codes = torch.randint(0, nb, (n, q), generator=torch.Generator().manual_seed(0))
            other = codes.clone()
            other[n // 2] = (other[n // 2] + 1) % nb
            diff = np.abs(self.decode_features(codes) - self.decode_features(other)).max(axis=-1)
            changed = np.flatnonzero(diff > 0)
            frames = 0 if changed.size == 0 else max(n // 2 * unit - changed.min(),
                                                     changed.max() - (n // 2 * unit + unit - 1))
            self._decoder_reach = int(math.ceil(frames / unit)) + 1
        return self._decoder_reach

    def empty_tokens(self) -> torch.Tensor:
        """(0, Q) tokens: the history of a motion that starts from nothing."""
        return torch.zeros((0, self.config.vq.num_quantizers), dtype=torch.long, device=self.device)


def then_separates_segments(config: MoMaskConfig, meta: dict[str, Any]) -> bool:
    """`TokenModel.then_separates_segments` from a bundle's config and meta (the CLI checks prompts
    with it before the model loads)."""
    flag = config.dataset.then_separates_segments
    if flag is not None:
        return bool(flag)
    return bool((meta or {}).get("skills"))
