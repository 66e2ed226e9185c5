"""Where the parts of the authors' release live (design/momask.md §7.4).

The release is a folder tree per dataset (``checkpoints/t2m/...``, ``checkpoints/kit/...``) with one
sub-folder per trained part, each holding an ``opt.txt`` (the training options) and ``model/*.tar``.
A part is found by its documented default folder name, a name the user gives, the VQ name the
M-transformer's opt.txt records, or the only folder whose opt.txt describes that part.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from momask_model.official.options import DATASETS, OfficialImportError, parse_opt_txt

log = logging.getLogger(__name__)

#: Folder names created by the authors' download scripts; KIT's carry a ``_k`` suffix.
DEFAULT_FOLDERS: dict[str, str] = {
    "vq": "rvq_nq6_dc512_nc512_noshare_qdp0.2",
    "mask_transformer": "t2m_nlayer8_nhead6_ld384_ff1024_cdp0.1_rvq6ns",
    "residual_transformer": "tres_nlayer8_ld384_ff1024_rvq6ns_cdp0.2_sw",
}
LENGTH_ESTIMATOR_FOLDER = "length_estimator"
PART_TITLES = {
    "vq": "RVQ-VAE",
    "mask_transformer": "masked transformer",
    "residual_transformer": "residual transformer",
    "length_estimator": "length estimator",
}


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
