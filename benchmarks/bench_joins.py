"""Smoothness at joins of long motions, sequences, continuations and edits (FlowMDM's PJ / AUJ).

For every join it prints Peak Jerk (PJ, m/s^3) and Area Under the Jerk (AUJ, m/s^2) in a +-10-frame
window (1 s at 20 fps) on the 22 joints (`momask_model.evaluate.smoothness`), and the ratio of the
join's PJ to the 95th percentile of the same window statistic inside single clips of the same model
(the target: <= 1.5x at every join). Also: toe sliding speed in contact at joins vs in clips, the
kept-section joint error of edits next to the VQ reconstruction error of the source (the floor),
and with --sweep-context the overlap (fixed tokens per join) against smoothness and time.

    python benchmarks/bench_joins.py [--bundle demo] [--seeds 6] [--sweep-context] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from momask_model.generation.bundle import load_bundle  # noqa: E402
from momask_model.generation.loading import default_bundle_path  # noqa: E402
from momask_model.generation.editing import kept_sections, source_joints  # noqa: E402
from momask_model.evaluate.smoothness import JerkStats, in_clip_stats, percentile, transition_stats  # noqa: E402
from momask_model.generation.longform import DEFAULT_CONTEXT_TOKENS  # noqa: E402
from momask_model.motion.ground_alignment import align_to_pose, aligned_error  # noqa: E402

FPS = 20.0
TARGET = 1.5
WALK = "a person walks forward"
SEQUENCE = "a person walks forward length=3s | a person jumps forward with both feet | a person kicks with the right leg length=2s"
REFERENCE_PROMPTS = (
    "a person walks forward", "a person jogs forward", "a person runs forward quickly", "a person jumps forward with both feet",
    "a person kicks with the right leg", "a person punches with the right hand", "a person dances happily",
    "a person spins around twice",
)
TOES = (10, 11)
SWEEP_SEQUENCES = (
    SEQUENCE,
    "a person runs forward quickly length=3s | a person does a cartwheel to the left | a person punches with the right hand length=2s",
    "a person dances happily length=3s | a person spins around twice length=3s | a person walks forward length=3s",
)
CONTINUATIONS = (
    (WALK, "a person jumps forward with both feet"), ("a person runs forward quickly", "a person does a cartwheel to the left"),
    ("a person dances happily", "a person kicks with the right leg"), (WALK, WALK),
)


def toe_slide(joints: np.ndarray, centre: float, half: int = 10, height: float = 0.05) -> float:
    """Mean horizontal toe speed [m/s] on frames within the window where the toe is in contact."""
    floor = joints[..., 1].min()
    speeds = []
    for toe in TOES:
        p = joints[:, toe]
        v = np.linalg.norm(np.diff(p[:, [0, 2]], axis=0), axis=-1) * FPS
        t = np.arange(v.shape[0]) + 0.5
        inside = (t >= centre - half) & (t < centre + half) & (p[:-1, 1] - floor < height)
        speeds.extend(v[inside])
    return float(np.mean(speeds)) if speeds else 0.0


def joins_of(lengths) -> list[int]:
    return [int(x) for x in np.cumsum(lengths)[:-1]]


def summary(name: str, stats: list[JerkStats], slides: list[float], ref: JerkStats, extra: str = "") -> dict:
    peak = max(s.peak for s in stats)
    row = {"case": name, "joins": len(stats), "max_pj": peak, "max_pj_ratio": peak / ref.peak,
           "mean_auj": float(np.mean([s.area for s in stats])), "max_auj_ratio": max(s.area for s in stats) / ref.area,
           "toe_slide_m_s": float(np.mean(slides)) if slides else 0.0}
    verdict = "ok" if row["max_pj_ratio"] <= TARGET else "ABOVE TARGET"
    print(f"{name:<44} joins {len(stats):3d}  max PJ {peak:8.0f} ({row['max_pj_ratio']:.2f}x)  "
          f"mean AUJ {row['mean_auj']:7.0f} (max {row['max_auj_ratio']:.2f}x)  toe slide {row['toe_slide_m_s']:.3f} m/s  "
          f"{verdict} {extra}")
    return row


def reference(model, seeds: int) -> tuple[JerkStats, float, int]:
    clips = []
    for s, text in enumerate(REFERENCE_PROMPTS):
        result = model.generate([text] * seeds, model.max_length, seed=100 + s)
        clips += [result.motion(b)[1] for b in range(seeds)]
    windows = in_clip_stats(clips, FPS)
    slides = [toe_slide(c, t) for c in clips for t in range(12, c.shape[0] - 11, 8)]
    return percentile(windows), float(np.mean(slides)), len(windows)


def naive_concat(model, seeds: int) -> tuple[list[JerkStats], list[float]]:
    stats, slides = [], []
    for seed in range(seeds):
        a = model.generate(WALK, 100, seed=seed).motion(0)[1]
        b = model.generate("a person jumps forward with both feet", 100, seed=1000 + seed).motion(0)[1]
        b = align_to_pose(np.concatenate([a[-1:], b]), 0, a[-1])[1:]  # placed where a ends, facing its way
        joints = np.concatenate([a, b])
        stats += transition_stats(joints, [100], FPS)
        slides.append(toe_slide(joints, 99.5))
    return stats, slides


def long_walks(model, seconds: float, seeds: int, context: int | None, streamed: bool):
    stats, slides, elapsed = [], [], 0.0
    frames = int(seconds * FPS)
    for seed in range(seeds):
        start = time.perf_counter()
        if streamed:
            windows = list(model.iter_windows(WALK, frames, seed=seed, overlap_tokens=context))
            joints = np.concatenate([w.joints[0] for w in windows])
            joins = joins_of([w.lengths[0] for w in windows])
        else:
            joints = model.generate(WALK, frames, seed=seed, overlap_tokens=context).joints[0]
            window, c = model.max_length // 4, DEFAULT_CONTEXT_TOKENS if context is None else context
            joins = [4 * k for k in range(window, frames // 4, window - c)]
        elapsed += time.perf_counter() - start
        assert joints.shape[0] == frames
        stats += transition_stats(joints, joins, FPS)
        slides += [toe_slide(joints, j - 0.5) for j in joins]
    return stats, slides, elapsed / seeds


def sequences(model, seeds: int, streamed: bool, context: int | None = None, prompts=(SEQUENCE,)):
    stats, slides = [], []
    for seed, prompt in ((s, p) for p in prompts for s in range(seeds)):
        if streamed:
            parts = list(model.generate_sequence(prompt, seed=seed, context_tokens=context))
            joints = np.concatenate([p.joints[0][: p.lengths[0]] for p in parts])
            joins = joins_of([p.lengths[0] for p in parts])
        else:
            whole = model.generate_sequence_motion(prompt, seed=seed, context_tokens=context)
            joints, joins = whole.joints[0], [a for a, _ in whole.marks[1:]]
        stats += transition_stats(joints, joins, FPS)
        slides += [toe_slide(joints, j - 0.5) for j in joins]
    return stats, slides


def continuations(model, seeds: int, context: int | None = None, pairs=CONTINUATIONS[:1]):
    stats, slides = [], []
    for seed, (first, then) in ((s, p) for p in pairs for s in range(seeds)):
        prev = model.generate(first, 160, seed=seed)
        new = model.continue_motion(prev.tokens[0], prev.joints[0], 80, then, 100, seed=seed, context_tokens=context)
        joints = np.concatenate([prev.joints[0, :80], new.joints[0]])
        stats += transition_stats(joints, [80], FPS)
        slides.append(toe_slide(joints, 79.5))
    return stats, slides


def edits(model, seeds: int, residual: str):
    stats, slides, kept, floor = [], [], [], []
    for seed in range(seeds):
        src = model.generate(WALK, 160, seed=seed)
        joints = source_joints(model, src)
        recon = model.edit(src, [], None).joints[0]
        out = model.edit(src, ["2s:4s"], "a person jumps forward with both feet", seed=seed, residual=residual)
        stats += transition_stats(out.joints[0], [40, 80], FPS)
        slides += [toe_slide(out.joints[0], j - 0.5) for j in (40, 80)]
        for a, b in kept_sections(out.marks, 160):
            kept.append(aligned_error(joints[a:b], out.joints[0, a:b]))
            floor.append(aligned_error(joints[a:b], recon[a:b]))
    return stats, slides, float(np.mean(kept)), float(np.mean(floor))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=None, help="bundle (default: the packaged demo model)")
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--sweep-context", action="store_true", help="also sweep the overlap (fixed tokens per join)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = load_bundle(args.bundle or default_bundle_path())
    ref, ref_slide, n_windows = reference(model, args.seeds)
    print(f"in-clip reference: {n_windows} windows of {len(REFERENCE_PROMPTS)} prompts x {args.seeds} seeds "
          f"(196 frames): P95 PJ {ref.peak:.0f} m/s^3, P95 AUJ {ref.area:.0f} m/s^2, toe slide {ref_slide:.3f} m/s; "
          f"target at joins: PJ <= {TARGET}x P95")
    rows = []
    rows.append(summary("naive concatenation (walk + jump)", *naive_concat(model, args.seeds), ref))
    for seconds in (30, 60):
        for streamed in (False, True):
            stats, slides, secs = long_walks(model, seconds, args.seeds, None, streamed)
            kind = "streamed windows" if streamed else "one decode"
            rows.append(summary(f"{seconds} s walk, {kind}", stats, slides, ref, f"[{secs:.2f} s per motion]"))
    for streamed in (False, True):
        rows.append(summary(f"3-segment sequence, {'streamed' if streamed else 'one decode'}",
                            *sequences(model, args.seeds, streamed), ref))
    rows.append(summary("continue_motion (walk -> jump at 4 s)", *continuations(model, args.seeds), ref))
    for residual in ("keep", "regenerate"):
        stats, slides, kept, floor = edits(model, args.seeds, residual)
        rows.append(summary(f"edit 2s:4s of an 8 s walk (residual {residual})", stats, slides, ref,
                            f"[kept-section error {kept * 1000:.1f} mm vs VQ floor {floor * 1000:.1f} mm]"))
        rows[-1].update(kept_error_m=kept, vq_floor_m=floor)
    if args.sweep_context:
        print("\noverlap sweep: fixed tokens per join vs PJ at joins (30 s walks; 3 sequences; 4 continuations):")
        for context in (0, 2, 4, 8, 12, 16, 24):
            walk, _, secs = long_walks(model, 30, args.seeds, context, False)
            seq, _ = sequences(model, args.seeds, False, context, SWEEP_SEQUENCES)
            cont, _ = continuations(model, args.seeds, context, CONTINUATIONS)
            row = {"context": context, "seconds_per_30s_walk": secs}
            parts = []
            for name, stats in (("walk", walk), ("sequence", seq), ("continuation", cont)):
                ratios = np.array([st.peak for st in stats]) / ref.peak
                row[name] = {"max_pj_ratio": float(ratios.max()), "mean_pj_ratio": float(ratios.mean()),
                             "share_above_1x": float((ratios > 1).mean())}
                parts.append(f"{name} max {ratios.max():.2f}x mean {ratios.mean():.2f}x >1x {100 * (ratios > 1).mean():3.0f}%")
            print(f"overlap {context:2d} tokens: " + " | ".join(parts) + f" | {secs:.2f} s per 30 s walk")
            rows.append({"case": f"sweep overlap {context}", "max_pj_ratio": 0.0, **row})
    if args.json:
        args.json.write_text(json.dumps({"reference": ref.__dict__, "rows": rows}, indent=2))
    return 0 if all(r["max_pj_ratio"] <= TARGET for r in rows if not r["case"].startswith("naive")) else 1


if __name__ == "__main__":
    sys.exit(main())
