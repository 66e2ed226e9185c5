"""Fuzz momask_node over real DDS: random bytes, unicode, huge strings, bursts; then a valid command.

Full size by default (10,000 random messages incl. 1 MB strings, a burst of 1,000 commands within a
second); ``--messages`` / ``--burst`` / ``--big`` shrink it (the CI test imports `run_fuzz` with small
numbers). Checks: the node stays alive and keeps publishing, memory stays bounded (RSS growth and
tracemalloc peak), every published position is within the robot's limits, and a valid command sent
afterwards is served. Prints one JSON object; exit code 1 when a check fails.

    python benchmarks/fuzz_node.py                 # fake generator/retargeter (fast, tests the node)
    python benchmarks/fuzz_node.py --real          # tiny random MoMask + default robot retargeter
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "test"))


def random_message(rng: random.Random, big_every: int) -> tuple[str, object]:
    """One fuzz message: ('raw', bytes) for arbitrary payload bytes or ('text', str)."""
    kind = rng.randrange(8)
    if big_every and rng.randrange(big_every) == 0:
        return "text", rng.choice(["x", "walk ", "\u00e9", "\U0001F600"]) * (1_000_000 // 4)
    if kind == 0:
        return "raw", bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
    if kind == 1:
        return "text", "".join(chr(rng.randrange(0x20, 0xD7FF)) for _ in range(rng.randrange(0, 80)))
    if kind == 2:
        return "text", "".join(chr(rng.randrange(0, 0x20)) for _ in range(rng.randrange(1, 20)))
    if kind == 3:
        opts = ["length=nan", "length=-3s", "length=1e308", "speed=0", "speed=inf", "seed=-1", "seed=1e99",
                "length=4s", "speed=1.5", "#120", "#0", "lenght=2s", "length=4s length=3s"]
        return "text", "walk " + " ".join(rng.choice(opts) for _ in range(rng.randrange(1, 4)))
    if kind == 4:
        return "text", " " * rng.randrange(0, 50)
    if kind == 5:
        return "text", "\u202e" + "walk" + "\u200b" * rng.randrange(1, 5)
    if kind == 6:
        return "raw", "a person walks \udcff".encode("utf-8", "surrogatepass")
    return "text", rng.choice(["a person walks forward", "wave hand", "jump", "run left"]) + f" length={rng.randrange(1, 4)}s"


def _wait_received(h, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while h.node.conductor.next_id < count and time.monotonic() < deadline:
        time.sleep(0.002)


def run_fuzz(*, messages: int = 10_000, burst: int = 1_000, big_every: int = 500, seed: int = 0,
             real: bool = False, batch: int = 20) -> dict:
    import numpy as np
    import psutil

    from ros_harness import Harness

    if real:
        from momask_model.generation.bundle import build_random_momask
        from momask_model.config import tiny_config
        from momask_ros.stream.pipeline import MotionPipeline

        pipeline = MotionPipeline.for_model(build_random_momask(tiny_config()), robot="default", chunk_frames=12)
    else:
        from motion_fakes import AngleRetargeter, ChunkStream, WalkGenerator
        from momask_ros.stream.pipeline import MotionPipeline

        r = AngleRetargeter()
        pipeline = MotionPipeline(WalkGenerator(), r, r.joint_space, chunk_frames=8,
                                  stream_factory=lambda fps: ChunkStream(r, fps))
    space = pipeline.joint_space
    rng = random.Random(seed)
    proc = psutil.Process(os.getpid())
    h = Harness(pipeline, {"control_rate": 50.0, "timesteps": 2, "max_command_chars": 300})
    try:
        gc.collect()
        rss0 = proc.memory_info().rss
        tracemalloc.start()
        t0 = time.monotonic()
        kinds = {"raw": 0, "text": 0}
        base_id = h.node.conductor.next_id
        for i in range(messages):
            kind, payload = random_message(rng, big_every)
            kinds[kind] += 1
            if kind == "raw":
                h.send_raw(payload)
            else:
                h.send(payload)
            if (i + 1) % batch == 0:
                # pace the publisher so DDS's bounded reader queue does not drop the fuzz before the
                # node's parser sees it (dropping is safe, but then the parser would not be fuzzed)
                _wait_received(h, base_id + i + 1, 5.0)
        _wait_received(h, base_id + messages, 5.0)
        fuzz_s = time.monotonic() - t0
        received = h.node.conductor.next_id - base_id
        # burst: `burst` valid commands within one second
        t1 = time.monotonic()
        for i in range(burst):
            h.send(f"a person walks forward number {i} length=1s")
            time.sleep(max(0.0, (t1 + (i + 1) / burst) - time.monotonic()))
        burst_s = time.monotonic() - t1
        # afterwards: the node must still serve a valid command
        h.send("stop the fuzz and walk length=1s seed=7")
        served = h.wait_for(lambda: h.by_state("done", text="stop the fuzz and walk"), 60.0, "valid command served")
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        gc.collect()
        rss1 = proc.memory_info().rss
        n_js = len(h.joint_states)
        pos = np.array([m.position for m in h.joint_states]) if n_js else np.zeros((0, len(space.names)))
        statuses = list(h.statuses)
        reasons: dict[str, int] = {}
        for s in statuses:
            if s["state"] == "rejected":
                reasons[s["reason"]] = reasons.get(s["reason"], 0) + 1
        alive = h.node.context.ok() and h.node.status_snapshot()["workers_alive"]
        report = {
            "messages": messages, "received": received, "burst": burst, "kinds": kinds, "fuzz_send_s": round(fuzz_s, 2),
            "burst_send_s": round(burst_s, 2), "statuses": len(statuses), "rejections": reasons,
            "errors": sum(1 for s in statuses if s["state"] == "error"),
            "joint_states": n_js, "positions_within_limits": bool(space.within(pos)),
            "rss_growth_mb": round((rss1 - rss0) / 2**20, 1), "tracemalloc_peak_mb": round(traced_peak / 2**20, 1),
            "node_alive": bool(alive), "valid_command_served": bool(served),
            "served_generation_ms": served[0].get("generation_ms"),
        }
        report["ok"] = bool(alive and served and report["positions_within_limits"] and report["errors"] == 0
                            and report["rss_growth_mb"] < 500)
        return report
    finally:
        h.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--burst", type=int, default=1_000)
    ap.add_argument("--big-every", type=int, default=500, help="about one in N messages is a 1 MB string")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real", action="store_true", help="tiny random MoMask + default robot instead of fakes")
    args = ap.parse_args()
    report = run_fuzz(messages=args.messages, burst=args.burst, big_every=args.big_every, seed=args.seed,
                      real=args.real)
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
