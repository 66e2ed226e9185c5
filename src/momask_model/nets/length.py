"""Text -> motion length classifier (design/momask.md §5).

When the user gives no duration, MoMask samples a token count from a small MLP over the text vector.
Class c means c tokens, i.e. 4c frames at the HumanML3D unit length.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from momask_model.nets.common import TransformerShapeError, check_cond, init_weights

_HIDDEN = 512  # width of the first hidden layer in the release; the next two are 1/2 and 1/4 of it


class LengthEstimator(nn.Module):
    """MLP classifier over token lengths 0..num_classes-1.

    Layout and keys (``output.{0,1,4,5,8,9,11}.*``) equal the release: three
    Linear -> LayerNorm -> LeakyReLU(0.2) blocks (dropout 0.2 after the first two) and a final Linear.

    Args:
        input_dim: width of the text vector.
        num_classes: number of length classes (50 covers 0..49 tokens, i.e. up to 196 frames).
    """

    def __init__(self, *, input_dim: int = 512, num_classes: int = 50) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.input_dim = input_dim
        self.num_classes = num_classes
        h1, h2, h3 = _HIDDEN, _HIDDEN // 2, _HIDDEN // 4
        self.output = nn.Sequential(
            nn.Linear(input_dim, h1),
            nn.LayerNorm(h1),
            nn.LeakyReLU(0.2),
            nn.Dropout(0.2),
            nn.Linear(h1, h2),
            nn.LayerNorm(h2),
            nn.LeakyReLU(0.2),
            nn.Dropout(0.2),
            nn.Linear(h2, h3),
            nn.LayerNorm(h3),
            nn.LeakyReLU(0.2),
            nn.Linear(h3, num_classes),
        )
        self.output.apply(init_weights)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        """(B, input_dim) text vectors -> (B, num_classes) logits."""
        if cond.ndim != 2:
            raise TransformerShapeError(f"cond must be (B, {self.input_dim}), got {tuple(cond.shape)}")
        check_cond(cond, cond.shape[0], self.input_dim)
        return self.output(cond)

    def training_loss(self, cond: torch.Tensor, token_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy against the true token counts.

        Args:
            cond: (B, input_dim) text vectors.
            token_lens: (B,) integer token counts in [0, num_classes).
        Returns:
            (loss, acc) with acc the top-1 accuracy of the batch.
        """
        token_lens = torch.as_tensor(token_lens, device=cond.device)
        if token_lens.shape != (cond.shape[0],) or token_lens.is_floating_point():
            raise TransformerShapeError(
                f"token_lens must be ({cond.shape[0]},) integers, got {tuple(token_lens.shape)}"
            )
        token_lens = token_lens.long()
        if token_lens.numel() and (int(token_lens.min()) < 0 or int(token_lens.max()) >= self.num_classes):
            raise TransformerShapeError(
                f"token_lens must lie in [0, {self.num_classes}), "
                f"got [{int(token_lens.min())}, {int(token_lens.max())}]"
            )
        logits = self.forward(cond)
        loss = F.cross_entropy(logits, token_lens)
        acc = logits.argmax(dim=-1).eq(token_lens).float().mean()
        return loss, acc

    @torch.no_grad()
    def sample(
        self, cond: torch.Tensor, generator: torch.Generator | None = None, min_tokens: int = 1
    ) -> torch.Tensor:
        """Draw token counts from softmax(logits), as the release does (not the argmax).

        The release can return 0 tokens, which the transformers cannot decode; here samples are
        clamped to ``min_tokens`` (>= 1). Runs in eval mode (no dropout) and restores the mode.

        Args:
            cond: (B, input_dim) text vectors.
            generator: optional RNG for reproducible draws.
            min_tokens: smallest count returned.
        Returns:
            (B,) long token counts in [min_tokens, num_classes - 1] (or min_tokens if larger).
        """
        if min_tokens < 1:
            raise ValueError(f"min_tokens must be >= 1, got {min_tokens}")
        was_training = self.training
        self.eval()
        try:
            probs = F.softmax(self.forward(cond), dim=-1)
        finally:
            self.train(was_training)
        draws = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        return draws.clamp(min=min_tokens)
