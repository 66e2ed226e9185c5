"""One self-describing checkpoint file for a whole MoMask (config + weights + normaliser).

Every entry point (CLI, trainers, ROS node) loads a model the same way: `load_bundle(path)`. The
bundle stores the config as plain data, so it can be rebuilt without the code that trained it.
CLIP's and the sentence encoder's weights are not stored (they are large and public): the config
names where to get them, and a sentence encoder's recorded file hashes must match the files found.
A bundle may carry a scope gate (``momask_model.text.scope``: its training captions' embeddings and the
threshold below which a request is out of scope); HumanML3D bundles have none.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from momask_model.config import MoMaskConfig
from momask_model.generation.momask import MoMask
from momask_model.motion.normalization import Normalizer

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "momask_ros.bundle"
BUNDLE_VERSION = 1
PARTS = ("vq", "mask_transformer", "residual_transformer", "length_estimator")


class BundleError(RuntimeError):
    """A bundle file is missing, unreadable or inconsistent."""


def build_parts(config: MoMaskConfig, text_state: dict | None = None) -> dict[str, torch.nn.Module]:
    """Build every module of a MoMask from its config (random weights)."""
    from momask_model.nets.length import LengthEstimator
    from momask_model.nets.masked import MaskTransformer
    from momask_model.nets.residual import ResidualTransformer
    from momask_model.text.encoders import build_text_encoder
    from momask_model.nets.vq import RVQVAE

    config.validate()
    return {
        "vq": RVQVAE(**config.vq.model_kwargs()),
        "mask_transformer": MaskTransformer(**config.mask_transformer.model_kwargs()),
        "residual_transformer": ResidualTransformer(**config.residual_transformer.model_kwargs()),
        "length_estimator": LengthEstimator(**config.length_estimator.model_kwargs()),
        "text_encoder": build_text_encoder(config.text_encoder, text_state),
    }


def build_random_momask(
    config: MoMaskConfig, *, seed: int = 0, mean: np.ndarray | None = None, std: np.ndarray | None = None
) -> MoMask:
    """A MoMask with random weights (tests, benchmarks, smoke runs). Identity normaliser by default."""
    torch.manual_seed(seed)
    parts = build_parts(config)
    dim = config.dataset.dim_pose
    normalizer = Normalizer(
        np.zeros(dim, np.float32) if mean is None else mean, np.ones(dim, np.float32) if std is None else std
    )
    return MoMask(config=config, normalizer=normalizer, **parts)


def save_bundle(model: MoMask, path: str | Path, *, meta: dict[str, Any] | None = None) -> Path:
    """Write the bundle atomically (a crash mid-write never leaves a half file under ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "config": model.config.to_dict(),
        "mean": np.asarray(model.normalizer.mean, dtype=np.float32),
        "std": np.asarray(model.normalizer.std, dtype=np.float32),
        "meta": dict(meta or {}),
        "text_encoder": model.text_encoder.describe(),
        "scope": None if model.scope_gate is None else model.scope_gate.state(),
    }
    for name in PARTS:
        module = getattr(model, name)
        payload[name] = None if module is None else {k: v.detach().cpu() for k, v in module.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def read_bundle(path: str | Path, *, mmap: bool = False) -> dict[str, Any]:
    """Load and check a bundle's raw contents (no model built); ``mmap`` maps the weights instead of
    reading them (a quick look at the config and meta)."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"bundle not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    except Exception as exc:  # corrupt file, wrong format
        raise BundleError(f"cannot read bundle {path}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path} is not a momask_ros bundle (missing format tag {BUNDLE_FORMAT!r})")
    if payload.get("version", 0) > BUNDLE_VERSION:
        raise BundleError(f"{path} has bundle version {payload['version']}; this code reads <= {BUNDLE_VERSION}")
    for key in ("config", "mean", "std", "vq", "mask_transformer", "residual_transformer"):
        if payload.get(key) is None:
            raise BundleError(f"bundle {path} lacks {key!r}")
    return payload


def read_bundle_config(path: str | Path) -> tuple[MoMaskConfig, dict[str, Any]]:
    """A bundle's config and meta without building the model (the weights are memory-mapped, not
    read), so a command line checks its arguments against the model before loading it."""
    payload = read_bundle(path, mmap=True)
    try:
        config = MoMaskConfig.from_dict(payload["config"]).validate()
    except ValueError as exc:
        raise BundleError(f"bundle {path}: {exc}") from exc
    return config, dict(payload.get("meta") or {})


def load_bundle(
    path: str | Path, device: str | torch.device = "cpu", *, text_weights: str | None = None
) -> MoMask:
    """Rebuild a MoMask from a bundle file.

    Args:
        path: the bundle (.pt) written by `save_bundle`, a trainer or `momask-import-official`.
        device: where the model runs.
        text_weights: override where the text encoder's weights come from (CLIP: local file or 'openai';
            sentence encoder: a folder, zip or repo id, which must hold the files the bundle recorded).
    """
    payload = read_bundle(path)
    config = MoMaskConfig.from_dict(payload["config"])
    if text_weights is not None:
        if config.text_encoder.kind not in ("clip", "sentence"):
            raise BundleError(f"text weights {text_weights!r} apply to a CLIP or sentence text encoder; bundle "
                              f"{path} uses the {config.text_encoder.kind!r} encoder, which has its words in the bundle")
        config = config.replace(text_encoder=config.text_encoder.replace(weights=text_weights))
    parts = build_parts(config, payload.get("text_encoder"))
    for name in PARTS:
        state = payload.get(name)
        if state is None:
            if name == "length_estimator":
                parts[name] = None
                continue
            raise BundleError(f"bundle {path} lacks {name!r}")
        try:
            parts[name].load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise BundleError(f"bundle {path}: weights of {name!r} do not match its config: {exc}") from exc
    normalizer = Normalizer(np.asarray(payload["mean"], np.float32), np.asarray(payload["std"], np.float32))
    model = MoMask(config=config, normalizer=normalizer, **parts)
    model.bundle_meta = dict(payload.get("meta") or {})
    if payload.get("scope") is not None:
        from momask_model.text.scope import ScopeGate

        model.scope_gate = ScopeGate.from_state(payload["scope"])
    return model.to(device).eval()
