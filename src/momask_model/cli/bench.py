"""`momask-bench`: generation latency, throughput and memory of the reference and fast paths.

Needs no checkpoint: it times a paper-size MoMask with random weights (random CLIP ViT-B/32 text
tower) and, when it is packaged, the demo bundle. For every (model, device, threads, batch) both
paths run interleaved in the same process at the same seed, so their ratio is meaningful even on a
busy machine whose absolute numbers are not; the report also says whether the two paths gave the
same tokens. Output: a Markdown table on stdout and, with ``--json``, every number in a JSON file.

Measured per call: text -> tokens (text encoding with an empty text cache, masked and residual
transformers) and text -> joints (the same plus VQ decoding, de-normalising and joint recovery).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from momask_model.generation.momask import MoMask
from momask_model.nets.fastpath import FastPathOptions

log = logging.getLogger(__name__)

PROMPTS = (
    "a person walks forward",
    "a man jumps up and down",
    "a woman turns left and waves her right hand",
    "a person runs in a circle",
    "someone kicks with the left leg",
    "a person sits down slowly",
    "a man dances happily",
    "a person punches forward twice",
)
ADVERBS = ("", " slowly", " quickly", " then stops")


class BenchError(ValueError):
    """An invalid benchmark request."""


def prompts_for(batch: int, vocab: Sequence[str] | None = None) -> list[str]:
    """``batch`` distinct prompts (distinct texts, so no text is encoded once for several rows).

    With a bag-of-words vocabulary (the demo model) prompts are built from known words only.
    """
    if vocab:
        words = list(vocab)
        out = []
        for i in range(batch):
            picked = [words[(i * 3 + k) % len(words)] for k in range(3 + i // max(1, len(words)))]
            out.append(" ".join(picked))
        return out
    return [PROMPTS[i % len(PROMPTS)] + ADVERBS[(i // len(PROMPTS)) % len(ADVERBS)]
            + ("" if i < len(PROMPTS) * len(ADVERBS) else f" {i}") for i in range(batch)]


def machine_info() -> dict[str, Any]:
    """CPU model, core count, torch version, GPU name and the current load (benchmarks on shared hosts)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


class _PeakRSS:
    """Samples the process RSS in a thread; ``peak_mb`` is the peak above the level at start."""

    def __init__(self, interval_s: float = 0.005) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self.base = self._proc.memory_info().rss
        self.peak = self.base
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self._interval)

    def __enter__(self) -> "_PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return (self.peak - self.base) / 2**20

    @property
    def peak_total_mb(self) -> float:
        return self.peak / 2**20


@contextmanager
def _threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _one_call(model: MoMask, texts: list[str], frames: int, seed: int, fast: bool) -> tuple[float, float, Any]:
    """(text->tokens s, text->joints s, tokens) of one generation with a cold text cache."""
    device = model.device
    model.clear_text_cache()
    _sync(device)
    t0 = time.perf_counter()
    codes, token_lens = model.generate_tokens(texts, frames, seed=seed, fast=fast)
    _sync(device)
    t1 = time.perf_counter()
    model.decode_tokens(codes, token_lens)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t0, codes.cpu()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def gflop_per_motion(model: MoMask, frames: int, fast: bool) -> float | None:
    """Matmul/attention/convolution GFLOP of one batch-1 generation (torch's FLOP counter)."""
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:  # pragma: no cover
        return None
    model.clear_text_cache()
    with FlopCounterMode(display=False) as counter:
        codes, lens = model.generate_tokens([PROMPTS[0]], frames, seed=0, fast=fast)
        model.decode_tokens(codes, lens)
    return counter.get_total_flops() / 1e9


def bench_model(
    name: str, model: MoMask, *, device: torch.device, threads: Sequence[int], batches: Sequence[int], frames: int,
    repeats: int, big_batch_repeats: int, seed: int = 0, paths: Sequence[str] = ("reference", "fast"),
) -> list[dict[str, Any]]:
    """Time every path of ``model`` for each thread count and batch size; one row per path."""
    rows = []
    vocab = getattr(model.text_encoder, "vocab", None)
    thread_list = threads if device.type == "cpu" else [torch.get_num_threads()]
    for n_threads in thread_list:
        with _threads(n_threads):
            for batch in batches:
                texts = prompts_for(batch, vocab)
                reps = repeats if batch <= 4 else big_batch_repeats
                timings: dict[str, dict[str, list[float]]] = {p: {"tokens": [], "joints": []} for p in paths}
                tokens: dict[str, Any] = {}
                peaks: dict[str, float] = {}
                totals: dict[str, float] = {}
                for path in paths:  # warm-up (allocator, lazy inits, compilation), also the memory run
                    _configure(model, path)
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                        _one_call(model, texts, frames, seed, path != "reference")
                        peaks[path] = torch.cuda.max_memory_allocated(device) / 2**20
                    else:
                        with _PeakRSS() as rss:
                            _, _, tokens[path] = _one_call(model, texts, frames, seed, path != "reference")
                        peaks[path], totals[path] = rss.peak_mb, rss.peak_total_mb
                for _ in range(reps):  # interleaved: both paths see the same machine load
                    for path in paths:
                        _configure(model, path)
                        t_tok, t_joint, codes = _one_call(model, texts, frames, seed, path != "reference")
                        timings[path]["tokens"].append(t_tok)
                        timings[path]["joints"].append(t_joint)
                        tokens.setdefault(path, codes)
                ref_p50 = statistics.median(timings[paths[0]]["joints"])
                for path in paths:
                    tok, joint = timings[path]["tokens"], timings[path]["joints"]
                    p50 = statistics.median(joint)
                    rows.append({
                        "model": name, "device": str(device), "threads": n_threads, "batch": batch,
                        "frames": frames, "path": path, "repeats": reps,
                        "tokens_p50_ms": 1e3 * statistics.median(tok), "tokens_p95_ms": 1e3 * _percentile(tok, 0.95),
                        "joints_p50_ms": 1e3 * p50, "joints_p95_ms": 1e3 * _percentile(joint, 0.95),
                        "motions_per_s": batch / p50,
                        "peak_mem_mb": peaks[path],
                        "mem_kind": "cuda max_memory_allocated" if device.type == "cuda" else "RSS growth during the call",
                        "peak_process_rss_mb": totals.get(path),
                        "speedup_vs_reference": ref_p50 / p50,
                        "same_tokens_as_reference": bool(torch.equal(tokens[path], tokens[paths[0]])),
                    })
                    log.info("%s %s threads=%d batch=%d %s: text->joints p50 %.1f ms", name, device, n_threads,
                             batch, path, 1e3 * p50)
    _configure(model, "fast")
    return rows


def _configure(model: MoMask, path: str) -> None:
    if path == "fast-gpu":
        model.fast_options = FastPathOptions(bf16=True, compile=True)
    else:
        model.fast_options = FastPathOptions()


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = ("| model | device | threads | batch | path | text→tokens p50 / p95 (ms) | text→joints p50 / p95 (ms) "
            "| motions/s | peak mem (MB) | speedup | same tokens |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['device']} | {r['threads']} | {r['batch']} | {r['path']} "
            f"| {r['tokens_p50_ms']:.0f} / {r['tokens_p95_ms']:.0f} | {r['joints_p50_ms']:.0f} / {r['joints_p95_ms']:.0f} "
            f"| {r['motions_per_s']:.2f} | {r['peak_mem_mb']:.0f} | {r['speedup_vs_reference']:.2f}× "
            f"| {'yes' if r['same_tokens_as_reference'] else 'no'} |"
        )
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="momask-bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="paper-size model, batch 1, one thread, 3 repeats (< 2 min)")
    p.add_argument("--batch", type=int, nargs="+", default=None, help="batch sizes (default 1 32)")
    p.add_argument("--threads", nargs="+", default=None, help="CPU thread counts, or 'all' (default 1 2 all)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per path at batch <= 4 (default 5)")
    p.add_argument("--big-batch-repeats", type=int, default=2, help="timed calls per path at batch > 4")
    p.add_argument("--frames", type=int, default=196, help="motion length in frames (196 = 49 tokens)")
    p.add_argument("--device", default="auto", help="auto (CPU, plus the GPU if present) | cpu | cuda[:N] | mps")
    p.add_argument("--models", nargs="+", default=["paper", "demo"], choices=["paper", "demo"])
    p.add_argument("--gpu-extras", action="store_true", help="on GPU also time the fast path with bf16 + torch.compile")
    p.add_argument("--no-flops", action="store_true", help="skip the GFLOP-per-motion count")
    p.add_argument("--json", type=Path, default=None, help="write all numbers to this JSON file")
    return p.parse_args(argv)


def _thread_counts(spec: Sequence[str]) -> list[int]:
    out: list[int] = []
    for item in spec:
        n = (os.cpu_count() or 1) if item == "all" else int(item)
        if n < 1:
            raise BenchError(f"thread count must be >= 1, got {item!r}")
        if n not in out:
            out.append(n)
    return out


def _devices(spec: str) -> list[torch.device]:
    """The devices to time: ``auto`` is the CPU and, when present, the GPU (a benchmark compares them);
    anything else is the one device `select_device` gives."""
    from momask_model.generation.loading import DeviceError, DeviceUnavailable, select_device

    try:
        device = select_device(spec)
    except (DeviceError, DeviceUnavailable) as exc:
        raise BenchError(str(exc)) from None
    if spec.strip().lower() == "auto" and device.type != "cpu":
        return [torch.device("cpu"), device]
    return [device]


def build_models(names: Sequence[str], notes: list[str]) -> dict[str, MoMask]:
    """The benchmark models: paper-size random ("paper") and the packaged demo bundle ("demo")."""
    from momask_model.generation.bundle import build_random_momask, load_bundle
    from momask_model.generation.loading import default_bundle_path
    from momask_model.config import MoMaskConfig, TextEncoderConfig

    models: dict[str, MoMask] = {}
    if "paper" in names:
        cfg = MoMaskConfig(text_encoder=TextEncoderConfig(kind="clip", weights=None, allow_random=True))
        models["paper-size (random weights, random CLIP)"] = build_random_momask(cfg, seed=0)
    if "demo" in names:
        path = default_bundle_path()
        if path.is_file():
            models["demo bundle"] = load_bundle(path)
        else:
            notes.append(f"demo model skipped: {path} is absent")
    return models


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``momask-bench``; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = _parse(argv)
    batches = args.batch or ([1] if args.quick else [1, 32])
    threads = _thread_counts(args.threads or (["1"] if args.quick else ["1", "2", "all"]))
    repeats = args.repeats or (3 if args.quick else 5)
    if any(b < 1 for b in batches) or repeats < 1 or args.big_batch_repeats < 1:
        raise SystemExit("momask-bench: batch sizes and repeats must be >= 1")
    models_wanted = ["paper"] if args.quick and args.models == ["paper", "demo"] else args.models
    try:
        devices = _devices(args.device)
    except BenchError as exc:
        raise SystemExit(f"momask-bench: {exc}") from exc
    notes: list[str] = []
    info = machine_info()
    rows: list[dict[str, Any]] = []
    flops: dict[str, dict[str, float | None]] = {}
    for name, model in build_models(models_wanted, notes).items():
        for device in devices:
            model.to(device)
            paths = ["reference", "fast"] + (["fast-gpu"] if device.type == "cuda" and args.gpu_extras else [])
            if device.type == "cpu" and not args.no_flops:
                with _threads(threads[0]):
                    flops[name] = {p: gflop_per_motion(model, args.frames, p == "fast") for p in ("reference", "fast")}
                    # again, now that the text-free first step of this length is cached on the model
                    flops[name]["fast (warm)"] = gflop_per_motion(model, args.frames, True)
            rows += bench_model(
                name, model, device=device, threads=threads, batches=batches, frames=args.frames,
                repeats=repeats, big_batch_repeats=args.big_batch_repeats, paths=paths,
            )
        model.to("cpu")
    if info.get("load_average_1m", 0) > (info["cores"] or 1) * 0.5:
        notes.append(f"the machine was busy (1-min load {info['load_average_1m']} on {info['cores']} cores): "
                     "absolute times are pessimistic; ratios come from interleaved runs")
    print(f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}"
          + (f", GPU {info['gpu']}" if "gpu" in info else "") + f", load {info.get('load_average_1m')}")
    print(f"Settings: {args.frames} frames, 10 steps, guidance 4 / 5, float32, text cache cleared per call\n")
    print(markdown_table(rows))
    for name, f in flops.items():
        print(f"\nGFLOP per motion ({name}): " + ", ".join(f"{p} {v:.1f}" for p, v in f.items() if v is not None))
    for note in notes:
        print(f"\nNote: {note}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"machine": info, "settings": {"frames": args.frames, "batches": batches, "threads": threads,
                   "repeats": repeats, "big_batch_repeats": args.big_batch_repeats},
                   "results": rows, "gflop_per_motion": flops, "notes": notes}
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main())
