#!/usr/bin/env python3
"""The demo bundle's scope gate (issue 24): its examples and settings, and rebuilding it in a bundle in place.

The gate holds the bundle's training captions, labelled examples and a `ScopeHead` fitted on them
(`momask_model.text.scope`): in scope, the paraphrases of test/data/demo_scope_phrases.yaml (`INSIDE`
keys); out of scope, its other sentences and the negatives of ``demo_scope_negatives.yaml`` in every
form the captions use (`momask_model.text.scope.phrasings`); each phrase in those forms too. `CUT`
(and the head's `TOP`) were chosen by 5-fold cross-validation over the phrases (``benchmarks/demo_scope.py``:
each fifth judged by a gate fitted without it), the cut maximising the smaller rate: 97.8% of 445
in-scope sentences accepted, 97.9% of 287 out of scope refused (96.8% of the 157 near-scope ones); the
threshold barely matters below the head (0.35-0.45 within 0.3 points). The held-out round
(``benchmarks/demo_scope_heldout.py``) was measured once, after: 92.0% accepted, 93.5% refused.

Only the bundle's ``scope`` entry changes (the weights and everything else are written back as read):

    training/scope_gate.py [--bundle src/momask_model/assets/demo_bundle.pt]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from momask_model.generation.bundle import load_bundle  # noqa: E402
from momask_model.text.scope import ScopeGate, phrasings  # noqa: E402

#: Smallest accepted cosine to the nearest training caption (below it the head is not asked).
THRESHOLD = 0.40
#: Least `ScopeHead` score accepted.
CUT = 0.5
NEGATIVES = Path(__file__).resolve().with_name("demo_scope_negatives.yaml")
PHRASES = ROOT / "test" / "data" / "demo_scope_phrases.yaml"
#: Keys of the phrases file whose sentences are in scope (dicts of skill -> sentences, or sentence -> skill).
INSIDE = ("in_scope", "in_scope_more", "in_scope_round4", "short_commands", "must_work")
#: Keys whose sentences are out of scope (lists).
OUTSIDE = ("out_of_scope", "out_of_scope_more", "near_scope", "near_scope_round4", "out_of_scope_round4")


def phrase_examples(phrases: dict) -> tuple[list[str], list[str]]:
    """(in-scope, out-of-scope) sentences of a phrases file's data."""
    inside = []
    for key in INSIDE:
        for k, v in phrases.get(key, {}).items():
            inside += v if isinstance(v, list) else [k]
    return inside, [t for key in OUTSIDE for t in phrases.get(key, [])]


def demo_negatives(path: Path = NEGATIVES) -> dict[str, str]:
    """The negatives file's imperatives, each in every caption form: phrase -> its imperative."""
    return {p: n for n in yaml.safe_load(Path(path).read_text())["negatives"] for p in phrasings(n)}


def demo_gate(encoder, captions_by_skill: dict[str, list[str]], phrases: dict | None = None, *,
              negatives: dict[str, str] | None = None, threshold: float = THRESHOLD, cut: float = CUT) -> ScopeGate:
    """The demo's gate over ``captions_by_skill`` (embedded with the bundle's own text ``encoder``),
    fitted on ``phrases`` (default: the phrases file) and ``negatives`` (default: the negatives file).
    Each phrase also comes in the captions' other forms (`phrasings`), one group with it, unless that
    form is already an example."""
    inside, outside = phrase_examples(yaml.safe_load(PHRASES.read_text()) if phrases is None else phrases)
    negatives = demo_negatives() if negatives is None else negatives
    label = {**dict.fromkeys(inside, True), **dict.fromkeys(outside, False), **dict.fromkeys(negatives, False)}
    groups = dict(negatives)
    for text in inside + outside:
        for form in phrasings(text)[1:]:
            if form not in label:
                label[form], groups[form] = label[text], groups.get(text, text)
    return ScopeGate.build(encoder, captions_by_skill, threshold, inside=[t for t, v in label.items() if v],
                           outside=[t for t, v in label.items() if not v], groups=groups, cut=cut)


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
    gate = demo_gate(load_bundle(args.bundle).text_encoder, captions)
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
