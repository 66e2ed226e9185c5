"""The learning-rate schedule every MoMask stage trains with: linear warm-up, then step decay at
milestones (design/momask.md §2.5, §3.4). Its own module: a pure function of the step, tested alone."""
from __future__ import annotations

from typing import Sequence


def lr_factor(step: int, *, warmup_iters: int, milestones: Sequence[int], gamma: float,
              scheduler_after_warmup: bool) -> float:
    """Multiplier of the base lr at optimiser step ``step`` (0-based).

    Warm-up: ``(step+1)/(warmup_iters+1)``; afterwards ``gamma`` per passed milestone, counting either
    post-warm-up steps (VQ) or all steps (transformers), see design/momask.md §2.5 and §3.4.
    """
    if step < warmup_iters:
        return (step + 1) / (warmup_iters + 1)
    counted = step - warmup_iters if scheduler_after_warmup else step
    return gamma ** sum(1 for m in milestones if counted >= m)


class LrLambda:
    """Picklable-free callable for LambdaLR (state comes from the scheduler's ``last_epoch``)."""

    def __init__(self, *, warmup_iters: int, milestones: Sequence[int], gamma: float,
                 scheduler_after_warmup: bool) -> None:
        self.kw = dict(warmup_iters=warmup_iters, milestones=tuple(milestones), gamma=gamma,
                       scheduler_after_warmup=scheduler_after_warmup)

    def __call__(self, step: int) -> float:
        return lr_factor(step, **self.kw)
