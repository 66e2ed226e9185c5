"""Text commands for the MoMask node: parsing, validation and burst control (pure, no ROS).

A command is what a user publishes on the command topic: free text describing a motion, optionally
followed by options that say how long and how fast to play it, or a sequence of such segments.
The syntax is `momask_model.generation.prompt`'s, the same as ``momask-generate --text`` (one syntax for the CLI
and the node)::

    <description> [length=<L>] [speed=<S>] [seed=<N>] [| <description> [options] ...]
    <description>#<frames>

* ``length`` is the motion length: ``4s`` / ``4.5s`` (seconds) or ``80`` / ``80f`` (frames at the
  model's frame rate), rounded to the nearest 4-frame token unit. Without a length, the node's
  ``length_s`` parameter applies, or the model's length estimator when that is 0.
* ``speed`` scales playback time (``2`` plays twice as fast, ``0.5`` half as fast); the generated
  motion is unchanged, only resampled.
* ``seed`` makes one command reproducible (an integer >= 0).
* ``text#120`` is a shorthand for ``length=120`` (frames), as in HumanML3D prompt files.
* `` | `` separates the segments of a sequence (`parse_sequence_command`); with a model trained on
  single skills (``MoMask.then_separates_segments``), ``then`` between clauses does too.

Options are ``name=value`` tokens at the end of the text, in any order, each at most once. A
trailing ``name=value`` token with an unknown name is an error rather than text, so a typo such as
``lenght=4s`` is reported instead of being sent to the text encoder.

Everything that can be wrong with a message becomes `CommandRejected` with a short machine-readable
``reason`` (``empty``, ``too_long``, ``not_utf8``, ``control_characters``, ``bad_option``,
``bad_number``, ``out_of_range``) and a human-readable message naming the bad value. The conductor
turns it into a ``rejected`` status and carries on.

`BurstLimiter` is a token bucket with a one-slot "latest wins" buffer: a burst of commands lets the
first few through and folds the rest into the newest one, which runs when the bucket refills.
"""
from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from typing import Generic, TypeVar

from momask_model.generation.prompt import PromptError, parse_sequence

__all__ = [
    "BurstLimiter",
    "CommandLimits",
    "CommandRejected",
    "MotionCommand",
    "Offer",
    "parse_command",
    "parse_sequence_command",
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


def _limits_kwargs(limits: CommandLimits) -> dict:
    return dict(
        fps=limits.fps, unit=limits.unit_frames, min_frames=limits.min_frames, max_frames=limits.max_frames,
        min_speed=limits.min_speed, max_speed=limits.max_speed, max_chars=limits.max_chars,
    )


def parse_sequence_command(
    raw: str | bytes, limits: CommandLimits | None = None, *, then_separates: bool = False
) -> tuple[MotionCommand, ...]:
    """Validate one raw message and split it into its segments (one for a plain command).

    Args:
        raw: the message as received (``str``, or ``bytes`` when the transport could not decode it).
        limits: bounds to enforce (per segment); defaults to `CommandLimits()`.
        then_separates: ``then`` between clauses separates segments (``MoMask.then_separates_segments``).

    Returns:
        One validated `MotionCommand` per segment, in order.

    Raises:
        CommandRejected: with ``reason`` naming what is wrong and the message naming the segment.
    """
    limits = limits or CommandLimits()
    text = _decode(raw, limits)
    _check_characters(text)
    if not text.split():
        raise CommandRejected("empty", "command is empty")
    try:
        segments = parse_sequence(text, then_separates=then_separates, **_limits_kwargs(limits))
    except PromptError as exc:
        message = str(exc)
        if exc.segment is None and exc.reason == "empty":
            message = "command has options but no description" if "options" in message else "command is empty"
        raise CommandRejected(exc.reason, message) from None
    return tuple(MotionCommand(s.text, s.length_frames, s.speed, s.seed) for s in segments)


def parse_command(raw: str | bytes, limits: CommandLimits | None = None) -> MotionCommand:
    """Validate one raw message holding a single motion (see `parse_sequence_command` for sequences).

    Raises:
        CommandRejected: with ``reason`` naming what is wrong (see module docstring); a sequence of
            several segments is rejected as ``bad_option``.
    """
    commands = parse_sequence_command(raw, limits)
    if len(commands) != 1:
        raise CommandRejected(
            "bad_option", f"command is a sequence of {len(commands)} segments; this entry point takes one motion"
        )
    return commands[0]


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
