"""Text commands for the MoMask node: parsing, validation and burst control (pure, no ROS).

A command is what a user publishes on the command topic. It is free text describing a motion,
optionally followed by options that say how long and how fast to play it.

Syntax (documented in the README as well)::

    <description> [length=<L>] [speed=<S>] [seed=<N>]
    <description>#<frames>

* ``length`` is the motion length: ``4s`` / ``4.5s`` (seconds) or ``80`` / ``80f`` (frames at the
  model's frame rate). Without a length, the node's ``length_s`` parameter applies, or the model's
  length estimator when that is 0.
* ``speed`` scales playback time (``2`` plays twice as fast, ``0.5`` half as fast); the generated
  motion is unchanged, only resampled.
* ``seed`` makes one command reproducible (an integer >= 0).
* ``text#120`` is a shorthand for ``length=120`` (frames), as in HumanML3D prompt files.

Options are ``name=value`` tokens at the end of the text, in any order, each at most once. A
trailing ``name=value`` token with an unknown name is an error rather than text, so a typo such as
``lenght=4s`` is reported instead of being sent to the text encoder.

Everything that can be wrong with a message becomes `CommandRejected` with a short machine-readable
``reason`` (``empty``, ``too_long``, ``not_utf8``, ``control_characters``, ``bad_option``,
``bad_number``, ``out_of_range``) and a human-readable message naming the bad value. The node turns
it into a ``rejected`` status and carries on.

`BurstLimiter` is a token bucket with a one-slot "latest wins" buffer: a burst of commands lets the
first few through and folds the rest into the newest one, which runs when the bucket refills.
"""
from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = [
    "BurstLimiter",
    "CommandLimits",
    "CommandRejected",
    "MotionCommand",
    "Offer",
    "parse_command",
    "preview",
]

REASONS = (
    "empty",
    "too_long",
    "not_utf8",
    "control_characters",
    "bad_option",
    "bad_number",
    "out_of_range",
)

# Whitespace control characters are harmless (collapsed to single spaces); every other C0/C1 control
# (NUL, ESC, DEL, ...) is rejected because it can corrupt logs and terminals. Bidirectional overrides
# are rejected for the same reason: they make a log line read differently from what was sent.
_WHITESPACE_CONTROLS = frozenset("\t\n\r\x0b\x0c")
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_OPTION_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(\S*)$")
_HASH_RE = re.compile(r"^(.*?)\s*#\s*([^#\s]+)\s*$", re.DOTALL)
_LENGTH_RE = re.compile(r"^([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|f)?$")
_OPTIONS = ("length", "speed", "seed")


class CommandRejected(ValueError):
    """A command cannot be served; ``reason`` is one of `REASONS`, the message names the bad value."""

    def __init__(self, reason: str, message: str) -> None:
        assert reason in REASONS, reason
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class CommandLimits:
    """What a command may ask for.

    Attributes:
        max_chars: longest accepted description (after whitespace is collapsed) [characters].
        max_bytes: longest accepted raw message [bytes]; checked before any decoding so a 1 MB
            message costs O(1) to refuse.
        fps: frame rate of the model, converts ``length=4s`` to frames [Hz].
        min_frames / max_frames: accepted motion length [frames] (MoMask: 4 .. 196 at 20 fps).
        unit_frames: lengths are rounded to a multiple of this (MoMask's token = 4 frames).
        min_speed / max_speed: accepted playback speed factors.
    """

    max_chars: int = 300
    max_bytes: int = 4096
    fps: float = 20.0
    min_frames: int = 4
    max_frames: int = 196
    unit_frames: int = 4
    min_speed: float = 0.25
    max_speed: float = 4.0

    def __post_init__(self) -> None:
        if self.max_chars < 1 or self.max_bytes < self.max_chars:
            raise ValueError(f"need 1 <= max_chars <= max_bytes, got {self.max_chars}, {self.max_bytes}")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"fps must be a positive number, got {self.fps}")
        if not 1 <= self.unit_frames <= self.min_frames <= self.max_frames:
            raise ValueError(
                f"need 1 <= unit_frames <= min_frames <= max_frames, got "
                f"{self.unit_frames}, {self.min_frames}, {self.max_frames}"
            )
        if not 0 < self.min_speed <= 1.0 <= self.max_speed:
            raise ValueError(f"need 0 < min_speed <= 1 <= max_speed, got {self.min_speed}, {self.max_speed}")


@dataclass(frozen=True)
class MotionCommand:
    """A validated command.

    Attributes:
        text: the description with whitespace collapsed, options removed.
        length_frames: requested length [frames], a multiple of ``unit_frames``; None = node default.
        speed: playback speed factor (1 = as generated).
        seed: per-command seed, or None for the node's seed.
    """

    text: str
    length_frames: int | None = None
    speed: float = 1.0
    seed: int | None = None


def preview(text: str | bytes, limit: int = 60) -> str:
    """A short printable excerpt of any message, safe for logs and status JSON."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text[: limit * 4]).decode("utf-8", errors="replace")
    else:
        text = text[: limit * 2]
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else "\ufffd" for c in text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "\u2026"


def _decode(raw: str | bytes, limits: CommandLimits) -> str:
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw)
        if len(raw) > limits.max_bytes:
            raise CommandRejected("too_long", f"command has {len(raw)} bytes; the limit is {limits.max_bytes}")
        try:
            return raw.decode("utf-8", errors="strict")
        except UnicodeDecodeError as exc:
            raise CommandRejected(
                "not_utf8", f"command is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
            ) from None
    if not isinstance(raw, str):
        raise CommandRejected("empty", f"command must be text, got {type(raw).__name__}")
    # Counting characters first keeps a 1 MB string O(1); 4 bytes per character is UTF-8's maximum.
    if len(raw) > limits.max_bytes:
        raise CommandRejected("too_long", f"command has {len(raw)} characters; the limit is {limits.max_chars}")
    for i, ch in enumerate(raw):
        if 0xD800 <= ord(ch) <= 0xDFFF:  # lone surrogate: what undecodable bytes become in Python
            raise CommandRejected("not_utf8", f"command is not valid UTF-8 (lone surrogate U+{ord(ch):04X} at {i})")
    return raw


def _check_characters(text: str) -> None:
    for i, ch in enumerate(text):
        if ch in _WHITESPACE_CONTROLS:
            continue
        if unicodedata.category(ch) == "Cc" or ch in _BIDI_CONTROLS:
            raise CommandRejected(
                "control_characters", f"command contains control character U+{ord(ch):04X} at position {i}"
            )


def _parse_number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise CommandRejected("bad_number", f"{name}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise CommandRejected("bad_number", f"{name}={value!r} is not a finite number")
    return number


def _parse_length(value: str, limits: CommandLimits) -> int:
    match = _LENGTH_RE.match(value.strip().lower())
    if match is None:
        if value.strip().lower().rstrip("sf") in ("nan", "inf", "-inf", "infinity"):
            raise CommandRejected("bad_number", f"length={value!r} is not a finite number")
        raise CommandRejected(
            "bad_number", f"length={value!r} is not a length; use seconds ('4s') or frames ('80' or '80f')"
        )
    number, unit = float(match.group(1)), match.group(2) or "f"
    frames = number * limits.fps if unit == "s" else number
    if unit == "f" and not float(number).is_integer():
        raise CommandRejected("bad_number", f"length={value!r}: a frame count must be an integer")
    lo, hi = limits.min_frames, limits.max_frames
    if not lo <= frames <= hi:
        raise CommandRejected(
            "out_of_range",
            f"length={value!r} is {frames:g} frames; accepted {lo}..{hi} frames "
            f"({lo / limits.fps:g}..{hi / limits.fps:g} s)",
        )
    unit_frames = limits.unit_frames
    return int(max(lo, min(hi, math.floor(frames / unit_frames + 0.5) * unit_frames)))


def _parse_option(name: str, value: str, limits: CommandLimits) -> tuple[str, float | int]:
    if name == "length":
        return name, _parse_length(value, limits)
    if name == "speed":
        speed = _parse_number(name, value)
        if not limits.min_speed <= speed <= limits.max_speed:
            raise CommandRejected(
                "out_of_range", f"speed={value!r} is outside {limits.min_speed:g}..{limits.max_speed:g}"
            )
        return name, speed
    if name == "seed":
        if not value.isdigit() or len(value) > 19:
            raise CommandRejected("bad_number", f"seed={value!r} is not an integer in 0..2^63-1")
        seed = int(value)
        if seed >= 2**63:
            raise CommandRejected("out_of_range", f"seed={value!r} is not an integer in 0..2^63-1")
        return name, seed
    raise CommandRejected("bad_option", f"unknown option {name!r}; known options are {', '.join(_OPTIONS)}")


def parse_command(raw: str | bytes, limits: CommandLimits | None = None) -> MotionCommand:
    """Validate one raw message and split it into description and options.

    Args:
        raw: the message as received (``str``, or ``bytes`` when the transport could not decode it).
        limits: bounds to enforce; defaults to `CommandLimits()`.

    Returns:
        The validated `MotionCommand`.

    Raises:
        CommandRejected: with ``reason`` naming what is wrong (see module docstring).
    """
    limits = limits or CommandLimits()
    text = _decode(raw, limits)
    _check_characters(text)
    words = text.split()
    if not words:
        raise CommandRejected("empty", "command is empty")

    options: dict[str, float | int] = {}
    while words:
        match = _OPTION_RE.match(words[-1])
        if match is None:
            break
        name, value = match.group(1).lower(), match.group(2)
        if name in options:
            raise CommandRejected("bad_option", f"option {name!r} given twice")
        options.update([_parse_option(name, value, limits)])
        words.pop()
    text = " ".join(words)
    hashed = _HASH_RE.match(text)
    if hashed is not None:
        if "length" in options:
            raise CommandRejected("bad_option", "length given twice ('#' shorthand and length=)")
        text = hashed.group(1)
        options["length"] = _parse_length(hashed.group(2), limits)
    if not text.strip():
        raise CommandRejected("empty", "command has options but no description")
    if len(text) > limits.max_chars:
        raise CommandRejected("too_long", f"description has {len(text)} characters; the limit is {limits.max_chars}")
    return MotionCommand(
        text=text,
        length_frames=int(options["length"]) if "length" in options else None,
        speed=float(options.get("speed", 1.0)),
        seed=int(options["seed"]) if "seed" in options else None,
    )


T = TypeVar("T")


@dataclass(frozen=True)
class Offer(Generic[T]):
    """What `BurstLimiter.offer` did with an item.

    admitted: the item to serve now (None when it was buffered).
    superseded: an older buffered item that the new one replaced (it will never be served).
    """

    admitted: T | None
    superseded: T | None


class BurstLimiter(Generic[T]):
    """Token bucket (``rate_hz`` refill, ``burst`` capacity) with a single "latest wins" slot.

    Why not drop excess commands: the last thing a user typed during a burst is what they want, so it
    is kept and served as soon as the bucket allows; everything in between is superseded. Memory is
    O(1) whatever the burst size. Time is passed in (``now_s``) so the limiter is testable and follows
    ROS time when the node uses simulated time.
    """

    def __init__(self, *, rate_hz: float = 2.0, burst: int = 3) -> None:
        if not (rate_hz > 0 and math.isfinite(rate_hz)):
            raise ValueError(f"rate_hz must be a positive number, got {rate_hz}")
        if int(burst) < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.rate_hz = float(rate_hz)
        self.burst = int(burst)
        self._tokens = float(burst)
        self._last_s: float | None = None
        self._pending: T | None = None

    @property
    def pending(self) -> T | None:
        """The buffered newest item, if any."""
        return self._pending

    def _refill(self, now_s: float) -> None:
        if self._last_s is not None and now_s > self._last_s:
            self._tokens = min(float(self.burst), self._tokens + (now_s - self._last_s) * self.rate_hz)
        if self._last_s is None or now_s > self._last_s:
            self._last_s = now_s

    def offer(self, item: T, now_s: float) -> Offer[T]:
        """Admit ``item`` if a token is free and nothing is buffered; otherwise buffer it (latest wins)."""
        self._refill(now_s)
        if self._pending is None and self._tokens >= 1.0:
            self._tokens -= 1.0
            return Offer(admitted=item, superseded=None)
        old, self._pending = self._pending, item
        return Offer(admitted=None, superseded=old)

    def poll(self, now_s: float) -> T | None:
        """Release the buffered item once a token is available (call this periodically)."""
        self._refill(now_s)
        if self._pending is not None and self._tokens >= 1.0:
            self._tokens -= 1.0
            item, self._pending = self._pending, None
            return item
        return None

    def clear(self) -> T | None:
        """Drop the buffered item (e.g. on stop) and return it."""
        item, self._pending = self._pending, None
        return item
