"""Small deterministic stand-ins for the generator and the retargeter (node and pipeline tests).

They exercise the same interfaces as MoMask and `momask_ros.retarget.retargeter.Retargeter` without their cost,
so the node's logic (threads, blending, limits, rejections) can be tested quickly; the ROS tests
also run once with the real models.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from momask_model.data.synthetic import synthetic_walk
from momask_ros.stream.state import JointSpace

FAKE_JOINTS = ("left_knee", "right_knee", "left_elbow", "right_elbow", "waist_yaw")


@dataclass
class FakeResult:
    joints: np.ndarray
    lengths: np.ndarray
    fps: float
    tokens: np.ndarray | None = None


class WalkGenerator:
    """A walking stick figure; the seed sets the gait phase, the text's length sets the speed.

    ``continue_motion`` follows issue 13's contract: the new walk starts in the previous one's pose,
    gait phase, heading and place at the switch frame, at the new text's speed. Each motion's token
    ids are its number in ``self.motions`` (which holds the walk's parameters), so a continuation
    knows what it continues.
    """

    unit_length = 4
    then_separates_segments = False
    estimates_lengths = False

    def __init__(self, *, fps: float = 20.0, default_frames: int = 60, delay_s: float = 0.0,
                 fail_on: str | None = None, max_length: int = 196) -> None:
        self.fps = fps
        self.max_length = max_length  # frames of one window
        self.default_frames = default_frames
        self.delay_s = delay_s
        self.sleep = time.sleep  # how a generation takes ``delay_s`` (a fake clock's in conductor tests)
        self.fail_on = fail_on
        self.calls: list[tuple[str, int, int | None]] = []
        self.continuations: list[tuple[str, int, int]] = []  # (text, at_frame, length)
        self.motions: list[dict] = []
        self.bundle_meta: dict = {}

    def _speed(self, text):
        return 0.5 + 0.02 * (len(text) % 20)

    def _walk(self, text, n, phase, heading, origin):
        if self.fail_on is not None and self.fail_on in text:
            raise ValueError(f"cannot generate {text!r}")
        if self.delay_s:
            self.sleep(self.delay_s)
        joints = synthetic_walk(n, fps=self.fps, speed=self._speed(text), phase=phase, heading=heading)
        joints[..., [0, 2]] += origin - joints[0, 0, [0, 2]]
        self.motions.append({"text": text, "phase": phase, "heading": heading})
        tokens = np.full((1, n // self.unit_length, 1), len(self.motions) - 1)
        return FakeResult(joints[None], np.array([n]), self.fps, tokens)

    def generate(self, texts, lengths=None, *, seed=None, **kwargs):
        text = texts[0]
        n = int(lengths[0]) if lengths is not None else self.default_frames
        self.calls.append((text, n, seed))
        phase = 0.0 if seed is None else (seed % 628) / 100.0
        return self._walk(text, n, phase, 0.0, np.zeros(2))

    def continue_motion(self, prev_tokens, prev_joints, at_frame, text, length, *, context_tokens=None, seed=None,
                        fast=True, cond=None, **kwargs):
        prev_tokens, prev_joints = np.asarray(prev_tokens), np.asarray(prev_joints)
        if at_frame % self.unit_length or not self.unit_length <= at_frame <= len(prev_joints):
            raise ValueError(f"at_frame {at_frame} is not a unit multiple in [4, {len(prev_joints)}]")
        if length % self.unit_length or prev_tokens.shape[0] * self.unit_length != len(prev_joints):
            raise ValueError("bad length or tokens")
        self.continuations.append((text, int(at_frame), int(length)))
        walk = self.motions[int(prev_tokens[min(at_frame // self.unit_length, len(prev_tokens) - 1), 0])]
        t = at_frame / self.fps
        phase = walk["phase"] + 2 * np.pi * 0.9 * t  # synthetic_walk's step_hz and turn_rate defaults
        heading = walk["heading"] + 0.3 * t
        last = prev_joints[min(at_frame, len(prev_joints) - 1)]
        if at_frame == len(prev_joints):  # queue: one frame past the end, extrapolated
            last = 2 * prev_joints[-1] - prev_joints[-2]
        return self._walk(text, int(length), phase, heading, last[0, [0, 2]])

    def iter_windows(self, texts, length, *, seed=None, **kwargs):
        """A walk longer than a window, window by window, each continuing the last from its end."""
        unit, done, k, window = self.unit_length, 0, 0, None
        while length - done >= unit:
            n = min(length - done, self.max_length) // unit * unit
            if window is None:
                window = self.generate(texts, [n], seed=seed)
            else:
                prev = window.joints[0]
                window = self.continue_motion(window.tokens[0], prev, len(prev), texts[0], n,
                                              seed=None if seed is None else seed + k)
            yield window
            done, k = done + n, k + 1

    def unknown_words(self, text):
        return [w for w in text.split() if w.lower() == "xyzzy"]


@dataclass
class FakeTrajectory:
    joint_names: list
    times_s: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    base_position: np.ndarray
    base_quat_wxyz: np.ndarray


def _angle(a, b, c):
    u, v = a - b, c - b
    cos = np.sum(u * v, -1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1) + 1e-9)
    return np.arccos(np.clip(cos, -1, 1))


class AngleRetargeter:
    """Joint angles from the human's knees and elbows (exaggerated x3 so limits are exercised)."""

    rate_hz = 20.0  # samples at the motion's own frame rate (the stand-in generators' 20 fps)

    joint_space = JointSpace(
        FAKE_JOINTS,
        lower=np.array([-0.1, -0.1, -1.0, -1.0, -0.5]),
        upper=np.array([1.2, 1.2, 1.0, 1.0, 0.5]),
        rest=np.array([0.1, 0.1, 0.2, 0.2, 0.0]),
    )

    def retarget(self, joints_yup, fps=20.0):
        j = np.asarray(joints_yup, dtype=np.float64)
        lk = 3 * (np.pi - _angle(j[:, 1], j[:, 4], j[:, 7]))
        rk = 3 * (np.pi - _angle(j[:, 2], j[:, 5], j[:, 8]))
        le = 3 * (np.pi - _angle(j[:, 16], j[:, 18], j[:, 20])) - 1.0
        re = 3 * (np.pi - _angle(j[:, 17], j[:, 19], j[:, 21])) - 1.0
        across = j[:, 1] - j[:, 2]
        waist = 0.8 * np.sin(np.arctan2(across[:, 2], across[:, 0]))  # continuous through +-pi
        q = np.stack([lk, rk, le, re, waist], axis=1)
        pelvis = np.stack([j[:, 0, 2], j[:, 0, 0], j[:, 0, 1]], axis=1)
        yaw = np.arctan2(-across[:, 2], across[:, 0])  # facing +z_h = +x_ros at yaw 0
        quat = np.stack([np.cos(yaw / 2), 0 * yaw, 0 * yaw, np.sin(yaw / 2)], axis=1)
        t = np.arange(len(j)) / fps
        vel = np.gradient(q, axis=0) * fps if len(q) > 1 else np.zeros_like(q)
        return FakeTrajectory(list(FAKE_JOINTS), t, q, vel, pelvis, quat)


class ChunkStream:
    """A streaming retargeter made of the batch one (frame-wise, so chunks join exactly)."""

    def __init__(self, retargeter, fps=20.0):
        self.r = retargeter
        self.fps = fps
        self.seen = 0

    def push(self, joints_yup):
        out = self.r.retarget(joints_yup, self.fps)
        out.times_s = out.times_s + self.seen / self.fps
        self.seen += len(joints_yup)
        return out

    def finish(self):
        out = self.r.retarget(np.zeros((0, 22, 3)), self.fps)
        return out

    def cut_time(self, frame):
        return frame / self.fps  # frame-wise: nothing before the switch changes

    def rewind(self, frame):
        self.seen = frame
        return self.cut_time(frame)


class TrickleStream(ChunkStream):
    """A streaming retargeter whose output lags: it gives out at most ``budget`` samples in all (the
    rest wait, as behind a real retargeter's look-ahead) until the budget is raised or it finishes."""

    def __init__(self, retargeter, fps=20.0, budget=1):
        super().__init__(retargeter, fps)
        self.budget = budget
        self.given = 0
        self._held = None

    def _gather(self, out):
        if self._held is not None:
            for name in self.FIELDS:
                setattr(out, name, np.concatenate([getattr(self._held, name), getattr(out, name)]))
        return out

    FIELDS = ("times_s", "positions", "velocities", "base_position", "base_quat_wxyz")

    def _split(self, out, n):
        keep = FakeTrajectory(out.joint_names, *(getattr(out, f)[:n] for f in self.FIELDS))
        self._held = FakeTrajectory(out.joint_names, *(getattr(out, f)[n:] for f in self.FIELDS))
        self.given += n
        return keep

    def push(self, joints_yup):
        out = self._gather(super().push(joints_yup))
        return self._split(out, max(0, min(len(out.times_s), self.budget - self.given)))

    def release(self):
        """Everything held so far (the budget is lifted)."""
        self.budget = 10**9
        out = self._gather(super().finish())
        return self._split(out, len(out.times_s))

    def finish(self):
        return self.release()
