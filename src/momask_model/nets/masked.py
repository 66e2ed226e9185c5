"""MoMask's masked ("M") transformer: text -> base-layer motion tokens (design/momask.md §3).

A BERT-style bidirectional transformer over the base RVQ layer. Training hides a cosine-scheduled
share of the tokens and learns to predict them; generation starts fully masked and unmasks over a
few steps, keeping the most confident predictions (MaskGIT decoding) with classifier-free guidance.
The text condition is a single prefix token (no cross-attention). The masking recipe itself (which
positions are hidden in training, how many are re-masked per decoding step, the decode loop) lives
in `momask_model.nets.masking`; this module is the network, its two entry points and the fast path.
"""
from __future__ import annotations

from collections import OrderedDict
from contextlib import nullcontext

import torch
from torch import nn

from momask_model.nets.common import (
    InputProcess,
    OutputHead,
    PositionalEncoding,
    TransformerShapeError,
    build_encoder,
    check_cond,
    check_token_lens,
    drop_condition,
    encoder_batch_first,
    init_weights,
    lengths_to_mask,
    masked_cross_entropy,
)
from momask_model.nets.fastpath import DEFAULT_OPTIONS, FastPathOptions, FusedCFGStep
from momask_model.nets.masking import FIXED_SCORE, bert_remask, choose_masked_positions, maskgit_decode


class MaskTransformer(nn.Module):
    """Text-conditioned bidirectional transformer over base-layer RVQ tokens.

    Token ids: 0..num_tokens-1 are codes, ``mask_id = num_tokens``, ``pad_id = num_tokens + 1``.
    State-dict keys and shapes equal the released checkpoint's (§3.2), CLIP excluded.

    Args:
        num_tokens: codebook size of the VQ base layer.
        code_dim: width of the token embedding table (the release uses the VQ code width, 512).
        latent_dim, ff_size, num_layers, num_heads, dropout: encoder stack (post-LN, GELU).
        cond_dim: width of the text vector.
        cond_drop_prob: per-sample probability of zeroing the text vector in training (for CFG).
    """

    def __init__(
        self,
        *,
        num_tokens: int = 512,
        code_dim: int = 512,
        latent_dim: int = 384,
        ff_size: int = 1024,
        num_layers: int = 8,
        num_heads: int = 6,
        dropout: float = 0.2,
        cond_dim: int = 512,
        cond_drop_prob: float = 0.1,
    ) -> None:
        super().__init__()
        if num_tokens < 1:
            raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
        if not 0.0 <= cond_drop_prob <= 1.0:
            raise ValueError(f"cond_drop_prob must be in [0, 1], got {cond_drop_prob}")
        self.num_tokens = num_tokens
        self.code_dim = code_dim
        self.latent_dim = latent_dim
        self.cond_dim = cond_dim
        self.cond_drop_prob = cond_drop_prob
        self.mask_id = num_tokens
        self.pad_id = num_tokens + 1

        self.input_process = InputProcess(input_dim=code_dim, latent_dim=latent_dim)
        self.position_enc = PositionalEncoding(dim=latent_dim, dropout=dropout)
        self.seqTransEncoder = build_encoder(
            latent_dim=latent_dim, ff_size=ff_size, num_layers=num_layers, num_heads=num_heads, dropout=dropout
        )
        self.cond_emb = nn.Linear(cond_dim, latent_dim)
        self.output_process = OutputHead(latent_dim=latent_dim, out_dim=num_tokens)
        # Rows for the codes plus [MASK] and [PAD]; learned, not tied to the VQ codebook.
        self.token_emb = nn.Embedding(num_tokens + 2, code_dim)
        self.apply(init_weights)

    # ------------------------------------------------------------------ forward passes
    def forward(
        self, ids: torch.Tensor, cond: torch.Tensor, padding_mask: torch.Tensor, force_mask: bool = False
    ) -> torch.Tensor:
        """Logits over the codes for every position.

        Args:
            ids: (B, N) long ids in [0, num_tokens + 1].
            cond: (B, cond_dim) text vectors.
            padding_mask: (B, N) bool, True at padding.
            force_mask: drop the condition for every sample (the unconditional CFG branch).
        Returns:
            (B, N, num_tokens) logits; [MASK] and [PAD] are never predicted.
        """
        self._check_ids(ids, padding_mask)
        check_cond(cond, ids.shape[0], self.cond_dim)
        cond = drop_condition(cond, drop_prob=self.cond_drop_prob, force_mask=force_mask, training=self.training)
        x = self.input_process(self.token_emb(ids))  # (n, b, latent)
        prefix = self.cond_emb(cond).unsqueeze(0)  # (1, b, latent), no positional encoding
        x = self.position_enc(x)
        seq = torch.cat([prefix, x], dim=0)
        key_padding = torch.cat([torch.zeros_like(padding_mask[:, :1]), padding_mask], dim=1)
        hidden = self.seqTransEncoder(seq, src_key_padding_mask=key_padding)[1:]
        return self.output_process(hidden)

    def forward_with_cfg(
        self, ids: torch.Tensor, cond: torch.Tensor, padding_mask: torch.Tensor, cond_scale: float
    ) -> torch.Tensor:
        """Classifier-free guidance: uncond + cond_scale * (cond - uncond), from two separate passes.

        ``cond_scale`` = 1 runs the conditional pass only. Note the release's scale equals 1 + s of
        the paper's formula (code 4 = paper s 3).
        """
        logits = self.forward(ids, cond, padding_mask)
        if cond_scale == 1:
            return logits
        uncond = self.forward(ids, cond, padding_mask, force_mask=True)
        return uncond + (logits - uncond) * cond_scale

    # ------------------------------------------------------------------ training
    def training_loss(
        self,
        ids: torch.Tensor,
        token_lens: torch.Tensor,
        cond: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked-token cross-entropy (§3.3).

        Args:
            ids: (B, N) base-layer codes of the zero-padded motion (values at padding are ignored).
            token_lens: (B,) valid token counts.
            cond: (B, cond_dim) text vectors (condition dropout applies in training mode).
            generator: optional RNG for the masking draws.
        Returns:
            (loss, acc): mean CE over the chosen positions and top-1 accuracy there.
        """
        if ids.ndim != 2:
            raise TransformerShapeError(f"ids must be (B, N), got {tuple(ids.shape)}")
        batch, n = ids.shape
        token_lens = check_token_lens(token_lens, batch, n).to(ids.device)
        non_pad = lengths_to_mask(token_lens, n)
        ids = torch.where(non_pad, ids.long(), torch.full_like(ids, self.pad_id, dtype=torch.long))
        if bool(((ids < 0) | (ids >= self.num_tokens))[non_pad].any()):
            raise TransformerShapeError(f"codes must lie in [0, {self.num_tokens}) at valid positions")
        chosen = choose_masked_positions(non_pad, generator=generator)
        remask = bert_remask(ids, chosen, num_tokens=self.num_tokens, mask_id=self.mask_id, generator=generator)
        logits = self.forward(remask.inputs, cond, ~non_pad)
        return masked_cross_entropy(logits, remask.labels, ignore_index=self.mask_id)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(
        self,
        cond: torch.Tensor,
        token_lens: torch.Tensor,
        *,
        timesteps: int = 10,
        cond_scale: float = 4.0,
        temperature: float = 1.0,
        topk_filter_thres: float = 0.9,
        gsample: bool = False,
        generator: torch.Generator | None = None,
        fused_cfg: bool = False,
        fast_options: FastPathOptions | None = None,
    ) -> torch.Tensor:
        """Iterative masked decoding (§3.5).

        Every step re-masks the k_b = max(1, round(cos(pi t/2) * len_b)) least confident positions
        (t = linspace(0, 1, timesteps)), predicts them with CFG logits filtered to the top
        ceil((1 - thres) * C), samples (categorical, or Gumbel-argmax with ``gsample``), and scores
        each new token by its unfiltered, untempered CFG probability. Positions not masked in a step
        are fixed from then on. The model runs in eval mode for the call (dropout and condition
        dropout off) and is restored afterwards.

        Args:
            cond: (B, cond_dim) text vectors.
            token_lens: (B,) target token counts, each >= 1.
            generator: optional RNG making the sampling reproducible.
            fused_cfg: run the fast path (conditional and unconditional passes as one batch-first
                batch of 2B, per-call constants built once, ``torch.inference_mode``). Same weights,
                same random draws in the same order: in float32 it returns the reference's tokens.
            fast_options: execution options of the fast path (encoder kernel; GPU bf16 / compile).
        Returns:
            (B, max(token_lens)) long ids, -1 at padding.
        """
        batch = cond.shape[0]
        token_lens = check_token_lens(token_lens, batch).to(cond.device)
        seq_len = int(token_lens.max())
        padding = ~lengths_to_mask(token_lens, seq_len)
        ids = torch.where(padding, self.pad_id, self.mask_id)
        scores = torch.where(padding, FIXED_SCORE, 0.0)
        return self._run_decode(
            cond, padding, ids, scores, token_lens, None, timesteps=timesteps, cond_scale=cond_scale,
            temperature=temperature, topk_filter_thres=topk_filter_thres, gsample=gsample, generator=generator,
            fused_cfg=fused_cfg, fast_options=fast_options,
        )

    @torch.no_grad()
    def edit(
        self,
        cond: torch.Tensor,
        tokens: torch.Tensor,
        token_lens: torch.Tensor,
        edit_mask: torch.Tensor | None,
        *,
        timesteps: int = 10,
        cond_scale: float = 4.0,
        temperature: float = 1.0,
        topk_filter_thres: float = 0.9,
        gsample: bool = False,
        generator: torch.Generator | None = None,
        fused_cfg: bool = False,
        fast_options: FastPathOptions | None = None,
    ) -> torch.Tensor:
        """Temporal inpainting of base tokens: the official ``MaskTransformer.edit`` loop (§7.2).

        Positions in ``edit_mask`` start as [MASK] with score 0; every other valid position keeps its
        source token with score 1e5, so it is never re-masked. Each step re-masks
        max(1, round(cos(pi t/2) * edit_len_b)) of the lowest-scoring positions, i.e. the cosine
        schedule counts only the edited positions; CFG, top-k, temperature and the sampling mode are
        those of :meth:`generate`. A sample whose edit mask is empty is returned unchanged (the
        official loop would clamp its count to 1 and re-predict one kept token). ``edit_mask=None`` is
        the official "mask-free" refinement: every step re-masks the 16% least confident tokens.

        Args:
            cond: (B, cond_dim) text vectors.
            tokens: (B, N) source base-layer ids (anything at padding is ignored).
            token_lens: (B,) valid token counts (<= N).
            edit_mask: (B, N) bool, True at the positions to regenerate; or None (mask-free mode).
        Returns:
            (B, N) long ids, -1 at padding; kept positions hold exactly the source ids.
        """
        if tokens.ndim != 2:
            raise TransformerShapeError(f"tokens must be (B, N), got {tuple(tokens.shape)}")
        batch, n = tokens.shape
        token_lens = check_token_lens(token_lens, batch, n).to(tokens.device)
        padding = ~lengths_to_mask(token_lens, n)
        source = torch.where(padding, self.pad_id, tokens.long())
        if bool(((source < 0) | (source >= self.num_tokens))[~padding].any()):
            raise TransformerShapeError(f"source tokens must lie in [0, {self.num_tokens}) at valid positions")
        if edit_mask is None:
            editable, refine = ~padding, True
            ids = source
        else:
            if edit_mask.shape != tokens.shape or edit_mask.dtype != torch.bool:
                raise TransformerShapeError(
                    f"edit_mask must be bool of shape {tuple(tokens.shape)}, got {tuple(edit_mask.shape)} {edit_mask.dtype}"
                )
            editable, refine = edit_mask.to(tokens.device) & ~padding, False
            ids = torch.where(editable, self.mask_id, source)
        scores = torch.where(editable, 0.0, FIXED_SCORE)
        out = self._run_decode(
            cond, padding, ids, scores, editable.sum(dim=1), editable if refine else None, timesteps=timesteps,
            cond_scale=cond_scale, temperature=temperature, topk_filter_thres=topk_filter_thres, gsample=gsample,
            generator=generator, fused_cfg=fused_cfg, fast_options=fast_options,
        )
        return out

    def _run_decode(
        self, cond, padding, ids, scores, count_lens, refine_mask, *, timesteps, cond_scale, temperature,
        topk_filter_thres, gsample, generator, fused_cfg, fast_options,
    ) -> torch.Tensor:
        """Set-up shared by generate and edit: checks, eval mode, reference or fast logits, the loop."""
        if timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {timesteps}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        check_cond(cond, padding.shape[0], self.cond_dim)
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode() if fused_cfg else nullcontext():
                if fused_cfg:
                    guided_logits = _FusedMaskedStep(self, cond, padding, cond_scale, fast_options or DEFAULT_OPTIONS)
                else:
                    def guided_logits(ids: torch.Tensor, is_masked: torch.Tensor) -> torch.Tensor:
                        return self.forward_with_cfg(ids, cond, padding, cond_scale)
                return maskgit_decode(
                    guided_logits, padding, ids, scores, count_lens, refine_mask, mask_id=self.mask_id,
                    timesteps=timesteps, temperature=temperature, topk_filter_thres=topk_filter_thres,
                    gsample=gsample, generator=generator,
                )
        finally:
            self.train(was_training)

    def fused_network(
        self, seq: torch.Tensor, key_padding: torch.Tensor, bias: torch.Tensor | None, impl: str,
        query_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Fast-path network call: batch-first (R, 1+N, latent) prefixed inputs -> (R, N, C) logits,
        or (R, M, C) at the motion positions ``query_index`` (R, M) only.

        The unit ``torch.compile`` captures on GPU; inputs come from :class:`_FusedMaskedStep`.
        """
        query = None if query_index is None else query_index + 1  # past the condition token
        hidden = encoder_batch_first(self.seqTransEncoder, seq, key_padding=key_padding, bias=bias, impl=impl,
                                     query_index=query)
        return self.output_process.per_position(hidden[:, 1:] if query is None else hidden)

    # ------------------------------------------------------------------ helpers
    def _check_ids(self, ids: torch.Tensor, padding_mask: torch.Tensor) -> None:
        if ids.ndim != 2 or ids.dtype != torch.long:
            raise TransformerShapeError(f"ids must be a (B, N) long tensor, got {tuple(ids.shape)} {ids.dtype}")
        if padding_mask.shape != ids.shape or padding_mask.dtype != torch.bool:
            raise TransformerShapeError(
                f"padding_mask must be bool of shape {tuple(ids.shape)}, "
                f"got {tuple(padding_mask.shape)} {padding_mask.dtype}"
            )
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) > self.pad_id):
            raise TransformerShapeError(f"ids must lie in [0, {self.pad_id}], got [{int(ids.min())}, {int(ids.max())}]")


class _FusedMaskedStep(FusedCFGStep):
    """CFG logits of one decoding step on the fast path (see `FusedCFGStep`), with two savings that
    leave every used logit bit-identical:

    - only the positions being predicted (``is_masked``) run the last encoder layer and the head
      (every earlier layer is needed in full: it gives the last layer its keys and values);
    - the unconditional pass over an all-[MASK] row (the first decoding step) depends only on the
      sequence and valid lengths, never on the text: its logits are cached on the model, keyed by the
      weights' identity and version, and reused by later commands.
    """

    #: Rows of the per-length cache of first-step unconditional logits kept per model.
    FIRST_STEP_CACHE_SIZE = 64
    #: The pruned query count is rounded up to this multiple: the CPU attention kernel computes a
    #: query block of fewer than 4 rows with a different rounding than the full-length pass.
    QUERY_MULTIPLE = 8

    def __init__(
        self, model: MaskTransformer, cond: torch.Tensor, padding: torch.Tensor, cond_scale: float,
        options: FastPathOptions,
    ) -> None:
        super().__init__(model, cond, padding, cond_scale, options, prefix_len=1)
        self.valid = ~padding
        self.lengths = self.valid.sum(dim=1)
        eager = not options.uses_compile(self.device)  # compiled graphs keep one shape per bucket
        self.prune = eager
        self.cache = _first_step_cache(model, options, self.key_padding.shape[1]) if eager and self.guided else None

    def __call__(self, ids: torch.Tensor, is_masked: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N) ids -> (B, N) CFG logits; with ``is_masked`` only those rows are computed (others are 0)."""
        model = self.model
        with self.options.autocast(self.device):
            x = model.input_process.poseEmbedding(model.token_emb(ids)) + self.pe
            if self.cache is not None and bool(((ids == model.mask_id) | ~self.valid).all()):
                return self._first_step(x)
            query = self._query_index(is_masked) if (self.prune and is_masked is not None) else None
            if query is None:
                return self.guide(self.run(x)[:, : self.n].float())
            query = query.repeat(self.seq.shape[0] // self.batch, 1)  # the same rows in both halves
            logits = self.run(x, query_index=query).float()
            full = torch.zeros(logits.shape[0], self.n, logits.shape[-1], dtype=logits.dtype, device=logits.device)
            full.scatter_(1, query.unsqueeze(-1).expand_as(logits), logits)
        return self.guide(full)

    def _query_index(self, is_masked: torch.Tensor) -> torch.Tensor | None:
        """(B, M) positions to compute, predicted ones first; None when (nearly) all are needed."""
        wanted = int(is_masked.sum(dim=1).max())
        m = min(self.n, -(-max(wanted, 1) // self.QUERY_MULTIPLE) * self.QUERY_MULTIPLE)
        if m >= self.n:
            return None
        order = torch.argsort((~is_masked).to(torch.int8), dim=1, stable=True)
        return order[:, :m]

    def _first_step(self, x: torch.Tensor) -> torch.Tensor:
        """All-[MASK] input: conditional half computed, unconditional half from (or into) the cache."""
        keys = [int(n) for n in self.lengths.tolist()]
        cached = [self.cache.get(k) for k in keys]
        if all(c is not None for c in cached):
            logits = self.run(x, rows=self.batch)[:, : self.n].float()
            for k in keys:
                self.cache.move_to_end(k)
            return self.guide(torch.cat([logits, torch.stack(cached)]))
        logits = self.run(x)[:, : self.n].float()
        for k, row in zip(keys, logits[self.batch :]):
            self.cache[k] = row.clone()
            self.cache.move_to_end(k)
            while len(self.cache) > self.FIRST_STEP_CACHE_SIZE:
                self.cache.popitem(last=False)
        return self.guide(logits)


def _first_step_cache(model: MaskTransformer, options: FastPathOptions, seq_len: int) -> "OrderedDict[int, torch.Tensor]":
    """The model's cache of unconditional first-step logits for this (weights, options, sequence length).

    Keyed by every parameter's storage and version counter, so loading, moving or training the weights
    starts a fresh cache instead of serving stale logits.
    """
    weights = tuple((p.data_ptr(), p._version, p.dtype) for p in model.parameters())
    key = (weights, options, seq_len)
    store = model.__dict__.setdefault("_first_step_uncond_cache", {})
    if key not in store:
        store.clear()  # one live weight version at a time
        store[key] = OrderedDict()
    return store[key]
