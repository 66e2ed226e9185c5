"""The masking recipe of MaskGIT as MoMask uses it (design/momask.md §3.3, §3.5), apart from the network.

Training hides a cosine-scheduled share of the tokens and corrupts them BERT-style
(`choose_masked_positions`, `bert_remask`); generation starts from [MASK] and unmasks over a few
steps, re-masking the least confident positions by the same cosine schedule (`decode_mask_counts`,
`maskgit_decode`). Pure functions of token ids, scores and a logits callable, so the reference and
fast paths of `MaskTransformer` share them and draw the same random numbers in the same order.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from momask_model.nets.common import (
    TransformerShapeError,
    categorical_sample,
    cosine_schedule,
    gumbel_sample,
    top_k_filter,
)

#: BERT corruption of the chosen positions (§3.3): 10% random code, then 88% of the rest [MASK],
#: the remainder kept -> about 10% / 79.2% / 10.8% (the paper's "80/10/10").
RANDOM_TOKEN_PROB = 0.1
MASK_TOKEN_PROB = 0.88
#: Score given to positions that must never be re-masked (padding, already decided tokens).
FIXED_SCORE = 1e5
#: Share of the tokens the official mask-free edit (no edit mask) re-masks at every step.
MASK_FREE_RATIO = 0.16


class RemaskResult(NamedTuple):
    """Output of :func:`bert_remask`.

    inputs: corrupted ids fed to the model (B, N); labels: true id at chosen positions and
    ``ignore_index`` elsewhere (B, N); chosen: bool (B, N), the positions the loss is computed on.
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    chosen: torch.Tensor


def _uniform(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device)


def choose_masked_positions(
    non_pad: torch.Tensor, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Pick the positions to predict in one training step (§3.3 step 2).

    Per sample, gamma = cos(pi u / 2) with u ~ U[0, 1) (so gamma is in (0, 1]); round(gamma * n)
    positions (at least 1) are chosen by a random permutation, where n is the *padded* length as in
    the release, and the choice is then intersected with the non-pad positions.

    Args:
        non_pad: (B, N) bool, True at valid tokens.
        generator: optional RNG for reproducibility.
    Returns:
        (B, N) bool, True at chosen positions.
    """
    batch, n = non_pad.shape
    ratio = cosine_schedule(_uniform((batch,), non_pad.device, generator))
    num_chosen = (ratio * n).round().clamp(min=1)
    ranks = _uniform((batch, n), non_pad.device, generator).argsort(dim=-1)
    return (ranks < num_chosen.unsqueeze(-1)) & non_pad


def bert_remask(
    ids: torch.Tensor,
    chosen: torch.Tensor,
    *,
    num_tokens: int,
    mask_id: int,
    ignore_index: int | None = None,
    random_prob: float = RANDOM_TOKEN_PROB,
    mask_prob: float = MASK_TOKEN_PROB,
    generator: torch.Generator | None = None,
) -> RemaskResult:
    """BERT-style corruption of the chosen positions (§3.3 steps 3-4); a pure function.

    Each chosen position independently becomes a uniform random code with ``random_prob``; of the
    remaining chosen positions each becomes ``mask_id`` with ``mask_prob``; the rest keep their id.
    Unchosen positions are untouched.

    Args:
        ids: (B, N) long token ids (codes, and pad ids at padding).
        chosen: (B, N) bool positions to corrupt and predict.
        num_tokens: codebook size; random replacements are drawn from [0, num_tokens).
        mask_id: id of the [MASK] token.
        ignore_index: label at unchosen positions (default ``mask_id``, as in the release).
    Returns:
        RemaskResult(inputs, labels, chosen).
    """
    if ids.shape != chosen.shape:
        raise TransformerShapeError(f"ids {tuple(ids.shape)} and chosen {tuple(chosen.shape)} differ in shape")
    ignore_index = mask_id if ignore_index is None else ignore_index
    labels = torch.where(chosen, ids, torch.full_like(ids, ignore_index))
    to_random = (_uniform(tuple(ids.shape), ids.device, generator) < random_prob) & chosen
    random_ids = torch.randint(0, num_tokens, tuple(ids.shape), generator=generator, device=ids.device)
    inputs = torch.where(to_random, random_ids, ids)
    to_mask = (_uniform(tuple(ids.shape), ids.device, generator) < mask_prob) & chosen & ~to_random
    inputs = torch.where(to_mask, torch.full_like(ids, mask_id), inputs)
    return RemaskResult(inputs=inputs, labels=labels, chosen=chosen)


def decode_mask_counts(token_lens: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Positions re-masked at each decoding step (§3.5): max(1, round(cos(pi t_s / 2) * len)).

    t_s = linspace(0, 1, timesteps), counts relative to each sample's true length; the last step
    (t = 1) still re-predicts one token. For length 49 and 10 steps: 49 48 46 42 38 31 24 17 9 1
    (cos(pi/3) * 49 is 24.4999... in floating point; design/momask.md lists 25 there).

    Returns:
        (timesteps, B) float counts.
    """
    t = torch.linspace(0, 1, timesteps, device=token_lens.device).unsqueeze(1)
    return (cosine_schedule(t) * token_lens.unsqueeze(0)).round().clamp(min=1)


#: ``guided_logits(ids (B, N), is_masked (B, N)) -> (B, N, C)`` CFG logits of one decoding step.
GuidedLogits = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def maskgit_decode(
    guided_logits: GuidedLogits,
    padding: torch.Tensor,
    ids: torch.Tensor,
    scores: torch.Tensor,
    count_lens: torch.Tensor,
    refine_mask: torch.Tensor | None,
    *,
    mask_id: int,
    timesteps: int,
    temperature: float,
    topk_filter_thres: float,
    gsample: bool,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """The MaskGIT loop from a start state (ids, scores) (§3.5); returns (B, N) ids, -1 at padding.

    Only the rows of ``guided_logits`` at ``is_masked`` are used (the others are sampled and discarded,
    so the random draws keep their shapes); the fast path computes only those rows. ``count_lens``
    (B,) is what the cosine schedule counts (the true length when generating, the edited positions
    when editing); a sample with 0 there is never re-masked. ``refine_mask`` switches to the official
    mask-free edit (a fixed 16% ratio; scores outside it stay fixed).
    """
    if refine_mask is None:
        counts = decode_mask_counts(count_lens, timesteps)
    else:
        counts = (MASK_FREE_RATIO * count_lens.float()).round().clamp(min=1).expand(timesteps, -1)
    counts = torch.where(count_lens > 0, counts, 0.0)
    for num_masked in counts:
        ranks = scores.argsort(dim=1).argsort(dim=1)
        is_masked = ranks < num_masked.unsqueeze(-1)
        ids = torch.where(is_masked, mask_id, ids)
        logits = guided_logits(ids, is_masked)
        filtered = top_k_filter(logits, topk_filter_thres)
        if gsample:
            sampled = gumbel_sample(filtered, temperature=temperature, generator=generator)
        else:
            sampled = categorical_sample(filtered, temperature=temperature, generator=generator)
        ids = torch.where(is_masked, sampled, ids)
        confidence = logits.softmax(dim=-1).gather(-1, sampled.unsqueeze(-1)).squeeze(-1)
        scores = confidence.masked_fill(~(is_masked if refine_mask is None else refine_mask), FIXED_SCORE)
    return torch.where(padding, -1, ids)
