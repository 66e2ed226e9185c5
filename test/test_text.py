"""Text encoders: bag-of-words behaviour and round trips; CLIP offline (random weights) and missing-weight errors."""
from __future__ import annotations

import math

import pytest
import torch

from momask_model.config import TextEncoderConfig, tiny_config
from momask_model.text.encoders import (
    BagOfWordsTextEncoder,
    ClipTextEncoder,
    TextEncoderError,
    TextEncoderWeightsMissing,
    UnknownWordsError,
    build_text_encoder,
    build_vocabulary,
    word_vector,
)

VOCAB = ["person", "walks", "forward", "jumps", "left", "right", "turns", "the"]



@pytest.fixture(scope="module")
def clip_random():
    return ClipTextEncoder(weights=None, allow_random=True)


# ------------------------------------------------------------------------------------------ bag of words
def test_bow_encodes_mean_of_known_word_vectors_scaled():
    enc = BagOfWordsTextEncoder(VOCAB, dim=16, seed=3)
    out = enc.encode(["A person walks FORWARD!", "person"])
    assert out.shape == (2, 16) and out.dtype == torch.float32
    words = ["person", "walks", "forward"]
    want = torch.stack([word_vector(w, 16, 3) for w in words]).mean(0) * math.sqrt(16)
    torch.testing.assert_close(out[0], want)
    assert out[1].norm().item() == pytest.approx(4.0, rel=1e-5)  # one unit vector times sqrt(16)
    # a bag: word order does not matter, unknown words are ignored
    torch.testing.assert_close(enc.encode(["forward walks person quickly"])[0], out[0])


def test_bow_vectors_do_not_depend_on_vocabulary_order_or_size():
    a = BagOfWordsTextEncoder(VOCAB, dim=8)
    b = BagOfWordsTextEncoder(list(reversed(VOCAB)) + ["kicks"], dim=8)
    assert torch.equal(a.encode(["person jumps left"]), b.encode(["person jumps left"]))
    other_seed = BagOfWordsTextEncoder(VOCAB, dim=8, seed=1)
    assert not torch.equal(a.encode(["person jumps left"]), other_seed.encode(["person jumps left"]))


def test_bow_reports_unknown_words_except_stop_words():
    enc = BagOfWordsTextEncoder(VOCAB, dim=8)
    assert enc.unknown_words("The person cartwheels to the left and moonwalks") == ["cartwheels", "moonwalks"]
    assert enc.unknown_words("a person walks") == []
    with pytest.raises(UnknownWordsError) as err:
        enc.encode(["person walks", "someone cartwheels"])
    assert err.value.words == ["someone", "cartwheels"] and "cartwheels" in str(err.value)


@pytest.mark.parametrize("bad, exc", [([""], ValueError), (["   "], ValueError), ([], ValueError),
                                      ("person walks", TypeError), ([3], TypeError), ([None], TypeError)])
def test_encoders_validate_input(bad, exc):
    with pytest.raises(exc):
        BagOfWordsTextEncoder(VOCAB, dim=8).encode(bad)


def test_bow_is_frozen_and_rebuilds_from_describe():
    cfg = TextEncoderConfig(kind="bow", dim=12, seed=5, vocab=tuple(VOCAB))
    enc = build_text_encoder(cfg)
    enc.train()
    assert not enc.training and list(enc.parameters()) == [] and enc.state_dict() == {}
    state = enc.describe()
    assert state["kind"] == "bow" and state["vocab"] == VOCAB
    # the saved vocabulary wins over the config's
    rebuilt = build_text_encoder(cfg.replace(vocab=()), state)
    assert torch.equal(rebuilt.encode(["person turns right"]), enc.encode(["person turns right"]))
    with pytest.raises(TextEncoderError, match="dim"):
        build_text_encoder(cfg.replace(dim=13), state)
    with pytest.raises(TextEncoderError, match="seed"):
        build_text_encoder(cfg.replace(seed=6), state)
    with pytest.raises(TextEncoderError, match="kind"):
        build_text_encoder(cfg.replace(kind="glove"))
    with pytest.raises(TextEncoderError, match="vocabulary"):
        build_text_encoder(cfg.replace(vocab=()))
    with pytest.raises(ValueError, match="words of letters"):
        BagOfWordsTextEncoder(["walk", "jump-up"])


def test_tiny_config_text_encoder_builds():
    cfg = tiny_config().text_encoder
    enc = build_text_encoder(cfg)
    assert enc.encode(["a person walks forward"]).shape == (1, cfg.dim)


def test_build_vocabulary_counts_words_without_stop_words():
    texts = ["A person walks forward.", "The person jumps", "person walks left"]
    assert build_vocabulary(texts) == ["person", "walks", "forward", "jumps", "left"]
    assert build_vocabulary(texts, min_count=2) == ["person", "walks"]
    assert build_vocabulary(texts, max_size=1) == ["person"]


# ------------------------------------------------------------------------------------------ CLIP
def test_clip_random_text_tower_works_offline(clip_random):
    enc = clip_random
    assert enc.dim == 512 and enc.is_random and enc.clip.visual is None
    assert sum(p.numel() for p in enc.parameters()) < 70_000_000  # text tower only (~63 M)
    assert not any(p.requires_grad for p in enc.parameters())
    long_text = " ".join(["a person walks in a circle"] * 40)  # > 77 tokens: truncated, not an error
    out = enc.encode(["a person walks forward", long_text])
    assert out.shape == (2, 512) and out.dtype == torch.float32
    assert not torch.allclose(out.norm(dim=-1), torch.ones(2), atol=1e-3)  # pooled feature, not L2-normalised
    assert enc.unknown_words("a person moonwalks") == []
    assert enc.describe()["kind"] == "clip"
    with pytest.raises(ValueError):
        enc.encode([" "])


def test_clip_random_init_is_seeded_so_rebuilds_agree(clip_random):
    cfg = TextEncoderConfig(kind="clip", weights=None, allow_random=True)
    rebuilt = build_text_encoder(cfg, clip_random.describe())
    texts = ["a person jumps", "someone waves with the left hand"]
    assert torch.equal(rebuilt.encode(texts), clip_random.encode(texts))


def test_clip_missing_weights_raise_named_error(tmp_path):
    missing = tmp_path / "ViT-B-32.pt"
    with pytest.raises(TextEncoderWeightsMissing, match=str(missing)):
        ClipTextEncoder(weights=str(missing))
    with pytest.raises(TextEncoderWeightsMissing, match="weights=None"):
        ClipTextEncoder(weights=None)
    with pytest.raises(TextEncoderWeightsMissing, match="cache") as err:
        ClipTextEncoder(weights="openai", download=False, cache_dir=str(tmp_path))
    assert str(tmp_path) in str(err.value) and "weights=/path/to/file" in str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    with pytest.raises(TextEncoderWeightsMissing):
        build_text_encoder(TextEncoderConfig(kind="clip", weights=str(missing)))


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")
def test_clip_loads_openai_torchscript_archive(tmp_path):
    """OpenAI's ViT-B-32.pt is TorchScript; a tiny archive of the same layout must load and encode identically."""
    import open_clip
    from open_clip.model import CLIP

    torch.manual_seed(0)
    src = CLIP(
        embed_dim=32, quick_gelu=True,
        vision_cfg=dict(layers=1, width=64, head_width=64, patch_size=16, image_size=32),
        text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=1, layers=1),
    ).eval()
    for p in src.parameters():  # OpenAI stores fp16 weights
        p.data = p.data.half().float()
    mask = src.attn_mask
    del src.attn_mask  # OpenAI's archive has no attn_mask entry; keep it as a traced constant
    src.attn_mask = mask
    tokens = open_clip.get_tokenizer("ViT-B-32")(["a person walks"])
    path = tmp_path / "ViT-B-32.pt"
    torch.jit.save(torch.jit.trace_module(src, {"encode_text": (tokens,)}), str(path))
    enc = ClipTextEncoder(weights=str(path))
    assert enc.dim == 32 and not enc.is_random and enc.clip.visual is None
    with torch.no_grad():
        torch.testing.assert_close(enc.encode(["a person walks"]), src.encode_text(tokens))
