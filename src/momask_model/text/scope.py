"""Whether a model can do what a sentence asks: the one text-acceptance rule of the node and the CLI.

A model trained on a few skills (the demo) makes *some* motion for any sentence; generating for a
request it has never seen ("a person swims") would be a silent guess. The `ScopeGate` compares the
sentence's embedding (the model's own text encoder) with those of its training captions: below a
threshold the request is out of scope, and the answer names the closest skills and their similarity.
The gate belongs to a bundle (``save_bundle`` stores it); HumanML3D models have none, and every text
passes.

A threshold alone cannot tell a skill from its near miss: "a person walks backwards" is as close to
"a person walks forward" (0.85) as most paraphrases are, because the encoder weighs the verb far above
the direction, object or posture. So a gate may also hold labelled *examples*, requests known to be in
scope (paraphrases) and out of it (a skill's verb with another direction, object or posture: "walks
backwards", "hops on one leg", "sits down"; other motions), and a `ScopeHead` fitted on them: above the
threshold, a sentence is in scope only when the head's score reaches its cut. A refusal names the
nearest out-of-scope example that was written as such (not a misspelt or reworded copy), so it still
says why in words a person wrote.

Bag-of-words bundles keep their older rule instead: a sentence with a word outside the captions'
vocabulary is refused (``unknown_words``). `check_text` applies whichever a model has.
"""
from __future__ import annotations

import json
import lzma
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Collection, Mapping, Sequence

import numpy as np
import torch

from momask_model.text.scope_head import ScopeHead, head_input, similarity_features

#: Closest skills named in a verdict.
TOP_K = 3


@dataclass(frozen=True)
class ScopeVerdict:
    """How close a sentence is to what the model was trained on.

    similarity: cosine to the nearest training caption; closest: (skill, cosine to that skill's nearest
    caption), best first; nearest_negative: (out-of-scope example, cosine) nearest the sentence, or None
    for a gate without examples; score, cut: the gate's `ScopeHead` score and the least it accepts (None
    without a head). in_scope: ``similarity >= threshold`` and ``score >= cut``.
    """

    text: str
    similarity: float
    threshold: float
    closest: tuple[tuple[str, float], ...]
    nearest_negative: tuple[str, float] | None = None
    score: float | None = None
    cut: float | None = None

    @property
    def below_cut(self) -> bool:
        return self.score is not None and self.score < self.cut

    @property
    def in_scope(self) -> bool:
        return self.similarity >= self.threshold and not self.below_cut

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
        if self.score is not None:
            out["score"], out["cut"] = round(self.score, 3), round(self.cut, 3)
        return out

    def message(self) -> str:
        near = ", ".join(f"{s} ({v:.2f})" for s, v in self.closest)
        if self.similarity < self.threshold:
            return (f"{self.text!r} is outside what this model was trained on: similarity {self.similarity:.2f} "
                    f"< {self.threshold:.2f} to its captions; closest skills: {near}")
        neg = "" if self.nearest_negative is None else \
            f"; nearest request it cannot do: {self.nearest_negative[0]!r} ({self.nearest_negative[1]:.2f})"
        return (f"{self.text!r} is outside what this model was trained on: scope score {self.score:.2f} < "
                f"{self.cut:.2f} (similarity {self.similarity:.2f} to its captions{neg}); closest skills: {near}")


def _unit(values: Any, rows: int, dim: int | None, what: str) -> torch.Tensor:
    v = torch.as_tensor(np.asarray(np.zeros((0, dim or 0)) if values is None else values, dtype=np.float32))
    if v.ndim != 2 or v.shape[0] != rows or (dim is not None and v.shape[1] != dim):
        raise ValueError(f"need one embedding row{'' if dim is None else f' of {dim} values'} per {what}, got "
                         f"{tuple(v.shape)} for {rows}")
    return torch.nn.functional.normalize(v, dim=-1)


def _codes(unit: torch.Tensor) -> torch.Tensor:
    """Captions are stored as int8 codes, each row scaled to +-127 (a cosine moves by < 1e-3), in tensors
    (a pickled numpy array takes half as much again); a gate always uses the decoded rows. Decoding and
    encoding again gives the same codes."""
    peak = unit.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.round(unit / peak * 127).to(torch.int8)


def _nibbles(unit: torch.Tensor) -> torch.Tensor:
    """Examples (thousands of rows, most of the bundle's gate) are stored in 4 bits a value, two to a byte:
    16 levels spread over each row's +-peak (a cosine moves by 0.006 on average; the cross-validated rates
    by a few tenths of a point), so that the demo bundle stays under 20 MB. The head is fitted on the
    decoded rows (`_unpack`), what a reloaded gate sees; decoding and encoding again gives the same bytes."""
    peak = unit.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12)
    codes = torch.round(unit / peak * 7.5 + 7.5).clamp(0, 15).to(torch.uint8).flatten()
    if len(codes) % 2:
        codes = torch.cat([codes, codes.new_zeros(1)])
    return codes[0::2] << 4 | codes[1::2]


def _unpack(packed: torch.Tensor, rows: int, dim: int) -> torch.Tensor:
    """The (rows, dim) levels of `_nibbles`' bytes, centred (-7.5 ... 7.5)."""
    if packed.dtype != torch.uint8 or packed.ndim != 1 or len(packed) != (rows * dim + 1) // 2:
        raise ValueError(f"need {(rows * dim + 1) // 2} bytes of 4-bit codes for {rows} examples of {dim} values, "
                         f"got {packed.dtype} {tuple(packed.shape)}")
    codes = torch.stack([packed >> 4, packed & 15], dim=-1).flatten()[:rows * dim]
    return codes.reshape(rows, dim).float() - 7.5


def _packed_texts(texts: Sequence[str]) -> torch.Tensor:
    """Example texts as one xz-compressed JSON list in a uint8 tensor: thousands of near repeats (each
    phrase in several forms and misspelt) shrink tenfold."""
    return torch.frombuffer(bytearray(lzma.compress(json.dumps(list(texts)).encode())), dtype=torch.uint8)


def _texts(stored: Any) -> list[str]:
    """The texts of `_packed_texts` (or a plain list, as older states hold)."""
    if isinstance(stored, torch.Tensor):
        try:
            return json.loads(lzma.decompress(stored.numpy().tobytes()).decode())
        except (lzma.LZMAError, ValueError) as e:
            raise ValueError(f"stored example texts are not an xz-compressed JSON list: {e}") from None
    return list(stored)


class ScopeGate:
    """Cosine similarity of a sentence embedding to the training captions', per skill, and a `ScopeHead`.

    Args:
        captions: training captions (one row of ``embeddings`` each).
        skills: the skill of each caption.
        embeddings: (N, D) caption embeddings from the model's text encoder.
        threshold: smallest accepted cosine to the nearest caption.
        examples: labelled requests (module docstring); none by default.
        example_labels: whether each example is in scope.
        example_embeddings: (M, D) their embeddings from the same encoder (or the bytes of a `state`).
        head: the `ScopeHead` fitted on them (`build`), or None: the threshold alone decides.
        example_originals: whether each example was written as it is (False: a misspelt or reworded
            copy, which a refusal never names); all by default.
    """

    def __init__(self, captions: Sequence[str], skills: Sequence[str], embeddings: Any, threshold: float, *,
                 examples: Sequence[str] = (), example_labels: Sequence[bool] = (), example_embeddings: Any = None,
                 head: ScopeHead | None = None, example_originals: Sequence[bool] = ()) -> None:
        if len(captions) != len(skills) or not len(captions):
            raise ValueError(f"need one skill per caption and at least one, got {len(captions)} captions, "
                             f"{len(skills)} skills")
        self._caption_codes = _codes(_unit(embeddings, len(captions), None, "caption"))
        self.embeddings = torch.nn.functional.normalize(self._caption_codes.float(), dim=-1)
        dim = self.embeddings.shape[1]
        if not -1.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold is a cosine in [-1, 1], got {threshold}")
        if len(example_labels) != len(examples):
            raise ValueError(f"need one label per example, got {len(example_labels)} for {len(examples)}")
        if len(example_originals) not in (0, len(examples)):
            raise ValueError(f"need one original flag per example, got {len(example_originals)} for {len(examples)}")
        if isinstance(example_embeddings, torch.Tensor) and example_embeddings.dtype == torch.uint8:
            example_embeddings = _unpack(example_embeddings, len(examples), dim)  # a stored gate's (`state`)
        self._example_codes = _nibbles(_unit(example_embeddings, len(examples), dim, "example"))
        self.example_embeddings = torch.nn.functional.normalize(_unpack(self._example_codes, len(examples), dim),
                                                                dim=-1)
        if head is not None and head.dim != dim:
            raise ValueError(f"the scope head takes {head.dim}-value embeddings, the gate's captions have {dim} "
                             f"(a head from another encoder or an older layout: refit it)")
        self.captions, self.skills = list(captions), list(skills)
        self.threshold = float(threshold)
        self.examples, self.example_labels = list(examples), [bool(v) for v in example_labels]
        self.example_originals = [bool(v) for v in example_originals] or [True] * len(self.examples)
        self.head = head
        labels = torch.tensor(self.example_labels, dtype=torch.bool)
        self._inside, self._outside = torch.where(labels)[0], torch.where(~labels)[0]
        named = ~labels & torch.tensor(self.example_originals, dtype=torch.bool)
        self._named = torch.where(named)[0] if named.any() else self._outside  # the negatives a refusal may name
        self._inside_rows = torch.cat([self.embeddings, self.example_embeddings[self._inside]])
        self.skill_names = sorted(set(self.skills))
        index = {s: i for i, s in enumerate(self.skill_names)}
        self._skill_of = torch.tensor([index[s] for s in self.skills])
        self._verdicts: OrderedDict[str, ScopeVerdict] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def negatives(self) -> list[str]:
        """The out-of-scope examples."""
        return [e for e, inside in zip(self.examples, self.example_labels) if not inside]

    @classmethod
    def build(cls, encoder: Any, captions_by_skill: Mapping[str, Sequence[str]], threshold: float, *,
              inside: Sequence[str] = (), outside: Sequence[str] = (), groups: Mapping[str, str] | None = None,
              cut: float = 0.5, seed: int = 0, copies: Collection[str] = ()) -> "ScopeGate":
        """Embed ``captions_by_skill`` and the ``inside`` / ``outside`` examples with ``encoder`` (anything
        with ``encode(list[str])``) and, given both kinds, fit the head. ``groups`` maps examples that say
        one thing in several forms to one name: fitting never lets an example see its own group.
        ``copies`` are examples made from others (misspelt, reworded), never named by a refusal."""
        captions = [c for s in sorted(captions_by_skill) for c in dict.fromkeys(captions_by_skill[s])]
        skills = [s for s in sorted(captions_by_skill) for _ in dict.fromkeys(captions_by_skill[s])]
        both = set(inside) & set(outside)
        if both:
            raise ValueError(f"examples both in and out of scope: {sorted(both)[:5]}")
        known, copied = set(captions), set(copies)
        labelled = {t: True for t in inside if t not in known}
        labelled.update({t: False for t in outside if t not in known})
        examples = list(labelled)
        with torch.no_grad():
            emb = encoder.encode(captions + examples).float().cpu()
        gate = cls(captions, skills, emb[:len(captions)].numpy(), threshold, examples=examples,
                   example_labels=list(labelled.values()), example_embeddings=emb[len(captions):].numpy(),
                   example_originals=[t not in copied for t in examples])
        if not gate._inside.numel() or not gate._outside.numel():
            return gate
        names = [f"caption {i}" for i in range(len(captions))] + [(groups or {}).get(t, t) for t in examples]
        code = {n: i for i, n in enumerate(dict.fromkeys(names))}
        g = torch.tensor([code[n] for n in names])
        rows = torch.cat([gate.embeddings, gate.example_embeddings])
        cos = (rows @ rows.T).masked_fill(g[:, None] == g[None, :], -2.0)  # leave each row's group out
        n = len(captions)
        features = similarity_features(cos[:, :n], cos[:, n + gate._inside], cos[:, n + gate._outside])
        labels = [True] * n + gate.example_labels
        inside = torch.cat([torch.arange(n), n + gate._inside])  # the rows of gate._inside_rows
        to_caption, to_inside = rows[cos[:, :n].argmax(-1)], gate._inside_rows[cos[:, inside].argmax(-1)]
        gate.head = ScopeHead.fit(head_input(rows, to_caption, to_inside), features, labels, cut, seed=seed)
        return gate

    def verdict(self, text: str, embedding: Any) -> ScopeVerdict:
        """The verdict for one sentence's (D,) embedding."""
        e = torch.nn.functional.normalize(torch.as_tensor(embedding, dtype=torch.float32).reshape(1, -1).cpu(), dim=-1)
        if e.shape[1] != self.embeddings.shape[1]:
            raise ValueError(f"embedding has {e.shape[1]} values, the gate's captions {self.embeddings.shape[1]}")
        cos = (self.embeddings @ e[0]).clamp(-1.0, 1.0)
        per_skill = torch.full((len(self.skill_names),), -1.0).scatter_reduce(0, self._skill_of, cos, "amax")
        order = torch.argsort(per_skill, descending=True)[:TOP_K]
        closest = tuple((self.skill_names[int(i)], float(per_skill[i])) for i in order)
        ex = (self.example_embeddings @ e[0]).clamp(-1.0, 1.0)
        negative = score = None
        if self._named.numel():
            k = int(self._named[int(torch.argmax(ex[self._named]))])
            negative = (self.examples[k], float(ex[k]))
        if self.head is not None:
            features = similarity_features(cos[None], ex[self._inside][None], ex[self._outside][None])
            nearest = self._inside_rows[int(torch.argmax(torch.cat([cos, ex[self._inside]])))]
            inputs = head_input(e, self.embeddings[int(torch.argmax(cos))][None], nearest[None])
            score = float(self.head.score(inputs, features)[0])
        return ScopeVerdict(text=text, similarity=float(cos.max()), threshold=self.threshold, closest=closest,
                            nearest_negative=negative, score=score, cut=None if self.head is None else self.head.cut)

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

    def with_threshold(self, threshold: float, cut: float | None = None) -> "ScopeGate":
        """The same gate at another threshold (and head cut)."""
        head = self.head if cut is None or self.head is None else self.head.with_cut(cut)
        return ScopeGate(self.captions, self.skills, self.embeddings.numpy(), threshold, examples=self.examples,
                         example_labels=self.example_labels, example_embeddings=self.example_embeddings.numpy(),
                         head=head, example_originals=self.example_originals)

    def state(self) -> dict[str, Any]:
        """Plain data stored in a bundle (``from_state`` rebuilds the gate)."""
        return {"threshold": self.threshold, "captions": list(self.captions), "skills": list(self.skills),
                "embeddings": self._caption_codes.clone(), "examples": _packed_texts(self.examples),
                "example_labels": list(self.example_labels), "example_embeddings": self._example_codes.clone(),
                "example_originals": list(self.example_originals),
                "head": None if self.head is None else self.head.state()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "ScopeGate":
        """The gate of ``state()``; a state from before examples (or with none) has the threshold alone."""
        head = state.get("head")
        return cls(state["captions"], state["skills"], state["embeddings"], state["threshold"],
                   examples=_texts(state.get("examples", ())), example_labels=state.get("example_labels", ()),
                   example_embeddings=state.get("example_embeddings"),
                   head=None if head is None else ScopeHead.from_state(head),
                   example_originals=state.get("example_originals", ()))


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
SUBJECTS = ("a person", "the robot", "someone", "a man", "a woman")
_SUBJECTS = (r"(a person|the person|the robot|someone|somebody|a man|the man|a woman|the woman|the figure|"
             r"the humanoid|he|she) ")
_SUBJECT = re.compile(_SUBJECTS)
#: A main clause after an opening one: "after warming up, the figure jogs" -> ", the figure ".
_CLAUSE_SUBJECT = re.compile(", " + _SUBJECTS)
#: First words that make a sentence neither imperative nor one of `_SUBJECT`'s.
_NOT_VERBS = frozenset("a an the his her their my your i we they you it this that what how".split())
#: First words of an opening clause ("after a short pause, ...", "while kneeling, ..."), never a verb.
_OPENERS = frozenset("after before while when whenever once as with without from if then during since until "
                     "having being in on at by for like keeping still now first again".split())


def _participle(word: str) -> bool:
    """"walking", "lying": an opening clause, not a verb ("swing", "bring", "spring")."""
    return word.endswith("ing") and (len(word) >= 7 or word in ("lying", "going", "doing"))


def _said(verb: str, rest: str) -> str | None:
    """The predicate of an imperative for a subject (``walk``, ``ahead`` -> ``walks ahead``), or None
    when the first word is no verb."""
    word = verb.lower().rstrip("!?.,")
    if not word.isalpha() or word in _NOT_VERBS or word in _OPENERS:
        return None
    if len(word) >= 6 and word.endswith("ly"):  # an adverb first: "slowly walk" -> "slowly walks"
        verb, _, rest = rest.partition(" ")
        inner = _said(verb, rest)
        return None if inner is None else f"{word} {inner}"
    return " ".join([third_person(word), rest]).strip()


def phrasings(sentence: str) -> list[str]:
    """A sentence in each form the captions use, itself first: ``walk backwards`` -> ``walk backwards``,
    ``a person walks backwards``, ``the robot walks backwards``...; ``he sneaks ahead`` -> ``he sneaks
    ahead``, ``a person sneaks ahead``... An opening clause stays as it is ("after a pause, the figure
    jogs" -> "after a pause, a person jogs"; "after a pause, jog" -> "after a pause, a person jogs");
    a sentence whose main clause cannot be told (another subject, a question, two commas before an
    imperative) is itself alone. An embedding leans towards a phrase with its own subject ("the robot X"
    towards "the robot Y"), so examples come in every form."""
    text = " ".join(sentence.split())
    lower = text.lower()
    head, said = "", None
    subject = _SUBJECT.match(lower)
    if subject:
        said = text[subject.end():]
    elif (clause := _CLAUSE_SUBJECT.search(lower)) is not None and not _SUBJECT.search(lower[:clause.start()]):
        head, said = text[:clause.start() + 2], text[clause.end():]
    elif (first := lower.split(" ", 1)[0].rstrip(",")) in _OPENERS or _participle(first):
        if lower.count(",") == 1:  # "after a short pause, jump sideways": one opening clause, an imperative
            head, _, main = text.partition(", ")
            verb, _, rest = main.partition(" ")
            said, head = _said(verb, rest), head + ", "
    else:
        verb, _, rest = text.partition(" ")
        said = _said(verb, rest)
    if said is None:
        return [text]
    return list(dict.fromkeys([text, *(f"{head}{s} {said}" for s in SUBJECTS)]))


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
