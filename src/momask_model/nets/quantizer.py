"""Residual vector quantization with EMA codebooks, as trained by MoMask (design/momask.md §2.4).

:class:`ResidualQuantizer` is a stack of `momask_model.nets.codebook.EMAResetQuantizer` layers, each
quantizing what the previous ones left over, with *quantizer dropout*: once per training batch, with
probability ``p``, only a random prefix of the layers is used. That is what lets the decoder work from
any prefix of the codes.

Numerics follow the released MoMask checkpoints exactly: a commit loss per layer averaged over the
active layers, perplexity averaged likewise. Shapes are channels-last: ``(B, N, C)``, N tokens of width
C. The EMA statistics stay out of ``state_dict`` as in the released checkpoints; trainers that need an
exact resume use :meth:`ResidualQuantizer.extra_state` / :meth:`ResidualQuantizer.load_extra_state`.

Randomness (Gumbel noise, tiling noise, the dropout draw) comes from torch's global RNG, so
``torch.manual_seed`` makes a run repeatable; under ``torch.distributed`` the dropout draw comes from
rank 0, so every rank runs the same layers.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from momask_model.nets.codebook import (
    CodeIndexError,
    EMAResetQuantizer,
    broadcast_from_rank0_,
    codebook_usage,
    distributed,
)

__all__ = ["RVQOutput", "ResidualQuantizer"]


class RVQOutput(NamedTuple):
    """What :class:`ResidualQuantizer` returns for a (B, N, C) input."""

    quantized: Tensor  # (B, N, C) sum of the active layers' straight-through outputs
    codes: Tensor  # (B, N, Q) long, -1 for layers dropped this batch
    commit_loss: Tensor  # () mean over active layers
    perplexity: Tensor  # () mean over active layers


class ResidualQuantizer(nn.Module):
    """Q EMA quantizers applied to successive residuals, with quantizer dropout (design/momask.md §2.4).

    Args:
        num_quantizers: Q, base layer plus residual layers (6 in the paper).
        nb_code: codes per layer.
        code_dim: code width.
        mu: EMA decay.
        quantize_dropout_prob: per-batch probability of keeping only a random prefix of the layers
            (0.2 for HumanML3D, 0.5 in the released KIT model).
        sample_codebook_temp: Gumbel temperature of the training-time code choice (0.5).
    """

    def __init__(
        self,
        *,
        num_quantizers: int = 6,
        nb_code: int = 512,
        code_dim: int = 512,
        mu: float = 0.99,
        quantize_dropout_prob: float = 0.2,
        sample_codebook_temp: float = 0.5,
    ) -> None:
        super().__init__()
        if num_quantizers < 1:
            raise ValueError(f"num_quantizers must be >= 1, got {num_quantizers}")
        if not 0.0 <= quantize_dropout_prob <= 1.0:
            raise ValueError(f"quantize_dropout_prob must be in [0, 1], got {quantize_dropout_prob}")
        if sample_codebook_temp < 0.0:
            raise ValueError(f"sample_codebook_temp must be >= 0, got {sample_codebook_temp}")
        self.num_quantizers = int(num_quantizers)
        self.nb_code = int(nb_code)
        self.code_dim = int(code_dim)
        self.quantize_dropout_prob = float(quantize_dropout_prob)
        self.sample_codebook_temp = float(sample_codebook_temp)
        self.layers = nn.ModuleList(
            EMAResetQuantizer(nb_code=nb_code, code_dim=code_dim, mu=mu) for _ in range(self.num_quantizers)
        )

    # -- helpers ---------------------------------------------------------------------------------------

    def _check_latent(self, z: Tensor) -> None:
        if z.dim() != 3 or z.shape[-1] != self.code_dim:
            raise ValueError(f"expected latents of shape (B, N, {self.code_dim}), got {tuple(z.shape)}")

    def _last_active_layer(self, device: torch.device) -> int:
        """Index of the last layer used this batch (Q-1 = all).

        Drawn once per batch: with probability p, k ~ U{0..Q-1} and layers > k are skipped (so all Q are
        still kept with probability 1-p+p/Q). Broadcast from rank 0 so every rank runs the same layers
        (otherwise the per-layer all-reduces would not match up).
        """
        last = self.num_quantizers - 1
        if not self.training or self.quantize_dropout_prob <= 0.0:
            return last
        if torch.rand(()).item() < self.quantize_dropout_prob:
            last = int(torch.randint(0, self.num_quantizers, ()).item())
        if distributed():
            t = broadcast_from_rank0_(torch.tensor([last], device=device, dtype=torch.long))
            last = int(t.item())
        return last

    def _check_codes(self, codes: Tensor) -> Tensor:
        if codes.dtype.is_floating_point or codes.dtype == torch.bool or codes.is_complex():
            raise CodeIndexError(f"codes must be an integer tensor, got dtype {codes.dtype}")
        if codes.dim() != 3:
            raise CodeIndexError(f"codes must have shape (B, N, q), got {tuple(codes.shape)}")
        q = codes.shape[-1]
        if q > self.num_quantizers:
            raise CodeIndexError(f"codes have {q} layers but the quantizer has only {self.num_quantizers}")
        if codes.numel():
            lo, hi = int(codes.min()), int(codes.max())
            if lo < -1 or hi >= self.nb_code:
                raise CodeIndexError(f"code ids must lie in [-1, {self.nb_code - 1}], got range [{lo}, {hi}]")
        codes = codes.long()
        if q < self.num_quantizers:  # absent layers contribute nothing, same as dropped ones
            pad = codes.new_full((*codes.shape[:-1], self.num_quantizers - q), -1)
            codes = torch.cat([codes, pad], dim=-1)
        return codes

    # -- forward (training and evaluation) -------------------------------------------------------------

    def forward(
        self,
        z: Tensor,
        *,
        sample_codebook_temp: float | None = None,
        force_dropout_index: int | None = None,
    ) -> RVQOutput:
        """Quantize latents z (B, N, C).

        Args:
            z: encoder output, channels last.
            sample_codebook_temp: Gumbel temperature for training-mode code choice (default: the
                constructor's value).
            force_dropout_index: if given, use exactly layers 0..k (also in eval mode).

        The residual is formed out-of-place, ``r_{i+1} = r_i - sg(q_i)``; since every layer's output is
        ``r_i + sg(code - r_i)``, each active layer passes its gradient straight to ``z``, so the gradient
        at ``z`` is the sum over the active layers, which is what the reference's in-place subtraction
        on the encoder output produces.
        """
        self._check_latent(z)
        temp = self.sample_codebook_temp if sample_codebook_temp is None else float(sample_codebook_temp)
        if force_dropout_index is not None:
            if not 0 <= force_dropout_index < self.num_quantizers:
                raise ValueError(
                    f"force_dropout_index must be in [0, {self.num_quantizers - 1}], got {force_dropout_index}"
                )
            last = int(force_dropout_index)
        else:
            last = self._last_active_layer(z.device)

        b, n, c = z.shape
        with torch.autocast(device_type=z.device.type, enabled=False):  # distances need full precision
            residual = z.float()
            quantized_out = torch.zeros_like(residual)
            codes, losses, perplexities = [], [], []
            for i, layer in enumerate(self.layers):
                if i > last:
                    codes.append(torch.full((b, n), -1, dtype=torch.long, device=z.device))
                    continue
                out = layer(residual.reshape(b * n, c), temperature=temp)
                q = out.quantized.reshape(b, n, c)
                residual = residual - q.detach()
                quantized_out = quantized_out + q
                codes.append(out.codes.reshape(b, n))
                losses.append(out.commit_loss)
                perplexities.append(out.perplexity)
        return RVQOutput(
            quantized=quantized_out,
            codes=torch.stack(codes, dim=-1),
            commit_loss=torch.stack(losses).mean(),
            perplexity=torch.stack(perplexities).mean(),
        )

    # -- inference lookups ---------------------------------------------------------------------------

    @torch.no_grad()
    def quantize(self, z: Tensor) -> Tensor:
        """Deterministic codes (B, N, Q) for latents z (B, N, C): argmin in every layer, no dropout.

        Never updates the codebooks, whatever the module's mode (the reference would, if called on a
        module in training mode; its trainers avoid that by keeping the VQ in eval).
        """
        self._check_latent(z)
        b, n, c = z.shape
        with torch.autocast(device_type=z.device.type, enabled=False):
            residual = z.float().reshape(b * n, c)
            codes = []
            for layer in self.layers:
                k = layer.nearest(residual)
                residual = residual - layer.dequantize(k)
                codes.append(k.reshape(b, n))
        return torch.stack(codes, dim=-1)

    def layer_vectors(self, codes: Tensor) -> Tensor:
        """Per-layer code vectors (Q, B, N, C) for codes (B, N, q<=Q); -1 and absent layers give zeros."""
        codes = self._check_codes(codes)
        return torch.stack([layer.dequantize(codes[..., i]) for i, layer in enumerate(self.layers)], dim=0)

    def dequantize(self, codes: Tensor) -> Tensor:
        """Sum of the code vectors (B, N, C) of codes (B, N, q<=Q); -1 and absent layers give zeros."""
        return self.layer_vectors(codes).sum(dim=0)

    def codebook_usage(self, codes: Tensor) -> Tensor:
        """(Q,) fraction of each codebook used in codes (..., Q); see :func:`codebook_usage`."""
        return codebook_usage(codes, self.nb_code)

    # -- exact resume --------------------------------------------------------------------------------

    def extra_state(self) -> dict[str, Any]:
        """EMA statistics of every layer, for exact training resume (not part of ``state_dict``)."""
        return {"layers": [layer.extra_state() for layer in self.layers]}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state`; without it, training re-initialises codebooks from the next batch."""
        layers = state.get("layers")
        if not isinstance(layers, (list, tuple)) or len(layers) != self.num_quantizers:
            got = len(layers) if isinstance(layers, (list, tuple)) else type(layers).__name__
            raise ValueError(f"extra state holds {got} layers, expected {self.num_quantizers}")
        for layer, s in zip(self.layers, layers):
            layer.load_extra_state(s)
