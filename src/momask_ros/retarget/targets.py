"""Human frame -> robot keypoint targets: scaling to the robot's proportions, foot contacts and planting.

Per Z-up human frame (HumanML3D joints after the axis conversion):

* foot contacts: a foot is in contact when it is low and slow (from the human data only);
* scaling: per part (legs, torso, arms) by segment-length ratio, the root by the leg ratio, with a
  vertical offset so the standing pelvis height matches (`KeypointTargets.calibrate`);
* feet never go below their rest height, and a foot in contact is planted (held in place) on the floor.

The state carried from frame to frame (previous human frame, planted-foot anchors) is what
`KeypointTargets.state` / `restore` save and put back when a stream rewinds.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from momask_ros.retarget.frames import human_yup_to_ros
from momask_ros.robot.model import Robot
from momask_ros.robot.profile import HUMAN_JOINT_NAMES, ProfileError

logger = logging.getLogger(__name__)

J = {name: i for i, name in enumerate(HUMAN_JOINT_NAMES)}
_LEG_JOINTS = ("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_foot",
               "right_foot")
_ARM_JOINTS = {"left_elbow": "left_shoulder", "left_wrist": "left_shoulder",
               "right_elbow": "right_shoulder", "right_wrist": "right_shoulder"}
_SIDES = ("left", "right")
MAX_FOOT_YAW_RAD = 0.8  # a human foot's heading stays within this of the pelvis' (hip and knee rotation)


# ----------------------------------------------------------------------------------------------- helpers


yup_to_zup = human_yup_to_ros  # HumanML3D axes -> ROS/MuJoCo axes, a proper rotation (never a mirror)


def check_joints(joints: np.ndarray, what: str = "joints_yup") -> np.ndarray:
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


# ----------------------------------------------------------------------------------------------- scaling


@dataclass(frozen=True)
class Scaling:
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


def robot_segment_lengths(robot: Robot) -> dict[str, float | None]:
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


def human_segment_lengths(j: np.ndarray, *, hips_anchor: bool) -> dict[str, float]:
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


# ----------------------------------------------------------------------------------------------- targets


@dataclass
class FrameTargets:
    """One frame's IK targets: keypoint positions (K, 3), per-keypoint rotations or None, contacts."""

    positions: np.ndarray
    rotations: list
    contacts: tuple[bool, bool]
    pelvis_rot: np.ndarray


class KeypointTargets:
    """Maps Z-up human frames onto the robot's keypoint targets (see the module docstring).

    Args:
        robot: from `load_robot`.
        settings: the `Retargeter` (its rest heights, contact and replanting thresholds).
        fps: frame rate of the human frames [Hz] (contact speeds).
    """

    def __init__(self, robot: Robot, settings, fps: float) -> None:
        self.robot = robot
        self.rt = settings
        self.fps = fps
        self.scaling: Scaling | None = None
        self.prev_human: np.ndarray | None = None
        self.anchor: list[np.ndarray | None] = [None, None]
        kp = robot.keypoints
        self.kp_index = {k.human: i for i, k in enumerate(kp)}
        data = robot.forward(robot.rest_qpos)
        self.rest_site = np.array([data.site_xpos[s] for s in robot.keypoint_site_ids])
        self._foot_rows = [self.kp_index.get(f"{s}_ankle") for s in _SIDES]
        self._hips_anchor = "left_hip" in self.kp_index and "right_hip" in self.kp_index
        self._shoulder_rows = (self.kp_index["left_shoulder"], self.kp_index["right_shoulder"]) \
            if "left_shoulder" in self.kp_index and "right_shoulder" in self.kp_index else None

    def state(self) -> tuple:
        """What the next frame depends on: (previous human frame, foot anchors), copied."""
        return self.prev_human, [None if a is None else a.copy() for a in self.anchor]

    def restore(self, state: tuple | None) -> None:
        """Put back a `state` (None: as before the first frame)."""
        if state is None:
            self.prev_human, self.anchor = None, [None, None]
        else:
            human, anchors = state
            self.prev_human = human
            self.anchor = [None if a is None else a.copy() for a in anchors]

    def frame(self, p: np.ndarray) -> FrameTargets:
        """Targets for the next Z-up human frame (advances the contact / planting state)."""
        contacts = self._human_contacts(p)
        self.prev_human = p
        rots = self._human_rotations(p, contacts)
        targets = self._scaled_targets(p, rots["pelvis"], rots["torso"])
        # Feet: never below their rest height; planted (held in place) while in contact.
        for k, row in enumerate(self._foot_rows):
            if row is None:
                continue
            floor_z = self.rest_site[row, 2]
            targets[row, 2] = max(targets[row, 2], floor_z)
            if contacts[k]:
                anchor = self.anchor[k]
                if anchor is None or np.linalg.norm(anchor[:2] - targets[row, :2]) > self.rt.replant_distance_m:
                    anchor = targets[row].copy()
                self.anchor[k] = anchor
                targets[row] = (anchor[0], anchor[1], floor_z)
            else:
                self.anchor[k] = None
        rot_targets = [rots[kp.orientation] if kp.orientation else None for kp in self.robot.keypoints]
        return FrameTargets(targets, rot_targets, contacts, rots["pelvis"])

    def calibrate(self, frames_zup: np.ndarray) -> None:
        """Scale factors and standing offset from the human's segment lengths in these frames."""
        human = human_segment_lengths(frames_zup, hips_anchor=self._hips_anchor)
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
        self.scaling = Scaling(scale["legs"], scale["torso"], scale["arms"], z_offset)
        logger.debug("retarget scaling for %s: %s", self.robot.profile.name, self.scaling)

    def _scaled_targets(self, p: np.ndarray, rot_pelvis: np.ndarray, rot_torso: np.ndarray) -> np.ndarray:
        """Keypoint targets (K, 3) in the robot world for one Z-up human frame.

        Each part is scaled about an anchor placed where the robot's own joint would be: the hip centre
        follows the human's (scaled by the leg ratio, standing height matched); the robot's pelvis and
        shoulders hang off it with the robot's rest offsets turned by the human pelvis / torso frames; legs,
        spine and arms are the human's offsets from those anchors, scaled per part. So a standing human
        maps onto the standing robot exactly, whatever the two bodies' proportions.
        """
        s = self.scaling
        rest = self.rest_site
        ix = self.kp_index
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
        prev = self.prev_human if self.prev_human is not None else p
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
        pelvis_yaw = math.atan2(pelvis[1, 0], pelvis[0, 0])
        for k, side in enumerate(_SIDES):
            fwd = p[J[f"{side}_foot"]] - p[J[f"{side}_ankle"]]
            horiz = float(np.hypot(fwd[0], fwd[1]))
            yaw = math.atan2(fwd[1], fwd[0]) if horiz > 1e-6 else pelvis_yaw
            # A foot points at most MAX_FOOT_YAW_RAD away from the pelvis' heading. Beyond that the ankle->toe
            # direction is a steeply pitched swing foot's noise, and following it twisted the robot's hip yaw
            # to its limit (runs, kicks, dances: the whole-body tracker then fell).
            off = (yaw - pelvis_yaw + math.pi) % (2.0 * math.pi) - math.pi
            yaw = pelvis_yaw + float(np.clip(off, -MAX_FOOT_YAW_RAD, MAX_FOOT_YAW_RAD))
            pitch = 0.0 if contacts[k] else math.atan2(-fwd[2], horiz) - self.rt.foot_rest_pitch_rad
            rots[f"{side}_foot"] = _yaw_pitch(yaw, float(np.clip(pitch, -1.0, 1.0)))
        return rots
