"""`momask-robot-check PROFILE`: does a new robot profile make sense before any motion runs on it?

Loads the profile (every name checked), retargets a standing human onto it and prints what deserves a
look: the profile's own warnings (velocity limits left to the default, ``auto`` scale without the
keypoints it needs), rest-pose values outside or at their limits, bodies that collide at rest, feet
that are not level, and keypoints whose robot point sits far from the standing human's target. It
renders the rest pose with the human keypoint targets (green) and the robot's keypoint points (red)
to a PNG, front and side views, so a wrong body, offset or rest pose shows at a glance.

    momask-robot-check my_robot.yaml [--description my_robot.xml] [--out my_robot_rest.png]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from momask_ros.robot.model import Robot, load_robot
from momask_ros.robot.profile import HUMAN_JOINT_NAMES, ProfileError

#: A standing adult (HumanML3D axes: Y up, facing +Z, left = +X, metres): bone offsets from the
#: parent, measured on HumanML3D motion, arms hanging.
_STANDING_OFFSETS = {
    "pelvis": (0.0, 0.0, 0.0), "left_hip": (0.06, -0.084, -0.025), "right_hip": (-0.06, -0.084, -0.025),
    "spine1": (0.0, 0.132, 0.0), "left_knee": (0.0, -0.39, 0.0), "right_knee": (0.0, -0.39, 0.0),
    "spine2": (0.0, 0.143, 0.0), "left_ankle": (0.0, -0.43, 0.0), "right_ankle": (0.0, -0.43, 0.0),
    "spine3": (0.0, 0.057, 0.0), "left_foot": (0.0, -0.045, 0.138), "right_foot": (0.0, -0.045, 0.138),
    "neck": (0.0, 0.219, 0.0), "left_collar": (0.07, 0.12, -0.015), "right_collar": (-0.07, 0.12, -0.015),
    "head": (0.0, 0.103, 0.0), "left_shoulder": (0.13, 0.0, 0.0), "right_shoulder": (-0.13, 0.0, 0.0),
    "left_elbow": (0.0, -0.26, 0.0), "right_elbow": (0.0, -0.26, 0.0), "left_wrist": (0.0, -0.265, 0.0),
    "right_wrist": (0.0, -0.265, 0.0),
}
_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
TARGET_WARN_M = 0.10  # a wrong body or offset is usually further off; proportions alone give a few cm
LIMIT_MARGIN = 0.02  # fraction of the range


def standing_human(frames: int = 30) -> np.ndarray:
    """(frames, 22, 3) of a still, upright human (HumanML3D axes), ankles 8 cm above the floor."""
    pos = np.zeros((22, 3))
    for j, name in enumerate(HUMAN_JOINT_NAMES):
        pos[j] = (pos[_PARENTS[j]] if j else 0.0) + np.asarray(_STANDING_OFFSETS[name])
    pos[:, 1] += 0.08 - pos[7, 1]
    return np.repeat(pos[None], frames, axis=0)


def rest_targets(robot: Robot) -> tuple[np.ndarray, np.ndarray]:
    """Keypoint targets of a standing human and the robot's keypoint points at rest, both (K, 3) [m]."""
    from momask_ros.retarget.retargeter import Retargeter

    stream = Retargeter(robot).stream()
    human = standing_human()
    stream.calibrate(human)
    stream.push(human)
    targets = np.array(stream._targets[-1])  # what the IK was asked to reach on the last standing frame
    data = robot.forward(robot.rest_qpos)
    sites = np.array([data.site_xpos[s] for s in robot.keypoint_site_ids])
    # where the human stands on the floor is arbitrary: put its hip centre (else pelvis) over the robot's
    rows = {k.human: i for i, k in enumerate(robot.keypoints)}
    anchor = [rows["left_hip"], rows["right_hip"]] if {"left_hip", "right_hip"} <= set(rows) else [rows["pelvis"]]
    targets[:, :2] += sites[anchor, :2].mean(axis=0) - targets[anchor, :2].mean(axis=0)
    return targets, sites


def rest_pose_warnings(robot: Robot, targets: np.ndarray, sites: np.ndarray) -> list[str]:
    """Rest-pose problems: values clipped or at a limit, collisions, uneven feet, keypoints off target."""
    import mujoco

    out = []
    lo, hi = robot.position_limits[:, 0], robot.position_limits[:, 1]
    for i, name in enumerate(robot.joint_names):
        asked = robot.profile.rest_pose.get(name)
        value = robot.rest_positions[i]
        if asked is not None and not lo[i] <= asked <= hi[i]:
            out.append(f"rest_pose.{name} = {asked:g} is outside its range [{lo[i]:g}, {hi[i]:g}]; clipped to {value:g}")
        elif np.isfinite(lo[i]) and np.isfinite(hi[i]):
            margin = LIMIT_MARGIN * (hi[i] - lo[i])
            if value - lo[i] < margin or hi[i] - value < margin:
                out.append(f"{name} rests at {value:g}, at its limit [{lo[i]:g}, {hi[i]:g}]: it can move one way only "
                           f"(set rest_pose.{name})")
    model = robot.model
    data = mujoco.MjData(model)
    data.qpos[:] = robot.rest_qpos
    mujoco.mj_forward(model, data)
    seen = set()
    for c in data.contact[: data.ncon]:
        b1, b2 = int(model.geom_bodyid[c.geom1]), int(model.geom_bodyid[c.geom2])
        if 0 in (b1, b2) or c.dist > -1e-3:
            continue  # the world (a floor in the description) or merely touching
        pair = tuple(sorted((model.body(b1).name, model.body(b2).name)))
        if pair not in seen:
            seen.add(pair)
            out.append(f"bodies {pair[0]} and {pair[1]} collide at rest ({-c.dist * 1000:.0f} mm deep)")
    left, right = robot.foot_points_z(robot.forward(robot.rest_qpos))
    if abs(left - right) > 0.01:
        out.append(f"feet are not level at rest: lowest points {left:.3f} m (left) and {right:.3f} m (right)")
    for kp, target, site in zip(robot.keypoints, targets, sites):
        gap = float(np.linalg.norm(target - site))
        if gap > TARGET_WARN_M:
            out.append(f"keypoint {kp.human} (body {kp.body}) is {gap * 100:.0f} cm from the standing human's target: "
                       f"check its body, offset_m or the rest pose")
    return out


def self_collision_lines(robot: Robot) -> list[str]:
    """What the self-collision measure counts on this robot and what it leaves out, by rule (body pairs).

    Neighbours in the kinematic tree are listed by name: they are counted when their joints' limits let
    them meet (with the depth they can reach), left out when they touch at rest or cannot meet.
    """
    from momask_ros.retarget.avoidance import SHALLOW_REACH_M
    from momask_ros.robot.self_collision import SAMPLED_JOINTS, robot_pair_classes

    classes = robot_pair_classes(robot)
    by_rule: dict[str, dict[tuple[str, str], float | None]] = {}
    for c in classes:
        if c.rule == "counted" and c.joints > SAMPLED_JOINTS:
            continue
        seen = by_rule.setdefault(c.rule, {})
        old = seen.get(c.bodies)
        seen[c.bodies] = c.closest_m if old is None or (c.closest_m is not None and c.closest_m < old) else old
    counts = {rule: sum(c.rule == rule for c in classes) for rule in ("counted", "touch_at_rest", "cannot_collide", "rigid")}
    lines = [f"self-collision: {counts['counted']} geom pairs counted; left out: {counts['touch_at_rest']} touching at "
             f"rest, {counts['cannot_collide']} that cannot meet within the joint limits, {counts['rigid']} on one "
             f"rigid body"]

    def names(rule: str, depth: bool) -> str:
        items = sorted(by_rule.get(rule, {}).items(), key=lambda kv: kv[1] if kv[1] is not None else 0.0)
        return ", ".join(f"{a} vs {b}" + (f" ({-1000 * d:.1f} mm)" if depth and d is not None else "")
                         for (a, b), d in items) or "none"

    lines.append(f"  counted though at most {SAMPLED_JOINTS} joints apart (deepest within the limits): "
                 f"{names('counted', True)}")
    shallow = [f"{a} vs {b}" for (a, b), d in by_rule.get("counted", {}).items() if d is not None and d > -SHALLOW_REACH_M]
    if shallow:
        lines.append(f"  left to the joint limits by the IK (cannot go {1000 * SHALLOW_REACH_M:g} mm deep): "
                     f"{', '.join(sorted(shallow))}")
    lines.append(f"  left out, touching at rest: {names('touch_at_rest', False)}")
    lines.append(f"  left out, cannot meet within the joint limits: {names('cannot_collide', False)}")
    return lines


def _add_sphere(scene, pos, radius, rgba) -> None:
    import mujoco

    if scene.ngeom >= scene.maxgeom:
        return
    mujoco.mjv_initGeom(scene.geoms[scene.ngeom], mujoco.mjtGeom.mjGEOM_SPHERE, np.array([radius, 0, 0]),
                        np.asarray(pos, float), np.eye(3).flatten(), np.asarray(rgba, np.float32))
    scene.ngeom += 1


def _add_line(scene, a, b, width, rgba) -> None:
    import mujoco

    if scene.ngeom >= scene.maxgeom or np.linalg.norm(np.subtract(a, b)) < 1e-6:
        return
    geom = scene.geoms[scene.ngeom]
    mujoco.mjv_initGeom(geom, mujoco.mjtGeom.mjGEOM_CAPSULE, np.zeros(3), np.zeros(3), np.eye(3).flatten(),
                        np.asarray(rgba, np.float32))
    mujoco.mjv_connector(geom, mujoco.mjtGeom.mjGEOM_CAPSULE, width, np.asarray(a, float), np.asarray(b, float))
    scene.ngeom += 1


def render_rest(robot: Robot, targets: np.ndarray, sites: np.ndarray, path: str | Path, *, size: int = 480) -> Path:
    """PNG of the rest pose, front and side views: human targets green, robot keypoints red, gaps yellow."""
    import imageio.v2 as imageio
    import mujoco

    os.environ.setdefault("MUJOCO_GL", "osmesa")
    model = robot.model
    data = robot.forward(robot.rest_qpos)
    mujoco.mj_forward(model, data)
    renderer = mujoco.Renderer(model, size, size)
    headlight = (model.vis.headlight.ambient.copy(), model.vis.headlight.diffuse.copy())
    model.vis.headlight.ambient[:] = [0.45, 0.45, 0.45]
    model.vis.headlight.diffuse[:] = [0.6, 0.6, 0.6]
    views = []
    try:
        # the whole robot: every geom's bounding sphere, and the targets
        top = data.geom_xpos[:, 2] + model.geom_rbound
        height = float(max(top.max(), targets[:, 2].max()) + 0.05)
        base = data.qpos[robot.base_qpos_index: robot.base_qpos_index + 3]
        for azimuth in (180.0, 90.0):  # the robot's front (it faces +x), then its right side
            cam = mujoco.MjvCamera()
            cam.lookat[:] = [base[0], base[1], height / 2]
            cam.distance, cam.azimuth, cam.elevation = 1.45 * height + 0.2, azimuth, -8.0
            renderer.update_scene(data, camera=cam)
            scene = renderer.scene
            for g in range(scene.ngeom):  # see-through robot: the points inside its bodies show
                scene.geoms[g].rgba[3] = min(scene.geoms[g].rgba[3], 0.35)
            floor_geom = scene.geoms[scene.ngeom]
            mujoco.mjv_initGeom(floor_geom, mujoco.mjtGeom.mjGEOM_BOX, np.array([1.5, 1.5, 0.002]),
                                np.array([base[0], base[1], -0.002]), np.eye(3).flatten(),
                                np.array([0.8, 0.82, 0.85, 1.0], np.float32))
            scene.ngeom += 1
            for target, site in zip(targets, sites):
                _add_line(scene, target, site, 0.008, (1.0, 0.8, 0.0, 1.0))
                _add_sphere(scene, target, 0.03, (0.1, 0.9, 0.2, 0.45))
                _add_sphere(scene, site, 0.02, (0.95, 0.1, 0.1, 1.0))
            views.append(renderer.render().copy())
    finally:
        renderer.close()
        model.vis.headlight.ambient[:], model.vis.headlight.diffuse[:] = headlight
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(path, np.concatenate(views, axis=1))
    return path


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``momask-robot-check``: 0 when the profile loads (warnings printed), 2 when it does not."""
    parser = argparse.ArgumentParser(prog="momask-robot-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", help="profile YAML, or a packaged name: default, h1, g1")
    parser.add_argument("--description", help="MJCF/URDF overriding the profile's description")
    parser.add_argument("--out", type=Path, help="rest-pose PNG (default: <profile name>_rest.png here)")
    parser.add_argument("--strict", action="store_true", help="exit status 1 when there is any warning")
    args = parser.parse_args(argv)
    import logging

    logging.getLogger("momask_ros.robot.model").setLevel(logging.ERROR)  # printed below, once
    try:
        robot = load_robot(args.profile, description=args.description)
        targets, sites = rest_targets(robot)
    except ProfileError as exc:
        print(f"momask-robot-check: error: {exc}", file=sys.stderr)
        return 2
    p = robot.profile
    print(f"{p.name}: {robot.description_path}")
    print(f"  {len(robot.joint_names)} driven joints (output order): {', '.join(robot.joint_names)}")
    print(f"  {len(robot.keypoints)} keypoints; control rate {p.control_rate_hz:g} Hz; base body {p.base_body}")
    unlimited = [j for j, (lo, hi) in zip(robot.joint_names, robot.position_limits) if not np.isfinite([lo, hi]).all()]
    warnings = list(robot.warnings)
    if unlimited:
        warnings.append(f"no position limit on {', '.join(unlimited)} (set limits.position)")
    warnings += rest_pose_warnings(robot, targets, sites)
    gaps = np.linalg.norm(targets - sites, axis=1)
    worst = ", ".join(f"{robot.keypoints[i].human} {gaps[i] * 100:.1f}" for i in np.argsort(-gaps)[:3])
    print(f"  standing human's targets vs the robot at rest: mean gap {gaps.mean() * 100:.1f} cm; largest [cm]: {worst}")
    out = args.out or Path(f"{Path(str(args.profile)).stem}_rest.png")
    render_rest(robot, targets, sites, out)
    print(f"  rest pose with the human targets (green) and robot keypoints (red): {out}")
    for line in self_collision_lines(robot):
        print(f"  {line}")
    for w in warnings:
        print(f"warning: {w}")
    print(f"{len(warnings)} warning(s)")
    return 1 if (args.strict and warnings) else 0


if __name__ == "__main__":
    sys.exit(main())
