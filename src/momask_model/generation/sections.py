"""Edit sections: which part of a source motion an edit regenerates, in one syntax for API, CLI and node.

A section is ``start:end`` with each end in seconds (``2s``, ``2.5s``) or frames (``40``, ``40f``),
either end left open (``:2s`` = from the start to 2 s, i.e. the prefix; ``6s:`` = from 6 s to the
end, the suffix); or the official ``edit_t2m.py`` form ``a,b``: two decimals are fractions of the
source length (``0.25,0.5``), two integers are frames. A middle section keeps both ends ("in-between").

Sections become token ranges [start, end) of the model's token unit (4 frames): frame and second
ends cover every requested frame (start rounded down, end rounded up; the same as the official
``// 4`` for unit-aligned frames), fractions are ``int(f * N)`` at both ends as in the official code.

Errors are `SectionError` (a ValueError) naming the section: syntax, empty, reversed, out of range,
overlapping another section, or a source too short to edit.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["MIN_SOURCE_TOKENS", "SectionError", "TokenSection", "parse_section", "parse_sections", "sections_mask"]

#: A source must have at least this many tokens (something to keep and something to edit).
MIN_SOURCE_TOKENS = 2

_END_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(s|f)?\s*$", re.IGNORECASE)
_NUMBER_RE = re.compile(r"^\s*[0-9]*\.?[0-9]+\s*$")


class SectionError(ValueError):
    """An edit section is malformed, empty, reversed, out of range or overlapping; the message names it."""


@dataclass(frozen=True)
class TokenSection:
    """A parsed section: token range [start, end) and the text it came from."""

    spec: str
    start: int
    end: int

    def frames(self, unit: int) -> tuple[int, int]:
        """[start, end) in frames."""
        return self.start * unit, self.end * unit


def _as_spec(section: str | Sequence) -> str:
    if isinstance(section, str):
        return section.strip()
    if isinstance(section, (tuple, list)) and len(section) == 2:
        a, b = section
        if all(isinstance(v, float) for v in (a, b)):
            return f"{a!r},{b!r}"
        return ":".join("" if v is None else str(v) for v in (a, b))
    raise SectionError(f"section {section!r} is neither 'start:end' text nor a (start, end) pair")


def _end_frames(text: str, *, fps: float, spec: str) -> float | None:
    if not text.strip():
        return None
    match = _END_RE.match(text)
    if match is None:
        raise SectionError(f"section {spec!r}: {text.strip()!r} is not a time ('2s') or a frame ('40')")
    number, unit = float(match.group(1)), (match.group(2) or "f").lower()
    if unit == "f" and not number.is_integer():
        raise SectionError(f"section {spec!r}: frame {text.strip()!r} must be an integer (or add 's' for seconds)")
    return number * fps if unit == "s" else number


def parse_section(section: str | Sequence, *, n_tokens: int, unit: int = 4, fps: float = 20.0) -> TokenSection:
    """One section -> `TokenSection` on a source of ``n_tokens`` tokens.

    Raises:
        SectionError: naming the section.
    """
    spec = _as_spec(section)
    total = n_tokens * unit
    if "," in spec and ":" not in spec:
        parts = spec.split(",")
        if len(parts) != 2 or not all(_NUMBER_RE.match(p) for p in parts):
            raise SectionError(f"section {spec!r}: the official form is 'a,b' with two numbers")
        a, b = (float(p) for p in parts)
        if all("." in p for p in parts):  # fractions of the source, as edit_t2m.py
            if not (0.0 <= a <= 1.0 and 0.0 <= b <= 1.0):
                raise SectionError(f"section {spec!r}: fractions must lie in [0, 1]")
            if a > b:
                raise SectionError(f"section {spec!r} is reversed (start {a:g} > end {b:g})")
            start, end = int(a * n_tokens), int(b * n_tokens)
            return _checked(spec, start, end, n_tokens, unit, fps)
        if any("." in p for p in parts):
            raise SectionError(f"section {spec!r}: use two fractions ('0.25,0.5') or two frames ('40,80')")
        first, last = a, b
    elif ":" in spec:
        left, sep, right = spec.partition(":")
        if ":" in right:
            raise SectionError(f"section {spec!r} has more than one ':'")
        first = _end_frames(left, fps=fps, spec=spec)
        last = _end_frames(right, fps=fps, spec=spec)
        first = 0.0 if first is None else first
        last = float(total) if last is None else last
    else:
        raise SectionError(f"section {spec!r} is not 'start:end' (e.g. '2s:4s', '40:80', ':2s', '6s:') or 'a,b'")
    if first > last:
        raise SectionError(f"section {spec!r} is reversed (start {first / fps:g} s > end {last / fps:g} s)")
    if last > total + 1e-6:
        raise SectionError(
            f"section {spec!r} ends at frame {last:g} ({last / fps:g} s), past the source's end at frame "
            f"{total} ({total / fps:g} s)"
        )
    return _checked(spec, int(math.floor(first / unit + 1e-9)), int(math.ceil(last / unit - 1e-9)), n_tokens, unit, fps)


def _checked(spec: str, start: int, end: int, n_tokens: int, unit: int, fps: float) -> TokenSection:
    if end > n_tokens:
        raise SectionError(f"section {spec!r} ends past the source ({n_tokens * unit} frames)")
    if end <= start:
        raise SectionError(
            f"section {spec!r} is empty: it covers no whole {unit}-frame token ({unit / fps:g} s) of the source"
        )
    return TokenSection(spec, start, end)


def parse_sections(
    sections: str | Sequence[str | Sequence], *, n_tokens: int, unit: int = 4, fps: float = 20.0
) -> list[TokenSection]:
    """Every section, sorted by start; overlapping sections are an error (adjacent ones are fine).

    Raises:
        SectionError: a bad section (named), overlapping sections (both named), or a source shorter
            than ``MIN_SOURCE_TOKENS`` tokens.
    """
    if isinstance(sections, str):
        sections = [sections]
    if n_tokens < MIN_SOURCE_TOKENS:
        raise SectionError(
            f"the source has {n_tokens * unit} frames; editing needs at least {MIN_SOURCE_TOKENS * unit} "
            f"({MIN_SOURCE_TOKENS * unit / fps:g} s)"
        )
    parsed = sorted(
        (parse_section(s, n_tokens=n_tokens, unit=unit, fps=fps) for s in sections), key=lambda s: (s.start, s.end)
    )
    for a, b in zip(parsed, parsed[1:]):
        if b.start < a.end:
            raise SectionError(f"sections {a.spec!r} and {b.spec!r} overlap (tokens {b.start}..{a.end - 1})")
    return parsed


def sections_mask(sections: Sequence[TokenSection], n_tokens: int) -> np.ndarray:
    """(n_tokens,) bool, True at the tokens to regenerate."""
    mask = np.zeros(n_tokens, dtype=bool)
    for s in sections:
        mask[s.start : s.end] = True
    return mask
