#!/usr/bin/env python3
"""Measure the demo model's scope gate and what it generates for sentences never used in training.

Prints (1) the gate's acceptance table over thresholds, from in-scope paraphrases and out-of-scope
requests (test/data/demo_scope_phrases.yaml) against the training captions, (2) with ``--generate``,
per skill the share of (paraphrase, seed) pairs accepted by the gate AND recognised as their skill
by the demo skill recognizer (issue 18's target: >= 90% for >= 15 of 20 skills), (3) per-command text
latency (cold: a new sentence through the encoder and the gate; warm: cached).

    python benchmarks/demo_scope.py                                   # packaged bundle's gate
    python benchmarks/demo_scope.py --data data/demo                  # gate built from a dataset's captions
    python benchmarks/demo_scope.py --generate --seeds 5              # + generation by skill
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from momask_model.text.scope import ScopeGate, check_text  # noqa: E402

PHRASES = ROOT / "test" / "data" / "demo_scope_phrases.yaml"
THRESHOLDS = [round(x, 2) for x in np.arange(0.30, 0.751, 0.05)]


def gate_table(gate: ScopeGate, encoder, phrases: dict) -> tuple[list[str], dict]:
    inside = [(s, t) for s, ts in phrases["in_scope"].items() for t in ts]
    must = list(phrases["must_work"].items())
    outside = list(phrases["out_of_scope"])
    sim = {t: gate.check(t, encoder) for t in [t for _, t in inside] + [t for t, _ in must] + outside}
    lines = ["| threshold | in-scope accepted | out-of-scope rejected | must-work accepted |", "|---|---|---|---|"]
    for th in THRESHOLDS:
        acc = np.mean([sim[t].similarity >= th for _, t in inside])
        rej = np.mean([sim[t].similarity < th for t in outside])
        mw = sum(sim[t].similarity >= th for t, _ in must)
        mark = " **(bundle)**" if abs(th - gate.threshold) < 1e-6 else ""
        lines.append(f"| {th:.2f}{mark} | {acc:.1%} ({len(inside)}) | {rej:.1%} ({len(outside)}) | {mw}/{len(must)} |")
    if not any(abs(th - gate.threshold) < 1e-6 for th in THRESHOLDS):
        th = gate.threshold
        lines.append(f"| {th:.3f} **(bundle)** | {np.mean([sim[t].similarity >= th for _, t in inside]):.1%} | "
                     f"{np.mean([sim[t].similarity < th for t in outside]):.1%} | "
                     f"{sum(sim[t].similarity >= th for t, _ in must)}/{len(must)} |")
    nearest = np.mean([sim[t].skill == s for s, t in inside])
    in_sims = [sim[t].similarity for _, t in inside]
    out_sims = [sim[t].similarity for t in outside]
    stats = {
        "in_min": min(sim[t].similarity for _, t in inside),
        "in_p10": float(np.percentile([sim[t].similarity for _, t in inside], 10)),
        "out_max": max(sim[t].similarity for t in outside),
        "out_p90": float(np.percentile([sim[t].similarity for t in outside], 90)),
        "nearest_skill_is_label": float(nearest),
        "lowest_in": sorted(((sim[t].similarity, t) for _, t in inside))[:5],
        "highest_out": sorted(((sim[t].similarity, t) for t in outside), reverse=True)[:5],
        "must": {t: (round(sim[t].similarity, 3), sim[t].skill) for t, _ in must},
        "suggested_threshold": round(suggest_threshold(in_sims, out_sims), 3),
        "two_fold_held_out_accept_reject": cross_checked(in_sims, out_sims),
    }
    return lines, stats


def suggest_threshold(inside: list[float], outside: list[float]) -> float:
    """The threshold that maximises min(in-scope accepted, out-of-scope rejected), then their mean; the
    middle of the best interval between two measured similarities (so it does not sit on one)."""
    points = sorted(set(inside) | set(outside))
    cuts = [points[0] - 0.05] + [(a + b) / 2 for a, b in zip(points, points[1:])] + [points[-1] + 0.05]

    def score(th: float) -> tuple[float, float]:
        acc = np.mean([v >= th for v in inside])
        rej = np.mean([v < th for v in outside])
        return (min(acc, rej), acc + rej)

    best = max(score(c) for c in cuts)
    tied = [c for c in cuts if score(c) == best]
    lo = max([p for p in points if p < tied[0]], default=tied[0])  # the interval's measured ends
    hi = min([p for p in points if p > tied[-1]], default=tied[-1])
    return float((lo + hi) / 2)


def cross_checked(inside: list[float], outside: list[float]) -> tuple[float, float]:
    """Two-fold check of `suggest_threshold`: choose on every other phrase, measure on the rest."""
    accs, rejs = [], []
    for k in (0, 1):
        th = suggest_threshold(inside[k::2], outside[k::2])
        accs.append(np.mean([v >= th for v in inside[1 - k::2]]))
        rejs.append(np.mean([v < th for v in outside[1 - k::2]]))
    return float(np.mean(accs)), float(np.mean(rejs))


def generation_table(model, recognizer, phrases: dict, seeds: int) -> tuple[list[str], int]:
    skills = sorted(phrases["in_scope"])
    texts = [t for s in skills for t in phrases["in_scope"][s]]
    labels = [s for s in skills for _ in phrases["in_scope"][s]]
    texts += list(phrases["must_work"])
    labels += list(phrases["must_work"].values())
    accepted = [check_text(model, t) is None for t in texts]
    good = np.zeros(len(texts))
    for seed in range(seeds):
        result = model.generate(texts, seed=seed)
        pred = recognizer.predict([result.motion(i)[0] for i in range(len(texts))])
        good += [a and p == s for a, p, s in zip(accepted, pred, labels)]
    rate = good / seeds
    n_in = sum(len(phrases["in_scope"][s]) for s in skills)
    lines = ["| skill | accepted and recognised |", "|---|---|"]
    passed = 0
    for s in skills:
        r = float(np.mean([rate[i] for i in range(n_in) if labels[i] == s]))
        passed += r >= 0.9
        lines.append(f"| {s} | {r:.0%} |")
    lines.append(f"| **skills >= 90%** | **{passed} / {len(skills)}** |")
    lines.append(f"| all in-scope pairs | {float(np.mean(rate[:n_in])):.1%} |")
    for i in range(n_in, len(texts)):
        lines.append(f"| must work: {texts[i]!r} -> {labels[i]} | {rate[i]:.0%} |")
    return lines, passed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", type=Path, default=None, help="bundle (default: the packaged demo)")
    p.add_argument("--data", type=Path, default=None, help="build the gate from this dataset's train captions")
    p.add_argument("--threshold", type=float, default=None, help="threshold of a gate built with --data")
    p.add_argument("--encoder-only", action="store_true",
                   help="with --data: no bundle, the default sentence encoder (choose a threshold before training)")
    p.add_argument("--phrases", type=Path, default=PHRASES)
    p.add_argument("--generate", action="store_true", help="also generate and recognise every paraphrase")
    p.add_argument("--recognizer", type=Path, default=None, help="default: the packaged demo recognizer")
    p.add_argument("--seeds", type=int, default=5)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from momask_model.generation.bundle import load_bundle
    from momask_model.generation.bundle import default_bundle_path

    phrases = yaml.safe_load(args.phrases.read_text())
    t0 = time.perf_counter()
    if args.encoder_only:
        from types import SimpleNamespace

        from momask_model.text.sentence import SentenceTextEncoder

        encoder = SentenceTextEncoder()
        model = SimpleNamespace(text_encoder=encoder, scope_gate=None, encode_text=encoder.encode)
    else:
        model = load_bundle(args.bundle or default_bundle_path())
    print(f"model loaded in {time.perf_counter() - t0:.1f} s")
    if args.data is not None:
        from momask_model.data import DatasetLayout
        from momask_model.evaluate.skills import captions_by_skill

        th = args.threshold if args.threshold is not None else getattr(model.scope_gate, "threshold", 0.5)
        model.scope_gate = ScopeGate.build(model.text_encoder, captions_by_skill(DatasetLayout(args.data)), th)
    gate = model.scope_gate
    if gate is None:
        raise SystemExit("this bundle has no scope gate")
    print(f"gate: {len(gate.captions)} captions of {len(gate.skill_names)} skills, threshold {gate.threshold}")
    lines, stats = gate_table(gate, model.text_encoder, phrases)
    print("\n".join(lines))
    for k, v in stats.items():
        print(f"{k}: {v}")
    # per-command text latency: a sentence never seen (encoder + gate), then the same one again (cache)
    cold, warm = [], []
    for i in range(20):
        text = f"a person walks forward for {i + 7} steps"
        t = time.perf_counter()
        check_text(model, text)
        model.encode_text([text])
        cold.append(time.perf_counter() - t)
        t = time.perf_counter()
        check_text(model, text)
        model.encode_text([text])
        warm.append(time.perf_counter() - t)
    print(f"text latency per command: cold median {np.median(cold) * 1e3:.1f} ms (p90 "
          f"{np.percentile(cold, 90) * 1e3:.1f}), cached {np.median(warm) * 1e3:.2f} ms (1 thread)")
    if args.generate:
        from momask_model.evaluate.skills import SkillRecognizer

        rec_path = args.recognizer or Path(default_bundle_path()).with_name("demo_recognizer.pt")
        lines, _ = generation_table(model, SkillRecognizer.load(rec_path), phrases, args.seeds)
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
