"""Self-collision of a robot: which geom pairs count, how deep they go, and the IK limit that avoids them.

Which pairs count (the measure every figure in the README uses): the robot's own collision geoms (those
with a non-zero ``contype`` or ``conaffinity`` that pass MuJoCo's contype/conaffinity test), leaving out

* pairs whose bodies are at most `MIN_TREE_JOINTS` joints apart in the kinematic tree: what can collide
  there (a thigh against the pelvis, a forearm against the upper arm) is governed by joint limits, and such
  geoms often overlap by design;
* pairs already touching or overlapping at the rest pose (modelled that way, nothing a motion can fix).

The IK side (`collision_limit`) turns the profile's ``self_collision.pairs`` (body groups; defaults in
`default_body_groups`: arms against legs, pelvis and torso, legs against the torso and each other, the two
arms) into mink's `CollisionAvoidanceLimit` on exactly those counted geom pairs.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import mink
import mujoco
import numpy as np
import qpsolvers

if TYPE_CHECKING:  # pragma: no cover
    from momask_ros.robot.model import Robot

#: Bodies at most this many joints apart are left to the joint limits.
MIN_TREE_JOINTS = 3


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


def _ancestors(model: mujoco.MjModel, body: int) -> list[int]:
    out = [body]
    while body != 0:
        body = int(model.body_parentid[body])
        out.append(body)
    return out


def tree_joint_distance(model: mujoco.MjModel, body_a: int, body_b: int) -> int:
    """Joints on the kinematic-tree path between two bodies (welded bodies are 0 apart)."""
    up_a, up_b = _ancestors(model, body_a), _ancestors(model, body_b)
    common = next(b for b in up_a if b in set(up_b))
    joints = 0
    for chain in (up_a, up_b):
        for b in chain:
            if b == common:
                break
            joints += int(model.body_jntnum[b])
    return joints


def collision_geoms(model: mujoco.MjModel) -> np.ndarray:
    """Ids of the geoms that take part in collisions (contype or conaffinity set), world geoms excluded."""
    ids = [g for g in range(model.ngeom)
           if (model.geom_contype[g] or model.geom_conaffinity[g]) and model.geom_bodyid[g] != 0]
    return np.array(ids, dtype=int)


def _compatible(model: mujoco.MjModel, a: int, b: int) -> bool:
    return bool(model.geom_contype[a] & model.geom_conaffinity[b]) or bool(model.geom_contype[b] & model.geom_conaffinity[a])


def counted_pairs(model: mujoco.MjModel, rest_qpos: np.ndarray, geoms: Sequence[int] | None = None,
                  others: Sequence[int] | None = None) -> np.ndarray:
    """Geom pairs (P, 2) that count as self-collision (module docstring), optionally only `geoms` x `others`."""
    pool = collision_geoms(model)
    if geoms is None:
        candidates = itertools.combinations(pool, 2)
    else:
        allowed = set(pool.tolist())
        candidates = ((a, b) for a in geoms for b in (others if others is not None else geoms)
                      if a != b and a in allowed and b in allowed)
    data = mujoco.MjData(model)
    data.qpos[:] = rest_qpos
    mujoco.mj_kinematics(model, data)
    fromto = np.zeros(6)
    out = set()
    for a, b in candidates:
        a, b = int(min(a, b)), int(max(a, b))
        ba, bb = int(model.geom_bodyid[a]), int(model.geom_bodyid[b])
        if not _compatible(model, a, b) or tree_joint_distance(model, ba, bb) <= MIN_TREE_JOINTS:
            continue
        if mujoco.mj_geomDistance(model, data, a, b, 0.01, fromto) <= 0.0:
            continue  # touching at rest
        out.add((a, b))
    return np.array(sorted(out), dtype=int).reshape(-1, 2)


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
        self._last: tuple[bytes, tuple[float, int]] | None = None  # callers often ask twice in a row

    @classmethod
    def for_robot(cls, robot: "Robot") -> "SelfCollisionMeter":
        return cls(robot.model, counted_pairs(robot.model, robot.rest_qpos))

    def frame_depth(self, qpos: np.ndarray) -> tuple[float, int]:
        """(deepest penetration [m], pair index or -1) at one configuration."""
        key = np.asarray(qpos, dtype=np.float64).tobytes()
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        result = self._frame_depth(qpos)
        self._last = (key, result)
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


# ----------------------------------------------------------------------------------------------- IK limit


def _subtree(model: mujoco.MjModel, root: int) -> list[int]:
    return [b for b in range(model.nbody) if root in _ancestors(model, b)]


def default_body_groups(robot: "Robot") -> list[tuple[list[str], list[str]]]:
    """Default avoidance pairs from the profile's keypoints: each arm (from its shoulder down) vs both legs,
    the pelvis and the torso; each leg vs the torso; left leg vs right leg; left arm vs right arm.

    A leg is the subtree of the base's child leading to the knee keypoint's body; an arm the subtree of the
    torso-side child leading to the elbow keypoint's body; the torso the bodies from the neck keypoint's body
    down to (not including) the base. Pairs too close in the tree are dropped later (`counted_pairs`).
    """
    model = robot.model
    kp = {k.human: model.body(k.body).id for k in robot.keypoints}
    base = robot.base_body_id
    torso = [b for b in _ancestors(model, kp["neck"]) if b not in (0, base) and base in _ancestors(model, b)] \
        if "neck" in kp else []

    def limb(end: int, parents: set[int]) -> list[int]:
        chain = _ancestors(model, end)
        for i, b in enumerate(chain[1:], start=1):
            if b in parents:
                return _subtree(model, chain[i - 1])
        return _subtree(model, end)

    legs = {s: limb(kp[f"{s}_knee"], {base}) for s in ("left", "right") if f"{s}_knee" in kp}
    arms = {}
    for side in ("left", "right"):
        end = kp.get(f"{side}_elbow", kp.get(f"{side}_wrist"))
        if end is not None:
            arms[side] = limb(end, set(torso) | {base})
    names = lambda ids: sorted({model.body(b).name for b in ids})  # noqa: E731
    all_legs = [b for leg in legs.values() for b in leg]
    groups: list[tuple[list[str], list[str]]] = []
    for arm in arms.values():
        groups.append((names(arm), names(all_legs + torso + [base])))
    for leg in legs.values():
        if torso:
            groups.append((names(leg), names(torso)))
    if len(legs) == 2:
        groups.append((names(legs["left"]), names(legs["right"])))
    if len(arms) == 2:
        groups.append((names(arms["left"]), names(arms["right"])))
    return [g for g in groups if g[0] and g[1]]


def avoidance_pairs(robot: "Robot", body_groups: Sequence[tuple[Sequence[str], Sequence[str]]]) -> np.ndarray:
    """Counted geom pairs (P, 2) between the bodies of each group pair."""
    model = robot.model
    out = []
    for group_a, group_b in body_groups:
        ids_a = {model.body(n).id for n in group_a}
        ids_b = {model.body(n).id for n in group_b}
        ga = [g for g in range(model.ngeom) if model.geom_bodyid[g] in ids_a]
        gb = [g for g in range(model.ngeom) if model.geom_bodyid[g] in ids_b]
        out.append(counted_pairs(model, robot.rest_qpos, ga, gb))
    pairs = np.concatenate(out) if out else np.zeros((0, 2), int)
    return np.unique(pairs, axis=0) if len(pairs) else pairs


def collision_limit(robot: "Robot"):
    """mink's `CollisionAvoidanceLimit` on the profile's self-collision pairs (only the rows of pairs within
    the detection distance reach the QP), or None when disabled or without pairs."""
    import mink

    cfg = robot.profile.self_collision
    if not cfg.enabled:
        return None
    groups = cfg.pairs if cfg.pairs is not None else default_body_groups(robot)
    pairs = avoidance_pairs(robot, groups)
    if not len(pairs):
        return None
    limit = mink.CollisionAvoidanceLimit(
        robot.model, [([int(a)], [int(b)]) for a, b in pairs], gain=cfg.gain,
        minimum_distance_from_collisions=cfg.min_distance_m,
        collision_detection_distance=cfg.detection_distance_m)
    return _ActiveRows(limit, robot.dof_index, cfg.min_distance_m)


class _ActiveRows(mink.Limit):
    """Passes on only the constraint rows of a limit that bind (finite bound).

    Why: mink's collision limit returns one row per pair, +inf for pairs beyond the detection distance;
    with G1's ~500 pairs those idle rows made DAQP's problem ~30x larger and retargeting 2.5x slower.
    """

    def __init__(self, limit, dof_index: np.ndarray, min_distance_m: float) -> None:
        self.limit = limit
        self._meter: SelfCollisionMeter | None = None
        self._dofs = np.asarray(dof_index, dtype=int)
        self._min_distance = float(min_distance_m)
        self._data = mujoco.MjData(limit.model)
        self._jacs = (np.zeros((3, limit.model.nv)), np.zeros((3, limit.model.nv)))

    @property
    def meter(self) -> SelfCollisionMeter:
        """A `SelfCollisionMeter` on the limit's pairs."""
        if self._meter is None:
            self._meter = SelfCollisionMeter(self.limit.model, np.array(self.limit.geom_id_pairs).reshape(-1, 2))
        return self._meter

    def depth(self, qpos: np.ndarray) -> float:
        """Deepest penetration [m] among the limit's pairs at a configuration."""
        return self.meter.frame_depth(qpos)[0]

    def push_out(self, qpos: np.ndarray, joint_index: np.ndarray, lower: np.ndarray, upper: np.ndarray, *,
                 tolerance_m: float = 5e-4, iterations: int = 6) -> np.ndarray:
        """The configuration nearest to ``qpos`` (driven joints only, in [lower, upper]) whose pairs keep
        the limit's clearance, by a few linearised QPs; the least deep one found when none does.

        Why: the IK limit only stops a pair from closing further, and a spline between two clear
        keyframes can pass through a limb; this moves the configuration out, inside a box that keeps
        the caller's velocity bound.
        """
        model, data = self.limit.model, self._data
        target = qpos[joint_index].copy()
        q = qpos.copy()
        q[joint_index] = np.clip(target, lower, upper)
        best, best_depth = q.copy(), self.depth(q)
        n = len(joint_index)
        fromto, normal = np.zeros(6), np.zeros(3)
        for _ in range(iterations):
            if best_depth <= tolerance_m:
                break
            data.qpos[:] = q
            mujoco.mj_kinematics(model, data)
            mujoco.mj_comPos(model, data)
            rows, bounds = [], []
            for k in self.limit._broadphase_survivors(data):
                a, b = self.limit.geom_id_pairs[k]
                dist = mujoco.mj_geomDistance(model, data, a, b, self.limit.collision_detection_distance, fromto)
                if dist >= self.limit.collision_detection_distance - 1e-12:
                    continue
                normal[:] = fromto[3:] - fromto[:3]
                mujoco.mju_normalize3(normal)
                jac1, jac2 = self._jacs
                mujoco.mj_jac(model, data, jac2, None, fromto[3:], model.geom_bodyid[b])
                mujoco.mj_jac(model, data, jac1, None, fromto[:3], model.geom_bodyid[a])
                grad = normal @ (jac2 - jac1)  # d(distance)/dq, sign as mink's limit has it
                grad = grad if dist >= 0 else -grad
                rows.append(-grad[self._dofs])
                bounds.append(dist)   # distance + grad dq >= clearance
            if not rows:
                break
            x = q[joint_index]
            for clearance in (self._min_distance, 0.0, -0.5 * tolerance_m):  # less where the box is tight
                step = qpsolvers.solve_qp(np.eye(n), x - target, np.array(rows), np.array(bounds) - clearance,
                                          lb=lower - x, ub=upper - x, solver="daqp")
                if step is not None:
                    break
            if step is None:
                break
            q[joint_index] = np.clip(x + step, lower, upper)
            depth = self.depth(q)
            if depth < best_depth:
                best, best_depth = q.copy(), depth
        return best

    def deepest(self, configuration) -> float:
        """Deepest penetration [m] among the limit's pairs at `configuration` (kinematics up to date)."""
        limit, data = self.limit, configuration.data
        fromto = np.zeros(6)
        depth = 0.0
        for k in limit._broadphase_survivors(data):
            a, b = limit.geom_id_pairs[k]
            depth = max(depth, -mujoco.mj_geomDistance(limit.model, data, a, b, 0.0, fromto))
        return depth

    def least_smoothing(self, raw_qpos: np.ndarray, smoothed_qpos: np.ndarray, joint_index: np.ndarray,
                        base_index: int) -> np.ndarray:
        """The smoothed configuration, or the blend towards the raw IK one (which the limit kept clear) as
        smooth as it can be without a deeper penetration than the raw one's: smoothing averages poses and
        can push a knee into the other leg in a fast spin."""
        allowed = self.meter.frame_depth(raw_qpos)[0] + 1e-3
        if self.meter.frame_depth(smoothed_qpos)[0] <= allowed:
            return smoothed_qpos
        for weight in (0.5, 0.25, 0.0):
            qpos = raw_qpos.copy()
            qpos[joint_index] += weight * (smoothed_qpos[joint_index] - raw_qpos[joint_index])
            qpos[base_index:base_index + 3] += weight * (smoothed_qpos[base_index:base_index + 3]
                                                         - raw_qpos[base_index:base_index + 3])
            if weight == 0.0 or self.meter.frame_depth(qpos)[0] <= allowed:
                return qpos
        return raw_qpos

    def compute_qp_inequalities(self, configuration, dt: float):
        constraint = self.limit.compute_qp_inequalities(configuration, dt)
        keep = np.isfinite(constraint.h)
        if not keep.any():
            return mink.Constraint()
        return mink.Constraint(G=constraint.G[keep], h=constraint.h[keep])
