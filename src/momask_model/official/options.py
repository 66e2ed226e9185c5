"""Read the authors' ``opt.txt`` training options into this project's `MoMaskConfig` (design/momask.md §7.4).

Apart from the weight import (``official``) because it needs no checkpoint, only the option files:
tests and users can check what an official run will become before loading any weights.
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any, Mapping

from momask_model.config import (
    DatasetConfig,
    LengthEstimatorConfig,
    MaskTransformerConfig,
    MoMaskConfig,
    ResidualTransformerConfig,
    SamplingConfig,
    TextEncoderConfig,
    VQConfig,
)

log = logging.getLogger(__name__)

__all__ = ["CLIP_DIM", "DATASETS", "OfficialImportError", "config_from_official", "parse_opt_txt"]

DATASETS = ("t2m", "kit")
#: Width of CLIP ViT-B/32's pooled text feature (the official ``clip_dim``).
CLIP_DIM = 512

_FLOAT = re.compile(r"^[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$")
_INT = re.compile(r"^[-+]?\d+$")


class OfficialImportError(ValueError):
    """The official checkpoint folder, an opt.txt or a weight file is missing or inconsistent.

    The message always names the offending file (and key, where there is one).
    """


# --------------------------------------------------------------------------------------------- opt.txt
def _parse_value(text: str) -> Any:
    """Official typing (bool, int, float, else str) extended to signed and scientific numbers."""
    if text in ("True", "False"):
        return text == "True"
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    return text


def parse_opt_txt(path: str | Path) -> dict[str, Any]:
    """Read an official ``opt.txt`` into a dict.

    The format is ``key: value`` lines between ``---- Options ----`` / ``---- End ----`` banners. Values
    become bool (``True``/``False``), int, float, or stay strings (``None`` and lists such as
    ``[50000]`` stay strings, as in the official reader). Unlike the official reader this one tolerates
    blank lines, values containing ``": "`` (split at the first one), scientific-notation numbers and
    stray lines without a colon (skipped with a warning), because released files differ in key sets
    and the trainers wrote whatever ``str()`` gave.

    Raises:
        OfficialImportError: the file is missing, unreadable, or holds no ``key: value`` line.
    """
    path = Path(path)
    if not path.is_file():
        raise OfficialImportError(f"opt.txt not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise OfficialImportError(f"cannot read {path}: {exc}") from exc
    opt: dict[str, Any] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("---"):
            continue
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or not key:
            log.warning("%s:%d: ignoring line without 'key: value': %r", path, number, raw)
            continue
        if key in opt:
            log.warning("%s:%d: key %r repeated; the last value wins", path, number, key)
        opt[key] = _parse_value(value.strip())
    if not opt:
        raise OfficialImportError(f"{path} holds no 'key: value' options; is it an official opt.txt?")
    return opt


def _opt_int(opt: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = opt.get(key, default)
    if value is None:
        raise OfficialImportError(f"{where}: required option {key!r} is missing")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
        raise OfficialImportError(f"{where}: option {key!r} = {value!r} is not an integer")
    return int(value)


def _opt_float(opt: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = opt.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise OfficialImportError(f"{where}: option {key!r} = {value!r} is not a number")
    return float(value)


def _opt_bool(opt: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = opt.get(key, default)
    if not isinstance(value, bool):
        raise OfficialImportError(f"{where}: option {key!r} = {value!r} is not True/False")
    return value


def _where(opt: Mapping[str, Any], fallback: str) -> str:
    return str(opt.get("__path__", fallback))


# --------------------------------------------------------------------------------------------- config
def config_from_official(
    vq_opt: Mapping[str, Any],
    m_opt: Mapping[str, Any],
    r_opt: Mapping[str, Any],
    dataset: str = "t2m",
    *,
    clip_weights: str | None = "openai",
    clip_allow_random: bool = False,
) -> MoMaskConfig:
    """Our `MoMaskConfig` for a released VQ / M-transformer / R-transformer trio.

    Architecture numbers come from the opt files (missing architecture keys fall back to the official
    option defaults; wrong ones are caught later by the strict shape check). Codebook size, code width
    and quantizer count of both transformers come from the VQ opt, exactly as the official loader does.
    Sampling defaults are the README's (t2m: cond_scale 4; KIT: 2; 10 steps; residual scale 5).

    Args:
        vq_opt, m_opt, r_opt: parsed opt.txt dicts (`parse_opt_txt`); an optional ``__path__`` entry is
            used in error messages.
        dataset: ``'t2m'`` (HumanML3D) or ``'kit'``.
        clip_weights: CLIP ViT-B/32 weights the bundle will load: ``'openai'`` or a local file.
        clip_allow_random: tests and demos only: let the bundle fall back to a random CLIP tower.

    Raises:
        OfficialImportError: unknown dataset, an opt for another dataset, or an architecture variant our
            modules do not implement (norm layers, non-ReLU activation, shared codebook, unshared
            residual tables), naming the opt file and key.
    """
    if dataset not in DATASETS:
        raise OfficialImportError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    data = DatasetConfig() if dataset == "t2m" else DatasetConfig.kit()
    vq_where, m_where, r_where = _where(vq_opt, "VQ opt.txt"), _where(m_opt, "M opt.txt"), _where(r_opt, "R opt.txt")
    for opt, where in ((vq_opt, vq_where), (m_opt, m_where), (r_opt, r_where)):
        name = opt.get("dataset_name")
        if name is not None and name != dataset:
            raise OfficialImportError(f"{where}: dataset_name is {name!r} but importing dataset {dataset!r}")

    # -- RVQ-VAE (§2.1)
    if str(vq_opt.get("vq_act", "relu")) != "relu":
        raise OfficialImportError(f"{vq_where}: vq_act={vq_opt['vq_act']!r} is not supported (only 'relu')")
    if str(vq_opt.get("vq_norm", "None")) != "None":
        raise OfficialImportError(f"{vq_where}: vq_norm={vq_opt['vq_norm']!r} is not supported (only None)")
    if _opt_bool(vq_opt, "shared_codebook", vq_where, False):
        raise OfficialImportError(f"{vq_where}: shared_codebook=True is not supported (the release uses False)")
    code_dim = _opt_int(vq_opt, "code_dim", vq_where, vq_opt.get("output_emb_width"))
    emb_width = _opt_int(vq_opt, "output_emb_width", vq_where, code_dim)
    if emb_width != code_dim:
        raise OfficialImportError(f"{vq_where}: output_emb_width={emb_width} differs from code_dim={code_dim}")
    vq = VQConfig(
        input_dim=data.dim_pose,
        width=_opt_int(vq_opt, "width", vq_where, 512),
        code_dim=code_dim,
        nb_code=_opt_int(vq_opt, "nb_code", vq_where),
        num_quantizers=_opt_int(vq_opt, "num_quantizers", vq_where),
        down_t=_opt_int(vq_opt, "down_t", vq_where, 2),
        stride_t=_opt_int(vq_opt, "stride_t", vq_where, 2),
        depth=_opt_int(vq_opt, "depth", vq_where, 3),
        dilation_growth_rate=_opt_int(vq_opt, "dilation_growth_rate", vq_where, 3),
        dropout=0.2,  # hard-coded inside the official residual conv block
        quantize_dropout_prob=_opt_float(vq_opt, "quantize_dropout_prob", vq_where, 0.2),
        mu=_opt_float(vq_opt, "mu", vq_where, 0.99),
    )

    # -- transformers (§3.1, §4.1): stack sizes from their own opt, token space from the VQ
    def stack(opt: Mapping[str, Any], where: str, cond_drop: float) -> dict[str, Any]:
        return dict(
            num_tokens=vq.nb_code,
            code_dim=vq.code_dim,
            latent_dim=_opt_int(opt, "latent_dim", where, 384),
            ff_size=_opt_int(opt, "ff_size", where, 1024),
            num_layers=_opt_int(opt, "n_layers", where, 8),
            num_heads=_opt_int(opt, "n_heads", where, 6),
            dropout=_opt_float(opt, "dropout", where, 0.2),
            cond_dim=CLIP_DIM,
            cond_drop_prob=_opt_float(opt, "cond_drop_prob", where, cond_drop),
        )

    mask = MaskTransformerConfig(**stack(m_opt, m_where, 0.1))
    if not _opt_bool(r_opt, "share_weight", r_where, False):
        raise OfficialImportError(
            f"{r_where}: share_weight is False (or absent); only the released shared-table residual "
            "transformer is supported (the official unshared variant adds its output bias twice, which "
            "our ResidualTransformer does not reproduce)"
        )
    residual = ResidualTransformerConfig(
        num_quantizers=vq.num_quantizers, share_weight=True, **stack(r_opt, r_where, 0.2)
    )
    unit = _opt_int(m_opt, "unit_length", m_where, data.unit_length)
    max_len = _opt_int(m_opt, "max_motion_length", m_where, data.max_motion_length)
    data = data.replace(unit_length=unit, max_motion_length=max_len)
    text = TextEncoderConfig(
        kind="clip", model_name="ViT-B-32", weights=clip_weights, allow_random=clip_allow_random, dim=CLIP_DIM
    )
    sampling = SamplingConfig(timesteps=10, cond_scale=4.0 if dataset == "t2m" else 2.0, res_cond_scale=5.0)
    config = MoMaskConfig(
        dataset=data,
        vq=vq,
        mask_transformer=mask,
        residual_transformer=residual,
        length_estimator=LengthEstimatorConfig(input_dim=CLIP_DIM, num_classes=50),
        text_encoder=text,
        sampling=sampling,
    )
    return config.validate()
