"""Options and helpers of the fast generation path (issue 8), shared by the two transformers.

The fast path computes what the reference loop computes, with the same weights and the same random
draws; it only organises the work better: the conditional and unconditional passes of classifier-free
guidance run as one batch of 2B, the encoder runs batch-first, everything that does not change across
decoding steps (prefix tokens, padding bias, positional rows) is built once per call into preallocated
buffers. On a GPU it can additionally run the transformers under bf16 autocast and compile the
per-step network call over a few fixed sequence-length buckets (``torch.compile`` with CUDA graphs).
Those two GPU options change the numerics (bf16) or pad the sequence (buckets), so they are opt-in,
off by default, and ignored on CPU.
"""
from __future__ import annotations

import logging
import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, ContextManager

import torch

from momask_model.nets.common import ENCODER_IMPLS, attention_bias

log = logging.getLogger(__name__)


class FastPathError(ValueError):
    """An invalid fast-path option."""


@dataclass(frozen=True)
class FastPathOptions:
    """How the fast path executes (never *what* it computes, except bf16).

    encoder_impl: "compose" (bit-identical to the reference layers on CPU, the default) or "fused"
        (PyTorch's fused encoder-layer inference kernel; equal to float rounding).
    bf16: GPU only: run the transformer network calls under bf16 autocast (logits, sampling and
        scores stay float32). Tokens then differ from the float32 reference.
    compile: GPU only: ``torch.compile`` (mode ``reduce-overhead``, i.e. CUDA graphs) the per-step
        network call, padding the token sequence up to a multiple of ``length_bucket`` so only a few
        shapes are ever compiled. First calls per shape are slow (compilation); later ones are not.
    length_bucket: bucket granularity in tokens for ``compile``.
    """

    encoder_impl: str = "compose"
    bf16: bool = False
    compile: bool = False
    length_bucket: int = 16

    def __post_init__(self) -> None:
        if self.encoder_impl not in ENCODER_IMPLS:
            raise FastPathError(f"encoder_impl must be one of {ENCODER_IMPLS}, got {self.encoder_impl!r}")
        if self.length_bucket < 1:
            raise FastPathError(f"length_bucket must be >= 1, got {self.length_bucket}")

    def autocast(self, device: torch.device) -> ContextManager[Any]:
        """bf16 autocast on CUDA when asked; a no-op elsewhere (CPU stays float32)."""
        if self.bf16 and device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def padded_length(self, n: int, device: torch.device) -> int:
        """Sequence length the network runs at: n itself, or n rounded up to a bucket when compiling on CUDA."""
        if self.uses_compile(device):
            return int(math.ceil(n / self.length_bucket) * self.length_bucket)
        return n

    def uses_compile(self, device: torch.device) -> bool:
        return self.compile and device.type == "cuda"


DEFAULT_OPTIONS = FastPathOptions()


def compiled(owner: torch.nn.Module, name: str, fn: Callable[..., torch.Tensor], options: FastPathOptions,
             device: torch.device) -> Callable[..., torch.Tensor]:
    """``fn`` itself, or its ``torch.compile``d version cached on ``owner`` (GPU + ``options.compile`` only).

    Compiled callables are cached per owner module so the CUDA graphs of each bucket shape are built
    once per process, not once per command.
    """
    if not options.uses_compile(device):
        return fn
    cache = owner.__dict__.setdefault("_fastpath_compiled", {})
    key = (name, options.encoder_impl, options.bf16)
    if key not in cache:
        log.info("compiling %s.%s for the GPU fast path (first calls per length bucket are slow)",
                 type(owner).__name__, name)
        cache[key] = torch.compile(fn, mode="reduce-overhead", dynamic=False)
    return cache[key]


class FusedCFGStep:
    """Per-call constants of a fast-path forward with classifier-free guidance in one batch.

    Rows 0..B-1 carry the text condition and rows B..2B-1 the zero condition (the unconditional pass).
    The (rows, prefix_len + N, latent) input buffer is preallocated with the condition token in column
    0; columns 1..prefix_len-1 are for the caller's extra prefix tokens (the residual layer id). Shared
    by the masked and residual transformers, which differ only in what they write into the buffer.
    """

    def __init__(self, model: torch.nn.Module, cond: torch.Tensor, padding: torch.Tensor, cond_scale: float,
                 options: FastPathOptions, *, prefix_len: int) -> None:
        device = cond.device
        batch, n = padding.shape
        self.model, self.options, self.device = model, options, device
        self.batch, self.n, self.cond_scale, self.prefix_len = batch, n, cond_scale, prefix_len
        self.guided = cond_scale != 1
        conds = torch.cat([cond, torch.zeros_like(cond)]) if self.guided else cond
        rows = conds.shape[0]
        n_run = options.padded_length(n, device)
        key_padding = torch.ones(rows, prefix_len + n_run, dtype=torch.bool, device=device)
        key_padding[:, :prefix_len] = False
        key_padding[:, prefix_len : prefix_len + n] = padding.repeat(rows // batch, 1)
        self.key_padding = key_padding
        with options.autocast(device):
            prefix = model.cond_emb(conds)
        self.seq = torch.zeros(rows, prefix_len + n_run, model.latent_dim, dtype=prefix.dtype, device=device)
        self.seq[:, 0] = prefix
        self.bias = attention_bias(key_padding, prefix.dtype) if options.encoder_impl == "compose" else None
        self.pe = model.position_enc.pe[:n, 0]
        self.network = compiled(model, "fused_network", model.fused_network, options, device)

    def run(self, x: torch.Tensor, *, rows: int | None = None, query_index: torch.Tensor | None = None) -> torch.Tensor:
        """Write the motion rows ``x`` (B, N, latent) for both halves and run the encoder stack.

        rows: run only the first ``rows`` rows (B: the conditional half alone).
        query_index: (rows, M) motion positions whose outputs are wanted (see ``encoder_batch_first``).
        """
        batch, n, start = self.batch, self.n, self.prefix_len
        rows = self.seq.shape[0] if rows is None else rows
        self.seq[:batch, start : start + n] = x
        if self.guided and rows > batch:
            self.seq[batch:, start : start + n] = x
        bias = None if self.bias is None else self.bias[:rows]
        args = (self.seq[:rows], self.key_padding[:rows], bias, self.options.encoder_impl)
        return self.network(*args) if query_index is None else self.network(*args, query_index)

    def guide(self, logits: torch.Tensor) -> torch.Tensor:
        """uncond + s·(cond − uncond) over the two halves (or the logits as they are when s = 1)."""
        if not self.guided:
            return logits
        cond, uncond = logits[: self.batch], logits[self.batch :]
        return uncond + (cond - uncond) * self.cond_scale
