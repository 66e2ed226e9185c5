"""What ``momask-generate`` asks the model for: lengths in seconds or frames, long motions, sequences
and edits. Kept apart from `cli` (argument plumbing and output files) so each stays one concept.

* ``--length`` takes frames (``80``, ``80f``) or seconds (``4s``, ``30s``), rounded to the nearest
  token unit (4 frames = 0.2 s at 20 fps; the node rounds the same way); past the model's window
  (9.8 s) the motion is made in windows.
* ``--text`` takes the prompt syntax of `momask_model.generation.prompt` (the node's too): per-segment options
  (``length=3s``, ``seed=4``) and sequences (``walk length=3s | jump | kick length=2s``).
* ``--edit SOURCE --edit-section 2s:4s ...`` regenerates sections of a motion (`momask_model.generation.editing`).
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from momask_model.generation.editing import RESIDUAL_MODES
from momask_model.generation.prompt import PromptError, Segment, parse_length, parse_sequence
from momask_model.generation.results import MAX_LONG_FRAMES, GenerationResult

log = logging.getLogger("momask")

LENGTH_HELP = (
    "length per prompt: frames (80, 80f) or seconds (4s, 30s), rounded to the nearest 4-frame token "
    "(0.2 s at 20 fps; the node rounds the same way); longer than the model's window (9.8 s) is made in "
    f"windows, up to {MAX_LONG_FRAMES} frames; default: the length estimator"
)


class RequestError(ValueError):
    """A momask-generate request that cannot be served (the message names the prompt or option)."""


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
    parser.add_argument("--overlap-tokens", type=int, default=None,
                        help="long motions and sequences: tokens fixed at each join (default: the measured choice)")


def _lengths(model, args) -> list[int] | None:
    if args.length is None:
        return None
    fps, unit = model.config.dataset.fps, model.unit_length
    values = args.length * len(args.text) if len(args.length) == 1 else args.length
    if len(values) != len(args.text):
        raise RequestError(f"{len(args.length)} --length values for {len(args.text)} --text prompts")
    out = []
    for text, value in zip(args.text, values):
        try:
            out.append(parse_length(value, fps=fps, unit=unit, max_frames=MAX_LONG_FRAMES, name="--length"))
        except PromptError as exc:
            detail = str(exc).removeprefix(f"--length={value!r} ")
            raise RequestError(f"--length {value} for prompt {text!r} {detail}") from None
    return out


def _prompts(model, args) -> list[list[Segment]]:
    limits = dict(fps=model.config.dataset.fps, unit=model.unit_length, max_frames=MAX_LONG_FRAMES)
    parsed = []
    for text in args.text:
        try:
            parsed.append(parse_sequence(text, then_separates=model.then_separates_segments, **limits))
        except PromptError as exc:
            raise RequestError(f"prompt {text!r}: {exc}") from None
    return parsed


def prompt_texts(model, args) -> list[str]:
    """The description of every segment of every --text (what the scope check judges); a prompt that
    does not parse gives none here, `serve` reports it."""
    try:
        return [s.text for p in _prompts(model, args) for s in p]
    except RequestError:
        return []


def serve(model, args, sampling: dict) -> Request:
    """Run what the parsed arguments ask for (edit, sequence, batch of motions of any length)."""
    common = dict(seed=args.seed, fast=not args.reference, **sampling)
    if args.edit_section and args.edit is None:
        raise RequestError("--edit-section needs --edit SOURCE")
    prompts = _prompts(model, args)
    lengths = _lengths(model, args)
    if args.edit is not None:
        return _serve_edit(model, args, prompts, lengths, common)
    if any(len(p) > 1 for p in prompts):
        if len(prompts) > 1:
            raise RequestError("a sequence (segments separated by ' | ') must be the only --text")
        if lengths is not None:
            raise RequestError("give the segments of a sequence their lengths with length=..., not --length")
        segments = prompts[0]
        result = model.generate_sequence_motion(segments, context_tokens=args.overlap_tokens, **common)
        marks = tuple((a, b, f"{i + 1}/{len(segments)}: {s.text}")
                      for i, ((a, b), s) in enumerate(zip(result.marks, segments)))
        return Request(result, [s.text for s in segments], marks)
    segments = [p[0] for p in prompts]
    texts = [s.text for s in segments]
    inline = [s.length_frames for s in segments]
    if lengths is not None and any(n is not None for n in inline):
        raise RequestError("length given twice (--length and length= in the prompt)")
    if lengths is None and any(n is not None for n in inline):
        if any(n is None for n in inline):
            raise RequestError("give every prompt a length (length=... or --length) or none")
        lengths = inline
    seeds = {s.seed for s in segments if s.seed is not None}
    if seeds:
        if len(segments) > 1 or args.seed is not None:
            raise RequestError("seed= in a prompt works for a single prompt without --seed")
        common["seed"] = seeds.pop()
    result = model.generate(texts, lengths, overlap_tokens=args.overlap_tokens, **common)
    return Request(result, texts)


def _serve_edit(model, args, prompts, lengths, common) -> Request:
    if any(len(p) > 1 for p in prompts):
        raise RequestError("an edit takes one text per edit, not a sequence")
    if lengths is not None or any(p[0].length_frames is not None for p in prompts):
        raise RequestError("an edit keeps the source's length: drop --length / length=")
    texts = [p[0].text for p in prompts]
    if not args.edit_section:
        log.warning("no --edit-section: the output is the source decoded by the VQ (nothing regenerated)")
    result = model.edit(args.edit, args.edit_section or [], texts, residual=args.residual, **common)
    marks = tuple((a, b, f"edited: {texts[0]}") for a, b in result.marks)
    return Request(result, texts, marks)


def save_request(path: Path, request: Request) -> None:
    """The output .npz: features, joints, lengths, tokens, fps, texts and the marked frame ranges."""
    r = request.result
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, features=r.features, joints=r.joints, lengths=r.lengths, tokens=r.tokens, fps=r.fps,
             texts=np.array(request.texts), marks=np.array([m[:2] for m in request.marks], dtype=np.int64).reshape(-1, 2))


__all__ = ["LENGTH_HELP", "Request", "RequestError", "add_request_arguments", "save_request", "serve"]
