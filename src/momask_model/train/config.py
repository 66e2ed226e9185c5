"""The one YAML file a training pipeline reads: model, data, per-stage optimisation, evaluation.

Defaults are the paper's HumanML3D settings (design/momask.md §2.1, §3.1, §3.4, §4.3, §5, §6); the
files in ``training/configs/`` only state what differs. Command-line overrides use dotted keys
(``--set vq.lr=1e-4``) with YAML-typed values, applied before validation so a typo fails loudly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from momask_model.config import ConfigBase, ConfigError, MoMaskConfig

from momask_model.evaluate.config import EvalConfig
from momask_model.evaluate.evaluator import EvaluatorConfig
from momask_model.train.trainer import TrainConfig


@dataclass(frozen=True)
class DataConfig(ConfigBase):
    """Where the HumanML3D-layout dataset is and how the stages read it.

    feat_bias / feat_bias_times: root and contact std divided by ``feat_bias ** times`` (the released
        models effectively use 5² = 25, design/momask.md §1.4).
    window_balance: VQ windows weight every motion equally (``VQWindowDataset(balance_motions=...)``),
        for datasets that mix short one-shot moves with long loops; off for HumanML3D (official).
    """

    root: str = ""
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    feat_bias: float = 5.0
    feat_bias_times: int = 2
    window_size: int = 64
    window_balance: bool = False
    tag_fps: float = 20.0


@dataclass(frozen=True)
class VQLossConfig(ConfigBase):
    """RVQ-VAE loss weights (§2.5): commitment β and the extra ric-position L1 ("loss_vel")."""

    commit: float = 0.02
    loss_vel: float = 0.5


def _vq_train() -> TrainConfig:
    return TrainConfig(lr=2e-4, batch_size=256, warmup_iters=2000, milestones=(150000, 250000), gamma=0.05,
                       max_epochs=50, scheduler_after_warmup=True, best_metric="fid")


def _transformer_train() -> TrainConfig:
    return TrainConfig(lr=2e-4, batch_size=64, weight_decay=1e-5, warmup_iters=2000, milestones=(50000,), gamma=0.1,
                       max_epochs=500, scheduler_after_warmup=False, best_metric="fid")


def _length_train() -> TrainConfig:
    return TrainConfig(optimizer="adam", lr=1e-4, betas=(0.9, 0.999), batch_size=64, warmup_iters=0, milestones=(),
                       gamma=1.0, max_epochs=300, grad_clip=0.5, best_metric="loss")


def _evaluator_train() -> TrainConfig:
    return TrainConfig(optimizer="adam", lr=1e-4, betas=(0.9, 0.999), batch_size=32, warmup_iters=0, milestones=(),
                       gamma=1.0, max_epochs=300, best_metric="loss")


@dataclass(frozen=True)
class PipelineConfig(ConfigBase):
    """Everything the five stages and the evaluation read."""

    model: MoMaskConfig = field(default_factory=MoMaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)
    vq_loss: VQLossConfig = field(default_factory=VQLossConfig)
    vq: TrainConfig = field(default_factory=_vq_train)
    mask: TrainConfig = field(default_factory=_transformer_train)
    residual: TrainConfig = field(default_factory=_transformer_train)
    length: TrainConfig = field(default_factory=_length_train)
    evaluator_train: TrainConfig = field(default_factory=_evaluator_train)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> "PipelineConfig":
        self.model.validate()
        if self.evaluator.dim_pose != self.model.dataset.dim_pose:
            raise ConfigError(f"evaluator.dim_pose={self.evaluator.dim_pose} != "
                              f"model.dataset.dim_pose={self.model.dataset.dim_pose}")
        return self


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings (value parsed as YAML: numbers, lists, bools, null)."""
    data = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value")
        key, raw = item.split("=", 1)
        path = [p for p in key.strip().split(".") if p]
        if not path:
            raise ConfigError(f"override {item!r} has an empty key")
        value = yaml.safe_load(raw)
        node: dict[str, Any] = {path[-1]: value}
        for p in reversed(path[:-1]):
            node = {p: node}
        data = _merge(data, node)
    return data


def load_pipeline_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> PipelineConfig:
    """Defaults, then the YAML file (its ``base:`` file first, if any), then the overrides."""
    data: dict[str, Any] = PipelineConfig().to_dict()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        loaded = yaml.safe_load(path.read_text()) or {}
        base = loaded.pop("base", None)
        if base:
            data = load_pipeline_config(path.parent / base).to_dict()
        data = _merge(data, loaded)
    data = apply_overrides(data, overrides)
    return PipelineConfig.from_dict(data).validate()
