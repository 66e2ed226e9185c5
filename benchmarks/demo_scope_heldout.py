#!/usr/bin/env python3
"""The demo model's scope gate on its held-out round (issue 24's honest figures; targets >= 95% each).

The round (test/data/demo_scope_heldout_6.yaml, the ninth) was written apart from the training
captions, the gate's examples (test/data/demo_scope_phrases.yaml, training/demo_scope_negatives.yaml)
and the earlier rounds, before the gate it measures existed, and is never used to choose anything:
``IN_SCOPE`` asks for the 20 demo skills in new words, ``NEAR_SCOPE`` uses a skill's verb (or posture)
with another direction, object or posture, ``FAR`` asks for motions (or things) far from every skill.
A round measured once and then used to revise the gate joins the phrases file (as the fourth to
eighth did: ``*_round4`` ... ``*_round8``) and a new one is written.

    python benchmarks/demo_scope_heldout.py [--bundle B] [--heldout test/data/demo_scope_heldout_6.yaml]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

HELDOUT = ROOT / "test" / "data" / "demo_scope_heldout_6.yaml"
#: The requests issue 24 names: (text, whether the demo should take it).
ISSUE_24 = [("the figure sprints forward quickly", True), ("a person sits down", False),
            ("a person walks backwards", False), ("a person hops on one leg", False)]


def load(path: Path = HELDOUT) -> tuple[dict[str, list[str]], list[str], list[str]]:
    """(in scope by skill, near scope, far) of a held-out round; SystemExit with one line when the file
    is missing or lacks those keys."""
    try:
        data = yaml.safe_load(Path(path).read_text())
        in_scope, near, far = data["in_scope"], data["near_scope"], data["far"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        raise SystemExit(f"{path}: not a held-out round (in_scope, near_scope, far): {type(e).__name__}: {e}") from None
    if not (isinstance(in_scope, dict) and isinstance(near, list) and isinstance(far, list)):
        raise SystemExit(f"{path}: in_scope must map skills to sentences, near_scope and far be lists")
    return in_scope, near, far


def heldout_table(gate, encoder, path: Path = HELDOUT) -> list[str]:
    """The gate on a held-out round and on issue 24's requests, at its own threshold and cut."""
    in_scope, near, far = load(path)
    inside = [t for ts in in_scope.values() for t in ts]
    v = {t: gate.check(t, encoder) for t in inside + near + far}
    out = near + far
    cut = "" if gate.head is None else f", cut {gate.head.cut:.3g}"
    lines = [f"held-out sentences ({Path(path).name}), threshold {gate.threshold:.3g}{cut}:",
             f"  in scope accepted:     {np.mean([v[t].in_scope for t in inside]):.1%} ({len(inside)})",
             f"  out of scope refused:  {np.mean([not v[t].in_scope for t in out]):.1%} ({len(out)}): "
             f"near scope {np.mean([not v[t].in_scope for t in near]):.1%} ({len(near)}), "
             f"far {np.mean([not v[t].in_scope for t in far]):.1%} ({len(far)})"]
    lines += [f"  refused, in scope: {v[t].message()}" for t in inside if not v[t].in_scope]
    lines += [f"  accepted, out of scope: {t!r} (similarity {v[t].similarity:.2f} to {v[t].skill}, score "
              f"{v[t].score if v[t].score is None else round(v[t].score, 2)})" for t in out if v[t].in_scope]
    skill_of = {t: s for s, ts in in_scope.items() for t in ts}
    lines.append(f"  nearest skill is the sentence's: {np.mean([v[t].skill == skill_of[t] for t in inside]):.1%}")
    lines.append("issue 24's requests:")
    for text, want in ISSUE_24:
        r = gate.check(text, encoder)
        verdict = "accepted" if r.in_scope else "refused"
        ok = "as it should" if r.in_scope == want else "WRONG"
        lines.append(f"  {text!r}: {verdict} ({ok}); similarity {r.similarity:.3f} to {r.skill}, score "
                     f"{r.score if r.score is None else round(r.score, 3)}, nearest negative {r.nearest_negative}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", type=Path, default=None, help="bundle (default: the packaged demo)")
    p.add_argument("--heldout", type=Path, default=HELDOUT)
    args = p.parse_args(argv)
    load(args.heldout)  # a missing or malformed round fails in one line, before the model loads
    import torch

    torch.set_num_threads(1)
    from momask_model.generation.bundle import load_bundle
    from momask_model.generation.loading import default_bundle_path

    model = load_bundle(args.bundle or default_bundle_path())
    if model.scope_gate is None:
        raise SystemExit("this bundle has no scope gate")
    print("\n".join(heldout_table(model.scope_gate, model.text_encoder, args.heldout)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
