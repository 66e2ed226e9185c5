"""The evaluation protocol's settings (what the training pipeline's ``eval:`` section holds).

Here rather than in ``train/`` so that ``evaluate`` never imports ``train`` (training uses evaluation,
not the other way round).
"""
from __future__ import annotations

from dataclasses import dataclass

from momask_model.config import SamplingConfig


@dataclass(frozen=True)
class EvalConfig(SamplingConfig):
    """Evaluation protocol (§6.2) and which evaluator to use.

    A ``SamplingConfig`` because the protocol samples with the inference settings (timesteps, guidance
    scales...); its fields stand flat beside the protocol's in the ``eval:`` section.

    evaluator: a checkpoint written by ``train_evaluator`` (``save_evaluator`` format).
    official_checkpoint / glove_dir / meta_dir: the official ``text_mot_match/model/finest.tar``, the
        GloVe ``our_vab_*`` folder and ``Comp_v6_KLD005/meta``, used instead when all are given.
    val_during_training: compute evaluator metrics (FID...) during training validation if an
        evaluator is configured (one replication on the val split).
    """

    evaluator: str = ""
    official_checkpoint: str = ""
    glove_dir: str = ""
    meta_dir: str = ""
    repeats: int = 20
    batch_size: int = 32
    diversity_times: int = 300
    mm_batches: int = 3
    mm_repeats: int = 30
    mm_times: int = 10
    seed: int = 10107
    val_during_training: bool = True
