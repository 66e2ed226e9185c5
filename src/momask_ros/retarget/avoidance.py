"""The retargeter's self-collision avoidance: which counted pairs it keeps apart, mink's limit on them,
and the repairs the output stage uses (push a pose out, smooth no deeper).

The pairs are every pair `momask_ros.robot.self_collision` counts, so the IK avoids what the checks
measure (neighbours in the tree included: H1's two hip-yaw housings, a shoulder and the torso), except
those that cannot go `SHALLOW_REACH_M` deep within their joint limits; a profile's ``self_collision.pairs``
(body groups) narrows them. Pairs built closer than the clearance keep half their rest gap
(`pair_clearance`).
"""
from __future__ import annotations

from typing import Sequence

import mink
import mujoco
import numpy as np
import qpsolvers

from momask_ros.robot.model import Robot
from momask_ros.robot.self_collision import SelfCollisionMeter, robot_pair_classes, robot_pairs

#: Counted pairs that cannot go deeper than this [m] anywhere within their joint limits (the sweep of
#: `momask_ros.robot.self_collision` measured it: G1's pelvis and hip-pitch link 1.9 mm, a wrist's roll and
#: yaw links 3.7 mm) are left to the joint limits: avoiding them would cost the motion a joint direction.
SHALLOW_REACH_M = 0.005


def avoidance_pairs(robot: Robot, body_groups: Sequence[tuple[Sequence[str], Sequence[str]]]) -> np.ndarray:
    """Counted geom pairs (P, 2) between the bodies of each group pair."""
    model = robot.model
    pairs = robot_pairs(robot)
    bodies = model.geom_bodyid[pairs] if len(pairs) else np.zeros((0, 2), int)
    keep = np.zeros(len(pairs), bool)
    for group_a, group_b in body_groups:
        ids_a = [model.body(n).id for n in group_a]
        ids_b = [model.body(n).id for n in group_b]
        in_a, in_b = np.isin(bodies, ids_a), np.isin(bodies, ids_b)
        keep |= (in_a[:, 0] & in_b[:, 1]) | (in_b[:, 0] & in_a[:, 1])
    return pairs[keep]


def collision_limit(robot: Robot):
    """mink's `CollisionAvoidanceLimit` on the counted pairs, or those of the profile's ``self_collision.pairs``
    (only the rows of pairs within the detection distance reach the QP); None when disabled or without pairs."""
    cfg = robot.profile.self_collision
    if not cfg.enabled:
        return None
    pairs = robot_pairs(robot) if cfg.pairs is None else avoidance_pairs(robot, cfg.pairs)
    shallow = {c.geoms for c in robot_pair_classes(robot)
               if c.counted and c.closest_m is not None and c.closest_m > -SHALLOW_REACH_M}
    pairs = np.array([p for p in pairs.tolist() if tuple(p) not in shallow], dtype=int).reshape(-1, 2)
    if not len(pairs):
        return None
    limit = mink.CollisionAvoidanceLimit(
        robot.model, [([int(a)], [int(b)]) for a, b in pairs], gain=cfg.gain,
        minimum_distance_from_collisions=cfg.min_distance_m,
        collision_detection_distance=cfg.detection_distance_m)
    # mink drops parent-child pairs (G1's pelvis and hip-pitch link, a knee and its ankle); the counted pairs
    # are those that can meet within the joint limits, so the limit keeps every one of them
    limit.geom_id_pairs = [(int(a), int(b)) for a, b in pairs]
    limit.max_num_contacts = len(limit.geom_id_pairs)
    limit._init_broadphase(robot.model)
    return _ActiveRows(limit, robot.dof_index, pair_clearance(robot, pairs, cfg.min_distance_m))


def pair_clearance(robot: Robot, pairs: np.ndarray, min_distance_m: float) -> np.ndarray:
    """Per pair, the clearance [m] the IK keeps: the profile's ``min_distance_m``, or half the gap at rest
    for pairs built closer than that (H1's torso and shoulder-roll housings sit 2 mm apart).

    Why: a pair already inside the clearance at rest may not close at all under mink's rule, which
    locks its joints in one direction (the hip of a knee-up, the arm in to the body) for nothing.
    """
    data = robot.forward(robot.rest_qpos)
    fromto = np.zeros(6)
    rest = np.array([mujoco.mj_geomDistance(robot.model, data, int(a), int(b), min_distance_m, fromto)
                     for a, b in pairs])
    return np.where(rest >= min_distance_m, min_distance_m, np.maximum(rest, 0.0) / 2)


class _ActiveRows(mink.Limit):
    """Passes on only the constraint rows of a limit that bind (finite bound).

    Why: mink's collision limit returns one row per pair, +inf for pairs beyond the detection distance;
    with G1's ~500 pairs those idle rows made DAQP's problem ~30x larger and retargeting 2.5x slower.
    """

    def __init__(self, limit, dof_index: np.ndarray, clearance_m: np.ndarray) -> None:
        self.limit = limit
        self._meter: SelfCollisionMeter | None = None
        self._dofs = np.asarray(dof_index, dtype=int)
        self.clearance = np.asarray(clearance_m, dtype=float)  # per pair of limit.geom_id_pairs
        self._data = mujoco.MjData(limit.model)
        self._jacs = (np.zeros((3, limit.model.nv)), np.zeros((3, limit.model.nv)))
        self._fromto, self._normal = np.zeros(6), np.zeros(3)

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
            rows, bounds, wanted = [], [], []
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
                wanted.append(self.clearance[k])
            if not rows:
                break
            x = q[joint_index]
            for scale, slack in ((1.0, 0.0), (0.0, 0.0), (0.0, -0.5 * tolerance_m)):  # less where the box is tight
                step = qpsolvers.solve_qp(np.eye(n), x - target, np.array(rows),
                                          np.array(bounds) - scale * np.array(wanted) - slack,
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
        """Deepest penetration [m] among the limit's pairs at `configuration` (through the meter, whose
        cache answers again when the next frame starts from this pose and when smoothing checks it)."""
        return self.meter.frame_depth(configuration.q)[0]

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
        """mink's rows (same formula, each pair with its own clearance) for the pairs within the detection
        distance only."""
        limit, data, model = self.limit, configuration.data, self.limit.model
        fromto, normal = self._fromto, self._normal
        jac1, jac2 = self._jacs
        distmax = limit.collision_detection_distance
        rows, bounds = [], []
        for k in limit._broadphase_survivors(data):
            a, b = limit.geom_id_pairs[k]
            dist = mujoco.mj_geomDistance(model, data, a, b, distmax, fromto)
            if abs(dist - distmax) < 1e-12:
                continue
            normal[:] = fromto[3:] - fromto[:3]
            mujoco.mju_normalize3(normal)
            mujoco.mj_jac(model, data, jac2, None, fromto[3:], model.geom_bodyid[b])
            mujoco.mj_jac(model, data, jac1, None, fromto[:3], model.geom_bodyid[a])
            row = normal @ (jac2 - jac1)
            rows.append(-row if dist >= 0 else row)
            clearance = self.clearance[k]
            bounds.append((limit.gain * (dist - clearance) / dt if dist > clearance else 0.0) + limit.bound_relaxation)
        if not rows:
            return mink.Constraint()
        return mink.Constraint(G=np.array(rows), h=np.array(bounds))
