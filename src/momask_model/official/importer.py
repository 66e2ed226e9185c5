"""Import the authors' released MoMask checkpoints into one project bundle (design/momask.md §7.4).

`import_official` finds the parts of a release (`folders`), reads and checks their weights
(`checkpoints`), derives the config from their ``opt.txt`` files (`options`) and builds the `MoMask`,
written as a bundle when asked; `main` is ``momask-import-official``. CLIP is loaded separately,
never stored in a bundle.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from momask_model.config import MoMaskConfig
from momask_model.generation.momask import MoMask
from momask_model.official.checkpoints import check_pair, check_state, load_meta, load_part
from momask_model.official.folders import LENGTH_ESTIMATOR_FOLDER, find_official_folders
from momask_model.official.options import DATASETS, OfficialImportError, config_from_official, parse_opt_txt
from momask_model.text.base import TextEncoder, TextEncoderWeightsMissing

log = logging.getLogger(__name__)

__all__ = ["OfficialImportError", "import_official", "main"]


# --------------------------------------------------------------------------------------------- import
def _build_text_encoder(config: MoMaskConfig, *, download: bool) -> TextEncoder:
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
    loaded = {part: load_part(getattr(folders, part), part, trust_pickle) for part in opts}
    if "share_weight" not in opts["residual_transformer"]:  # older opts: read the variant off the weights
        opts["residual_transformer"]["share_weight"] = "embed_proj_shared_weight" in loaded["residual_transformer"].state
    if folders.length_estimator is not None:
        loaded["length_estimator"] = load_part(folders.length_estimator, "length_estimator", trust_pickle)
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
        check_pair(loaded["vq"], loaded[part], part, config)

    modules: dict[str, nn.Module] = {
        "vq": RVQVAE(**config.vq.model_kwargs()),
        "mask_transformer": MaskTransformer(**config.mask_transformer.model_kwargs()),
        "residual_transformer": ResidualTransformer(**config.residual_transformer.model_kwargs()),
    }
    if "length_estimator" in loaded:
        modules["length_estimator"] = LengthEstimator(**config.length_estimator.model_kwargs())
    for part, module in modules.items():
        check_state(loaded[part], module, part)
        module.load_state_dict(loaded[part].state, strict=True)
    normalizer, meta_dtype = load_meta(folders.vq, config.dataset.dim_pose)

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
        text_encoder = _PendingTextEncoder(str(exc), config)
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


class _PendingTextEncoder(TextEncoder):
    """Stands in for CLIP when its weights are not on this machine: the bundle records where CLIP comes
    from, so conversion does not need it; encoding raises the original cause."""

    def __init__(self, reason: str, config: MoMaskConfig) -> None:
        super().__init__()
        self.reason = reason
        self.model_name = config.text_encoder.model_name
        self.dim = config.text_encoder.dim

    def _encode(self, texts: list[str]) -> torch.Tensor:
        raise TextEncoderWeightsMissing(self.reason)

    def describe(self) -> dict[str, Any]:
        return {"kind": "clip", "model_name": self.model_name, "dim": self.dim}


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
