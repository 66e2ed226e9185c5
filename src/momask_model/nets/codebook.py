"""One EMA codebook, as MoMask trains it (design/momask.md §2.3): the layer `ResidualQuantizer` stacks.

The codebook is a *buffer* updated by an exponential moving average of the vectors assigned to each
code (no codebook loss); codes whose running count drops below one are re-seeded from the current
batch every step, which keeps usage high without k-means. Numerics follow the released checkpoints:
Gumbel-perturbed code choice with temperature during training, plain argmin at inference, a commit
loss ``MSE(x, sg(code))``.

A layer reads flattened ``(B*N, C)`` rows, flattened batch-major so that "the first ``nb_code`` rows of
the batch" (used for lazy init and dead-code reset) means what it meant in the reference code. Only
``codebook`` is saved in ``state_dict``; the EMA statistics travel through `extra_state` for an exact
resume. Under ``torch.distributed`` the code statistics are summed over ranks and seed rows come from
rank 0, so every rank holds identical codebooks after every step.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CodeIndexError", "EMAResetQuantizer", "LayerOutput", "codebook_usage"]


class CodeIndexError(ValueError):
    """Token ids given to a quantizer are out of range, of the wrong dtype or of the wrong shape."""


# ---------------------------------------------------------------------------------------------------------
# helpers


def distributed() -> bool:
    """True when a process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum_(t: Tensor) -> Tensor:
    if distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_from_rank0_(t: Tensor) -> Tensor:
    if distributed():
        dist.broadcast(t, src=0)
    return t


def _gumbel_noise(like: Tensor) -> Tensor:
    # clamp as in the reference (log of at least 1e-20) so a uniform draw of exactly 0 cannot give inf
    u = torch.zeros_like(like).uniform_(0.0, 1.0)
    return -torch.log((-torch.log(u.clamp(min=1e-20))).clamp(min=1e-20))


def _perplexity(counts: Tensor) -> Tensor:
    """exp(entropy) of a code histogram; equals the number of codes when usage is uniform."""
    prob = counts / counts.sum().clamp(min=1e-12)
    return torch.exp(-torch.sum(prob * torch.log(prob + 1e-7)))


def codebook_usage(codes: Tensor, nb_code: int) -> Tensor:
    """Fraction of each layer's codebook that appears in ``codes``.

    Args:
        codes: (..., Q) token ids, -1 (dropped layer / padding) ignored.
        nb_code: codebook size.

    Returns:
        (Q,) float tensor in [0, 1]; 1 means every code of that layer was used at least once.
    """
    if codes.dim() < 1:
        raise CodeIndexError(f"codes must have a trailing layer axis, got shape {tuple(codes.shape)}")
    flat = codes.reshape(-1, codes.shape[-1]).long()
    usage = []
    for q in range(flat.shape[1]):
        col = flat[:, q]
        col = col[col >= 0]
        usage.append(torch.unique(col).numel() / float(nb_code))
    return torch.tensor(usage, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------------------
# one layer


class LayerOutput(NamedTuple):
    """What one quantizer layer returns for (N, C) input rows."""

    quantized: Tensor  # (N, C) straight-through: value = code vector, gradient = identity w.r.t. input
    codes: Tensor  # (N,) long
    commit_loss: Tensor  # () MSE(x, sg(code))
    perplexity: Tensor  # () exp(entropy) of this step's code histogram


class EMAResetQuantizer(nn.Module):
    """One EMA codebook with lazy init from data and per-step dead-code reset (design/momask.md §2.3).

    Args:
        nb_code: number of codes K.
        code_dim: width C of each code.
        mu: EMA decay of the code statistics (0.99 in the paper).
    """

    def __init__(self, *, nb_code: int = 512, code_dim: int = 512, mu: float = 0.99) -> None:
        super().__init__()
        if nb_code < 1 or code_dim < 1:
            raise ValueError(f"nb_code and code_dim must be positive, got nb_code={nb_code}, code_dim={code_dim}")
        if not 0.0 <= mu < 1.0:
            raise ValueError(f"mu must be in [0, 1), got {mu}")
        self.nb_code = int(nb_code)
        self.code_dim = int(code_dim)
        self.mu = float(mu)
        # the only saved tensor; the name makes the official key `quantizer.layers.{i}.codebook`
        self.register_buffer("codebook", torch.zeros(self.nb_code, self.code_dim))
        # EMA statistics follow the module across devices but stay out of state_dict, like the reference
        self.register_buffer("code_sum", torch.zeros(self.nb_code, self.code_dim), persistent=False)
        self.register_buffer("code_count", torch.zeros(self.nb_code), persistent=False)
        self.initialized = False

    def extra_repr(self) -> str:
        return f"nb_code={self.nb_code}, code_dim={self.code_dim}, mu={self.mu}"

    # -- lookup ----------------------------------------------------------------------------------------

    def distances(self, x: Tensor) -> Tensor:
        """Squared Euclidean distances (N, K) between rows of x (N, C) and every code."""
        c = self.codebook
        return x.pow(2).sum(-1, keepdim=True) - 2.0 * x @ c.t() + c.pow(2).sum(-1)[None, :]

    def nearest(self, x: Tensor) -> Tensor:
        """Deterministic nearest code (N,) for rows x (N, C): the inference-time choice."""
        return self.distances(x).argmin(dim=-1)

    def choose(self, x: Tensor, temperature: float) -> Tensor:
        """Code choice used by ``forward``: Gumbel-perturbed in training (a stochastic nearest neighbour
        that spreads assignments early in training), argmin otherwise or when temperature is 0."""
        neg_d = -self.distances(x)
        if self.training and temperature > 0.0:
            neg_d = neg_d / temperature + _gumbel_noise(neg_d)
        return neg_d.argmax(dim=-1)

    def dequantize(self, codes: Tensor) -> Tensor:
        """Code vectors (..., C) for ids (...); id -1 gives the zero vector (a dropped / absent layer)."""
        valid = codes >= 0
        out = F.embedding(codes.clamp(min=0), self.codebook)
        return out * valid.unsqueeze(-1).to(out.dtype)

    # -- EMA codebook maintenance ----------------------------------------------------------------------

    def _seed_rows(self, x: Tensor) -> Tensor:
        """The first K rows of the batch, tiled with tiny noise when the batch has fewer than K rows.

        Row k seeds code k on lazy init and on a dead-code reset. Under distributed training rank 0's rows
        are used everywhere so the codebooks stay identical.
        """
        n = x.shape[0]
        if n < self.nb_code:
            repeats = (self.nb_code + n - 1) // n
            rows = x.repeat(repeats, 1)
            rows = rows + torch.randn_like(rows) * (0.01 / math.sqrt(self.code_dim))
        else:
            rows = x
        # clone: the broadcast writes in place and must never touch the caller's activations
        rows = rows[: self.nb_code].clone()
        return broadcast_from_rank0_(rows)

    @torch.no_grad()
    def _lazy_init(self, x: Tensor) -> None:
        rows = self._seed_rows(x)
        self.codebook.copy_(rows)
        self.code_sum.copy_(rows)
        self.code_count.fill_(1.0)
        self.initialized = True

    @torch.no_grad()
    def _ema_update(self, x: Tensor, codes: Tensor) -> Tensor:
        """One EMA step; returns this step's perplexity (from the all-rank histogram)."""
        onehot = F.one_hot(codes, self.nb_code).to(x.dtype)  # (N, K); matmul keeps the sum deterministic
        stats = torch.cat([onehot.t() @ x, onehot.sum(0)[:, None]], dim=1)  # (K, C+1)
        all_reduce_sum_(stats)
        step_sum, step_count = stats[:, :-1], stats[:, -1]
        rows = self._seed_rows(x)

        self.code_sum.mul_(self.mu).add_(step_sum, alpha=1.0 - self.mu)
        self.code_count.mul_(self.mu).add_(step_count, alpha=1.0 - self.mu)
        alive = (self.code_count >= 1.0)[:, None]
        means = self.code_sum / self.code_count.clamp(min=1e-12)[:, None]
        self.codebook.copy_(torch.where(alive, means, rows))
        return _perplexity(step_count)

    # -- forward ---------------------------------------------------------------------------------------

    def forward(self, x: Tensor, *, temperature: float = 0.0) -> LayerOutput:
        """Quantize rows x (N, C).

        In training mode this initialises the codebook on first use, picks codes with Gumbel noise at
        ``temperature`` and then runs one EMA/reset step (the returned vectors use the codebook from
        *before* that step). In eval mode it is a pure argmin lookup.
        """
        if x.dim() != 2 or x.shape[1] != self.code_dim:
            raise ValueError(f"expected rows of shape (N, {self.code_dim}), got {tuple(x.shape)}")
        if self.training and not self.initialized:
            self._lazy_init(x.detach())
        with torch.no_grad():
            codes = self.choose(x.detach(), temperature)
        code_vecs = self.dequantize(codes)
        if self.training:
            perplexity = self._ema_update(x.detach(), codes)
        else:
            perplexity = _perplexity(torch.bincount(codes, minlength=self.nb_code).to(x.dtype))
        commit_loss = F.mse_loss(x, code_vecs.detach())
        quantized = x + (code_vecs - x).detach()  # straight-through estimator
        return LayerOutput(quantized, codes, commit_loss, perplexity)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """A loaded codebook counts as initialised, with EMA statistics seeded from it.

        The official trainer re-initialised codebooks from the first batch after loading, which throws
        away a pretrained codebook when fine-tuning; here fine-tuning starts from the loaded codes.
        Exact resume still restores the saved statistics afterwards via `load_extra_state`.
        """
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + "codebook" in state_dict:
            with torch.no_grad():
                self.code_sum.copy_(self.codebook)
                self.code_count.fill_(1.0)
            self.initialized = True

    # -- exact resume ----------------------------------------------------------------------------------

    def extra_state(self) -> dict[str, Any]:
        """EMA statistics left out of state_dict (copies, on the module's device)."""
        return {
            "code_sum": self.code_sum.detach().clone(),
            "code_count": self.code_count.detach().clone(),
            "initialized": bool(self.initialized),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""
        missing = {"code_sum", "code_count", "initialized"} - set(state)
        if missing:
            raise KeyError(f"quantizer extra state lacks {sorted(missing)}")
        code_sum = torch.as_tensor(state["code_sum"])
        code_count = torch.as_tensor(state["code_count"])
        if tuple(code_sum.shape) != tuple(self.code_sum.shape) or tuple(code_count.shape) != (self.nb_code,):
            raise ValueError(
                f"extra state shapes code_sum={tuple(code_sum.shape)}, code_count={tuple(code_count.shape)} "
                f"do not match nb_code={self.nb_code}, code_dim={self.code_dim}"
            )
        with torch.no_grad():
            self.code_sum.copy_(code_sum)
            self.code_count.copy_(code_count)
        self.initialized = bool(state["initialized"])
