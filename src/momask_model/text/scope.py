"""Whether a model can do what a sentence asks: the one text-acceptance rule of the node and the CLI.

A model trained on a few skills (the demo) makes *some* motion for any sentence; generating for a
request it has never seen ("a person swims") would be a silent guess. The `ScopeGate` compares the
sentence's embedding (the model's own text encoder) with those of its training captions: below a
threshold, measured on paraphrases and out-of-scope requests (README, `test/data`), the request is
out of scope, and the answer names the closest skills and their similarity. The gate belongs to a
bundle (``save_bundle`` stores it); HumanML3D models have none, and every text passes.

Bag-of-words bundles keep their older rule instead: a sentence with a word outside the captions'
vocabulary is refused (``unknown_words``). `check_text` applies whichever a model has.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

#: Closest skills named in a verdict.
TOP_K = 3


@dataclass(frozen=True)
class ScopeVerdict:
    """How close a sentence is to what the model was trained on.

    similarity: cosine to the nearest training caption; in_scope: ``similarity >= threshold``;
    closest: (skill, cosine to that skill's nearest caption), best first.
    """

    text: str
    similarity: float
    threshold: float
    closest: tuple[tuple[str, float], ...]

    @property
    def in_scope(self) -> bool:
        return self.similarity >= self.threshold

    @property
    def skill(self) -> str:
        return self.closest[0][0]

    def fields(self) -> dict[str, Any]:
        """JSON-able fields for a status message."""
        return {
            "similarity": round(self.similarity, 3),
            "threshold": round(self.threshold, 3),
            "closest_skills": [{"skill": s, "similarity": round(v, 3)} for s, v in self.closest],
        }

    def message(self) -> str:
        near = ", ".join(f"{s} ({v:.2f})" for s, v in self.closest)
        return (f"{self.text!r} is outside what this model was trained on: similarity {self.similarity:.2f} "
                f"< {self.threshold:.2f} to its captions; closest skills: {near}")


class ScopeGate:
    """Cosine similarity of a sentence embedding to the training captions', per skill.

    Args:
        captions: training captions (one row of ``embeddings`` each).
        skills: the skill of each caption.
        embeddings: (N, D) caption embeddings from the model's text encoder.
        threshold: smallest accepted cosine to the nearest caption.
    """

    def __init__(self, captions: Sequence[str], skills: Sequence[str], embeddings: Any, threshold: float) -> None:
        emb = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
        if emb.ndim != 2 or emb.shape[0] != len(captions) or len(captions) != len(skills) or not len(captions):
            raise ValueError(f"need one embedding row per caption and skill, got {tuple(emb.shape)}, "
                             f"{len(captions)} captions, {len(skills)} skills")
        if not -1.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold is a cosine in [-1, 1], got {threshold}")
        self.captions = list(captions)
        self.skills = list(skills)
        self.embeddings = torch.nn.functional.normalize(emb, dim=-1)
        self.threshold = float(threshold)
        self.skill_names = sorted(set(self.skills))
        index = {s: i for i, s in enumerate(self.skill_names)}
        self._skill_of = torch.tensor([index[s] for s in self.skills])
        self._verdicts: OrderedDict[str, ScopeVerdict] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def build(cls, encoder: Any, captions_by_skill: Mapping[str, Sequence[str]], threshold: float) -> "ScopeGate":
        """Embed ``captions_by_skill`` with ``encoder`` (anything with ``encode(list[str])``)."""
        captions = [c for s in sorted(captions_by_skill) for c in dict.fromkeys(captions_by_skill[s])]
        skills = [s for s in sorted(captions_by_skill) for _ in dict.fromkeys(captions_by_skill[s])]
        with torch.no_grad():
            emb = encoder.encode(captions).float().cpu()
        return cls(captions, skills, emb.numpy(), threshold)

    def verdict(self, text: str, embedding: Any) -> ScopeVerdict:
        """The verdict for one sentence's (D,) embedding."""
        e = torch.nn.functional.normalize(torch.as_tensor(embedding, dtype=torch.float32).reshape(1, -1).cpu(), dim=-1)
        if e.shape[1] != self.embeddings.shape[1]:
            raise ValueError(f"embedding has {e.shape[1]} values, the gate's captions {self.embeddings.shape[1]}")
        cos = (self.embeddings @ e[0]).clamp(-1.0, 1.0)
        per_skill = torch.full((len(self.skill_names),), -1.0).scatter_reduce(0, self._skill_of, cos, "amax")
        order = torch.argsort(per_skill, descending=True)[:TOP_K]
        closest = tuple((self.skill_names[int(i)], float(per_skill[i])) for i in order)
        return ScopeVerdict(text=text, similarity=float(cos.max()), threshold=self.threshold, closest=closest)

    def check(self, text: str, encoder: Any) -> ScopeVerdict:
        """Embed ``text`` with ``encoder`` and judge it; verdicts are cached per text (thread-safe)."""
        with self._lock:
            hit = self._verdicts.get(text)
        if hit is not None:
            return hit
        with torch.no_grad():
            emb = encoder.encode([text])[0]
        verdict = self.verdict(text, emb)
        with self._lock:
            self._verdicts[text] = verdict
            while len(self._verdicts) > 1024:
                self._verdicts.popitem(last=False)
        return verdict

    def with_threshold(self, threshold: float) -> "ScopeGate":
        return ScopeGate(self.captions, self.skills, self.embeddings.numpy(), threshold)

    def state(self) -> dict[str, Any]:
        """Plain data stored in a bundle (``from_state`` rebuilds the gate)."""
        return {"threshold": self.threshold, "captions": list(self.captions), "skills": list(self.skills),
                "embeddings": self.embeddings.numpy().astype(np.float32)}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "ScopeGate":
        return cls(state["captions"], state["skills"], state["embeddings"], state["threshold"])


@dataclass(frozen=True)
class TextRejection:
    """Why a model refuses a text: ``reason`` (``out_of_scope`` or ``unknown_words``), a one-line
    ``message``, and ``fields`` for a status message."""

    reason: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)


def check_text(model: Any, text: str) -> TextRejection | None:
    """The acceptance rule of ``model`` for ``text``: None when it may be generated.

    A model with a ``scope_gate`` (demo bundles) is judged by it; otherwise a closed-vocabulary encoder
    (bag of words) refuses unknown words; open-vocabulary models (CLIP) accept every text.
    """
    gate = getattr(model, "scope_gate", None)
    if gate is not None:
        verdict = gate.check(text, model.text_encoder)
        if verdict.in_scope:
            return None
        return TextRejection("out_of_scope", verdict.message(), verdict.fields())
    unknown_words = getattr(model, "unknown_words", None)
    if unknown_words is None:
        unknown_words = getattr(getattr(model, "text_encoder", None), "unknown_words", None)
    unknown = list(unknown_words(text)) if unknown_words is not None else []
    if not unknown:
        return None
    vocab = list(getattr(getattr(model, "text_encoder", None), "vocab", None) or [])
    meta = getattr(model, "bundle_meta", None) or {}
    return TextRejection(
        "unknown_words",
        f"{text!r} has words this model's vocabulary does not know: {', '.join(unknown[:20])}",
        {"unknown_words": unknown[:20], "known_skills": [str(s) for s in meta.get("skills", [])],
         "known_words": [str(w) for w in vocab[:40]]},
    )
