"""Whether a model can do what a sentence asks: the one text-acceptance rule of the node and the CLI.

A model trained on a few skills (the demo) makes *some* motion for any sentence; generating for a
request it has never seen ("a person swims") would be a silent guess. The `ScopeGate` compares the
sentence's embedding (the model's own text encoder) with those of its training captions: below a
threshold, measured on paraphrases and out-of-scope requests (README, `test/data`), the request is
out of scope, and the answer names the closest skills and their similarity. The gate belongs to a
bundle (``save_bundle`` stores it); HumanML3D models have none, and every text passes.

A threshold alone cannot tell a skill from its near miss: "a person walks backwards" is as close to
"a person walks forward" (0.85) as most paraphrases are. So a gate may also hold *negatives*: phrases
of what the model was not trained on, above all a skill's verb with another direction, object or
posture ("walks backwards", "hops on one leg", "sits down"). A negative refuses a sentence when both:

* the sentence says what makes the negative one: a word they share that no caption of the
  sentence's nearest skill has ("backwards" in "a person walks backwards" against the walk captions),
  or every word of the negative; a negative with no word of that skill's captions always may.
  Sentence embeddings weigh the verb far above such words, so without this "a person jumps" sits
  nearer "a person jumps up and down in place" (0.88) than any jump caption (0.78);
* it is nearer the sentence than every caption, by at least a margin.

The subject weighs heavily too ("the robot X" leans to "the robot Y"), so the negatives come in every
form the captions use (`negative_phrasings`).

Bag-of-words bundles keep their older rule instead: a sentence with a word outside the captions'
vocabulary is refused (``unknown_words``). `check_text` applies whichever a model has.
"""
from __future__ import annotations

import re
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

    similarity: cosine to the nearest training caption; closest: (skill, cosine to that skill's nearest
    caption), best first; nearest_negative: (negative phrase, cosine) of the closest negative that shares
    a word with the sentence that the nearest skill's captions lack, or None; margin: how much closer
    than ``similarity`` that negative must be to refuse. in_scope: ``similarity >= threshold`` and not
    `closer_to_negative`.
    """

    text: str
    similarity: float
    threshold: float
    closest: tuple[tuple[str, float], ...]
    nearest_negative: tuple[str, float] | None = None
    margin: float = 0.0

    @property
    def closer_to_negative(self) -> bool:
        return self.nearest_negative is not None and self.nearest_negative[1] >= self.similarity + self.margin

    @property
    def in_scope(self) -> bool:
        return self.similarity >= self.threshold and not self.closer_to_negative

    @property
    def skill(self) -> str:
        return self.closest[0][0]

    def fields(self) -> dict[str, Any]:
        """JSON-able fields for a status message."""
        out = {
            "similarity": round(self.similarity, 3),
            "threshold": round(self.threshold, 3),
            "closest_skills": [{"skill": s, "similarity": round(v, 3)} for s, v in self.closest],
        }
        if self.nearest_negative is not None:
            out["nearest_negative"] = {"text": self.nearest_negative[0], "similarity": round(self.nearest_negative[1], 3)}
        return out

    def message(self) -> str:
        near = ", ".join(f"{s} ({v:.2f})" for s, v in self.closest)
        if self.closer_to_negative:
            neg, value = self.nearest_negative
            return (f"{self.text!r} is outside what this model was trained on: it is closer to {neg!r} ({value:.2f}), "
                    f"which the model cannot do, than to its captions ({self.similarity:.2f}); closest skills: {near}")
        return (f"{self.text!r} is outside what this model was trained on: similarity {self.similarity:.2f} "
                f"< {self.threshold:.2f} to its captions; closest skills: {near}")


class ScopeGate:
    """Cosine similarity of a sentence embedding to the training captions', per skill, and to negatives.

    Args:
        captions: training captions (one row of ``embeddings`` each).
        skills: the skill of each caption.
        embeddings: (N, D) caption embeddings from the model's text encoder.
        threshold: smallest accepted cosine to the nearest caption.
        negatives: phrases of what the model cannot do (module docstring); none by default.
        negative_embeddings: (M, D) their embeddings from the same encoder.
        margin: a negative (sharing a word with the sentence that the nearest skill's captions lack)
            refuses a sentence when its cosine is at least the nearest caption's plus this.
    """

    def __init__(self, captions: Sequence[str], skills: Sequence[str], embeddings: Any, threshold: float, *,
                 negatives: Sequence[str] = (), negative_embeddings: Any = None, margin: float = 0.0) -> None:
        emb = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
        if emb.ndim != 2 or emb.shape[0] != len(captions) or len(captions) != len(skills) or not len(captions):
            raise ValueError(f"need one embedding row per caption and skill, got {tuple(emb.shape)}, "
                             f"{len(captions)} captions, {len(skills)} skills")
        if not -1.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold is a cosine in [-1, 1], got {threshold}")
        neg = torch.as_tensor(np.asarray(
            np.zeros((0, emb.shape[1])) if negative_embeddings is None else negative_embeddings, dtype=np.float32))
        if neg.ndim != 2 or neg.shape != (len(negatives), emb.shape[1]):
            raise ValueError(f"need one embedding row of {emb.shape[1]} values per negative, got {tuple(neg.shape)} "
                             f"for {len(negatives)} negatives")
        self.captions = list(captions)
        self.skills = list(skills)
        self.embeddings = torch.nn.functional.normalize(emb, dim=-1)
        self.threshold = float(threshold)
        if not 0.0 <= float(margin) <= 2.0:
            raise ValueError(f"margin is a difference of cosines in [0, 2], got {margin}")
        self.negatives = list(negatives)
        self.negative_embeddings = torch.nn.functional.normalize(neg, dim=-1)
        self.margin = float(margin)
        self._skill_words: dict[str, set[str]] = {}
        for caption, skill in zip(self.captions, self.skills):
            self._skill_words.setdefault(skill, set()).update(words(caption))
        self._negative_words = [words(n) for n in self.negatives]
        self.skill_names = sorted(set(self.skills))
        index = {s: i for i, s in enumerate(self.skill_names)}
        self._skill_of = torch.tensor([index[s] for s in self.skills])
        self._verdicts: OrderedDict[str, ScopeVerdict] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def build(cls, encoder: Any, captions_by_skill: Mapping[str, Sequence[str]], threshold: float, *,
              negatives: Sequence[str] = (), margin: float = 0.0) -> "ScopeGate":
        """Embed ``captions_by_skill`` and ``negatives`` with ``encoder`` (anything with ``encode(list[str])``)."""
        captions = [c for s in sorted(captions_by_skill) for c in dict.fromkeys(captions_by_skill[s])]
        skills = [s for s in sorted(captions_by_skill) for _ in dict.fromkeys(captions_by_skill[s])]
        known = set(captions)
        negatives = [n for n in dict.fromkeys(negatives) if n not in known]
        with torch.no_grad():
            emb = encoder.encode(captions + negatives).float().cpu().numpy()
        return cls(captions, skills, emb[:len(captions)], threshold, negatives=negatives,
                   negative_embeddings=emb[len(captions):], margin=margin)

    def verdict(self, text: str, embedding: Any) -> ScopeVerdict:
        """The verdict for one sentence's (D,) embedding."""
        e = torch.nn.functional.normalize(torch.as_tensor(embedding, dtype=torch.float32).reshape(1, -1).cpu(), dim=-1)
        if e.shape[1] != self.embeddings.shape[1]:
            raise ValueError(f"embedding has {e.shape[1]} values, the gate's captions {self.embeddings.shape[1]}")
        cos = (self.embeddings @ e[0]).clamp(-1.0, 1.0)
        per_skill = torch.full((len(self.skill_names),), -1.0).scatter_reduce(0, self._skill_of, cos, "amax")
        order = torch.argsort(per_skill, descending=True)[:TOP_K]
        closest = tuple((self.skill_names[int(i)], float(per_skill[i])) for i in order)
        negative = None
        said, skill_words = words(text), self._skill_words[closest[0][0]]
        new_words = said - skill_words  # what the nearest skill's captions never say
        cued = [i for i, neg in enumerate(self._negative_words)
                if neg & new_words or not neg & skill_words or neg <= said]
        if cued:
            neg_cos = (self.negative_embeddings[cued] @ e[0]).clamp(-1.0, 1.0)
            k = int(torch.argmax(neg_cos))
            negative = (self.negatives[cued[k]], float(neg_cos[k]))
        return ScopeVerdict(text=text, similarity=float(cos.max()), threshold=self.threshold, closest=closest,
                            nearest_negative=negative, margin=self.margin)

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
        return ScopeGate(self.captions, self.skills, self.embeddings.numpy(), threshold, negatives=self.negatives,
                         negative_embeddings=self.negative_embeddings.numpy(), margin=self.margin)

    def state(self) -> dict[str, Any]:
        """Plain data stored in a bundle (``from_state`` rebuilds the gate)."""
        return {"threshold": self.threshold, "captions": list(self.captions), "skills": list(self.skills),
                "embeddings": self.embeddings.numpy().astype(np.float32), "negatives": list(self.negatives),
                "negative_embeddings": self.negative_embeddings.numpy().astype(np.float32), "margin": self.margin}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "ScopeGate":
        """The gate of ``state()``; a state from before negatives has none."""
        return cls(state["captions"], state["skills"], state["embeddings"], state["threshold"],
                   negatives=state.get("negatives", ()), negative_embeddings=state.get("negative_embeddings"),
                   margin=state.get("margin", 0.0))


#: Words that say nothing about a motion (subjects, articles, prepositions).
_STOPWORDS = frozenset(
    "a an the person someone somebody robot man woman he she it they you i we is are be and or to of in on at with while "
    "his her its their your my this that".split())
_IRREGULAR = {"lies": "lie", "lying": "lie", "lay": "lie", "sat": "sit", "sitting": "sit", "does": "do", "did": "do",
              "goes": "go", "went": "go"}


def _stem(word: str) -> str:
    """A crude stem, enough to match a word across its forms (walks, walking, walked -> walk)."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("ing") and len(word) > 5:
        word = word[:-3]
        return word[:-1] if len(word) > 2 and word[-1] == word[-2] and word[-1] not in "ls" else word
    if word.endswith(("shes", "ches", "xes", "sses")):
        return word[:-2]
    if word.endswith("ed") and len(word) > 4:
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def words(text: str) -> set[str]:
    """The stems of a sentence's words, without `_STOPWORDS`."""
    return {_stem(w) for w in re.findall(r"[a-z]+", text.lower()) if w not in _STOPWORDS}


def third_person(verb: str) -> str:
    """``walk`` -> ``walks``, ``push`` -> ``pushes``, ``carry`` -> ``carries``, ``do`` -> ``does``."""
    irregular = {"be": "is", "have": "has"}
    if verb in irregular:
        return irregular[verb]
    if verb.endswith("y") and len(verb) > 1 and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    return verb + "s"


#: Subjects of the demo captions besides the imperative ("a person walks forward", "the robot ...").
SUBJECTS = ("a person", "the robot", "someone")


def negative_phrasings(imperative: str) -> list[str]:
    """One negative in each form the captions use: ``walk backwards`` -> ``walk backwards``, ``a person
    walks backwards``, ``the robot walks backwards``, ``someone walks backwards`` (module docstring)."""
    verb, _, rest = imperative.strip().partition(" ")
    said = " ".join([third_person(verb), rest]).strip()
    return [imperative.strip(), *(f"{subject} {said}" for subject in SUBJECTS)]


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
