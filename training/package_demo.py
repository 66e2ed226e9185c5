#!/usr/bin/env python3
"""Package a trained demo run into the files the package ships (src/momask_model/assets/).

* ``demo_bundle.pt``: the MoMask bundle (what `momask-generate` and the node load by default), with
  its scope gate: the train captions' sentence embeddings, negatives and the threshold below which a
  request is out of scope (training/scope_gate.py, chosen from benchmarks/demo_scope.py's measurements);
* ``demo_recognizer.pt``: the demo evaluator plus per-skill centroids of its motion embeddings on the
  training split, used by the test that checks generated motions are recognised as their skill.

Usage: training/package_demo.py --run RUN_DIR --data DEMO_DATA [--assets src/momask_model/assets]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from momask_model.generation.bundle import load_bundle, save_bundle  # noqa: E402
from momask_model.data import DatasetLayout  # noqa: E402
from momask_model.data.mocap.demo_skills import SKILLS  # noqa: E402
from momask_model.evaluate.evaluator import load_evaluator  # noqa: E402
from momask_model.evaluate.skills import SkillRecognizer, captions_by_skill  # noqa: E402
from scope_gate import demo_gate  # noqa: E402  (training/scope_gate.py: the gate's negatives, threshold, margin)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="run folder of training/run_all.sh")
    p.add_argument("--data", type=Path, required=True, help="demo dataset (training/build_demo_dataset.py)")
    p.add_argument("--assets", type=Path, default=ROOT / "src" / "momask_model" / "assets")
    args = p.parse_args(argv)

    layout = DatasetLayout(args.data)
    evaluator = load_evaluator(args.run / "evaluator" / "evaluator.pt")
    motions = {i: layout.load_features(i) for i in layout.split_ids("train")}
    recognizer = SkillRecognizer.fit(evaluator, motions)
    test = {i: layout.load_features(i) for i in layout.split_ids("test")}
    ids = sorted(test)
    pred = recognizer.predict([test[i] for i in ids])
    from momask_model.evaluate.skills import skill_of_id

    acc = np.mean([p == skill_of_id(i) for p, i in zip(pred, ids)])
    print(f"recognizer: {len(recognizer.skills)} skills, accuracy on real test motions {acc:.3f}")
    args.assets.mkdir(parents=True, exist_ok=True)
    recognizer.save(args.assets / "demo_recognizer.pt")
    # the bundle carries its skills, so the node can tell users what the demo model knows
    model = load_bundle(args.run / "momask_bundle.pt")
    model.scope_gate = demo_gate(model.text_encoder, captions_by_skill(layout, "train"))
    print(f"scope gate: {len(model.scope_gate.captions)} captions, {len(model.scope_gate.negatives)} negatives, "
          f"threshold {model.scope_gate.threshold}")
    meta = {**getattr(model, "bundle_meta", {}), "skills": sorted(SKILLS), "trained_on": "DeepMimic mocap (20 clips)"}
    save_bundle(model, args.assets / "demo_bundle.pt", meta=meta)
    for name in ("demo_bundle.pt", "demo_recognizer.pt"):
        print(f"{args.assets / name}: {(args.assets / name).stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
