"""Motion editing by temporal inpainting (the paper's editing; the official ``edit_t2m.py``).

The source motion is encoded to RVQ tokens; the base tokens of the sections to regenerate are
masked and decoded by the masked transformer (`MaskTransformer.edit`, the official loop), the kept
tokens never change. Residual layers then either

* ``residual="keep"`` (default): stay the source's in kept sections, the residual transformer
  predicting only the edited positions (so kept sections are preserved up to the VQ's own
  reconstruction error), or
* ``residual="regenerate"``: are all regenerated over the whole motion, as the official code does
  (``res_model.generate`` with guidance 2).

Sources longer than the model's window are edited piece by piece, each piece in a window of the
model's maximum length centred on it (the kept motion around it is the context).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from momask_model.motion.features import features_to_joints
from momask_model.generation.results import GenerationError, GenerationResult, check_cond_vector, validate_texts
from momask_model.generation.sections import SectionError, TokenSection, parse_sections, sections_mask

#: A `momask_model.generation.momask.MoMask` (not imported here: the model imports this module).
MoMask = Any

RESIDUAL_MODES = ("keep", "regenerate")
#: Residual guidance of the official edit script (generation uses the bundle's res_cond_scale, 5).
EDIT_RES_COND_SCALE = 2.0


def load_source(model: MoMask, source, index: int = 0) -> np.ndarray:
    """A source motion as de-normalised features (T, D), T cropped to a multiple of the token unit.

    Accepts (T, D) features, a `GenerationResult` (motion ``index``), a ``.npz`` written by
    ``momask-generate`` (its ``features``/``lengths``, motion ``index``) or a ``.npy`` of features
    (HumanML3D ``new_joint_vecs``).
    """
    dim, unit = model.config.dataset.dim_pose, model.unit_length
    if isinstance(source, GenerationResult):
        features = source.motion(index)[0]
    elif isinstance(source, (str, Path)):
        features = _read_source_file(Path(source), index)
    else:
        features = np.asarray(source.detach().cpu() if isinstance(source, torch.Tensor) else source)
        if features.ndim == 3 and features.shape[0] == 1:
            features = features[0]
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[1] != dim:
        raise GenerationError(f"source motion must be (T, {dim}) features, got {tuple(features.shape)}")
    if not np.isfinite(features).all():
        raise GenerationError("source motion contains NaN or infinite values")
    return features[: features.shape[0] // unit * unit]


def _read_source_file(path: Path, index: int) -> np.ndarray:
    if not path.is_file():
        raise GenerationError(f"source motion not found: {path}")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise GenerationError(f"cannot read source motion {path}: {exc}") from None
    if isinstance(data, np.ndarray):
        return data
    with data:
        if "features" not in data:
            raise GenerationError(f"{path} has no 'features' array (write it with momask-generate)")
        features = data["features"]
        if features.ndim == 3:
            if not 0 <= index < features.shape[0]:
                raise GenerationError(f"{path} holds {features.shape[0]} motions; index {index} is out of range")
            n = int(data["lengths"][index]) if "lengths" in data else features.shape[1]
            features = features[index, :n]
        return features


@torch.inference_mode()
def encode_source(model: MoMask, features: np.ndarray) -> torch.Tensor:
    """De-normalised features (T, D) -> tokens (1, T/unit, Q) (the VQ's nearest codes)."""
    norm = np.asarray(model.normalizer.normalize(features), dtype=np.float32)
    return model.vq.encode(torch.from_numpy(norm)[None].to(model.device)).long()


@torch.inference_mode()
def edit_tokens(
    model: MoMask,
    codes: torch.Tensor,
    token_lens: torch.Tensor,
    edit_mask: torch.Tensor,
    cond_m: torch.Tensor,
    cond_r: torch.Tensor,
    *,
    residual: str = "keep",
    generator: torch.Generator | None,
    fast: bool,
    sampling: dict,
    res_cond_scale: float | None = None,
) -> torch.Tensor:
    """Regenerate the tokens at ``edit_mask`` (B, N) of ``codes`` (B, N, Q); the core of every edit,
    continuation and window. Returns (B, N, Q), -1 at padding."""
    if residual not in RESIDUAL_MODES:
        raise GenerationError(f"residual must be one of {RESIDUAL_MODES}, got {residual!r}")
    m_kw, r_kw = model.transformer_kwargs(fast)
    base_src = torch.where(codes[..., 0] < 0, 0, codes[..., 0])
    base = model.mask_transformer.edit(
        cond_m, base_src, token_lens, edit_mask, timesteps=sampling["timesteps"], cond_scale=sampling["cond_scale"],
        temperature=sampling["temperature"], topk_filter_thres=sampling["topk_filter_thres"],
        gsample=sampling["gsample"], generator=generator, **m_kw,
    )
    keep = dict(keep_codes=codes, keep_mask=~edit_mask) if residual == "keep" else {}
    return model.residual_transformer.generate(
        base, cond_r, token_lens, temperature=1.0, topk_filter_thres=sampling["topk_filter_thres"],
        cond_scale=sampling["res_cond_scale"] if res_cond_scale is None else res_cond_scale,
        generator=generator, **keep, **r_kw,
    )


def edit_pieces(sections: Sequence[TokenSection], n_tokens: int, window: int) -> list[tuple[int, int, np.ndarray]]:
    """(window start, window end, edit mask of the window) per edit call.

    A source that fits the model's window is edited in one call, all sections at once (the official
    behaviour). A longer one is cut into pieces of at most half a window each, edited one after the
    other in a window centred on the piece, so every piece has kept (or already edited) motion around it.
    """
    mask = sections_mask(sections, n_tokens)
    if n_tokens <= window:
        return [(0, n_tokens, mask)]
    piece = max(1, window // 2)
    out = []
    for section in sections:
        for start in range(section.start, section.end, piece):
            end = min(section.end, start + piece)
            lo = min(max(0, (start + end - window) // 2), n_tokens - window)
            sub = np.zeros(window, dtype=bool)
            sub[start - lo : end - lo] = True
            out.append((lo, lo + window, sub))
    return out


def edit(
    model: MoMask,
    source,
    sections: str | Sequence,
    texts: str | Sequence[str] | None = None,
    *,
    residual: str = "keep",
    cond: torch.Tensor | None = None,
    seed: int | None = None,
    fast: bool = True,
    source_index: int = 0,
    **sampling,
) -> GenerationResult:
    """Regenerate ``sections`` of ``source`` so they follow the text; the rest of the motion is kept.

    Args:
        source: (T, D) de-normalised features, a `GenerationResult`, a ``momask-generate`` ``.npz``
            or a HumanML3D ``new_joint_vecs`` ``.npy`` (see `load_source`).
        sections: one or more sections (`momask_model.generation.sections`: ``2s:4s``, ``40:80``, ``0.25,0.5``,
            ``:2s``, ``6s:``). No section returns the source's own tokens, decoded.
        texts: the text (one, or one per edit of a batch); or ``cond`` (B, cond_dim) instead.
        residual: ``"keep"`` (default) or ``"regenerate"`` (the official whole-motion residual pass).
        seed, fast: as in generation (fast and reference paths give the same tokens).
        sampling: timesteps, cond_scale, temperature, topk_filter_thres, gsample; res_cond_scale
            (default 2, the official edit's residual guidance).
    Returns:
        A `GenerationResult` of the source's length (cropped to the token unit); ``marks`` are the
        edited sections in frames.
    Raises:
        SectionError: a bad section, naming it. GenerationError: a bad source, text or option.
    """
    unit = model.unit_length
    features = load_source(model, source, source_index)
    n_tokens = features.shape[0] // unit
    if n_tokens < 1:
        raise SectionError(f"the source has {features.shape[0]} frames; editing needs at least {2 * unit}")
    no_sections = sections is None or (not isinstance(sections, str) and len(sections) == 0)
    parsed = [] if no_sections else parse_sections(sections, n_tokens=n_tokens, unit=unit, fps=model.config.dataset.fps)
    res_scale = sampling.pop("res_cond_scale", None)
    opts = model.sampling_options(**sampling)
    if texts is not None:
        batch = len(validate_texts(texts))
    elif cond is not None:
        batch = check_cond_vector(cond, model.config.text_encoder.dim).shape[0]
    else:
        batch = 1
    codes = encode_source(model, features).expand(batch, -1, -1).clone()
    if parsed:
        cond_m, cond_r = model.conditions(texts, cond, fast=fast, batch=batch)
        generator = model._generator(seed)
        for lo, hi, sub in edit_pieces(parsed, n_tokens, model.max_length // unit):
            window = codes[:, lo:hi]
            lens = torch.full((batch,), hi - lo, dtype=torch.long, device=codes.device)
            mask = torch.from_numpy(sub).to(codes.device).expand(batch, -1)
            codes[:, lo:hi] = edit_tokens(
                model, window, lens, mask, cond_m, cond_r, residual=residual, generator=generator, fast=fast,
                sampling=opts, res_cond_scale=EDIT_RES_COND_SCALE if res_scale is None else res_scale,
            )
    result = model.decode_tokens(codes, torch.full((batch,), n_tokens, dtype=torch.long))
    result.marks = tuple(s.frames(unit) for s in parsed)
    return result


def kept_sections(marks: Sequence[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """The frame ranges [start, end) an edit kept: the complement of its ``marks`` within ``length``."""
    kept, start = [], 0
    for a, b in sorted(marks):
        if a > start:
            kept.append((start, a))
        start = max(start, b)
    if start < length:
        kept.append((start, length))
    return kept


def source_joints(model: MoMask, source, index: int = 0) -> np.ndarray:
    """Joints (T, J, 3) of a source motion, cropped like the edit's output (for error measurements)."""
    return features_to_joints(load_source(model, source, index), model.config.dataset.joints_num)
