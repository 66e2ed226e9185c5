"""Skill recognition with the text-motion evaluator: nearest skill centroid in its motion embedding space.

Used to check that a model makes the motion a caption asks for (the demo model's acceptance test):
each skill's centroid is the mean evaluator embedding of its real motions, and a generated motion is
recognised as the skill whose centroid is nearest (Euclidean, like the evaluator's matching score).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from momask_model.evaluate.evaluator import TextMotionEvaluator, load_evaluator, save_evaluator

_SKILL_ID = re.compile(r"^M?(?P<skill>[a-z_]+?)_\d+$")


def skill_of_id(motion_id: str) -> str:
    """Demo-dataset id -> skill (``Mwalk_012`` -> ``walk``)."""
    m = _SKILL_ID.match(motion_id)
    if m is None:
        raise ValueError(f"motion id {motion_id!r} does not look like <skill>_<n>")
    return m.group("skill")


def captions_by_skill(layout, split: str = "train") -> dict[str, list[str]]:
    """Skill -> the distinct captions of a demo-layout dataset split (mirrored captions included)."""
    out: dict[str, list[str]] = {}
    for motion_id in layout.split_ids(split):
        caps = out.setdefault(skill_of_id(motion_id), [])
        caps.extend(a.caption for a in layout.read_texts(motion_id) if a.caption not in caps)
    return out


class SkillRecognizer:
    """Evaluator + per-skill centroids of motion embeddings."""

    def __init__(self, evaluator: TextMotionEvaluator, centroids: dict[str, np.ndarray]) -> None:
        if not centroids:
            raise ValueError("no skill centroids")
        self.evaluator = evaluator.eval()
        self.skills = sorted(centroids)
        self.centroids = np.stack([np.asarray(centroids[s], np.float32) for s in self.skills])

    @torch.no_grad()
    def embed(self, features: Sequence[np.ndarray]) -> np.ndarray:
        """Raw (de-normalised) feature arrays (T_i, D) -> evaluator motion embeddings (B, E)."""
        lengths = [len(f) for f in features]
        T = max(lengths)
        batch = np.zeros((len(features), T, features[0].shape[-1]), np.float32)
        for i, f in enumerate(features):
            batch[i, : len(f)] = f
            batch[i, len(f):] = f[-1]
        dev = self.evaluator.mean.device
        emb = self.evaluator.encode_motion(torch.from_numpy(batch).to(dev), torch.tensor(lengths, device=dev))
        return emb.cpu().numpy()

    def predict(self, features: Sequence[np.ndarray]) -> list[str]:
        """Nearest-centroid skill of each motion."""
        emb = self.embed(features)
        d = np.linalg.norm(emb[:, None] - self.centroids[None], axis=-1)
        return [self.skills[i] for i in d.argmin(axis=1)]

    @classmethod
    def fit(
        cls,
        evaluator: TextMotionEvaluator,
        motions: dict[str, np.ndarray],
        *,
        label: Callable[[str], str] = skill_of_id,
        chunk: int = 64,
    ) -> "SkillRecognizer":
        """Centroids from labelled real motions (id -> raw features (T, D))."""
        probe = cls(evaluator, {"_": np.zeros(evaluator.config.dim_coemb_hidden)})
        by_skill: dict[str, list[np.ndarray]] = {}
        ids = sorted(motions)
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            for mid, e in zip(part, probe.embed([motions[i] for i in part])):
                by_skill.setdefault(label(mid), []).append(e)
        return cls(evaluator, {s: np.mean(v, axis=0) for s, v in by_skill.items()})

    def save(self, path: str | Path) -> None:
        save_evaluator(self.evaluator, path, extra={"skill_centroids": dict(zip(self.skills, self.centroids))})

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "SkillRecognizer":
        evaluator = load_evaluator(path, device=device)
        payload = torch.load(path, map_location="cpu", weights_only=False)
        if "skill_centroids" not in payload:
            raise ValueError(f"{path} is an evaluator without skill centroids")
        return cls(evaluator, payload["skill_centroids"])
