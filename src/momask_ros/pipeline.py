"""Text -> robot motion, ready to stream: generation, chunked retargeting, playback and blending.

No ROS here. The node owns threads and topics; this module owns what is played:

* `MotionPipeline` wraps a text-to-motion generator (a `momask_model.generate.MoMask`, or anything
  with the same ``generate`` call) and a retargeter (``retarget(joints_yup, fps) -> RobotTrajectory``).
  Both are constructor arguments, so tests can drive the node logic with small deterministic
  stand-ins and the real models alike.
* `MotionClip` is a motion being retargeted: a buffer at the model's frame rate that fills chunk by
  chunk from a worker thread while the control loop already plays its beginning (issue 8, streaming).
* Playbacks (`MotionPlayback`, `HoldPlayback`, `StopPlayback`, `BlendToPosePlayback`) turn a time
  since start [s] into a `Sample` (joint positions and velocities, base pose, human skeleton). A new
  motion starts from the robot's current pose and blends into the clip instead of jumping; its base
  path is re-anchored at the robot's current position and heading so consecutive commands continue
  where the last one ended.

Every sample is clipped to the robot's joint limits: whatever the model produces, nothing outside
the limits is ever published.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from .commands import CommandLimits, MotionCommand

if TYPE_CHECKING:
    from momask_model.scope import TextRejection

log = logging.getLogger(__name__)

__all__ = [
    "BlendToPosePlayback",
    "BundleNotFound",
    "DeviceUnavailable",
    "GeneratedMotion",
    "HoldPlayback",
    "JointSpace",
    "MotionClip",
    "MotionPipeline",
    "MotionPlayback",
    "PipelineError",
    "RobotPose",
    "Sample",
    "StopPlayback",
    "default_bundle_path",
    "human_yup_to_ros",
    "resolve_bundle_path",
    "select_device",
]

DEMO_BUNDLE = ("momask_model", "assets/demo_bundle.pt")


class PipelineError(RuntimeError):
    """A motion could not be produced (generation or retargeting failed, bad shapes)."""


class DeviceUnavailable(RuntimeError):
    """The requested compute device does not exist on this machine."""


class BundleNotFound(FileNotFoundError):
    """No checkpoint bundle at the configured path (or the packaged demo bundle is missing)."""


# --------------------------------------------------------------------------- device and bundle
def select_device(spec: str = "auto") -> "Any":
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N`` -> ``torch.device``.

    Raises:
        DeviceUnavailable: CUDA was asked for explicitly and is not available (silently falling back
            to the CPU would make a robot wait ten times longer without saying why).
        ValueError: the string names no device kind.
    """
    import torch

    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"device {spec!r} requested but CUDA is not available; use 'auto' or 'cpu'")
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailable(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return device
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {spec!r}")


def default_bundle_path() -> Path:
    """Where the packaged demo bundle lives (``momask_model/assets/demo_bundle.pt``), found through
    ``importlib.resources`` so it works from a source tree, a wheel and a colcon install alike."""
    package, rel = DEMO_BUNDLE
    return Path(str(resources.files(package).joinpath(rel)))


def resolve_bundle_path(path: str | Path | None) -> Path:
    """The bundle to load: ``path`` if given, else the packaged demo bundle; it must exist.

    Raises:
        BundleNotFound: naming the path and how to fix it.
    """
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise BundleNotFound(f"bundle_path {str(p)!r} does not exist or is not a file")
        return p
    p = default_bundle_path()
    if not p.is_file():
        raise BundleNotFound(
            f"no bundle_path given and the packaged demo bundle is missing at {p}; "
            "set the bundle_path parameter to a bundle written by momask-import-official or a trainer"
        )
    return p


# --------------------------------------------------------------------------- frames and geometry
def human_yup_to_ros(joints_yup: np.ndarray) -> np.ndarray:
    """HumanML3D axes (Y up, facing +Z, left +X) -> ROS REP 103 (Z up, X forward, Y left).

    x_ros = z_h, y_ros = x_h, z_ros = y_h: a proper rotation (no mirroring).
    """
    j = np.asarray(joints_yup)
    return np.stack((j[..., 2], j[..., 0], j[..., 1]), axis=-1)


def _yaw_of(quat_wxyz: np.ndarray) -> float:
    """Heading [rad] about +Z: the angle of the body's x axis projected on the floor."""
    w, x, y, z = (float(v) for v in quat_wxyz)
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


# Small quaternion helpers (w, x, y, z). scipy's Rotation costs ~0.1 ms per object, and the control
# loop samples several rotations per tick at 50 Hz, so the hot path uses these plain numpy versions.
def _quat_z(angle: float) -> np.ndarray:
    return np.array([math.cos(angle / 2), 0.0, 0.0, math.sin(angle / 2)])


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ])


def _qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors (..., 3) by the unit quaternion q."""
    w, x, y, z = q
    m = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])
    return np.asarray(v) @ m.T


def _qslerp(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    """Shortest-arc spherical interpolation between unit quaternions."""
    dot = float(np.dot(a, b))
    if dot < 0.0:
        b, dot = -b, -dot
    if dot > 0.9995:  # nearly equal: normalised lerp is exact enough and avoids 0/0
        q = a + w * (b - a)
    else:
        theta = math.acos(min(1.0, dot))
        q = (math.sin((1 - w) * theta) * a + math.sin(w * theta) * b) / math.sin(theta)
    return q / np.linalg.norm(q)


def _smoothstep(x: float) -> float:
    """0 -> 0, 1 -> 1 with zero slope at both ends (a blend that starts and ends without a jerk)."""
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class JointSpace:
    """The robot's actuated joints: names, limits [rad or m] and rest pose, in publishing order."""

    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    rest: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.names)
        if n == 0 or len(set(self.names)) != n:
            raise ValueError(f"joint names must be non-empty and unique, got {self.names}")
        for name in ("lower", "upper", "rest"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != (n,):
                raise ValueError(f"{name} has shape {arr.shape}, expected ({n},)")
            object.__setattr__(self, name, arr)
        if np.any(self.lower > self.upper):
            bad = int(np.flatnonzero(self.lower > self.upper)[0])
            raise ValueError(f"joint {self.names[bad]!r}: lower {self.lower[bad]} > upper {self.upper[bad]}")
        object.__setattr__(self, "rest", self.clip(self.rest))

    def clip(self, positions: np.ndarray) -> np.ndarray:
        return np.clip(positions, self.lower, self.upper)

    def within(self, positions: np.ndarray, tol: float = 1e-9) -> bool:
        p = np.asarray(positions)
        return bool(np.all(np.isfinite(p)) and np.all(p >= self.lower - tol) and np.all(p <= self.upper + tol))

    @classmethod
    def from_robot(cls, robot: Any) -> "JointSpace":
        """From a `momask_ros.robot.Robot` (or anything exposing names, limits and a rest pose)."""
        names = _first_attr(robot, ("joint_names", "actuated_joint_names"))
        limits = _first_attr(robot, ("position_limits", "joint_limits", "limits"), required=False)
        if limits is not None:
            limits = np.asarray(limits, dtype=np.float64)
            lower, upper = limits[:, 0], limits[:, 1]
        else:
            lower = np.asarray(_first_attr(robot, ("lower", "lower_limits", "q_min")), dtype=np.float64)
            upper = np.asarray(_first_attr(robot, ("upper", "upper_limits", "q_max")), dtype=np.float64)
        rest = _first_attr(robot, ("rest_positions", "rest_pose", "q_rest", "default_positions"), required=False)
        rest = np.zeros(len(names)) if rest is None else np.asarray(rest, dtype=np.float64)
        return cls(tuple(str(n) for n in names), lower, upper, rest)


def _first_attr(obj: Any, names: Sequence[str], required: bool = True) -> Any:
    for name in names:
        value = getattr(obj, name, None)
        if callable(value):
            value = value()
        if value is not None:
            return value
    if required:
        raise PipelineError(f"{type(obj).__name__} has none of the attributes {list(names)}")
    return None


@dataclass
class RobotPose:
    """Joint positions plus floating-base pose (position [m], orientation w, x, y, z), ROS axes."""

    positions: np.ndarray
    base_position: np.ndarray = field(default_factory=lambda: np.zeros(3))
    base_quat_wxyz: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0, 0.0]))
    base_valid: bool = True  # False before the first motion: nothing is known about the base yet


@dataclass
class Sample(RobotPose):
    """What the control loop publishes at one tick."""

    velocities: np.ndarray = field(default_factory=lambda: np.zeros(0))
    human_joints: np.ndarray | None = None  # (22, 3) [m], ROS axes, placed like the robot's base

    def pose(self) -> RobotPose:
        return RobotPose(self.positions.copy(), self.base_position.copy(), self.base_quat_wxyz.copy(),
                         self.base_valid)


@dataclass
class GeneratedMotion:
    """One generated human motion: (T, J, 3) joints [m], HumanML3D axes (Y up), at ``fps``."""

    command: MotionCommand
    joints_yup: np.ndarray
    fps: float
    generation_ms: float
    seed: int | None


# --------------------------------------------------------------------------- the growing clip
class MotionClip:
    """A retargeted motion, filled chunk by chunk by a worker while the control loop already plays it.

    One writer (the retargeting worker) appends robot samples with their times; readers (the control
    loop) interpolate inside the samples already written. The human motion is complete from the start
    (generation is non-autoregressive), so its duration is known before any robot sample exists.
    Robot samples may come at any rate (the retargeter's control rate); the human skeleton stays at
    the model's frame rate.
    """

    def __init__(
        self,
        *,
        joint_space: JointSpace,
        fps: float,
        human_joints_ros: np.ndarray,
        command: MotionCommand,
        generation_ms: float = float("nan"),
        capacity: int = 256,
    ) -> None:
        n = int(human_joints_ros.shape[0])
        if n < 2:
            raise PipelineError(f"a motion needs at least 2 frames, got {n}")
        if not (fps > 0 and math.isfinite(fps)):
            raise PipelineError(f"fps must be positive, got {fps}")
        self.joint_space = joint_space
        self.fps = float(fps)
        self.command = command
        self.generation_ms = generation_ms
        self.human_joints = np.asarray(human_joints_ros, dtype=np.float64)
        cap = max(2, int(capacity))
        self.times_s = np.zeros(cap)
        self.positions = np.zeros((cap, len(joint_space.names)))
        self.base_position = np.zeros((cap, 3))
        self.base_quat_wxyz = np.tile([1.0, 0.0, 0.0, 0.0], (cap, 1))
        self._ready = 0
        self._complete = False
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self.retarget_ms = 0.0
        self.first_chunk_ms = float("nan")

    @property
    def human_frames(self) -> int:
        return self.human_joints.shape[0]

    @property
    def frames_ready(self) -> int:
        """Robot samples written so far."""
        return self._ready

    @property
    def complete(self) -> bool:
        return self._complete

    @property
    def failed(self) -> BaseException | None:
        return self._error

    @property
    def duration_s(self) -> float:
        """The motion's length [s]: the last robot sample once complete, the human clip's before."""
        if self._complete and self._ready:
            return float(self.times_s[self._ready - 1])
        return (self.human_frames - 1) / self.fps

    @property
    def available_s(self) -> float:
        return float(self.times_s[self._ready - 1]) if self._ready else -math.inf

    def samples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(times, positions, base positions, base quats) written so far (views)."""
        n = self._ready
        return self.times_s[:n], self.positions[:n], self.base_position[:n], self.base_quat_wxyz[:n]

    def append(self, times_s: np.ndarray, positions: np.ndarray, base_position: np.ndarray,
               base_quat_wxyz: np.ndarray) -> None:
        """Add the next robot samples; positions are clipped to the joint limits here, once."""
        times = np.asarray(times_s, dtype=np.float64).reshape(-1)
        positions = np.asarray(positions, dtype=np.float64)
        k = times.shape[0]
        if k == 0:
            return
        with self._lock:
            start = self._ready
            if not (np.all(np.isfinite(positions)) and np.all(np.isfinite(base_position))
                    and np.all(np.isfinite(times))):
                raise PipelineError(f"retargeter returned non-finite values in samples {start}..{start + k}")
            prev = self.times_s[start - 1] if start else -math.inf
            if times[0] <= prev or np.any(np.diff(times) <= 0):
                raise PipelineError(f"retargeter sample times are not increasing at sample {start}")
            if start + k > self.times_s.shape[0]:
                self._grow(start + k)
            self.times_s[start : start + k] = times
            self.positions[start : start + k] = self.joint_space.clip(positions)
            self.base_position[start : start + k] = base_position
            quat = np.asarray(base_quat_wxyz, dtype=np.float64)
            self.base_quat_wxyz[start : start + k] = quat / np.linalg.norm(quat, axis=-1, keepdims=True)
            self._ready = start + k  # publish the samples only after they are written

    def _grow(self, needed: int) -> None:
        # New arrays, old ones left intact: a reader holding the old reference still sees valid data.
        cap = max(needed, 2 * self.times_s.shape[0])

        def grown(a: np.ndarray) -> np.ndarray:
            out = np.zeros((cap,) + a.shape[1:])
            out[: a.shape[0]] = a
            return out

        self.positions = grown(self.positions)
        self.base_position = grown(self.base_position)
        self.base_quat_wxyz = grown(self.base_quat_wxyz)
        self.times_s = grown(self.times_s)

    def finish(self) -> None:
        if self._ready < 2:
            raise PipelineError(f"retargeter produced {self._ready} samples; a motion needs at least 2")
        self._complete = True

    def fail(self, error: BaseException) -> None:
        self._error = error

    def at(self, t_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Interpolated (positions, base position, base quat, human joints) at clip time [s].

        Callers keep ``t_s <= available_s`` (beyond it the last sample is held); positions are
        linear between samples, the base orientation is slerped.
        """
        ready = self._ready
        times = self.times_s[:ready]
        i = int(np.searchsorted(times, t_s, side="right")) - 1
        i = min(max(i, 0), max(ready - 2, 0))
        j = min(i + 1, ready - 1)
        span = times[j] - times[i]
        a = 0.0 if span <= 0 else min(max((t_s - times[i]) / span, 0.0), 1.0)
        pos = (1 - a) * self.positions[i] + a * self.positions[j]
        base = (1 - a) * self.base_position[i] + a * self.base_position[j]
        quat = self.base_quat_wxyz[i].copy() if a <= 0.0 else _qslerp(self.base_quat_wxyz[i], self.base_quat_wxyz[j], a)
        f = min(max(t_s * self.fps, 0.0), self.human_frames - 1)
        h = min(int(f), self.human_frames - 2)
        b = f - h
        human = (1 - b) * self.human_joints[h] + b * self.human_joints[h + 1]
        return pos, base, quat, human


# --------------------------------------------------------------------------- playbacks
class Playback(Protocol):
    def sample(self, t_s: float) -> Sample | None:
        """The sample ``t_s`` seconds after the playback started; None while data is still coming."""

    def finished(self, t_s: float) -> bool:
        """True once the playback has nothing more to play at ``t_s``."""


class HoldPlayback:
    """Keep one pose (velocity zero) forever."""

    def __init__(self, pose: RobotPose, human_joints: np.ndarray | None = None) -> None:
        self._pose = RobotPose(
            np.asarray(pose.positions, float).copy(),
            np.asarray(pose.base_position, float).copy(),
            np.asarray(pose.base_quat_wxyz, float).copy(),
            pose.base_valid,
        )
        self._human = human_joints

    def sample(self, t_s: float) -> Sample:
        p = self._pose
        return Sample(p.positions.copy(), p.base_position.copy(), p.base_quat_wxyz.copy(), p.base_valid,
                      np.zeros_like(p.positions), self._human)

    def finished(self, t_s: float) -> bool:
        return False


class StopPlayback:
    """Halt now: decelerate each joint linearly to zero velocity within ``stop_s``, then hold.

    q(t) = q0 + v0 (t - t^2 / 2T) for t < T: continuous in position and velocity, so a stop in the
    middle of a fast motion does not command a velocity step the actuators cannot follow.
    """

    def __init__(self, sample: Sample, joint_space: JointSpace, *, stop_s: float = 0.15) -> None:
        self._q0 = np.asarray(sample.positions, float).copy()
        v0 = np.asarray(sample.velocities, float)
        self._v0 = v0.copy() if v0.shape == self._q0.shape else np.zeros_like(self._q0)
        self._T = max(0.0, float(stop_s))
        self._space = joint_space
        self._base = (sample.base_position.copy(), sample.base_quat_wxyz.copy(), sample.base_valid)
        self._human = sample.human_joints

    def _q(self, t: float) -> np.ndarray:
        if self._T <= 0.0:
            return self._space.clip(self._q0)
        t = min(max(t, 0.0), self._T)
        return self._space.clip(self._q0 + self._v0 * (t - t * t / (2 * self._T)))

    def sample(self, t_s: float) -> Sample:
        q = self._q(t_s)
        if self._T > 0 and t_s < self._T:
            vel = self._v0 * (1 - max(t_s, 0.0) / self._T)
            vel = np.where((q <= self._space.lower) | (q >= self._space.upper), 0.0, vel)
        else:
            vel = np.zeros_like(q)
        return Sample(q, self._base[0].copy(), self._base[1].copy(), self._base[2], vel, self._human)

    def finished(self, t_s: float) -> bool:
        return t_s >= self._T

    def final_pose(self) -> RobotPose:
        return RobotPose(self._q(self._T), self._base[0].copy(), self._base[1].copy(), self._base[2])


class BlendToPosePlayback:
    """Move from one pose to a target joint configuration over ``duration_s`` (idle: return to rest)."""

    def __init__(self, start: RobotPose, target_positions: np.ndarray, joint_space: JointSpace,
                 *, duration_s: float = 1.0) -> None:
        self._q0 = np.asarray(start.positions, float).copy()
        self._q1 = joint_space.clip(np.asarray(target_positions, float))
        self._T = max(1e-6, float(duration_s))
        self._base = (np.asarray(start.base_position, float).copy(), np.asarray(start.base_quat_wxyz, float).copy(),
                      start.base_valid)

    def sample(self, t_s: float) -> Sample:
        x = min(max(t_s / self._T, 0.0), 1.0)
        w = _smoothstep(x)
        dw = 6.0 * x * (1.0 - x) / self._T
        q = (1 - w) * self._q0 + w * self._q1
        return Sample(q, self._base[0].copy(), self._base[1].copy(), self._base[2], dw * (self._q1 - self._q0), None)

    def finished(self, t_s: float) -> bool:
        return t_s >= self._T


class MotionPlayback:
    """Play a `MotionClip` from the robot's current pose.

    Args:
        clip: the motion (may still be filling).
        start: the pose the robot is in now; joints blend from it into the clip over ``blend_s``
            (smoothstep), the base orientation is slerped, the base height blended.
        speed: playback speed factor (clip time = ``speed`` x playback time).
        blend_s: blend duration [s of playback]; 0 jumps.
        anchor_base: re-anchor the clip's base path at the robot's current position and heading.
            A start pose with ``base_valid=False`` (nothing played yet) keeps the clip's own base path.
    """

    def __init__(self, clip: MotionClip, start: RobotPose, *, speed: float = 1.0, blend_s: float = 0.5,
                 anchor_base: bool = True) -> None:
        if not (speed > 0 and math.isfinite(speed)):
            raise PipelineError(f"speed must be positive, got {speed}")
        self.clip = clip
        self.speed = float(speed)
        self.blend_s = max(0.0, float(blend_s))
        self._space = clip.joint_space
        self._q0 = self._space.clip(np.asarray(start.positions, float))
        self._p0 = np.asarray(start.base_position, float).copy()
        self._quat0 = np.asarray(start.base_quat_wxyz, float).copy()
        self._base_valid = bool(start.base_valid)
        self._anchor = anchor_base and self._base_valid
        self._anchored = False
        self._rot = _quat_z(0.0)
        self._offset = np.zeros(3)
        self._h = 0.5 / (clip.fps * self.speed)  # half a source frame: the velocity stencil

    @property
    def duration_s(self) -> float:
        """Playback length [s] (the blend happens inside the clip's time, not before it)."""
        return self.clip.duration_s / self.speed

    def _anchor_once(self) -> None:
        # The first frame is in the buffer once frames_ready >= 1; its base pose defines the anchor.
        if self._anchored:
            return
        self._anchored = True
        if not self._anchor:
            return
        dyaw = _yaw_of(self._quat0) - _yaw_of(self.clip.base_quat_wxyz[0])
        self._rot = _quat_z(dyaw)
        first = self.clip.base_position[0]
        rotated = _qrot(self._rot, first)
        self._offset = np.array([self._p0[0] - rotated[0], self._p0[1] - rotated[1], 0.0])

    def _state(self, t: float, full: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(joint positions, base position, base quat, human joints) at playback time ``t``."""
        t = min(max(t, 0.0), self.duration_s)
        q_m, p_m, quat_m, human = self.clip.at(t * self.speed)
        if not full:  # joint positions only (velocity stencil, JointTrajectory)
            w = _smoothstep(t / self.blend_s) if self.blend_s > 0 else 1.0
            return self._space.clip((1 - w) * self._q0 + w * q_m), p_m, quat_m, human
        p_al = _qrot(self._rot, p_m) + self._offset
        quat_al = _qmul(self._rot, quat_m)
        human_al = _qrot(self._rot, human) + self._offset
        w = _smoothstep(t / self.blend_s) if self.blend_s > 0 else 1.0
        q = (1 - w) * self._q0 + w * q_m
        if w >= 1.0 or not self._base_valid:
            return self._space.clip(q), p_al, quat_al, human_al
        p = p_al.copy()
        p[2] = (1 - w) * self._p0[2] + w * p_al[2]
        quat = _qslerp(self._quat0 / np.linalg.norm(self._quat0), quat_al, w)
        return self._space.clip(q), p, quat, human_al

    def sample(self, t_s: float) -> Sample | None:
        clip = self.clip
        if clip.failed is not None:
            return None
        t_src = max(t_s, 0.0) * self.speed
        if clip.frames_ready < 2 or (not clip.complete and t_src + self._h * self.speed > clip.available_s):
            return None
        self._anchor_once()
        q, p, quat, human = self._state(t_s)
        lo, hi = max(t_s - self._h, 0.0), min(t_s + self._h, self.duration_s)
        if hi > lo:
            vel = (self._state(hi, False)[0] - self._state(lo, False)[0]) / (hi - lo)
        else:
            vel = np.zeros_like(q)
        return Sample(q, p, quat, True, vel, human)

    def finished(self, t_s: float) -> bool:
        return self.clip.failed is not None or (self.clip.complete and t_s >= self.duration_s)

    def trajectory(self, step_s: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(times [s], positions (N, J), velocities (N, J)) of the whole playback, for JointTrajectory.

        Needs a complete clip. Default step: one source frame of playback time.
        """
        if not self.clip.complete:
            raise PipelineError("the clip is still being retargeted")
        step = step_s or 1.0 / (self.clip.fps * self.speed)
        n = int(math.floor(self.duration_s / step + 1e-9)) + 1
        times = np.arange(n) * step
        if times[-1] < self.duration_s - 1e-9:
            times = np.append(times, self.duration_s)
        # Vectorised (the control loop builds this once per motion and must not stall): the same
        # interpolation and blend as `sample`, evaluated on the whole grid at once.
        c_times, c_pos, _, _ = self.clip.samples()
        t_src = np.clip(times, 0.0, self.duration_s) * self.speed
        q_m = np.stack([np.interp(t_src, c_times, c_pos[:, j]) for j in range(c_pos.shape[1])], axis=1)
        if self.blend_s > 0:
            x = np.clip(times / self.blend_s, 0.0, 1.0)
            w = (x * x * (3.0 - 2.0 * x))[:, None]
        else:
            w = np.ones((len(times), 1))
        pos = self._space.clip((1 - w) * self._q0 + w * q_m)
        vel = np.gradient(pos, times, axis=0) if len(times) > 1 else np.zeros_like(pos)
        return times, pos, vel


# --------------------------------------------------------------------------- the pipeline
class Generator(Protocol):
    def generate(self, texts: Sequence[str], lengths: Sequence[int] | None = None, **kwargs: Any) -> Any:
        """-> result with ``joints`` (B, T, J, 3) [m] Y-up, ``lengths`` (B,) frames, ``fps``."""


class Retargeter(Protocol):
    def retarget(self, joints_yup: np.ndarray, fps: float = 20.0) -> Any:
        """-> RobotTrajectory (joint_names, times_s, positions, velocities, base_position, base_quat_wxyz)."""


def _traj_arrays(traj: Any, joint_space: JointSpace) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A RobotTrajectory's (times, positions in joint_space order, base position, base quat wxyz)."""
    names = [str(n) for n in traj.joint_names]
    positions = np.asarray(traj.positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != len(names):
        raise PipelineError(f"retargeter positions have shape {positions.shape} for {len(names)} joints")
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in joint_space.names if n not in index]
    if missing:
        raise PipelineError(f"retargeter output lacks joints {missing}")
    positions = positions[:, [index[n] for n in joint_space.names]]
    n = positions.shape[0]
    base = getattr(traj, "base_position", None)
    quat = getattr(traj, "base_quat_wxyz", None)
    base = np.zeros((n, 3)) if base is None else np.asarray(base, dtype=np.float64).reshape(n, 3)
    quat = np.tile([1.0, 0, 0, 0], (n, 1)) if quat is None else np.asarray(quat, dtype=np.float64).reshape(n, 4)
    times = np.asarray(traj.times_s, dtype=np.float64).reshape(-1)
    if times.shape[0] != n:
        raise PipelineError(f"retargeter gave {times.shape[0]} times for {n} samples")
    return times, positions, base, quat


#: Human frames in the first retargeted chunk once the stream is calibrated up front: enough for the
#: smoothing and spline look-ahead to release the first samples.
FIRST_CHUNK_FRAMES = 6


class MotionPipeline:
    """Text command -> `MotionClip` (generation, then chunked retargeting), plus warm-up.

    Args:
        generator: a MoMask (or any object with the same ``generate``).
        retargeter: ``retarget(joints_yup (T, 22, 3), fps) -> RobotTrajectory``.
        joint_space: the robot's joints, limits and rest pose (publishing order).
        sampling: keyword arguments forwarded to ``generator.generate`` (cond_scale, res_cond_scale,
            timesteps, temperature, ...).
        seed: base seed; None draws a fresh seed per command (the command's own ``seed=`` wins).
        default_length_frames: length when a command gives none; None lets the model's length
            estimator decide.
        chunk_frames: human frames retargeted per chunk (smaller -> earlier first JointState).
        stream_factory: optional ``(fps) -> stream`` with ``push(joints_yup) -> RobotTrajectory`` and
            ``finish() -> RobotTrajectory`` (`momask_ros.retarget.RetargetStream`, whose chunks join
            without a seam); without it the whole clip is retargeted in one call and then appended
            piece by piece.
        fps, max_frames, unit_frames: the generator's frame rate and length bounds; read from
            ``generator.config.dataset`` when not given.
    """

    def __init__(
        self,
        generator: Generator,
        retargeter: Retargeter,
        joint_space: JointSpace,
        *,
        sampling: dict[str, Any] | None = None,
        seed: int | None = None,
        default_length_frames: int | None = None,
        chunk_frames: int = 20,
        stream_factory: Callable[[], Any] | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        unit_frames: int | None = None,
    ) -> None:
        dataset = getattr(getattr(generator, "config", None), "dataset", None)
        self.generator = generator
        self.retargeter = retargeter
        self.joint_space = joint_space
        self.sampling = dict(sampling or {})
        self.seed = seed
        self.fps = float(fps if fps is not None else getattr(dataset, "fps", 20.0))
        self.max_frames = int(max_frames if max_frames is not None else getattr(dataset, "max_motion_length", 196))
        self.unit_frames = int(unit_frames if unit_frames is not None else getattr(dataset, "unit_length", 4))
        if default_length_frames is not None and not self.unit_frames <= default_length_frames <= self.max_frames:
            raise ValueError(
                f"default_length_frames={default_length_frames} outside [{self.unit_frames}, {self.max_frames}]"
            )
        self.default_length_frames = default_length_frames
        if chunk_frames < 2:
            raise ValueError(f"chunk_frames must be >= 2, got {chunk_frames}")
        self.chunk_frames = int(chunk_frames)
        self.stream_factory = stream_factory
        self._rng = np.random.default_rng()
        self._lock = threading.Lock()  # one generation at a time (a model is not re-entrant)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_bundle(
        cls,
        bundle_path: str | Path | None,
        *,
        robot: str = "default",
        device: str = "auto",
        **kwargs: Any,
    ) -> "MotionPipeline":
        """Load a bundle (default: the packaged demo) on ``device`` and the robot's retargeter."""
        from momask_model.bundle import load_bundle

        path = resolve_bundle_path(bundle_path)
        dev = select_device(device)
        model = load_bundle(path, device=dev)
        return cls.for_model(model, robot=robot, **kwargs)

    @classmethod
    def for_model(cls, model: Any, *, robot: Any = "default", **kwargs: Any) -> "MotionPipeline":
        """A pipeline around an already built generator and the named robot profile."""
        from . import retarget as retarget_mod
        from .robot import load_robot

        robot_obj = load_robot(robot) if isinstance(robot, (str, Path)) else robot
        retargeter = retarget_mod.Retargeter(robot_obj)
        kwargs.setdefault("stream_factory", retargeter.stream)
        return cls(model, retargeter, JointSpace.from_robot(robot_obj), **kwargs)

    # ------------------------------------------------------------------ information
    def command_limits(self, *, max_chars: int = 300, max_bytes: int = 4096, min_speed: float = 0.25,
                       max_speed: float = 4.0) -> CommandLimits:
        """The limits commands must meet for this model (length range and frame rate)."""
        unit = self.unit_frames
        return CommandLimits(max_chars=max_chars, max_bytes=max(max_bytes, max_chars), fps=self.fps,
                             min_frames=unit, max_frames=self.max_frames, unit_frames=unit,
                             min_speed=min_speed, max_speed=max_speed)

    def check_text(self, text: str) -> TextRejection | None:
        """The model's own acceptance rule for a command's text (`momask_model.scope.check_text`): a
        demo bundle's scope gate, or a bag-of-words model's unknown words; None when it may run."""
        from momask_model.scope import check_text

        return check_text(self.generator, text)

    def unknown_words(self, text: str) -> list[str]:
        """Words the model's text encoder cannot represent (always empty for CLIP)."""
        fn = getattr(self.generator, "unknown_words", None)
        if fn is None:
            fn = getattr(getattr(self.generator, "text_encoder", None), "unknown_words", None)
        try:
            return list(fn(text)) if fn is not None else []
        except Exception:  # an encoder quirk must not block a command
            log.debug("unknown_words failed", exc_info=True)
            return []

    def known_skills(self) -> list[str]:
        """Skills a demo bundle was trained on (from its metadata); empty for open-vocabulary models."""
        meta = getattr(self.generator, "bundle_meta", None) or {}
        return [str(s) for s in meta.get("skills", [])]

    def known_words(self, limit: int = 40) -> list[str]:
        """A few words the text encoder knows (bag-of-words demo model), for helpful rejections."""
        enc = getattr(self.generator, "text_encoder", None)
        vocab = getattr(enc, "vocab", None) or getattr(getattr(enc, "config", None), "vocab", None)
        if vocab is None:
            vocab = getattr(getattr(getattr(self.generator, "config", None), "text_encoder", None), "vocab", ())
        return [str(w) for w in list(vocab)[:limit]]

    # ------------------------------------------------------------------ work
    def _seed_for(self, command: MotionCommand) -> int:
        if command.seed is not None:
            return int(command.seed)
        if self.seed is not None:
            return int(self.seed)
        return int(self._rng.integers(0, 2**31 - 1))

    def generate(self, command: MotionCommand) -> GeneratedMotion:
        """Run the text-to-motion model for one command (the slow part; call from a worker)."""
        length = command.length_frames if command.length_frames is not None else self.default_length_frames
        seed = self._seed_for(command)
        t0 = time.perf_counter()
        with self._lock:
            try:
                result = self.generator.generate(
                    [command.text], None if length is None else [int(length)], seed=seed, **self.sampling
                )
            except Exception as exc:
                raise PipelineError(f"generation failed for {command.text!r}: {exc}") from exc
        ms = (time.perf_counter() - t0) * 1e3
        joints = np.asarray(result.joints)
        n = int(np.asarray(result.lengths).reshape(-1)[0])
        if joints.ndim != 4 or joints.shape[-1] != 3 or n < 2:
            raise PipelineError(f"generator returned joints of shape {joints.shape} with length {n}")
        joints = joints[0, :n].astype(np.float64)
        if not np.all(np.isfinite(joints)):
            raise PipelineError("generator returned non-finite joint positions")
        return GeneratedMotion(command, joints, float(result.fps), ms, seed)

    def new_clip(self, motion: GeneratedMotion) -> MotionClip:
        """An empty clip sized for ``motion`` (the control loop may hold it before frames arrive)."""
        rate = float(getattr(self.retargeter, "rate_hz", motion.fps))
        capacity = int(math.ceil(motion.joints_yup.shape[0] / motion.fps * rate)) + 4
        return MotionClip(joint_space=self.joint_space, fps=motion.fps, command=motion.command,
                          human_joints_ros=human_yup_to_ros(motion.joints_yup), generation_ms=motion.generation_ms,
                          capacity=capacity)

    def _chunks(self, joints_yup: np.ndarray, fps: float) -> Iterator[tuple[np.ndarray, ...]]:
        """Robot samples (times, positions, base, quat) as they become final."""
        if self.stream_factory is not None:
            stream = self.stream_factory(fps)
            first = self.chunk_frames
            if hasattr(stream, "calibrate"):
                # The whole clip is here: calibrate on it now, so a small first chunk yields samples.
                stream.calibrate(joints_yup)
                first = min(self.chunk_frames, FIRST_CHUNK_FRAMES)
            bounds = [0, *range(first, joints_yup.shape[0], self.chunk_frames), joints_yup.shape[0]]
            for start, end in zip(bounds[:-1], bounds[1:]):
                yield _traj_arrays(stream.push(joints_yup[start:end]), self.joint_space)
            yield _traj_arrays(stream.finish(), self.joint_space)
            return
        arrays = _traj_arrays(self.retargeter.retarget(joints_yup, fps), self.joint_space)
        step = max(2, int(round(self.chunk_frames * len(arrays[0]) / max(1, joints_yup.shape[0]))))
        for start in range(0, len(arrays[0]), step):
            yield tuple(a[start : start + step] for a in arrays)

    def fill_clip(self, motion: GeneratedMotion, clip: MotionClip, *,
                  cancelled: Callable[[], bool] = lambda: False) -> None:
        """Retarget ``motion`` into ``clip`` chunk by chunk (call from a worker; the clip plays meanwhile).

        Raises:
            PipelineError: retargeting failed or was cancelled; the clip is marked failed too, so a
                playback of it ends instead of waiting forever.
        """
        t0 = time.perf_counter()
        try:
            for times, positions, base, quat in self._chunks(motion.joints_yup, motion.fps):
                if cancelled():
                    raise PipelineError("cancelled")
                if len(times) == 0:
                    continue
                clip.append(times, positions, base, quat)
                if math.isnan(clip.first_chunk_ms):
                    clip.first_chunk_ms = (time.perf_counter() - t0) * 1e3
            clip.finish()
        except Exception as exc:
            error = exc if isinstance(exc, PipelineError) else PipelineError(f"retargeting failed: {exc}")
            clip.fail(error)
            raise error from exc
        finally:
            clip.retarget_ms = (time.perf_counter() - t0) * 1e3

    def run(self, command: MotionCommand) -> MotionClip:
        """Generate and retarget synchronously (tests, benchmarks, offline use)."""
        motion = self.generate(command)
        clip = self.new_clip(motion)
        self.fill_clip(motion, clip)
        return clip

    def warm_up(self, text: str = "a person walks forward") -> float:
        """One short generation and retargeting so the first real command does not pay for lazy
        initialisation (allocator, kernels, caches). Returns the time it took [ms]."""
        t0 = time.perf_counter()
        frames = max(self.unit_frames * 4, 2 * self.unit_frames)
        self.run(MotionCommand(text, length_frames=min(frames, self.max_frames), seed=0))
        return (time.perf_counter() - t0) * 1e3
