"""Backbone pieces shared by MoMask's masked and residual transformers (design/momask.md §3.2, §4.2).

Both transformers read a sequence of motion-token features, prepend one or two "prefix" tokens
(text condition, and for the residual model the layer id), run a post-LN ``nn.TransformerEncoder``
and map each motion position through a small head. The submodule names here (``poseEmbedding``,
``pe``, ``dense``, ``LayerNorm``, ``poseFinal``) are the official ones so that released
checkpoints load key-for-key.

The encoder stack runs sequence-first, exactly like the release: PyTorch then never takes its
fused/nested-tensor fast path, so outputs are the same with and without gradients and match the
official numerics (padded positions carry ordinary, unused hidden states).
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
        h = self.LayerNorm(F.gelu(self.dense(h)))
        return self.poseFinal(h).permute(1, 0, 2)


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
    """argmax(logits / max(temperature, 1e-10) + Gumbel noise) along the last axis."""
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
