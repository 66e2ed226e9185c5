"""Typed errors of the motion-capture importers."""
from __future__ import annotations

from pathlib import Path


class MocapFormatError(ValueError):
    """A motion-capture file cannot be read: it names the file and the line, key or frame at fault."""

    def __init__(self, path: str | Path | None, where: str, message: str) -> None:
        self.path = None if path is None else Path(path)
        self.where = where
        self.detail = message
        origin = "<memory>" if path is None else str(path)
        super().__init__(f"{origin}: {where}: {message}" if where else f"{origin}: {message}")


class SkeletonMapError(ValueError):
    """A skeleton map (YAML) is malformed or does not fit the source skeleton it is applied to."""
