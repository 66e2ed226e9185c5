"""The demo model's dataset: the 20 DeepMimic clips turned into a HumanML3D-layout dataset.

Twenty clips (about 47 s) are far too little for MoMask, so each clip becomes many items:

* **Length.** Continuous skills (walks, runs, crawl, dances) are looped (carrying the root's
  displacement over, see ``kinematics.loop_cycles``) and cut to a random length of 2–9.8 s
  (40–196 frames, the transformer dataset's window) from a random phase of the cycle. One-shot
  skills (flips, kicks, getting up) keep one cycle (two for jump, roll and cartwheel, whose
  repetition reads as the same skill). Those shorter than 2 s after the speed change are padded
  by holding the first and last pose (a person standing still before and after the move), so no
  item is below 40 frames.
* **Speed.** Every item is played at a random speed in [0.8, 1.25].
* **Heading.** A constant heading changes nothing (``joints_to_features`` turns frame 0 to +Z),
  so what varies is the heading *change*: looped locomotion turns by a random ±12° per cycle
  (spread over the seam blend), which makes gently curving walks and runs.
* **Mirror.** ``write_dataset(mirror=True)`` adds the left/right mirror ``M<id>`` of every item
  with left/right (and clockwise) swapped in its captions.
* **Captions.** Our own phrasings, at least 5 per skill (`demo_skills.CAPTIONS`): descriptions ("a
  person walks forward"), a robot as the subject and imperatives, as users command a robot (issue 18).
* **Splits.** Per skill, the variants are split 80/10/10 into train/val/test (the mirror of an
  item stays in its split).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from momask_model.data.mocap.deepmimic import (
    DeepMimicClip,
    deepmimic_to_joints,
    load_deepmimic_character,
    load_deepmimic_clip,
)
from momask_model.data.mocap.demo_skills import CAPTIONS, SKILLS, SkillSpec
from momask_model.motion.features import normalize_joint_positions

logger = logging.getLogger(__name__)

__all__ = ["DemoDatasetSummary", "build_demo_dataset", "make_skill_variants"]


_MIN_FRAMES = 40  # transformer dataset keeps 40 <= T < 200 feature frames
_MAX_FRAMES = 196
_SPEED = (0.8, 1.25)


@dataclass(frozen=True)
class DemoDatasetSummary:
    """What ``build_demo_dataset`` wrote."""

    root: Path
    clips: int
    items: int  # including mirrored copies
    frames: int  # feature frames, including mirrored copies
    fps: float
    split_sizes: dict[str, int]
    padded_items: int

    @property
    def minutes(self) -> float:
        return self.frames / self.fps / 60.0

    def __str__(self) -> str:
        splits = ", ".join(f"{k} {v}" for k, v in self.split_sizes.items())
        return (
            f"{self.clips} clips -> {self.items} items (mirrors included), {self.frames} frames = "
            f"{self.minutes:.1f} min at {self.fps:g} fps; {self.padded_items} padded one-shot items; "
            f"splits: {splits}; written to {self.root}"
        )


def _hold_pad(joints: np.ndarray, rng: np.random.Generator, min_positions: int) -> tuple[np.ndarray, bool]:
    """Hold the first/last pose so a one-shot move has at least ``min_positions`` frames."""
    missing = min_positions - len(joints)
    if missing <= 0:
        return joints, False
    extra = missing + int(rng.integers(0, 8))
    before = int(rng.integers(0, extra + 1))
    after = extra - before
    padded = np.concatenate(
        (np.repeat(joints[:1], before, axis=0), joints, np.repeat(joints[-1:], after, axis=0)), axis=0
    )
    return padded, True


def make_skill_variants(
    clip: DeepMimicClip,
    spec: SkillSpec,
    count: int,
    rng: np.random.Generator,
    *,
    fps: float = 20.0,
) -> tuple[list[np.ndarray], int]:
    """``count`` varied (N, 22, 3) joint sequences of one clip (length, speed, heading change).

    Returns:
        The sequences (floor/origin/facing normalised, N - 1 in [40, 196]) and how many were padded.
    """
    out, padded = [], 0
    one_cycle_s = clip.poses.duration_s
    for _ in range(count):
        speed = float(rng.uniform(*_SPEED))
        if spec.continuous and clip.loop:
            cycle_frames = one_cycle_s * fps / speed
            length = int(rng.integers(_MIN_FRAMES, _MAX_FRAMES + 1)) + 1  # positions = features + 1
            cycles = int(math.ceil((length + cycle_frames) / cycle_frames)) + 1
            turn = float(rng.uniform(-spec.turn_deg, spec.turn_deg))
            joints = _loop(clip, cycles, speed, turn, fps)
            start = int(rng.integers(0, max(1, min(int(cycle_frames), len(joints) - length) + 1)))
            joints = joints[start : start + length]
        else:
            cycles = int(rng.integers(1, spec.max_cycles + 1)) if clip.loop else 1
            joints = _loop(clip, cycles, speed, 0.0, fps)
            joints = joints[: _MAX_FRAMES + 1]
            joints, was_padded = _hold_pad(joints, rng, _MIN_FRAMES + 1)
            padded += was_padded
        out.append(normalize_joint_positions(joints))
    return out, padded


def _loop(clip: DeepMimicClip, cycles: int, speed: float, turn_deg: float, fps: float) -> np.ndarray:
    return deepmimic_to_joints(clip, cycles=cycles, speed=speed, fps=fps, extra_turn_deg=turn_deg, normalize=False)


def build_demo_dataset(
    mocap_root: str | Path,
    out_dir: str | Path,
    *,
    seed: int = 0,
    variants_per_skill: int = 20,
    fps: float = 20.0,
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> DemoDatasetSummary:
    """Build the demo dataset from a DeepMimic mocap folder (``characters/``, ``motions/``).

    Args:
        mocap_root: folder with ``characters/humanoid3d.txt`` and ``motions/humanoid3d_<skill>.txt``.
        out_dir: output dataset root (HumanML3D layout, written by ``writer.write_dataset``).
        seed: seed of every random choice (the output is a function of the inputs and the seed).
        variants_per_skill: items per skill before mirroring.
        fps: frame rate of the dataset.
        split_fractions: train/val/test shares of each skill's variants.

    Returns:
        A summary (also logged).
    """
    from momask_model.data.writer import write_dataset  # deferred: pulls in torch datasets

    mocap_root = Path(mocap_root)
    character = load_deepmimic_character(mocap_root / "characters" / "humanoid3d.txt")
    rng = np.random.default_rng(seed)
    motions: dict[str, np.ndarray] = {}
    captions: dict[str, list[str]] = {}
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    padded_total = 0
    for skill, spec in SKILLS.items():
        clip = load_deepmimic_clip(mocap_root / "motions" / f"humanoid3d_{skill}.txt", character)
        variants, padded = make_skill_variants(clip, spec, variants_per_skill, rng, fps=fps)
        padded_total += padded
        n_val = max(1, int(round(split_fractions[1] * variants_per_skill)))
        n_test = max(1, int(round(split_fractions[2] * variants_per_skill)))
        order = rng.permutation(variants_per_skill)
        for rank, k in enumerate(order):
            item_id = f"{skill}_{k:03d}"
            motions[item_id] = variants[k].astype(np.float32)
            captions[item_id] = list(CAPTIONS[skill])
            split = "val" if rank < n_val else ("test" if rank < n_val + n_test else "train")
            splits[split].append(item_id)
    for ids in splits.values():
        ids.sort()
    write_dataset(out_dir, motions, captions, splits, mirror=True)
    frames = sum(len(m) - 1 for m in motions.values()) * 2
    summary = DemoDatasetSummary(
        root=Path(out_dir),
        clips=len(SKILLS),
        items=2 * len(motions),
        frames=frames,
        fps=fps,
        split_sizes={k: 2 * len(v) for k, v in splits.items()},
        padded_items=2 * padded_total,
    )
    logger.info("%s", summary)
    return summary
