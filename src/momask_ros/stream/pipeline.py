"""Text -> robot motion, ready to stream: generation (fresh, continued, window by window) and
chunked retargeting into a `MotionClip`.

No ROS and no threads here: the conductor's workers call it (`momask_ros.stream.producer`); this
module owns what is produced:

* `MotionPipeline` wraps a text-to-motion generator (a `momask_model.generation.momask.MoMask`, or anything
  that meets `momask_ros.stream.generator.Generator`) and a retargeter (``retarget(joints_yup,
  fps) -> RobotTrajectory`` plus a ``stream`` factory). Both are constructor arguments, so tests can
  drive the stream with small deterministic stand-ins and the real models alike.
* Its sessions (`momask_ros.stream.retargeting.RetargetSession`) are one retargeting stream feeding
  one clip each, through every continuation of its first motion.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from momask_ros.stream.clip import MotionClip
from momask_ros.stream.commands import CommandLimits, MotionCommand
from momask_ros.stream.generator import Generated, Generator
from momask_ros.retarget.frames import human_yup_to_ros
from momask_model.generation.loading import resolve_bundle_path, select_device
from momask_ros.stream.retargeting import (FIRST_CHUNK_FRAMES, SWITCH_CHUNK_FRAMES, BatchStream, RetargetSession,
                                            Stream, Trajectory)
from momask_ros.stream.state import Cancelled, JointSpace, PipelineError

if TYPE_CHECKING:
    from momask_model.text.scope import TextRejection
    from momask_ros.robot.model import Robot

log = logging.getLogger(__name__)

__all__ = ["FIRST_CHUNK_FRAMES", "GeneratedMotion", "MotionPipeline", "RetargetSession", "SWITCH_CHUNK_FRAMES"]


@dataclass
class GeneratedMotion:
    """One generated human motion: (T, J, 3) joints [m], HumanML3D axes (Y up), at ``fps``.

    ``tokens`` (T / unit, Q) are the motion's token ids when the generator gives them (a
    continuation of this motion fixes its first tokens to these).
    """

    command: MotionCommand
    joints_yup: np.ndarray
    fps: float
    generation_ms: float
    seed: int | None
    tokens: np.ndarray | None = None

    @property
    def frames(self) -> int:
        return int(self.joints_yup.shape[0])

    @staticmethod
    def join(parts: "Sequence[GeneratedMotion]") -> "GeneratedMotion":
        """Consecutive windows of one motion as one motion (what a continuation continues)."""
        first = parts[0]
        tokens = None if any(p.tokens is None for p in parts) else np.concatenate([p.tokens for p in parts])
        return GeneratedMotion(first.command, np.concatenate([p.joints_yup for p in parts]), first.fps,
                               sum(p.generation_ms for p in parts), first.seed, tokens)


class Retargeter(Protocol):
    #: Samples per second of what it returns.
    rate_hz: float

    def retarget(self, joints_yup: np.ndarray, fps: float = 20.0) -> Trajectory:
        """-> RobotTrajectory (joint_names, times_s, positions, velocities, base_position, base_quat_wxyz)."""


class MotionPipeline:
    """Text command -> `MotionClip` (generation, then chunked retargeting), plus warm-up.

    Args:
        generator: a MoMask, or any `momask_ros.stream.generator.Generator`.
        retargeter: ``retarget(joints_yup (T, 22, 3), fps) -> RobotTrajectory``.
        joint_space: the robot's joints, limits and rest pose (publishing order).
        sampling: keyword arguments forwarded to the generator (cond_scale, res_cond_scale,
            timesteps, temperature, ...).
        seed: base seed; None draws a fresh seed per command (the command's own ``seed=`` wins).
        default_length_frames: length when a command gives none; None lets the model's length
            estimator decide.
        chunk_frames: human frames retargeted per chunk (smaller -> earlier first JointState).
        stream_factory: optional ``(fps) -> stream`` with ``push(joints_yup) -> RobotTrajectory``,
            ``finish() -> RobotTrajectory`` and, for continuations, ``rewind(frame)`` /
            ``cut_time(frame)`` (`momask_ros.retarget.retargeter.RetargetStream`); without it the whole motion
            is retargeted in one call and then appended piece by piece.
    """

    #: Frames of a continuation when neither the command nor the node gives a length and the model
    #: has no length estimator (4 s).
    CONTINUATION_FRAMES = 80

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
        stream_factory: Callable[[float], Stream] | None = None,
    ) -> None:
        self.generator = generator
        self.retargeter = retargeter
        self.joint_space = joint_space
        self.sampling = dict(sampling or {})
        self.seed = seed
        self.fps = float(generator.fps)
        self.max_frames = int(generator.max_length)
        self.unit_frames = int(generator.unit_length)
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
        #: Continuation generation + its retargeting, measured by `warm_up` [ms] (a first guess of the
        #: lead a switch needs; the producer then measures every switch).
        self.switch_lead_ms = float("nan")
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
        from momask_model.generation.bundle import load_bundle

        path = resolve_bundle_path(bundle_path)
        dev = select_device(device)
        model = load_bundle(path, device=dev)
        return cls.for_model(model, robot=robot, **kwargs)

    @classmethod
    def for_model(cls, model: Generator, *, robot: "str | Path | Robot" = "default", **kwargs: Any) -> "MotionPipeline":
        """A pipeline around an already built generator and the named robot profile."""
        from momask_ros.retarget import retargeter as retarget_mod
        from momask_ros.robot.model import load_robot

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
                             min_frames=unit, max_frames=self.longest_frames, unit_frames=unit,
                             min_speed=min_speed, max_speed=max_speed)

    def check_text(self, text: str) -> TextRejection | None:
        """The model's own acceptance rule for a command's text (`momask_model.text.scope.check_text`): a
        demo bundle's scope gate, or a bag-of-words model's unknown words; None when it may run."""
        from momask_model.text.scope import check_text

        return check_text(self.generator, text)

    def known_skills(self) -> list[str]:
        """Skills a demo bundle was trained on (from its metadata); empty for open-vocabulary models."""
        return [str(s) for s in self.generator.bundle_meta.get("skills", [])]

    # ------------------------------------------------------------------ work
    @property
    def then_separates(self) -> bool:
        """Whether ``then`` separates the segments of a command (models trained on single skills)."""
        return bool(self.generator.then_separates_segments)

    @property
    def longest_frames(self) -> int:
        """The longest motion a command may ask for: 60 s, window by window, each continuing the last."""
        return max(self.max_frames, int(60 * self.fps) // self.unit_frames * self.unit_frames)

    def _seed_for(self, command: MotionCommand) -> int:
        if command.seed is not None:
            return int(command.seed)
        if self.seed is not None:
            return int(self.seed)
        return int(self._rng.integers(0, 2**31 - 1))

    def _motion(self, command: MotionCommand, result: Generated, seed: int, ms: float) -> GeneratedMotion:
        joints = np.asarray(result.joints)
        n = int(np.asarray(result.lengths).reshape(-1)[0])
        if joints.ndim != 4 or joints.shape[-1] != 3 or n < 2:
            raise PipelineError(f"generator returned joints of shape {joints.shape} with length {n}")
        joints = joints[0, :n].astype(np.float64)
        if not np.all(np.isfinite(joints)):
            raise PipelineError("generator returned non-finite joint positions")
        tokens = result.tokens
        if tokens is not None:
            tokens = np.asarray(tokens)[0]
            tokens = tokens[: n // self.unit_frames]
        return GeneratedMotion(command, joints, float(result.fps), ms, seed, tokens)

    def generate(self, command: MotionCommand, *, seed: int | None = None) -> GeneratedMotion:
        """Run the text-to-motion model for one command (the slow part; call from a worker)."""
        length = command.length_frames if command.length_frames is not None else self.default_length_frames
        seed = self._seed_for(command) if seed is None else seed
        t0 = time.perf_counter()
        with self._lock:
            try:
                result = self.generator.generate(
                    [command.text], None if length is None else [int(length)], seed=seed, **self.sampling
                )
            except Exception as exc:
                raise PipelineError(f"generation failed for {command.text!r}: {exc}") from exc
        return self._motion(command, result, seed, (time.perf_counter() - t0) * 1e3)

    def continue_from(self, prev: GeneratedMotion, at_frame: int, command: MotionCommand, *,
                      length: int | None = None, seed: int | None = None) -> GeneratedMotion:
        """A motion for ``command`` that continues ``prev`` from its frame ``at_frame`` on (its frame 0
        is what would have been ``prev``'s frame ``at_frame``, in ``prev``'s frame of reference)."""
        if prev.tokens is None:
            raise PipelineError("the previous motion has no tokens to continue from")
        unit = self.unit_frames
        seed = self._seed_for(command) if seed is None else seed
        if length is None:
            length = command.length_frames or self.default_length_frames or self.estimated_frames(command.text, seed)
        length = max(unit, int(length) // unit * unit)
        t0 = time.perf_counter()
        with self._lock:
            try:
                result = self.generator.continue_motion(
                    prev.tokens, prev.joints_yup, int(at_frame), command.text, length, seed=seed, **self.sampling)
            except Exception as exc:
                raise PipelineError(f"continuation failed for {command.text!r}: {exc}") from exc
        return self._motion(command, result, seed, (time.perf_counter() - t0) * 1e3)

    def estimated_frames(self, text: str, seed: int) -> int:
        """The length a fresh command with ``text`` would get from the model's length estimator
        (``estimate_lengths``), for a continuation without one; `CONTINUATION_FRAMES` without it."""
        if not self.generator.estimates_lengths:
            return self.CONTINUATION_FRAMES
        with self._lock:
            try:
                frames = int(np.asarray(self.generator.estimate_lengths([text], seed=seed)).reshape(-1)[0])
            except Exception as exc:
                raise PipelineError(f"length estimation failed for {text!r}: {exc}") from exc
        return min(max(self.unit_frames, frames // self.unit_frames * self.unit_frames), self.max_frames)

    def motions(self, command: MotionCommand, *, after: GeneratedMotion | None = None,
                at_frame: int | None = None) -> Iterator[GeneratedMotion]:
        """The motion of ``command`` window by window, each continuing the one before (a long motion,
        or one that continues ``after`` from its frame ``at_frame``). Lazy: a consumer that stops
        iterating (stop, preempt) stops the generation of what has not been played."""
        length = command.length_frames if command.length_frames is not None else self.default_length_frames
        if after is None and (length is None or length <= self.max_frames):
            yield self.generate(command)
            return
        seed = self._seed_for(command)
        if length is None:
            length = self.estimated_frames(command.text, seed)
        if after is None:
            yield from self._iter_windows(command, int(length), seed)
            return
        remaining, k = int(length), 0
        prev, at = after, at_frame
        while remaining >= self.unit_frames:
            n = min(remaining, self.max_frames)
            motion = self.continue_from(prev, prev.frames if at is None else at, command, length=n, seed=seed + k)
            yield motion
            prev, at, k = motion, None, k + 1
            remaining -= motion.frames

    def _iter_windows(self, command: MotionCommand, length: int, seed: int) -> Iterator[GeneratedMotion]:
        """A long motion from the generator's own window iterator, one window at a time."""
        t0 = time.perf_counter()
        windows = self.generator.iter_windows([command.text], length, seed=seed, **self.sampling)
        while True:
            with self._lock:
                try:
                    result = next(windows)
                except StopIteration:
                    return
                except Exception as exc:
                    raise PipelineError(f"generation failed for {command.text!r}: {exc}") from exc
            t1 = time.perf_counter()
            yield self._motion(command, result, seed, (t1 - t0) * 1e3)
            t0 = time.perf_counter()

    def new_clip(self, motion: GeneratedMotion) -> MotionClip:
        """An empty clip sized for ``motion`` (the control loop may hold it before frames arrive)."""
        rate = float(self.retargeter.rate_hz)
        capacity = int(math.ceil(motion.joints_yup.shape[0] / motion.fps * rate)) + 4
        return MotionClip(joint_space=self.joint_space, fps=motion.fps, command=motion.command,
                          human_joints_ros=human_yup_to_ros(motion.joints_yup), generation_ms=motion.generation_ms,
                          capacity=capacity)

    def open_session(self, motion: GeneratedMotion) -> RetargetSession:
        """A clip for ``motion`` and the retargeting stream that will fill it (and its continuations)."""
        clip = self.new_clip(motion)
        if self.stream_factory is not None:
            return RetargetSession(clip, self.stream_factory(motion.fps), joint_space=self.joint_space,
                                   chunk_frames=self.chunk_frames, calibrated=False)
        return RetargetSession(clip, BatchStream(self.retargeter.retarget, motion.fps), joint_space=self.joint_space,
                               chunk_frames=self.chunk_frames, calibrated=True)

    def fill_clip(self, motion: GeneratedMotion, clip: MotionClip, *,
                  cancelled: Callable[[], bool] = lambda: False) -> None:
        """Retarget ``motion`` into the fresh ``clip`` chunk by chunk (a worker; the clip plays meanwhile).

        Raises:
            Cancelled: ``cancelled()`` stopped it; the clip is marked failed, so a playback of it ends.
            PipelineError: retargeting failed; the clip is marked failed too.
        """
        stream = self.stream_factory(motion.fps) if self.stream_factory is not None else None
        session = RetargetSession(clip, stream or BatchStream(self.retargeter.retarget, motion.fps),
                                  joint_space=self.joint_space, chunk_frames=self.chunk_frames,
                                  calibrated=stream is None)
        try:
            session.push(motion.joints_yup, cancelled=cancelled)
        except Cancelled as exc:
            clip.fail(exc)
            raise

    def run(self, command: MotionCommand) -> MotionClip:
        """Generate and retarget synchronously (tests, benchmarks, offline use)."""
        motion = self.generate(command)
        clip = self.new_clip(motion)
        self.fill_clip(motion, clip)
        return clip

    def warm_up(self, text: str = "a person walks forward") -> float:
        """One short generation (and continuation) and retargeting so the first real command does not
        pay for lazy initialisation (allocator, kernels, caches). Returns the time it took [ms]."""
        t0 = time.perf_counter()
        frames = min(max(self.unit_frames * 4, 2 * self.unit_frames), self.max_frames)
        motion = self.generate(MotionCommand(text, length_frames=frames, seed=0))
        session = self.open_session(motion)
        session.push(motion.joints_yup)
        if motion.tokens is not None and session.can_continue:
            at = motion.frames // 2 // self.unit_frames * self.unit_frames
            t1 = time.perf_counter()
            more = self.continue_from(motion, at, MotionCommand(text, length_frames=frames, seed=1))
            session.push(more.joints_yup, at_frame=at)
            self.switch_lead_ms = (time.perf_counter() - t1) * 1e3
        return (time.perf_counter() - t0) * 1e3
