"""The packaged demo model: loads offline, names unknown words, and makes the skill an unseen caption asks for."""
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import momask_model
from momask_model.bundle import load_bundle
from momask_model.cli import default_bundle_path
from momask_model.data.mocap.demo_dataset import CAPTIONS, HELDOUT_CAPTIONS
from momask_model.evaluate.skills import SkillRecognizer

ASSETS = Path(momask_model.__file__).parent / "assets"
SEEDS = range(5)


@pytest.fixture(scope="module")
def demo():
    return load_bundle(default_bundle_path())


def test_demo_bundle_is_small_and_offline(demo):
    assert default_bundle_path().stat().st_size <= 20 * 1024 * 1024
    assert demo.config.text_encoder.kind == "bow"
    assert demo.length_estimator is not None


def test_unknown_words_are_named(demo):
    assert demo.unknown_words("a person juggles flaming torches") == ["juggles", "flaming", "torches"]
    assert demo.unknown_words(CAPTIONS["walk"][0]) == []


def test_heldout_captions_are_recognised_as_their_skill(demo):
    recognizer = SkillRecognizer.load(ASSETS / "demo_recognizer.pt")
    skills = sorted(HELDOUT_CAPTIONS)
    texts = [HELDOUT_CAPTIONS[s][0] for s in skills]  # sentences never used in training
    for text in texts:
        assert text not in CAPTIONS[skills[texts.index(text)]]
    hits: Counter[str] = Counter()
    for seed in SEEDS:
        result = demo.generate(texts, seed=seed)  # lengths from the length estimator
        predicted = recognizer.predict([result.motion(i)[0] for i in range(len(texts))])
        hits.update(s for s, p in zip(skills, predicted) if s == p)
    rates = {s: hits[s] / len(SEEDS) for s in skills}
    recognised = [s for s, r in rates.items() if r >= 0.8]
    assert len(recognised) >= 10, f"skills recognised in >= 80% of seeds: {recognised}; rates {rates}"
