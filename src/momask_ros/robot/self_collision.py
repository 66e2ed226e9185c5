"""Self-collision of a robot: which geom pairs count and how deep they go.

Which pairs count (the measure every figure in the README uses): the robot's own collision geoms (those
with a non-zero ``contype`` or ``conaffinity`` that pass MuJoCo's contype/conaffinity test), leaving out
only what no motion can change:

* pairs already touching or overlapping at the rest pose (modelled that way, nothing a motion can fix),
  and pairs on one rigid body (no joint between them);
* pairs that cannot collide within the joint limits: for bodies at most `SAMPLED_JOINTS` joints apart
  (a thigh and the pelvis, the two hip-yaw housings, a shoulder and the torso), the joints between them
  are swept over their limits (driven joints; the others stay at rest), a grid then a local descent of
  the distance; a pair that never comes closer than zero is left out. Pairs further apart always count.

Why no "neighbours are governed by the joint limits" rule: the limits are what lets H1's hip-yaw
housings meet (17 mm) and G1's shoulder yaw reach into its torso (15 mm). `pair_classes` says, per
pair, which rule applied (``momask-robot-check`` prints it).

The retargeter avoids the counted pairs (`momask_ros.retarget.avoidance`).
"""
from __future__ import annotations

import itertools
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import mujoco
import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from momask_ros.robot.model import Robot

#: Bodies at most this many joints apart are swept over their joint limits to see if they can meet.
SAMPLED_JOINTS = 3
#: Grid points per joint for 1, 2 and 3 swept joints (33, 289, 729 configurations).
_GRID_LEVELS = {1: 33, 2: 17, 3: 9}
#: Pairs whose swept distance stays below this [m] get a local descent from the grid's nearest point.
_REFINE_BAND_M = 0.03


@dataclass(frozen=True)
class Penetration:
    """The deepest self-penetration found: depth [m] (0 = none), the pair and where in the motion."""

    depth_m: float
    geom_a: str = ""
    geom_b: str = ""
    body_a: str = ""
    body_b: str = ""
    frame: int = -1

    @property
    def pair(self) -> str:
        """``body_a/body_b`` (geom names in parentheses when the geoms are named)."""
        if not self.body_a:
            return ""
        return f"{self.body_a} vs {self.body_b}"


@dataclass(frozen=True)
class PairClass:
    """One compatible geom pair and the rule that decides it (`pair_classes`).

    Attributes:
        geoms: (a, b) geom ids, a < b.
        bodies: their body names.
        joints: joints on the kinematic-tree path between the bodies.
        rule: ``counted``, ``rigid`` (no joint between), ``touch_at_rest`` or ``cannot_collide``.
        closest_m: for swept pairs, the least distance found within the limits [m] (negative: depth).
    """

    geoms: tuple[int, int]
    bodies: tuple[str, str]
    joints: int
    rule: str
    closest_m: float | None = None

    @property
    def counted(self) -> bool:
        return self.rule == "counted"


def ancestors(model: mujoco.MjModel, body: int) -> list[int]:
    out = [body]
    while body != 0:
        body = int(model.body_parentid[body])
        out.append(body)
    return out


def path_joints(model: mujoco.MjModel, body_a: int, body_b: int) -> list[int]:
    """Joint ids on the kinematic-tree path between two bodies (welded bodies: none)."""
    up_a, up_b = ancestors(model, body_a), ancestors(model, body_b)
    common = next(b for b in up_a if b in set(up_b))
    joints: list[int] = []
    for chain in (up_a, up_b):
        for b in chain:
            if b == common:
                break
            joints.extend(int(model.body_jntadr[b]) + k for k in range(int(model.body_jntnum[b])))
    return sorted(joints)


def tree_joint_distance(model: mujoco.MjModel, body_a: int, body_b: int) -> int:
    """Joints on the kinematic-tree path between two bodies (welded bodies are 0 apart)."""
    return len(path_joints(model, body_a, body_b))


def collision_geoms(model: mujoco.MjModel) -> np.ndarray:
    """Ids of the geoms that take part in collisions (contype or conaffinity set), world geoms excluded."""
    ids = [g for g in range(model.ngeom)
           if (model.geom_contype[g] or model.geom_conaffinity[g]) and model.geom_bodyid[g] != 0]
    return np.array(ids, dtype=int)


def _compatible(model: mujoco.MjModel, a: int, b: int) -> bool:
    return bool(model.geom_contype[a] & model.geom_conaffinity[b]) or bool(model.geom_contype[b] & model.geom_conaffinity[a])


_SWEPT = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))


def _closest_within_limits(model: mujoco.MjModel, rest_qpos: np.ndarray, joints: Sequence[int],
                           ranges: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Per pair (P, 2), the least signed distance [m] found with ``joints`` swept over ``ranges`` (J, 2).

    A grid over the box, then from the grid's nearest configuration of each pair that came within
    `_REFINE_BAND_M`, a projected descent of the distance (its gradient from the witness points'
    Jacobians), so a contact between grid points is not missed.
    """
    data = mujoco.MjData(model)
    adr = np.array([model.jnt_qposadr[j] for j in joints])
    dofs = np.array([model.jnt_dofadr[j] for j in joints])
    rsum = model.geom_rbound[pairs[:, 0]] + model.geom_rbound[pairs[:, 1]] + _REFINE_BAND_M
    best = np.full(len(pairs), np.inf)
    best_q = np.zeros((len(pairs), len(joints)))
    fromto = np.zeros(6)
    grid = itertools.product(*[np.linspace(lo, hi, _GRID_LEVELS[len(joints)]) for lo, hi in ranges])
    for q in grid:
        data.qpos[:] = rest_qpos
        data.qpos[adr] = q
        mujoco.mj_kinematics(model, data)
        diff = data.geom_xpos[pairs[:, 0]] - data.geom_xpos[pairs[:, 1]]
        for k in np.flatnonzero(np.einsum("ij,ij->i", diff, diff) <= rsum ** 2):
            dist = mujoco.mj_geomDistance(model, data, int(pairs[k, 0]), int(pairs[k, 1]), _REFINE_BAND_M, fromto)
            if dist < best[k]:
                best[k], best_q[k] = dist, q
    jac_a, jac_b, normal = np.zeros((3, model.nv)), np.zeros((3, model.nv)), np.zeros(3)
    span = ranges[:, 1] - ranges[:, 0]
    for k in np.flatnonzero((best > 0) & (best < _REFINE_BAND_M)):
        a, b = int(pairs[k, 0]), int(pairs[k, 1])
        q, step = best_q[k].copy(), 0.05 * span
        for _ in range(40):
            data.qpos[:] = rest_qpos
            data.qpos[adr] = q
            mujoco.mj_kinematics(model, data)
            mujoco.mj_comPos(model, data)
            dist = mujoco.mj_geomDistance(model, data, a, b, 1.0, fromto)
            best[k] = min(best[k], dist)
            if best[k] <= 0 or np.all(step < 1e-4):
                break
            normal[:] = fromto[3:] - fromto[:3]
            mujoco.mju_normalize3(normal)
            mujoco.mj_jac(model, data, jac_a, None, fromto[:3], model.geom_bodyid[a])
            mujoco.mj_jac(model, data, jac_b, None, fromto[3:], model.geom_bodyid[b])
            grad = (normal @ (jac_b - jac_a))[dofs]
            if not np.any(grad):
                break
            trial = np.clip(q - step * np.sign(grad), ranges[:, 0], ranges[:, 1])
            data.qpos[adr] = trial
            mujoco.mj_kinematics(model, data)
            if mujoco.mj_geomDistance(model, data, a, b, 1.0, fromto) < dist:
                q = trial
            else:
                step = step * 0.5
    return best


def pair_classes(model: mujoco.MjModel, rest_qpos: np.ndarray, movable: Sequence[int] | None = None) -> list[PairClass]:
    """Every compatible pair of collision geoms and the rule that counts it or leaves it out (module doc).

    Args:
        model: the robot's model (position limits as the retargeter uses them).
        rest_qpos: the rest configuration; joints not in ``movable`` stay there.
        movable: joint ids that move (default: every hinge and slide joint).
    """
    movable_set = set(range(model.njnt) if movable is None else (int(j) for j in movable))
    data = mujoco.MjData(model)
    data.qpos[:] = rest_qpos
    mujoco.mj_kinematics(model, data)
    fromto = np.zeros(6)
    out: dict[tuple[int, int], PairClass] = {}
    swept: dict[tuple[int, ...], list[tuple[int, int]]] = {}
    for a, b in itertools.combinations(collision_geoms(model).tolist(), 2):
        if not _compatible(model, a, b):
            continue
        ba, bb = int(model.geom_bodyid[a]), int(model.geom_bodyid[b])
        joints = path_joints(model, ba, bb)
        names = (model.body(ba).name, model.body(bb).name)
        moving = [j for j in joints if j in movable_set]
        if not moving:
            out[(a, b)] = PairClass((a, b), names, len(joints), "rigid")
        elif mujoco.mj_geomDistance(model, data, a, b, 0.01, fromto) <= 0.0:
            out[(a, b)] = PairClass((a, b), names, len(joints), "touch_at_rest")
        elif len(moving) <= SAMPLED_JOINTS and all(int(model.jnt_type[j]) in _SWEPT for j in moving):
            swept.setdefault(tuple(moving), []).append((a, b))
        else:
            out[(a, b)] = PairClass((a, b), names, len(joints), "counted")
    for joints, pairs in swept.items():
        ranges = np.array([model.jnt_range[j] if model.jnt_limited[j] else (-np.pi, np.pi) for j in joints], float)
        closest = _closest_within_limits(model, rest_qpos, joints, ranges, np.array(pairs))
        for (a, b), dist in zip(pairs, closest):
            ba, bb = int(model.geom_bodyid[a]), int(model.geom_bodyid[b])
            out[(a, b)] = PairClass((a, b), (model.body(ba).name, model.body(bb).name),
                                    len(path_joints(model, ba, bb)), "counted" if dist < 0 else "cannot_collide",
                                    float(dist) if np.isfinite(dist) else None)
    return [out[key] for key in sorted(out)]


def counted_pairs(model: mujoco.MjModel, rest_qpos: np.ndarray, movable: Sequence[int] | None = None) -> np.ndarray:
    """Geom pairs (P, 2) that count as self-collision (module docstring)."""
    pairs = [c.geoms for c in pair_classes(model, rest_qpos, movable) if c.counted]
    return np.array(pairs, dtype=int).reshape(-1, 2)


_ROBOT_PAIRS: "weakref.WeakKeyDictionary[Robot, list[PairClass]]" = weakref.WeakKeyDictionary()


def robot_pair_classes(robot: "Robot") -> list[PairClass]:
    """`pair_classes` of a robot (its driven joints move), computed once per `Robot`."""
    classes = _ROBOT_PAIRS.get(robot)
    if classes is None:
        classes = _ROBOT_PAIRS[robot] = pair_classes(robot.model, robot.rest_qpos, robot.joint_ids)
    return classes


def robot_pairs(robot: "Robot") -> np.ndarray:
    """The counted geom pairs (P, 2) of a robot (`robot_pair_classes`)."""
    return np.array([c.geoms for c in robot_pair_classes(robot) if c.counted], dtype=int).reshape(-1, 2)


class SelfCollisionMeter:
    """Deepest self-penetration over configurations, on a fixed set of counted pairs.

    A bounding-sphere test skips pairs that cannot touch before MuJoCo's narrow phase runs.
    """

    def __init__(self, model: mujoco.MjModel, pairs: np.ndarray) -> None:
        self.model = model
        self.pairs = np.asarray(pairs, dtype=int).reshape(-1, 2)
        self.data = mujoco.MjData(model)
        self._rsum = model.geom_rbound[self.pairs[:, 0]] + model.geom_rbound[self.pairs[:, 1]]
        self._bounded = (model.geom_rbound[self.pairs[:, 0]] > 0) & (model.geom_rbound[self.pairs[:, 1]] > 0)
        self._fromto = np.zeros(6)
        self._recent: dict[bytes, tuple[float, int]] = {}  # the retargeter asks again for poses of the last ~5 s

    @classmethod
    def for_robot(cls, robot: "Robot") -> "SelfCollisionMeter":
        """A meter on the robot's counted pairs (`robot_pairs`)."""
        return cls(robot.model, robot_pairs(robot))

    def frame_depth(self, qpos: np.ndarray) -> tuple[float, int]:
        """(deepest penetration [m], pair index or -1) at one configuration."""
        key = np.asarray(qpos, dtype=np.float64).tobytes()
        result = self._recent.get(key)
        if result is None:
            result = self._frame_depth(qpos)
            if len(self._recent) >= 256:
                del self._recent[next(iter(self._recent))]
            self._recent[key] = result
        return result

    def _frame_depth(self, qpos: np.ndarray) -> tuple[float, int]:
        m, d = self.model, self.data
        d.qpos[:] = qpos
        mujoco.mj_kinematics(m, d)
        if not len(self.pairs):
            return 0.0, -1
        diff = d.geom_xpos[self.pairs[:, 0]] - d.geom_xpos[self.pairs[:, 1]]
        near = ~self._bounded | (np.einsum("ij,ij->i", diff, diff) <= self._rsum ** 2)
        best, which = 0.0, -1
        for k in np.flatnonzero(near):
            a, b = self.pairs[k]
            dist = mujoco.mj_geomDistance(m, d, int(a), int(b), 0.0, self._fromto)
            if -dist > best:
                best, which = -dist, int(k)
        return best, which

    def deepest(self, qpos_frames: np.ndarray) -> Penetration:
        """The deepest penetration over configurations (T, nq), with the pair and the frame."""
        best = Penetration(0.0)
        for t, qpos in enumerate(np.asarray(qpos_frames)):
            depth, k = self.frame_depth(qpos)
            if k >= 0 and depth > best.depth_m:
                a, b = (int(x) for x in self.pairs[k])
                m = self.model
                best = Penetration(depth, m.geom(a).name, m.geom(b).name, m.body(m.geom_bodyid[a]).name,
                                   m.body(m.geom_bodyid[b]).name, t)
        return best
