"""Writing motions and captions in the HumanML3D layout, so imported mocap and test fixtures look
exactly like HumanML3D to every trainer (design/momask.md §1.1)."""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from momask_model.data.captions import TextAnnotation, Tokenizer, default_tokenizer
from momask_model.data.humanml3d import DatasetLayout
from momask_model.motion.features import features_to_joints, joints_to_features
from momask_model.motion.mirroring import mirror_caption, mirror_joints
from momask_model.motion.normalization import compute_mean_std
from momask_model.motion.skeleton import T2M_SKELETON, SkeletonSpec

logger = logging.getLogger(__name__)

CaptionSpec = str | tuple[str, float, float]
_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def _as_annotation(spec: CaptionSpec, tokenizer: Tokenizer, where: str) -> TextAnnotation:
    if isinstance(spec, str):
        caption, f_tag, to_tag = spec, 0.0, 0.0
    else:
        try:
            caption, f_tag, to_tag = spec
        except (TypeError, ValueError):
            raise ValueError(f"{where}: caption must be a str or (caption, f_tag, to_tag), got {spec!r}") from None
    caption = caption.strip()
    if not caption:
        raise ValueError(f"{where}: empty caption")
    return TextAnnotation(caption, tuple(tokenizer(caption)), float(f_tag), float(to_tag))


def write_dataset(
    root: str | Path,
    motions: Mapping[str, np.ndarray],
    captions: Mapping[str, Sequence[CaptionSpec]],
    splits: Mapping[str, Sequence[str]],
    *,
    skeleton: SkeletonSpec = T2M_SKELETON,
    mirror: bool = False,
    tokenizer: Tokenizer | None = None,
) -> DatasetLayout:
    """Write motions and captions in the HumanML3D layout and return its ``DatasetLayout``.

    Features come from ``joints_to_features`` (so N position frames give N-1 feature frames),
    ``new_joints`` is ``features_to_joints`` of them, and ``Mean.npy``/``Std.npy`` are
    ``compute_mean_std(..., feat_bias=1.0)`` over every written motion: plain dataset statistics as
    HumanML3D ships them; trainers add feat_bias themselves (``Normalizer.with_feat_bias``).
    ``all.txt`` lists every id unless ``splits`` already has an ``all`` entry.

    Args:
        root: output folder (created; existing files of the same names are overwritten).
        motions: id -> (N, J, 3) global positions [m], Y up.
        captions: id -> captions; each a sentence (whole clip) or (sentence, f_tag_s, to_tag_s).
        splits: split name -> ids (each id must be in ``motions``).
        skeleton: skeleton of the positions.
        mirror: also write left/right mirrored copies ``M<id>`` (mirrored captions) into the same
            splits, as HumanML3D does.
        tokenizer: caption -> ``word/POS`` list; default ``default_tokenizer()``.

    Raises:
        ValueError: bad ids, missing captions, split ids without motion, or invalid positions
            (``InvalidMotionError``), naming the id.
    """
    if not motions:
        raise ValueError("write_dataset needs at least one motion")
    tokenizer = tokenizer or default_tokenizer()
    for motion_id in motions:
        if not _ID_RE.match(motion_id):
            raise ValueError(f"motion id {motion_id!r} is not a plain file name ([A-Za-z0-9_.-])")
        if not captions.get(motion_id):
            raise ValueError(f"motion {motion_id!r} has no captions")
    for split, ids in splits.items():
        unknown = [i for i in ids if i not in motions]
        if unknown:
            raise ValueError(f"split {split!r} lists ids without motion: {unknown[:5]}")

    out = Path(root)
    for sub in (DatasetLayout.MOTION_DIR, DatasetLayout.JOINTS_DIR, DatasetLayout.TEXT_DIR):
        (out / sub).mkdir(parents=True, exist_ok=True)
    layout = DatasetLayout(out)

    def variants(motion_id: str) -> list[tuple[str, np.ndarray, list[TextAnnotation]]]:
        anns = [_as_annotation(c, tokenizer, f"captions[{motion_id!r}]") for c in captions[motion_id]]
        found = [(motion_id, np.asarray(motions[motion_id]), anns)]
        if mirror:
            mirrored = []
            for a in anns:
                caption = mirror_caption(a.caption)
                mirrored.append(TextAnnotation(caption, tuple(tokenizer(caption)), a.f_tag, a.to_tag))
            found.append((f"M{motion_id}", mirror_joints(np.asarray(motions[motion_id]), skeleton), mirrored))
        return found

    all_features = []
    for motion_id in motions:
        for name, joints, anns in variants(motion_id):
            try:
                feats = joints_to_features(joints, skeleton)
            except ValueError as exc:
                raise type(exc)(f"motion {name!r}: {exc}") from exc
            np.save(layout.motion_path(name), feats)
            np.save(layout.joints_path(name), features_to_joints(feats, skeleton.joints_num).astype(np.float32))
            layout.text_path(name).write_text("\n".join(a.to_line() for a in anns) + "\n", encoding="utf-8")
            all_features.append(feats)

    def expand(ids: Sequence[str]) -> list[str]:
        return [name for i in ids for name in ((i, f"M{i}") if mirror else (i,))]

    split_lists = {split: expand(ids) for split, ids in splits.items()}
    split_lists.setdefault("all", expand(list(motions)))
    for split, ids in split_lists.items():
        layout.split_path(split).write_text("".join(f"{i}\n" for i in ids))

    mean, std = compute_mean_std(all_features, skeleton.joints_num, feat_bias=1.0)
    np.save(layout.mean_path, mean)
    np.save(layout.std_path, std)
    logger.info("wrote %d motions to %s", len(all_features), out)
    return layout
