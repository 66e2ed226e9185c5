"""Reading the authors' checkpoint files and checking them against the architecture (design/momask.md §7.4).

Facts this module relies on (all from the design notes):

* VQ folder: ``opt.txt``, ``meta/{mean,std}.npy`` (float64 in the release, float32 for self-trained
  runs) and ``model/net_best_fid.tar`` = {``vq_model`` (or ``net``), ``ep``}. The meta std already has
  the "/25" root/contact reweighting baked in (§1.4), so it is used as shipped, never recomputed.
* M-transformer: ``model/latest.tar`` = {``t2m_transformer`` (or ``trans``), ``ep``, ...}.
* R-transformer: ``model/net_best_fid.tar`` = {``res_transformer``, ``ep``} with the three shared tables.
* Length estimator (t2m only): ``length_estimator/model/finest.tar`` = {``estimator``, ``epoch``, ``niter``}.

Our modules use the official state-dict names and shapes, so a part's weights are a strict
key-for-key copy; nothing is dropped silently except the transformers' ``clip_model.*`` entries,
which the official trainer already strips.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from momask_model.config import MoMaskConfig
from momask_model.motion.normalization import Normalizer
from momask_model.official.folders import PART_TITLES
from momask_model.official.options import OfficialImportError

#: Checkpoint file per part, the released one first (the M-transformer release is ``latest.tar``); the
#: others are what the official trainers also write, accepted for self-trained runs.
CHECKPOINT_FILES: dict[str, tuple[str, ...]] = {
    "vq": ("net_best_fid.tar", "latest.tar"),
    "mask_transformer": ("latest.tar", "net_best_fid.tar"),
    "residual_transformer": ("net_best_fid.tar", "latest.tar"),
    "length_estimator": ("finest.tar",),
}
#: Top-level dict keys under which the official savers/loaders keep each part's weights.
WEIGHT_KEYS: dict[str, tuple[str, ...]] = {
    "vq": ("vq_model", "net"),
    "mask_transformer": ("t2m_transformer", "trans"),
    "residual_transformer": ("res_transformer", "trans"),
    "length_estimator": ("estimator",),
}
#: Keys of the frozen CLIP model the official transformers strip before saving; the only droppable ones.
CLIP_PREFIX = "clip_model."


@dataclass
class LoadedPart:
    """One part's checkpoint: file, weights (CLIP entries removed) and bookkeeping for the bundle meta."""

    path: Path
    weights_key: str
    state: dict[str, torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)


def checkpoint_file(folder: Path, part: str) -> Path:
    for name in CHECKPOINT_FILES[part]:
        path = folder / "model" / name
        if path.is_file():
            return path
    tried = ", ".join(str(folder / "model" / n) for n in CHECKPOINT_FILES[part])
    raise OfficialImportError(f"{PART_TITLES[part]} checkpoint not found (looked for {tried})")


def torch_load(path: Path, trust_pickle: bool) -> Any:
    """Load a .tar; by default only plain data (tensors, numbers, containers) may be unpickled.

    ``collections.Counter`` is allowed because the KIT M-transformer file keeps its MultiStepLR state.
    """
    try:
        if trust_pickle:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals([collections.Counter]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        hint = "" if trust_pickle else " (if you trust this file and it holds other Python objects, pass trust_pickle=True / --trust-pickle)"
        raise OfficialImportError(f"cannot read checkpoint {path}: {exc}{hint}") from exc


def load_part(folder: Path, part: str, trust_pickle: bool) -> LoadedPart:
    path = checkpoint_file(folder, part)
    payload = torch_load(path, trust_pickle)
    if not isinstance(payload, Mapping):
        raise OfficialImportError(f"{path}: expected a dict checkpoint, got {type(payload).__name__}")
    key = next((k for k in WEIGHT_KEYS[part] if k in payload), None)
    if key is None:
        raise OfficialImportError(
            f"{path}: no {PART_TITLES[part]} weights; expected top-level key "
            f"{' or '.join(repr(k) for k in WEIGHT_KEYS[part])}, found {sorted(map(str, payload))}"
        )
    raw = payload[key]
    if not isinstance(raw, Mapping):
        raise OfficialImportError(f"{path}: {key!r} is {type(raw).__name__}, expected a state dict")
    state: dict[str, torch.Tensor] = {}
    dropped = 0
    for name, value in raw.items():
        if part in ("mask_transformer", "residual_transformer") and str(name).startswith(CLIP_PREFIX):
            dropped += 1
            continue
        if not isinstance(value, torch.Tensor):
            raise OfficialImportError(f"{path}: {key}[{name!r}] is {type(value).__name__}, not a tensor")
        state[str(name)] = value
    info: dict[str, Any] = {"file": str(path), "weights_key": key}
    for counter in ("ep", "epoch", "niter", "total_it"):
        if counter in payload and isinstance(payload[counter], (int, float)):
            info[counter] = payload[counter]
    if dropped:
        info["dropped_clip_keys"] = dropped
    return LoadedPart(path=path, weights_key=key, state=state, info=info)


def check_state(loaded: LoadedPart, module: nn.Module, part: str) -> None:
    """Strict key and shape comparison; the error names the file and the first offending key."""
    expected = module.state_dict()
    got = loaded.state
    where = f"{loaded.path} [{loaded.weights_key}]"
    missing = [k for k in expected if k not in got]
    if missing:
        raise OfficialImportError(
            f"{where}: {PART_TITLES[part]} key {missing[0]!r} is missing"
            + (f" (and {len(missing) - 1} more: {missing[1:4]})" if len(missing) > 1 else "")
        )
    unexpected = [k for k in got if k not in expected]
    if unexpected:
        raise OfficialImportError(
            f"{where}: unexpected {PART_TITLES[part]} key {unexpected[0]!r}"
            + (f" (and {len(unexpected) - 1} more: {unexpected[1:4]})" if len(unexpected) > 1 else "")
        )
    for k, ref in expected.items():
        if tuple(got[k].shape) != tuple(ref.shape):
            raise OfficialImportError(
                f"{where}: key {k!r} has shape {tuple(got[k].shape)}, the opt.txt architecture needs {tuple(ref.shape)}"
            )
        if not got[k].dtype.is_floating_point:
            raise OfficialImportError(f"{where}: key {k!r} has dtype {got[k].dtype}, expected floating point")


def check_pair(vq: LoadedPart, part: LoadedPart, name: str, config: MoMaskConfig) -> None:
    """A transformer must speak the token space of the VQ it is imported with (§3.1, §4.1)."""
    vcfg = config.vq
    codebook = vq.state.get("quantizer.layers.0.codebook")
    if codebook is not None and tuple(codebook.shape) != (vcfg.nb_code, vcfg.code_dim):
        raise OfficialImportError(
            f"{vq.path}: key 'quantizer.layers.0.codebook' has shape {tuple(codebook.shape)} but its opt.txt says "
            f"nb_code={vcfg.nb_code}, code_dim={vcfg.code_dim}"
        )
    layers = {k.split(".")[2] for k in vq.state if k.startswith("quantizer.layers.")}
    if layers and len(layers) != vcfg.num_quantizers:
        raise OfficialImportError(
            f"{vq.path}: holds {len(layers)} quantizer layers (quantizer.layers.*) but its opt.txt says "
            f"num_quantizers={vcfg.num_quantizers}"
        )
    if name == "mask_transformer":
        checks = [("token_emb.weight", (vcfg.nb_code + 2, vcfg.code_dim), "nb_code + 2 rows (codes, [MASK], [PAD]) of code_dim"),
                  ("output_process.poseFinal.weight", (vcfg.nb_code, None), "nb_code classes")]
    else:
        checks = [("token_embed_weight_", (1, vcfg.nb_code + 1, vcfg.code_dim), "nb_code + 1 rows of code_dim"),
                  ("embed_proj_shared_weight", (vcfg.num_quantizers - 2, vcfg.nb_code + 1, vcfg.code_dim),
                   "num_quantizers - 2 tables of nb_code + 1 rows of code_dim"),
                  ("quant_emb.weight", (None, vcfg.num_quantizers), "one input per quantizer layer")]
    for key, shape, meaning in checks:
        tensor = part.state.get(key)
        if tensor is None:
            continue  # reported as a missing key by check_state
        if len(shape) != tensor.dim() or any(s is not None and s != t for s, t in zip(shape, tensor.shape)):
            raise OfficialImportError(
                f"{part.path}: key {key!r} has shape {tuple(tensor.shape)}, but the VQ {vq.path} has "
                f"nb_code={vcfg.nb_code}, code_dim={vcfg.code_dim}, num_quantizers={vcfg.num_quantizers} "
                f"({meaning}): this {PART_TITLES[name]} was trained on a different VQ"
            )


def load_meta(vq_folder: Path, dim: int) -> tuple[Normalizer, str]:
    """The normaliser shipped with the VQ, used as is (§1.4: its std already holds the /25 quirk)."""
    arrays = []
    for name in ("mean", "std"):
        path = vq_folder / "meta" / f"{name}.npy"
        if not path.is_file():
            raise OfficialImportError(f"normalisation file not found: {path} (shipped with the VQ checkpoint)")
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise OfficialImportError(f"cannot read {path}: {exc}") from exc
        if arr.shape != (dim,) or arr.dtype.kind != "f":
            raise OfficialImportError(f"{path}: expected a float ({dim},) array, got {arr.dtype} {arr.shape}")
        arrays.append(arr)
    try:
        return Normalizer(arrays[0], arrays[1]), str(arrays[1].dtype)
    except ValueError as exc:
        raise OfficialImportError(f"{vq_folder / 'meta'}: {exc}") from exc
