"""A video of a closed-loop run: the kinematic reference (left) beside the robot in physics (right).

Both panels show the tracker's own robot model; each camera follows its robot's base, because the policy
follows velocities and the simulated path drifts from the reference's in the world. Offscreen rendering
on a CPU needs ``MUJOCO_GL=osmesa`` (set here when unset)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .rollout import RolloutResult
from .spec import TrackerBundle


def _subsample(times_s: np.ndarray, fps: float) -> np.ndarray:
    """Indices of the logged control steps nearest a grid at fps [Hz]."""
    grid = np.arange(times_s[0], times_s[-1] + 1e-9, 1.0 / fps)
    return np.unique(np.clip(np.searchsorted(times_s, grid), 0, times_s.size - 1))


def render_tracking_frames(bundle: TrackerBundle, result: RolloutResult, *, fps: float = 20.0, width: int = 352,
                           height: int = 352) -> np.ndarray:
    """(N, height, 2 width, 3) uint8 frames: reference left, physics right, at fps [Hz] (sizes that are
    multiples of 16 encode as H.264 without resizing)."""
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    import mujoco

    if result.base_quat_wxyz is None or result.ref_base_quat_wxyz is None:
        raise ValueError("the rollout result has no base orientations to render")
    model = mujoco.MjModel.from_xml_path(str(bundle.model_path))
    # software rendering: draw the visual meshes only (collision meshes hidden), no multisampling, no shadows
    model.geom_rgba[(model.geom_group == 0) & (model.geom_type == mujoco.mjtGeom.mjGEOM_MESH), 3] = 0.0
    model.vis.quality.offsamples = 0
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
    model.vis.global_.offheight = max(model.vis.global_.offheight, height)
    hinge_qpos = np.array([model.jnt_qposadr[j] for j in range(1, model.njnt)])
    data = mujoco.MjData(model)
    renderer = mujoco.Renderer(model, height, width)
    camera = mujoco.MjvCamera()
    camera.distance, camera.azimuth, camera.elevation = 3.0, 135.0, -15.0
    panels = (
        (result.ref_base_pos_world, result.ref_base_quat_wxyz, result.ref_joint_pos_rad),
        (result.base_pos_world, result.base_quat_wxyz, result.joint_pos_rad),
    )
    frames = []
    try:
        for k in _subsample(result.times_s, fps):
            row = []
            for pos, quat, joints in panels:
                data.qpos[:3], data.qpos[3:7], data.qpos[hinge_qpos] = pos[k], quat[k], joints[k]
                mujoco.mj_forward(model, data)
                camera.lookat[:] = [pos[k, 0], pos[k, 1], 0.8]
                renderer.update_scene(data, camera=camera)
                renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
                row.append(renderer.render().copy())
            frames.append(np.concatenate(row, axis=1))
    finally:
        renderer.close()
    return np.stack(frames)


def save_tracking_video(bundle: TrackerBundle, result: RolloutResult, path: str | Path, *, fps: float = 20.0) -> Path:
    """Render a rollout (`render_tracking_frames`) to .mp4 or .gif."""
    from momask_model.motion.render import write_frames

    return write_frames(render_tracking_frames(bundle, result, fps=fps), path, fps=fps)
