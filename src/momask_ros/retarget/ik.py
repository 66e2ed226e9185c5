"""The retargeter's differential IK: one mink problem per robot, warm-started from frame to frame.

Frame tasks at the keypoint sites, a small posture task, joint-limit and joint-velocity constraints
(DAQP), the floating base solved with the joints under a strong pelvis task, and, when the profile
asks for it, mink's collision-avoidance limit on the self-collision pairs (`momask_ros.retarget.avoidance`).
The velocity limit bounds every joint's step per input frame to ``velocity_margin * v_max * dt``.
"""
from __future__ import annotations

import mink
import mujoco
import numpy as np
import qpsolvers

from momask_ros.robot.model import Robot
from momask_ros.retarget.avoidance import collision_limit


def mat_to_quat(rot: np.ndarray) -> np.ndarray:
    """Rotation matrix -> unit quaternion (w, x, y, z)."""
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(rot).ravel())
    return quat


class IkSolver:
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
        if avoid is not None:  # self-collision avoidance (momask_ros.robot.self_collision)
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
            quat = mat_to_quat(rot @ self.site_rest_rot[row]) if rot is not None else np.array([1.0, 0, 0, 0])
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
        qpos[b + 3:b + 7] = mat_to_quat(rot)
        self.configuration.update(qpos)
