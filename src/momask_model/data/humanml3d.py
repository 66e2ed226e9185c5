"""The HumanML3D / KIT-ML on-disk layout and the two datasets MoMask trains on (design/momask.md §1.1–1.2).

Layout under a dataset root::

    new_joint_vecs/<id>.npy   (T, D) float32 features
    new_joints/<id>.npy       (T, J, 3) float32 positions (recover_from_ric of the features)
    texts/<id>.txt            one annotation per line: caption#tokens#f_tag#to_tag
    train.txt, val.txt, test.txt, ...   one id per line
    Mean.npy, Std.npy         (D,) dataset statistics (group-mean std, no feat_bias)

``VQWindowDataset`` feeds the RVQ-VAE fixed windows; ``TextMotionDataset`` feeds the transformers
(caption, padded motion, length) with the official cropping rules. Caption lines are read by
`momask_model.data.captions`; `momask_model.data.writer` writes this layout.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from momask_model.data.captions import DatasetError, TextAnnotation, parse_text_line
from momask_model.motion.normalization import Normalizer

logger = logging.getLogger(__name__)

SeedLike = np.random.Generator | int | None


# ---------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------


class DatasetLayout:
    """Paths and readers for one dataset root in the HumanML3D layout.

    Args:
        root: the dataset folder (e.g. ``dataset/HumanML3D``).

    Raises:
        DatasetError: ``root`` is not a directory.
    """

    MOTION_DIR = "new_joint_vecs"
    JOINTS_DIR = "new_joints"
    TEXT_DIR = "texts"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"dataset root {self.root} is not a directory")

    @property
    def motion_dir(self) -> Path:
        return self.root / self.MOTION_DIR

    @property
    def joints_dir(self) -> Path:
        return self.root / self.JOINTS_DIR

    @property
    def text_dir(self) -> Path:
        return self.root / self.TEXT_DIR

    @property
    def mean_path(self) -> Path:
        return self.root / "Mean.npy"

    @property
    def std_path(self) -> Path:
        return self.root / "Std.npy"

    def split_path(self, split: str) -> Path:
        return self.root / f"{split}.txt"

    def motion_path(self, motion_id: str) -> Path:
        return self.motion_dir / f"{motion_id}.npy"

    def joints_path(self, motion_id: str) -> Path:
        return self.joints_dir / f"{motion_id}.npy"

    def text_path(self, motion_id: str) -> Path:
        return self.text_dir / f"{motion_id}.txt"

    def split_ids(self, split: str) -> list[str]:
        """Ids listed in ``<split>.txt`` (blank lines ignored, order kept)."""
        path = self.split_path(split)
        if not path.is_file():
            raise DatasetError(f"split file {path} not found")
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]

    def load_features(self, motion_id: str) -> np.ndarray:
        """(T, D) float32 features of one motion, checked for shape and finiteness."""
        path = self.motion_path(motion_id)
        return _load_array(path, ndim=2, what="features")

    def load_joints(self, motion_id: str) -> np.ndarray:
        """(T, J, 3) float32 positions of one motion."""
        path = self.joints_path(motion_id)
        arr = _load_array(path, ndim=3, what="joint positions")
        if arr.shape[-1] != 3:
            raise DatasetError(f"{path}: joint positions must be (T, J, 3), got {arr.shape}")
        return arr

    def read_texts(self, motion_id: str) -> list[TextAnnotation]:
        """All annotations of one motion (at least one, else DatasetError)."""
        path = self.text_path(motion_id)
        if not path.is_file():
            raise DatasetError(f"text file {path} not found")
        anns = [
            parse_text_line(line, where=f"{path}:{i + 1}")
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines())
            if line.strip()
        ]
        if not anns:
            raise DatasetError(f"text file {path} has no annotations")
        return anns

    def normalizer(self) -> Normalizer:
        """Dataset statistics ``Mean.npy``/``Std.npy`` (no feat_bias: see ``Normalizer.with_feat_bias``)."""
        for path in (self.mean_path, self.std_path):
            if not path.is_file():
                raise DatasetError(f"statistics file {path} not found")
        return Normalizer(np.load(self.mean_path), np.load(self.std_path))

    def __repr__(self) -> str:
        return f"DatasetLayout({str(self.root)!r})"


def _load_array(path: Path, *, ndim: int, what: str) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"{what} file {path} not found")
    try:
        arr = np.load(path)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {what} file {path}: {exc}") from exc
    if arr.ndim != ndim:
        raise DatasetError(f"{path}: {what} must have {ndim} dims, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise DatasetError(f"{path}: {what} contain NaN or infinite values")
    return arr.astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------
# Randomness that is right both in the main process and in DataLoader workers
# ---------------------------------------------------------------------------------------------


class _Draws:
    """Integer draws from a numpy Generator if given, else from torch's (per-worker seeded) RNG."""

    def __init__(self, seed: SeedLike) -> None:
        self.rng = seed if isinstance(seed, np.random.Generator) or seed is None else np.random.default_rng(seed)

    def integers(self, high: int) -> int:
        """Uniform integer in [0, high)."""
        if self.rng is None:
            return int(torch.randint(high, (1,)).item())
        return int(self.rng.integers(high))


def worker_init_fn(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: give each worker's dataset copy its own numpy stream.

    Only needed when a dataset was built with an explicit seed/Generator (every worker would
    otherwise replay the same draws); datasets without one use torch's RNG, which DataLoader
    already seeds per worker.
    """
    info = get_worker_info()
    if info is not None and hasattr(info.dataset, "reseed"):
        info.dataset.reseed(info.seed % 2**63)


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------


class VQWindowDataset(Dataset):
    """Fixed-size normalised windows for RVQ-VAE training (§1.2 ``MotionDataset``).

    Every motion with at least ``window_size`` frames contributes one item per start offset
    (``T - window_size + 1`` items; the official loader's off-by-one that drops the last offset is
    not reproduced). Shuffling the DataLoader makes these random windows. Motions are normalised
    once at construction and kept in memory.

    With ``balance_motions`` every motion contributes the same number of items (its offsets repeated
    up to the longest motion's count), so a 2 s kick is seen as often as a 10 s walk: on a small
    dataset of short one-shot moves beside long loops (the demo) the default weighting leaves the
    short moves almost unseen.

    Args:
        layout: dataset layout.
        split: split name (``train``, ``val``...).
        normalizer: maps features to the normalised space the VQ sees.
        window_size: frames per item.
        balance_motions: weight motions equally instead of by their number of offsets.

    Raises:
        DatasetError: missing or malformed files, or no motion long enough.
    """

    def __init__(self, layout: DatasetLayout, split: str, normalizer: Normalizer, *, window_size: int = 64,
                 balance_motions: bool = False) -> None:
        if window_size < 1:
            raise ValueError(f"window_size must be >= 1, got {window_size}")
        self.window_size = window_size
        self.ids: list[str] = []
        self.motions: list[np.ndarray] = []
        skipped = 0
        for motion_id in layout.split_ids(split):
            feats = layout.load_features(motion_id)
            if feats.shape[0] < window_size:
                skipped += 1
                continue
            self.ids.append(motion_id)
            self.motions.append(normalizer.normalize(feats).astype(np.float32))
        if not self.motions:
            raise DatasetError(f"split {layout.split_path(split)} has no motion with >= {window_size} frames")
        self._counts = np.array([m.shape[0] - window_size + 1 for m in self.motions])
        self._per_motion = int(self._counts.max()) if balance_motions else 0
        counts = np.full_like(self._counts, self._per_motion) if balance_motions else self._counts
        self._ends = np.cumsum(counts)
        logger.info(
            "VQWindowDataset[%s]: %d motions (%d too short), %d windows",
            split, len(self.motions), skipped, int(self._ends[-1]),
        )

    def __len__(self) -> int:
        return int(self._ends[-1])

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} windows")
        index %= len(self)
        k = int(np.searchsorted(self._ends, index, side="right"))
        start = (index - (int(self._ends[k - 1]) if k > 0 else 0)) % int(self._counts[k])
        return torch.from_numpy(self.motions[k][start : start + self.window_size].copy())


@dataclass
class _TextMotionItem:
    name: str
    motion: np.ndarray  # (T, D) normalised
    annotations: list[TextAnnotation]


class TextMotionDataset(Dataset):
    """(caption, padded motion, length) items for transformer training (§1.2 ``Text2MotionDataset``).

    Filtering: a motion (or an annotated sub-clip) is kept when
    ``min_len <= T < max_len + unit_length`` (40 <= T < 200 for HumanML3D). Whole-clip annotations
    (tags 0,0) share one item per motion; an annotation with time tags becomes its own item over
    frames ``[int(f_tag*fps), int(to_tag*fps))``. The official code hard-codes fps = 20 there even
    for KIT, so pass ``fps=20`` to reproduce it for KIT as well.

    Each ``__getitem__`` picks a random caption, a crop of ``⌊T/u⌋·u`` frames ("single", p = 2/3) or
    ``(⌊T/u⌋−1)·u`` frames ("double", p = 1/3; only drawn when ``unit_length < 10``) at a random
    start, and zero-pads it in normalised space to ``max_len`` frames. A "double" crop of a short
    clip may fall below ``min_len`` by one unit, as in the official loader.

    Items are dicts: ``caption`` (str), ``motion`` (max_len, D) float32 tensor, ``m_len`` (int),
    ``tokens`` (list[str], for the evaluator), ``name`` (str: the id, or ``<id>#<line>`` for a sub-clip).

    Args:
        layout, split, normalizer: as for ``VQWindowDataset``.
        unit_length: lengths are multiples of this (the VQ downsampling factor, 4).
        min_len, max_len: length limits in frames (KIT: ``min_len=24``).
        fps: frame rate that converts time tags to frames.
        seed: a numpy Generator or int for reproducible draws; None draws from torch's RNG, which a
            DataLoader seeds differently per worker (use ``worker_init_fn`` with an explicit seed).
    """

    def __init__(
        self,
        layout: DatasetLayout,
        split: str,
        normalizer: Normalizer,
        *,
        unit_length: int = 4,
        min_len: int = 40,
        max_len: int = 196,
        fps: float = 20.0,
        seed: SeedLike = None,
    ) -> None:
        if unit_length < 1 or min_len < unit_length or max_len < min_len or max_len % unit_length:
            raise ValueError(
                f"need 1 <= unit_length <= min_len <= max_len with max_len a multiple of unit_length; "
                f"got unit_length={unit_length}, min_len={min_len}, max_len={max_len}"
            )
        self.unit_length, self.min_len, self.max_len, self.fps = unit_length, min_len, max_len, fps
        self._draws = _Draws(seed)
        self.items: list[_TextMotionItem] = []
        upper = max_len + unit_length
        for motion_id in layout.split_ids(split):
            feats = layout.load_features(motion_id)
            anns = layout.read_texts(motion_id)
            norm = normalizer.normalize(feats).astype(np.float32)
            whole: list[TextAnnotation] = []
            for line_no, ann in enumerate(anns):
                if ann.whole_clip:
                    whole.append(ann)
                    continue
                sub = norm[int(ann.f_tag * fps) : int(ann.to_tag * fps)]
                if min_len <= len(sub) < upper:
                    self.items.append(_TextMotionItem(f"{motion_id}#{line_no}", sub, [ann]))
            if whole and min_len <= len(norm) < upper:
                self.items.append(_TextMotionItem(motion_id, norm, whole))
        if not self.items:
            raise DatasetError(f"split {layout.split_path(split)} has no motion with {min_len} <= T < {upper} frames")
        logger.info("TextMotionDataset[%s]: %d items", split, len(self.items))

    def reseed(self, seed: SeedLike) -> None:
        """Replace the random stream (used by ``worker_init_fn``)."""
        self._draws = _Draws(seed if seed is not None else np.random.default_rng())

    def __len__(self) -> int:
        return len(self.items)

    def lengths(self) -> np.ndarray:
        """Frame count of every item before cropping (for length statistics or bucketing)."""
        return np.array([len(it.motion) for it in self.items])

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        ann = item.annotations[self._draws.integers(len(item.annotations))]
        u = self.unit_length
        double = u < 10 and self._draws.integers(3) == 2  # ['single', 'single', 'double']
        n = len(item.motion)
        m_len = min((n // u - (1 if double else 0)) * u, self.max_len)
        start = self._draws.integers(n - m_len + 1)
        motion = np.zeros((self.max_len, item.motion.shape[1]), dtype=np.float32)
        motion[:m_len] = item.motion[start : start + m_len]
        return {
            "caption": ann.caption,
            "motion": torch.from_numpy(motion),
            "m_len": m_len,
            "tokens": list(ann.tokens),
            "name": item.name,
        }


def collate_text_motion(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack ``TextMotionDataset`` items: captions/tokens/names as lists, ``motion`` (B, T, D),
    ``m_lens`` (B,) long."""
    return {
        "captions": [b["caption"] for b in batch],
        "motion": torch.stack([b["motion"] for b in batch]),
        "m_lens": torch.tensor([b["m_len"] for b in batch], dtype=torch.long),
        "tokens": [b["tokens"] for b in batch],
        "names": [b["name"] for b in batch],
    }
