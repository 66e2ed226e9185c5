"""One command-line family for every stage: ``training/train_<stage>.py``, ``evaluate.py`` and
``make_bundle.py`` are two-line wrappers around :func:`main_stage`, :func:`main_evaluate` and
:func:`main_bundle`, so flags, config loading and overrides behave the same everywhere.

Config: ``--config training/configs/humanml3d.yaml`` plus ``--set key.path=value`` (repeatable) or the
flat shortcuts ``--lr``, ``--batch-size``, ``--max-steps``, ``--max-epochs``, ``--device``, ``--seed``,
which apply to the stage being run.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from momask_model.train.config import PipelineConfig, load_pipeline_config

_FLAT = {"lr": "lr", "batch_size": "batch_size", "max_steps": "max_steps", "max_epochs": "max_epochs",
         "device": "device", "seed": "seed", "amp": "amp", "grad_clip": "grad_clip"}
_SECTION = {"vq": "vq", "mask": "mask", "residual": "residual", "length": "length", "evaluator": "evaluator_train"}


def _base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", type=Path, default=None, help="pipeline YAML (training/configs/*.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set vq.lr=1e-4 (repeatable)")
    p.add_argument("--data", type=Path, default=None, help="dataset root in the HumanML3D layout")
    p.add_argument("--evaluator", type=Path, default=None, help="evaluator.pt written by train_evaluator")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _load(args: argparse.Namespace, section: str | None) -> PipelineConfig:
    overrides = list(args.overrides)
    if section is not None:
        for flag, key in _FLAT.items():
            value = getattr(args, flag, None)
            if value is not None:
                overrides.append(f"{section}.{key}={value}")
    return load_pipeline_config(args.config, overrides)


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def main_stage(stage: str, argv: Sequence[str] | None = None) -> int:
    """Train one stage: ``train_<stage>.py --config C --data D --out RUN [--vq VQRUN] [--resume]``."""
    from momask_model.train.pipeline import run_stage

    p = _base_parser(f"Train the MoMask {stage} stage.")
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoints/, tb/, config.yaml)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/latest.pt")
    if stage in ("mask", "residual", "length"):
        p.add_argument("--vq", type=Path, required=True, help="VQ run folder or checkpoint")
    if stage == "evaluator":
        p.add_argument("--glove", type=Path, default=None, help="GloVe folder with our_vab_* (else own vocabulary)")
    for flag in _FLAT:
        p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, default=None)
    args = p.parse_args(argv)
    _logging(args.verbose)
    cfg = _load(args, _SECTION[stage])
    summary = run_stage(stage, cfg, args.out, data_root=args.data, vq=getattr(args, "vq", None), resume=args.resume,
                        glove_dir=getattr(args, "glove", None), evaluator_path=args.evaluator)
    logging.getLogger(__name__).info("%s finished at step %d; last %s; best %s", stage, summary["step"],
                                     {k: round(v, 4) for k, v in summary["last"].items()}, summary["best"])
    return 0


def main_bundle(argv: Sequence[str] | None = None) -> int:
    """``make_bundle.py --vq RUN --mask RUN --residual RUN [--length RUN] --out bundle.pt``."""
    from momask_model.train.pipeline import make_bundle

    p = _base_parser("Assemble a MoMask bundle from stage checkpoints.")
    for name in ("vq", "mask", "residual"):
        p.add_argument(f"--{name}", type=Path, required=True, help=f"{name} run folder or checkpoint")
    p.add_argument("--length", type=Path, default=None, help="length-estimator run folder or checkpoint")
    p.add_argument("--out", type=Path, required=True, help="bundle file (.pt)")
    args = p.parse_args(argv)
    _logging(args.verbose)
    make_bundle(_load(args, None), args.out, vq=args.vq, mask=args.mask, residual=args.residual, length=args.length,
                data_root=args.data)
    return 0


def main_evaluate(argv: Sequence[str] | None = None) -> int:
    """``evaluate.py --data D --evaluator E (--bundle B | --vq RUN | --gt) --out PREFIX [--repeats N]``."""
    from momask_model.train.pipeline import run_evaluation

    p = _base_parser("Evaluate with the text-motion matching protocol; writes PREFIX.json and PREFIX.md.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--bundle", type=Path, help="MoMask bundle")
    what.add_argument("--vq", type=Path, help="VQ run folder or checkpoint (reconstruction metrics)")
    what.add_argument("--gt", action="store_true", help="ground truth against itself (sanity ceiling)")
    p.add_argument("--split", default=None, help="split to evaluate (default: data.test_split)")
    p.add_argument("--repeats", type=int, default=None, help="replications (paper: 20)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, required=True, help="output prefix for .json and .md")
    args = p.parse_args(argv)
    _logging(args.verbose)
    if args.repeats is not None:
        args.overrides.append(f"eval.repeats={args.repeats}")
    table = run_evaluation(_load(args, None), args.out, data_root=args.data, bundle=args.bundle, vq=args.vq,
                           gt_only=args.gt, evaluator_path=args.evaluator, split=args.split, device=args.device)
    from momask_model.evaluate.runner import table_markdown

    sys.stdout.write(table_markdown(table))
    return 0
