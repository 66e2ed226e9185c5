"""Do edits do what their text says? Skill edits of a demo walk, judged by the skill recognizer.

For each edit mode and section, a 6 s demo walk (seeds 0-4) has the section regenerated as a jump,
a kick and a spin. It prints, per skill, in how many seeds the skill recognizer
(`momask_model.evaluate.skills`, the packaged ``demo_recognizer.pt``) names the edited section that
skill (target: >= 4 of 5) from the result's features, what it named, the same count from features
re-extracted from the result's joints (what a viewer sees, joins included; IK-based, so noisier),
and how much worse than the VQ floor the kept sections are (root-relative mean joint error of a kept
section against the source, minus that of the source re-encoded without an edit; largest over
sections and seeds) [cm].

    python benchmarks/bench_edits.py [--modes inpaint splice] [--sections 2s:4s 1.5s:4.5s] [--seeds 5]
        [--source "a person jogs forward"] [--edits "kick=a person kicks with the right leg" ...]
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from momask_model.evaluate.skills import SkillRecognizer  # noqa: E402
from momask_model.generation.bundle import load_bundle  # noqa: E402
from momask_model.generation.editing import kept_sections, source_joints  # noqa: E402
from momask_model.generation.loading import default_bundle_path  # noqa: E402
from momask_model.motion.features import joints_to_features  # noqa: E402
from momask_model.motion.ground_alignment import aligned_error  # noqa: E402

WALK = "a person walks forward"
EDITS = {"jump": "a person jumps", "kick": "a person kicks", "spin": "a person spins around"}
FRAMES = 120


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", nargs="+", default=["inpaint", "splice"])
    p.add_argument("--sections", nargs="+", default=["2s:4s", "1.5s:4.5s"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--source", default=WALK, help="text of the source motion (default: %(default)r)")
    p.add_argument("--edits", nargs="+", default=[f"{k}={v}" for k, v in EDITS.items()],
                   help="skill=text pairs, the skill being the recognizer's name (default: jump, kick, spin)")
    p.add_argument("--cond-scale", type=float, default=None, help="masked-transformer guidance (default: the bundle's)")
    args = p.parse_args(argv)
    if not all("=" in e for e in args.edits):
        p.error("--edits takes skill=text pairs, e.g. 'kick=a person kicks with the right leg'")
    edits = dict(e.split("=", 1) for e in args.edits)
    model = load_bundle(default_bundle_path())
    recognizer = SkillRecognizer.load(default_bundle_path().with_name("demo_recognizer.pt"))
    sources = [model.generate(args.source, FRAMES, seed=s) for s in range(args.seeds)]
    floors = [model.edit(src, [], None).joints[0] for src in sources]
    print(f"demo model, {FRAMES / 20:g} s of {args.source!r}, seeds 0-{args.seeds - 1}, edited with {edits}\n")
    print("| mode | section | skill | recognised | named | from joints | kept vs floor, worst (cm) |")
    print("|---|---|---|---|---|---|---|")
    for mode in args.modes:
        for section in args.sections:
            for skill, text in edits.items():
                named, seen, excess = [], [], []
                for seed, (src, recon) in enumerate(zip(sources, floors)):
                    out = model.edit(src, [section], text, seed=100 + seed, mode=mode, cond_scale=args.cond_scale)
                    (a, b), = out.marks
                    named.append(recognizer.predict([out.features[0, a:b]])[0])
                    seen.append(recognizer.predict([joints_to_features(out.joints[0, a:b])])[0])
                    joints = source_joints(model, src)
                    for ka, kb in kept_sections(out.marks, FRAMES):
                        excess.append(aligned_error(joints[ka:kb], out.joints[0, ka:kb])
                                      - aligned_error(joints[ka:kb], recon[ka:kb]))
                hits = sum(n == skill for n in named)
                counts = ", ".join(f"{k} {v}" for k, v in Counter(named).most_common())
                seen_hits = sum(n == skill for n in seen)
                print(f"| {mode} | {section} | {skill} | {hits}/{len(named)} | {counts} | {seen_hits}/{len(seen)} "
                      f"| {100 * max(excess):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
