"""Backbone pieces shared by MoMask's masked and residual transformers (design/momask.md §3.2, §4.2).

Both transformers read a sequence of motion-token features, prepend one or two "prefix" tokens
(text condition, and for the residual model the layer id), run a post-LN ``nn.TransformerEncoder``
and map each motion position through a small head. The submodule names here (``poseEmbedding``,
``pe``, ``dense``, ``LayerNorm``, ``poseFinal``) are the official ones so that released
checkpoints load key-for-key.

The encoder stack runs sequence-first, exactly like the release: PyTorch then never takes its
fused/nested-tensor fast path, so outputs are the same with and without gradients and match the
official numerics (padded positions carry ordinary, unused hidden states). The generation fast path
runs the *same* layers batch-first through :func:`encoder_batch_first` instead.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: Rows of the stored sinusoidal table; the release stores (5000, 1, d).
PE_MAX_LEN = 5000
#: The output heads use a BERT-style LayerNorm epsilon, not PyTorch's default 1e-5.
HEAD_LAYERNORM_EPS = 1e-12
#: Weight std of every Linear and Embedding at initialisation (and of the residual tables).
INIT_STD = 0.02


class TransformerShapeError(ValueError):
    """An input tensor to a transformer has the wrong shape, dtype or value range."""


def sinusoidal_table(max_len: int, dim: int) -> torch.Tensor:
    """MDM-style sinusoidal positional table, shape (max_len, 1, dim).

    sin on even channels, cos on odd channels, frequency 10000^(-2i/dim). The middle axis of size 1
    is the batch axis of the sequence-first layout the release stores.
    """
    if dim % 2:
        raise ValueError(f"positional encoding needs an even width, got {dim}")
    position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(max_len, dim)
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term)
    return table.unsqueeze(1)


class PositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal table to sequence-first features, then applies dropout.

    The table is a persistent buffer (``pe``) because the release saves it in the state dict.
    """

    def __init__(self, *, dim: int, dropout: float, max_len: int = PE_MAX_LEN) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        self.register_buffer("pe", sinusoidal_table(max_len, dim), persistent=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n, b, dim) -> (n, b, dim)."""
        if x.shape[0] > self.pe.shape[0]:
            raise TransformerShapeError(f"sequence of {x.shape[0]} tokens exceeds the {self.pe.shape[0]}-row table")
        return self.dropout(x + self.pe[: x.shape[0]])


class InputProcess(nn.Module):
    """Projects per-position input features (code_dim) to the model width; batch-first in, sequence-first out."""

    def __init__(self, *, input_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.poseEmbedding = nn.Linear(input_dim, latent_dim)  # official key name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, n, input_dim) -> (n, b, latent_dim)."""
        return self.poseEmbedding(x.permute(1, 0, 2))


class OutputHead(nn.Module):
    """dense -> GELU -> LayerNorm(eps 1e-12) -> poseFinal, per position.

    Used by both transformers (official classes ``OutputProcess_Bert`` and ``OutputProcess``,
    identical in computation).
    """

    def __init__(self, *, latent_dim: int, out_dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(latent_dim, latent_dim)
        self.LayerNorm = nn.LayerNorm(latent_dim, eps=HEAD_LAYERNORM_EPS)  # official key name
        self.poseFinal = nn.Linear(latent_dim, out_dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h: (n, b, latent_dim) sequence-first -> (b, n, out_dim) batch-first."""
        return self.per_position(h).permute(1, 0, 2)

    def per_position(self, h: torch.Tensor) -> torch.Tensor:
        """The head on any layout (..., latent_dim) -> (..., out_dim); the fast path feeds it batch-first."""
        return self.poseFinal(self.LayerNorm(F.gelu(self.dense(h))))


def build_encoder(
    *, latent_dim: int, ff_size: int, num_layers: int, num_heads: int, dropout: float
) -> nn.TransformerEncoder:
    """The release's post-LN, GELU, sequence-first encoder stack without a final norm."""
    if latent_dim % num_heads:
        raise ValueError(f"latent_dim={latent_dim} is not divisible by num_heads={num_heads}")
    layer = nn.TransformerEncoderLayer(
        d_model=latent_dim,
        nhead=num_heads,
        dim_feedforward=ff_size,
        dropout=dropout,
        activation="gelu",
        batch_first=False,
        norm_first=False,
    )
    return nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)


#: Batch-first execution of the encoder stack (see :func:`encoder_batch_first`).
ENCODER_IMPLS = ("compose", "fused")


def attention_bias(key_padding: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, S) bool key padding (True = ignore) -> additive (B, 1, 1, S) bias: -inf there, 0 elsewhere.

    This is the mask PyTorch's own sequence-first attention builds from ``src_key_padding_mask``;
    building it once per generation call instead of once per layer and step is part of the fast path.
    """
    bias = torch.zeros(key_padding.shape, dtype=dtype, device=key_padding.device)
    return bias.masked_fill_(key_padding, float("-inf")).view(key_padding.shape[0], 1, 1, key_padding.shape[1])


def fused_layer_supported(layer: nn.TransformerEncoderLayer) -> bool:
    """Whether PyTorch's fused inference kernel for encoder layers can run this layer.

    The same conditions ``nn.TransformerEncoderLayer`` checks before taking its fast path (post- or
    pre-LN, ReLU/GELU, packed qkv with biases, equal norm epsilons, an even head count), minus the
    ``batch_first`` flag: the weights do not depend on the layout, only the call does.
    """
    attn = layer.self_attn
    return (
        getattr(layer, "activation_relu_or_gelu", 0) in (1, 2)
        and attn._qkv_same_embed_dim
        and attn.in_proj_bias is not None
        and layer.norm1.eps == layer.norm2.eps
        and attn.num_heads % 2 == 0
        and hasattr(torch, "_transformer_encoder_layer_fwd")
    )


def encoder_batch_first(
    encoder: nn.TransformerEncoder,
    x: torch.Tensor,
    *,
    key_padding: torch.Tensor,
    bias: torch.Tensor | None = None,
    impl: str = "compose",
    query_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run a sequence-first ``nn.TransformerEncoder`` (eval, no dropout) on a batch-first tensor.

    Why: the release's encoder is sequence-first, which keeps PyTorch off its inference fast path and
    costs a layout shuffle in every attention call. Same weights, batch-first call:

    - ``impl="compose"``: the layer's own slow-path primitives (``F.linear``, scaled-dot-product
      attention with the additive padding bias, ``F.layer_norm``) on (B, S, D). On CPU this reproduces
      the sequence-first stack bit for bit, which keeps the fast and reference paths token-identical.
    - ``impl="fused"``: ``torch._transformer_encoder_layer_fwd``, the kernel
      ``nn.TransformerEncoderLayer`` uses in batch-first inference (fused qkv/softmax/add-norm), for the
      layers it supports (others fall back to "compose"); results agree to float rounding (~1e-6).

    Args:
        encoder: the stack (post-LN as in the release, or pre-LN; no final norm is expected, one is applied if present).
        x: (B, S, D) batch-first input.
        key_padding: (B, S) bool, True at keys to ignore.
        bias: the matching :func:`attention_bias` (built here when None; pass it to reuse it across calls).
        impl: "compose" or "fused".
        query_index: optional (B, M) positions whose outputs are wanted. Every layer but the last
            needs all positions (they are the last layer's keys and values); the last layer then
            computes queries, attention output and feed-forward only at these M positions.
    Returns:
        (B, S, D) output, or (B, M, D) at ``query_index``.
    """
    if impl not in ENCODER_IMPLS:
        raise ValueError(f"impl must be one of {ENCODER_IMPLS}, got {impl!r}")
    if x.ndim != 3 or key_padding.shape != x.shape[:2]:
        raise TransformerShapeError(
            f"x must be (B, S, D) with key_padding (B, S), got {tuple(x.shape)} and {tuple(key_padding.shape)}"
        )
    if query_index is not None and (query_index.ndim != 2 or query_index.shape[0] != x.shape[0]):
        raise TransformerShapeError(f"query_index must be (B, M) with B = {x.shape[0]}, got {tuple(query_index.shape)}")
    if bias is None and impl == "compose":
        bias = attention_bias(key_padding, x.dtype)
    last = len(encoder.layers) - 1
    for i, layer in enumerate(encoder.layers):
        pruned = query_index if i == last else None
        if impl == "fused" and pruned is None and fused_layer_supported(layer):
            x = _fused_layer(layer, x, key_padding)
        else:
            if bias is None:
                bias = attention_bias(key_padding, x.dtype)
            x = _composed_layer(layer, x, bias, pruned)
    if encoder.norm is not None:
        x = encoder.norm(x)
    return x


def _fused_layer(layer: nn.TransformerEncoderLayer, x: torch.Tensor, key_padding: torch.Tensor) -> torch.Tensor:
    attn = layer.self_attn
    return torch._transformer_encoder_layer_fwd(
        x,
        attn.embed_dim,
        attn.num_heads,
        attn.in_proj_weight,
        attn.in_proj_bias,
        attn.out_proj.weight,
        attn.out_proj.bias,
        layer.activation_relu_or_gelu == 2,
        layer.norm_first,
        layer.norm1.eps,
        layer.norm1.weight,
        layer.norm1.bias,
        layer.norm2.weight,
        layer.norm2.bias,
        layer.linear1.weight,
        layer.linear1.bias,
        layer.linear2.weight,
        layer.linear2.bias,
        key_padding,
        1,  # mask type 1: a (B, S) key padding mask
    )


def _composed_layer(
    layer: nn.TransformerEncoderLayer, x: torch.Tensor, bias: torch.Tensor, query_index: torch.Tensor | None = None
) -> torch.Tensor:
    """One encoder layer from its primitives; with ``query_index`` only those positions are queried
    (keys and values still come from every position), so only their outputs are computed."""
    attn = layer.self_attn
    batch, seq, dim = x.shape
    heads = attn.num_heads
    weight, in_bias = attn.in_proj_weight, attn.in_proj_bias

    def pick(t: torch.Tensor) -> torch.Tensor:
        if query_index is None:
            return t
        return t.gather(1, query_index.unsqueeze(-1).expand(-1, -1, t.shape[-1]))

    def self_attention(h: torch.Tensor) -> torch.Tensor:
        if query_index is None:
            qkv = F.linear(h, weight, in_bias)
            q, k, v = qkv.view(batch, seq, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        else:
            q = F.linear(pick(h), weight[:dim], in_bias[:dim]).view(batch, -1, heads, dim // heads).transpose(1, 2)
            kv = F.linear(h, weight[dim:], in_bias[dim:])
            k, v = kv.view(batch, seq, 2, heads, dim // heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias if bias.dtype == q.dtype else bias.to(q.dtype))
        return attn.out_proj(out.transpose(1, 2).reshape(batch, q.shape[2], dim))

    def feed_forward(h: torch.Tensor) -> torch.Tensor:
        return layer.linear2(layer.activation(layer.linear1(h)))

    if layer.norm_first:
        x = pick(x) + self_attention(layer.norm1(x))
        return x + feed_forward(layer.norm2(x))
    x = layer.norm1(pick(x) + self_attention(x))
    return layer.norm2(x + feed_forward(x))


def init_weights(module: nn.Module) -> None:
    """Official init, applied with ``Module.apply``: N(0, 0.02) Linear/Embedding weights, zero biases,
    LayerNorm (1, 0). The attention ``in_proj_weight`` is a bare parameter and keeps PyTorch's init."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(mean=0.0, std=INIT_STD)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()
    elif isinstance(module, nn.LayerNorm):
        module.bias.data.zero_()
        module.weight.data.fill_(1.0)


def drop_condition(cond: torch.Tensor, *, drop_prob: float, force_mask: bool, training: bool) -> torch.Tensor:
    """Classifier-free-guidance condition dropout on the raw text vector (§3.2 step 1).

    ``force_mask`` zeroes every sample (the unconditional pass); in training mode each sample is
    zeroed independently with probability ``drop_prob``; otherwise the vector passes unchanged.
    """
    if force_mask:
        return torch.zeros_like(cond)
    if training and drop_prob > 0.0:
        keep = 1.0 - torch.bernoulli(torch.full((cond.shape[0], 1), drop_prob, device=cond.device))
        return cond * keep
    return cond


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, max_len) bool, True at valid (non-pad) positions."""
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def cosine_schedule(t: torch.Tensor) -> torch.Tensor:
    """Mask ratio gamma(t) = cos(pi t / 2): 1 at t=0 (all masked), 0 at t=1."""
    return torch.cos(t * math.pi * 0.5)


def top_k_filter(logits: torch.Tensor, thres: float) -> torch.Tensor:
    """Keep the ceil((1 - thres) * C) largest logits along the last axis and set the rest to -inf.

    ``thres`` is a ratio of the class count (0.9 keeps 52 of 512), not a nucleus probability.
    """
    if not 0.0 <= thres < 1.0:
        raise ValueError(f"topk_filter_thres must be in [0, 1), got {thres}")
    k = max(1, math.ceil((1.0 - thres) * logits.shape[-1]))
    values, indices = logits.topk(k, dim=-1)
    out = torch.full_like(logits, float("-inf"))
    return out.scatter_(-1, indices, values)


def gumbel_sample(
    logits: torch.Tensor, *, temperature: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """argmax(logits / max(temperature, 1e-10) + Gumbel noise) along the last axis.

    For (B, N, C) logits the uniform numbers are drawn in (B, C, N) element order, then viewed as
    (B, N, C): the official code samples from a permuted view of its (B, C, N) logits and fills the
    noise with ``zeros_like(...).uniform_()``, which keeps that memory layout. Drawing in the same
    order makes a seed give the official tokens.
    """
    if logits.ndim == 3:
        batch, n, classes = logits.shape
        uniform = torch.rand((batch, classes, n), generator=generator, device=logits.device,
                             dtype=logits.dtype).transpose(1, 2)
    else:
        uniform = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    neg_log_u = -torch.log(uniform.clamp(min=1e-20))
    noise = -torch.log(neg_log_u.clamp(min=1e-20))
    return (logits / max(temperature, 1e-10) + noise).argmax(dim=-1)


def categorical_sample(
    logits: torch.Tensor, *, temperature: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw one class per row from softmax(logits / temperature) along the last axis."""
    probs = F.softmax(logits / temperature, dim=-1)
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])


def masked_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, *, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean CE over positions whose label is not ``ignore_index`` and top-1 accuracy on them.

    logits (B, N, C), labels (B, N). If no position counts (a degenerate batch) the loss is a zero
    that still carries the graph, instead of the NaN a plain mean over nothing would give.
    """
    valid = labels.ne(ignore_index)
    n_valid = valid.sum()
    if n_valid == 0:
        zero = logits.sum() * 0.0
        return zero, zero.detach()
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=ignore_index)
    correct = logits.argmax(dim=-1).eq(labels) & valid
    acc = correct.sum().float() / n_valid.float()
    return loss, acc


def check_cond(cond: torch.Tensor, batch: int, cond_dim: int) -> None:
    """Raise TransformerShapeError unless cond is a float (batch, cond_dim) tensor."""
    if cond.ndim != 2 or cond.shape != (batch, cond_dim):
        raise TransformerShapeError(f"cond must have shape ({batch}, {cond_dim}), got {tuple(cond.shape)}")
    if not cond.is_floating_point():
        raise TransformerShapeError(f"cond must be a float tensor, got {cond.dtype}")


def check_token_lens(token_lens: torch.Tensor, batch: int, max_len: int | None = None) -> torch.Tensor:
    """Validate (B,) integer token lengths in [1, max_len]; returns them as long."""
    token_lens = torch.as_tensor(token_lens)
    if token_lens.ndim != 1 or token_lens.shape[0] != batch:
        raise TransformerShapeError(f"token_lens must have shape ({batch},), got {tuple(token_lens.shape)}")
    if token_lens.is_floating_point() or token_lens.dtype == torch.bool:
        raise TransformerShapeError(f"token_lens must be integers, got {token_lens.dtype}")
    token_lens = token_lens.long()
    if batch and int(token_lens.min()) < 1:
        raise TransformerShapeError(f"token_lens must be >= 1, got {token_lens.tolist()}")
    if max_len is not None and batch and int(token_lens.max()) > max_len:
        raise TransformerShapeError(f"token_lens {token_lens.tolist()} exceed the sequence length {max_len}")
    return token_lens
