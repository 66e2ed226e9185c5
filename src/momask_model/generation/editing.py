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

That inpainting follows the text only where the model has learned transitions (HumanML3D, whose
clips change skill within a caption). A model trained on single-skill clips (the packaged demo) has
only ever seen one skill per sequence: with a walk on both sides of a section it inpaints walking,
whatever the text says (0 of 5 seeds jump, kick or spin on a 6 s demo walk at guidance 4 to 8,
``benchmarks/bench_edits.py``). ``mode="splice"`` serves such models (`momask_model.generation.splicing`):
each section is made from the text alone, over at least 3 s (the model's kicks and spins need it),
and decoded within its own span; kept frames are the source's own decode (its VQ reconstruction)
and the joins are crossfades inside the section. The result's ``tokens`` are the source's with each
section's tokens spliced in. ``mode="auto"`` (default) splices for single-skill models
(`TokenModel.single_skill_model`) and inpaints otherwise.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from momask_model.config import SamplingConfig
from momask_model.generation.core import TokenModel
from momask_model.generation.results import GenerationError, GenerationResult
from momask_model.generation.sections import SectionError, TokenSection, parse_sections, sections_mask
from momask_model.generation.splicing import section_motion, splice_result
from momask_model.motion.features import features_to_joints

#: Residual guidance of the official edit script (generation uses the bundle's res_cond_scale, 5).
EDIT_RES_COND_SCALE = 2.0
#: How sections are regenerated: inpainted with the kept motion as context (the paper's editing),
#: generated from the text alone and spliced in, or chosen by the model's training data.
EDIT_MODES = ("auto", "inpaint", "splice")

#: What an edit's source may be: features (T, D), a result, or a ``.npz`` / ``.npy`` file.
Source = np.ndarray | torch.Tensor | GenerationResult | str | Path


def load_source(source: Source, *, dim: int, unit: int, index: int = 0) -> np.ndarray:
    """A source motion as de-normalised features (T, dim), T cropped to a multiple of ``unit``.

    Accepts (T, D) features, a `GenerationResult` (motion ``index``), a ``.npz`` written by
    ``momask-generate`` (its ``features``/``lengths``, motion ``index``) or a ``.npy`` of features
    (HumanML3D ``new_joint_vecs``). Needs no model, so the CLI checks a source before loading one.
    """
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


def model_source(model: TokenModel, source: Source, index: int = 0) -> np.ndarray:
    """`load_source` with the model's feature width and token unit."""
    return load_source(source, dim=model.config.dataset.dim_pose, unit=model.unit_length, index=index)


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
    model: TokenModel,
    source: Source,
    sections: str | Sequence,
    texts: str | Sequence[str] | None,
    *,
    sampling: SamplingConfig,
    residual: str = "keep",
    mode: str = "auto",
    cond: torch.Tensor | None = None,
    seed: int | None = None,
    fast: bool = True,
    source_index: int = 0,
) -> GenerationResult:
    """`MoMask.edit` (its docstring says what each argument means); ``sampling`` is resolved."""
    if mode not in EDIT_MODES:
        raise GenerationError(f"mode must be one of {EDIT_MODES}, got {mode!r}")
    if mode == "auto":
        mode = "splice" if model.single_skill_model else "inpaint"
    unit = model.unit_length
    features = model_source(model, source, source_index)
    n_tokens = features.shape[0] // unit
    if n_tokens < 1:
        raise SectionError(f"the source has {features.shape[0]} frames; editing needs at least {2 * unit}")
    no_sections = sections is None or (not isinstance(sections, str) and len(sections) == 0)
    parsed = [] if no_sections else parse_sections(sections, n_tokens=n_tokens, unit=unit, fps=model.config.dataset.fps)
    batch = model.batch_size(texts, cond)
    codes = model.encode_features(features).expand(batch, -1, -1).clone()
    if parsed and mode == "splice":
        source_codes = codes[:1].clone()
        cond_m, cond_r = model.conditions(texts, cond, fast=fast, batch=batch)
        generator = model.random_generator(seed)
        pieces = []
        for section in parsed:
            tokens, feats, joints = section_motion(model, cond_m, cond_r, section.end - section.start,
                                                   sampling=sampling, generator=generator, fast=fast)
            codes[:, section.start : section.end] = tokens
            pieces.append((*section.frames(unit), feats, joints))
        return splice_result(model, source_codes, codes, pieces)
    elif parsed:
        cond_m, cond_r = model.conditions(texts, cond, fast=fast, batch=batch)
        generator = model.random_generator(seed)
        for lo, hi, sub in edit_pieces(parsed, n_tokens, model.window_tokens):
            lens = torch.full((batch,), hi - lo, dtype=torch.long, device=codes.device)
            mask = torch.from_numpy(sub).to(codes.device).expand(batch, -1)
            codes[:, lo:hi] = model.inpaint(codes[:, lo:hi], lens, mask, cond_m, cond_r, sampling=sampling,
                                            generator=generator, fast=fast, residual=residual)
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


def source_joints(model: TokenModel, source: Source, index: int = 0) -> np.ndarray:
    """Joints (T, J, 3) of a source motion, cropped like the edit's output (for error measurements)."""
    return features_to_joints(model_source(model, source, index), model.config.dataset.joints_num)
