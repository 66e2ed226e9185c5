"""Human joint positions (HumanML3D, Y-up, 20 fps) -> humanoid joint trajectories within limits.

Pipeline, per input frame, run incrementally so that batch and streaming give the same samples:

1. Axis conversion to Z-up (x_ros = z_h, y_ros = x_h, z_ros = y_h), foot-contact detection, scaling to
   the robot and foot planting (`momask_ros.retarget.targets`).
2. Differential IK with mink on the MuJoCo model, warm-started from the previous frame
   (`momask_ros.retarget.ik`).
3. Temporal smoothing, a floor pass, and resampling to the control rate with the cubic B-spline over the
   keyframes (C2, sampled as Hermite pieces) whose velocities are provably within the limits (`momask_ros.retarget.keyframes`, `momask_ros.retarget.trajectory`).

This module holds the public API: `Retargeter` (settings, whole motions) and `RetargetStream` (chunks,
and the rewind that lets a motion continue another from one of its frames).
"""
from __future__ import annotations

import math

import numpy as np

from momask_ros.retarget.ik import IkSolver
from momask_ros.retarget.keyframes import KeyframeSpline
from momask_ros.retarget.targets import KeypointTargets, check_joints, robot_segment_lengths, yup_to_zup
from momask_ros.robot.model import Robot
from momask_ros.retarget.trajectory import RobotTrajectory, resample

__all__ = ["RetargetStream", "Retargeter", "RobotTrajectory", "resample", "yup_to_zup"]


class RetargetStream:
    """Incremental retargeting: push human frames in chunks, get finished trajectory samples back.

    Every stage is causal or uses a short fixed look-ahead (smoothing radius + 1 frame for the spline
    slopes), so the concatenated chunks equal the batch result. Nothing is emitted until the first
    `calibration_frames` frames (segment lengths for scaling) have arrived or `finish` is called.
    """

    def __init__(self, retargeter: "Retargeter", *, fps: float = 20.0) -> None:
        if not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        self.rt = retargeter
        self.robot = retargeter.robot
        self.fps = float(fps)
        self.dt = 1.0 / self.fps
        self._ik = IkSolver(self.robot, velocity_margin=retargeter.velocity_margin, damping=retargeter.damping,
                            solver=retargeter.solver, self_collision=retargeter.self_collision)
        self._targets_of = KeypointTargets(self.robot, retargeter, self.fps)
        tracked = np.array([k.position_weight > 0 for k in self.robot.keypoints])
        self._keys = KeyframeSpline(self.robot, retargeter, self.dt, self._ik.avoid, tracked)
        self._pending: list[np.ndarray] = []     # Z-up human frames waiting for calibration
        self._ik_q: list[np.ndarray] = []         # raw IK qpos per frame
        self._targets: list[np.ndarray] = []      # (K, 3) per frame
        self._contact: list[tuple[bool, bool]] = []
        self._after_frame: list[tuple] = []        # target state (human frame, foot anchors) after each frame
        self._finished = False

    # -- public ---------------------------------------------------------------------------------------

    def push(self, joints_chunk_yup: np.ndarray) -> RobotTrajectory:
        """Add human frames (T, 22, 3) in HumanML3D axes; return the samples that are now final."""
        if self._finished:
            raise RuntimeError("push() after finish(); start a new stream")
        frames = yup_to_zup(check_joints(joints_chunk_yup, "joints_chunk_yup"))
        if self._targets_of.scaling is None:
            self._pending.extend(frames)
            if len(self._pending) < self.rt.calibration_frames:
                return self._empty()
            frames = np.array(self._pending)
            self._pending = []
            self._calibrate(frames[: self.rt.calibration_frames])
        for frame in frames:
            self._ik_step(frame)
        self._advance(final=False)
        return self._emit(final=False)

    def calibrate(self, joints_yup: np.ndarray) -> None:
        """Measure the human's segment lengths now, from the first `calibration_frames` of ``joints_yup``.

        Why: a caller that already holds the whole motion (a generated clip) can calibrate up front on
        the same frames the stream would wait for, and then push small chunks: the first samples come
        after a few frames of IK instead of after `calibration_frames` of them. The result is identical.
        """
        if self._targets_of.scaling is not None or self._pending:
            raise RuntimeError("calibrate() must come before the first push()")
        frames = yup_to_zup(check_joints(joints_yup, "joints_yup"))
        self._calibrate(frames[: self.rt.calibration_frames])

    @property
    def frames_pushed(self) -> int:
        return len(self._ik_q) + len(self._pending)

    def _kept(self, frame: int) -> tuple[int, int, int]:
        """(keyframes, spline pieces, grid samples) still valid when only frames [0, frame) remain."""
        return self._keys.kept(frame)

    def cut_time(self, frame: int) -> float:
        """The time [s] from which emitted samples change if the stream is rewound to ``frame``."""
        return self._kept(frame)[2] / self.rt.rate_hz

    def rewind(self, frame: int) -> float:
        """Forget the human frames from ``frame`` on, as if only frames [0, frame) had been pushed.

        Why: a motion that continues another from its frame ``frame`` (a preempting or queued
        command) is retargeted from the state the stream had there: calibration, IK warm start,
        planted feet and the smoothing window carry on, so the joined motion is retargeted exactly as
        if it had been pushed in one piece. Samples already returned from the returned time [s] on
        are superseded by what the next pushes return (a few frames before ``frame``: the smoothing
        and spline look-ahead). Works after `finish` too (the stream is open again).

        Raises:
            ValueError: ``frame`` is outside [0, frames pushed].
        """
        if not 0 <= frame <= self.frames_pushed:
            raise ValueError(f"cannot rewind to frame {frame}: {self.frames_pushed} frames were pushed")
        self._finished = False
        if self._targets_of.scaling is None:
            self._pending = self._pending[:frame]
            return 0.0
        keys, pieces, samples = self._kept(frame)
        del self._ik_q[frame:], self._targets[frame:], self._contact[frame:], self._after_frame[frame:]
        self._keys.truncate(keys, pieces, samples)
        if frame == 0:
            self._ik.started = False
            self._targets_of.restore(None)
        else:
            self._ik.configuration.update(self._ik_q[-1])
            self._targets_of.restore(self._after_frame[-1])
        return samples / self.rt.rate_hz

    def finish(self) -> RobotTrajectory:
        """Flush the look-ahead and return the remaining samples, ending exactly at the last frame."""
        if self._finished:
            return self._empty()
        if self._targets_of.scaling is None:
            if not self._pending:
                raise ValueError("no frames were pushed")
            frames = np.array(self._pending)
            self._pending = []
            self._calibrate(frames[: self.rt.calibration_frames])
            for frame in frames:
                self._ik_step(frame)
        self._finished = True
        self._advance(final=True)
        return self._emit(final=True)

    # -- stages ---------------------------------------------------------------------------------------

    def _empty(self) -> RobotTrajectory:
        return RobotTrajectory.empty(self.robot.joint_names, position_limits=self.robot.position_limits,
                                     velocity_limits=self.robot.velocity_limits)

    def _calibrate(self, frames_zup: np.ndarray) -> None:
        self._targets_of.calibrate(frames_zup)

    def _ik_step(self, p: np.ndarray) -> None:
        frame = self._targets_of.frame(p)
        targets = frame.positions
        ik = self._ik
        if not ik.started:
            pelvis_row = self._targets_of.kp_index["pelvis"]
            base_rot = frame.pelvis_rot
            offset = self._targets_of.rest_site[pelvis_row] - self.robot.rest_qpos[self.robot.base_qpos_index:][:3]
            ik.reset_base(targets[pelvis_row] - base_rot @ offset, base_rot)
            q = ik.solve(targets, frame.rotations, dt=self.dt, iterations=self.rt.first_frame_iterations,
                         velocity_limited=False)
            ik.started = True
        else:
            q = ik.solve(targets, frame.rotations, dt=self.dt, iterations=self.rt.iterations, velocity_limited=True)
        self._ik_q.append(q)
        self._targets.append(targets)
        self._contact.append(frame.contacts)
        self._after_frame.append(self._targets_of.state())

    def _advance(self, *, final: bool) -> None:
        self._keys.advance(self._ik_q, self._contact, final=final)

    def _emit(self, *, final: bool) -> RobotTrajectory:
        return self._keys.emit(self._contact, self._targets, final=final)


class Retargeter:
    """Retarget HumanML3D joint positions onto one robot (see the module docstring for the method).

    Args:
        robot: from `load_robot`.
        rate_hz: output control rate [Hz]; default: the profile's ``control_rate_hz``.
        smoothing: radius (frames) of the binomial smoothing kernel over IK results; 0 disables it.
        iterations: IK iterations per input frame after the first (warm-started).
        first_frame_iterations: IK iterations for the first frame, solved from the rest pose.
        velocity_margin: fraction of each joint's velocity limit one IK step may use; < 0.5 makes the
            spline's velocities provably within limits (module docstring).
        damping: Levenberg-Marquardt damping of the IK QP.
        solver: qpsolvers backend.
        calibration_frames: frames used to measure the human's segment lengths for scaling.
        ankle_rest_height_m / toe_rest_height_m: human ankle / toe height above the floor when the foot is
            flat (HumanML3D skeleton, measured on dataset motions).
        foot_rest_pitch_rad: ankle->toe angle below horizontal for a flat human foot (same skeleton).
        contact_height_m / contact_speed_mps: a human foot is in contact when the toe or ankle is within
            this height of its rest height and both move slower than this horizontally.
        replant_distance_m: a planted foot is re-anchored when the human foot drifts further than this.
        max_floor_pull_m: the floor pass lowers the body at most this much to make a contact foot touch.
        self_collision: avoid self-collision in the IK on the profile's ``self_collision`` pairs
            (`momask_ros.robot.self_collision`); False, or ``enabled: false`` in the profile, turns it off.
    """

    def __init__(self, robot: Robot, *, rate_hz: float | None = None, smoothing: int = 2, iterations: int = 2,
                 first_frame_iterations: int = 60, velocity_margin: float = 0.49, damping: float = 1e-3,
                 solver: str = "daqp", calibration_frames: int = 20, ankle_rest_height_m: float = 0.055,
                 toe_rest_height_m: float = 0.01, foot_rest_pitch_rad: float = 0.35, contact_height_m: float = 0.03,
                 contact_speed_mps: float = 0.5, replant_distance_m: float = 0.1,
                 max_floor_pull_m: float = 0.05, self_collision: bool = True) -> None:
        self.robot = robot
        self.self_collision = bool(self_collision)
        self.rate_hz = float(rate_hz if rate_hz is not None else robot.profile.control_rate_hz)
        if not (self.rate_hz > 0 and math.isfinite(self.rate_hz)):
            raise ValueError(f"rate_hz must be a positive number, got {rate_hz!r}")
        if not isinstance(smoothing, int) or smoothing < 0:
            raise ValueError(f"smoothing must be a non-negative int (kernel radius in frames), got {smoothing!r}")
        if iterations < 1 or first_frame_iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}, {first_frame_iterations}")
        if not 0 < velocity_margin <= 0.5:
            raise ValueError(f"velocity_margin must be in (0, 0.5] for the velocity guarantee, got {velocity_margin}")
        if calibration_frames < 1:
            raise ValueError(f"calibration_frames must be >= 1, got {calibration_frames}")
        self.smoothing = smoothing
        self.iterations = int(iterations)
        self.first_frame_iterations = int(first_frame_iterations)
        self.velocity_margin = float(velocity_margin)
        self.damping = float(damping)
        self.solver = solver
        self.calibration_frames = int(calibration_frames)
        self.ankle_rest_height_m = ankle_rest_height_m
        self.toe_rest_height_m = toe_rest_height_m
        self.foot_rest_pitch_rad = foot_rest_pitch_rad
        self.contact_height_m = contact_height_m
        self.contact_speed_mps = contact_speed_mps
        self.replant_distance_m = replant_distance_m
        self.max_floor_pull_m = max_floor_pull_m
        self.robot_segments = robot_segment_lengths(robot)

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.robot.joint_names

    def stream(self, fps: float = 20.0) -> RetargetStream:
        """A fresh chunked retargeting session (see `RetargetStream`)."""
        return RetargetStream(self, fps=fps)

    def retarget(self, joints_yup: np.ndarray, fps: float = 20.0) -> RobotTrajectory:
        """Retarget a whole motion.

        Args:
            joints_yup: (T, 22, 3) HumanML3D joint positions [m], Y up, SMPL joint order.
            fps: frame rate of `joints_yup` [Hz].

        Returns:
            `RobotTrajectory` at `rate_hz` covering [0, (T - 1) / fps].

        Raises:
            ValueError: wrong shape, non-finite values, bad fps.
        """
        joints = check_joints(joints_yup)
        stream = self.stream(fps)
        return RobotTrajectory.concatenate([stream.push(joints), stream.finish()])
