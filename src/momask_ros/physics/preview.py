"""Robot preview: play a joint trajectory on the robot's MuJoCo model and render an MP4 (or show it live).

It loads the same robot description the retargeter uses, so what you see is what the robot is told.
Kinematic playback: the floating base is placed at the base pose and each hinge at its commanded
position; no dynamics. The scene (checker floor, sky, a light and a camera that follow the robot, 960x540)
is `momask_ros.physics.backdrop`'s. Offscreen rendering on CPU needs ``MUJOCO_GL=osmesa`` (Debian's
libosmesa6).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np


class PlaybackError(ValueError):
    """A trajectory does not fit the robot model (unknown joint, wrong shape, NaN)."""


def scene_model(description: str | Path):
    """Compile a robot description (MJCF or URDF) in the videos' scene: a floor when it has none (visual
    only, no contacts) and `backdrop.dress_scene`'s sky, checker and light that follows the base."""
    import mujoco

    from momask_ros.physics.backdrop import dress_scene, free_base_body

    spec = mujoco.MjSpec.from_file(str(description))
    if not any(g.type == mujoco.mjtGeom.mjGEOM_PLANE for g in spec.worldbody.geoms):
        floor = spec.worldbody.add_geom()
        floor.name = "preview_floor"
        floor.type = mujoco.mjtGeom.mjGEOM_PLANE
        floor.size = [0, 0, 0.05]
        floor.contype = 0
        floor.conaffinity = 0
    dress_scene(spec, follow_body=free_base_body(spec))
    return spec.compile()


def _free_joint_adr(model) -> int | None:
    import mujoco

    for j in range(model.njnt):
        if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE:
            return int(model.jnt_qposadr[j])
    return None


class TrajectoryPlayer:
    """Sets a MuJoCo model's qpos from named joint positions and a base pose."""

    def __init__(self, model, joint_names: Sequence[str]) -> None:
        import mujoco

        self.model = model
        self.data = mujoco.MjData(model)
        self.joint_names = list(joint_names)
        adrs = []
        for name in self.joint_names:
            jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
            if jid < 0:
                raise PlaybackError(f"joint {name!r} is not in the robot model")
            adrs.append(int(model.jnt_qposadr[jid]))
        self.qpos_adr = np.asarray(adrs, dtype=np.int64)
        self.free_adr = _free_joint_adr(model)

    def set_pose(
        self, positions: np.ndarray, base_position: np.ndarray | None = None, base_quat_wxyz: np.ndarray | None = None
    ) -> None:
        import mujoco

        positions = np.asarray(positions, dtype=np.float64)
        if positions.shape != (len(self.joint_names),) or not np.isfinite(positions).all():
            raise PlaybackError(f"positions must be finite with shape ({len(self.joint_names)},), got {positions.shape}")
        self.data.qpos[self.qpos_adr] = positions
        if self.free_adr is not None and base_position is not None:
            self.data.qpos[self.free_adr : self.free_adr + 3] = base_position
            if base_quat_wxyz is not None:
                self.data.qpos[self.free_adr + 3 : self.free_adr + 7] = base_quat_wxyz
        mujoco.mj_forward(self.model, self.data)

    def base_position(self) -> np.ndarray:
        """The floating base's position [m] (the origin for a robot without one)."""
        if self.free_adr is None:
            return np.zeros(3)
        return self.data.qpos[self.free_adr : self.free_adr + 3].copy()

    def rest_base_height(self) -> float:
        """The base's height in the model's zero pose [m]."""
        return float(self.model.qpos0[self.free_adr + 2]) if self.free_adr is not None else 1.0


def render_trajectory(
    model,
    joint_names: Sequence[str],
    positions: np.ndarray,
    *,
    base_position: np.ndarray | None = None,
    base_quat_wxyz: np.ndarray | None = None,
    width: int | None = None,
    height: int | None = None,
) -> np.ndarray:
    """Render frames (N, H, W, 3) uint8 of a trajectory (default size `backdrop.VIDEO_SIZE`) with
    `backdrop.FollowCamera` looking at the base."""
    import mujoco

    from momask_ros.physics.backdrop import VIDEO_SIZE, FollowCamera

    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != len(joint_names):
        raise PlaybackError(f"positions must be (N, {len(joint_names)}), got {positions.shape}")
    player = TrajectoryPlayer(model, joint_names)
    renderer = mujoco.Renderer(model, height or VIDEO_SIZE[1], width or VIDEO_SIZE[0])
    camera = FollowCamera(height_m=0.8 * player.rest_base_height())  # a little below the pelvis
    frames = []
    try:
        for i in range(positions.shape[0]):
            bp = None if base_position is None else base_position[i]
            bq = None if base_quat_wxyz is None else base_quat_wxyz[i]
            player.set_pose(positions[i], bp, bq)
            renderer.update_scene(player.data, camera=camera.aim(player.base_position()))
            frames.append(renderer.render().copy())
    finally:
        renderer.close()
    return np.stack(frames)


def save_robot_video(
    description: str | Path,
    joint_names: Sequence[str],
    positions: np.ndarray,
    path: str | Path,
    *,
    fps: float,
    base_position: np.ndarray | None = None,
    base_quat_wxyz: np.ndarray | None = None,
    max_fps: float = 30.0,
) -> Path:
    """Render a robot trajectory to MP4 (or GIF). High control rates are subsampled to ``max_fps``."""
    import imageio.v2 as imageio

    os.environ.setdefault("MUJOCO_GL", "osmesa")
    step = max(1, int(round(fps / max_fps)))
    sel = slice(None, None, step)
    model = scene_model(description)
    frames = render_trajectory(
        model,
        joint_names,
        np.asarray(positions)[sel],
        base_position=None if base_position is None else np.asarray(base_position)[sel],
        base_quat_wxyz=None if base_quat_wxyz is None else np.asarray(base_quat_wxyz)[sel],
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out_fps = fps / step
    if path.suffix.lower() == ".gif":
        imageio.mimsave(path, list(frames), duration=1.0 / out_fps, loop=0)
    else:
        with imageio.get_writer(path, fps=out_fps, codec="libx264", quality=7, macro_block_size=2) as writer:
            for frame in frames:
                writer.append_data(frame)
    return path


def live_view(description: str | Path, joint_names, positions, *, fps: float, base_position=None, base_quat_wxyz=None):
    """Open MuJoCo's passive viewer and play the trajectory in real time (needs a display)."""
    import time

    import mujoco.viewer

    model = scene_model(description)
    player = TrajectoryPlayer(model, joint_names)
    with mujoco.viewer.launch_passive(model, player.data) as viewer:
        for i in range(len(positions)):
            if not viewer.is_running():
                break
            player.set_pose(
                positions[i],
                None if base_position is None else base_position[i],
                None if base_quat_wxyz is None else base_quat_wxyz[i],
            )
            viewer.sync()
            time.sleep(1.0 / fps)
