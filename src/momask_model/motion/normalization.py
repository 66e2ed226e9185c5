"""Feature normalisation: dataset mean/std, MoMask's feat_bias, and the ``Normalizer`` (§1.3, §1.4).

Models work on z-normalised features; the std recipe (group means, feat_bias once or twice) decides
which checkpoints a normaliser matches, so it is written down once here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from momask_model.motion.feature_layout import ArrayT, InvalidMotionError, feature_dim, feature_slices, joints_num_from_dim


def _feat_bias_dims(joints_num: int) -> np.ndarray:
    """Root (0:4) and contact (last 4) dims, the ones MoMask's VQ dataset divides by feat_bias."""
    dim = feature_dim(joints_num)
    return np.r_[0:4, dim - 4 : dim]


def compute_mean_std(
    feature_arrays: Iterable[np.ndarray],
    joints_num: int = 22,
    *,
    feat_bias: float = 5.0,
    double_feat_bias: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Dataset mean and std over all frames, with HumanML3D's group-mean std and MoMask's feat_bias.

    The per-dimension std is replaced by its mean inside each of the seven feature groups
    (``feature_slices``), which is how HumanML3D's ``Std.npy`` was made: dimensions of one kind share
    one scale so that, e.g., a rarely moving joint is not blown up. Then the root (0:4) and contact
    (last 4) dims are divided by ``feat_bias`` so the reconstruction loss weighs them more.

    ``feat_bias=1.0`` gives exactly the dataset ``Std.npy`` as HumanML3D ships it. The default
    (``feat_bias=5``, applied once) is what we use for our own training. The released MoMask
    checkpoints (and the official evaluator) divided twice by accident (/25, design §1.4):
    ``double_feat_bias=True`` reproduces their ``meta/std.npy``.

    Args:
        feature_arrays: iterable of (T_i, D) feature arrays (de-normalised).
        joints_num: 22 or 21; fixes D and the groups.

    Returns:
        (mean, std), each float32 (D,).
    """
    dim = feature_dim(joints_num)
    arrays = [np.asarray(a, dtype=np.float64) for a in feature_arrays]
    if not arrays:
        raise InvalidMotionError("compute_mean_std needs at least one feature array")
    for i, a in enumerate(arrays):
        if a.ndim != 2 or a.shape[1] != dim:
            raise InvalidMotionError(f"feature array {i} has shape {a.shape}, expected (T, {dim})")
        if not np.isfinite(a).all():
            raise InvalidMotionError(f"feature array {i} contains NaN or infinite values")
    if feat_bias <= 0:
        raise ValueError(f"feat_bias must be > 0, got {feat_bias}")
    data = np.concatenate(arrays, axis=0)
    mean = data.mean(axis=0)
    std = data.std(axis=0)
    for sl in feature_slices(joints_num).values():
        std[sl] = std[sl].mean()
    std = apply_feat_bias(std, joints_num, feat_bias=feat_bias, times=2 if double_feat_bias else 1)
    if np.any(std <= 0):
        bad = [name for name, sl in feature_slices(joints_num).items() if np.any(std[sl] <= 0)]
        raise InvalidMotionError(f"feature groups {bad} have zero variance; add more varied motion")
    return mean.astype(np.float32), std.astype(np.float32)


def apply_feat_bias(std: np.ndarray, joints_num: int = 22, *, feat_bias: float = 5.0, times: int = 1) -> np.ndarray:
    """Copy of ``std`` with root and contact dims divided by ``feat_bias ** times`` (§1.4)."""
    out = np.array(std, dtype=np.float64 if np.asarray(std).dtype == np.float64 else np.float32, copy=True)
    out[_feat_bias_dims(joints_num)] /= feat_bias**times
    return out


class Normalizer:
    """Z-normalisation of features with a fixed mean/std (works on numpy arrays and torch tensors).

    Args:
        mean, std: (D,) arrays; float32 or float64 (released checkpoints ship float64 meta files).

    Raises:
        ValueError: shapes differ, values are not finite, or some std is not positive.
    """

    def __init__(self, mean: np.ndarray | torch.Tensor, std: np.ndarray | torch.Tensor) -> None:
        m = np.asarray(mean.detach().cpu() if isinstance(mean, torch.Tensor) else mean, dtype=np.float64)
        s = np.asarray(std.detach().cpu() if isinstance(std, torch.Tensor) else std, dtype=np.float64)
        if m.ndim != 1 or m.shape != s.shape:
            raise ValueError(f"mean and std must be 1-D of equal length, got {m.shape} and {s.shape}")
        if not (np.isfinite(m).all() and np.isfinite(s).all()):
            raise ValueError("mean/std contain NaN or infinite values")
        if np.any(s <= 0):
            raise ValueError(f"std must be positive; dims {np.flatnonzero(s <= 0)[:10].tolist()} are not")
        self.mean = m.astype(np.float32)
        self.std = s.astype(np.float32)
        self._torch_cache: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def _stats_like(self, x: ArrayT) -> tuple[ArrayT, ArrayT]:
        if x.shape[-1] != self.dim:
            raise InvalidMotionError(f"feature size {x.shape[-1]} does not match the normalizer's {self.dim}")
        if isinstance(x, torch.Tensor):
            key = (x.dtype, x.device)
            if key not in self._torch_cache:
                self._torch_cache[key] = (
                    torch.as_tensor(self.mean, dtype=x.dtype, device=x.device),
                    torch.as_tensor(self.std, dtype=x.dtype, device=x.device),
                )
            return self._torch_cache[key]  # type: ignore[return-value]
        dtype = x.dtype if np.asarray(x).dtype.kind == "f" else np.float32
        return self.mean.astype(dtype), self.std.astype(dtype)  # type: ignore[return-value]

    def normalize(self, x: ArrayT) -> ArrayT:
        """(x - mean) / std over the last axis."""
        mean, std = self._stats_like(x)
        return (x - mean) / std

    def denormalize(self, x: ArrayT) -> ArrayT:
        """x * std + mean over the last axis."""
        mean, std = self._stats_like(x)
        return x * std + mean

    def with_feat_bias(self, feat_bias: float = 5.0, *, times: int = 1) -> "Normalizer":
        """A normalizer whose root and contact std are divided by ``feat_bias ** times`` (§1.4)."""
        std = apply_feat_bias(self.std, joints_num_from_dim(self.dim), feat_bias=feat_bias, times=times)
        return Normalizer(self.mean, std)

    def save(self, directory: str | Path, *, names: tuple[str, str] = ("mean.npy", "std.npy")) -> None:
        """Write float32 ``mean.npy``/``std.npy`` (or other ``names``) into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / names[0], self.mean)
        np.save(d / names[1], self.std)

    @classmethod
    def from_dir(cls, path: str | Path) -> "Normalizer":
        """Load from a dataset root (``Mean.npy``/``Std.npy``) or a checkpoint (``meta/mean.npy``...).

        Looks, in order, for ``Mean.npy``+``Std.npy``, ``mean.npy``+``std.npy`` and
        ``meta/mean.npy``+``meta/std.npy`` inside ``path``.

        Raises:
            FileNotFoundError: none of these pairs exists (the message lists what was tried).
        """
        root = Path(path)
        candidates = [(root / "Mean.npy", root / "Std.npy"), (root / "mean.npy", root / "std.npy"),
                      (root / "meta" / "mean.npy", root / "meta" / "std.npy")]
        for mean_path, std_path in candidates:
            if mean_path.is_file() and std_path.is_file():
                return cls(np.load(mean_path), np.load(std_path))
        tried = ", ".join(f"{m.relative_to(root)}+{s.name}" for m, s in candidates)
        raise FileNotFoundError(f"no mean/std files in {root} (tried {tried})")

    def __repr__(self) -> str:
        return f"Normalizer(dim={self.dim})"
