#!/usr/bin/env python3
"""Training throughput (samples/s) and peak memory per stage for the paper-size configs.

Runs a few optimiser steps of each stage on random inputs of the paper's shapes (VQ: 64-frame
windows, transformers: 49 tokens, evaluator: 196 frames + 22 tokens), on CPU and on CUDA if present.
Usage: python benchmarks/bench_training.py [--config training/configs/humanml3d.yaml] [--steps 5]
       [--batch-size N] [--devices cpu,cuda] [--out bench.json]
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from momask_model.evaluate.evaluator import TextMotionEvaluator, WordVectorizer  # noqa: E402
from momask_model.nets.length import LengthEstimator  # noqa: E402
from momask_model.nets.masked import MaskTransformer  # noqa: E402
from momask_model.nets.residual import ResidualTransformer  # noqa: E402
from momask_model.train.config import load_pipeline_config  # noqa: E402
from momask_model.nets.vq import RVQVAE  # noqa: E402


def _stage_fns(cfg, device, bs_override):
    m = cfg.model
    n_tok = m.dataset.max_motion_length // m.dataset.unit_length
    q = m.vq.num_quantizers

    def lens(b):
        return torch.randint(n_tok // 2, n_tok + 1, (b,), device=device)

    def cond(b):
        return torch.randn(b, m.text_encoder.dim, device=device)

    vq = RVQVAE(**m.vq.model_kwargs()).to(device)
    mt = MaskTransformer(**m.mask_transformer.model_kwargs()).to(device)
    rt = ResidualTransformer(**m.residual_transformer.model_kwargs()).to(device)
    le = LengthEstimator(**m.length_estimator.model_kwargs()).to(device)
    words = ["unk", "sos", "eos"] + [f"w{i}" for i in range(100)]
    vec = WordVectorizer(np.random.randn(len(words), cfg.evaluator.dim_word).astype(np.float32),
                         {w: i for i, w in enumerate(words)})
    ev = TextMotionEvaluator(cfg.evaluator, vec, np.zeros(m.dataset.dim_pose), np.ones(m.dataset.dim_pose)).to(device)
    D, T = m.dataset.dim_pose, m.dataset.max_motion_length
    stages = {
        "vq": (vq, cfg.vq.batch_size, lambda b: vq.training_loss(torch.randn(b, cfg.data.window_size, D, device=device))["loss"]),
        "mask": (mt, cfg.mask.batch_size, lambda b: mt.training_loss(torch.randint(0, m.vq.nb_code, (b, n_tok), device=device), lens(b), cond(b))[0]),
        "residual": (rt, cfg.residual.batch_size, lambda b: rt.training_loss(torch.randint(0, m.vq.nb_code, (b, n_tok, q), device=device), lens(b), cond(b))[0]),
        "length": (le, cfg.length.batch_size, lambda b: le.training_loss(cond(b), lens(b).clamp(max=m.length_estimator.num_classes - 1))[0]),
        "evaluator": (ev, cfg.evaluator_train.batch_size, lambda b: ev.contrastive_loss(
            ev.encode_text(torch.randint(0, len(words), (b, 22), device=device), torch.eye(15, device=device)[torch.zeros(b, 22, dtype=torch.long, device=device)], torch.full((b,), 22, device=device)),
            ev.encode_motion(torch.randn(b, T, D, device=device), torch.full((b,), T, device=device), normalized=True))["loss"]),
    }
    return {k: (mod, bs_override or bs, fn) for k, (mod, bs, fn) in stages.items()}


def bench(cfg, device: str, steps: int, bs_override: int | None) -> dict:
    dev = torch.device(device)
    out = {}
    for name, (module, bs, fn) in _stage_fns(cfg, dev, bs_override).items():
        opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)
        module.train()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)
        for i in range(steps + 1):  # first step is warm-up
            if i == 1:
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                t0 = time.perf_counter()
            with amp:
                loss = fn(bs)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        dt = time.perf_counter() - t0
        row = {"batch_size": bs, "steps": steps, "samples_per_s": bs * steps / dt, "s_per_step": dt / steps,
               "params_M": sum(p.numel() for p in module.parameters()) / 1e6}
        if dev.type == "cuda":
            row["peak_mem_MiB"] = torch.cuda.max_memory_allocated(dev) / 2**20
        else:
            row["peak_rss_MiB_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out[name] = row
        print(f"{device:5s} {name:10s} bs={bs:4d} {row['samples_per_s']:9.1f} samples/s", flush=True)
        del opt
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "training/configs/humanml3d.yaml"))
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=None, help="override every stage's batch size")
    p.add_argument("--devices", default="cpu,cuda")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    cfg = load_pipeline_config(args.config, args.overrides)
    result = {"config": args.config, "torch": torch.__version__, "devices": {}}
    for d in args.devices.split(","):
        if d == "cuda" and not torch.cuda.is_available():
            continue
        result["devices"][d] = bench(cfg, d, args.steps, args.batch_size)
        if d == "cuda":
            result["gpu"] = torch.cuda.get_device_name(0)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
