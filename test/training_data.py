"""A tiny synthetic HumanML3D-layout dataset for the training and evaluation tests.

Four motion classes that differ in what the captions say (walk slowly, run quickly, turn left,
turn right), written through ``write_dataset`` so every stage reads it exactly like HumanML3D.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from momask_model.data import synthetic_walk, write_dataset

CLASSES = {
    "walk": (dict(speed=0.8, step_hz=0.8, turn_rate=0.0, arm_swing=0.3), "a person walks forward slowly"),
    "run": (dict(speed=2.6, step_hz=1.7, turn_rate=0.0, arm_swing=0.9), "a man runs forward quickly"),
    "left": (dict(speed=0.9, step_hz=0.9, turn_rate=1.2, arm_swing=0.4), "a person turns left while walking"),
    "right": (dict(speed=0.9, step_hz=0.9, turn_rate=-1.2, arm_swing=0.4), "a woman turns right while walking"),
}


def _tagger(caption: str) -> list[str]:
    tags = {"person": "NOUN", "man": "NOUN", "woman": "NOUN", "walks": "VERB", "runs": "VERB", "turns": "VERB",
            "a": "DET", "forward": "ADV", "slowly": "ADV", "quickly": "ADV", "left": "ADV", "right": "ADV",
            "while": "SCONJ", "walking": "VERB"}
    return [f"{w}/{tags.get(w, 'OTHER')}" for w in caption.split()]


def write_tiny_dataset(root: Path, *, per_class: int = 6, seed: int = 0) -> Path:
    """``per_class`` clips per class (70-110 frames), split 4:1:1 per class into train/val/test."""
    rng = np.random.default_rng(seed)
    motions, captions = {}, {}
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for name, (kw, caption) in CLASSES.items():
        for i in range(per_class):
            mid = f"{name}{i:02d}"
            n = int(rng.integers(70, 111))
            motions[mid] = synthetic_walk(n, phase=float(rng.uniform(0, 2 * np.pi)),
                                          heading=float(rng.uniform(-np.pi, np.pi)), **kw)
            captions[mid] = [caption]
            split = "val" if i == per_class - 2 else "test" if i == per_class - 1 else "train"
            splits[split].append(mid)
    write_dataset(root, motions, captions, splits, tokenizer=_tagger)
    return root


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """The tiny dataset, written once per test session (import this fixture into a test module)."""
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny_motion_data"))
