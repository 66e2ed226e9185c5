"""The one prompt syntax of the CLI and the ROS node: sequences of segments with per-segment options.

A prompt is one or more *segments* separated by ``|``; each becomes one motion, generated as a
continuation of the one before::

    a person walks forward length=3s | a person jumps | a person kicks length=2s seed=4

Each segment is a description optionally followed by ``name=value`` options (in any order, each at
most once):

* ``length``: ``3s`` / ``2.5s`` (seconds) or ``80`` / ``80f`` (frames at the model's frame rate).
  Lengths are rounded to the **nearest** multiple of the token unit (4 frames = 0.2 s at 20 fps;
  halves round up), the one rounding rule of the CLI and the node. ``text#80`` is a shorthand for
  ``length=80`` (frames), as in HumanML3D prompt files.
* ``speed``: playback speed factor (the node resamples; the motion itself is unchanged).
* ``seed``: an integer >= 0 making that segment reproducible.

A trailing ``name=value`` token with an unknown name is an error, not text, so ``lenght=3s`` is
reported instead of reaching the text encoder. With ``then_separates=True`` (models trained on
single skills, such as the demo model: ``MoMask.then_separates_segments``) the word ``then``
between two clauses also separates segments (``walk forward then do a cartwheel``); HumanML3D
models keep it as text, because their captions use it inside one motion.

Errors are `PromptError` (a ValueError) with a short ``reason`` and a message naming the segment.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["PromptError", "Segment", "parse_length", "parse_segment", "parse_sequence", "round_to_unit"]

REASONS = ("empty", "too_long", "bad_option", "bad_number", "out_of_range")
OPTIONS = ("length", "speed", "seed")

_OPTION_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(\S*)$")
_HASH_RE = re.compile(r"^(.*?)\s*#\s*([^#\s]+)\s*$", re.DOTALL)
_LENGTH_RE = re.compile(r"^([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|f)?$")
# "then" between two clauses, optionally after a comma and/or "and": "walk, and then jump".
_THEN_RE = re.compile(r"\s*,?\s*\b(?:and\s+)?then\b\s*", re.IGNORECASE)
_LEADING_THEN_RE = re.compile(r"^(?:and\s+)?then\b\s*", re.IGNORECASE)


class PromptError(ValueError):
    """A prompt cannot be parsed; ``reason`` is one of `REASONS`, ``segment`` the 0-based segment (or None)."""

    def __init__(self, reason: str, message: str, segment: int | None = None) -> None:
        assert reason in REASONS, reason
        super().__init__(message)
        self.reason = reason
        self.segment = segment


@dataclass(frozen=True)
class Segment:
    """One segment of a prompt.

    text: the description (whitespace collapsed, options removed).
    length_frames: requested length [frames], a multiple of the unit; None = the caller's default
        (the node's ``length_s`` or the model's length estimator).
    speed: playback speed factor. seed: per-segment seed or None.
    """

    text: str
    length_frames: int | None = None
    speed: float = 1.0
    seed: int | None = None


def round_to_unit(frames: float, unit: int) -> int:
    """Nearest multiple of ``unit`` (halves round up): 50 -> 52, 49 -> 48 for unit 4."""
    return int(math.floor(frames / unit + 0.5) * unit)


def parse_length(
    value: str, *, fps: float, unit: int, min_frames: int | None = None, max_frames: int | None = None,
    name: str = "length",
) -> int:
    """``3s`` / ``2.5s`` / ``80`` / ``80f`` -> frames, rounded to the nearest unit, within [min, max].

    The range is checked on the requested value (before rounding); ``min_frames`` defaults to one unit.
    """
    lo = unit if min_frames is None else min_frames
    text = str(value).strip().lower()
    match = _LENGTH_RE.match(text)
    if match is None:
        if text.rstrip("sf") in ("nan", "inf", "-inf", "infinity", "+inf"):
            raise PromptError("bad_number", f"{name}={value!r} is not a finite number")
        raise PromptError(
            "bad_number", f"{name}={value!r} is not a length; use seconds ('4s') or frames ('80' or '80f')"
        )
    number, suffix = float(match.group(1)), match.group(2) or "f"
    if suffix == "f" and not number.is_integer():
        raise PromptError("bad_number", f"{name}={value!r}: a frame count must be an integer")
    frames = number * fps if suffix == "s" else number
    if frames < lo or (max_frames is not None and frames > max_frames):
        accepted = f"{lo}..{max_frames} frames ({lo / fps:g}..{max_frames / fps:g} s)" if max_frames is not None \
            else f"at least {lo} frames ({lo / fps:g} s)"
        raise PromptError("out_of_range", f"{name}={value!r} is {frames:g} frames; accepted {accepted}")
    rounded = max(lo, round_to_unit(frames, unit))
    if max_frames is not None:
        rounded = min(rounded, max_frames // unit * unit)
    return rounded


def _parse_number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise PromptError("bad_number", f"{name}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise PromptError("bad_number", f"{name}={value!r} is not a finite number")
    return number


def _parse_option(name: str, value: str, limits: dict) -> float | int:
    if name == "length":
        return parse_length(value, **limits)
    if name == "speed":
        speed = _parse_number(name, value)
        lo, hi = limits.get("min_speed", 0.25), limits.get("max_speed", 4.0)
        if not lo <= speed <= hi:
            raise PromptError("out_of_range", f"speed={value!r} is outside {lo:g}..{hi:g}")
        return speed
    if name == "seed":
        if not value.isdigit() or len(value) > 19 or int(value) >= 2**63:
            raise PromptError("bad_number", f"seed={value!r} is not an integer in 0..2^63-1")
        return int(value)
    raise PromptError("bad_option", f"unknown option {name!r}; known options are {', '.join(OPTIONS)}")


def parse_segment(
    text: str, *, fps: float = 20.0, unit: int = 4, min_frames: int | None = None, max_frames: int | None = None,
    min_speed: float = 0.25, max_speed: float = 4.0, max_chars: int | None = None,
) -> Segment:
    """One segment: description + trailing options (see the module docstring)."""
    length_limits = dict(fps=fps, unit=unit, min_frames=min_frames, max_frames=max_frames)
    words = text.split()
    if not words:
        raise PromptError("empty", "the description is empty")
    options: dict[str, float | int] = {}
    while words:
        match = _OPTION_RE.match(words[-1])
        if match is None:
            break
        name, value = match.group(1).lower(), match.group(2)
        if name in options:
            raise PromptError("bad_option", f"option {name!r} given twice")
        limits = length_limits if name == "length" else dict(min_speed=min_speed, max_speed=max_speed)
        options[name] = _parse_option(name, value, limits)
        words.pop()
    description = " ".join(words)
    hashed = _HASH_RE.match(description)
    if hashed is not None:
        if "length" in options:
            raise PromptError("bad_option", "length given twice ('#' shorthand and length=)")
        description = hashed.group(1)
        options["length"] = parse_length(hashed.group(2), **length_limits)
    if not description.strip():
        raise PromptError("empty", "options but no description")
    if max_chars is not None and len(description) > max_chars:
        raise PromptError("too_long", f"description has {len(description)} characters; the limit is {max_chars}")
    return Segment(
        text=description,
        length_frames=int(options["length"]) if "length" in options else None,
        speed=float(options.get("speed", 1.0)),
        seed=int(options["seed"]) if "seed" in options else None,
    )


def split_segments(command: str, *, then_separates: bool) -> list[str]:
    """The raw segment strings: split at ``|`` and, with ``then_separates``, at ``then`` between clauses."""
    parts = command.split("|")
    if not then_separates:
        return [p.strip() for p in parts]
    out: list[str] = []
    for part in parts:
        clauses = [c.strip() for c in _THEN_RE.split(part.strip())]
        if len(clauses) > 1 and clauses[0] == "":  # "then jump" at the start of a segment
            clauses = clauses[1:]
        out.extend(_LEADING_THEN_RE.sub("", c) for c in clauses)
    return out


def parse_sequence(command: str, *, then_separates: bool = False, max_segments: int = 32, **limits) -> list[Segment]:
    """Parse a prompt into its segments (one segment for a plain prompt).

    Args:
        command: the prompt text.
        then_separates: also split at ``then`` (see the module docstring; ``MoMask.then_separates_segments``).
        max_segments: most segments accepted.
        **limits: ``fps``, ``unit``, ``min_frames``, ``max_frames``, ``min_speed``, ``max_speed``,
            ``max_chars`` of each segment (see `parse_segment`).
    Raises:
        PromptError: naming the segment ("segment 2 of 3 ('a person jmps lenght=2s'): ...").
    """
    if not isinstance(command, str) or not command.strip():
        raise PromptError("empty", "the prompt is empty")
    raw = split_segments(" ".join(command.split()), then_separates=then_separates)
    if len(raw) > max_segments:
        raise PromptError("too_long", f"the prompt has {len(raw)} segments; the limit is {max_segments}")
    segments = []
    for i, text in enumerate(raw):
        try:
            segments.append(parse_segment(text, **limits))
        except PromptError as exc:
            if len(raw) == 1:
                raise
            shown = text if len(text) <= 60 else text[:59] + "\u2026"
            raise PromptError(exc.reason, f"segment {i + 1} of {len(raw)} ({shown!r}): {exc}", segment=i) from None
    return segments
