"""Latency of momask_node: text received -> first JointState of the motion, and generation time.

Runs the real node over loopback DDS in this process (a probe node publishes the commands) and
reports, per command, what the node measures itself (status ``playing``: ``latency_ms`` from the
command's arrival to the first JointState of its motion, ``generation_ms``; status ``generating``:
``wait_ms`` from acceptance to the start of generation) plus the probe's view (publish ->
``playing`` status received). Idle commands (nothing playing) alternate with preempting ones (sent
``--preempt-after`` seconds into an 8 s walk). Both are measured the same way: ``latency_ms`` is
from the command's arrival to the first published JointState computed from its motion (idle: the
first sample of its blend-in; preempting: the first sample the continuation changes, the
retargeter's cut a few frames before the switch frame); ``switch_latency_ms`` is to the JointState
at the switch frame itself. Prints one JSON object.

    python benchmarks/bench_node_latency.py                      # tiny random MoMask, CPU
    python benchmarks/bench_node_latency.py --model demo         # the packaged demo bundle
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
    from momask_model.generation.loading import resolve_bundle_path, select_device

    dev = select_device(device)
    if kind == "demo":
        kind, bundle = "bundle", None
    if kind == "bundle":
        from momask_model.generation.bundle import load_bundle

        return load_bundle(resolve_bundle_path(bundle), device=dev), str(resolve_bundle_path(bundle))
    from momask_model.generation.bundle import build_random_momask
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
    ap.add_argument("--model", choices=("tiny", "demo", "paper", "bundle"), default="tiny")
    ap.add_argument("--bundle", default=None, help="bundle path for --model bundle (default: packaged demo)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--robot", default="default")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--length", default="4s", help="motion length per command (command syntax)")
    ap.add_argument("--chunk-frames", type=int, default=20)
    ap.add_argument("--control-rate", type=float, default=50.0)
    ap.add_argument("--preempt-after", type=float, default=1.7, help="seconds into the walk a preempting command comes")
    ap.add_argument("--no-preempt", action="store_true", help="idle commands only")
    args = ap.parse_args()

    import torch

    from momask_ros.stream.pipeline import MotionPipeline
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
    texts = [t for t in texts if pipeline.check_text(t) is None]  # what a scoped demo model refuses never plays
    rows, pre = [], []
    from rclpy.parameter import Parameter

    def mode(value: str) -> None:
        h.node.set_parameters([Parameter("queue_mode", value=value)])

    try:
        for i in range(args.runs):
            text = texts[i % len(texts)]
            mode("queue")
            sent = time.perf_counter()
            h.send(f"{text} length={args.length} seed={i}")
            playing = h.wait_for(lambda: h.by_state("playing", text=text, seed=i), 120.0, "playing")[0]
            probe_ms = (time.perf_counter() - sent) * 1e3
            done = h.wait_for(lambda: h.by_state("done", id=playing["id"]), 120.0, "done")[0]
            gen = h.by_state("generating", id=playing["id"])[0]
            rows.append({"latency_ms": playing["latency_ms"], "generation_ms": playing["generation_ms"],
                         "wait_ms": gen.get("wait_ms"), "probe_ms": round(probe_ms, 1),
                         "retarget_ms": done.get("retarget_ms")})
            if args.no_preempt:
                continue
            mode("preempt")
            walk = "a person walks forward"
            h.send(f"{walk} length=8s seed={100 + i}")
            h.wait_for(lambda: [s for s in h.by_state("playing", text=walk) if s["seed"] == 100 + i], 120.0)
            time.sleep(args.preempt_after)
            other = texts[(i + 1) % len(texts)]
            h.send(f"{other} length={args.length} seed={200 + i}")
            playing = h.wait_for(lambda: [s for s in h.by_state("playing", text=other) if s["seed"] == 200 + i],
                                 120.0, "preempting playing")[0]
            gen = h.by_state("generating", id=playing["id"])[0]
            pre.append({"latency_ms": playing["latency_ms"], "switch_latency_ms": playing.get("switch_latency_ms"),
                        "switch_lead_ms": playing.get("switch_lead_ms"), "slip_frames": playing.get("switch_slip_frames"), "chunk_ms": playing.get("switch_chunk_ms"),
                        "wait_ms": gen.get("wait_ms"), "generation_ms": playing["generation_ms"],
                        "switch": playing.get("switch", "blend"), "switch_reason": playing.get("switch_reason")})
            h.stop()
            time.sleep(0.3)
    finally:
        h.close()
    lat = [r["latency_ms"] for r in rows]
    gen = [r["generation_ms"] for r in rows]
    probe = [r["probe_ms"] for r in rows]
    ret = [r["retarget_ms"] for r in rows if r["retarget_ms"] is not None]
    waits = [r["wait_ms"] for r in rows + pre if r.get("wait_ms") is not None]
    pre_lat = [r["latency_ms"] for r in pre]
    pre_switch = [r["switch_latency_ms"] for r in pre if r.get("switch_latency_ms") is not None]
    device = str(pipeline.generator.device)
    report = {
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "model": model_desc, "device": device, "robot": args.robot, "length": args.length,
        "control_rate_hz": args.control_rate, "chunk_frames": args.chunk_frames, "runs": len(rows),
        "load_s": round(load_s, 2), "warmup_ms": ready.get("warmup_ms"),
        "text_to_first_joint_state_ms": {"p50": percentile(lat, 50), "p95": percentile(lat, 95)},
        "preempting_text_to_first_joint_state_ms": {"p50": percentile(pre_lat, 50), "p95": percentile(pre_lat, 95)},
        "preempting_text_to_switch_frame_joint_state_ms": {"p50": percentile(pre_switch, 50),
                                                           "p95": percentile(pre_switch, 95)},
        "preempt_over_idle_p50": round(percentile(pre_lat, 50) / percentile(lat, 50), 2) if pre_lat else None,
        "preempt_over_idle_p95": round(percentile(pre_lat, 95) / percentile(lat, 95), 2) if pre_lat else None,
        "accepted_to_generation_start_ms": {"p50": percentile(waits, 50), "max": percentile(waits, 100)},
        "preempt_switches": [r["switch"] + (f" ({r['switch_reason']})" if r["switch_reason"] else "") for r in pre],
        "generation_ms": {"p50": percentile(gen, 50), "p95": percentile(gen, 95)},
        "retarget_whole_motion_ms": {"p50": percentile(ret, 50), "p95": percentile(ret, 95)},
        "publish_to_playing_status_ms": {"p50": percentile(probe, 50), "p95": percentile(probe, 95)},
        "per_run": rows,
        "per_preempt": pre,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
