"""Frozen text encoders that turn sentences into the condition vector of the transformers.

MoMask conditions on the pooled (EOT-token) CLIP ViT-B/32 text feature, not L2-normalised
(design/momask.md §3.2). ``ClipTextEncoder`` reproduces that with open_clip's text tower.
``momask_model.text.sentence.SentenceTextEncoder`` runs a pretrained sentence-transformers model (the demo
model's: all-MiniLM-L6-v2, from a hash-pinned wheel). ``BagOfWordsTextEncoder`` is a small offline stand-in for demo models trained here: fixed
per-word vectors averaged over the known words, so it needs no download and reports words it
does not know instead of silently guessing.

An encoder is rebuilt from ``TextEncoderConfig`` plus ``describe()`` (see ``build_text_encoder``);
CLIP and sentence-encoder weights are never stored with a model bundle.
"""
from __future__ import annotations

import logging
import math
import os
import re
import zipfile
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from momask_model.config import TextEncoderConfig
from momask_model.text.base import (
    TextEncoder,
    TextEncoderError,
    TextEncoderWeightsMissing,
    validate_text,
)

logger = logging.getLogger(__name__)

#: CLIP's context length; longer texts are truncated (the release tokenises with truncate=True).
CLIP_CONTEXT_LENGTH = 77
#: Function words the bag-of-words encoder neither needs nor reports as unknown.
STOP_WORDS: frozenset[str] = frozenset(
    "a an the and or but to of in on at by for from with into onto over as is are was were be been "
    "being it its this that these those he she they them his her their hers him s then while than "
    "so some".split()
)
_WORD = re.compile(r"[a-z]+")


class UnknownWordsError(TextEncoderError):
    """A text has no word the bag-of-words vocabulary knows.

    Attributes:
        text: the offending text.
        words: its out-of-vocabulary words.
    """

    def __init__(self, text: str, words: Sequence[str]) -> None:
        self.text = text
        self.words = list(words)
        super().__init__(f"no known word in {text!r}; unknown words: {self.words}")


def tokenize_words(text: str) -> list[str]:
    """Lower-case and split into runs of ASCII letters ("Person's left-hand" -> person, s, left, hand)."""
    return _WORD.findall(text.lower())


# ---------------------------------------------------------------------------------------------- CLIP
def _openai_cache_candidates(model_name: str, tag: str, cache_dir: str | None) -> tuple[list[Path], str]:
    """Local files open_clip would use for a pretrained tag, and a human description of where it looks."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not cfg:
        raise TextEncoderError(
            f"open_clip has no pretrained tag {tag!r} for {model_name!r}; "
            f"known tags: {open_clip.list_pretrained_tags_by_model(model_name)}"
        )
    candidates: list[Path] = []
    places: list[str] = []
    url = cfg.get("url", "")
    if url:
        clip_dir = Path(cache_dir or os.path.expanduser("~/.cache/clip"))
        candidates.append(clip_dir / os.path.basename(url))
        places.append(str(clip_dir / os.path.basename(url)))
    hub = cfg.get("hf_hub", "")
    if hub:
        repo_id, filename = os.path.split(hub)
        try:
            from huggingface_hub import constants, try_to_load_from_cache

            for name in ("open_clip_model.safetensors", filename or "open_clip_pytorch_model.bin"):
                hit = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
                if isinstance(hit, str):
                    candidates.append(Path(hit))
            places.append(f"Hugging Face cache {cache_dir or constants.HF_HUB_CACHE} (repo {repo_id})")
        except ImportError:  # pragma: no cover - huggingface_hub ships with open_clip
            pass
    return candidates, "; ".join(places)


def _is_torchscript_archive(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


class ClipTextEncoder(TextEncoder):
    """open_clip text tower giving MoMask's condition: pooled EOT feature, not normalised, float32.

    The image tower is never kept (it is built tiny when no weights are loaded, and dropped after
    loading otherwise) to save ~350 MB.

    Args:
        model_name: open_clip architecture (MoMask: ``ViT-B-32``).
        weights: ``'openai'`` (or another open_clip tag; taken from the local cache, downloaded if
            ``download``), a local checkpoint path (open_clip state dict or OpenAI's ``ViT-B-32.pt``),
            or None for no weights.
        allow_random: for tests and demos only: when weights are missing, build a randomly
            initialised tower (seeded by ``seed``, so rebuilds agree) and log a warning instead of raising.
        device: where the tower runs and where ``encode`` returns its tensor.
        quick_gelu: OpenAI's CLIP uses QuickGELU; keep True for the MoMask weights.
        context_length: token context (CLIP: 77); longer texts are truncated.
        download: allow a network download for a tag missing from the cache.
        cache_dir: cache folder for tags (default: open_clip's / Hugging Face's).
        seed: seed of the random initialisation.
    Raises:
        TextEncoderWeightsMissing: the weights are missing and ``allow_random`` is False; the message
            names the path or cache looked at and how to provide a local file.
    """

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        weights: str | os.PathLike[str] | None = "openai",
        allow_random: bool = False,
        device: str | torch.device = "cpu",
        *,
        quick_gelu: bool = True,
        context_length: int = CLIP_CONTEXT_LENGTH,
        download: bool = True,
        cache_dir: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        import open_clip

        if model_name not in open_clip.list_models():
            raise TextEncoderError(f"unknown open_clip model {model_name!r}")
        self.model_name = model_name
        self.weights = None if weights is None else str(weights)
        self.quick_gelu = quick_gelu
        self.context_length = context_length
        self.seed = seed
        checkpoint = self._resolve_weights(model_name, self.weights, download=download, cache_dir=cache_dir)
        if checkpoint is None and not allow_random:
            raise TextEncoderWeightsMissing(self._missing_message(model_name, self.weights, cache_dir))
        if checkpoint is None:
            logger.warning(
                "CLIP %s weights %r not available: using a RANDOM text tower (seed %d); outputs are meaningless "
                "for a trained MoMask", model_name, self.weights, seed,
            )
            clip = self._build_random(model_name)
        elif _is_torchscript_archive(checkpoint):
            # OpenAI's own ViT-B-32.pt (what MoMask's `clip` package loads) is a TorchScript archive that
            # torch.load refuses with weights_only; open_clip rebuilds it (QuickGELU, fp16-stored weights).
            clip = open_clip.load_openai_model(str(checkpoint), precision="fp32", device="cpu")
        else:
            clip = open_clip.create_model(
                model_name, pretrained=str(checkpoint), force_quick_gelu=quick_gelu, device="cpu"
            )
        clip.visual = None  # text tower only; encode_text never touches it
        self.clip = clip.to(device)
        self.is_random = checkpoint is None
        self.tokenizer = open_clip.get_tokenizer(model_name, context_length=context_length)
        self.dim = int(self.clip.text_projection.shape[-1])
        self._freeze()

    # -- weights resolution
    def _resolve_weights(
        self, model_name: str, weights: str | None, *, download: bool, cache_dir: str | None
    ) -> Path | None:
        if weights is None:
            return None
        path = Path(weights).expanduser()
        if path.is_file():
            return path
        if os.sep in weights or path.suffix:  # looks like a path, not a tag
            return None
        candidates, _ = _openai_cache_candidates(model_name, weights, cache_dir)
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        if not download:
            return None
        import open_clip

        cfg = open_clip.get_pretrained_cfg(model_name, weights)
        try:
            return Path(open_clip.download_pretrained(cfg, cache_dir=cache_dir))
        except Exception as exc:  # network errors come in many types; all mean "not available"
            logger.warning("could not download CLIP weights %r for %s: %s", weights, model_name, exc)
            return None

    def _missing_message(self, model_name: str, weights: str | None, cache_dir: str | None) -> str:
        hint = (
            "Provide a local checkpoint with weights=/path/to/file (OpenAI's ViT-B-32.pt or open_clip's "
            "open_clip_pytorch_model.bin for timm/vit_base_patch32_clip_224.openai), or pass allow_random=True "
            "for tests and demos."
        )
        if weights is None:
            return f"no CLIP weights given for {model_name} (weights=None). {hint}"
        if os.sep in weights or Path(weights).suffix:
            return f"CLIP weights file not found: {weights}. {hint}"
        _, places = _openai_cache_candidates(model_name, weights, cache_dir)
        return (
            f"CLIP {model_name} weights {weights!r} are not in the local cache ({places}) and could not be "
            f"downloaded (offline?). Copy the file there, or {hint[0].lower()}{hint[1:]}"
        )

    def _build_random(self, model_name: str) -> nn.Module:
        import open_clip

        # A throw-away one-block image tower: the text tower is identical and building is much cheaper.
        tiny_vision = {"layers": 1, "width": 64, "head_width": 64, "patch_size": 16, "image_size": 16}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return open_clip.create_model(
                model_name, pretrained=None, force_quick_gelu=self.quick_gelu, device="cpu", vision_cfg=tiny_vision
            )

    # -- encoding
    def _encode(self, texts: list[str]) -> torch.Tensor:
        device = self.clip.token_embedding.weight.device
        tokens = self.tokenizer(texts).to(device)
        return self.clip.encode_text(tokens, normalize=False)

    def _encode_fast(self, texts: list[str]) -> torch.Tensor:
        """The pooled EOT feature, computed only over positions up to the batch's last EOT token.

        Why it is the same result: the text tower is causal (each position attends to itself and
        earlier ones) and only the EOT position is pooled, so the padding after it never influences
        the output; a 6-word prompt then costs ~10 of the 77 positions. Falls back to the full
        computation for towers that are not causal or not EOT-pooled.
        """
        clip = self.clip
        device = clip.token_embedding.weight.device
        tokens = self.tokenizer(texts).to(device)
        mask = getattr(clip, "attn_mask", None)
        if getattr(clip, "text_pool_type", None) != "argmax" or mask is None or not hasattr(clip, "transformer"):
            return clip.encode_text(tokens, normalize=False)
        eot = tokens.argmax(dim=-1)  # the EOT id is the largest in CLIP's vocabulary
        used = int(eot.max()) + 1
        cast_dtype = clip.transformer.get_cast_dtype()
        x = clip.token_embedding(tokens[:, :used]).to(cast_dtype)
        x = x + clip.positional_embedding[:used].to(cast_dtype)
        x = clip.transformer(x, attn_mask=mask[:used, :used])
        x = clip.ln_final(x)
        pooled = x[torch.arange(x.shape[0], device=device), eot]
        projection = clip.text_projection
        return projection(pooled) if isinstance(projection, nn.Linear) else pooled @ projection

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "clip",
            "model_name": self.model_name,
            "weights": self.weights,
            "random": self.is_random,
            "seed": self.seed,
            "quick_gelu": self.quick_gelu,
            "context_length": self.context_length,
            "dim": self.dim,
        }


# ---------------------------------------------------------------------------------------------- bag of words
def word_vector(word: str, dim: int, seed: int) -> torch.Tensor:
    """Fixed unit vector for a word, from a generator seeded by (seed, CRC32 of the word).

    Depends only on the word, not on the vocabulary order, so growing a vocabulary keeps old vectors.
    """
    g = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(word.encode("utf-8"))) % (2**63 - 1))
    v = torch.randn(dim, generator=g)
    return v / v.norm()


def build_vocabulary(texts: Iterable[str], *, min_count: int = 1, max_size: int | None = None) -> list[str]:
    """Vocabulary for ``BagOfWordsTextEncoder`` from a corpus: words seen >= min_count times, stop
    words excluded, most frequent first (ties alphabetical)."""
    counts = Counter(w for text in texts for w in tokenize_words(text) if w not in STOP_WORDS)
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return words if max_size is None else words[:max_size]


class BagOfWordsTextEncoder(TextEncoder):
    """Offline encoder for demo models: mean of fixed random unit vectors of the known words, times sqrt(dim).

    The sqrt(dim) scale gives entries of about unit size for a one-word text (CLIP-like magnitudes),
    shrinking as 1/sqrt(k) with k words. Unknown words are ignored when encoding, and listed by
    ``unknown_words``; a text with no known word raises ``UnknownWordsError``.

    Args:
        vocab: known words (lower-case letters only); order does not matter.
        dim: output width.
        seed: seed of the per-word vectors.
        max_words: only the first max_words words of a text are used.
    """

    def __init__(
        self, vocab: Sequence[str], dim: int = 512, seed: int = 0, *, max_words: int = CLIP_CONTEXT_LENGTH
    ) -> None:
        super().__init__()
        if isinstance(vocab, str):
            raise TypeError(f"vocab must be a list of words, got the string {vocab!r}")
        words: list[str] = []
        for word in vocab:
            if not isinstance(word, str) or not re.fullmatch(r"[a-z]+", word.lower()):
                raise ValueError(f"vocabulary entries must be words of letters, got {word!r}")
            if word.lower() not in words:
                words.append(word.lower())
        if not words:
            raise ValueError("vocab is empty")
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if max_words < 1:
            raise ValueError(f"max_words must be >= 1, got {max_words}")
        self.vocab = words
        self.dim = dim
        self.seed = seed
        self.max_words = max_words
        self._index = {w: i for i, w in enumerate(words)}
        table = torch.stack([word_vector(w, dim, seed) for w in words])
        # Not persistent: it is a pure function of (vocab, dim, seed), which describe() carries.
        self.register_buffer("word_vectors", table, persistent=False)
        self._freeze()

    def unknown_words(self, text: str) -> list[str]:
        validate_text(text)
        seen: list[str] = []
        for w in tokenize_words(text):
            if w not in self._index and w not in STOP_WORDS and w not in seen:
                seen.append(w)
        return seen

    def _encode(self, texts: list[str]) -> torch.Tensor:
        rows = []
        for text in texts:
            ids = [self._index[w] for w in tokenize_words(text)[: self.max_words] if w in self._index]
            if not ids:
                raise UnknownWordsError(text, self.unknown_words(text))
            index = torch.tensor(ids, device=self.word_vectors.device)
            rows.append(self.word_vectors[index].mean(dim=0) * math.sqrt(self.dim))
        return torch.stack(rows)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "bow", "vocab": list(self.vocab), "dim": self.dim, "seed": self.seed, "max_words": self.max_words
        }


# ---------------------------------------------------------------------------------------------- factory
def _check_state_matches(cfg: TextEncoderConfig, state: dict[str, Any]) -> None:
    """A saved description that disagrees with its config means a corrupt or mixed-up bundle."""
    if state.get("kind", cfg.kind) != cfg.kind:
        raise TextEncoderError(f"saved text encoder is {state.get('kind')!r} but the config asks for {cfg.kind!r}")
    keys = ["dim"]
    if cfg.kind == "clip":
        keys.append("model_name")  # a sentence encoder is identified by its file hashes instead
    if cfg.kind == "bow" or state.get("random"):
        keys.append("seed")
    for key in keys:
        if key in state and state[key] != getattr(cfg, key):
            raise TextEncoderError(
                f"saved text encoder has {key}={state[key]!r} but the config says {getattr(cfg, key)!r}"
            )


def build_text_encoder(
    cfg: TextEncoderConfig, state: dict[str, Any] | None = None, *, device: str | torch.device = "cpu"
) -> TextEncoder:
    """Build the encoder a config (and optionally a saved ``describe()``) asks for.

    Args:
        cfg: which encoder; ``cfg.dim`` must equal the encoder's output width.
        state: a previous ``describe()``; for ``bow`` its vocabulary wins over ``cfg.vocab``.
        device: where the encoder runs.
    Raises:
        TextEncoderError: unknown kind, mismatched state, or a width other than ``cfg.dim``.
        TextEncoderWeightsMissing: CLIP weights unavailable and ``cfg.allow_random`` False.
    """
    if state is not None:
        _check_state_matches(cfg, state)
    encoder: TextEncoder
    if cfg.kind == "clip":
        encoder = ClipTextEncoder(
            model_name=cfg.model_name,
            weights=cfg.weights,
            allow_random=cfg.allow_random,
            device=device,
            context_length=cfg.max_words,
            seed=cfg.seed,
        )
    elif cfg.kind == "sentence":
        from momask_model.text.sentence import DEFAULT_SOURCE, SentenceTextEncoder

        # The recorded hashes travel with the bundle: other files under the same name are refused.
        expected = dict(state["sha256"]) if state and state.get("sha256") else None
        encoder = SentenceTextEncoder(cfg.weights or DEFAULT_SOURCE, expected_sha256=expected, device=device,
                                      scale=cfg.scale)
    elif cfg.kind == "bow":
        vocab = list(state["vocab"]) if state and "vocab" in state else list(cfg.vocab)
        if not vocab:
            raise TextEncoderError("a bag-of-words text encoder needs a vocabulary (cfg.vocab or state['vocab'])")
        encoder = BagOfWordsTextEncoder(vocab, dim=cfg.dim, seed=cfg.seed, max_words=cfg.max_words).to(device)
    else:
        raise TextEncoderError(f"unknown text encoder kind {cfg.kind!r}; expected 'clip', 'sentence' or 'bow'")
    if encoder.dim != cfg.dim:
        raise TextEncoderError(f"{cfg.kind} text encoder gives {encoder.dim}-d vectors but cfg.dim={cfg.dim}")
    return encoder
