"""How the robot videos look: a checker floor, a sky, a light that follows the robot, a camera that follows it.

The kinematic previews (`momask_ros.physics.preview`) and the simulator's MP4 (`momask_ros.physics.video`)
share this backdrop, so a user compares like with like. Everything here is visual: no joint, mass or
collision property of the robot or the floor changes.

* The floor's checker (0.5 m squares with edge lines) shows how far and how fast the robot travels;
  a plain floor hides forward motion.
* The light tracks the robot's centre of mass (MuJoCo ``trackcom``), so its shadow stays under it
  however far it walks; a fixed light loses it once the robot leaves its cone.
* The camera (`FollowCamera`) follows the base horizontally at a fixed height, so a jump or a crawl
  reads as a change of height in the frame.
* Software rendering (``MUJOCO_GL=osmesa``) costs most in multisampling (off: it doubled a frame's
  cost) and the shadow map (2048, not MuJoCo's 4096): about 0.1 s per 960x540 frame on one CPU core
  (`benchmarks/bench_video.py`). H.264 takes the even 540 as it is (no resizing to a multiple of 16).
"""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

#: Video frame size (width, height) [px]: what people watch, at a rendering cost a CPU keeps up with.
VIDEO_SIZE = (960, 540)
#: Largest frame a dressed model can render offscreen [px].
MAX_SIZE = (1920, 1080)
#: Side of one floor square [m].
GRID_M = 0.5

_SKY_TOP, _SKY_HORIZON = [0.38, 0.55, 0.78], [0.88, 0.91, 0.95]
_FLOOR_A, _FLOOR_B, _FLOOR_LINE = [0.36, 0.42, 0.48], [0.28, 0.33, 0.39], [0.62, 0.66, 0.70]


def _has_skybox(spec: mujoco.MjSpec) -> bool:
    return any(int(t.type) == int(mujoco.mjtTexture.mjTEXTURE_SKYBOX) for t in spec.textures)


def dress_scene(spec: mujoco.MjSpec, *, follow_body: str | None) -> None:
    """Give ``spec`` the videos' look, in place (before compiling).

    Args:
        spec: a robot description with its floor already added (every plane geom without a material
            gets the checker).
        follow_body: the body whose subtree the light tracks (the floating base); None = a fixed light.
    """
    if not _has_skybox(spec):
        spec.add_texture(name="momask_sky", type=mujoco.mjtTexture.mjTEXTURE_SKYBOX,
                         builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT, rgb1=_SKY_TOP, rgb2=_SKY_HORIZON,
                         width=256, height=1536)
    planes = [g for g in spec.geoms if int(g.type) == int(mujoco.mjtGeom.mjGEOM_PLANE) and not g.material]
    if planes:
        spec.add_texture(name="momask_grid", type=mujoco.mjtTexture.mjTEXTURE_2D,
                         builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER, mark=mujoco.mjtMark.mjMARK_EDGE,
                         rgb1=_FLOOR_A, rgb2=_FLOOR_B, markrgb=_FLOOR_LINE, width=512, height=512)
        # texuniform: texrepeat is per metre; one checker texture holds 2x2 squares
        spec.add_material(name="momask_grid", textures=["", "momask_grid"], texuniform=True,
                          texrepeat=[1.0 / (2 * GRID_M)] * 2)  # no reflectance: a second scene pass
        for plane in planes:
            plane.material = "momask_grid"
            plane.rgba = [1.0, 1.0, 1.0, 1.0]  # a geom colour would tint the texture
            if not plane.size[0] or not plane.size[1]:  # an infinite plane renders as a small tile
                plane.size = [50.0, 50.0, plane.size[2] or 0.05]
    body = spec.body(follow_body) if follow_body else None
    parent = body if body is not None else spec.worldbody
    light = parent.add_light(name="momask_sun", pos=[1.5, -1.0, 4.0], dir=[-0.45, 0.3, -1.0], castshadow=True,
                             diffuse=[0.7, 0.7, 0.66], specular=[0.1, 0.1, 0.1], ambient=[0.1, 0.1, 0.1])
    light.type = mujoco.mjtLightType.mjLIGHT_DIRECTIONAL
    if body is not None:
        light.mode = mujoco.mjtCamLight.mjCAMLIGHT_TRACKCOM
    vis = spec.visual
    vis.headlight.ambient = [0.25, 0.25, 0.25]
    vis.headlight.diffuse = [0.3, 0.3, 0.3]
    vis.headlight.specular = [0.0, 0.0, 0.0]
    vis.quality.shadowsize = 2048   # MuJoCo's 4096 costs a third more per frame, for no visible gain at 960x540
    vis.quality.offsamples = 0      # multisampling doubles a software frame's cost
    vis.global_.offwidth = max(int(vis.global_.offwidth), MAX_SIZE[0])
    vis.global_.offheight = max(int(vis.global_.offheight), MAX_SIZE[1])


def free_base_body(spec: mujoco.MjSpec) -> str | None:
    """The name of the body that carries a free joint (the floating base), or None."""
    for body in spec.bodies:
        if any(int(j.type) == int(mujoco.mjtJoint.mjJNT_FREE) for j in body.joints):
            return body.name or None
    return None


@dataclass
class FollowCamera:
    """A free camera that keeps the robot's base in view from the front right.

    Attributes:
        height_m: height it looks at (fixed, so vertical motion shows in the frame) [m].
        distance_m, azimuth_deg, elevation_deg: where it stands relative to that point.
    """

    height_m: float = 0.9
    distance_m: float = 3.2
    azimuth_deg: float = 135.0
    elevation_deg: float = -14.0

    def aim(self, base_xyz: np.ndarray) -> mujoco.MjvCamera:
        """The camera for a frame whose base is at ``base_xyz`` [m] (world frame)."""
        cam = mujoco.MjvCamera()
        cam.type = mujoco.mjtCamera.mjCAMERA_FREE
        cam.distance, cam.azimuth, cam.elevation = self.distance_m, self.azimuth_deg, self.elevation_deg
        cam.lookat[:] = [float(base_xyz[0]), float(base_xyz[1]), self.height_m]
        return cam
