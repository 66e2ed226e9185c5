"""MoMask's residual ("R") transformer: base tokens -> the residual RVQ layers (design/momask.md §4).

Given the summed embeddings of layers 0..j-1 and the layer id j, it predicts all layer-j tokens in
parallel (no masking). Generation runs j = 1..Q-1 once each with classifier-free guidance.

Weight sharing (``share_weight=True``, the release): three stored tables S (Q-2, C+1, D),
E0 (1, C+1, D) and P (1, C+1, D) form two views,
    token-embedding table of RVQ layer k = [E0, S0, ..., S_{Q-3}][k]      (k = 0..Q-2)
    classifier of RVQ layer j            = [S0, ..., S_{Q-3}, P][j - 1]   (j = 1..Q-1)
so the classifier for layer j (1 <= j <= Q-2) *is* the embedding of layer-j tokens. The views here
are slices of the stored parameters (same storage), not copies.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from momask_model.nets.fastpath import DEFAULT_OPTIONS, FastPathOptions, FusedCFGStep
from momask_model.nets.common import (
    INIT_STD,
    InputProcess,
    OutputHead,
    PositionalEncoding,
    TransformerShapeError,
    build_encoder,
    check_cond,
    check_token_lens,
    cosine_schedule,
    drop_condition,
    encoder_batch_first,
    gumbel_sample,
    init_weights,
    lengths_to_mask,
    masked_cross_entropy,
    top_k_filter,
)


def sample_residual_layers(
    batch: int, num_quantizers: int, *, device: torch.device | str = "cpu", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Training layer choice (§4.3): j = round((1 - cos(pi u / 2)) * (Q - 2)) + 1, u ~ U[0, 1).

    Skewed towards low layers (for Q = 6: P(j=1..5) ~ 0.32, 0.25, 0.19, 0.17, 0.08).
    """
    u = torch.rand((batch,), generator=generator, device=device)
    return (1.0 - cosine_schedule(u)).mul(num_quantizers - 2).round().long() + 1


class ResidualTransformer(nn.Module):
    """Text-conditioned transformer predicting RVQ layer j from the sum of layers < j.

    Ids 0..num_tokens-1 are codes and ``pad_id = num_tokens``; there is no mask token. Classifiers
    have num_tokens + 1 classes (pad included), without bias when weights are shared.

    Args:
        num_tokens: codebook size per RVQ layer.
        code_dim: width of the token embedding tables (VQ code width).
        num_quantizers: Q, the total RVQ layer count (base + residual), >= 2.
        latent_dim, ff_size, num_layers, num_heads, dropout: encoder stack (post-LN, GELU).
        cond_dim: width of the text vector.
        cond_drop_prob: per-sample probability of zeroing the text vector in training.
        share_weight: tie classifier j to the embedding of layer j (the release). With False, full
            (Q-1)-layer embedding and classifier tables plus a per-layer bias are used; the bias is
            added once (the official non-shared code adds the projection twice, a bug not copied).
    """

    def __init__(
        self,
        *,
        num_tokens: int = 512,
        code_dim: int = 512,
        num_quantizers: int = 6,
        latent_dim: int = 384,
        ff_size: int = 1024,
        num_layers: int = 8,
        num_heads: int = 6,
        dropout: float = 0.2,
        cond_dim: int = 512,
        cond_drop_prob: float = 0.2,
        share_weight: bool = True,
    ) -> None:
        super().__init__()
        if num_quantizers < 2:
            raise ValueError(f"num_quantizers must be >= 2 (a base and a residual layer), got {num_quantizers}")
        if share_weight and num_quantizers < 3:
            raise ValueError(f"share_weight needs num_quantizers >= 3, got {num_quantizers}")
        if not 0.0 <= cond_drop_prob <= 1.0:
            raise ValueError(f"cond_drop_prob must be in [0, 1], got {cond_drop_prob}")
        self.num_tokens = num_tokens
        self.code_dim = code_dim
        self.num_quantizers = num_quantizers
        self.latent_dim = latent_dim
        self.cond_dim = cond_dim
        self.cond_drop_prob = cond_drop_prob
        self.share_weight = share_weight
        self.pad_id = num_tokens

        self.input_process = InputProcess(input_dim=code_dim, latent_dim=latent_dim)
        self.position_enc = PositionalEncoding(dim=latent_dim, dropout=dropout)
        self.seqTransEncoder = build_encoder(
            latent_dim=latent_dim, ff_size=ff_size, num_layers=num_layers, num_heads=num_heads, dropout=dropout
        )
        self.quant_emb = nn.Linear(num_quantizers, latent_dim)
        self.cond_emb = nn.Linear(cond_dim, latent_dim)
        self.output_process = OutputHead(latent_dim=latent_dim, out_dim=code_dim)
        self.apply(init_weights)

        rows = num_tokens + 1

        def table(n: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(n, rows, code_dim) * INIT_STD)

        if share_weight:
            self.embed_proj_shared_weight = table(num_quantizers - 2)
            self.token_embed_weight_ = table(1)
            self.output_proj_weight_ = table(1)
        else:
            self.token_embed_weight = table(num_quantizers - 1)
            self.output_proj_weight = table(num_quantizers - 1)
            # Official shape (Q, C+1); row j-1 is used for layer j.
            self.output_bias = nn.Parameter(torch.zeros(num_quantizers, rows))

    # ------------------------------------------------------------------ table views
    def token_embedding_table(self, layer: int) -> torch.Tensor:
        """(num_tokens + 1, code_dim) embedding of RVQ layer ``layer`` tokens, 0 <= layer <= Q-2."""
        if not 0 <= layer <= self.num_quantizers - 2:
            raise IndexError(f"token embedding layer must be in [0, {self.num_quantizers - 2}], got {layer}")
        if not self.share_weight:
            return self.token_embed_weight[layer]
        return self.token_embed_weight_[0] if layer == 0 else self.embed_proj_shared_weight[layer - 1]

    def output_projection_table(self, layer: int) -> torch.Tensor:
        """(num_tokens + 1, code_dim) classifier for RVQ layer ``layer``, 1 <= layer <= Q-1."""
        if not 1 <= layer <= self.num_quantizers - 1:
            raise IndexError(f"output layer must be in [1, {self.num_quantizers - 1}], got {layer}")
        if not self.share_weight:
            return self.output_proj_weight[layer - 1]
        if layer == self.num_quantizers - 1:
            return self.output_proj_weight_[0]
        return self.embed_proj_shared_weight[layer - 1]

    def token_embedding_tables(self) -> torch.Tensor:
        """All Q-1 embedding tables stacked, (Q-1, num_tokens + 1, code_dim)."""
        if not self.share_weight:
            return self.token_embed_weight
        return torch.cat([self.token_embed_weight_, self.embed_proj_shared_weight], dim=0)

    def output_projection_tables(self) -> torch.Tensor:
        """All Q-1 classifiers stacked, (Q-1, num_tokens + 1, code_dim)."""
        if not self.share_weight:
            return self.output_proj_weight
        return torch.cat([self.embed_proj_shared_weight, self.output_proj_weight_], dim=0)

    # ------------------------------------------------------------------ forward passes
    def forward(
        self,
        history_sum: torch.Tensor,
        qids: torch.Tensor | int,
        cond: torch.Tensor,
        padding_mask: torch.Tensor,
        force_mask: bool = False,
    ) -> torch.Tensor:
        """Logits for RVQ layer ``qids`` at every position.

        Args:
            history_sum: (B, N, code_dim) sum of the embeddings of layers 0..j-1.
            qids: (B,) long layer ids j in [1, Q-1], or one int for the whole batch.
            cond: (B, cond_dim) text vectors.
            padding_mask: (B, N) bool, True at padding.
            force_mask: drop the condition for every sample (the unconditional CFG branch).
        Returns:
            (B, N, num_tokens + 1) logits (the last class is pad).
        """
        batch, n = self._check_history(history_sum, padding_mask)
        qids = self._layer_ids(qids, batch, history_sum.device)
        check_cond(cond, batch, self.cond_dim)
        cond = drop_condition(cond, drop_prob=self.cond_drop_prob, force_mask=force_mask, training=self.training)
        x = self.input_process(history_sum)  # (n, b, latent)
        layer_token = self.quant_emb(F.one_hot(qids, self.num_quantizers).float()).unsqueeze(0)
        cond_token = self.cond_emb(cond).unsqueeze(0)
        x = self.position_enc(x)
        seq = torch.cat([cond_token, layer_token, x], dim=0)
        key_padding = torch.cat([torch.zeros_like(padding_mask[:, :2]), padding_mask], dim=1)
        hidden = self.seqTransEncoder(seq, src_key_padding_mask=key_padding)[2:]
        features = self.output_process(hidden)  # (b, n, code_dim)
        return self._project(features, qids)

    def forward_with_cfg(
        self,
        history_sum: torch.Tensor,
        qids: torch.Tensor | int,
        cond: torch.Tensor,
        padding_mask: torch.Tensor,
        cond_scale: float,
    ) -> torch.Tensor:
        """uncond + cond_scale * (cond - uncond) from two passes; ``cond_scale`` = 1 runs one pass."""
        logits = self.forward(history_sum, qids, cond, padding_mask)
        if cond_scale == 1:
            return logits
        uncond = self.forward(history_sum, qids, cond, padding_mask, force_mask=True)
        return uncond + (logits - uncond) * cond_scale

    def _project(self, features: torch.Tensor, qids: torch.Tensor) -> torch.Tensor:
        weight = self.output_projection_tables()[qids - 1]  # (b, C+1, code_dim)
        logits = torch.einsum("bnd,bcd->bnc", features, weight)
        if not self.share_weight:
            logits = logits + self.output_bias[qids - 1].unsqueeze(1)
        return logits

    # ------------------------------------------------------------------ training
    def history_embeddings(self, codes: torch.Tensor) -> torch.Tensor:
        """Cumulative embeddings: (B, N, Q) ids -> (B, N, code_dim, Q-1), entry k = sum of layers 0..k.

        Ids equal to ``pad_id`` select the pad row of each table.
        """
        tables = self.token_embedding_tables()  # (Q-1, C+1, D)
        per_layer = torch.stack([tables[k][codes[..., k]] for k in range(self.num_quantizers - 1)], dim=-1)
        return per_layer.cumsum(dim=-1)

    def training_loss(
        self,
        codes: torch.Tensor,
        token_lens: torch.Tensor,
        cond: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of one randomly chosen residual layer per sample (§4.3).

        Args:
            codes: (B, N, Q) all RVQ ids of the zero-padded motion (values at padding are ignored).
            token_lens: (B,) valid token counts.
            cond: (B, cond_dim) text vectors.
            generator: optional RNG for the layer choice.
        Returns:
            (loss, acc) over the non-pad targets (num_tokens + 1 classes, pad ignored).
        """
        if codes.ndim != 3 or codes.shape[-1] != self.num_quantizers:
            raise TransformerShapeError(f"codes must be (B, N, {self.num_quantizers}), got {tuple(codes.shape)}")
        batch, n, _ = codes.shape
        token_lens = check_token_lens(token_lens, batch, n).to(codes.device)
        non_pad = lengths_to_mask(token_lens, n)
        codes = torch.where(non_pad.unsqueeze(-1), codes.long(), torch.full_like(codes, self.pad_id, dtype=torch.long))
        if bool(((codes < 0) | (codes > self.pad_id)).any()):
            raise TransformerShapeError(f"codes must lie in [0, {self.num_tokens}) at valid positions")
        layers = sample_residual_layers(batch, self.num_quantizers, device=codes.device, generator=generator)
        history = self.history_embeddings(codes)  # (b, n, d, Q-1)
        rows = torch.arange(batch, device=codes.device)
        history_sum = history[rows, :, :, layers - 1]
        targets = codes[rows, :, layers]
        logits = self.forward(history_sum, layers, cond, ~non_pad)
        return masked_cross_entropy(logits, targets, ignore_index=self.pad_id)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(
        self,
        base_ids: torch.Tensor,
        cond: torch.Tensor,
        token_lens: torch.Tensor,
        *,
        temperature: float = 1.0,
        topk_filter_thres: float = 0.9,
        cond_scale: float = 5.0,
        generator: torch.Generator | None = None,
        fused_cfg: bool = False,
        fast_options: FastPathOptions | None = None,
        keep_codes: torch.Tensor | None = None,
        keep_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict layers 1..Q-1 one after another (§4.4), always with Gumbel-argmax sampling.

        Runs in eval mode for the call and restores the previous mode.

        Args:
            base_ids: (B, N) base-layer ids; -1 (or anything at padding) is treated as pad.
            cond: (B, cond_dim) text vectors.
            token_lens: (B,) valid token counts (<= N).
            generator: optional RNG making the sampling reproducible.
            fused_cfg: run the fast path (conditional and unconditional passes as one batch-first
                batch of 2B, prefix tokens built once, ``torch.inference_mode``); same weights and
                random draws, so in float32 it returns the reference's tokens.
            fast_options: execution options of the fast path (encoder kernel; GPU bf16 / compile).
            keep_codes, keep_mask: editing. (B, N, Q) source ids and (B, N) bool: at kept positions every
                residual layer is the source's (so the later layers read the source's history there)
                and only the other positions are predicted. The draws keep their full shapes.
        Returns:
            (B, N, Q) long ids; -1 at padding and wherever the pad class was sampled (decoded as a zero code).
        """
        if base_ids.ndim != 2:
            raise TransformerShapeError(f"base_ids must be (B, N), got {tuple(base_ids.shape)}")
        batch, n = base_ids.shape
        token_lens = check_token_lens(token_lens, batch, n).to(base_ids.device)
        check_cond(cond, batch, self.cond_dim)
        padding = ~lengths_to_mask(token_lens, n)
        ids = torch.where(padding | (base_ids < 0), self.pad_id, base_ids.long())
        if bool((ids > self.pad_id).any()):
            raise TransformerShapeError(f"base_ids must lie in [0, {self.num_tokens}), got max {int(ids.max())}")
        keep = self._kept(keep_codes, keep_mask, padding)
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode() if fused_cfg else nullcontext():
                if fused_cfg:
                    guided_logits = _FusedResidualStep(self, cond, padding, cond_scale, fast_options or DEFAULT_OPTIONS)
                else:
                    def guided_logits(history: torch.Tensor, j: int) -> torch.Tensor:
                        return self.forward_with_cfg(history, j, cond, padding, cond_scale)
                layers = [ids]
                # The running sum of layer embeddings is updated incrementally on both paths.
                history = torch.zeros(batch, n, self.code_dim, device=base_ids.device)
                for j in range(1, self.num_quantizers):
                    history = history + self.token_embedding_table(j - 1)[ids]
                    logits = guided_logits(history, j)
                    filtered = top_k_filter(logits, topk_filter_thres)
                    sampled = gumbel_sample(filtered, temperature=temperature, generator=generator)
                    ids = torch.where(padding, self.pad_id, sampled)
                    if keep is not None:
                        ids = torch.where(keep[1], keep[0][..., j], ids)
                    layers.append(ids)
        finally:
            self.train(was_training)
        out = torch.stack(layers, dim=-1)
        return torch.where(out == self.pad_id, -1, out)

    def fused_network(
        self, seq: torch.Tensor, key_padding: torch.Tensor, bias: torch.Tensor | None, impl: str
    ) -> torch.Tensor:
        """Fast-path network call: batch-first (R, 2+N, latent) prefixed inputs -> (R, N, code_dim) features.

        The unit ``torch.compile`` captures on GPU; inputs come from :class:`_FusedResidualStep`.
        """
        hidden = encoder_batch_first(self.seqTransEncoder, seq, key_padding=key_padding, bias=bias, impl=impl)
        return self.output_process.per_position(hidden[:, 2:])

    # ------------------------------------------------------------------ helpers
    def _kept(
        self, keep_codes: torch.Tensor | None, keep_mask: torch.Tensor | None, padding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(source ids with pad_id for -1, kept positions) or None when nothing is kept."""
        if keep_mask is None:
            return None
        batch, n = padding.shape
        if keep_mask.shape != (batch, n) or keep_mask.dtype != torch.bool:
            raise TransformerShapeError(f"keep_mask must be bool of shape ({batch}, {n}), got {tuple(keep_mask.shape)}")
        if keep_codes is None or keep_codes.shape != (batch, n, self.num_quantizers):
            got = None if keep_codes is None else tuple(keep_codes.shape)
            raise TransformerShapeError(f"keep_codes must be ({batch}, {n}, {self.num_quantizers}), got {got}")
        codes = keep_codes.long().to(padding.device)
        codes = torch.where(codes < 0, self.pad_id, codes)
        if bool((codes > self.pad_id).any()):
            raise TransformerShapeError(f"keep_codes must lie in [-1, {self.num_tokens})")
        return codes, keep_mask.to(padding.device) & ~padding

    def _check_history(self, history_sum: torch.Tensor, padding_mask: torch.Tensor) -> tuple[int, int]:
        if history_sum.ndim != 3 or history_sum.shape[-1] != self.code_dim:
            raise TransformerShapeError(f"history_sum must be (B, N, {self.code_dim}), got {tuple(history_sum.shape)}")
        batch, n, _ = history_sum.shape
        if padding_mask.shape != (batch, n) or padding_mask.dtype != torch.bool:
            raise TransformerShapeError(
                f"padding_mask must be bool of shape ({batch}, {n}), "
                f"got {tuple(padding_mask.shape)} {padding_mask.dtype}"
            )
        return batch, n

    def _layer_ids(self, qids: torch.Tensor | int, batch: int, device: torch.device) -> torch.Tensor:
        qids = torch.full((batch,), qids, dtype=torch.long, device=device) if isinstance(qids, int) else qids.long()
        if qids.shape != (batch,):
            raise TransformerShapeError(f"qids must have shape ({batch},), got {tuple(qids.shape)}")
        if batch and (int(qids.min()) < 1 or int(qids.max()) > self.num_quantizers - 1):
            raise TransformerShapeError(f"qids must lie in [1, {self.num_quantizers - 1}], got {qids.tolist()}")
        return qids


class _FusedResidualStep(FusedCFGStep):
    """CFG logits for one residual layer on the fast path: the layer-id tokens of all layers are
    projected once per call, the history projection once per layer for both halves (see `FusedCFGStep`)."""

    def __init__(
        self, model: ResidualTransformer, cond: torch.Tensor, padding: torch.Tensor, cond_scale: float,
        options: FastPathOptions,
    ) -> None:
        super().__init__(model, cond, padding, cond_scale, options, prefix_len=2)
        layer_ids = torch.arange(model.num_quantizers, device=self.device)
        with options.autocast(self.device):
            self.layer_tokens = model.quant_emb(F.one_hot(layer_ids, model.num_quantizers).float())

    def __call__(self, history: torch.Tensor, layer: int) -> torch.Tensor:
        model = self.model
        with self.options.autocast(self.device):
            x = model.input_process.poseEmbedding(history) + self.pe
            self.seq[:, 1] = self.layer_tokens[layer]
            features = self.run(x)
        features = features[:, : self.n].float()
        # One classifier for the whole batch: a broadcast view, not the per-sample copy of _project.
        weight = model.output_projection_table(layer)
        logits = torch.einsum("bnd,bcd->bnc", features, weight.unsqueeze(0).expand(features.shape[0], -1, -1))
        if not model.share_weight:
            logits = logits + model.output_bias[layer - 1]
        return self.guide(logits)
