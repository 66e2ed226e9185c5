"""Guo et al.'s text-motion matching evaluator (design/momask.md §6.1), the ruler every published
text-to-motion number is measured with.

Three networks map a caption and a motion into one 512-d space: a movement convolution over the
normalised features (without the 4 foot contacts), a motion BiGRU over those movement codes, and a
text BiGRU over word vectors plus part-of-speech one-hots. The sub-module names and parameter names
equal those in the official ``text_mot_match/model/finest.tar`` so a user's copy of those weights
(and the GloVe ``our_vab_*`` files) loads unchanged and numbers are comparable with the paper's table.

Without those files an evaluator can be trained on any dataset with a self-built vocabulary
(random or learned word vectors): its numbers are then only comparable with each other.
"""
from __future__ import annotations

import logging
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from momask_model.config import ConfigBase

log = logging.getLogger(__name__)

#: Part-of-speech classes of the one-hot, in the official order (15 classes).
POS_CLASSES: tuple[str, ...] = (
    "VERB", "NOUN", "DET", "ADP", "NUM", "AUX", "PRON", "ADJ", "ADV",
    "Loc_VIP", "Body_VIP", "Obj_VIP", "Act_VIP", "Desc_VIP", "OTHER",
)
POS_INDEX = {name: i for i, name in enumerate(POS_CLASSES)}

#: Motion-relevant words whose class overrides the tagger's (checked in this order).
VIP_WORDS: dict[str, frozenset[str]] = {
    "Loc_VIP": frozenset("left right clockwise counterclockwise anticlockwise forward back backward up down "
                         "straight curve".split()),
    "Body_VIP": frozenset("arm chin foot feet face hand mouth leg waist eye knee shoulder thigh".split()),
    "Obj_VIP": frozenset("stair dumbbell chair window floor car ball handrail baseball basketball".split()),
    "Act_VIP": frozenset("walk run swing pick bring kick put squat throw hop dance jump turn stumble stop sit "
                         "lift lower raise wash stand kneel stroll rub bend balance flap jog shuffle lean rotate "
                         "spin spread climb".split()),
    "Desc_VIP": frozenset("slowly carefully fast careful slow quickly happy angry sad happily angrily sadly".split()),
}

SPECIAL_WORDS = ("unk", "sos", "eos")


class EvaluatorFilesMissing(FileNotFoundError):
    """An evaluator weight, meta or word-vector file is not where the caller said."""


class EvaluatorError(ValueError):
    """Evaluator inputs or weights are inconsistent (wrong width, missing keys, bad tokens)."""


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise EvaluatorFilesMissing(f"{what} not found: {path}")
    return path


def pos_one_hot(word: str, pos: str, *, known: bool = True) -> np.ndarray:
    """The 15-d POS one-hot of a token: VIP lists override the tag; unknown words are OTHER."""
    out = np.zeros(len(POS_CLASSES), dtype=np.float32)
    if not known:
        out[POS_INDEX["OTHER"]] = 1.0
        return out
    for cls, words in VIP_WORDS.items():
        if word in words:
            out[POS_INDEX[cls]] = 1.0
            return out
    out[POS_INDEX.get(pos, POS_INDEX["OTHER"])] = 1.0
    return out


_WORD = re.compile(r"[a-z]+")


def caption_tokens(caption: str) -> list[str]:
    """Fallback ``word/POS`` tokens for a caption without a tagged token field: alphabetic words,
    tag OTHER (VIP words still get their class). The HumanML3D text files carry real spaCy tags."""
    return [f"{w}/OTHER" for w in _WORD.findall(caption.lower())]


def batch_tokens(batch: Mapping[str, Any]) -> list[list[str]]:
    """Token lists of a ``collate_text_motion`` batch; captions without tagged tokens fall back to
    :func:`caption_tokens`."""
    return [list(t) if t else caption_tokens(c) for t, c in zip(batch["tokens"], batch["captions"])]


def parse_tokens(tokens: str | Sequence[str]) -> list[str]:
    """Accept the text-file field (``'a/DET man/NOUN'``) or a list of ``word/POS`` strings."""
    items = tokens.split() if isinstance(tokens, str) else list(tokens)
    for t in items:
        if "/" not in t:
            raise EvaluatorError(f"token {t!r} is not of the form word/POS")
    return items


class WordVectorizer:
    """Word -> (vector, POS one-hot) lookup with the official unk/sos/eos conventions.

    Args:
        vectors: (V, dim) float32 word vectors.
        word_to_index: row of each known word; must contain ``unk``, ``sos`` and ``eos``.
    """

    def __init__(self, vectors: np.ndarray, word_to_index: dict[str, int]) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise EvaluatorError(f"word vectors must be (V, dim), got {vectors.shape}")
        missing = [w for w in SPECIAL_WORDS if w not in word_to_index]
        if missing:
            raise EvaluatorError(f"vocabulary lacks the special words {missing}")
        bad = [w for w, i in word_to_index.items() if not 0 <= i < len(vectors)]
        if bad:
            raise EvaluatorError(f"word indices out of range for {len(vectors)} vectors: {bad[:5]}")
        self.vectors = vectors
        self.word_to_index = dict(word_to_index)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.word_to_index)

    @classmethod
    def from_glove_dir(cls, glove_dir: str | Path, *, prefix: str = "our_vab") -> "WordVectorizer":
        """Load ``<prefix>_data.npy``, ``<prefix>_words.pkl``, ``<prefix>_idx.pkl`` (text-to-motion's
        ``download_glove.sh``) from a local folder."""
        root = Path(glove_dir)
        data = _require_file(root / f"{prefix}_data.npy", "GloVe vectors")
        words_pkl = _require_file(root / f"{prefix}_words.pkl", "GloVe word list")
        idx_pkl = _require_file(root / f"{prefix}_idx.pkl", "GloVe word index")
        vectors = np.load(data)
        with open(words_pkl, "rb") as f:
            words = pickle.load(f)
        with open(idx_pkl, "rb") as f:
            word_to_index = pickle.load(f)
        # Only the listed words are in the official lookup, even if the index has more.
        return cls(vectors, {w: int(word_to_index[w]) for w in words})

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], *, dim: int = 300, min_count: int = 1,
              seed: int = 0) -> "WordVectorizer":
        """A self-built vocabulary over ``word/POS`` token lists, with random unit-scale vectors
        (the evaluator may learn them; see ``EvaluatorConfig.learn_word_vectors``)."""
        counts: dict[str, int] = {}
        for tokens in token_lists:
            for t in parse_tokens(tokens):
                w = t.split("/", 1)[0]
                counts[w] = counts.get(w, 0) + 1
        words = list(SPECIAL_WORDS) + sorted(w for w, c in counts.items() if c >= min_count and w not in SPECIAL_WORDS)
        rng = np.random.default_rng(seed)
        vectors = (rng.standard_normal((len(words), dim)) / np.sqrt(dim)).astype(np.float32)
        return cls(vectors, {w: i for i, w in enumerate(words)})

    def encode(self, tokens: str | Sequence[str], *, max_text_len: int = 20) -> tuple[np.ndarray, np.ndarray, int]:
        """Tokens -> (word ids (max_text_len+2,), POS one-hots (max_text_len+2, 15), sent_len).

        Follows the evaluation loader: cut to ``max_text_len`` words, wrap in sos/eos, pad with unk;
        ``sent_len`` counts sos and eos.
        """
        items = parse_tokens(tokens)[:max_text_len]
        items = ["sos/OTHER"] + items + ["eos/OTHER"]
        sent_len = len(items)
        items = items + ["unk/OTHER"] * (max_text_len + 2 - sent_len)
        ids = np.empty(len(items), dtype=np.int64)
        pos = np.empty((len(items), len(POS_CLASSES)), dtype=np.float32)
        for i, t in enumerate(items):
            word, tag = t.split("/", 1)
            known = word in self.word_to_index
            ids[i] = self.word_to_index[word] if known else self.word_to_index["unk"]
            pos[i] = pos_one_hot(word, tag, known=known)
        return ids, pos, sent_len

    def encode_batch(self, token_lists: Sequence[str | Sequence[str]], *, max_text_len: int = 20
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched :meth:`encode` -> (ids (B, L) long, pos (B, L, 15), sent_len (B,) long)."""
        enc = [self.encode(t, max_text_len=max_text_len) for t in token_lists]
        ids = torch.from_numpy(np.stack([e[0] for e in enc]))
        pos = torch.from_numpy(np.stack([e[1] for e in enc]))
        lens = torch.tensor([e[2] for e in enc], dtype=torch.long)
        return ids, pos, lens


def _init_weight(m: nn.Module) -> None:
    # Xavier-normal weights and zero biases for convs and linears, as the original evaluator.
    if isinstance(m, (nn.Conv1d, nn.Linear, nn.ConvTranspose1d)):
        nn.init.xavier_normal_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class MovementConvEncoder(nn.Module):
    """(B, T, D-4) normalised features -> (B, T/4, output_size) movement codes (two stride-2 convs)."""

    def __init__(self, *, input_size: int = 259, hidden_size: int = 512, output_size: int = 512,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv1d(input_size, hidden_size, 4, 2, 1), nn.Dropout(dropout), nn.LeakyReLU(0.2),
            nn.Conv1d(hidden_size, output_size, 4, 2, 1), nn.Dropout(dropout), nn.LeakyReLU(0.2),
        )
        self.out_net = nn.Linear(output_size, output_size)
        self.main.apply(_init_weight)
        self.out_net.apply(_init_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_net(self.main(x.transpose(1, 2)).transpose(1, 2))


class _BiGRUCo(nn.Module):
    """Shared body: input projection, one-layer BiGRU with a learned initial state, final states of
    both directions concatenated and mapped by a small MLP."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__()
        self.input_emb = nn.Linear(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)
        self.output_net = nn.Sequential(
            nn.Linear(hidden_size * 2, hidden_size), nn.LayerNorm(hidden_size), nn.LeakyReLU(0.2),
            nn.Linear(hidden_size, output_size),
        )
        self.input_emb.apply(_init_weight)
        self.output_net.apply(_init_weight)
        self.hidden = nn.Parameter(torch.randn(2, 1, hidden_size))

    def _encode(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h0 = self.hidden.expand(-1, x.shape[0], -1).contiguous()
        packed = pack_padded_sequence(self.input_emb(x), lengths.detach().cpu().clamp(min=1),
                                      batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed, h0)
        return self.output_net(torch.cat([last[0], last[1]], dim=-1))


class MotionEncoderBiGRUCo(_BiGRUCo):
    """Movement codes (B, T', 512) with lengths in tokens -> motion embedding (B, output_size)."""

    def __init__(self, *, input_size: int = 512, hidden_size: int = 1024, output_size: int = 512) -> None:
        super().__init__(input_size, hidden_size, output_size)

    def forward(self, movements: torch.Tensor, token_lens: torch.Tensor) -> torch.Tensor:
        return self._encode(movements, token_lens)


class TextEncoderBiGRUCo(_BiGRUCo):
    """Word vectors (B, L, word_size) + POS one-hots (B, L, pos_size) -> text embedding (B, output_size)."""

    def __init__(self, *, word_size: int = 300, pos_size: int = 15, hidden_size: int = 512,
                 output_size: int = 512) -> None:
        super().__init__(word_size, hidden_size, output_size)
        self.pos_emb = nn.Linear(pos_size, word_size)
        self.pos_emb.apply(_init_weight)

    def forward(self, word_embs: torch.Tensor, pos_onehot: torch.Tensor, sent_lens: torch.Tensor) -> torch.Tensor:
        return self._encode(word_embs + self.pos_emb(pos_onehot), sent_lens)


@dataclass(frozen=True)
class EvaluatorConfig(ConfigBase):
    """Sizes of the matching evaluator (defaults: the official HumanML3D ``Comp_v6_KLD005``)."""

    dim_pose: int = 263
    dim_word: int = 300
    dim_pos_ohot: int = 15
    dim_text_hidden: int = 512
    dim_coemb_hidden: int = 512
    dim_movement_enc_hidden: int = 512
    dim_movement_latent: int = 512
    dim_motion_hidden: int = 1024
    max_text_len: int = 20
    unit_length: int = 4
    dropout: float = 0.2
    learn_word_vectors: bool = False
    contrastive_margin: float = 10.0


class TextMotionEvaluator(nn.Module):
    """The three matching networks plus the word vectors and the evaluator's own normaliser.

    ``movement_encoder``, ``motion_encoder`` and ``text_encoder`` have the official parameter names.
    Motions are given in raw (de-normalised) feature units; the evaluator applies its own
    ``mean``/``std`` because the published protocol scores every model with the evaluator's.
    """

    def __init__(self, config: EvaluatorConfig, vectorizer: WordVectorizer, mean: np.ndarray,
                 std: np.ndarray) -> None:
        super().__init__()
        c = config
        if vectorizer.dim != c.dim_word:
            raise EvaluatorError(f"word vectors are {vectorizer.dim}-d but config.dim_word={c.dim_word}")
        mean, std = np.asarray(mean, np.float32).ravel(), np.asarray(std, np.float32).ravel()
        if mean.shape != (c.dim_pose,) or std.shape != (c.dim_pose,):
            raise EvaluatorError(f"mean/std must be ({c.dim_pose},), got {mean.shape}/{std.shape}")
        self.config = c
        self.vectorizer = vectorizer
        self.word_vectors = nn.Embedding.from_pretrained(torch.from_numpy(vectorizer.vectors),
                                                         freeze=not c.learn_word_vectors)
        self.movement_encoder = MovementConvEncoder(input_size=c.dim_pose - 4, hidden_size=c.dim_movement_enc_hidden,
                                                    output_size=c.dim_movement_latent, dropout=c.dropout)
        self.motion_encoder = MotionEncoderBiGRUCo(input_size=c.dim_movement_latent,
                                                   hidden_size=c.dim_motion_hidden, output_size=c.dim_coemb_hidden)
        self.text_encoder = TextEncoderBiGRUCo(word_size=c.dim_word, pos_size=c.dim_pos_ohot,
                                               hidden_size=c.dim_text_hidden, output_size=c.dim_coemb_hidden)
        self.register_buffer("mean", torch.from_numpy(mean))
        self.register_buffer("std", torch.from_numpy(std))

    # -- inputs -------------------------------------------------------------------------------
    def tokenize(self, token_lists: Sequence[str | Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``word/POS`` token lists -> (word ids, POS one-hots, sent_len) on the evaluator's device."""
        ids, pos, lens = self.vectorizer.encode_batch(token_lists, max_text_len=self.config.max_text_len)
        dev = self.mean.device
        return ids.to(dev), pos.to(dev), lens.to(dev)

    def normalize(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std

    # -- embeddings ---------------------------------------------------------------------------
    def encode_text(self, word_ids: torch.Tensor, pos_onehot: torch.Tensor, sent_lens: torch.Tensor) -> torch.Tensor:
        """(B, L) ids, (B, L, 15), (B,) -> (B, 512) text embeddings."""
        return self.text_encoder(self.word_vectors(word_ids), pos_onehot, sent_lens)

    def encode_motion(self, features: torch.Tensor, lengths: torch.Tensor, *, normalized: bool = False) -> torch.Tensor:
        """Raw (or already evaluator-normalised) features (B, T, D) and lengths in frames -> (B, 512).

        Frames past each length are ignored by the packed GRU (the conv sees them only at the edge).
        """
        if features.shape[-1] != self.config.dim_pose:
            raise EvaluatorError(f"motion features are {features.shape[-1]}-d, evaluator expects {self.config.dim_pose}")
        x = features if normalized else self.normalize(features)
        movements = self.movement_encoder(x[..., :-4])
        token_lens = torch.div(lengths, self.config.unit_length, rounding_mode="floor").clamp(1, movements.shape[1])
        return self.motion_encoder(movements, token_lens)

    def embed(self, token_lists: Sequence[str | Sequence[str]], features: torch.Tensor, lengths: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Text and motion embeddings of aligned pairs."""
        return self.encode_text(*self.tokenize(token_lists)), self.encode_motion(features, lengths)

    # -- training -----------------------------------------------------------------------------
    def contrastive_loss(self, text_emb: torch.Tensor, motion_emb: torch.Tensor, *,
                         generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Hadsell contrastive loss: matched pairs pulled together (d²), pairs with the motion batch
        shifted by a random 1..B-1 pushed beyond the margin (max(0, m - d)²)."""
        b = text_emb.shape[0]
        if b < 2:
            raise EvaluatorError("contrastive training needs batches of at least 2 pairs")
        shift = int(torch.randint(1, b, (1,), generator=generator).item())
        neg = motion_emb.roll(shift, dims=0)
        d_pos = (text_emb - motion_emb).norm(dim=-1)
        d_neg = (text_emb - neg).norm(dim=-1)
        pos = (d_pos ** 2).mean()
        negl = (torch.clamp(self.config.contrastive_margin - d_neg, min=0) ** 2).mean()
        return {"loss": pos + negl, "loss_pos": pos, "loss_neg": negl,
                "gap": (d_neg - d_pos).mean().detach()}

    # -- official weights ---------------------------------------------------------------------
    def load_official_state(self, checkpoint: dict) -> None:
        """Load ``text_encoder``/``motion_encoder``/``movement_encoder`` from an official
        ``finest.tar`` dict; key mismatches raise :class:`EvaluatorError` naming the keys."""
        for name in ("text_encoder", "motion_encoder", "movement_encoder"):
            if name not in checkpoint:
                raise EvaluatorError(f"evaluator checkpoint lacks '{name}' (has {sorted(checkpoint)})")
            module: nn.Module = getattr(self, name)
            missing, unexpected = module.load_state_dict(checkpoint[name], strict=False)
            if missing or unexpected:
                raise EvaluatorError(f"{name}: missing keys {missing}, unexpected keys {unexpected}")


def build_evaluator(*, config: EvaluatorConfig, vectorizer: WordVectorizer, mean: np.ndarray,
                    std: np.ndarray) -> TextMotionEvaluator:
    """A fresh (untrained) evaluator."""
    return TextMotionEvaluator(config, vectorizer, mean, std)


def save_evaluator(evaluator: TextMotionEvaluator, path: str | Path, *, extra: dict | None = None) -> None:
    """One torch file with the config, vocabulary, vectors, normaliser and network weights."""
    vec = evaluator.vectorizer
    payload = {
        "format": "momask_ros.text_motion_evaluator.v1",
        "config": evaluator.config.to_dict(),
        "word_to_index": vec.word_to_index,
        "state_dict": evaluator.state_dict(),
        **(extra or {}),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)


def load_evaluator(path: str | Path, *, device: str | torch.device = "cpu") -> TextMotionEvaluator:
    """Load an evaluator written by :func:`save_evaluator` (eval mode)."""
    payload = torch.load(_require_file(Path(path), "evaluator checkpoint"), map_location="cpu", weights_only=False)
    if payload.get("format") != "momask_ros.text_motion_evaluator.v1":
        raise EvaluatorError(f"{path} is not an evaluator written by save_evaluator; "
                             "for official weights use load_official_evaluator")
    cfg = EvaluatorConfig.from_dict(payload["config"])
    state = payload["state_dict"]
    vec = WordVectorizer(state["word_vectors.weight"].numpy(), payload["word_to_index"])
    ev = TextMotionEvaluator(cfg, vec, state["mean"].numpy(), state["std"].numpy())
    ev.load_state_dict(state)
    return ev.to(device).eval()


def load_official_evaluator(checkpoint: str | Path, *, glove_dir: str | Path, meta_dir: str | Path,
                            dataset: str = "t2m", device: str | torch.device = "cpu") -> TextMotionEvaluator:
    """Externally supplied official weights: ``text_mot_match/model/finest.tar``, the GloVe folder
    (``our_vab_*``) and ``Comp_v6_KLD005/meta`` (mean.npy, std.npy).

    Args:
        dataset: ``t2m`` (263-d) or ``kit`` (251-d).
    """
    dims = {"t2m": 263, "kit": 251}
    if dataset not in dims:
        raise EvaluatorError(f"dataset must be one of {sorted(dims)}, got {dataset!r}")
    vec = WordVectorizer.from_glove_dir(glove_dir)
    meta = Path(meta_dir)
    mean = np.load(_require_file(meta / "mean.npy", "evaluator mean"))
    std = np.load(_require_file(meta / "std.npy", "evaluator std"))
    ckpt = torch.load(_require_file(Path(checkpoint), "evaluator weights"), map_location="cpu", weights_only=False)
    ev = TextMotionEvaluator(EvaluatorConfig(dim_pose=dims[dataset]), vec, mean, std)
    ev.load_official_state(ckpt)
    log.info("loaded official evaluator %s (epoch %s)", checkpoint, ckpt.get("epoch"))
    return ev.to(device).eval()
