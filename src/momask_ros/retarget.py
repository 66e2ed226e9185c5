"""Human joint positions (HumanML3D, Y-up, 20 fps) -> humanoid joint trajectories within limits.

Pipeline, per input frame, run incrementally so that batch and streaming give the same samples:

1. Axis conversion to Z-up (x_ros = z_h, y_ros = x_h, z_ros = y_h) and foot-contact detection
   (foot low and slow, from the human data only).
2. Scaling to the robot: per part (legs, torso, arms) by segment-length ratio, the root by the leg ratio,
   with a vertical offset so the standing pelvis height matches; feet in contact are planted on the floor.
3. Differential IK with mink on the MuJoCo model (frame tasks at keypoint sites, a small posture task,
   joint-limit and joint-velocity constraints, DAQP), warm-started from the previous frame, floating base
   solved with the joints under a strong pelvis task.
4. Temporal smoothing (binomial kernel over frames), then a floor pass that shifts the base vertically so
   no foot point is below z = 0 and feet in contact touch it.
5. Resampling to the control rate with a local cubic Hermite spline (centred-difference slopes, start and
   end kept); velocities are the spline's derivative.

Why the velocity guarantee holds without post-hoc jumps: the IK bounds every joint's step per input frame
to ``velocity_margin * v_max * dt``; smoothing (a convex combination of steps) and clipping to position
limits cannot enlarge a step; and a cubic Hermite piece whose slopes and secant are all bounded by s has
a derivative bounded by 2 s everywhere (|a(u)| + |b(u)| + c(u) <= 2 for the Hermite derivative basis).
With ``velocity_margin < 0.5`` every output velocity is inside its limit. Positions are clipped to limits
after interpolation (velocity set to 0 where the clip is active, as the clipped curve is flat there).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

import mink
import mujoco
import numpy as np
import qpsolvers
from scipy.spatial.transform import Rotation, Slerp

from .frames import human_yup_to_ros
from .robot import HUMAN_JOINT_NAMES, ProfileError, Robot
from .self_collision import collision_limit

logger = logging.getLogger(__name__)

J = {name: i for i, name in enumerate(HUMAN_JOINT_NAMES)}
_LEG_JOINTS = ("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_foot",
               "right_foot")
_ARM_JOINTS = {"left_elbow": "left_shoulder", "left_wrist": "left_shoulder",
               "right_elbow": "right_shoulder", "right_wrist": "right_shoulder"}
_SIDES = ("left", "right")


# ----------------------------------------------------------------------------------------------- helpers


yup_to_zup = human_yup_to_ros  # HumanML3D axes -> ROS/MuJoCo axes, a proper rotation (never a mirror)


def _check_joints(joints: np.ndarray, what: str = "joints_yup") -> np.ndarray:
    arr = np.asarray(joints, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (len(HUMAN_JOINT_NAMES), 3):
        raise ValueError(f"{what} must have shape (T, 22, 3), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{what} has a non-finite value at frame {bad[0]}, joint {HUMAN_JOINT_NAMES[bad[1]]}")
    return arr


def _unit(v: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 1e-9 else fallback


def _frame_from_left_up(left: np.ndarray, up_hint: np.ndarray) -> np.ndarray:
    """Rotation (columns x fwd, y left, z up) with y along `left` and z as close to `up_hint` as possible."""
    y = _unit(left, np.array([0.0, 1.0, 0.0]))
    x = _unit(_cross(y, up_hint), np.array([1.0, 0.0, 0.0]))
    return np.column_stack([x, y, _cross(x, y)])


def _yaw_pitch(yaw: float, pitch: float) -> np.ndarray:
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    return np.array([[cy * cp, -sy, cy * sp], [sy * cp, cy, sy * sp], [-sp, 0.0, cp]])


def _mat_to_quat(rot: np.ndarray) -> np.ndarray:
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(rot).ravel())
    return quat


def _binomial(radius: int) -> np.ndarray:
    w = np.array([math.comb(2 * radius, k) for k in range(2 * radius + 1)], float)
    return w / w.sum()


def _hermite(t0: float, h: float, p0, p1, m0, m1, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cubic Hermite value and derivative on [t0, t0 + h] for query times `t` (broadcast over columns)."""
    u = ((t - t0) / h)[:, None]
    u2, u3 = u * u, u * u * u
    pos = (2 * u3 - 3 * u2 + 1) * p0 + (u3 - 2 * u2 + u) * h * m0 + (-2 * u3 + 3 * u2) * p1 + (u3 - u2) * h * m1
    vel = ((6 * u2 - 6 * u) * p0 + (6 * u2 - 6 * u) * -p1) / h + (3 * u2 - 4 * u + 1) * m0 + (3 * u2 - 2 * u) * m1
    return pos, vel


def _hermite_max_speed(h: float, p0, p1, m0, m1) -> np.ndarray:
    """Exact max |derivative| of each column of a cubic Hermite piece (the derivative is a quadratic)."""
    delta = (p1 - p0) / h
    a = 3 * (m0 + m1 - 2 * delta)          # derivative: a u^2 + b u + c, u in [0, 1]
    b = 2 * (3 * delta - 2 * m0 - m1)
    best = np.maximum(np.abs(m0), np.abs(m1))
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(np.abs(a) > 1e-12, -b / (2 * a), -1.0)
    inside = (u > 0) & (u < 1)
    vertex = np.abs(a * u * u + b * u + m0)
    return np.where(inside, np.maximum(best, vertex), best)


# ----------------------------------------------------------------------------------------------- output


@dataclass
class RobotTrajectory:
    """A joint trajectory at the control rate plus the floating-base pose.

    Attributes:
        joint_names: driven joints, column order of `positions` / `velocities`.
        times_s: (N,) sample times [s] from the start of the motion.
        positions: (N, nj) [rad] (or [m] for slide joints), always within `position_limits`.
        velocities: (N, nj) derivative of the interpolating spline [rad/s], within `velocity_limits`.
        base_position: (N, 3) floating-base position in the world (Z up) [m].
        base_quat_wxyz: (N, 4) floating-base orientation, unit quaternion w, x, y, z.
        keypoint_error_m: (K,) per input frame covered, mean distance [m] between the robot's keypoints
            (forward kinematics) and the scaled human targets.
        max_penetration_m: deepest foot point below the floor over the samples [m] (0 = none).
        position_limits: (nj, 2) limits the samples respect, or None.
        velocity_limits: (nj,) limits the velocities respect, or None.
        foot_contacts: (N, 2) bool, left / right foot in contact as the retargeter detected it (the
            nearest input frame), or (0, 2) when unknown; the physical checks use it.
    """

    joint_names: tuple[str, ...]
    times_s: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    base_position: np.ndarray
    base_quat_wxyz: np.ndarray
    keypoint_error_m: np.ndarray = field(default_factory=lambda: np.zeros(0))
    max_penetration_m: float = 0.0
    position_limits: np.ndarray | None = None
    velocity_limits: np.ndarray | None = None
    foot_contacts: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), bool))

    def __len__(self) -> int:
        return len(self.times_s)

    @property
    def duration_s(self) -> float:
        """Time of the last sample minus the first (0 for fewer than two samples)."""
        return float(self.times_s[-1] - self.times_s[0]) if len(self.times_s) > 1 else 0.0

    @classmethod
    def empty(cls, joint_names: tuple[str, ...], **limits) -> "RobotTrajectory":
        nj = len(joint_names)
        return cls(tuple(joint_names), np.zeros(0), np.zeros((0, nj)), np.zeros((0, nj)), np.zeros((0, 3)),
                   np.zeros((0, 4)), **limits)

    @classmethod
    def concatenate(cls, parts: "list[RobotTrajectory]") -> "RobotTrajectory":
        """Join consecutive chunks (e.g. from `RetargetStream`) into one trajectory."""
        if not parts:
            raise ValueError("concatenate needs at least one trajectory")
        names = parts[0].joint_names
        for p in parts:
            if p.joint_names != names:
                raise ValueError(f"joint names differ between chunks: {p.joint_names} vs {names}")
        return cls(
            names, np.concatenate([p.times_s for p in parts]), np.concatenate([p.positions for p in parts]),
            np.concatenate([p.velocities for p in parts]), np.concatenate([p.base_position for p in parts]),
            np.concatenate([p.base_quat_wxyz for p in parts]),
            np.concatenate([p.keypoint_error_m for p in parts]), max(p.max_penetration_m for p in parts),
            parts[0].position_limits, parts[0].velocity_limits,
            np.concatenate([p.foot_contacts for p in parts]) if all(len(p.foot_contacts) == len(p) for p in parts)
            else np.zeros((0, 2), bool))


# ----------------------------------------------------------------------------------------------- resample


def _knot_slopes(times: np.ndarray | float, values: np.ndarray) -> np.ndarray:
    """Centred-difference slopes (one-sided at the ends): local, so chunked and batch runs agree.

    `times` is the knot times, or the uniform spacing [s].
    """
    if len(values) < 2:
        return np.zeros_like(values)
    return np.gradient(values, times, axis=0, edge_order=1)


def _slerp(times: np.ndarray, quats_wxyz: np.ndarray, query: np.ndarray) -> np.ndarray:
    if len(times) == 1:
        return np.repeat(quats_wxyz[:1], len(query), axis=0)
    rots = Rotation.from_quat(quats_wxyz[:, [1, 2, 3, 0]])
    out = Slerp(times, rots)(np.clip(query, times[0], times[-1])).as_quat()[:, [3, 0, 1, 2]]
    return out * np.where(out[:, :1] < 0, -1.0, 1.0)


def _sample_times(t_start: float, t_end: float, rate_hz: float) -> np.ndarray:
    """Grid t_start + i / rate up to t_end, with t_end itself appended when off the grid."""
    n = int(math.floor((t_end - t_start) * rate_hz + 1e-9))
    times = t_start + np.arange(n + 1) / rate_hz
    if t_end - times[-1] > 1e-9:
        times = np.append(times, t_end)
    return times


def resample(traj: RobotTrajectory, rate_hz: float) -> RobotTrajectory:
    """Resample a trajectory to `rate_hz` with cubic Hermite interpolation through its own samples.

    The first and last sample times are kept. The trajectory's velocities are the Hermite slopes, so a
    trajectory is reproduced at its own sample times. When the trajectory carries limits, positions are
    clipped to them and, should an interpolated piece exceed a velocity limit, time is stretched uniformly
    (time-scaling) until it does not: never a jump.

    Raises:
        ValueError: non-positive rate, or an empty trajectory.
    """
    if not (rate_hz > 0 and math.isfinite(rate_hz)):
        raise ValueError(f"rate_hz must be a positive number, got {rate_hz!r}")
    if len(traj) == 0:
        raise ValueError("cannot resample an empty trajectory")
    t = traj.times_s
    if len(t) == 1:
        return replace(traj)
    q, v = traj.positions, traj.velocities
    stretch = 1.0
    if traj.velocity_limits is not None:
        peak = max(float(np.max(_hermite_max_speed(t[k + 1] - t[k], q[k], q[k + 1], v[k], v[k + 1])
                                / traj.velocity_limits)) for k in range(len(t) - 1))
        if peak > 1.0:
            stretch = peak * (1 + 1e-9)
            logger.warning("resample: interpolation would exceed a velocity limit by %.3g x; "
                           "stretching time by that factor", peak)
    new_t = _sample_times(t[0], t[0] + (t[-1] - t[0]) * stretch, rate_hz)
    src_t = t[0] + (new_t - t[0]) / stretch
    src_t[-1] = t[-1]
    piece = np.clip(np.searchsorted(t, src_t, side="right") - 1, 0, len(t) - 2)
    pos = np.empty((len(new_t), q.shape[1]))
    vel = np.empty_like(pos)
    base = np.empty((len(new_t), 3))
    base_slopes = _knot_slopes(t, traj.base_position)
    for k in np.unique(piece):
        sel = piece == k
        h = t[k + 1] - t[k]
        pos[sel], vel[sel] = _hermite(t[k], h, q[k], q[k + 1], v[k], v[k + 1], src_t[sel])
        base[sel], _ = _hermite(t[k], h, traj.base_position[k], traj.base_position[k + 1],
                                base_slopes[k], base_slopes[k + 1], src_t[sel])
    vel /= stretch
    if traj.position_limits is not None:
        pos, vel = _clip_to_limits(pos, vel, traj.position_limits)
    contacts = traj.foot_contacts
    if len(contacts) == len(t):  # nearest original sample
        contacts = contacts[np.clip(np.searchsorted(t, src_t), 0, len(t) - 1)]
    return replace(traj, times_s=new_t, positions=pos, velocities=vel, base_position=base, foot_contacts=contacts,
                   base_quat_wxyz=_slerp(t, traj.base_quat_wxyz, src_t))


def _clip_to_limits(pos: np.ndarray, vel: np.ndarray, limits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    clipped = np.clip(pos, limits[:, 0], limits[:, 1])
    vel = np.where(clipped != pos, 0.0, vel)  # the clipped curve is flat where the clip is active
    return clipped, vel


# ----------------------------------------------------------------------------------------------- scaling


@dataclass(frozen=True)
class _Scaling:
    legs: float
    torso: float
    arms: float
    z_offset_m: float


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # np.cross costs ~10x more than this for single 3-vectors, and it runs several times per frame.
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _robot_rest_sites(robot: Robot) -> dict[str, np.ndarray]:
    data = robot.forward(robot.rest_qpos)
    return {kp.human: data.site_xpos[sid].copy() for kp, sid in zip(robot.keypoints, robot.keypoint_site_ids)}


def _robot_segment_lengths(robot: Robot) -> dict[str, float | None]:
    """Rest-pose lengths between keypoint sites: legs (hip-knee-ankle), arms, torso (hips-shoulders)."""
    site = _robot_rest_sites(robot)

    def chain(names: tuple[str, ...]) -> float | None:
        for side in _SIDES:
            full = [f"{side}_{n}" for n in names]
            if all(n in site for n in full):
                return float(sum(np.linalg.norm(site[a] - site[b]) for a, b in zip(full, full[1:])))
        return None

    hips = 0.5 * (site["left_hip"] + site["right_hip"]) if "left_hip" in site and "right_hip" in site else None
    torso = None
    if "left_shoulder" in site and "right_shoulder" in site:
        base = hips if hips is not None else site["pelvis"]
        torso = float(np.linalg.norm(base - 0.5 * (site["left_shoulder"] + site["right_shoulder"])))
    anchor = hips if hips is not None else site["pelvis"]
    return {"legs": chain(("hip", "knee", "ankle")), "arms": chain(("shoulder", "elbow", "wrist")), "torso": torso,
            "anchor_z": float(anchor[2])}


def _human_segment_lengths(j: np.ndarray, *, hips_anchor: bool) -> dict[str, float]:
    """Median segment lengths [m] of Z-up human frames (T, 22, 3)."""
    def seg(a: str, b: str) -> np.ndarray:
        return np.linalg.norm(j[:, J[a]] - j[:, J[b]], axis=-1)

    legs = np.median(np.concatenate([seg(f"{s}_hip", f"{s}_knee") + seg(f"{s}_knee", f"{s}_ankle") for s in _SIDES]))
    arms = np.median(np.concatenate([seg(f"{s}_shoulder", f"{s}_elbow") + seg(f"{s}_elbow", f"{s}_wrist")
                                     for s in _SIDES]))
    hips = 0.5 * (j[:, J["left_hip"]] + j[:, J["right_hip"]])
    base = hips if hips_anchor else j[:, J["pelvis"]]
    torso = np.median(np.linalg.norm(base - 0.5 * (j[:, J["left_shoulder"]] + j[:, J["right_shoulder"]]), axis=-1))
    drop = 0.0 if hips_anchor else np.median(j[:, J["pelvis"], 2] - hips[:, 2])
    return {"legs": float(legs), "arms": float(arms), "torso": float(torso), "anchor_above_hips": float(drop)}


# ----------------------------------------------------------------------------------------------- IK


class _IkSolver:
    """mink problem for one robot: keypoint frame tasks, posture, limits; keeps the warm-start state."""

    def __init__(self, robot: Robot, *, velocity_margin: float, damping: float, solver: str,
                 self_collision: bool = True) -> None:
        model = robot.model
        self.robot = robot
        self.configuration = mink.Configuration(model)
        self.tasks: list[mink.FrameTask] = []
        self.task_rows: list[int] = []
        data = robot.forward(robot.rest_qpos)
        self.site_rest_rot = []
        for i, (kp, sid) in enumerate(zip(robot.keypoints, robot.keypoint_site_ids)):
            self.site_rest_rot.append(data.site_xmat[sid].reshape(3, 3).copy())
            if kp.position_weight > 0 or kp.orientation_weight > 0:
                self.tasks.append(mink.FrameTask(kp.site_name, "site", position_cost=kp.position_weight,
                                                 orientation_cost=kp.orientation_weight, lm_damping=1.0))
                self.task_rows.append(i)
        self.posture = mink.PostureTask(model, cost=robot.profile.posture_weight)
        self.posture.set_target(robot.rest_qpos)
        self.all_tasks = [*self.tasks, self.posture]
        self.position_limit = [mink.ConfigurationLimit(model)]
        avoid = collision_limit(robot) if self_collision else None
        if avoid is not None:  # self-collision avoidance (momask_ros.self_collision)
            self.position_limit.append(avoid)
        self.avoid = avoid
        self.velocity_limits = [*self.position_limit, mink.VelocityLimit(
            model, {n: velocity_margin * v for n, v in zip(robot.joint_names, robot.velocity_limits)})]
        self.constraints = [mink.DofFreezingTask(model, robot.frozen_dofs)] if robot.frozen_dofs else []
        self.damping = damping
        self.solver = solver
        self.started = False

    def solve(self, targets_pos: np.ndarray, targets_rot: list[np.ndarray | None], *, dt: float,
              iterations: int, velocity_limited: bool) -> np.ndarray:
        """Move the warm-started configuration towards the targets; returns the new qpos (nq,)."""
        for task, row in zip(self.tasks, self.task_rows):
            rot = targets_rot[row]
            quat = _mat_to_quat(rot @ self.site_rest_rot[row]) if rot is not None else np.array([1.0, 0, 0, 0])
            task.set_target(mink.SE3(np.concatenate([quat, targets_pos[row]])))
        limits = self.velocity_limits if velocity_limited else self.position_limit
        start = self.configuration.q.copy()
        start_depth = self.avoid.deepest(self.configuration) if self.avoid is not None else 0.0
        step = dt / iterations
        for _ in range(iterations):
            # build_ik + solve directly: mink.solve_ik would also re-check limits every call, which costs
            # ~5% here and only logs (the QP's limit constraints already keep q inside).
            problem = mink.build_ik(self.configuration, self.all_tasks, step, self.damping, limits, self.constraints)
            result = qpsolvers.solve_problem(problem, solver=self.solver)
            if not result.found:
                raise mink.NoSolutionFound(self.solver)
            self.configuration.integrate_inplace(result.x / step, step)
        if self.avoid is not None and iterations < 16 and self.avoid.deepest(self.configuration) > start_depth + 1e-3:
            # a large step outran the linearised collision constraint: redo the frame in smaller steps
            self.configuration.update(start)
            return self.solve(targets_pos, targets_rot, dt=dt, iterations=4 * iterations,
                              velocity_limited=velocity_limited)
        return self.configuration.q.copy()

    def reset_base(self, position: np.ndarray, rot: np.ndarray) -> None:
        """Start from the rest pose with the base placed at a pose (first frame only)."""
        qpos = self.robot.rest_qpos.copy()
        b = self.robot.base_qpos_index
        qpos[b:b + 3] = position
        qpos[b + 3:b + 7] = _mat_to_quat(rot)
        self.configuration.update(qpos)


# ----------------------------------------------------------------------------------------------- stream


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
        self._ik = _IkSolver(self.robot, velocity_margin=retargeter.velocity_margin, damping=retargeter.damping,
                             solver=retargeter.solver, self_collision=retargeter.self_collision)
        self._data = mujoco.MjData(self.robot.model)
        self._pending: list[np.ndarray] = []     # Z-up human frames waiting for calibration
        self._scaling: _Scaling | None = None
        self._prev_human: np.ndarray | None = None
        self._anchor: list[np.ndarray | None] = [None, None]
        self._ik_q: list[np.ndarray] = []         # raw IK qpos per frame
        self._targets: list[np.ndarray] = []      # (K, 3) per frame
        self._contact: list[tuple[bool, bool]] = []
        self._after_frame: list[tuple] = []        # (human frame, foot anchors) after each IK step: rewind
        self._key_q: list[np.ndarray] = []        # smoothed + floor-corrected: driven joints
        self._key_base: list[np.ndarray] = []     # base position
        self._key_quat: list[np.ndarray] = []
        self._n_emitted_pieces = 0                # pieces [k, k+1] fully emitted
        self._next_sample = 0                     # index i of the next grid time i / rate
        self._finished = False
        self._kernel = _binomial(retargeter.smoothing)
        kp = self.robot.keypoints
        self._kp_index = {k.human: i for i, k in enumerate(kp)}
        self._tracked = np.array([k.position_weight > 0 for k in kp])
        data = self.robot.forward(self.robot.rest_qpos)
        self._rest_site = np.array([data.site_xpos[s] for s in self.robot.keypoint_site_ids])
        self._foot_rows = [self._kp_index.get(f"{s}_ankle") for s in _SIDES]
        self._hips_anchor = "left_hip" in self._kp_index and "right_hip" in self._kp_index
        self._shoulder_rows = (self._kp_index["left_shoulder"], self._kp_index["right_shoulder"]) \
            if "left_shoulder" in self._kp_index and "right_shoulder" in self._kp_index else None

    # -- public ---------------------------------------------------------------------------------------

    def push(self, joints_chunk_yup: np.ndarray) -> RobotTrajectory:
        """Add human frames (T, 22, 3) in HumanML3D axes; return the samples that are now final."""
        if self._finished:
            raise RuntimeError("push() after finish(); start a new stream")
        frames = yup_to_zup(_check_joints(joints_chunk_yup, "joints_chunk_yup"))
        if self._scaling is None:
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
        if self._scaling is not None or self._pending:
            raise RuntimeError("calibrate() must come before the first push()")
        frames = yup_to_zup(_check_joints(joints_yup, "joints_yup"))
        self._calibrate(frames[: self.rt.calibration_frames])

    @property
    def frames_pushed(self) -> int:
        return len(self._ik_q) + len(self._pending)

    def _kept(self, frame: int) -> tuple[int, int, int]:
        """(keyframes, spline pieces, grid samples) still valid when only frames [0, frame) remain."""
        keys = min(len(self._key_q), max(0, frame - self.rt.smoothing))  # smoothing looks r frames ahead
        pieces = min(self._n_emitted_pieces, max(0, keys - 2))           # a piece's end slope needs k + 2
        samples = int(math.floor(pieces * self.dt * self.rt.rate_hz - 1e-9)) + 1 if pieces else 0
        return keys, pieces, min(samples, self._next_sample)

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
        if self._scaling is None:
            self._pending = self._pending[:frame]
            return 0.0
        keys, pieces, samples = self._kept(frame)
        del self._ik_q[frame:], self._targets[frame:], self._contact[frame:], self._after_frame[frame:]
        del self._key_q[keys:], self._key_base[keys:], self._key_quat[keys:]
        self._n_emitted_pieces, self._next_sample = pieces, samples
        if frame == 0:
            self._ik.started, self._prev_human, self._anchor = False, None, [None, None]
        else:
            self._ik.configuration.update(self._ik_q[-1])
            human, anchors = self._after_frame[-1]
            self._prev_human = human
            self._anchor = [None if a is None else a.copy() for a in anchors]
        return samples / self.rt.rate_hz

    def finish(self) -> RobotTrajectory:
        """Flush the look-ahead and return the remaining samples, ending exactly at the last frame."""
        if self._finished:
            return self._empty()
        if self._scaling is None:
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
        human = _human_segment_lengths(frames_zup, hips_anchor=self._hips_anchor)
        robot = self.rt.robot_segments
        scale = {}
        for part in ("legs", "torso", "arms"):
            fixed = self.robot.profile.scale.get(part)
            if fixed is not None:
                scale[part] = fixed
            elif robot[part] is not None and human[part] > 1e-3:
                scale[part] = robot[part] / human[part]
            else:
                scale[part] = None
        if scale["legs"] is None:
            raise ProfileError("scale.legs is auto but the profile lacks hip/knee/ankle keypoints for one side")
        for part in ("torso", "arms"):
            if scale[part] is None:
                scale[part] = scale["legs"]
        # Standing height of the anchor (hip centre, else pelvis) maps onto the robot's at rest.
        standing = human["legs"] + human["anchor_above_hips"] + self.rt.ankle_rest_height_m
        z_offset = robot["anchor_z"] - scale["legs"] * standing
        self._scaling = _Scaling(scale["legs"], scale["torso"], scale["arms"], z_offset)
        logger.debug("retarget scaling for %s: %s", self.robot.profile.name, self._scaling)

    def _scaled_targets(self, p: np.ndarray, rot_pelvis: np.ndarray, rot_torso: np.ndarray) -> np.ndarray:
        """Keypoint targets (K, 3) in the robot world for one Z-up human frame.

        Each part is scaled about an anchor placed where the robot's own joint would be: the hip centre
        follows the human's (scaled by the leg ratio, standing height matched); the robot's pelvis and
        shoulders hang off it with the robot's rest offsets turned by the human pelvis / torso frames; legs,
        spine and arms are the human's offsets from those anchors, scaled per part. So a standing human
        maps onto the standing robot exactly, whatever the two bodies' proportions.
        """
        s = self._scaling
        rest = self._rest_site
        ix = self._kp_index
        if self._hips_anchor:
            human_anchor = 0.5 * (p[J["left_hip"]] + p[J["right_hip"]])
            robot_anchor_rest = 0.5 * (rest[ix["left_hip"]] + rest[ix["right_hip"]])
        else:
            human_anchor = p[J["pelvis"]]
            robot_anchor_rest = rest[ix["pelvis"]]
        anchor = s.legs * human_anchor + np.array([0.0, 0.0, s.z_offset_m])
        shoulders_h = 0.5 * (p[J["left_shoulder"]] + p[J["right_shoulder"]])
        if self._shoulder_rows is not None:
            shoulders_rest = 0.5 * (rest[self._shoulder_rows[0]] + rest[self._shoulder_rows[1]])
        out = np.empty((len(self.robot.keypoints), 3))
        for i, kp in enumerate(self.robot.keypoints):
            name = kp.human
            if name == "pelvis":
                out[i] = anchor + rot_pelvis @ (rest[i] - robot_anchor_rest)
            elif name in _ARM_JOINTS or name in ("left_shoulder", "right_shoulder"):
                sh = _ARM_JOINTS.get(name, name)
                sh_center = anchor + s.torso * (shoulders_h - human_anchor)
                if self._shoulder_rows is not None:
                    side_row = self._shoulder_rows[0 if sh.startswith("left") else 1]
                    sh_t = sh_center + rot_torso @ (rest[side_row] - shoulders_rest)
                else:
                    sh_t = anchor + s.torso * (p[J[sh]] - human_anchor)
                out[i] = sh_t + s.arms * (p[J[name]] - p[J[sh]]) if name in _ARM_JOINTS else sh_t
            elif name in _LEG_JOINTS:
                side = "left" if name.startswith("left") else "right"
                hip_row = ix.get(f"{side}_hip") if self._hips_anchor else None
                if hip_row is None:
                    out[i] = anchor + s.legs * (p[J[name]] - human_anchor)
                else:  # each leg hangs from the robot's own hip, not the human's narrower one
                    hip_t = anchor + rot_pelvis @ (rest[hip_row] - robot_anchor_rest)
                    out[i] = hip_t + s.legs * (p[J[name]] - p[J[f"{side}_hip"]])
            else:
                out[i] = anchor + s.torso * (p[J[name]] - human_anchor)
        return out

    def _human_contacts(self, p: np.ndarray) -> tuple[bool, bool]:
        prev = self._prev_human if self._prev_human is not None else p
        out = []
        for side in _SIDES:
            a, t = J[f"{side}_ankle"], J[f"{side}_foot"]
            speed = max(np.linalg.norm(p[a, :2] - prev[a, :2]), np.linalg.norm(p[t, :2] - prev[t, :2])) * self.fps
            low = p[t, 2] < self.rt.toe_rest_height_m + self.rt.contact_height_m or \
                p[a, 2] < self.rt.ankle_rest_height_m + self.rt.contact_height_m
            out.append(bool(low and speed < self.rt.contact_speed_mps))
        return out[0], out[1]

    def _human_rotations(self, p: np.ndarray, contacts: tuple[bool, bool]) -> dict[str, np.ndarray]:
        pelvis = _frame_from_left_up(p[J["left_hip"]] - p[J["right_hip"]], p[J["spine1"]] - p[J["pelvis"]])
        torso = _frame_from_left_up(p[J["left_shoulder"]] - p[J["right_shoulder"]], p[J["neck"]] - p[J["spine3"]])
        rots = {"pelvis": pelvis, "torso": torso}
        for k, side in enumerate(_SIDES):
            fwd = p[J[f"{side}_foot"]] - p[J[f"{side}_ankle"]]
            horiz = float(np.hypot(fwd[0], fwd[1]))
            yaw = math.atan2(fwd[1], fwd[0]) if horiz > 1e-6 else math.atan2(pelvis[1, 0], pelvis[0, 0])
            pitch = 0.0 if contacts[k] else math.atan2(-fwd[2], horiz) - self.rt.foot_rest_pitch_rad
            rots[f"{side}_foot"] = _yaw_pitch(yaw, float(np.clip(pitch, -1.0, 1.0)))
        return rots

    def _ik_step(self, p: np.ndarray) -> None:
        contacts = self._human_contacts(p)
        self._prev_human = p
        rots = self._human_rotations(p, contacts)
        targets = self._scaled_targets(p, rots["pelvis"], rots["torso"])
        # Feet: never below their rest height; planted (held in place) while in contact.
        for k, row in enumerate(self._foot_rows):
            if row is None:
                continue
            floor_z = self._rest_site[row, 2]
            targets[row, 2] = max(targets[row, 2], floor_z)
            if contacts[k]:
                anchor = self._anchor[k]
                if anchor is None or np.linalg.norm(anchor[:2] - targets[row, :2]) > self.rt.replant_distance_m:
                    anchor = targets[row].copy()
                self._anchor[k] = anchor
                targets[row] = (anchor[0], anchor[1], floor_z)
            else:
                self._anchor[k] = None
        rot_targets = [rots[kp.orientation] if kp.orientation else None for kp in self.robot.keypoints]
        ik = self._ik
        if not ik.started:
            pelvis_row = self._kp_index["pelvis"]
            base_rot = rots["pelvis"]
            offset = self._rest_site[pelvis_row] - self.robot.rest_qpos[self.robot.base_qpos_index:][:3]
            ik.reset_base(targets[pelvis_row] - base_rot @ offset, base_rot)
            q = ik.solve(targets, rot_targets, dt=self.dt, iterations=self.rt.first_frame_iterations,
                         velocity_limited=False)
            ik.started = True
        else:
            q = ik.solve(targets, rot_targets, dt=self.dt, iterations=self.rt.iterations, velocity_limited=True)
        self._ik_q.append(q)
        self._targets.append(targets)
        self._contact.append(contacts)
        self._after_frame.append((p, [None if a is None else a.copy() for a in self._anchor]))

    def _advance(self, *, final: bool) -> None:
        """Smooth + floor-correct every frame whose smoothing window is complete."""
        r = self.rt.smoothing
        n = len(self._ik_q)
        ready = n if final else n - r
        robot = self.robot
        b = robot.base_qpos_index
        lims = robot.position_limits
        while len(self._key_q) < ready:
            k = len(self._key_q)
            idx = np.clip(np.arange(k - r, k + r + 1), 0, n - 1)
            window = np.array([self._ik_q[i] for i in idx])
            w = self._kernel
            joints = np.clip(w @ window[:, robot.qpos_index], lims[:, 0], lims[:, 1])
            base = w @ window[:, b:b + 3]
            quats = window[:, b + 3:b + 7]
            quats = quats * np.where(quats @ quats[r] < 0, -1.0, 1.0)[:, None]
            quat = w @ quats
            quat /= np.linalg.norm(quat)
            qpos = robot.full_qpos(joints, base, quat)
            if self._ik.avoid is not None:  # smoothing must not undo the IK's self-collision avoidance
                qpos = self._ik.avoid.least_smoothing(self._ik_q[k], qpos, robot.qpos_index, b)
                joints, base, quat = qpos[robot.qpos_index], qpos[b:b + 3], qpos[b + 3:b + 7]
            if self._key_q:  # keep each step within the velocity budget whatever the blend did (module doc)
                budget = self.rt.velocity_margin * robot.velocity_limits * self.dt
                joints = np.clip(joints, self._key_q[-1] - budget, self._key_q[-1] + budget)
                qpos = robot.full_qpos(joints, base, quat)
            data = robot.forward(qpos, self._data)
            feet = robot.foot_points_z(data)
            contacts = self._contact[k]
            in_contact = [z for z, c in zip(feet, contacts) if c]
            if in_contact:
                dz = max(-min(in_contact), -self.rt.max_floor_pull_m, -min(feet))
            else:
                dz = max(0.0, -min(feet))
            base = base + np.array([0.0, 0.0, dz])
            self._key_q.append(joints)
            self._key_base.append(base)
            self._key_quat.append(quat)

    def _keypoint_errors(self, lo: int, hi: int) -> np.ndarray:
        out = np.empty(max(0, hi - lo))
        for i, k in enumerate(range(lo, hi)):
            data = self.robot.forward(self.robot.full_qpos(self._key_q[k], self._key_base[k], self._key_quat[k]),
                                      self._data)
            pts = data.site_xpos[self.robot.keypoint_site_ids]
            out[i] = np.linalg.norm(pts - self._targets[k], axis=-1)[self._tracked].mean()
        return out

    def _emit(self, *, final: bool) -> RobotTrajectory:
        """Sample every spline piece whose end slopes are known (piece k needs keyframe k + 2)."""
        nk = len(self._key_q)
        last_piece = nk - 1 if final else nk - 2     # exclusive: pieces [k, k+1] for k < last_piece
        first_piece = self._n_emitted_pieces
        rate = self.rt.rate_hz
        robot = self.robot
        if nk == 0 or (last_piece <= first_piece and not (final and nk >= 1)):
            return self._empty()
        t_end_piece = last_piece * self.dt
        t_last = (nk - 1) * self.dt
        # grid indices i with t_i < t_end_piece (final: <= t_last, plus t_last appended)
        i_stop = int(math.floor(t_end_piece * rate - 1e-9)) + 1 if not final else \
            int(math.floor(t_last * rate + 1e-9)) + 1
        times = np.arange(self._next_sample, max(self._next_sample, i_stop)) / rate
        if final and (len(times) == 0 or t_last - times[-1] > 1e-9):
            times = np.append(times, t_last)   # earlier chunks stop >= 2 frames before the end
        self._next_sample = max(self._next_sample, i_stop)
        key_t = np.arange(nk) * self.dt
        lo = max(0, first_piece - 1)
        hi = min(nk, max(last_piece, first_piece) + 2)
        kq = np.array(self._key_q[lo:hi])
        kb = np.array(self._key_base[lo:hi])
        slopes_q = _knot_slopes(self.dt, kq)
        slopes_b = _knot_slopes(self.dt, kb)
        nj = len(robot.joint_names)
        pos = np.empty((len(times), nj))
        vel = np.empty_like(pos)
        base = np.empty((len(times), 3))
        if nk == 1:
            pos[:] = kq[0]
            vel[:] = 0.0
            base[:] = kb[0]
        else:
            piece = np.clip(np.floor(times / self.dt + 1e-9).astype(int), 0, nk - 2)
            for k in np.unique(piece):
                sel = piece == k
                a, c = k - lo, k + 1 - lo
                pos[sel], vel[sel] = _hermite(key_t[k], self.dt, kq[a], kq[c], slopes_q[a], slopes_q[c], times[sel])
                base[sel], _ = _hermite(key_t[k], self.dt, kb[a], kb[c], slopes_b[a], slopes_b[c], times[sel])
        pos, vel = _clip_to_limits(pos, vel, robot.position_limits)
        quat = _slerp(key_t[lo:hi], np.array(self._key_quat[lo:hi]), times) if len(times) else np.zeros((0, 4))
        penetration = 0.0
        for i in range(len(times)):
            data = robot.forward(robot.full_qpos(pos[i], base[i], quat[i]), self._data)
            penetration = max(penetration, -robot.lowest_foot_z(data))
        err_hi = nk if final else max(first_piece, last_piece)
        errors = self._keypoint_errors(first_piece, err_hi)
        self._n_emitted_pieces = max(first_piece, last_piece) if not final else nk
        nearest = np.clip(np.rint(times / self.dt).astype(int), 0, nk - 1)
        contacts = np.array([self._contact[k] for k in nearest], bool).reshape(-1, 2)
        return RobotTrajectory(robot.joint_names, times, pos, vel, base, quat, errors, max(0.0, penetration),
                               robot.position_limits, robot.velocity_limits, contacts)


# ----------------------------------------------------------------------------------------------- public


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
            (`momask_ros.self_collision`); False, or ``enabled: false`` in the profile, turns it off.
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
        self.robot_segments = _robot_segment_lengths(robot)

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
        joints = _check_joints(joints_yup)
        stream = self.stream(fps)
        return RobotTrajectory.concatenate([stream.push(joints), stream.finish()])
