"""Import the authors' released MoMask checkpoints into one project bundle (design/momask.md §7.4).

The release is a folder tree per dataset (``checkpoints/t2m/...``, ``checkpoints/kit/...``) with one
sub-folder per trained part, each holding an ``opt.txt`` (the training options) and ``model/*.tar``
(a pickled dict whose weights sit under a part-specific top-level key). Our modules use the official
state-dict names and shapes, so importing is a strict key-for-key copy plus a config derived from the
``opt.txt`` files. Nothing is dropped silently except the transformers' ``clip_model.*`` entries,
which the official trainer already strips (CLIP is loaded separately, never stored in a bundle).

Facts this module relies on (all from the design notes):

* VQ folder: ``opt.txt``, ``meta/{mean,std}.npy`` (float64 in the release, float32 for self-trained
  runs) and ``model/net_best_fid.tar`` = {``vq_model`` (or ``net``), ``ep``}. The meta std already has
  the "/25" root/contact reweighting baked in (§1.4), so it is used as shipped, never recomputed.
* M-transformer: ``model/latest.tar`` = {``t2m_transformer`` (or ``trans``), ``ep``, ...}. Its opt.txt has
  no ``num_tokens``/``code_dim``/``num_quantizers``: those come from the VQ it was trained on.
* R-transformer: ``model/net_best_fid.tar`` = {``res_transformer``, ``ep``} with the three shared tables.
* Length estimator (t2m only): ``length_estimator/model/finest.tar`` = {``estimator``, ``epoch``, ``niter``}.
"""
from __future__ import annotations

import argparse
import collections
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from momask_model.config import MoMaskConfig
from momask_model.generation.momask import MoMask
from momask_model.motion.normalization import Normalizer
from momask_model.official.options import CLIP_DIM, DATASETS, OfficialImportError, config_from_official, parse_opt_txt

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FOLDERS",
    "OfficialImportError",
    "config_from_official",
    "find_official_folders",
    "import_official",
    "main",
    "parse_opt_txt",
]

#: Folder names created by the authors' download scripts; KIT's carry a ``_k`` suffix.
DEFAULT_FOLDERS: dict[str, str] = {
    "vq": "rvq_nq6_dc512_nc512_noshare_qdp0.2",
    "mask_transformer": "t2m_nlayer8_nhead6_ld384_ff1024_cdp0.1_rvq6ns",
    "residual_transformer": "tres_nlayer8_ld384_ff1024_rvq6ns_cdp0.2_sw",
}
LENGTH_ESTIMATOR_FOLDER = "length_estimator"
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
PART_TITLES = {
    "vq": "RVQ-VAE",
    "mask_transformer": "masked transformer",
    "residual_transformer": "residual transformer",
    "length_estimator": "length estimator",
}

# --------------------------------------------------------------------------------------------- folders
@dataclass(frozen=True)
class OfficialFolders:
    """Where each released part lives (``length_estimator`` None when absent, e.g. KIT)."""

    dataset_dir: Path
    vq: Path
    mask_transformer: Path
    residual_transformer: Path
    length_estimator: Path | None


def _dataset_dir(checkpoints_dir: Path, dataset: str) -> Path:
    if not checkpoints_dir.is_dir():
        raise OfficialImportError(f"checkpoints folder not found: {checkpoints_dir}")
    nested = checkpoints_dir / dataset
    if nested.is_dir():
        return nested
    if checkpoints_dir.name == dataset:  # the user pointed at checkpoints/<dataset> itself
        return checkpoints_dir
    raise OfficialImportError(
        f"no {dataset!r} folder in {checkpoints_dir}: expected {nested} as unpacked by the authors' "
        "prepare/download_models.sh"
    )


def _classify(opt: Mapping[str, Any], folder: Path) -> str | None:
    """Which part an opt.txt describes: VQ opts carry codebook keys (transformer opts never do), the
    transformers are told apart by the official naming (t2m_* masked, tres_* residual)."""
    if "nb_code" in opt or "num_quantizers" in opt:
        return "vq"
    name = str(opt.get("name", folder.name))
    if "latent_dim" not in opt and "n_layers" not in opt:
        return None
    if name.startswith("tres"):
        return "residual_transformer"
    if name.startswith("t2m"):
        return "mask_transformer"
    return None


def find_official_folders(
    checkpoints_dir: str | Path,
    dataset: str = "t2m",
    *,
    vq_name: str | None = None,
    mask_name: str | None = None,
    res_name: str | None = None,
) -> OfficialFolders:
    """Locate the VQ, M-, R-transformer and length-estimator folders of a release.

    Order of preference per part: the explicit name; for the VQ, the ``vq_name`` recorded in the
    M-transformer's opt.txt when that folder holds a VQ; the documented default name (``_k`` suffix for
    KIT); the only folder under ``<checkpoints_dir>/<dataset>/`` whose opt.txt identifies that part.

    Raises:
        OfficialImportError: the folder tree is missing, a named folder does not exist, or a part is
            absent or ambiguous (the message lists the candidates).
    """
    if dataset not in DATASETS:
        raise OfficialImportError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    root = _dataset_dir(Path(checkpoints_dir), dataset)
    suffix = "_k" if dataset == "kit" else ""
    found: dict[str, list[Path]] = {"vq": [], "mask_transformer": [], "residual_transformer": []}
    opts: dict[Path, dict[str, Any]] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and (p / "opt.txt").is_file()):
        try:
            opts[sub] = parse_opt_txt(sub / "opt.txt")
        except OfficialImportError as exc:
            log.warning("skipping %s: %s", sub, exc)
            continue
        kind = _classify(opts[sub], sub)
        if kind is not None:
            found[kind].append(sub)

    def pick(part: str, explicit: str | None, hint: str | None = None) -> Path:
        if explicit is not None:
            path = root / explicit
            if not path.is_dir():
                raise OfficialImportError(f"{PART_TITLES[part]} folder not found: {path}")
            return path
        candidates = found[part]
        if hint is not None and root / hint in candidates:  # the VQ the transformer was trained on
            return root / hint
        default = root / (DEFAULT_FOLDERS[part] + suffix)
        if default.is_dir():
            return default
        if len(candidates) == 1:
            return candidates[0]
        flag = {"vq": "vq_name", "mask_transformer": "mask_name", "residual_transformer": "res_name"}[part]
        if not candidates:
            raise OfficialImportError(
                f"no {PART_TITLES[part]} found in {root}: expected folder {default.name} or a folder whose "
                "opt.txt describes one"
            )
        raise OfficialImportError(
            f"several {PART_TITLES[part]} folders in {root}: {[c.name for c in candidates]}; choose one with {flag}="
        )

    mask = pick("mask_transformer", mask_name)
    residual = pick("residual_transformer", res_name)
    m_opt = opts.get(mask) or parse_opt_txt(mask / "opt.txt")
    hint = m_opt.get("vq_name")
    vq = pick("vq", vq_name, str(hint) if isinstance(hint, str) else None)
    length = root / LENGTH_ESTIMATOR_FOLDER
    return OfficialFolders(
        dataset_dir=root,
        vq=vq,
        mask_transformer=mask,
        residual_transformer=residual,
        length_estimator=length if length.is_dir() else None,
    )


# --------------------------------------------------------------------------------------------- weights
@dataclass
class _LoadedPart:
    """One part's checkpoint: file, weights (CLIP entries removed) and bookkeeping for the bundle meta."""

    path: Path
    weights_key: str
    state: dict[str, torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)


def _checkpoint_file(folder: Path, part: str) -> Path:
    for name in CHECKPOINT_FILES[part]:
        path = folder / "model" / name
        if path.is_file():
            return path
    tried = ", ".join(str(folder / "model" / n) for n in CHECKPOINT_FILES[part])
    raise OfficialImportError(f"{PART_TITLES[part]} checkpoint not found (looked for {tried})")


def _torch_load(path: Path, trust_pickle: bool) -> Any:
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


def _load_part(folder: Path, part: str, trust_pickle: bool) -> _LoadedPart:
    path = _checkpoint_file(folder, part)
    payload = _torch_load(path, trust_pickle)
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
    return _LoadedPart(path=path, weights_key=key, state=state, info=info)


def _check_state(loaded: _LoadedPart, module: nn.Module, part: str) -> None:
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


def _check_pair(vq: _LoadedPart, part: _LoadedPart, name: str, config: MoMaskConfig) -> None:
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
            continue  # reported as a missing key by _check_state
        if len(shape) != tensor.dim() or any(s is not None and s != t for s, t in zip(shape, tensor.shape)):
            raise OfficialImportError(
                f"{part.path}: key {key!r} has shape {tuple(tensor.shape)}, but the VQ {vq.path} has "
                f"nb_code={vcfg.nb_code}, code_dim={vcfg.code_dim}, num_quantizers={vcfg.num_quantizers} "
                f"({meaning}): this {PART_TITLES[name]} was trained on a different VQ"
            )


def _load_meta(vq_folder: Path, dim: int) -> tuple[Normalizer, str]:
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


# --------------------------------------------------------------------------------------------- import
def _build_text_encoder(config: MoMaskConfig, *, download: bool) -> nn.Module:
    """CLIP as the bundle will build it; ``download=False`` only looks at local files and the cache, so
    converting offline does not wait on network retries (the bundle downloads CLIP when first loaded)."""
    from momask_model.text.encoders import ClipTextEncoder, build_text_encoder

    cfg = config.text_encoder
    if download:
        return build_text_encoder(cfg)
    return ClipTextEncoder(
        model_name=cfg.model_name, weights=cfg.weights, allow_random=cfg.allow_random,
        context_length=cfg.max_words, seed=cfg.seed, download=False,
    )


def import_official(
    checkpoints_dir: str | Path,
    dataset: str = "t2m",
    out: str | Path | None = None,
    *,
    clip_weights: str | None = "openai",
    vq_name: str | None = None,
    mask_name: str | None = None,
    res_name: str | None = None,
    clip_allow_random: bool = False,
    trust_pickle: bool = False,
) -> MoMask:
    """Build a `MoMask` from the authors' released checkpoints, and write it as a bundle if ``out``.

    Args:
        checkpoints_dir: the release's ``checkpoints`` folder (holding ``t2m/`` and/or ``kit/``), or the
            dataset folder itself.
        dataset: ``'t2m'`` (HumanML3D) or ``'kit'``.
        out: bundle path to write (atomic); None to only return the model.
        clip_weights: CLIP ViT-B/32 weights recorded in the bundle and loaded now: ``'openai'`` (open_clip
            cache, downloaded on first use when online) or a local file. They are never stored in the
            bundle. With ``out`` given no download is attempted here (the bundle downloads CLIP when it
            is first loaded); when they are not available locally, the bundle is still written (a
            warning is logged) and the returned model's text encoder raises the cause when used; without
            ``out`` the `TextEncoderWeightsMissing` error propagates.
        vq_name, mask_name, res_name: folder names overriding the defaults / auto-detection.
        clip_allow_random: tests and demos only: use a random CLIP tower when weights are missing.
        trust_pickle: unpickle arbitrary objects from the .tar files (default: plain data only).

    Returns:
        The model in eval mode; ``bundle_meta`` records the source files and their epochs.

    Raises:
        OfficialImportError: missing folder/file/key, unexpected key, wrong shape, or a VQ/transformer
            mismatch (the message names the file and the key).
    """
    from momask_model.generation.bundle import save_bundle
    from momask_model.nets.length import LengthEstimator
    from momask_model.nets.masked import MaskTransformer
    from momask_model.nets.residual import ResidualTransformer
    from momask_model.nets.vq import RVQVAE

    folders = find_official_folders(checkpoints_dir, dataset, vq_name=vq_name, mask_name=mask_name, res_name=res_name)
    opts = {}
    for part in ("vq", "mask_transformer", "residual_transformer"):
        folder: Path = getattr(folders, part)
        opt = parse_opt_txt(folder / "opt.txt")
        opt["__path__"] = str(folder / "opt.txt")
        opts[part] = opt
    loaded = {part: _load_part(getattr(folders, part), part, trust_pickle) for part in opts}
    if "share_weight" not in opts["residual_transformer"]:  # older opts: read the variant off the weights
        opts["residual_transformer"]["share_weight"] = "embed_proj_shared_weight" in loaded["residual_transformer"].state
    if folders.length_estimator is not None:
        loaded["length_estimator"] = _load_part(folders.length_estimator, "length_estimator", trust_pickle)
    else:
        log.info("no %s folder in %s: the bundle has no length estimator (pass lengths)",
                 LENGTH_ESTIMATOR_FOLDER, folders.dataset_dir)

    config = config_from_official(
        opts["vq"], opts["mask_transformer"], opts["residual_transformer"], dataset,
        clip_weights=clip_weights, clip_allow_random=clip_allow_random,
    )
    vq_opt_name = opts["mask_transformer"].get("vq_name")
    if isinstance(vq_opt_name, str) and vq_opt_name != folders.vq.name:
        log.warning("%s was trained with VQ %r but VQ %r is imported; token spaces are checked by shape only",
                    folders.mask_transformer.name, vq_opt_name, folders.vq.name)
    for part in ("mask_transformer", "residual_transformer"):
        _check_pair(loaded["vq"], loaded[part], part, config)

    modules: dict[str, nn.Module] = {
        "vq": RVQVAE(**config.vq.model_kwargs()),
        "mask_transformer": MaskTransformer(**config.mask_transformer.model_kwargs()),
        "residual_transformer": ResidualTransformer(**config.residual_transformer.model_kwargs()),
    }
    if "length_estimator" in loaded:
        modules["length_estimator"] = LengthEstimator(**config.length_estimator.model_kwargs())
    for part, module in modules.items():
        _check_state(loaded[part], module, part)
        module.load_state_dict(loaded[part].state, strict=True)
    normalizer, meta_dtype = _load_meta(folders.vq, config.dataset.dim_pose)

    meta: dict[str, Any] = {
        "source": "official",
        "dataset": dataset,
        "checkpoints_dir": str(Path(checkpoints_dir)),
        "files": {part: part_info.info for part, part_info in loaded.items()},
        "folders": {part: getattr(folders, part).name for part in opts},
        "normalizer": {"dir": str(folders.vq / "meta"), "dtype": meta_dtype},
        "opt": {part: {k: v for k, v in opt.items() if k != "__path__"} for part, opt in opts.items()},
    }
    try:
        text_encoder = _build_text_encoder(config, download=out is None)
    except FileNotFoundError as exc:  # TextEncoderWeightsMissing
        if out is None:
            raise
        log.warning("CLIP weights are not available here (%s); the bundle is written anyway and loads CLIP "
                    "when it is opened", exc)
        text_encoder = _PendingTextEncoder(str(exc), CLIP_DIM)
    model = MoMask(
        config=config,
        vq=modules["vq"],
        mask_transformer=modules["mask_transformer"],
        residual_transformer=modules["residual_transformer"],
        length_estimator=modules.get("length_estimator"),
        text_encoder=text_encoder,
        normalizer=normalizer,
    )
    model.bundle_meta = meta
    if out is not None:
        save_bundle(model, out, meta=meta)
        log.info("wrote %s from %s (%s)", out, folders.dataset_dir,
                 ", ".join(f"{p} ep {i.get('ep', i.get('epoch', '?'))}" for p, i in meta["files"].items()))
    return model.eval()


class _PendingTextEncoder(nn.Module):
    """Stands in for CLIP when its weights are not on this machine: the bundle records where CLIP comes
    from, so conversion does not need it; encoding raises the original cause."""

    def __init__(self, reason: str, dim: int) -> None:
        super().__init__()
        self.reason = reason
        self.dim = dim

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        from momask_model.text.base import TextEncoderWeightsMissing

        raise TextEncoderWeightsMissing(self.reason)

    def unknown_words(self, text: str) -> list[str]:
        return []


# --------------------------------------------------------------------------------------------- CLI
def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="momask-import-official",
        description="Convert the authors' released MoMask checkpoints (momask-codes prepare/download_models.sh) "
        "into one bundle for momask-generate and the ROS node.",
    )
    p.add_argument("--checkpoints", type=Path, required=True, help="the release's checkpoints/ folder")
    p.add_argument("--dataset", choices=DATASETS, default="t2m", help="t2m (HumanML3D) or kit")
    p.add_argument("--out", type=Path, required=True, help="bundle file to write (.pt)")
    p.add_argument("--clip-weights", default="openai",
                   help="CLIP ViT-B/32 weights the bundle loads: 'openai' (open_clip cache/download) or a local file")
    p.add_argument("--vq-name", default=None, help="VQ folder name (default: auto-detect)")
    p.add_argument("--mask-name", default=None, help="masked-transformer folder name (default: auto-detect)")
    p.add_argument("--res-name", default=None, help="residual-transformer folder name (default: auto-detect)")
    p.add_argument("--trust-pickle", action="store_true", help="allow arbitrary pickled objects in the .tar files")
    p.add_argument("--clip-allow-random", action="store_true",
                   help="tests/demos only: fall back to a random CLIP text tower when weights are missing")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``momask-import-official``; returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = _parse_args(argv)
    try:
        import_official(
            args.checkpoints,
            args.dataset,
            args.out,
            clip_weights=args.clip_weights,
            vq_name=args.vq_name,
            mask_name=args.mask_name,
            res_name=args.res_name,
            clip_allow_random=args.clip_allow_random,
            trust_pickle=args.trust_pickle,
        )
    except (OfficialImportError, OSError) as exc:
        print(f"momask-import-official: {exc}", file=sys.stderr)
        return 2
    print(f"momask-import-official: wrote {args.out}; use it with momask-generate --bundle {args.out} "
          "or set bundle: in config/momask.yaml", file=sys.stderr)
    return 0
