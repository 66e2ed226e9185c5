"""The residual VQ-VAE that turns motion features into MoMask's token stacks (design/momask.md §2).

A 1-D convolutional encoder shrinks T frames of D-dim features to T/4 latent vectors, a
:class:`~momask_model.nets.quantizer.ResidualQuantizer` turns each latent into Q token ids (base layer plus
residual layers), and a mirrored decoder maps the summed code vectors back to T frames.

The module tree is laid out so that ``state_dict()`` keys and shapes are exactly those of the released
checkpoints (72 tensors for the paper size; ``encoder.model.*``, ``decoder.model.*``,
``quantizer.layers.{i}.codebook``), which is why the layers sit in plain ``nn.Sequential`` containers
indexed the same way.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from momask_model.motion import feature_layout
from momask_model.nets.codebook import codebook_usage
from momask_model.nets.quantizer import ResidualQuantizer

__all__ = ["RVQVAE", "VQInputError", "VQOutput", "joints_num_from_dim"]


class VQInputError(ValueError):
    """Motion features given to the VQ-VAE have the wrong shape or non-finite values."""


def joints_num_from_dim(dim: int) -> int:
    """``feature_layout.joints_num_from_dim`` (263 -> 22, 251 -> 21), failing as a ``VQInputError``."""
    try:
        return feature_layout.joints_num_from_dim(dim)
    except feature_layout.InvalidMotionError as e:
        raise VQInputError(f"cannot infer joints_num: {e} (263 for 22 joints, 251 for 21); "
                           "pass joints_num explicitly") from None


# ---------------------------------------------------------------------------------------------------------
# building blocks (attribute names fixed by the checkpoint keys)


class ResConv1DBlock(nn.Module):
    """Pre-activation residual block: x + Dropout(conv_1x1(relu(conv_3_dilated(relu(x))))).

    The reference also has norm layers here; the released models use none (Identity), which owns no
    parameters, so they are omitted.
    """

    def __init__(self, channels: int, *, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, kernel_size=3, stride=1, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size=1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.relu(x))
        h = self.conv2(F.relu(h))
        return x + self.dropout(h)


class Resnet1D(nn.Module):
    """``depth`` residual blocks with dilations growth**d, stored largest first (9, 3, 1 for depth 3).

    The reference builds them smallest-first and reverses the list in both the encoder and the decoder, so
    ``model.0`` is the widest-dilation block.
    """

    def __init__(self, channels: int, *, depth: int, dilation_growth_rate: int, dropout: float) -> None:
        super().__init__()
        dilations = [dilation_growth_rate**d for d in range(depth)][::-1]
        self.model = nn.Sequential(*(ResConv1DBlock(channels, dilation=d, dropout=dropout) for d in dilations))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class Encoder(nn.Module):
    """(B, D, T) -> (B, code_dim, T / stride_t**down_t)."""

    def __init__(
        self, *, input_dim: int, width: int, code_dim: int, down_t: int, stride_t: int, depth: int,
        dilation_growth_rate: int, dropout: float,
    ) -> None:
        super().__init__()
        kernel, pad = stride_t * 2, stride_t // 2
        layers: list[nn.Module] = [nn.Conv1d(input_dim, width, 3, 1, 1), nn.ReLU()]
        for _ in range(down_t):
            layers.append(
                nn.Sequential(
                    nn.Conv1d(width, width, kernel, stride_t, pad),
                    Resnet1D(width, depth=depth, dilation_growth_rate=dilation_growth_rate, dropout=dropout),
                )
            )
        layers.append(nn.Conv1d(width, code_dim, 3, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class Decoder(nn.Module):
    """(B, code_dim, T') -> (B, D, T' * stride_t**down_t); nearest-neighbour upsampling then a conv."""

    def __init__(
        self, *, input_dim: int, width: int, code_dim: int, down_t: int, stride_t: int, depth: int,
        dilation_growth_rate: int, dropout: float,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(code_dim, width, 3, 1, 1), nn.ReLU()]
        for _ in range(down_t):
            layers.append(
                nn.Sequential(
                    Resnet1D(width, depth=depth, dilation_growth_rate=dilation_growth_rate, dropout=dropout),
                    nn.Upsample(scale_factor=stride_t, mode="nearest"),
                    nn.Conv1d(width, width, 3, 1, 1),
                )
            )
        layers += [nn.Conv1d(width, width, 3, 1, 1), nn.ReLU(), nn.Conv1d(width, input_dim, 3, 1, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Temporarily put a module tree in eval mode, restoring every submodule's own flag afterwards."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


# ---------------------------------------------------------------------------------------------------------
# the model


class VQOutput(NamedTuple):
    """Result of :meth:`RVQVAE.forward`."""

    recon: Tensor  # (B, T, D)
    commit_loss: Tensor  # ()
    perplexity: Tensor  # ()
    codes: Tensor  # (B, T/4, Q) long, -1 for layers dropped this batch


class RVQVAE(nn.Module):
    """Residual VQ-VAE over motion features (design/momask.md §2; defaults = released HumanML3D model).

    Args:
        input_dim: feature width D (263 HumanML3D, 251 KIT).
        width: channels of the conv stacks.
        code_dim: latent / code width.
        nb_code: codes per quantizer layer.
        num_quantizers: Q, base plus residual layers.
        down_t: number of ×stride_t temporal down-/up-sampling stages (T -> T / stride_t**down_t).
        stride_t: stride of each stage.
        depth: residual blocks per stage.
        dilation_growth_rate: dilation ratio between consecutive residual blocks.
        dropout: dropout inside each residual block.
        quantize_dropout_prob: probability of training a batch with only a random prefix of the layers.
        mu: EMA decay of the codebooks.
        sample_codebook_temp: Gumbel temperature of the training-time code choice.
    """

    def __init__(
        self,
        *,
        input_dim: int = 263,
        width: int = 512,
        code_dim: int = 512,
        nb_code: int = 512,
        num_quantizers: int = 6,
        down_t: int = 2,
        stride_t: int = 2,
        depth: int = 3,
        dilation_growth_rate: int = 3,
        dropout: float = 0.2,
        quantize_dropout_prob: float = 0.2,
        mu: float = 0.99,
        sample_codebook_temp: float = 0.5,
    ) -> None:
        super().__init__()
        for name, value in (("input_dim", input_dim), ("width", width), ("code_dim", code_dim),
                            ("nb_code", nb_code), ("stride_t", stride_t), ("depth", depth),
                            ("dilation_growth_rate", dilation_growth_rate)):
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if down_t < 0:
            raise ValueError(f"down_t must be >= 0, got {down_t}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.input_dim = int(input_dim)
        self.code_dim = int(code_dim)
        self.nb_code = int(nb_code)
        self.num_quantizers = int(num_quantizers)
        self.downsample_factor = int(stride_t) ** int(down_t)
        self.sample_codebook_temp = float(sample_codebook_temp)
        conv_kwargs = dict(
            input_dim=input_dim, width=width, code_dim=code_dim, down_t=down_t, stride_t=stride_t, depth=depth,
            dilation_growth_rate=dilation_growth_rate, dropout=dropout,
        )
        self.encoder = Encoder(**conv_kwargs)
        self.decoder = Decoder(**conv_kwargs)
        self.quantizer = ResidualQuantizer(
            num_quantizers=num_quantizers, nb_code=nb_code, code_dim=code_dim, mu=mu,
            quantize_dropout_prob=quantize_dropout_prob, sample_codebook_temp=sample_codebook_temp,
        )

    # -- checks --------------------------------------------------------------------------------------

    def _check_motion(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise VQInputError(f"motion must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 3:
            raise VQInputError(f"motion must have shape (B, T, {self.input_dim}), got {tuple(x.shape)}")
        if x.shape[-1] != self.input_dim:
            raise VQInputError(
                f"motion feature dim is {x.shape[-1]} but this VQ-VAE expects {self.input_dim} "
                f"(shape {tuple(x.shape)})"
            )
        t = x.shape[1]
        if t == 0 or t % self.downsample_factor != 0:
            raise VQInputError(
                f"motion length T={t} must be a positive multiple of {self.downsample_factor} "
                "(one token per that many frames)"
            )
        if not x.dtype.is_floating_point:
            raise VQInputError(f"motion must be a floating-point tensor, got dtype {x.dtype}")
        if not bool(torch.isfinite(x).all()):
            raise VQInputError("motion contains NaN or infinite values")

    # -- model API -----------------------------------------------------------------------------------

    def _encode_latent(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, T/4, code_dim)."""
        return self.encoder(x.float().transpose(1, 2)).transpose(1, 2)

    def _decode_latent(self, z: Tensor) -> Tensor:
        """(B, T', code_dim) -> (B, 4T', D)."""
        return self.decoder(z.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: Tensor) -> VQOutput:
        """Encode, quantize (Gumbel choice, EMA updates and quantizer dropout in training mode), decode.

        Args:
            x: (B, T, D) normalised features, T a multiple of 4.

        Returns:
            :class:`VQOutput` with recon (B, T, D), commit_loss (), perplexity () and codes (B, T/4, Q).
        """
        self._check_motion(x)
        z = self._encode_latent(x)
        rq = self.quantizer(z, sample_codebook_temp=self.sample_codebook_temp)
        recon = self._decode_latent(rq.quantized)
        return VQOutput(recon=recon, commit_loss=rq.commit_loss, perplexity=rq.perplexity, codes=rq.codes)

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Deterministic token ids (B, T/4, Q) for motion x (B, T, D).

        Runs the encoder without dropout and takes the nearest code in every layer; never updates the
        codebooks, even if the module is in training mode (transformer training calls this on a VQ that
        must stay fixed).
        """
        self._check_motion(x)
        with _eval_mode(self):
            return self.quantizer.quantize(self._encode_latent(x))

    def decode(self, codes: Tensor) -> Tensor:
        """Features (B, 4T', D) for token ids codes (B, T', q<=Q).

        Missing trailing layers count as -1, and -1 contributes a zero vector, so any prefix of the layers
        (or padded positions) can be decoded. Follows the module's mode (dropout active in training mode).
        """
        z = self.quantizer.dequantize(codes)
        return self._decode_latent(z)

    def training_loss(
        self,
        x: Tensor,
        *,
        commit_weight: float = 0.02,
        loss_vel: float = 0.5,
        joints_num: int | None = None,
    ) -> dict[str, Tensor]:
        """The RVQ-VAE objective of design/momask.md §2.5 on normalised features x (B, T, D).

        ``loss = recon + loss_vel * ric + commit_weight * commit``, where ``recon`` is SmoothL1 over all
        dims and ``ric`` is SmoothL1 over the root-relative joint positions (dims 4 : 4+3(J-1)). The
        reference logs ``ric`` as "loss_vel" although it is not a velocity term.

        Returns:
            dict with ``loss`` (for backward), the unweighted terms ``recon``, ``ric``, ``commit``, and
            ``perplexity``.
        """
        j = joints_num_from_dim(self.input_dim) if joints_num is None else int(joints_num)
        if j < 2 or 4 + 3 * (j - 1) > self.input_dim:
            raise VQInputError(f"joints_num={j} does not fit feature dim {self.input_dim}")
        out = self(x)
        target = x.float()
        recon = F.smooth_l1_loss(out.recon, target)
        sl = slice(4, 4 + 3 * (j - 1))
        ric = F.smooth_l1_loss(out.recon[..., sl], target[..., sl])
        loss = recon + loss_vel * ric + commit_weight * out.commit_loss
        return {"loss": loss, "recon": recon, "ric": ric, "commit": out.commit_loss, "perplexity": out.perplexity}

    def codebook_usage(self, codes: Tensor) -> Tensor:
        """(Q,) fraction of each layer's codebook used in codes (..., Q); -1 ignored."""
        return codebook_usage(codes, self.nb_code)

    # -- exact resume --------------------------------------------------------------------------------

    def extra_state(self) -> dict[str, Any]:
        """Quantizer EMA statistics (not in ``state_dict``), for trainers that resume exactly."""
        return self.quantizer.extra_state()

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""
        self.quantizer.load_extra_state(state)
