"""Could a robot actually do this motion? Physical checks of a retargeted trajectory (pure functions).

For each sample of a `RobotTrajectory` (or plain arrays):

* **torques**: MuJoCo inverse dynamics (``mj_inverse``, constraints off) gives the generalised forces
  the motion needs; the floating base's six must come from the floor, so contact forces at the corners
  of the feet in contact are solved for (a small QP: unilateral, friction pyramid, least squares on the
  base wrench) and the joints supply the rest. Each joint's peak |torque| / effort limit
  (`momask_ros.robot.actuation`) and the samples over the limit are reported. The base wrench the feet cannot
  supply (flight, or a motion that would need the floor to pull) is reported as unsupported force.
* **balance**: the zero-moment point from the same base wrench, against the convex hull of the contact
  feet's sole corners: the fraction of supported samples with the ZMP inside and the worst distance out.
  A sample is supported when a foot is in contact and the floor must push up with at least
  `MIN_SUPPORT_FRACTION` of the weight (below that the ZMP is ill-defined: it diverges as the force -> 0).
  Without a supported sample (no foot contact found) balance is *not evaluated*: no fraction, no pass.
* **feet**: horizontal sliding of feet in contact [mm per sample] and floor penetration [m].
* **self-collision**: the deepest penetration between counted geom pairs (`momask_ros.robot.self_collision`).

Foot contacts are those the retargeter detected (``traj.foot_contacts``); without them a foot counts as
in contact when its lowest point is within `CONTACT_HEIGHT_M` of the floor and it moves slower than
`CONTACT_SPEED_MPS` (the retargeter's floor pass puts contact feet exactly on z = 0, so the two agree).
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import mujoco
import numpy as np
import qpsolvers
from scipy.spatial import ConvexHull

from momask_ros.retarget.trajectory import RobotTrajectory
from momask_ros.robot.actuation import robot_actuation
from momask_ros.robot.model import Robot
from momask_ros.robot.self_collision import Penetration, SelfCollisionMeter

GRAVITY = 9.81
CONTACT_HEIGHT_M = 0.01
CONTACT_SPEED_MPS = 0.3
MIN_SUPPORT_FRACTION = 0.2

#: What a torque or balance failure means, said where the user first meets it (the ``physical`` status).
KINEMATIC_NOTE = ("expected for kinematic motion: torque and ZMP are what following this human-derived reference "
                  "exactly would take; a position-controlled robot's own controller (or a tracking policy) "
                  "adapts it, so this flags motions to review or to run through a controller, not a fault")
BALANCE_NOT_EVALUATED = "balance not evaluated: no foot contact found (no sample has a foot carrying the weight)"


@dataclass(frozen=True)
class Thresholds:
    """When a motion fails the checks (`momask-check` thresholds; a safety gate uses these).

    Attributes:
        max_torque_ratio: peak |torque| / effort limit allowed on any joint.
        min_zmp_inside: fraction of supported samples whose ZMP must lie in the support polygon.
        max_zmp_outside_m: how far outside the support polygon the ZMP may ever go [m].
        max_self_penetration_m: deepest self-penetration allowed [m].
    """

    max_torque_ratio: float = 1.0
    min_zmp_inside: float = 0.8
    max_zmp_outside_m: float = 0.10
    max_self_penetration_m: float = 0.01


@dataclass
class PhysicalReport:
    """Result of `check_motion` (units in the names; ratios are |torque| / effort limit)."""

    robot: str
    samples: int
    duration_s: float
    joint_names: tuple[str, ...]
    effort_limits: np.ndarray
    peak_torque: np.ndarray                   # (nj,) [N m]
    peak_torque_ratio: np.ndarray             # (nj,)
    samples_over_limit: np.ndarray            # (nj,) int
    supported_samples: int
    zmp_inside_fraction: float                # nan when balance is not evaluated (no supported sample)
    zmp_worst_outside_m: float
    max_unsupported_force_n: float
    foot_slide_max_mm: float
    foot_slide_mean_mm: float
    floor_penetration_m: float
    self_collision: Penetration
    zmp_xy: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 2)))
    torques: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))

    @property
    def balance_evaluated(self) -> bool:
        """Whether any sample was supported (a foot in contact carrying the weight), so the ZMP means something."""
        return self.supported_samples > 0

    def not_evaluated(self) -> list[str]:
        """The checks that had nothing to judge (empty = all were evaluated)."""
        return [] if self.balance_evaluated else [BALANCE_NOT_EVALUATED]

    @property
    def worst_joint(self) -> str:
        return self.joint_names[int(np.argmax(self.peak_torque_ratio))] if len(self.joint_names) else ""

    def failures(self, limits: Thresholds = Thresholds()) -> list[str]:
        """Why the motion fails the thresholds (empty = passes)."""
        out = []
        ratio = float(self.peak_torque_ratio.max()) if len(self.peak_torque_ratio) else 0.0
        if ratio > limits.max_torque_ratio:
            over = [n for n, r in zip(self.joint_names, self.peak_torque_ratio) if r > limits.max_torque_ratio]
            out.append(f"torque {ratio:.2f}x the effort limit of {self.worst_joint} "
                       f"({len(over)} joint(s) over {limits.max_torque_ratio:g}x)")
        if self.supported_samples and self.zmp_inside_fraction < limits.min_zmp_inside:
            out.append(f"balance: ZMP inside the support polygon in {100 * self.zmp_inside_fraction:.0f}% of "
                       f"supported samples (< {100 * limits.min_zmp_inside:.0f}%)")
        if self.zmp_worst_outside_m > limits.max_zmp_outside_m:
            out.append(f"balance: ZMP {self.zmp_worst_outside_m:.3f} m outside the support polygon "
                       f"(> {limits.max_zmp_outside_m:g} m)")
        if self.self_collision.depth_m > limits.max_self_penetration_m:
            out.append(f"self-collision {1000 * self.self_collision.depth_m:.1f} mm ({self.self_collision.pair})")
        return out

    def summary(self, limits: Thresholds = Thresholds()) -> dict[str, Any]:
        """A compact JSON-friendly record (the node's status carries it).

        ``ok`` is true when no evaluated check fails; ``not_evaluated`` lists the checks with nothing to
        judge (``zmp_inside_fraction`` is then null); ``note`` says what a torque or balance failure means.
        """
        failures = self.failures(limits)
        out = {
            "ok": not failures,
            "failures": failures,
            "not_evaluated": self.not_evaluated(),
            "peak_torque_ratio": round(float(self.peak_torque_ratio.max()), 3) if len(self.joint_names) else 0.0,
            "worst_joint": self.worst_joint,
            "joints_over_limit": int(np.sum(self.samples_over_limit > 0)),
            "zmp_inside_fraction": round(self.zmp_inside_fraction, 3) if self.balance_evaluated else None,
            "zmp_worst_outside_m": round(self.zmp_worst_outside_m, 4),
            "foot_slide_max_mm": round(self.foot_slide_max_mm, 2),
            "floor_penetration_m": round(self.floor_penetration_m, 4),
            "self_penetration_m": round(self.self_collision.depth_m, 4),
            "self_collision_pair": self.self_collision.pair,
        }
        if any(f.startswith(("torque", "balance")) for f in failures):
            out["note"] = KINEMATIC_NOTE
        return out

    def as_dict(self) -> dict[str, Any]:
        """Everything, per joint included (for ``momask-check --json``)."""
        out = self.summary()
        out.update(robot=self.robot, samples=self.samples, duration_s=self.duration_s,
                   supported_samples=self.supported_samples, max_unsupported_force_n=self.max_unsupported_force_n,
                   foot_slide_mean_mm=self.foot_slide_mean_mm, self_collision=asdict(self.self_collision),
                   joints={n: {"effort_limit_nm": float(e), "peak_torque_nm": float(t), "peak_ratio": float(r),
                               "samples_over_limit": int(k)}
                           for n, e, t, r, k in zip(self.joint_names, self.effort_limits, self.peak_torque,
                                                    self.peak_torque_ratio, self.samples_over_limit)})
        return out


# ----------------------------------------------------------------------------------------------- geometry


def _polygon_distance(point: np.ndarray, hull_xy: np.ndarray) -> float:
    """Distance [m] from a point to a convex polygon (CCW vertices); 0 inside."""
    n = len(hull_xy)
    if n == 1:
        return float(np.linalg.norm(point - hull_xy[0]))
    inside = True
    best = math.inf
    for i in range(n):
        a, b = hull_xy[i], hull_xy[(i + 1) % n]
        edge, rel = b - a, point - a
        if edge[0] * rel[1] - edge[1] * rel[0] < -1e-12:
            inside = False
        u = float(np.clip(rel @ edge / max(edge @ edge, 1e-18), 0.0, 1.0))
        best = min(best, float(np.linalg.norm(rel - u * edge)))
    return 0.0 if inside and n >= 3 else best


def _convex_hull(points_xy: np.ndarray) -> np.ndarray:
    try:
        return points_xy[ConvexHull(points_xy).vertices]
    except Exception:  # degenerate (collinear) sole points: fall back to the points themselves
        return points_xy


def _sole_points(robot: Robot) -> list[np.ndarray]:
    """Per foot, the (4, 3) lowest corners of its bounding box in the body frame (the sole)."""
    out = []
    for k in range(2):
        pts = robot.foot_points_body[k]
        out.append(pts[np.argsort(pts[:, 2])[:4]])
    return out


# ----------------------------------------------------------------------------------------------- checks


class MotionChecker:
    """Physical checks for one robot; build once, `check` many motions (keeps its own model copy)."""

    def __init__(self, robot: Robot, *, friction: float = 0.8) -> None:
        self.robot = robot
        self.model = copy.deepcopy(robot.model)
        self.model.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_CONSTRAINT)
        self.data = mujoco.MjData(self.model)
        self.actuation = robot_actuation(robot)
        self.friction = float(friction)
        self.meter = SelfCollisionMeter.for_robot(robot)
        self.soles = _sole_points(robot)
        self.mass = float(mujoco.mj_getTotalmass(self.model))
        b = robot.model.jnt_dofadr[robot.base_joint_id]
        self.base_dofs = np.arange(b, b + 6)

    def _qpos(self, positions, base_position, base_quat) -> np.ndarray:
        robot = self.robot
        return np.array([robot.full_qpos(p, b, q) for p, b, q in zip(positions, base_position, base_quat)])

    def _derivatives(self, times: np.ndarray, qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m, n = self.model, len(times)
        diffs = np.zeros((max(n - 1, 0), m.nv))
        for k in range(n - 1):
            mujoco.mj_differentiatePos(m, diffs[k], float(times[k + 1] - times[k]), qpos[k], qpos[k + 1])
        if n < 2:
            return np.zeros((n, m.nv)), np.zeros((n, m.nv))
        # velocity at samples: average of the neighbouring secants; acceleration: their difference
        qvel = np.zeros((n, m.nv))
        qvel[0], qvel[-1] = diffs[0], diffs[-1]
        qvel[1:-1] = 0.5 * (diffs[:-1] + diffs[1:])
        qacc = np.zeros((n, m.nv))
        if n > 2:
            span = (times[2:] - times[:-2])[:, None]
            qacc[1:-1] = (diffs[1:] - diffs[:-1]) / (0.5 * span)
            qacc[0], qacc[-1] = qacc[1], qacc[-2]
        return qvel, qacc

    def _detect_contacts(self, qpos: np.ndarray, times: np.ndarray) -> np.ndarray:
        robot, data = self.robot, mujoco.MjData(self.robot.model)
        low = np.zeros((len(qpos), 2), bool)
        xy = np.zeros((len(qpos), 2, 2))
        for k, q in enumerate(qpos):
            robot.forward(q, data)
            low[k] = np.array(robot.foot_points_z(data)) < CONTACT_HEIGHT_M
            xy[k] = data.xpos[list(robot.foot_body_ids), :2]
        speed = np.zeros((len(qpos), 2))
        if len(qpos) > 1:
            speed[1:] = np.linalg.norm(np.diff(xy, axis=0), axis=-1) / np.diff(times)[:, None]
            speed[0] = speed[1]
        return low & (speed < CONTACT_SPEED_MPS)

    def _contact_forces(self, contacts: tuple[bool, bool], base_wrench: np.ndarray) -> tuple[np.ndarray, list]:
        """Contact forces (P, 3) at sole corners of contact feet best producing the base wrench, and points."""
        m, d = self.model, self.data
        points, jacs = [], []
        jac = np.zeros((3, m.nv))
        for k, on in enumerate(contacts):
            if not on:
                continue
            body = self.robot.foot_body_ids[k]
            rot = d.xmat[body].reshape(3, 3)
            for p in self.soles[k]:
                world = d.xpos[body] + rot @ p
                mujoco.mj_jac(m, d, jac, None, world, body)
                points.append(world)
                jacs.append(jac[:, self.base_dofs].copy())
        if not points:
            return np.zeros((0, 3)), points
        A = np.concatenate(jacs, axis=0).T          # (6, 3P): base wrench from point forces
        n = A.shape[1]
        scale = self.mass * GRAVITY
        P = A.T @ A + 1e-6 * np.eye(n)
        q = -A.T @ (base_wrench / scale)
        mu = self.friction
        G = np.zeros((5 * len(points), n))
        for i in range(len(points)):
            rows = G[5 * i:5 * i + 5]
            rows[0, 3 * i:3 * i + 3] = (1, 0, -mu)
            rows[1, 3 * i:3 * i + 3] = (-1, 0, -mu)
            rows[2, 3 * i:3 * i + 3] = (0, 1, -mu)
            rows[3, 3 * i:3 * i + 3] = (0, -1, -mu)
            rows[4, 3 * i:3 * i + 3] = (0, 0, -1)
        sol = qpsolvers.solve_qp(P, q, G, np.zeros(len(G)), solver="daqp")
        f = np.zeros(n) if sol is None else sol * scale
        return f.reshape(-1, 3), points

    def check(self, times_s, positions, base_position, base_quat_wxyz, foot_contacts=None) -> PhysicalReport:
        """Run every check on a trajectory (arrays as in `RobotTrajectory`; contacts (N, 2) or None)."""
        robot, m, d = self.robot, self.model, self.data
        times = np.asarray(times_s, float).reshape(-1)
        positions = np.asarray(positions, float)
        n, nj = len(times), len(robot.joint_names)
        if positions.shape != (n, nj) or n == 0:
            raise ValueError(f"positions must be ({n}, {nj}) for {robot.profile.name}, got {positions.shape}")
        qpos = self._qpos(positions, np.asarray(base_position, float), np.asarray(base_quat_wxyz, float))
        if not np.all(np.isfinite(qpos)):
            raise ValueError("trajectory has non-finite values")
        contacts = None if foot_contacts is None else np.asarray(foot_contacts, bool).reshape(-1, 2)
        if contacts is None or len(contacts) != n:
            contacts = self._detect_contacts(qpos, times)
        qvel, qacc = self._derivatives(times, qpos)
        torques = np.zeros((n, nj))
        zmp = np.full((n, 2), np.nan)
        inside, supported, worst_out, unsupported = 0, 0, 0.0, 0.0
        feet_xy = np.zeros((n, 2, 2))
        lowest = 0.0
        anchor = robot.base_joint_id
        for k in range(n):
            d.qpos[:], d.qvel[:], d.qacc[:] = qpos[k], qvel[k], qacc[k]
            mujoco.mj_inverse(m, d)
            tau = d.qfrc_inverse.copy()
            wrench = tau[self.base_dofs]
            forces, points = self._contact_forces(tuple(contacts[k]), wrench)
            jac = np.zeros((3, m.nv))
            for f, p, body in zip(forces, points, self._point_bodies(contacts[k])):
                mujoco.mj_jac(m, d, jac, None, p, body)
                tau -= jac.T @ f
            torques[k] = tau[robot.dof_index]
            unsupported = max(unsupported, float(np.linalg.norm(tau[self.base_dofs[:3]])))
            feet_xy[k] = d.xpos[list(robot.foot_body_ids), :2]
            lowest = min(lowest, robot.lowest_foot_z(d))
            force = wrench[:3]
            if force[2] > MIN_SUPPORT_FRACTION * self.mass * GRAVITY and contacts[k].any():
                origin = d.xanchor[anchor]
                moment = d.xmat[robot.base_body_id].reshape(3, 3) @ wrench[3:]
                px = origin[0] - (moment[1] + origin[2] * force[0]) / force[2]
                py = origin[1] + (moment[0] - origin[2] * force[1]) / force[2]
                zmp[k] = (px, py)
                sole = np.concatenate([(d.xpos[robot.foot_body_ids[s]] + self.soles[s] @ d.xmat[robot.foot_body_ids[s]]
                                        .reshape(3, 3).T)[:, :2] for s in range(2) if contacts[k][s]])
                out = _polygon_distance(zmp[k], _convex_hull(sole))
                supported += 1
                inside += out <= 1e-9
                worst_out = max(worst_out, out)
        effort = self.actuation.effort
        ratio = np.abs(torques) / effort
        both = contacts[1:] & contacts[:-1]
        slides = np.linalg.norm(np.diff(feet_xy, axis=0), axis=-1)[both] * 1000.0 if n > 1 else np.zeros(0)
        return PhysicalReport(
            robot=robot.profile.name, samples=n, duration_s=float(times[-1] - times[0]), joint_names=robot.joint_names,
            effort_limits=effort, peak_torque=np.abs(torques).max(axis=0), peak_torque_ratio=ratio.max(axis=0),
            samples_over_limit=(ratio > 1.0).sum(axis=0), supported_samples=supported,
            zmp_inside_fraction=inside / supported if supported else math.nan, zmp_worst_outside_m=worst_out,
            max_unsupported_force_n=unsupported,
            foot_slide_max_mm=float(slides.max()) if len(slides) else 0.0,
            foot_slide_mean_mm=float(slides.mean()) if len(slides) else 0.0,
            floor_penetration_m=max(0.0, -lowest), self_collision=self.meter.deepest(qpos), zmp_xy=zmp, torques=torques)

    def _point_bodies(self, contacts) -> list[int]:
        return [self.robot.foot_body_ids[k] for k, on in enumerate(contacts) if on for _ in range(4)]

    def check_trajectory(self, traj) -> PhysicalReport:
        """`check` on a `RobotTrajectory` with the retargeter's foot contacts."""
        return self.check(traj.times_s, traj.positions, traj.base_position, traj.base_quat_wxyz,
                          getattr(traj, "foot_contacts", None))


def check_motion(robot: Robot, traj) -> PhysicalReport:
    """One-shot `MotionChecker(robot).check_trajectory(traj)`."""
    return MotionChecker(robot).check_trajectory(traj)


class Retargets(Protocol):
    """What the gate needs of a retargeter (`momask_ros.retarget.Retargeter` or a test stand-in)."""

    def retarget(self, joints_yup: np.ndarray, fps: float) -> RobotTrajectory: ...


class MotionGate:
    """The node's physical gate (parameter ``physical_checks``): retarget a generated motion on its own
    and check it, so a motion can be refused before any of it plays. No ROS here.

    The check retargets the human motion from the rest pose in one call (not from the state of a playing
    clip a continuation joins), which is what the robot plays up to the first few frames of a join.
    """

    def __init__(self, retargeter: "Retargets") -> None:
        self.retargeter = retargeter
        robot = getattr(retargeter, "robot", None)
        self._robot = robot if isinstance(robot, Robot) else None
        self._checker: MotionChecker | None = None

    @property
    def available(self) -> bool:
        """A robot model to check on (False for retargeters without one: the gate passes everything)."""
        return self._robot is not None

    def summary(self, joints_yup: np.ndarray, fps: float, limits: Thresholds = Thresholds()) -> dict[str, Any] | None:
        """`PhysicalReport.summary` of the motion (None without a robot model)."""
        if self._robot is None:
            return None
        if self._checker is None:
            self._checker = MotionChecker(self._robot)
        traj = self.retargeter.retarget(joints_yup, fps)
        return self._checker.check_trajectory(traj).summary(limits)


@dataclass(frozen=True)
class WindowDecision:
    """What the node does with one generated window of a command (`window_decision`).

    Attributes:
        play: queue the window for retargeting and playing.
        refuse_job: the whole command is refused (its first window failed): nothing of it plays.
        status: fields of the ``rejected`` status to publish now, or None.
        entry: the window's line in the job's ``physical_windows`` status field, or None (unchecked).
    """

    play: bool
    refuse_job: bool = False
    status: dict[str, Any] | None = None
    entry: dict[str, Any] | None = None


def window_decision(mode: str, window: int, summary: dict[str, Any] | None, *, start_s: float) -> WindowDecision:
    """The gate's verdict on window ``window`` (0 = the command's first) starting ``start_s`` into the
    motion, from its `PhysicalReport.summary` (None: not checked) under ``physical_checks`` ``mode``.

    warn and off always play; reject refuses the command when its first window fails, and cuts it
    where a later window begins when that one fails (the windows before it play to their end, so the
    robot is never stopped mid-window by the gate): both say so in a ``rejected`` status.
    """
    if mode == "off" or summary is None:
        return WindowDecision(True)
    entry = {"window": int(window), "start_s": round(float(start_s), 3), "ok": bool(summary["ok"]),
             "failures": list(summary["failures"]), "peak_torque_ratio": summary["peak_torque_ratio"],
             "zmp_inside_fraction": summary["zmp_inside_fraction"], "self_penetration_m": summary["self_penetration_m"]}
    if summary["ok"] or mode != "reject":
        return WindowDecision(True, entry=entry)
    status = {"reason": "physically_infeasible", "physical": summary, "detail": "; ".join(summary["failures"])[:300]}
    if window == 0:
        return WindowDecision(False, refuse_job=True, status=status, entry=entry)
    return WindowDecision(False, status={**status, "window": int(window), "stops_at_s": round(float(start_s), 3)},
                          entry=entry)


def thresholds_from(params: Any) -> Thresholds:
    """`Thresholds` from the node's ``physical_*`` parameters (a mapping by name)."""
    return Thresholds(max_torque_ratio=float(params["physical_max_torque_ratio"]),
                      min_zmp_inside=float(params["physical_min_zmp_inside"]),
                      max_zmp_outside_m=float(params["physical_max_zmp_outside_m"]),
                      max_self_penetration_m=float(params["physical_max_self_penetration_m"]))
