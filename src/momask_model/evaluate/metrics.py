"""The community text-to-motion metrics (design/momask.md §6.2) as pure numpy functions.

Every function takes embeddings or joints already computed, so the same code scores ground truth,
generated motion and VQ reconstructions; nothing here runs a network. Randomness (Diversity,
MultiModality index draws) comes from an explicit ``numpy.random.Generator`` so a replication is
reproducible from its seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import linalg


class MetricInputError(ValueError):
    """Embeddings or joints handed to a metric have an unusable shape or size."""


def _as_2d(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise MetricInputError(f"{name} must be (N, D), got shape {x.shape}")
    return x


def euclidean_distance_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise L2 distances: ``out[i, j] = ||a_i - b_j||`` for (N, D) and (M, D) -> (N, M)."""
    a, b = _as_2d("a", a), _as_2d("b", b)
    if a.shape[1] != b.shape[1]:
        raise MetricInputError(f"embedding widths differ: {a.shape[1]} vs {b.shape[1]}")
    sq = (a * a).sum(1)[:, None] - 2.0 * a @ b.T + (b * b).sum(1)[None, :]
    return np.sqrt(np.maximum(sq, 0.0))


def activation_statistics(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and full covariance (``np.cov``, unbiased) of (N, D) embeddings, as used by FID."""
    x = _as_2d("embeddings", embeddings)
    if x.shape[0] < 2:
        raise MetricInputError(f"need at least 2 embeddings for a covariance, got {x.shape[0]}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     *, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``||mu1 - mu2||² + tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2))``. When the product is singular
    (few samples, wide embeddings) ``sqrtm`` is unstable, so a small ``eps`` is added to both
    diagonals, the usual FID remedy; imaginary round-off is dropped.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise MetricInputError(
            f"inconsistent Gaussian shapes: mu {mu1.shape}/{mu2.shape}, sigma {sigma1.shape}/{sigma2.shape}"
        )
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid(real_embeddings: np.ndarray, fake_embeddings: np.ndarray) -> float:
    """FID between two embedding sets (Gaussian fit of each, then the Fréchet distance)."""
    mu1, s1 = activation_statistics(real_embeddings)
    mu2, s2 = activation_statistics(fake_embeddings)
    return frechet_distance(mu1, s1, mu2, s2)


def top_k_hits(distances: np.ndarray, *, top_k: int = 3) -> np.ndarray:
    """Per row i, whether column i is among the k nearest, for k = 1..top_k -> (N, top_k) bool.

    Cumulative by construction: a top-1 hit is also a top-2 and top-3 hit.
    """
    d = np.asarray(distances)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise MetricInputError(f"distance matrix must be square, got shape {d.shape}")
    # Stable argsort so ties resolve the same way on every run.
    order = np.argsort(d, axis=1, kind="stable")[:, :top_k]
    own = order == np.arange(d.shape[0])[:, None]
    return np.cumsum(own, axis=1) > 0


@dataclass(frozen=True)
class MatchingScores:
    """R-precision (top-1..k fractions) and MM-Dist over the full batches of one pass."""

    r_precision: tuple[float, ...]
    mm_dist: float
    num_samples: int


def matching_scores(text_embeddings: np.ndarray, motion_embeddings: np.ndarray, *, batch_size: int = 32,
                    top_k: int = 3) -> MatchingScores:
    """R-precision and MM-Dist as the protocol computes them: per consecutive batch of ``batch_size``
    pairs (the remainder is dropped, like the official ``drop_last`` loader), text i against the
    batch's motions; hits and matched distances are summed and divided by the samples used."""
    t, m = _as_2d("text_embeddings", text_embeddings), _as_2d("motion_embeddings", motion_embeddings)
    if t.shape != m.shape:
        raise MetricInputError(f"text and motion embeddings must pair up, got {t.shape} vs {m.shape}")
    n_batches = t.shape[0] // batch_size
    if n_batches == 0:
        raise MetricInputError(f"need at least one full batch of {batch_size} pairs, got {t.shape[0]}")
    hits = np.zeros(top_k)
    dist_sum = 0.0
    for b in range(n_batches):
        sl = slice(b * batch_size, (b + 1) * batch_size)
        d = euclidean_distance_matrix(t[sl], m[sl])
        hits += top_k_hits(d, top_k=top_k).sum(axis=0)
        dist_sum += float(np.trace(d))
    n = n_batches * batch_size
    return MatchingScores(tuple(float(h / n) for h in hits), dist_sum / n, n)


def diversity(embeddings: np.ndarray, *, times: int = 300, rng: np.random.Generator) -> float:
    """Mean distance between two independent random index sets (300, or 100 when N ≤ 300)."""
    x = _as_2d("embeddings", embeddings)
    n = x.shape[0]
    if n <= times:
        times = min(100, n - 1) if n > 1 else 0
    if times < 1:
        raise MetricInputError(f"diversity needs at least 2 embeddings, got {n}")
    a = rng.choice(n, times, replace=False)
    b = rng.choice(n, times, replace=False)
    return float(np.linalg.norm(x[a] - x[b], axis=1).mean())


def multimodality(embeddings: np.ndarray, *, times: int = 10, rng: np.random.Generator) -> float:
    """MultiModality over (num_texts, num_repeats, D) embeddings: per text, the mean distance between
    two index sets of ``times`` draws among the repeats (the same sets for every text, as MoMask)."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 3:
        raise MetricInputError(f"multimodality embeddings must be (texts, repeats, D), got {x.shape}")
    if x.shape[1] < times:
        raise MetricInputError(f"need at least {times} repeats per text, got {x.shape[1]}")
    a = rng.choice(x.shape[1], times, replace=False)
    b = rng.choice(x.shape[1], times, replace=False)
    return float(np.linalg.norm(x[:, a] - x[:, b], axis=-1).mean())


def mean_confidence_interval(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and 95% half-width ``1.96·std/√N`` (population std, as the published tables use)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise MetricInputError("no values to summarise")
    return float(v.mean()), float(1.96 * v.std() / np.sqrt(v.size))


def summarize_replications(runs: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Per metric name, ``{'mean', 'ci95', 'runs'}`` over the replication dicts (keys must agree)."""
    if not runs:
        raise MetricInputError("no replications to summarise")
    keys = list(runs[0])
    for i, r in enumerate(runs):
        if list(r) != keys:
            raise MetricInputError(f"replication {i} has metrics {sorted(r)}, expected {sorted(keys)}")
    out = {}
    for k in keys:
        mean, ci = mean_confidence_interval([r[k] for r in runs])
        out[k] = {"mean": mean, "ci95": ci, "runs": len(runs)}
    return out


def mpjpe(pred_joints: np.ndarray, gt_joints: np.ndarray, *, root_index: int = 0) -> float:
    """Mean per-joint position error after root alignment (pelvis subtracted per pose).

    Args:
        pred_joints, gt_joints: (..., J, 3) positions in the dataset's unit (metres for HumanML3D).
    Returns:
        The mean over joints and poses of the L2 error, in the same unit.
    """
    p, g = np.asarray(pred_joints, dtype=np.float64), np.asarray(gt_joints, dtype=np.float64)
    if p.shape != g.shape or p.ndim < 2 or p.shape[-1] != 3:
        raise MetricInputError(f"joint arrays must match and end in (J, 3): {p.shape} vs {g.shape}")
    p = p - p[..., root_index:root_index + 1, :]
    g = g - g[..., root_index:root_index + 1, :]
    return float(np.linalg.norm(p - g, axis=-1).mean())


def codebook_usage(codes: np.ndarray, *, nb_code: int) -> dict[str, float | list[float]]:
    """Fraction of codes used and perplexity per quantizer layer, from (..., Q) code ids (-1 ignored).

    Returns ``usage`` and ``perplexity`` (lists per layer) plus their means.
    """
    c = np.asarray(codes)
    if c.ndim < 1:
        raise MetricInputError(f"codes must have a trailing quantizer axis, got shape {c.shape}")
    c = c.reshape(-1, c.shape[-1])
    if c.size and (c.max() >= nb_code or c.min() < -1):
        raise MetricInputError(f"code ids must lie in [-1, {nb_code}), got range [{c.min()}, {c.max()}]")
    usage, perplexity = [], []
    for q in range(c.shape[1]):
        ids = c[:, q][c[:, q] >= 0]
        counts = np.bincount(ids, minlength=nb_code).astype(np.float64)
        usage.append(float((counts > 0).mean()))
        p = counts / max(counts.sum(), 1.0)
        nz = p[p > 0]
        perplexity.append(float(np.exp(-(nz * np.log(nz)).sum())) if nz.size else 0.0)
    return {
        "usage": usage,
        "perplexity": perplexity,
        "usage_mean": float(np.mean(usage)) if usage else 0.0,
        "perplexity_mean": float(np.mean(perplexity)) if perplexity else 0.0,
    }
