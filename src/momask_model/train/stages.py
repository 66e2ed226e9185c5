"""The five MoMask training stages as :class:`TrainingStage` objects for the shared :class:`Trainer`.

Each stage is a built model plus "batch -> losses" and "loader -> validation metrics". Stages that
read tokens (masked, residual, length estimator) take the VQ stage's checkpoint and refuse one whose
codebook or feature layout does not match their config, because a mismatch would otherwise surface as
an index error deep inside an embedding (or, worse, train silently on the wrong tokens).
"""
from __future__ import annotations

import logging
from collections import OrderedDict, defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from momask_model.config import MoMaskConfig, TextEncoderConfig, VQConfig
from momask_model.data.humanml3d import DatasetLayout, collate_text_motion
from momask_model.motion.features import features_to_joints
from momask_model.motion.normalization import Normalizer

from momask_model.evaluate import metrics as M
from momask_model.evaluate.evaluator import TextMotionEvaluator, batch_tokens
from momask_model.train.config import EvalConfig, PipelineConfig, VQLossConfig
from momask_model.train.trainer import TrainingError, TrainingStage

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "momask_ros.train_checkpoint.v1"


class StageCompatibilityError(TrainingError):
    """A checkpoint handed to a stage was trained with an incompatible configuration."""


# ---------------------------------------------------------------------------------------------- helpers


def read_stage_checkpoint(path: str | Path, stage: str) -> dict[str, Any]:
    """Load a trainer checkpoint and check that it comes from ``stage``."""
    path = Path(path)
    if not path.is_file():
        raise StageCompatibilityError(f"{stage} checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise StageCompatibilityError(f"{path} is not a training checkpoint written by this trainer")
    if ckpt.get("stage") != stage:
        raise StageCompatibilityError(f"{path} holds stage {ckpt.get('stage')!r}, expected {stage!r}")
    return ckpt


def check_vq_compatible(vq_cfg: VQConfig, model_cfg: MoMaskConfig, *, source: str = "VQ checkpoint") -> None:
    """Raise :class:`StageCompatibilityError` listing every field where the VQ and the config disagree."""
    problems = []
    pairs = [
        ("nb_code", vq_cfg.nb_code, "mask_transformer.num_tokens", model_cfg.mask_transformer.num_tokens),
        ("nb_code", vq_cfg.nb_code, "residual_transformer.num_tokens", model_cfg.residual_transformer.num_tokens),
        ("code_dim", vq_cfg.code_dim, "mask_transformer.code_dim", model_cfg.mask_transformer.code_dim),
        ("code_dim", vq_cfg.code_dim, "residual_transformer.code_dim", model_cfg.residual_transformer.code_dim),
        ("num_quantizers", vq_cfg.num_quantizers, "residual_transformer.num_quantizers",
         model_cfg.residual_transformer.num_quantizers),
        ("input_dim", vq_cfg.input_dim, "dataset.dim_pose", model_cfg.dataset.dim_pose),
    ]
    for vq_name, vq_val, cfg_name, cfg_val in pairs:
        if vq_val != cfg_val:
            problems.append(f"{source} has {vq_name}={vq_val} but the config has {cfg_name}={cfg_val}")
    if problems:
        raise StageCompatibilityError("; ".join(problems))


def load_vq_from_checkpoint(path: str | Path, model_cfg: MoMaskConfig) -> tuple[nn.Module, Normalizer]:
    """The frozen RVQ-VAE and its normaliser from a VQ-stage checkpoint, checked against ``model_cfg``."""
    from momask_model.nets.vq import RVQVAE

    ckpt = read_stage_checkpoint(path, "vq")
    info = ckpt.get("model_config") or {}
    vq_cfg = VQConfig.from_dict(info["vq"])
    check_vq_compatible(vq_cfg, model_cfg, source=f"VQ checkpoint {path}")
    vq = RVQVAE(**vq_cfg.model_kwargs())
    vq.load_state_dict(ckpt["model"])
    for p in vq.parameters():
        p.requires_grad_(False)
    normalizer = Normalizer(np.asarray(info["mean"], np.float32), np.asarray(info["std"], np.float32))
    return vq.eval(), normalizer


def dataset_captions(layout: DatasetLayout, splits: Sequence[str]) -> list[str]:
    """Every caption of the given splits that exist (for building an offline vocabulary)."""
    out = []
    for split in splits:
        if not layout.split_path(split).is_file():
            continue
        for motion_id in layout.split_ids(split):
            out.extend(a.caption for a in layout.read_texts(motion_id))
    return out


def resolve_text_config(cfg: TextEncoderConfig, layout: DatasetLayout, splits: Sequence[str]) -> TextEncoderConfig:
    """A bag-of-words encoder without a vocabulary gets one built from the dataset's captions (the same
    list in every stage, so the stages and the bundle agree)."""
    if cfg.kind != "bow" or cfg.vocab:
        return cfg
    from momask_model.text.encoders import build_vocabulary

    vocab = build_vocabulary(dataset_captions(layout, splits))
    if not vocab:
        raise TrainingError(f"no caption words found under {layout.root} to build a vocabulary")
    return cfg.replace(vocab=tuple(vocab))


class CachedTextEncoder:
    """Frozen text encoder with a caption -> vector cache (captions repeat every epoch; CLIP is the
    most expensive frozen part of transformer training)."""

    def __init__(self, encoder: nn.Module, *, max_size: int = 100_000) -> None:
        self.encoder = encoder.eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.max_size = max_size

    def to(self, device: torch.device) -> "CachedTextEncoder":
        self.encoder.to(device)
        return self

    @torch.no_grad()
    def __call__(self, captions: Sequence[str], device: torch.device) -> torch.Tensor:
        missing = [c for c in dict.fromkeys(captions) if c not in self.cache]
        if missing:
            vecs = self.encoder.encode(list(missing)).float().cpu()
            for c, v in zip(missing, vecs):
                self.cache[c] = v
            while len(self.cache) > self.max_size:
                self.cache.popitem(last=False)
        return torch.stack([self.cache[c] for c in captions]).to(device)


# ---------------------------------------------------------------------------------------------- VQ


class VQStage(TrainingStage):
    """RVQ-VAE on normalised 64-frame windows (design/momask.md §2.5).

    Validation: the loss terms, root-aligned MPJPE of the reconstructed windows (in dataset units),
    per-layer codebook usage and perplexity, and, with an evaluator and a text-motion val set,
    reconstruction FID / R-precision (one replication).
    """

    name = "vq"

    def __init__(self, *, model: nn.Module, vq_config: VQConfig, loss: VQLossConfig, normalizer: Normalizer,
                 joints_num: int, dataset_config: Mapping[str, Any] | None = None,
                 evaluator: TextMotionEvaluator | None = None, eval_set: Any = None,
                 eval_config: EvalConfig | None = None) -> None:
        self.model = model
        self.vq_config, self.loss_cfg = vq_config, loss
        self.normalizer, self.joints_num = normalizer, joints_num
        self.dataset_config = dict(dataset_config or {})
        self.evaluator, self.eval_set, self.eval_config = evaluator, eval_set, eval_config or EvalConfig()
        self._last: dict[str, float] = {}

    def setup(self, device: torch.device) -> None:
        super().setup(device)
        if self.evaluator is not None:
            self.evaluator.to(device).eval()

    def loss(self, model: nn.Module, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = batch.to(self.device, non_blocking=True)
        out = model.training_loss(x, commit_weight=self.loss_cfg.commit, loss_vel=self.loss_cfg.loss_vel,
                                  joints_num=self.joints_num)
        self._last = {"perplexity": float(out["perplexity"])}
        return out

    def log_scalars(self) -> dict[str, float]:
        return dict(self._last)

    @torch.no_grad()
    def validate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        sums: dict[str, float] = defaultdict(float)
        n, err_sum, err_n, codes = 0, 0.0, 0, []
        for batch in loader:
            x = batch.to(self.device)
            for k, v in model.training_loss(x, commit_weight=self.loss_cfg.commit, loss_vel=self.loss_cfg.loss_vel,
                                            joints_num=self.joints_num).items():
                sums[k] += float(v)
            n += 1
            c = model.encode(x)
            codes.append(c.cpu())
            recon = model.decode(c)
            pj = features_to_joints(self.normalizer.denormalize(recon.float().cpu()).numpy(), self.joints_num)
            gj = features_to_joints(self.normalizer.denormalize(x.float().cpu()).numpy(), self.joints_num)
            err_sum += M.mpjpe(pj, gj) * pj.shape[0]
            err_n += pj.shape[0]
        out = {k: v / max(n, 1) for k, v in sums.items()}
        if err_n:
            out["mpjpe"] = err_sum / err_n
            usage = M.codebook_usage(torch.cat(codes).numpy(), nb_code=self.vq_config.nb_code)
            out["codebook_usage"] = usage["usage_mean"]
            out["codebook_perplexity"] = usage["perplexity_mean"]
        if self.evaluator is not None and self.eval_set is not None and self.eval_config.val_during_training:
            from momask_model.evaluate.runner import evaluate_vq

            table = evaluate_vq(model, self.normalizer, self.evaluator, self.eval_set, joints_num=self.joints_num,
                                config=self.eval_config.replace(repeats=1), device=self.device)
            out.update({k: v["mean"] for k, v in table["vq"].items() if isinstance(v, dict) and "mean" in v})
        return out

    def describe(self) -> dict[str, Any]:
        return {"vq": self.vq_config.to_dict(), "dataset": self.dataset_config,
                "mean": np.asarray(self.normalizer.mean, np.float32), "std": np.asarray(self.normalizer.std, np.float32)}


# ---------------------------------------------------------------------------------------------- text stages


class _TextStage(TrainingStage):
    """Shared by the stages that read (caption, padded motion, m_len) batches and a frozen text encoder."""

    collate_fn = staticmethod(collate_text_motion)

    def __init__(self, *, model: nn.Module, text_encoder: nn.Module, model_config: MoMaskConfig,
                 vq: nn.Module | None = None, normalizer: Normalizer | None = None,
                 evaluator: TextMotionEvaluator | None = None, eval_config: EvalConfig | None = None) -> None:
        self.model = model
        self.text = CachedTextEncoder(text_encoder)
        self.model_config = model_config
        self.vq = vq
        self.normalizer = normalizer
        self.evaluator = evaluator
        self.eval_config = eval_config or EvalConfig()
        self.unit = model_config.dataset.unit_length

    def setup(self, device: torch.device) -> None:
        super().setup(device)
        self.text.to(device)
        if self.vq is not None:
            self.vq.to(device).eval()
        if self.evaluator is not None:
            self.evaluator.to(device).eval()

    def _common(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        motion = batch["motion"].to(self.device, non_blocking=True)
        token_lens = torch.div(batch["m_lens"], self.unit, rounding_mode="floor").to(self.device)
        cond = self.text(batch["captions"], self.device)
        return motion, token_lens, cond

    def describe(self) -> dict[str, Any]:
        return {"model": self.model_config.to_dict(),
                "text_encoder": self.text.encoder.describe() if hasattr(self.text.encoder, "describe") else {}}

    def _generation_metrics(self, model: nn.Module, loader: DataLoader, generate) -> dict[str, float]:
        """FID / R-precision / MM-Dist of ``generate(model, batch, motion, token_lens, cond)`` (normalised
        features) against the batch's ground truth, one pass over the val loader."""
        from momask_model.evaluate.runner import collect_embeddings

        def fn(batch: Mapping[str, Any]) -> torch.Tensor:
            return generate(model, batch, *self._common(batch))

        emb = collect_embeddings(self.evaluator, loader, self.normalizer, fn, device=self.device)
        bs = min(self.eval_config.batch_size, emb["text"].shape[0])
        ms = M.matching_scores(emb["text"], emb["pred"], batch_size=bs)
        out = {"fid": M.fid(emb["gt"], emb["pred"]), "mm_dist": ms.mm_dist}
        out.update({f"top{k + 1}": v for k, v in enumerate(ms.r_precision)})
        return out

    @torch.no_grad()
    def validate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        out = super().validate(model, loader)
        gen = getattr(self, "_val_generate", None)
        if (gen is not None and self.evaluator is not None and self.vq is not None
                and self.eval_config.val_during_training):
            out.update(self._generation_metrics(model, loader, gen))
        return out


class MaskStage(_TextStage):
    """Masked (base-layer) transformer on the VQ's layer-0 tokens (§3.3); validation FID decodes the
    generated base tokens alone, as the official trainer does."""

    name = "mask"

    def loss(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        motion, token_lens, cond = self._common(batch)
        ids = self.vq.encode(motion)[..., 0]
        loss, acc = model.training_loss(ids, token_lens, cond)
        return {"loss": loss, "acc": acc}

    def _val_generate(self, model, batch, motion, token_lens, cond) -> torch.Tensor:
        ids = model.generate(cond, token_lens, **self.eval_config.masked_kwargs())
        n = motion.shape[1] // self.unit
        padded = torch.full((ids.shape[0], n), -1, dtype=torch.long, device=ids.device)
        padded[:, : ids.shape[1]] = ids
        return self.vq.decode(padded.unsqueeze(-1))


class ResidualStage(_TextStage):
    """Residual transformer on all VQ layers (§4.3); validation FID uses the ground-truth base tokens and
    generated residual layers."""

    name = "residual"

    def loss(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        motion, token_lens, cond = self._common(batch)
        codes = self.vq.encode(motion)
        loss, acc = model.training_loss(codes, token_lens, cond)
        return {"loss": loss, "acc": acc}

    def _val_generate(self, model, batch, motion, token_lens, cond) -> torch.Tensor:
        base = self.vq.encode(motion)[..., 0]
        mask = torch.arange(base.shape[1], device=base.device)[None] < token_lens[:, None]
        base = torch.where(mask, base, torch.full_like(base, -1))
        codes = model.generate(base, cond, token_lens, temperature=1.0, cond_scale=self.eval_config.res_cond_scale)
        return self.vq.decode(codes)


class LengthStage(_TextStage):
    """Text -> token-count classifier (§5): CE against m_len // unit_length of the crops."""

    name = "length"

    def loss(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        _, token_lens, cond = self._common(batch)
        token_lens = token_lens.clamp(max=self.model_config.length_estimator.num_classes - 1)
        loss, acc = model.training_loss(cond, token_lens)
        return {"loss": loss, "acc": acc}


# ---------------------------------------------------------------------------------------------- evaluator


class EvaluatorStage(TrainingStage):
    """Our own text-motion matching evaluator: contrastive loss (margin 10, shifted negatives) on
    (tokens, evaluator-normalised motion) pairs. Validation adds R-precision and MM-Dist."""

    name = "evaluator"
    collate_fn = staticmethod(collate_text_motion)

    def __init__(self, *, model: TextMotionEvaluator, batch_size: int = 32) -> None:
        self.model = model
        self.batch_size = batch_size

    def _embed(self, model: TextMotionEvaluator, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, pos, lens = model.tokenize(batch_tokens(batch))
        text = model.encode_text(ids, pos, lens)
        motion = model.encode_motion(batch["motion"].to(self.device), batch["m_lens"].to(self.device), normalized=True)
        return text, motion

    def loss(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        text, motion = self._embed(model, batch)
        return model.contrastive_loss(text, motion)

    @torch.no_grad()
    def validate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        out = super().validate(model, loader)
        texts, motions = [], []
        for batch in loader:
            t, m = self._embed(model, batch)
            texts.append(t.float().cpu().numpy())
            motions.append(m.float().cpu().numpy())
        t, m = np.concatenate(texts), np.concatenate(motions)
        bs = min(self.batch_size, t.shape[0])
        if bs >= 2:
            ms = M.matching_scores(t, m, batch_size=bs)
            out.update({f"top{k + 1}": v for k, v in enumerate(ms.r_precision)})
            out["mm_dist"] = ms.mm_dist
        return out

    def describe(self) -> dict[str, Any]:
        return {"evaluator": self.model.config.to_dict()}

    def on_train_end(self, trainer) -> None:
        from momask_model.evaluate.evaluator import load_evaluator, save_evaluator

        best = trainer.ckpt_dir / "best.pt"
        src = best if best.is_file() else trainer.ckpt_dir / "latest.pt"
        ckpt = torch.load(src, map_location="cpu", weights_only=False)
        self.model.load_state_dict(ckpt["model"])
        save_evaluator(self.model, trainer.out_dir / "evaluator.pt", extra={"step": ckpt["step"]})
        load_evaluator(trainer.out_dir / "evaluator.pt")  # fail now, not at evaluation time
        log.info("wrote %s (from %s)", trainer.out_dir / "evaluator.pt", src.name)


__all__ = [
    "StageCompatibilityError", "VQStage", "MaskStage", "ResidualStage", "LengthStage", "EvaluatorStage",
    "read_stage_checkpoint", "check_vq_compatible", "load_vq_from_checkpoint", "resolve_text_config",
    "CachedTextEncoder", "PipelineConfig",
]
