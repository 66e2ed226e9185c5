"""BVH motion capture (CMU, Mixamo, Rokoko, ...) -> HumanML3D joints.

Parsing follows the format as written by common exporters:

* ``HIERARCHY``: ``ROOT``/``JOINT name { OFFSET x y z  CHANNELS n c1 .. cn  ... }`` and
  ``End Site { OFFSET ... }`` (end sites carry no channels and are not joints here).
* Channels may come in any order. Rotation channels (``Xrotation`` ...) are Euler angles in
  degrees applied in the listed order as intrinsic rotations (``Zrotation Xrotation Yrotation``
  means ``R = Rz · Rx · Ry``). Position channels, on the root or any other joint, replace that
  joint's ``OFFSET`` (exporters write the full local translation there); missing axes keep the
  offset's value.
* ``MOTION``: ``Frames: N``, ``Frame Time: dt``, then N lines of exactly the total channel
  count of numbers.

Units and axes: ``unit_m`` (metres per file unit) is given, or taken from the skeleton map
(``unit_m`` key), or chosen automatically: metres, centimetres, millimetres or inches, whichever
gives a rest-pose height between 1.0 and 2.3 m; failing all, the skeleton is scaled to 1.7 m and
a warning is logged. ``up_axis`` is ``"y"`` (default) or ``"z"`` (Z-up files: turned by -90°
about X, a proper rotation). Facing needs no option: ``normalize_joint_positions`` turns the
first frame to face +Z.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from momask_model.data.mocap.errors import MocapFormatError, SkeletonMapError
from momask_model.data.mocap.kinematics import PoseSequence, SourceSkeleton, forward_kinematics, resample
from momask_model.data.mocap.skeleton_map import (
    SkeletonMap,
    available_skeleton_maps,
    load_skeleton_map,
    poses_to_humanml3d_joints,
)

logger = logging.getLogger(__name__)

__all__ = ["BvhClip", "parse_bvh", "load_bvh", "bvh_to_joints", "UP_AXIS_TO_Y", "guess_unit_m", "find_skeleton_map"]

_ROT = {"xrotation": "x", "yrotation": "y", "zrotation": "z"}
_POS = {"xposition": 0, "yposition": 1, "zposition": 2}

#: World rotations taking a file's up axis to +Y (proper rotations).
UP_AXIS_TO_Y = {
    "y": np.eye(3),
    # -90° about +X: (x, y, z) -> (x, z, -y)
    "z": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),
}
_UNITS_M = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254}


@dataclass(frozen=True)
class BvhClip:
    """A parsed BVH file: skeleton, per-joint channels, the motion table and frame time."""

    path: Path | None
    skeleton: SourceSkeleton
    offsets: np.ndarray  # (J, 3) file units
    channels: tuple[tuple[str, ...], ...]  # per joint, lower-case channel names in file order
    motion: np.ndarray  # (N, C)
    frame_time_s: float

    def poses(self) -> PoseSequence:
        """Key-framed local translations and rotations (file units and axes)."""
        n, j = len(self.motion), self.skeleton.joints_num
        trans = np.broadcast_to(self.offsets, (n, j, 3)).copy()
        quats = np.zeros((n, j, 4))
        col = 0
        for k, chans in enumerate(self.channels):
            rot_axes, rot_cols = "", []
            for c in chans:
                if c in _POS:
                    trans[:, k, _POS[c]] = self.motion[:, col]
                else:
                    rot_axes += _ROT[c]
                    rot_cols.append(col)
                col += 1
            if rot_axes:
                xyzw = Rotation.from_euler(rot_axes.upper(), self.motion[:, rot_cols], degrees=True).as_quat()
                quats[:, k] = np.concatenate((xyzw[:, 3:], xyzw[:, :3]), axis=-1)
            else:
                quats[:, k, 0] = 1.0
        times = np.arange(n) * self.frame_time_s
        return PoseSequence(self.skeleton, times, trans, quats)


class _Tokens:
    """Whitespace tokens with their 1-based line numbers, for error messages."""

    def __init__(self, text: str, path: Path | None) -> None:
        self.items: list[tuple[str, int]] = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            for tok in line.split():
                self.items.append((tok, lineno))
        self.pos = 0
        self.path = path
        self.last_line = max(1, len(text.splitlines()))

    def peek(self) -> tuple[str, int]:
        if self.pos >= len(self.items):
            return "", self.last_line
        return self.items[self.pos]

    def next(self, what: str) -> tuple[str, int]:
        if self.pos >= len(self.items):
            raise MocapFormatError(self.path, f"line {self.last_line}", f"unexpected end of file, expected {what}")
        tok = self.items[self.pos]
        self.pos += 1
        return tok

    def expect(self, word: str) -> int:
        tok, line = self.next(repr(word))
        if tok.lower() != word.lower():
            raise MocapFormatError(self.path, f"line {line}", f"expected {word!r}, got {tok!r}")
        return line

    def number(self, what: str) -> float:
        tok, line = self.next(what)
        try:
            return float(tok)
        except ValueError:
            raise MocapFormatError(self.path, f"line {line}", f"expected a number for {what}, got {tok!r}") from None


def parse_bvh(text: str, path: str | Path | None = None) -> BvhClip:
    """Parse BVH text. ``path`` only names the source in errors.

    Raises:
        MocapFormatError: naming the file and line: unknown keyword or channel, bad channel count,
            unbalanced braces, a frame line with the wrong number of values, fewer frame lines
            than ``Frames:`` announces, non-positive frame time.
    """
    p = None if path is None else Path(path)
    toks = _Tokens(text, p)
    toks.expect("HIERARCHY")
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[tuple[str, ...]] = []

    def read_offset() -> list[float]:
        toks.expect("OFFSET")
        return [toks.number("OFFSET x"), toks.number("OFFSET y"), toks.number("OFFSET z")]

    def read_joint(parent: int) -> None:
        name, line = toks.next("joint name")
        if name == "{":
            raise MocapFormatError(p, f"line {line}", "joint without a name")
        index = len(names)
        names.append(name)
        parents.append(parent)
        toks.expect("{")
        offsets.append(read_offset())
        chans: tuple[str, ...] = ()
        if toks.peek()[0].upper() == "CHANNELS":
            toks.next("CHANNELS")
            count_tok, cline = toks.next("channel count")
            if not count_tok.isdigit():
                raise MocapFormatError(p, f"line {cline}", f"bad channel count {count_tok!r} for joint {name!r}")
            got = []
            for _ in range(int(count_tok)):
                c, l2 = toks.next("channel name")
                if c.lower() not in _ROT and c.lower() not in _POS:
                    raise MocapFormatError(
                        p, f"line {l2}", f"joint {name!r}: {count_tok} channels announced, got {c!r} as channel {len(got) + 1}"
                    )
                got.append(c.lower())
            if len(set(got)) != len(got):
                raise MocapFormatError(p, f"line {cline}", f"joint {name!r} repeats a channel: {got}")
            chans = tuple(got)
        channels.append(chans)
        while True:
            tok, line = toks.next("'}'")
            key = tok.upper()
            if key == "}":
                return
            if key == "JOINT":
                read_joint(index)
            elif key == "END":
                toks.expect("Site")
                toks.expect("{")
                read_offset()
                toks.expect("}")
            else:
                raise MocapFormatError(p, f"line {line}", f"unexpected {tok!r} in joint {name!r}")

    tok, line = toks.next("ROOT")
    if tok.upper() != "ROOT":
        raise MocapFormatError(p, f"line {line}", f"expected 'ROOT', got {tok!r}")
    read_joint(-1)
    tok, line = toks.next("MOTION")
    if tok.upper() == "ROOT":
        raise MocapFormatError(p, f"line {line}", "more than one ROOT is not supported")
    if tok.upper() != "MOTION":
        raise MocapFormatError(p, f"line {line}", f"expected 'MOTION', got {tok!r}")
    toks.expect("Frames:")
    n_tok, n_line = toks.next("frame count")
    if not n_tok.isdigit() or int(n_tok) < 1:
        raise MocapFormatError(p, f"line {n_line}", f"bad frame count {n_tok!r}")
    frames = int(n_tok)
    toks.expect("Frame")
    toks.expect("Time:")
    ft_line = toks.peek()[1]
    frame_time = toks.number("frame time")
    if not frame_time > 0:
        raise MocapFormatError(p, f"line {ft_line}", f"frame time must be > 0, got {frame_time}")

    total = sum(len(c) for c in channels)
    rest = toks.items[toks.pos :]
    by_line: dict[int, list[str]] = {}
    for t, ln in rest:
        by_line.setdefault(ln, []).append(t)
    lines = sorted(by_line)
    for ln in lines:
        if len(by_line[ln]) != total:
            raise MocapFormatError(
                p, f"line {ln}", f"a frame needs {total} values (the channels declared), got {len(by_line[ln])}"
            )
    if len(lines) < frames:
        raise MocapFormatError(
            p, f"line {toks.last_line}", f"truncated motion: 'Frames: {frames}' but only {len(lines)} frame lines"
        )
    if len(lines) > frames:
        raise MocapFormatError(p, f"line {lines[frames]}", f"more frame lines than 'Frames: {frames}'")
    try:
        motion = np.array([[float(v) for v in by_line[ln]] for ln in lines], dtype=np.float64)
    except ValueError as exc:
        bad = next(ln for ln in lines if not _all_numbers(by_line[ln]))
        raise MocapFormatError(p, f"line {bad}", f"non-numeric value in frame: {exc}") from None
    if not np.isfinite(motion).all():
        bad = lines[int(np.flatnonzero(~np.isfinite(motion).all(1))[0])]
        raise MocapFormatError(p, f"line {bad}", "NaN or infinite value in frame")
    try:
        skeleton = SourceSkeleton(tuple(names), tuple(parents))
    except ValueError as exc:  # pragma: no cover - parents are built in order
        raise MocapFormatError(p, "HIERARCHY", str(exc)) from exc
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise MocapFormatError(p, "HIERARCHY", f"duplicate joint names {dup}")
    return BvhClip(p, skeleton, np.asarray(offsets, dtype=np.float64), tuple(channels), motion, frame_time)


_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _all_numbers(values: list[str]) -> bool:
    return all(_NUMBER.match(v) or v.lower() in ("nan", "inf", "-inf") for v in values)


def load_bvh(path: str | Path) -> BvhClip:
    """Read and parse a BVH file (errors name the file and line)."""
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise MocapFormatError(path, "", f"cannot read file: {exc}") from exc
    return parse_bvh(text, path)


def guess_unit_m(clip: BvhClip, *, up_axis: str = "y") -> float:
    """Metres per file unit, judged from the rest-pose height (see the module docstring)."""
    rest = PoseSequence(
        clip.skeleton,
        np.zeros(1),
        clip.offsets[None].copy(),
        np.tile(np.array([1.0, 0.0, 0.0, 0.0]), (1, clip.skeleton.joints_num, 1)),
    )
    pos, _ = forward_kinematics(rest)
    up = (pos[0] @ UP_AXIS_TO_Y[up_axis].T)[:, 1]
    height = float(up.max() - up.min())
    if height <= 0:
        raise MocapFormatError(clip.path, "HIERARCHY", "the rest pose has zero height; give unit_m explicitly")
    for unit in ("m", "cm", "mm", "inch"):
        if 1.0 <= height * _UNITS_M[unit] <= 2.3:
            return _UNITS_M[unit]
    logger.warning("%s: rest height %.3g units fits no standard unit; scaling the body to 1.7 m", clip.path, height)
    return 1.7 / height


def find_skeleton_map(joint_names: tuple[str, ...]) -> SkeletonMap:
    """The first shipped skeleton map whose source joints all exist in ``joint_names``."""
    for name in available_skeleton_maps():
        candidate = load_skeleton_map(name)
        if candidate.fits(joint_names):
            return candidate
    raise SkeletonMapError(
        f"no shipped skeleton map ({available_skeleton_maps()}) fits joints {list(joint_names)}; write a YAML map"
    )


def bvh_to_joints(
    clip: BvhClip | str | Path,
    *,
    skeleton_map: SkeletonMap | str | Path | None = None,
    fps: float = 20.0,
    speed: float = 1.0,
    unit_m: float | None = None,
    up_axis: str | None = None,
    normalize: bool = False,
) -> np.ndarray:
    """HumanML3D-style joint positions of a BVH clip: the file's own positions, in metres, Y up.

    Args:
        clip: a parsed clip or a path.
        skeleton_map: a map, the name of a shipped one (``cmu``, ``mixamo``) or a YAML path;
            ``None`` picks the first shipped map whose joints the file has.
        fps: output frame rate.
        speed: playback speed factor.
        unit_m: metres per file unit; ``None``: the map's ``unit_m`` or :func:`guess_unit_m`.
        up_axis: ``"y"`` or ``"z"``; ``None``: the map's ``up_axis`` or ``"y"``.
        normalize: also move the motion as ``joints_to_features`` does (floor at y = 0, first frame's
            root at the origin, facing +Z): what a training set wants, not a reader (a file written by
            ``save_bvh`` reads back to its own joints only without it).

    Returns:
        (N, 22, 3) float64, metres, Y up.
    """
    if not isinstance(clip, BvhClip):
        clip = load_bvh(clip)
    smap = find_skeleton_map(clip.skeleton.joint_names) if skeleton_map is None else load_skeleton_map(skeleton_map)
    up = (up_axis or smap.up_axis or "y").lower()
    if up not in UP_AXIS_TO_Y:
        raise ValueError(f"up_axis must be 'y' or 'z', got {up_axis!r}")
    scale = unit_m if unit_m is not None else (smap.unit_m if smap.unit_m is not None else guess_unit_m(clip, up_axis=up))
    if not scale > 0:
        raise ValueError(f"unit_m must be positive, got {scale}")
    poses = resample(clip.poses(), fps, speed=speed)
    return poses_to_humanml3d_joints(poses, smap, world_to_target=UP_AXIS_TO_Y[up], scale_m=scale, normalize=normalize)
