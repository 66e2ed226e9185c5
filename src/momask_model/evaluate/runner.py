"""Run the evaluation protocol (design/momask.md §6.2) and write the results table.

One loop serves every row of the paper's table: a "generator" maps a test batch to normalised motion
features, and the evaluator embeds text, ground truth and that output. The generator is the identity
for the ground-truth row, encode→decode for the RVQ-VAE, and the full text-to-motion pipeline for a
bundle. Replications (20 by default) redraw the random crops and captions; each value is reported as
mean ± 1.96·std/√N.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from momask_model.motion.features import features_to_joints
from momask_model.motion.normalization import Normalizer

from momask_model.evaluate import metrics as M
from momask_model.generation.momask import MoMask
from momask_model.evaluate.config import EvalConfig
from momask_model.evaluate.evaluator import EvaluatorError, TextMotionEvaluator, batch_tokens

log = logging.getLogger(__name__)

Generate = Callable[[Mapping[str, Any]], torch.Tensor]

#: Column order and headings of the Markdown table.
COLUMNS = (
    ("top1", "Top-1 ↑"), ("top2", "Top-2 ↑"), ("top3", "Top-3 ↑"), ("fid", "FID ↓"), ("mm_dist", "MM-Dist ↓"),
    ("diversity", "Diversity →"), ("multimodality", "MModality ↑"), ("mpjpe_mm", "MPJPE [mm] ↓"),
    ("mean_pose_mpjpe_mm", "Mean-pose MPJPE [mm]"),
    ("codebook_usage", "Code usage"),
)


def _eval_config(config: Any):
    return config if config is not None else EvalConfig()


def _loader(dataset: Dataset, batch_size: int, seed: int) -> DataLoader:
    from momask_model.data.humanml3d import collate_text_motion

    n = len(dataset)
    if n < 2:
        raise EvaluatorError(f"evaluation needs at least 2 test items, got {n}")
    if n < batch_size:
        log.warning("only %d test items: R-precision uses batches of %d instead of %d", n, n, batch_size)
        batch_size = n
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, collate_fn=collate_text_motion,
                      generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def collect_embeddings(evaluator: TextMotionEvaluator, loader: DataLoader, normalizer: Normalizer, generate: Generate,
                       *, device: torch.device | str = "cpu", mm_batches: int = 0, mm_repeats: int = 0
                       ) -> dict[str, np.ndarray]:
    """Embeddings of one pass: ``text``, ``gt`` and ``pred`` (N, 512), plus ``mm`` (texts, repeats, 512)
    for the first ``mm_batches`` batches, where the last of the repeats is also the ``pred`` row.

    Args:
        generate: batch -> normalised (model-space) features (B, T', D); frames past ``m_lens`` ignored.
        normalizer: model-space normaliser; motions are de-normalised before the evaluator sees them.
    """
    evaluator.eval()
    texts, gts, preds, mm = [], [], [], []
    for i, batch in enumerate(loader):
        m_lens = batch["m_lens"].to(device)
        ids, pos, lens = evaluator.tokenize(batch_tokens(batch))
        texts.append(evaluator.encode_text(ids, pos, lens).float().cpu())
        gt = normalizer.denormalize(batch["motion"].to(device).float())
        gts.append(evaluator.encode_motion(gt, m_lens).float().cpu())
        reps = mm_repeats if i < mm_batches else 1
        embs = [evaluator.encode_motion(normalizer.denormalize(generate(batch).float()), m_lens).float().cpu()
                for _ in range(reps)]
        preds.append(embs[-1])
        if i < mm_batches:
            mm.append(torch.stack(embs, dim=1))
    out = {"text": torch.cat(texts).numpy(), "gt": torch.cat(gts).numpy(), "pred": torch.cat(preds).numpy()}
    if mm:
        out["mm"] = torch.cat(mm).numpy()
    return out


def _row(text: np.ndarray, motion: np.ndarray, batch_size: int, rng: np.random.Generator, times: int) -> dict[str, float]:
    ms = M.matching_scores(text, motion, batch_size=batch_size)
    row = {f"top{k + 1}": v for k, v in enumerate(ms.r_precision)}
    row["mm_dist"] = ms.mm_dist
    row["diversity"] = M.diversity(motion, times=times, rng=rng)
    return row


def evaluate_generator(evaluator: TextMotionEvaluator, dataset: Dataset, normalizer: Normalizer, generate: Generate, *,
                       config: Any = None, device: torch.device | str = "cpu", multimodality: bool = False,
                       per_batch: Callable[[Mapping[str, Any], torch.Tensor], None] | None = None,
                       name: str = "model") -> dict[str, Any]:
    """The protocol over ``config.repeats`` replications -> ``{'ground_truth': {...}, name: {...}}``,
    each metric summarised as ``{'mean', 'ci95', 'runs'}``.

    Args:
        multimodality: also generate ``mm_repeats`` samples for the first ``mm_batches`` batches.
        per_batch: optional hook called with (batch, generated features), e.g. for MPJPE.
    """
    cfg = _eval_config(config)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    rng = np.random.default_rng(cfg.seed)
    gt_runs, runs = [], []

    def gen(batch: Mapping[str, Any]) -> torch.Tensor:
        out = generate(batch)
        if per_batch is not None:
            per_batch(batch, out)
        return out

    for r in range(cfg.repeats):
        loader = _loader(dataset, cfg.batch_size, cfg.seed + r)
        bs = loader.batch_size
        emb = collect_embeddings(evaluator, loader, normalizer, gen, device=device,
                                 mm_batches=cfg.mm_batches if multimodality else 0, mm_repeats=cfg.mm_repeats)
        gt_runs.append(_row(emb["text"], emb["gt"], bs, rng, cfg.diversity_times))
        row = {"fid": M.fid(emb["gt"], emb["pred"]), **_row(emb["text"], emb["pred"], bs, rng, cfg.diversity_times)}
        if "mm" in emb:
            row["multimodality"] = M.multimodality(emb["mm"], times=min(cfg.mm_times, cfg.mm_repeats), rng=rng)
        runs.append(row)
        log.info("replication %d/%d: %s", r + 1, cfg.repeats, {k: round(v, 4) for k, v in row.items()})
    return {"ground_truth": M.summarize_replications(gt_runs), name: M.summarize_replications(runs)}


def identity_generator(batch: Mapping[str, Any]) -> torch.Tensor:
    """The ground-truth 'generator' (each motion scored against itself)."""
    return batch["motion"]


def evaluate_vq(vq: torch.nn.Module, normalizer: Normalizer, evaluator: TextMotionEvaluator, dataset: Dataset, *,
                joints_num: int, config: Any = None, device: torch.device | str = "cpu",
                unit_to_mm: float = 1000.0) -> dict[str, Any]:
    """RVQ-VAE reconstruction: FID, R-precision, MM-Dist, Diversity, root-aligned MPJPE over valid frames
    (dataset units and mm; ``unit_to_mm`` = 1000 for metres, 1 for KIT's millimetres) and codebook
    usage, per replication."""
    cfg = _eval_config(config)
    vq.eval()
    state: dict[str, list] = {"err": [], "codes": [], "base": []}
    # Baseline: "reconstruct" every motion as the dataset's mean pose (features = mean), root-aligned.
    mean_pose = features_to_joints(np.repeat(normalizer.mean[None], 2, axis=0), joints_num)[0]

    def generate(batch: Mapping[str, Any]) -> torch.Tensor:
        codes = vq.encode(batch["motion"].to(device).float())
        recon = vq.decode(codes)
        unit = batch["motion"].shape[1] // codes.shape[1]
        for b, m_len in enumerate(batch["m_lens"].tolist()):
            state["codes"].append(codes[b, : m_len // unit].cpu().numpy())
            pj = features_to_joints(normalizer.denormalize(recon[b, :m_len].float().cpu()).numpy(), joints_num)
            gj = features_to_joints(normalizer.denormalize(batch["motion"][b, :m_len].float()).numpy(), joints_num)
            state["err"].append((M.mpjpe(pj, gj), m_len))
            state["base"].append((M.mpjpe(np.broadcast_to(mean_pose, gj.shape), gj), m_len))
        return recon

    gt_runs, vq_runs = [], []
    for r in range(cfg.repeats):
        state["err"].clear()
        state["codes"].clear()
        state["base"].clear()
        one = evaluate_generator(evaluator, dataset, normalizer, generate,
                                 config=cfg.replace(repeats=1, seed=cfg.seed + r), device=device, name="vq")
        err = np.array(state["err"])
        extra = {
            "mpjpe": float((err[:, 0] * err[:, 1]).sum() / err[:, 1].sum()),
            "codebook_usage": M.codebook_usage(np.concatenate(state["codes"]), nb_code=vq.nb_code)["usage_mean"],
        }
        extra["mpjpe_mm"] = extra["mpjpe"] * unit_to_mm
        base = np.array(state["base"])
        extra["mean_pose_mpjpe_mm"] = float((base[:, 0] * base[:, 1]).sum() / base[:, 1].sum()) * unit_to_mm
        gt_runs.append({k: v["mean"] for k, v in one["ground_truth"].items()})
        vq_runs.append({**{k: v["mean"] for k, v in one["vq"].items()}, **extra})
    return {"ground_truth": M.summarize_replications(gt_runs), "vq": M.summarize_replications(vq_runs)}


def bundle_generator(momask: MoMask, config: EvalConfig | None = None, *, device: torch.device | str = "cpu") -> Generate:
    """batch -> normalised features from a MoMask's parts (text encoder, M- and R-Transformer, VQ decode)
    at the ground-truth lengths, with the protocol's sampling settings."""
    cfg = _eval_config(config)
    unit = momask.config.dataset.unit_length

    @torch.no_grad()
    def generate(batch: Mapping[str, Any]) -> torch.Tensor:
        token_lens = torch.div(batch["m_lens"], unit, rounding_mode="floor").to(device)
        cond = momask.text_encoder.encode(list(batch["captions"])).to(device).float()
        ids = momask.mask_transformer.generate(cond, token_lens, **cfg.masked_kwargs())
        codes = momask.residual_transformer.generate(ids, cond, token_lens, temperature=1.0,
                                                     cond_scale=cfg.res_cond_scale)
        return momask.vq.decode(codes)

    return generate


def evaluate_bundle(momask: MoMask, evaluator: TextMotionEvaluator, dataset: Dataset, *, config: EvalConfig | None = None,
                    device: torch.device | str = "cpu", multimodality: bool = True) -> dict[str, Any]:
    """The paper's Table 1 row for a MoMask bundle (plus the ground-truth row)."""
    return evaluate_generator(evaluator, dataset, momask.normalizer, bundle_generator(momask, config, device=device),
                              config=config, device=device, multimodality=multimodality, name="momask")


# ---------------------------------------------------------------------------------------------- output


def _cell(entry: Mapping[str, float] | None, key: str) -> str:
    if not entry:
        return "–"
    digits = 1 if key.endswith("mpjpe_mm") else 3
    return f"{entry['mean']:.{digits}f}±{entry['ci95']:.{digits}f}"


def table_markdown(table: Mapping[str, Mapping[str, Any]]) -> str:
    """Rows (ground truth, model...) × the protocol's columns; only columns some row has are shown."""
    rows = {k: v for k, v in table.items() if isinstance(v, Mapping) and k != "meta"}
    cols = [(k, h) for k, h in COLUMNS if any(k in r for r in rows.values())]
    lines = ["| | " + " | ".join(h for _, h in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(_cell(row.get(k), k) for k, _ in cols) + " |")
    return "\n".join(lines) + "\n"


def write_table(table: Mapping[str, Any], out_prefix: str | Path) -> tuple[Path, Path]:
    """Write ``<prefix>.json`` and ``<prefix>.md``; returns both paths."""
    prefix = Path(out_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    js, md = prefix.with_suffix(".json"), prefix.with_suffix(".md")
    js.write_text(json.dumps(table, indent=2, default=float))
    md.write_text(table_markdown(table))
    return js, md
