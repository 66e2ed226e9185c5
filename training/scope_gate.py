#!/usr/bin/env python3
"""The demo bundle's scope gate (issue 24): its examples and settings, and rebuilding it in a bundle in place.

The gate holds the bundle's training captions, labelled examples and a `ScopeHead` fitted on them
(`momask_model.text.scope`): in scope, the paraphrases of test/data/demo_scope_phrases.yaml (`INSIDE`
keys); out of scope, its other sentences and the negatives of ``demo_scope_negatives.yaml`` in the
forms the captions use (`momask_model.text.scope.phrasings`, `FORMS` of them); each phrase in those
forms too, once misspelt (`typos`; the in-scope ones also in a short key word: "rn", "kcik") and, in
scope or near it, after an opening clause (`clause_first`). `CUT`, `TYPOS` (and the head's `TOP`,
features and learning rate) were chosen by 5-fold cross-validation over the phrases
(``benchmarks/demo_scope.py``: each fifth judged by a gate fitted without it), the cut maximising the
smaller rate. With the eighth round folded in (and the copies above): 96.8% of 844 in-scope sentences
accepted, 96.4% of 693 out of scope refused (94.2% of the 398 near-scope ones), cut 0.55. Its choices,
each against the one before (accepted / refused / near-scope, at the best cut): round 8 folded in, the
gate as it was, 97.0 / 96.2 / 94.0 (cut 0.55); the negative "jump straight up" dropped, as it contradicted
in-scope phrases ("jump up", "Jump up!") 96.8 / 96.4 / 94.2 (0.55). Tried and left out: 80 in-scope
examples written by category after the eighth round (a story before the action, a polite request, a
technical or playful synonym, the skill in a near miss's words with its own direction), trained in every
fold and never judged, 96.7 / 96.1 / 93.7 (the first three categories only: 96.4 / 96.1 / 93.7), and
they were written after seeing the misses, so even that is optimistic; weight decay 1e-4 tied
(97.0 / 96.2 / 94.0); 2000 epochs 96.8 / 96.2 / 94.0 (cut 0.6); threshold 0.35 tied; a tenth feature,
the in-scope share of the 10 nearest examples, 96.9 / 96.2 / 94.0; what a sentence adds to its nearest
out-of-scope example as a fourth head input 95.6 / 96.7 / 94.7 (0.6); the two regressions weighed 0.3 /
0.7 96.1 / 95.7 (0.65) or 0.7 / 0.3 95.6 / 95.8 (0.55); ten scene-setting `PREAMBLES` ("after stepping
out of the car onto the quiet street") added 97.0 / 96.1 / 93.7 (0.55), instead of these 96.3 / 96.1;
learning rate 0.1 96.8 / 96.2 (0.6), 0.01 96.4 / 96.4 (0.55). Most differences are a few of the 1537
verdicts. With the seventh round folded in,
before these: 96.4 / 95.9 / 93.0 (745 in, 581 out, 330 near), cut 0.55, from these choices, each against
the one before: round 7 folded in, the
gate as it was, 95.0 / 94.5 / 90.9 (cut 0.55; 0.5: 95.6 / 94.3 / 90.6); examples stored in 4 bits
(`momask_model.text.scope`, for the size limit) 95.6 / 94.7 / 91.2 (0.55; 8 of 1326 verdicts moved);
the negatives written by category after the seventh round (a skill begun and not finished, with a prop
or partner, other paths, other postures, a skill's word in another sense) 95.8 / 95.4 / 92.1 (0.5);
the head's embedding regression also given what a sentence adds to its nearest caption and nearest
in-scope sentence (`momask_model.text.scope_head.head_input`) 96.4 / 95.9 / 93.0 (0.55; the nearest
in-scope sentence alone 95.6 / 96.0 / 93.3, the nearest caption alone 95.8 / 95.7 / 92.7). With the
sixth round folded in, before these: 97.1 / 97.7 / 96.3 (645 in, 481 out, 269 near). Before it, each
choice against the one before (accepted / refused): the single-nearest features 97.8 / 97.1 (three
similarities: 97.6 / 96.8); one typo per phrase (none: 97.2 / 97.1; two, with three similarities:
97.4 / 96.8); learning rate 0.03 98.0 / 97.1 (0.01: 97.8 / 97.1; 0.1: 97.2 / 97.4); TOP 3, 5 or 8
and weight decay 1e-2 tie; threshold 0.30 did no better (97.8 / 96.8). The seventh held-out round
(test/data/demo_scope_heldout_4.yaml), written blind, was measured once with the gate before these
choices: 94.0% accepted, 82.7% refused (near-scope 71.0%); the gate before that on it: 93.0% / 79.8%.
It is tuning data since (`*_round7` keys). The eighth round (test/data/demo_scope_heldout_5.yaml),
measured once with the round-7 gate: 93.0% accepted, 93.9% refused (near-scope 90.0%); the previous gate
on it: 93.0% / 87.0%. It is tuning data since (`*_round8` keys); the ninth
(test/data/demo_scope_heldout_6.yaml), written blind, measured once on this gate: 97.0% accepted,
97.6% refused (near-scope 97.4%); the previous gate on it: 92.0% / 94.4%.

Only the bundle's ``scope`` entry changes (the weights and everything else are written back as read):

    training/scope_gate.py [--bundle src/momask_model/assets/demo_bundle.pt]
"""
from __future__ import annotations

import argparse
import random
import sys
import zlib
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from momask_model.config import MoMaskConfig  # noqa: E402
from momask_model.text.encoders import build_text_encoder  # noqa: E402
from momask_model.text.scope import SUBJECTS, ScopeGate, phrasings  # noqa: E402

#: Smallest accepted cosine to the nearest training caption (below it the head is not asked).
THRESHOLD = 0.40
#: Least `ScopeHead` score accepted.
CUT = 0.55
#: Misspelt copies of each example phrase (one key word each, `typos`); users type "kcik" and "dnace".
TYPOS = 1
#: Forms with a subject per example (`phrasings`: "a person", "the robot", "someone"); "a man" and
#: "a woman" forms were left out after the sixth round: nearly the "a person" one, and the bundle must
#: stay under 20 MiB (test_demo_model.py).
FORMS = 3
#: Words never misspelt by `typos`: a request's key word is its verb, object or manner, not a
#: preposition or the subject.
_NOT_KEY = frozenset("about after again along around away back before down from into like over onto that their then "
                     "there they this through towards under with without your figure humanoid somebody the and its "
                     "his her him for you are was one two off out own has had all any but can not too who how why "
                     "them than what when some much many very each been were will does get got".split()
                     + [w for s in SUBJECTS for w in s.split()])
NEGATIVES = Path(__file__).resolve().with_name("demo_scope_negatives.yaml")
PHRASES = ROOT / "test" / "data" / "demo_scope_phrases.yaml"
#: Keys of the phrases file whose sentences are in scope (dicts of skill -> sentences, or sentence -> skill).
INSIDE = ("in_scope", "in_scope_more", "in_scope_round4", "in_scope_round5", "in_scope_round6", "in_scope_round7",
          "in_scope_round8", "short_commands", "must_work")
#: Keys whose sentences are near misses of a skill (lists; out of scope).
NEAR = ("near_scope", "near_scope_round4", "near_scope_round5", "near_scope_round6", "near_scope_round7",
        "near_scope_round8")
#: Keys whose sentences are out of scope (lists).
OUTSIDE = ("out_of_scope", "out_of_scope_more", "out_of_scope_round4", "out_of_scope_round5", "out_of_scope_round6",
           "out_of_scope_round7", "out_of_scope_round8", *NEAR)
#: Opening clauses of the `clause_first` copies: they say nothing about the motion, so the copy keeps its
#: label. Users preface requests ("with its arms swinging, the robot ..."), which moves the embedding.
PREAMBLES = ("after standing still for a moment", "when the signal is given", "starting from where it stands",
             "once it is ready", "without saying a word", "in the middle of the room", "after taking a deep breath",
             "to show what it can do", "as soon as it hears its name", "at the start of the recording")


def phrase_examples(phrases: dict) -> tuple[list[str], list[str]]:
    """(in-scope, out-of-scope) sentences of a phrases file's data."""
    inside = []
    for key in INSIDE:
        for k, v in phrases.get(key, {}).items():
            inside += v if isinstance(v, list) else [k]
    return inside, [t for key in OUTSIDE for t in phrases.get(key, [])]


def near_examples(phrases: dict) -> set[str]:
    """The phrases' near misses of a skill (`NEAR` keys; out of scope)."""
    return {t for key in NEAR for t in phrases.get(key, [])}


def demo_negatives(path: Path = NEGATIVES) -> dict[str, str]:
    """The negatives file's imperatives, each in every caption form: phrase -> its imperative."""
    return {p: n for n in yaml.safe_load(Path(path).read_text())["negatives"] for p in phrasings(n)[:1 + FORMS]}


def typos(text: str, n: int = TYPOS, short: bool = True) -> list[str]:
    """``n`` copies of ``text``, each with one key word of 3+ letters misspelt by one keystroke (two
    letters swapped, one dropped, doubled or replaced), then with ``short`` one more of its first key
    word of 3-5 letters ("run" -> "rn", "kick" -> "kcik", "roll" -> "rol": swapped, dropped or doubled),
    which a random pick among longer words seldom chooses; deterministic per text. The encoder splits a
    misspelt word into other word pieces, so a typo moves a request away from its skill; the copies
    (labelled as their phrase, in its group) teach the head that a typo of a skill is still the skill,
    and of a near miss still a near miss."""
    rng = random.Random(zlib.crc32(text.encode()))
    words = text.split()
    spots = [i for i, w in enumerate(words) if len(w) >= 3 and w.isalpha() and w.lower() not in _NOT_KEY]
    spots_short = [i for i in spots if len(words[i]) <= 5]
    out: list[str] = []

    def misspell(i: int, ops: int) -> None:
        w, j, op = words[i], rng.randrange(len(words[i]) - 1), rng.randrange(ops)
        w = (w[:j] + w[j + 1] + w[j] + w[j + 2:], w[:j] + w[j + 1:], w[:j] + w[j] + w[j:],
             w[:j] + rng.choice("abcdefghijklmnopqrstuvwxyz") + w[j + 1:])[op]
        typo = " ".join(words[:i] + [w] + words[i + 1:])
        if typo != text and typo not in out:
            out.append(typo)

    for _ in range(4 * n):
        if len(out) >= n or not spots:
            break
        misspell(rng.choice(spots), 4)
    for _ in range(4 if short and spots_short and n else 0):
        if len(out) > n:
            break
        misspell(spots_short[0], 3)
    return out


def clause_first(text: str) -> str | None:
    """``text`` with an opening clause that says nothing about the motion, said with one of the captions'
    subjects ("walk backwards" -> "once it is ready, someone walks backwards"), deterministic per text;
    None for a sentence that has a clause already or no form with a subject (`phrasings`)."""
    forms = phrasings(text)
    if "," in text or len(forms) < 2:
        return None
    rng = random.Random(zlib.crc32(text.encode()) + 1)
    return f"{rng.choice(PREAMBLES)}, {rng.choice(forms[1:1 + FORMS])}"


def demo_gate(encoder, captions_by_skill: dict[str, list[str]], phrases: dict | None = None, *,
              negatives: dict[str, str] | None = None, threshold: float = THRESHOLD, cut: float = CUT,
              n_typos: int = TYPOS) -> ScopeGate:
    """The demo's gate over ``captions_by_skill`` (embedded with the bundle's own text ``encoder``),
    fitted on ``phrases`` (default: the phrases file) and ``negatives`` (default: the negatives file).
    Each phrase also comes in the captions' other forms (`phrasings`), misspelt (`typos`; a short key
    word too for the in-scope ones) and, in scope or near it, after an opening clause (`clause_first`),
    one group with it, unless that form is already an example (the bundle's size limit allows no more).
    Those copies and the negatives' forms are never named by a refusal (`ScopeGate.build`)."""
    phrases = yaml.safe_load(PHRASES.read_text()) if phrases is None else phrases
    inside, outside = phrase_examples(phrases)
    near = near_examples(phrases)
    negatives = demo_negatives() if negatives is None else negatives
    label = {**dict.fromkeys(inside, True), **dict.fromkeys(outside, False), **dict.fromkeys(negatives, False)}
    groups = dict(negatives)
    copies = {form for form, n in negatives.items() if form != n}

    def add(copy: str, text: str) -> None:
        if copy not in label:
            label[copy], groups[copy] = label[text], groups.get(text, text)
            copies.add(copy)

    for text in inside + outside:
        for form in phrasings(text)[1:1 + FORMS]:
            add(form, text)
    originals = list(dict.fromkeys(inside + outside + [n for n in negatives.values() if n in label]))
    for text in originals:
        for typo in typos(text, n_typos, short=label[text]):
            add(typo, text)
    for text in originals:
        if label[text] or text in near:
            if (longer := clause_first(text)) is not None:
                add(longer, text)
    return ScopeGate.build(encoder, captions_by_skill, threshold, inside=[t for t, v in label.items() if v],
                           outside=[t for t, v in label.items() if not v], groups=groups, cut=cut, copies=copies)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, default=ROOT / "src" / "momask_model" / "assets" / "demo_bundle.pt")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    payload = torch.load(args.bundle, map_location="cpu", weights_only=False)
    old = payload.get("scope")
    if old is None:
        raise SystemExit(f"{args.bundle} has no scope gate to rebuild")
    captions: dict[str, list[str]] = {}
    for caption, skill in zip(old["captions"], old["skills"]):
        captions.setdefault(skill, []).append(caption)
    # the bundle's own encoder, built without its old gate (whose head may have another shape)
    encoder = build_text_encoder(MoMaskConfig.from_dict(payload["config"]).text_encoder, payload.get("text_encoder"))
    gate = demo_gate(encoder.eval(), captions)
    payload["scope"] = gate.state()
    tmp = args.bundle.with_name(args.bundle.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(args.bundle)
    print(f"{args.bundle}: gate of {len(gate.captions)} captions, {len(gate.examples)} examples "
          f"({len(gate.negatives)} out of scope), threshold {gate.threshold}, cut {gate.head.cut} (was threshold "
          f"{old['threshold']}); {args.bundle.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
