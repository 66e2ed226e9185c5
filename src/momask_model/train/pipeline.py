"""Build and run each stage from a :class:`PipelineConfig` and a dataset folder; assemble the bundle.

The ``training/*.py`` entry points are thin wrappers over :func:`run_stage`, :func:`make_bundle` and
:func:`run_evaluation`, so the command line, tests and benchmarks all train through the same code.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from momask_model.config import MoMaskConfig
from momask_model.generation.loading import select_device
from momask_model.data.humanml3d import DatasetLayout, TextMotionDataset, VQWindowDataset
from momask_model.motion.normalization import Normalizer

from momask_model.evaluate.evaluator import (
    TextMotionEvaluator, WordVectorizer, build_evaluator, load_evaluator, load_official_evaluator,
)
from momask_model.train.config import PipelineConfig
from momask_model.train.stages import (
    EvaluatorStage, LengthStage, MaskStage, ResidualStage, StageCompatibilityError, VQStage,
    load_vq_from_checkpoint, read_stage_checkpoint, resolve_text_config,
)
from momask_model.train.trainer import Trainer, TrainingError

log = logging.getLogger(__name__)

STAGES = ("vq", "mask", "residual", "length", "evaluator")
_ALL_SPLITS = ("train", "val", "test")


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder (``checkpoints/best.pt`` preferred over ``latest.pt``)."""
    p = Path(path)
    if p.is_dir():
        for name in ("best.pt", "latest.pt"):
            if (p / "checkpoints" / name).is_file():
                return p / "checkpoints" / name
        raise StageCompatibilityError(f"run folder {p} has no checkpoints/best.pt or latest.pt")
    if not p.is_file():
        raise StageCompatibilityError(f"checkpoint not found: {p}")
    return p


def open_layout(cfg: PipelineConfig, data_root: str | Path | None = None) -> DatasetLayout:
    root = data_root or cfg.data.root
    if not root:
        raise TrainingError("no dataset given: pass --data DIR or set data.root in the config")
    return DatasetLayout(root)


def data_normalizer(cfg: PipelineConfig, layout: DatasetLayout) -> Normalizer:
    """Dataset statistics with the feat_bias reweighting the VQ and the evaluator share (§1.4)."""
    norm = layout.normalizer()
    if cfg.data.feat_bias != 1.0 and cfg.data.feat_bias_times > 0:
        norm = norm.with_feat_bias(cfg.data.feat_bias, times=cfg.data.feat_bias_times)
    return norm


def text_motion_set(cfg: PipelineConfig, layout: DatasetLayout, split: str, normalizer: Normalizer,
                    *, required: bool = True) -> TextMotionDataset | None:
    if not layout.split_path(split).is_file():
        if required:
            raise TrainingError(f"split file {layout.split_path(split)} not found")
        return None
    ds = cfg.model.dataset
    return TextMotionDataset(layout, split, normalizer, unit_length=ds.unit_length, min_len=ds.min_motion_length,
                             max_len=ds.max_motion_length, fps=cfg.data.tag_fps)


def load_configured_evaluator(cfg: PipelineConfig, device: str | torch.device = "cpu",
                              path: str | Path | None = None) -> TextMotionEvaluator | None:
    """The evaluator the config (or ``path``) names: ours (``eval.evaluator``) or the official triple."""
    e = cfg.eval
    if path or e.evaluator:
        return load_evaluator(path or e.evaluator, device=device)
    if e.official_checkpoint:
        if not (e.glove_dir and e.meta_dir):
            raise TrainingError("eval.official_checkpoint needs eval.glove_dir and eval.meta_dir as well")
        return load_official_evaluator(e.official_checkpoint, glove_dir=e.glove_dir, meta_dir=e.meta_dir,
                                       dataset="kit" if cfg.model.dataset.dim_pose == 251 else "t2m", device=device)
    return None


def _model_config(cfg: PipelineConfig, layout: DatasetLayout) -> MoMaskConfig:
    return cfg.model.replace(text_encoder=resolve_text_config(cfg.model.text_encoder, layout, _ALL_SPLITS))


def build_stage(name: str, cfg: PipelineConfig, layout: DatasetLayout, *, vq: str | Path | None = None,
                evaluator: TextMotionEvaluator | None = None, glove_dir: str | Path | None = None):
    """(stage, train_set, val_set) for one stage name in :data:`STAGES`."""
    if name not in STAGES:
        raise TrainingError(f"unknown stage {name!r}; stages are {STAGES}")
    mc = cfg.model
    if name == "vq":
        from momask_model.nets.vq import RVQVAE

        norm = data_normalizer(cfg, layout)
        windows = dict(window_size=cfg.data.window_size, balance_motions=cfg.data.window_balance)
        train = VQWindowDataset(layout, cfg.data.train_split, norm, **windows)
        val = (VQWindowDataset(layout, cfg.data.val_split, norm, **windows)
               if layout.split_path(cfg.data.val_split).is_file() else None)
        eval_set = text_motion_set(cfg, layout, cfg.data.val_split, norm, required=False) if evaluator else None
        stage = VQStage(model=RVQVAE(**mc.vq.model_kwargs()), vq_config=mc.vq, loss=cfg.vq_loss, normalizer=norm,
                        joints_num=mc.dataset.joints_num, dataset_config=mc.dataset.to_dict(), evaluator=evaluator,
                        eval_set=eval_set, eval_config=cfg.eval)
        return stage, train, val
    if name == "evaluator":
        norm = data_normalizer(cfg, layout)
        if glove_dir:
            vec = WordVectorizer.from_glove_dir(glove_dir)
        else:
            tokens = [a.tokens for s in _ALL_SPLITS if layout.split_path(s).is_file()
                      for i in layout.split_ids(s) for a in layout.read_texts(i)]
            vec = WordVectorizer.build(tokens, dim=cfg.evaluator.dim_word, seed=cfg.evaluator_train.seed)
        model = build_evaluator(config=cfg.evaluator, vectorizer=vec, mean=norm.mean, std=norm.std)
        train = text_motion_set(cfg, layout, cfg.data.train_split, norm)
        val = text_motion_set(cfg, layout, cfg.data.val_split, norm, required=False)
        return EvaluatorStage(model=model, batch_size=cfg.eval.batch_size), train, val

    if vq is None:
        raise TrainingError(f"stage {name!r} needs the VQ checkpoint (--vq)")
    model_cfg = _model_config(cfg, layout)
    vq_model, norm = load_vq_from_checkpoint(resolve_checkpoint(vq), model_cfg)
    from momask_model.text.encoders import build_text_encoder

    text = build_text_encoder(model_cfg.text_encoder)
    train = text_motion_set(cfg, layout, cfg.data.train_split, norm)
    val = text_motion_set(cfg, layout, cfg.data.val_split, norm, required=False)
    common = dict(text_encoder=text, model_config=model_cfg, vq=vq_model, normalizer=norm, evaluator=evaluator,
                  eval_config=cfg.eval)
    if name == "mask":
        from momask_model.nets.masked import MaskTransformer

        return MaskStage(model=MaskTransformer(**model_cfg.mask_transformer.model_kwargs()), **common), train, val
    if name == "residual":
        from momask_model.nets.residual import ResidualTransformer

        return ResidualStage(model=ResidualTransformer(**model_cfg.residual_transformer.model_kwargs()),
                             **common), train, val
    from momask_model.nets.length import LengthEstimator

    return LengthStage(model=LengthEstimator(**model_cfg.length_estimator.model_kwargs()), **common), train, val


def stage_train_config(cfg: PipelineConfig, name: str):
    return {"vq": cfg.vq, "mask": cfg.mask, "residual": cfg.residual, "length": cfg.length,
            "evaluator": cfg.evaluator_train}[name]


def run_stage(name: str, cfg: PipelineConfig, out_dir: str | Path, *, data_root: str | Path | None = None,
              vq: str | Path | None = None, resume: bool | str = False, glove_dir: str | Path | None = None,
              evaluator_path: str | Path | None = None) -> dict[str, Any]:
    """Train one stage into ``out_dir`` (checkpoints, TensorBoard, ``config.yaml``); returns ``Trainer.fit``'s summary."""
    layout = open_layout(cfg, data_root)
    tcfg = stage_train_config(cfg, name)
    device = select_device(tcfg.device)
    evaluator = None
    if name != "evaluator":
        evaluator = load_configured_evaluator(cfg, device, evaluator_path)
    stage, train, val = build_stage(name, cfg, layout, vq=vq, evaluator=evaluator, glove_dir=glove_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg.replace(data=cfg.data.replace(root=str(layout.root))).save_yaml(out / "config.yaml")
    trainer = Trainer(stage, train, config=tcfg, out_dir=out, val_set=val, resume=resume)
    try:
        return trainer.fit()
    finally:
        trainer.close()


def make_bundle(cfg: PipelineConfig, out: str | Path, *, vq: str | Path, mask: str | Path, residual: str | Path,
                length: str | Path | None = None, data_root: str | Path | None = None) -> Path:
    """Assemble the MoMask bundle (``bundle.save_bundle``) from the stage checkpoints.

    The architecture comes from the checkpoints; the sampling defaults (``model.sampling``) from ``cfg``,
    since they are a generation choice that needs no retraining."""
    from momask_model.generation.bundle import build_parts, save_bundle
    from momask_model.generation.momask import MoMask

    mask_ckpt = read_stage_checkpoint(resolve_checkpoint(mask), "mask")
    model_cfg = MoMaskConfig.from_dict(mask_ckpt["model_config"]["model"]).replace(sampling=cfg.model.sampling)
    vq_model, norm = load_vq_from_checkpoint(resolve_checkpoint(vq), model_cfg)
    res_ckpt = read_stage_checkpoint(resolve_checkpoint(residual), "residual")
    res_cfg = MoMaskConfig.from_dict(res_ckpt["model_config"]["model"])
    for part in ("residual_transformer", "text_encoder", "vq"):
        if getattr(res_cfg, part) != getattr(model_cfg, part):
            raise StageCompatibilityError(f"the residual and mask checkpoints disagree on {part}")
    parts = build_parts(model_cfg)
    parts["vq"] = vq_model
    parts["mask_transformer"].load_state_dict(mask_ckpt["model"])
    parts["residual_transformer"].load_state_dict(res_ckpt["model"])
    if length is not None:
        len_ckpt = read_stage_checkpoint(resolve_checkpoint(length), "length")
        parts["length_estimator"].load_state_dict(len_ckpt["model"])
    else:
        parts["length_estimator"] = None
    momask = MoMask(config=model_cfg, normalizer=norm, **parts)
    meta = {"steps": {"mask": mask_ckpt["step"], "residual": res_ckpt["step"]}, "data_root": str(data_root or cfg.data.root)}
    path = save_bundle(momask, out, meta=meta)
    log.info("wrote bundle %s", path)
    return path


def run_evaluation(cfg: PipelineConfig, out_prefix: str | Path, *, data_root: str | Path | None = None,
                   bundle: str | Path | None = None, vq: str | Path | None = None, gt_only: bool = False,
                   evaluator_path: str | Path | None = None, split: str | None = None,
                   device: str = "auto") -> dict[str, Any]:
    """Evaluate a bundle, a VQ checkpoint or the ground truth alone; writes ``<out_prefix>.json/.md``."""
    from momask_model.evaluate.runner import evaluate_bundle, evaluate_generator, evaluate_vq, identity_generator, write_table

    dev = select_device(device)
    layout = open_layout(cfg, data_root)
    evaluator = load_configured_evaluator(cfg, dev, evaluator_path)
    if evaluator is None:
        raise TrainingError("no evaluator: pass --evaluator PATH (from train_evaluator) or the official files")
    split = split or cfg.data.test_split
    if bundle:
        from momask_model.generation.bundle import load_bundle

        momask = load_bundle(bundle, dev)
        ds = text_motion_set(cfg, layout, split, momask.normalizer)
        table = evaluate_bundle(momask, evaluator, ds, config=cfg.eval, device=dev)
    elif vq:
        vq_model, norm = load_vq_from_checkpoint(resolve_checkpoint(vq), cfg.model)
        ds = text_motion_set(cfg, layout, split, norm)
        table = evaluate_vq(vq_model.to(dev), norm, evaluator, ds, joints_num=cfg.model.dataset.joints_num,
                            config=cfg.eval, device=dev,
                            unit_to_mm=1.0 if cfg.model.dataset.name == "kit" else 1000.0)
    elif gt_only:
        norm = Normalizer(evaluator.mean.cpu().numpy(), evaluator.std.cpu().numpy())
        ds = text_motion_set(cfg, layout, split, norm)
        table = evaluate_generator(evaluator, ds, norm, identity_generator, config=cfg.eval, device=dev,
                                   name="ground_truth_self")
    else:
        raise TrainingError("choose what to evaluate: --bundle, --vq or --gt")
    table["meta"] = {"split": split, "repeats": cfg.eval.repeats, "data_root": str(layout.root),
                     "bundle": str(bundle or ""), "vq": str(vq or ""), "num_items": len(ds)}
    write_table(table, out_prefix)
    return table
