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
* **Captions.** Our own phrasings, at least 5 per skill (``CAPTIONS``): descriptions ("a person
  walks forward"), a robot as the subject and imperatives, as users command a robot (issue 18);
  ``HELDOUT_CAPTIONS`` has 2+
  more per skill that are never written to the dataset, for testing recognition from unseen
  sentences. Side words (right leg, to the left, counterclockwise) were checked on the clips.
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
from momask_model.motion.features import normalize_joint_positions

logger = logging.getLogger(__name__)

__all__ = ["SkillSpec", "SKILLS", "CAPTIONS", "HELDOUT_CAPTIONS", "DemoDatasetSummary", "build_demo_dataset", "make_skill_variants"]


@dataclass(frozen=True)
class SkillSpec:
    """How one clip is turned into dataset items.

    Attributes:
        continuous: looped and cut to random lengths (else one-shot, ``max_cycles`` repetitions).
        max_cycles: most repetitions for a one-shot skill.
        turn_deg: largest random extra heading change per cycle [deg] (looped clips).
    """

    continuous: bool
    max_cycles: int = 1
    turn_deg: float = 0.0


SKILLS: dict[str, SkillSpec] = {
    "walk": SkillSpec(True, turn_deg=12.0),
    "jog": SkillSpec(True, turn_deg=12.0),
    "run": SkillSpec(True, turn_deg=12.0),
    "stealthy_walk": SkillSpec(True, turn_deg=12.0),
    "zombie_walk": SkillSpec(True, turn_deg=12.0),
    "crawl": SkillSpec(True, turn_deg=8.0),
    "dance_a": SkillSpec(True),
    "dance_b": SkillSpec(True),
    "dance_spin": SkillSpec(True),
    "spin": SkillSpec(False, max_cycles=2),
    "cartwheel": SkillSpec(False, max_cycles=2),
    "roll": SkillSpec(False, max_cycles=2),
    "jump": SkillSpec(False, max_cycles=2),
    "backflip": SkillSpec(False),
    "sideflip": SkillSpec(False),
    "spinkick": SkillSpec(False),
    "kick": SkillSpec(False),
    "punch": SkillSpec(False),
    "getup_facedown": SkillSpec(False),
    "getup_faceup": SkillSpec(False),
}

CAPTIONS: dict[str, list[str]] = {
    "walk": [
        "a person walks forward",
        "a man walks forward at a normal pace",
        "someone is walking forward",
        "a person takes a casual walk",
        "the person walks ahead steadily",
        "a woman strolls forward",
        "walk ahead at a steady pace",
        "the robot walks straight ahead",
        "a humanoid paces forward calmly",
        "someone goes for a walk",
    ],
    "jog": [
        "a person jogs forward",
        "someone jogs at a relaxed pace",
        "a man is jogging ahead",
        "the person jogs lightly forward",
        "a person does a slow jog",
        "jog forward",
        "the robot jogs ahead",
        "someone trots along at an easy pace",
        "a runner warms up with a gentle jog",
    ],
    "run": [
        "a person runs forward quickly",
        "someone is running fast",
        "a man sprints ahead",
        "the person runs straight ahead",
        "a woman runs forward at full speed",
        "run forward as fast as you can",
        "the robot runs quickly ahead",
        "someone dashes forward at top speed",
        "an athlete races ahead",
    ],
    "stealthy_walk": [
        "a person sneaks forward quietly",
        "someone tiptoes forward stealthily",
        "a man creeps forward crouched low",
        "the person walks carefully like a thief",
        "a person sneaks ahead on bent knees",
        "sneak forward",
        "the robot sneaks ahead silently",
        "someone prowls forward in a low crouch",
        "a spy creeps along on tiptoes",
    ],
    "zombie_walk": [
        "a person walks like a zombie",
        "someone shuffles forward like a zombie with arms stretched out",
        "a man staggers forward like the undead",
        "the person lurches forward stiffly like a zombie",
        "a zombie walks slowly forward",
        "walk like a zombie",
        "the robot shambles forward like a zombie",
        "someone drags the feet forward like a corpse",
        "a zombie limps ahead with arms held out",
    ],
    "crawl": [
        "a person crawls forward on hands and knees",
        "someone is crawling on the floor",
        "a man crawls ahead on all fours",
        "the person crawls along the ground",
        "a baby like crawl forward on hands and knees",
        "crawl forward",
        "the robot crawls on hands and knees",
        "someone creeps forward on all fours like a baby",
        "a person moves forward on the hands and knees",
    ],
    "dance_a": [
        "a person dances happily",
        "someone is dancing and turning around",
        "a man dances with lively steps",
        "the person does a cheerful dance",
        "a woman dances and sways her arms",
        "dance",
        "the robot dances joyfully",
        "someone dances around with energy",
        "a person celebrates with a happy dance",
    ],
    "dance_b": [
        "a person dances in place",
        "someone dances rhythmically on the spot",
        "a man grooves to music while standing in place",
        "the person sways and dances to a beat",
        "a woman dances moving her arms and hips",
        "dance in place",
        "the robot dances on the spot",
        "someone bops to the music without moving away",
        "a person moves to the rhythm standing still",
    ],
    "dance_spin": [
        "a person spins around while dancing",
        "someone does a dance turn counterclockwise",
        "a dancer twirls around in place",
        "the person pirouettes counterclockwise",
        "a woman spins on the spot like a ballerina",
        "spin while dancing",
        "the robot twirls around in a dance",
        "someone turns in a graceful dance spin",
        "a ballerina turns on the spot",
    ],
    "spin": [
        "a person spins around twice",
        "someone turns around counterclockwise two times",
        "a man spins quickly with his arms out",
        "the person twirls around and around",
        "a person rotates in a full circle twice",
        "spin around",
        "the robot turns around in circles",
        "someone rotates on the spot twice",
        "a person whirls around two full turns",
    ],
    "cartwheel": [
        "a person does a cartwheel to the left",
        "someone performs a cartwheel",
        "a gymnast cartwheels to the left",
        "the person turns a cartwheel on the hands",
        "a woman does a cartwheel across the floor",
        "perform a cartwheel",
        "the robot does a cartwheel",
        "someone wheels sideways over the hands",
        "an acrobat performs a cartwheel to the left",
    ],
    "roll": [
        "a person does a forward roll",
        "someone rolls forward on the ground and stands up",
        "a man tumbles forward in a somersault",
        "the person does a forward somersault on the floor",
        "a person dives into a roll and gets back up",
        "do a forward roll",
        "the robot rolls forward on the floor",
        "someone tucks and rolls forward",
        "an acrobat does a somersault on the ground",
    ],
    "jump": [
        "a person jumps forward with both feet",
        "someone does a long jump forward",
        "a man leaps forward",
        "the person hops forward on two feet",
        "a person swings the arms and jumps ahead",
        "jump forward",
        "the robot jumps ahead",
        "someone makes a big jump forward",
        "an athlete does a standing broad jump",
    ],
    "backflip": [
        "a person does a backflip",
        "someone performs a back flip",
        "a gymnast flips backwards in the air",
        "the person jumps and flips over backwards",
        "a man does a standing backflip",
        "perform a back flip",
        "the robot does a backflip",
        "someone does a back somersault in the air",
        "an acrobat flips backwards and lands",
    ],
    "sideflip": [
        "a person does a side flip to the left",
        "someone performs a sideways flip",
        "a gymnast flips sideways to the left",
        "the person jumps and flips over to the side",
        "a man does an aerial side flip",
        "do a side flip",
        "the robot flips to the side",
        "someone does an aerial to the left",
        "an acrobat does a sideways somersault",
    ],
    "spinkick": [
        "a person does a spinning kick",
        "someone spins around and kicks high",
        "a martial artist performs a spin kick",
        "the person turns and kicks with the right leg in the air",
        "a fighter does a jumping roundhouse kick",
        "do a spin kick",
        "the robot does a spinning kick",
        "someone whirls around and kicks in the air",
        "a karate fighter does a turning kick",
    ],
    "kick": [
        "a person kicks with the right leg",
        "someone kicks forward with the right foot",
        "a man does a high kick with his right leg",
        "the person throws a front kick with the right leg",
        "a fighter kicks high with the right foot",
        "kick with the right leg",
        "the robot kicks with its right foot",
        "someone kicks the air in front with the right leg",
        "a soccer player kicks with the right foot",
    ],
    "punch": [
        "a person punches with the right hand",
        "someone throws a right punch",
        "a boxer punches forward with the right fist",
        "the person steps in and punches with the right arm",
        "a man strikes forward with his right fist",
        "punch with the right hand",
        "the robot punches forward",
        "someone jabs forward with the right fist",
        "a boxer throws a straight right",
    ],
    "getup_facedown": [
        "a person lying face down gets up",
        "someone pushes up from lying on the stomach and stands",
        "a man gets up off the floor from lying face down",
        "the person rises from the ground after lying on the belly",
        "a person stands up from lying prone",
        "get up from lying face down",
        "the robot gets up from lying on its stomach",
        "someone lying prone pushes up to standing",
        "a person on the belly gets back on the feet",
    ],
    "getup_faceup": [
        "a person lying on the back gets up",
        "someone stands up from lying face up",
        "a man rises from lying on his back to standing",
        "the person gets up off the floor after lying on the back",
        "a person sits up and stands from lying supine",
        "get up from lying on the back",
        "the robot gets up from lying on its back",
        "someone lying supine gets back on the feet",
        "a person on the back rises to stand",
    ],
}

#: Captions never written to the dataset (2+ per skill), for recognition tests on unseen sentences.
HELDOUT_CAPTIONS: dict[str, list[str]] = {
    "walk": ["a man is walking forward", "the woman walks ahead at a normal pace"],
    "jog": ["someone is jogging forward lightly", "a woman jogs ahead at a relaxed pace"],
    "run": ["a man is running forward fast", "someone runs ahead quickly"],
    "stealthy_walk": ["a woman sneaks forward crouched low", "someone creeps ahead quietly"],
    "zombie_walk": ["a woman walks forward like a zombie", "someone lurches ahead like the undead"],
    "crawl": ["a woman crawls forward on all fours", "someone crawls ahead on hands and knees"],
    "dance_a": ["a woman does a lively dance", "someone dances happily and turns around"],
    "dance_b": ["a woman dances on the spot", "someone sways to a beat in place"],
    "dance_spin": ["a dancer spins counterclockwise on the spot", "someone twirls around in place while dancing"],
    "spin": ["a woman spins around two times", "someone twirls around twice with arms out"],
    "cartwheel": ["a woman performs a cartwheel to the left", "someone does a cartwheel across the floor"],
    "roll": ["a woman does a forward somersault", "someone rolls forward and gets back up"],
    "jump": ["a woman jumps forward on both feet", "someone leaps ahead with both feet"],
    "backflip": ["a woman performs a backflip", "someone flips over backwards"],
    "sideflip": ["a woman flips sideways to the left", "someone does a side flip"],
    "spinkick": ["a woman performs a spinning kick", "someone spins and kicks high in the air"],
    "kick": ["a woman kicks high with the right leg", "someone throws a kick with the right foot"],
    "punch": ["a woman punches with the right fist", "someone throws a punch with the right hand"],
    "getup_facedown": ["a woman gets up from lying face down", "someone lying on the belly stands up"],
    "getup_faceup": ["a woman gets up from lying on her back", "someone lying face up stands up"],
}

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
        out_dir: output dataset root (HumanML3D layout, written by ``humanml3d.write_dataset``).
        seed: seed of every random choice (the output is a function of the inputs and the seed).
        variants_per_skill: items per skill before mirroring.
        fps: frame rate of the dataset.
        split_fractions: train/val/test shares of each skill's variants.

    Returns:
        A summary (also logged).
    """
    from momask_model.data.humanml3d import write_dataset  # deferred: pulls in torch datasets

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
