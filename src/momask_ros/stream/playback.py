"""Playbacks: what the control loop publishes, as a function of the time since it started.

Each playback turns a time [s] into a `Sample` (joint positions and velocities, base pose, human
skeleton): `HoldPlayback` keeps a pose, `StopPlayback` decelerates into a hold, `BlendToPosePlayback`
returns to a pose (rest), `ReturnPlayback` does both (a motion cut before a fall the rehearsal predicts),
and `MotionPlayback` plays a `MotionClip`: from the robot's current pose
with a blend when the clip starts afresh, and on through every continuation the clip grows by
(those join without a blend: the clip's timeline is continuous by construction). Every sample is
clipped to the robot's joint limits: whatever the model produces, nothing outside them is published.
A sample carries the base's twist: the clip's own rates, turned by the anchor and scaled by the speed
(during a blend, the rate of the blended base path). `MotionPlayback.trajectory` reads the same curve
and blend as `sample` on a whole grid, so the JointTrajectory and the JointStates agree between samples.
"""
from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from momask_model.motion.quaternion import qinv, qmul, qrot, qslerp

from momask_ros.retarget.frames import BaseAnchor
from momask_ros.stream.clip import MotionClip
from momask_ros.stream.state import JointSpace, PipelineError, RobotPose, Sample

#: How far above the floor a blend into a motion carries the feet at its middle [m] (0 at both ends): the
#: feet move from the robot's stance into the motion's, and a foot dragged over the floor meanwhile
#: bends the leg of a robot replayed in a harness (G1: 0.47 rad at 1 mm clearance, 0.05 rad at 1 cm).
BLEND_FOOT_CLEARANCE_M = 0.01

__all__ = ["BlendToPosePlayback", "HoldPlayback", "MotionPlayback", "Playback", "ReturnPlayback", "StopPlayback",
           "smoothstep"]


def smoothstep(x: float) -> float:
    """0 -> 0, 1 -> 1 with zero slope at both ends (a blend that starts and ends without a jerk)."""
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


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
        w = smoothstep(x)
        dw = 6.0 * x * (1.0 - x) / self._T
        q = (1 - w) * self._q0 + w * self._q1
        return Sample(q, self._base[0].copy(), self._base[1].copy(), self._base[2], dw * (self._q1 - self._q0), None)

    def finished(self, t_s: float) -> bool:
        return t_s >= self._T


class ReturnPlayback:
    """Decelerate as `StopPlayback` over ``stop_s``, then blend to ``target_positions`` over ``blend_s``: the
    safe return to standing of a motion cut where the rehearsal cleared it (the tracker blends to its own
    standing pose meanwhile)."""

    def __init__(self, sample: Sample, target_positions: np.ndarray, joint_space: JointSpace, *, stop_s: float,
                 blend_s: float) -> None:
        self._stop = StopPlayback(sample, joint_space, stop_s=stop_s)
        self._stop_s = max(0.0, float(stop_s))
        self._blend = BlendToPosePlayback(self._stop.final_pose(), target_positions, joint_space, duration_s=blend_s)

    def sample(self, t_s: float) -> Sample:
        return self._stop.sample(t_s) if t_s < self._stop_s else self._blend.sample(t_s - self._stop_s)

    def finished(self, t_s: float) -> bool:
        return t_s >= self._stop_s and self._blend.finished(t_s - self._stop_s)


class MotionPlayback:
    """Play a `MotionClip` from the robot's current pose, through every continuation it grows by.

    Args:
        clip: the motion (may still be filling, and may be continued while it plays).
        start: the pose the robot is in now; joints blend from it into the clip over ``blend_s``
            (smoothstep), the base orientation is slerped, the base height blended, and the base is
            lifted so that no foot touches the floor mid-blend (`BLEND_FOOT_CLEARANCE_M`, when the
            joint space knows the feet): the feet change stance in the air, not by sliding. A start
            with ``base_valid=False`` blends the base from the robot's rest stance
            (``joint_space.rest_base``), where a simulator or robot stands before its first motion.
        speed: playback speed factor (clip time = ``speed`` x playback time); `change_speed` changes
            it from a playback time on (a continuation with its own ``speed=``).
        blend_s: blend duration [s of playback]; 0 jumps.
        anchor_base: re-anchor the clip's base path at the robot's current position and heading.
            A start pose with ``base_valid=False`` (nothing played yet) keeps the clip's own base path.
    """

    def __init__(self, clip: MotionClip, start: RobotPose, *, speed: float = 1.0, blend_s: float = 0.5,
                 anchor_base: bool = True) -> None:
        _check_speed(speed)
        self.clip = clip
        self.blend_s = max(0.0, float(blend_s))
        self._space = clip.joint_space
        self._q0 = self._space.clip(np.asarray(start.positions, float))
        self._p0 = np.asarray(start.base_position, float).copy()
        self._quat0 = np.asarray(start.base_quat_wxyz, float).copy()
        self._base_valid = bool(start.base_valid)
        self._blend_base = (self._p0, self._quat0) if self._base_valid else self._space.rest_base
        self._anchor_wanted = anchor_base and self._base_valid
        self._anchor: BaseAnchor | None = None
        self._turn = np.eye(3)
        self._pieces: list[tuple[float, float, float]] = [(0.0, 0.0, float(speed))]  # (play t, clip t, speed)

    # ------------------------------------------------------------------ time
    @property
    def speed(self) -> float:
        return self._pieces[-1][2]

    def clip_time(self, t: float) -> float:
        """Clip time [s] at playback time ``t`` [s]."""
        t0, c0, v = self._pieces[-1]
        for piece in reversed(self._pieces):
            if piece[0] <= t:
                t0, c0, v = piece
                break
        return c0 + (max(t, 0.0) - t0) * v

    def play_time(self, clip_t: float) -> float:
        """Playback time [s] at which the clip reaches ``clip_t`` (on the current speed pieces)."""
        t0, c0, v = self._pieces[0]
        for piece in self._pieces:
            if piece[1] <= clip_t:
                t0, c0, v = piece
        return t0 + (clip_t - c0) / v

    def change_speed(self, t: float, speed: float) -> None:
        """From playback time ``t`` on, the clip advances at ``speed`` (positions stay continuous)."""
        _check_speed(speed)
        if speed != self.speed:
            self._pieces.append((float(t), self.clip_time(t), float(speed)))

    @property
    def duration_s(self) -> float:
        """Playback length [s] (the blend happens inside the clip's time, not before it)."""
        return self.play_time(self.clip.duration_s)

    # ------------------------------------------------------------------ samples
    def _anchor_once(self) -> BaseAnchor:
        # The first sample is in the buffer once frames_ready >= 1; its base pose defines the anchor.
        if self._anchor is None:
            c = self.clip
            self._anchor = (BaseAnchor.placing(c.base_position[0], c.base_quat_wxyz[0], self._p0, self._quat0)
                            if self._anchor_wanted else BaseAnchor())
            self._turn = qrot(self._anchor.quat, np.eye(3)).T  # the anchor's rotation as a matrix (cheaper)
        return self._anchor

    def _weight(self, t: float) -> tuple[float, float]:
        """Blend weight of the clip at playback time ``t`` and its time derivative."""
        if self.blend_s <= 0 or t >= self.blend_s:
            return 1.0, 0.0
        x = max(t, 0.0) / self.blend_s
        return smoothstep(x), 6.0 * x * (1.0 - x) / self.blend_s

    def sample(self, t_s: float) -> Sample | None:
        clip = self.clip
        if clip.failed is not None:
            return None
        t = max(t_s, 0.0)
        c = self.clip_time(t)
        h = 0.5 / clip.fps  # half a source frame of clip time: the velocity stencil
        if not clip.covers(c + h):
            return None
        anchor = self._anchor_once()
        here = clip.at(c)
        lo, hi = max(c - h, 0.0), min(c + h, clip.duration_s)
        before, after = (clip.at(lo), clip.at(hi)) if hi > lo else (here, here)
        dq_m = (after[0] - before[0]) / (hi - lo) * self.speed if hi > lo else np.zeros_like(here[0])
        w, dw = self._weight(t)
        q = self._blended(t, here[0])
        vel = w * dq_m + dw * (here[0] - self._q0)
        vel = np.where((q <= self._space.lower) | (q >= self._space.upper), 0.0, vel)
        p, quat = self._base(anchor, t, q, here)
        if w < 1.0 and hi > lo:  # the blended base path's own rate, on the joints' stencil
            (p_lo, quat_lo), (p_hi, quat_hi) = (
                self._base(anchor, t + (x - c) / self.speed, self._blended(t + (x - c) / self.speed, pose[0]), pose)
                for x, pose in ((lo, before), (hi, after)))
            span = (hi - lo) / self.speed
            linear = (p_hi - p_lo) / span
            angular = _rotation_rate(quat_lo, quat_hi, span)
        else:
            linear, angular = clip.base_rates(c)
            linear, angular = self._turn @ linear * self.speed, self._turn @ angular * self.speed
        return Sample(q, p, quat, True, vel, here[3] @ self._turn.T + anchor.offset, linear, angular)

    def _blended(self, t: float, q_m: np.ndarray) -> np.ndarray:
        """Joints at playback time ``t``: the start pose blended into the clip's ``q_m``, within limits."""
        w, _ = self._weight(t)
        return self._space.clip((1 - w) * self._q0 + w * q_m)

    def _base(self, anchor: BaseAnchor, t: float, q: np.ndarray,
              clip_pose: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The base (position, quaternion) at playback time ``t`` for joints ``q``, from the clip's pose
        there: anchored, and blended from the start pose while ``t`` is in the blend."""
        q_m, p_m, quat_m, _ = clip_pose
        p, quat = self._turn @ p_m + anchor.offset, anchor.orientation(quat_m)
        w, _ = self._weight(t)
        if w < 1.0 and self._blend_base is not None:
            p0, quat0 = self._blend_base
            anchored = (q_m, p, quat)
            p = p.copy()
            if self._base_valid:  # the anchor already starts the path where the robot stands
                p[2] = (1 - w) * p0[2] + w * p[2]
            else:
                p = (1 - w) * p0 + w * p
            quat = qslerp(quat0 / np.linalg.norm(quat0), quat, w)
            lowest = self._space.lowest_foot_z
            if lowest is not None:  # feet out of (and mid-blend just off) the floor; the clip's own floor at its end
                p[2] += max(0.0, -lowest(q, p, quat)) - w * max(0.0, -lowest(*anchored)) + BLEND_FOOT_CLEARANCE_M * 4 * w * (1 - w)
        return p, quat

    def finished(self, t_s: float) -> bool:
        return self.clip.failed is not None or (self.clip.complete and self.clip_time(t_s) >= self.clip.duration_s)

    def trajectory(self, from_s: float = 0.0, step_s: float | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(times [s] from ``from_s``, positions (N, J), velocities (N, J)) of the playback from
        playback time ``from_s`` to its end, for JointTrajectory. Needs a complete clip. Default step:
        one source frame of playback time.
        """
        if not self.clip.complete:
            raise PipelineError("the clip is still being retargeted")
        step = step_s or 1.0 / (self.clip.fps * self.speed)
        end = self.duration_s
        n = int(math.floor(max(end - from_s, 0.0) / step + 1e-9)) + 1
        times = from_s + np.arange(n) * step
        if times[-1] < end - 1e-9:
            times = np.append(times, end)
        # Vectorised (the control loop builds this once per motion and must not stall): the clip's
        # Hermite curve and the blend of `sample`, evaluated on the whole grid at once.
        q_m = self.clip.positions_at(np.array([self.clip_time(t) for t in times]))
        if self.blend_s > 0:
            x = np.clip(times / self.blend_s, 0.0, 1.0)
            w = (x * x * (3.0 - 2.0 * x))[:, None]
        else:
            w = np.ones((len(times), 1))
        pos = self._space.clip((1 - w) * self._q0 + w * q_m)
        vel = np.gradient(pos, times, axis=0) if len(times) > 1 else np.zeros_like(pos)
        return times - from_s, pos, vel


def _rotation_rate(q0: np.ndarray, q1: np.ndarray, dt: float) -> np.ndarray:
    """The world-frame angular velocity [rad/s] that turns ``q0`` into ``q1`` in ``dt`` seconds."""
    r = qmul(q1, qinv(q0))
    r = r if r[0] >= 0 else -r
    s = float(np.linalg.norm(r[1:]))
    return np.zeros(3) if s < 1e-12 or dt <= 0 else r[1:] * (2.0 * math.atan2(s, r[0]) / s / dt)


def _check_speed(speed: float) -> None:
    if not (speed > 0 and math.isfinite(speed)):
        raise PipelineError(f"speed must be positive, got {speed}")
