"""Latency of momask_node: text received -> first JointState of the motion, and generation time.

Runs the real node over loopback DDS in this process (a probe node publishes the commands) and
reports, per command, what the node measures itself (status ``playing``: ``latency_ms`` from the
command's arrival to the first JointState of its motion, ``generation_ms``) plus the probe's view
(publish -> ``playing`` status received). Prints one JSON object.

    python benchmarks/bench_node_latency.py                      # tiny random MoMask, CPU
    python benchmarks/bench_node_latency.py --model paper        # paper-size random weights (BoW text)
    python benchmarks/bench_node_latency.py --model bundle --bundle path.pt --device cuda
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "test"))


def build_model(kind: str, bundle: str | None, device: str):
    from momask_ros.loading import resolve_bundle_path, select_device

    dev = select_device(device)
    if kind == "bundle":
        from momask_model.bundle import load_bundle

        return load_bundle(resolve_bundle_path(bundle), device=dev), str(resolve_bundle_path(bundle))
    from momask_model.bundle import build_random_momask
    from momask_model.config import TINY_VOCAB, MoMaskConfig, TextEncoderConfig, tiny_config

    if kind == "tiny":
        return build_random_momask(tiny_config()).to(dev), "tiny random"
    text = TextEncoderConfig(kind="bow", weights=None, dim=512, vocab=TINY_VOCAB)
    return build_random_momask(MoMaskConfig(text_encoder=text).validate()).to(dev), "paper-size random (BoW text)"


def percentile(values, q):
    import numpy as np

    return round(float(np.percentile(values, q)), 1) if values else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("tiny", "paper", "bundle"), default="tiny")
    ap.add_argument("--bundle", default=None, help="bundle path for --model bundle (default: packaged demo)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--robot", default="default")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--length", default="4s", help="motion length per command (command syntax)")
    ap.add_argument("--chunk-frames", type=int, default=20)
    ap.add_argument("--control-rate", type=float, default=50.0)
    args = ap.parse_args()

    import torch

    from momask_ros.pipeline import MotionPipeline
    from ros_harness import Harness

    t0 = time.perf_counter()
    model, model_desc = build_model(args.model, args.bundle, args.device)
    pipeline = MotionPipeline.for_model(model, robot=args.robot, chunk_frames=args.chunk_frames)
    load_s = time.perf_counter() - t0
    h = Harness(pipeline, {"control_rate": args.control_rate, "queue_mode": "queue", "command_burst": 1000,
                           "command_rate": 1000.0, "blend_s": 0.2})
    ready = h.by_state("ready")[0]
    # distinct sentences (no text-cache hits) made of words every model here knows (tiny, demo, CLIP)
    texts = [f"{who} {what}" for what in ("walks forward", "jumps up", "kicks", "spins around", "dances", "punches")
             for who in ("a person", "a man", "a woman")]
    rows = []
    try:
        for i in range(args.runs):
            text = texts[i % len(texts)]
            sent = time.perf_counter()
            h.send(f"{text} length={args.length} seed={i}")
            playing = h.wait_for(lambda: h.by_state("playing", text=text), 120.0, "playing")[0]
            probe_ms = (time.perf_counter() - sent) * 1e3
            done = h.wait_state("done", 120.0, text=text)
            rows.append({"latency_ms": playing["latency_ms"], "generation_ms": playing["generation_ms"],
                         "probe_ms": round(probe_ms, 1), "retarget_ms": done.get("retarget_ms")})
    finally:
        h.close()
    lat = [r["latency_ms"] for r in rows]
    gen = [r["generation_ms"] for r in rows]
    probe = [r["probe_ms"] for r in rows]
    ret = [r["retarget_ms"] for r in rows if r["retarget_ms"] is not None]
    device = str(pipeline.generator.device)
    report = {
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "model": model_desc, "device": device, "robot": args.robot, "length": args.length,
        "control_rate_hz": args.control_rate, "chunk_frames": args.chunk_frames, "runs": len(rows),
        "load_s": round(load_s, 2), "warmup_ms": ready.get("warmup_ms"),
        "text_to_first_joint_state_ms": {"p50": percentile(lat, 50), "p95": percentile(lat, 95)},
        "generation_ms": {"p50": percentile(gen, 50), "p95": percentile(gen, 95)},
        "retarget_whole_motion_ms": {"p50": percentile(ret, 50), "p95": percentile(ret, 95)},
        "publish_to_playing_status_ms": {"p50": percentile(probe, 50), "p95": percentile(probe, 95)},
        "per_run": rows,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
