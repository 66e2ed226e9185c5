"""What ``momask-generate`` asks the model for: lengths in seconds or frames, long motions, sequences
and edits. Kept apart from `cli` (argument plumbing and output files) so each stays one concept.

* ``--length`` takes frames (``80``, ``80f``) or seconds (``4s``, ``30s``), rounded to the nearest
  token unit (4 frames = 0.2 s at 20 fps; the node rounds the same way); past the model's window
  (9.8 s) the motion is made in windows.
* ``--text`` takes the prompt syntax of `momask_model.generation.prompt` (the node's too): per-segment options
  (``length=3s``, ``seed=4``) and sequences (``walk length=3s | jump | kick length=2s``).
* ``--edit SOURCE --edit-section 2s:4s ...`` regenerates sections of a motion (`momask_model.generation.editing`).

A request is checked in two steps: `plan_request` judges everything that needs only the bundle's
config (lengths, prompts, the edit source and its sections) before the model loads; `serve` runs it.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from momask_model.config import MoMaskConfig
from momask_model.generation.core import RESIDUAL_MODES, then_separates_segments
from momask_model.generation.editing import EDIT_MODES, load_source
from momask_model.generation.momask import MoMask
from momask_model.generation.prompt import PromptError, Segment, parse_length, parse_sequence
from momask_model.generation.results import MAX_LONG_FRAMES, GenerationError, GenerationResult
from momask_model.generation.sections import SectionError, parse_sections

log = logging.getLogger("momask")

LENGTH_HELP = (
    "length per prompt: frames (80, 80f) or seconds (4s, 30s), rounded to the nearest 4-frame token "
    "(0.2 s at 20 fps; the node rounds the same way); longer than the model's window (9.8 s) is made in "
    f"windows, up to {MAX_LONG_FRAMES} frames; default: the length estimator"
)


class RequestError(ValueError):
    """A momask-generate request that cannot be served (the message names the prompt or option)."""


@dataclass(frozen=True)
class RequestLimits:
    """What a request is checked against, read from the bundle before the model loads."""

    fps: float
    unit: int
    dim: int
    then_separates: bool

    @classmethod
    def of_bundle(cls, config: MoMaskConfig, meta: dict[str, Any]) -> "RequestLimits":
        d = config.dataset
        return cls(fps=d.fps, unit=d.unit_length, dim=d.dim_pose, then_separates=then_separates_segments(config, meta))


@dataclass(frozen=True)
class Plan:
    """A checked request: one edit, one sequence, or a batch of motions (each with its segment)."""

    kind: Literal["edit", "sequence", "motions"]
    segments: list[Segment]
    lengths: list[int] | None = None
    seed: int | None = None
    sections: tuple[str, ...] = ()

    @property
    def texts(self) -> list[str]:
        """The description of every segment (what the scope check judges)."""
        return [s.text for s in self.segments]


@dataclass
class Request:
    """A served request: the result, the prompts it came from and what the preview marks."""

    result: GenerationResult
    texts: list[str]
    marks: tuple[tuple[int, int, str], ...] = field(default=())


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    """The --length, sequence and edit options of momask-generate."""
    parser.add_argument("--length", action="append", default=None, help=LENGTH_HELP)
    parser.add_argument("--edit", type=Path, default=None, metavar="SOURCE",
                        help="edit this motion (.npz from momask-generate, or a HumanML3D new_joint_vecs .npy) "
                             "instead of generating one; --text says what the edited sections do")
    parser.add_argument("--edit-section", action="append", default=None, metavar="START:END",
                        help="section of the --edit source to regenerate (repeatable): 2s:4s, 40:80 (frames), "
                             ":2s (prefix), 6s: (suffix), 0.25,0.5 (fractions, as the official edit_t2m.py)")
    parser.add_argument("--residual", choices=RESIDUAL_MODES, default="keep",
                        help="edit: keep the source's residual tokens in kept sections (default) or regenerate "
                             "all residual layers as the official code does")
    parser.add_argument("--edit-mode", choices=EDIT_MODES, default="auto",
                        help="edit: inpaint the sections with the kept motion as context (the paper's editing), "
                             "splice in sections generated from the text alone, or auto (splice for a model "
                             "trained on single skills, such as the demo, which inpaints the context's skill)")
    parser.add_argument("--overlap-tokens", type=int, default=None,
                        help="long motions and sequences: tokens fixed at each join (default: the measured choice)")


def _lengths(limits: RequestLimits, args: argparse.Namespace) -> list[int] | None:
    if args.length is None:
        return None
    values = args.length * len(args.text) if len(args.length) == 1 else args.length
    if len(values) != len(args.text):
        raise RequestError(f"{len(args.length)} --length values for {len(args.text)} --text prompts")
    out = []
    for text, value in zip(args.text, values):
        try:
            out.append(parse_length(value, fps=limits.fps, unit=limits.unit, max_frames=MAX_LONG_FRAMES, name="--length"))
        except PromptError as exc:
            detail = str(exc).removeprefix(f"--length={value!r} ")
            raise RequestError(f"--length {value} for prompt {text!r} {detail}") from None
    return out


def _prompts(limits: RequestLimits, args: argparse.Namespace) -> list[list[Segment]]:
    parsed = []
    for text in args.text:
        try:
            parsed.append(parse_sequence(text, then_separates=limits.then_separates, fps=limits.fps,
                                         unit=limits.unit, max_frames=MAX_LONG_FRAMES))
        except PromptError as exc:
            raise RequestError(f"prompt {text!r}: {exc}") from None
    return parsed


def plan_request(limits: RequestLimits, args: argparse.Namespace) -> Plan:
    """Check everything a request asks for that the model itself is not needed for.

    Raises:
        RequestError: naming the prompt, option, edit source or section.
    """
    if args.edit_section and args.edit is None:
        raise RequestError("--edit-section needs --edit SOURCE")
    prompts = _prompts(limits, args)
    lengths = _lengths(limits, args)
    if args.edit is not None:
        return _plan_edit(limits, args, prompts, lengths)
    if any(len(p) > 1 for p in prompts):
        if len(prompts) > 1:
            raise RequestError("a sequence (segments separated by ' | ') must be the only --text")
        if lengths is not None:
            raise RequestError("give the segments of a sequence their lengths with length=..., not --length")
        return Plan("sequence", prompts[0], seed=args.seed)
    segments = [p[0] for p in prompts]
    inline = [s.length_frames for s in segments]
    if lengths is not None and any(n is not None for n in inline):
        raise RequestError("length given twice (--length and length= in the prompt)")
    if lengths is None and any(n is not None for n in inline):
        if any(n is None for n in inline):
            raise RequestError("give every prompt a length (length=... or --length) or none")
        lengths = [int(n) for n in inline if n is not None]
    seed = args.seed
    seeds = {s.seed for s in segments if s.seed is not None}
    if seeds:
        if len(segments) > 1 or args.seed is not None:
            raise RequestError("seed= in a prompt works for a single prompt without --seed")
        seed = seeds.pop()
    return Plan("motions", segments, lengths=lengths, seed=seed)


def _plan_edit(limits: RequestLimits, args: argparse.Namespace, prompts: list[list[Segment]],
               lengths: list[int] | None) -> Plan:
    if any(len(p) > 1 for p in prompts):
        raise RequestError("an edit takes one text per edit, not a sequence")
    if lengths is not None or any(p[0].length_frames is not None for p in prompts):
        raise RequestError("an edit keeps the source's length: drop --length / length=")
    try:
        features = load_source(args.edit, dim=limits.dim, unit=limits.unit)
        sections = tuple(args.edit_section or ())
        if sections:
            parse_sections(list(sections), n_tokens=features.shape[0] // limits.unit, unit=limits.unit, fps=limits.fps)
    except (GenerationError, SectionError) as exc:
        raise RequestError(f"--edit {args.edit}: {exc}") from None
    return Plan("edit", [p[0] for p in prompts], seed=args.seed, sections=sections)


def serve(model: MoMask, plan: Plan, args: argparse.Namespace, sampling: dict[str, Any]) -> Request:
    """Run a planned request. ``sampling``: the sampling options given on the command line (None for
    those not given: the bundle's, or an edit's own residual guidance)."""
    common: dict[str, Any] = dict(seed=plan.seed, fast=not args.reference, **sampling)
    if plan.kind == "edit":
        if not plan.sections:
            log.warning("no --edit-section: the output is the source decoded by the VQ (nothing regenerated)")
        result = model.edit(args.edit, list(plan.sections), plan.texts, residual=args.residual, mode=args.edit_mode,
                            **common)
        marks = tuple((a, b, f"edited: {plan.texts[0]}") for a, b in result.marks)
        return Request(result, plan.texts, marks)
    if plan.kind == "sequence":
        result = model.generate_sequence_motion(plan.segments, context_tokens=args.overlap_tokens, **common)
        n = len(plan.segments)
        marks = tuple((a, b, f"{i + 1}/{n}: {s.text}") for i, ((a, b), s) in enumerate(zip(result.marks, plan.segments)))
        return Request(result, plan.texts, marks)
    result = model.generate(plan.texts, plan.lengths, overlap_tokens=args.overlap_tokens, **common)
    return Request(result, plan.texts)


def save_request(path: Path, request: Request) -> None:
    """The output .npz: features, joints, lengths, tokens, fps, texts and the marked frame ranges."""
    r = request.result
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, features=r.features, joints=r.joints, lengths=r.lengths, tokens=r.tokens, fps=r.fps,
             texts=np.array(request.texts), marks=np.array([m[:2] for m in request.marks], dtype=np.int64).reshape(-1, 2))


__all__ = ["LENGTH_HELP", "Plan", "Request", "RequestError", "RequestLimits", "add_request_arguments",
           "plan_request", "save_request", "serve"]
