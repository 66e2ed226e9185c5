"""The scope gate and the one text-acceptance rule shared by momask-generate and the node."""
from __future__ import annotations

import numpy as np
import pytest

from momask_model.generation.bundle import build_random_momask, load_bundle, save_bundle
from momask_model.cli.main import generate_main
from momask_model.config import tiny_config
from momask_model.text.scope import ScopeGate, check_text

CAPTIONS = {
    "walk": ["a person walks forward", "a man walks forward slowly"],
    "jump": ["a person jumps up", "a woman jumps forward"],
    "kick": ["a man kicks right"],
}


def unit(*values):
    v = np.asarray(values, np.float32)
    return v / np.linalg.norm(v)


def test_verdict_names_the_closest_skills_with_their_best_caption_similarity():
    emb = np.stack([unit(1, 0, 0), unit(1, 1, 0), unit(0, 1, 0), unit(0, 0, 1)])
    gate = ScopeGate(["w1", "w2", "j1", "k1"], ["walk", "walk", "jump", "kick"], emb * 3.0, threshold=0.8)
    v = gate.verdict("q", unit(1, 0.2, 0) * 5.0)  # scale never matters: cosine
    assert v.in_scope and v.skill == "walk"
    assert v.similarity == pytest.approx(float(unit(1, 0.2, 0) @ unit(1, 0, 0)), abs=1e-6)
    assert [s for s, _ in v.closest] == ["walk", "jump", "kick"]
    assert v.closest[1][1] == pytest.approx(float(unit(1, 0.2, 0) @ unit(0, 1, 0)), abs=1e-6)
    far = gate.verdict("far", unit(-1, -1, 0.1))
    assert not far.in_scope and far.similarity < 0.8
    fields = far.fields()
    assert fields["threshold"] == 0.8 and len(fields["closest_skills"]) == 3
    assert "closest skills: kick" in far.message()
    with pytest.raises(ValueError, match="embedding has 2"):
        gate.verdict("bad", np.ones(2))


@pytest.mark.parametrize("threshold", [1.5, -2.0])
def test_gate_rejects_a_threshold_that_is_not_a_cosine(threshold):
    with pytest.raises(ValueError, match="cosine"):
        ScopeGate(["a"], ["s"], np.ones((1, 3)), threshold)


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """A tiny bag-of-words MoMask with a gate over its own encoder, saved and reloaded as a bundle."""
    model = build_random_momask(tiny_config(), seed=2)
    model.scope_gate = ScopeGate.build(model.text_encoder, CAPTIONS, threshold=0.75)
    path = save_bundle(model, tmp_path_factory.mktemp("gate") / "gated.pt")
    return path, load_bundle(path)


def test_gate_travels_with_the_bundle(gated):
    _, model = gated
    gate = model.scope_gate
    assert gate is not None and gate.threshold == 0.75 and gate.skill_names == ["jump", "kick", "walk"]
    assert gate.captions == [c for s in sorted(CAPTIONS) for c in CAPTIONS[s]]
    fresh = ScopeGate.build(model.text_encoder, CAPTIONS, 0.75)
    np.testing.assert_allclose(gate.embeddings.numpy(), fresh.embeddings.numpy(), atol=1e-6)
    assert build_random_momask(tiny_config()).scope_gate is None  # models without a gate: off


def test_check_text_uses_the_gate_before_the_vocabulary(gated):
    _, model = gated
    assert check_text(model, "a person walks forward") is None
    refusal = check_text(model, "a man spins around")  # known words, but no walk/jump/kick caption near
    assert refusal is not None and refusal.reason == "out_of_scope"
    assert refusal.fields["similarity"] < 0.75 and {c["skill"] for c in refusal.fields["closest_skills"]} == {
        "walk", "jump", "kick"}


def test_check_text_without_a_gate_keeps_the_unknown_word_rule():
    model = build_random_momask(tiny_config(), seed=3)
    model.bundle_meta = {"skills": ["walk"]}
    assert check_text(model, "a person walks forward") is None
    refusal = check_text(model, "a person juggles torches")
    assert refusal.reason == "unknown_words" and refusal.fields["unknown_words"] == ["juggles", "torches"]
    assert refusal.fields["known_skills"] == ["walk"] and "walks" in refusal.fields["known_words"]

    class OpenVocabulary:  # CLIP-like: no gate, no vocabulary
        text_encoder = object()

    assert check_text(OpenVocabulary(), "anything at all") is None


def test_cli_refuses_with_exit_2_and_runs_anyway_with_the_flag(gated, tmp_path, capsys):
    path, _ = gated
    out = tmp_path / "m.npz"
    base = ["--bundle", str(path), "--device", "cpu", "--length", "16", "--seed", "0", "--out", str(out)]
    assert generate_main(["--text", "a man spins around", *base]) == 2
    err = capsys.readouterr().err
    assert "out_of_scope" in err and "closest skills" in err and "--allow-out-of-scope" in err
    assert not out.exists()
    assert generate_main(["--text", "a man spins around", "--allow-out-of-scope", *base]) == 0
    assert out.is_file()
    assert generate_main(["--text", "a person walks forward", *base]) == 0


def test_cli_refuses_unknown_words_of_a_bag_of_words_bundle_like_the_node(tmp_path, capsys):
    path = save_bundle(build_random_momask(tiny_config(), seed=4), tmp_path / "bow.pt")
    base = ["--bundle", str(path), "--device", "cpu", "--length", "16", "--out", str(tmp_path / "o.npz")]
    assert generate_main(["--text", "a person juggles", *base]) == 2
    assert "unknown_words" in capsys.readouterr().err
    assert generate_main(["--text", "a person juggles", "--allow-out-of-scope", *base]) == 0
