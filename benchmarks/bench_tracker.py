"""Whole-body tracker benchmark: policy call time, closed-loop speed and whether the G1 stays up.

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/bench_tracker.py [--tracker-dir DIR] [--json out.json]

For each checkpoint (20k, 25k) and policy rate (50, 100 Hz) of the TWIST2 G1 tracker: standing 3 s, and
synthetic walks (momask_ros.tracker.synthetic) at 0.5 and 1.0 m/s and at 2.5 m/s (above the spec's speed
cap, so conditioning slows it down), each rolled out in MuJoCo on the tracker's own model. Prints one row
per run: fell, mean joint error [rad], distance walked vs the reference [m], real-time factor, ms per
control tick. Without tracker files (none at --tracker-dir) it prints a skip line and exits 0.
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

from momask_ros.tracker import (ConditionedReference, Tracker, TrackerError, default_tracker_dir,  # noqa: E402
                                load_tracker, rollout, standing_reference, synthetic_walk)

SHARED = ROOT.parent / "shared" / "trackers" / "twist2"


def policy_ms(tracker: Tracker, calls: int = 500) -> float:
    obs = np.zeros(tracker.spec.policy_input_dim, np.float32)
    tracker.policy(obs)
    start = time.perf_counter()
    for _ in range(calls):
        tracker.policy(obs)
    return (time.perf_counter() - start) / calls * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracker-dir", type=Path, default=None,
                        help="tracker folder (default ../shared/trackers/twist2, else the fetch default)")
    parser.add_argument("--seconds", type=float, default=6.0, help="simulated seconds per walk")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args(argv)
    folder = args.tracker_dir or (SHARED if SHARED.is_dir() else default_tracker_dir())
    rows = []
    for checkpoint in ("20k", "25k"):
        try:
            bundle = load_tracker(folder, checkpoint=checkpoint)
        except TrackerError as err:
            print(f"[skip] {checkpoint}: {err}")
            continue
        for rate in bundle.spec.allowed_policy_rates_hz:
            tracker = Tracker(bundle, policy_rate_hz=rate)
            ms = policy_ms(tracker)
            scenarios = [("stand", standing_reference(bundle.spec, duration_s=0.5), 3.0)]
            scenarios += [(f"walk {v} m/s", synthetic_walk(bundle.spec, speed_mps=v, duration_s=4.0), args.seconds)
                          for v in (0.5, 1.0, 2.5)]
            for name, reference, seconds in scenarios:
                conditioned = ConditionedReference.from_spec(reference, bundle.spec, bundle.joint_range_rad)
                result = rollout(tracker, conditioned, seconds)
                row = {"checkpoint": checkpoint, "policy_hz": rate, "scenario": name, "fell": result.fell,
                       "fall_time_s": result.fall_time_s, "joint_error_rad": result.mean_joint_error_rad,
                       "walked_m": float(result.base_pos_world[-1, 0]),
                       "reference_m": float(result.ref_base_pos_world[-1, 0]),
                       "time_stretch": result.time_stretch, "realtime_factor": result.realtime_factor,
                       "tick_ms": result.policy_ms_per_call, "policy_call_ms": ms}
                rows.append(row)
                print(f"{checkpoint} {rate:>5.0f} Hz  {name:<14} fell={str(result.fell):<5} "
                      f"err={row['joint_error_rad']:.3f} rad  x={row['walked_m']:.2f}/{row['reference_m']:.2f} m  "
                      f"stretch={row['time_stretch']:.2f}  rtf={row['realtime_factor']:.1f}  "
                      f"tick={row['tick_ms']:.2f} ms  policy={ms:.3f} ms")
    if args.json:
        args.json.write_text(json.dumps({"tracker_dir": str(folder), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
