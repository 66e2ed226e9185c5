"""Motion-capture import: BVH and DeepMimic to HumanML3D joints, skeleton maps, the demo dataset."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from momask_model.data.mocap import (
    MocapFormatError,
    SkeletonMap,
    SkeletonMapError,
    bvh_to_joints,
    deepmimic_to_joints,
    forward_kinematics,
    load_bvh,
    load_deepmimic_character,
    load_deepmimic_clip,
    load_skeleton_map,
    parse_bvh,
)
from momask_model.data.mocap.demo_dataset import build_demo_dataset
from momask_model.data.mocap.demo_skills import CAPTIONS, HELDOUT_CAPTIONS
from momask_model.motion.features import features_to_joints, joints_to_features, normalize_joint_positions
from momask_model.motion.skeleton import JOINT_NAMES


# ------------------------------------------------------------------------------------------
# BVH
# ------------------------------------------------------------------------------------------


def _rx(d: float) -> np.ndarray:
    a = math.radians(d)
    return np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])


def _ry(d: float) -> np.ndarray:
    a = math.radians(d)
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def _rz(d: float) -> np.ndarray:
    a = math.radians(d)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


SMALL_BVH = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Chest
  {
    OFFSET 0 10 0
    CHANNELS 3 Yrotation Xrotation Zrotation
    JOINT Arm
    {
      OFFSET 5 0 0
      CHANNELS 4 Xposition Xrotation Zrotation Yrotation
      End Site
      {
        OFFSET 3 0 0
      }
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.05
1 2 3 0 0 0 0 0 0 5 0 0 0
1 2 3 90 0 0 30 0 0 6 0 0 -45
"""


def test_bvh_fk_matches_hand_computed_positions():
    clip = parse_bvh(SMALL_BVH, "small.bvh")
    assert clip.skeleton.joint_names == ("Hips", "Chest", "Arm")
    pos, _ = forward_kinematics(clip.poses())
    # Frame 0: all rotations zero, the Arm's Xposition channel (5) replaces its offset's x.
    np.testing.assert_allclose(pos[0], [[1, 2, 3], [1, 12, 3], [6, 12, 3]], atol=1e-9)
    # Frame 1, computed independently: R_hips = Rz(90) Rx(0) Ry(0); R_chest = Ry(30);
    # the Arm translates by (6, 0, 0) in the chest frame (its Yrotation does not move it).
    r_hips = _rz(90) @ _rx(0) @ _ry(0)
    r_chest = r_hips @ (_ry(30) @ _rx(0) @ _rz(0))
    hips = np.array([1.0, 2, 3])
    chest = hips + r_hips @ np.array([0.0, 10, 0])
    arm = chest + r_chest @ np.array([6.0, 0, 0])
    np.testing.assert_allclose(pos[1], [hips, chest, arm], atol=1e-9)


def test_bvh_euler_order_follows_channel_list():
    # Same angles, two channel orders: the positions must differ exactly as Rz·Rx·Ry vs Rx·Rz·Ry.
    text = SMALL_BVH.replace("Frames: 2", "Frames: 1").rsplit("\n", 3)[0] + "\n0 0 0 40 70 0 0 0 0 5 0 0 0\n"
    pos, _ = forward_kinematics(parse_bvh(text).poses())
    expected_chest = _rz(40) @ _rx(70) @ np.array([0.0, 10, 0])
    np.testing.assert_allclose(pos[0, 1], expected_chest, atol=1e-9)
    swapped = text.replace("Zrotation Xrotation Yrotation", "Xrotation Zrotation Yrotation", 1)
    pos2, _ = forward_kinematics(parse_bvh(swapped).poses())
    np.testing.assert_allclose(pos2[0, 1], _rx(40) @ _rz(70) @ np.array([0.0, 10, 0]), atol=1e-9)


def _mixamo_bvh(frames: int, frame_time: float, prefix: str = "mixamorig:") -> str:
    """A rest-pose humanoid with Mixamo names (centimetres), the root walking along +Z."""
    tree = [
        ("Hips", None, (0, 100, 0)),
        ("Spine", "Hips", (0, 10, 0)), ("Spine1", "Spine", (0, 12, 0)), ("Spine2", "Spine1", (0, 12, 0)),
        ("Neck", "Spine2", (0, 15, 0)), ("Head", "Neck", (0, 10, 0)),
        ("LeftShoulder", "Spine2", (6, 12, 0)), ("LeftArm", "LeftShoulder", (12, 0, 0)),
        ("LeftForeArm", "LeftArm", (26, 0, 0)), ("LeftHand", "LeftForeArm", (25, 0, 0)),
        ("RightShoulder", "Spine2", (-6, 12, 0)), ("RightArm", "RightShoulder", (-12, 0, 0)),
        ("RightForeArm", "RightArm", (-26, 0, 0)), ("RightHand", "RightForeArm", (-25, 0, 0)),
        ("LeftUpLeg", "Hips", (9, -6, 0)), ("LeftLeg", "LeftUpLeg", (0, -42, 0)),
        ("LeftFoot", "LeftLeg", (0, -42, 0)), ("LeftToeBase", "LeftFoot", (0, -8, 12)),
        ("RightUpLeg", "Hips", (-9, -6, 0)), ("RightLeg", "RightUpLeg", (0, -42, 0)),
        ("RightFoot", "RightLeg", (0, -42, 0)), ("RightToeBase", "RightFoot", (0, -8, 12)),
    ]
    children: dict[str | None, list] = {}
    for name, parent, off in tree:
        children.setdefault(parent, []).append((name, off))
    lines = ["HIERARCHY"]

    def emit(name: str, off: tuple, depth: int, root: bool) -> None:
        pad = "  " * depth
        lines.append(f"{pad}{'ROOT' if root else 'JOINT'} {prefix}{name}")
        lines.append(pad + "{")
        lines.append(f"{pad}  OFFSET {off[0]} {off[1]} {off[2]}")
        chans = "6 Xposition Yposition Zposition Zrotation Xrotation Yrotation" if root else "3 Zrotation Xrotation Yrotation"
        lines.append(f"{pad}  CHANNELS {chans}")
        kids = children.get(name, [])
        if not kids:
            lines.extend([pad + "  End Site", pad + "  {", pad + "    OFFSET 0 5 0", pad + "  }"])
        for kid, koff in kids:
            emit(kid, koff, depth + 1, False)
        lines.append(pad + "}")

    emit("Hips", (0, 0, 0), 0, True)
    lines += ["MOTION", f"Frames: {frames}", f"Frame Time: {frame_time}"]
    for f in range(frames):
        vals = [0.0, 100.0, 2.0 * f] + [0.0] * (3 + 3 * (len(tree) - 1))
        lines.append(" ".join(f"{v:g}" for v in vals))
    return "\n".join(lines) + "\n"


def test_bvh_to_joints_maps_names_units_and_rate(tmp_path: Path):
    path = tmp_path / "walk.bvh"
    path.write_text(_mixamo_bvh(frames=61, frame_time=1 / 60, prefix="mixamorig1:"))  # other prefix
    joints = bvh_to_joints(path, skeleton_map="mixamo", normalize=True)  # centimetres detected from the height
    assert joints.shape == (21, 22, 3)  # 1 s at 60 fps -> 20 fps
    assert joints[..., 1].min() == pytest.approx(0.0, abs=1e-9)
    # Pelvis 0.98 m above the toes' lowest point; hips 0.18 m apart; body faces +Z, left at +x.
    pelvis, lhip, rhip = (joints[0, JOINT_NAMES.index(n)] for n in ("pelvis", "left_hip", "right_hip"))
    assert pelvis[1] == pytest.approx(0.98, abs=1e-6)
    assert lhip[0] - rhip[0] == pytest.approx(0.18, abs=1e-6)
    # Root moves 2 cm per source frame = 6 cm per output frame, along +Z (its facing).
    np.testing.assert_allclose(np.diff(joints[:, 0, 2]), 0.06, atol=1e-9)
    # The auto-picked map is mixamo too.
    np.testing.assert_allclose(bvh_to_joints(path, normalize=True), joints)


def test_bvh_z_up_option_is_a_rotation_not_a_mirror(tmp_path: Path):
    y_up = parse_bvh(_mixamo_bvh(3, 0.05))
    # The same body written Z-up: (x, y, z) -> (x, -z, y) on every offset and root position.
    text = _mixamo_bvh(3, 0.05)
    out = []
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "OFFSET":
            x, y, z = map(float, parts[1:])
            line = line.split("OFFSET")[0] + f"OFFSET {x} {-z} {y}"
        elif parts and parts[0][0].isdigit() or (parts and parts[0].startswith("-")):
            vals = list(map(float, parts))
            vals[1], vals[2] = -vals[2], vals[1]
            line = " ".join(f"{v:g}" for v in vals)
        out.append(line)
    z_up = parse_bvh("\n".join(out) + "\n")
    a = bvh_to_joints(y_up, skeleton_map="mixamo")
    b = bvh_to_joints(z_up, skeleton_map="mixamo", up_axis="z")
    np.testing.assert_allclose(a, b, atol=1e-9)


@pytest.mark.parametrize(
    "mutate, line_word",
    [
        (lambda t: t.replace("CHANNELS 3 Yrotation Xrotation Zrotation", "CHANNELS 4 Yrotation Xrotation Zrotation"), "line 10"),
        (lambda t: t.rsplit("\n", 2)[0] + "\n", "truncated motion"),
        (lambda t: t.replace("1 2 3 90 0 0 30 0 0 6 0 0 -45", "1 2 3 90 0 0 30 0 0 6 0 0"), "line 25"),
        (lambda t: t.replace("CHANNELS 3 Yrotation", "CHANNELS 3 Wrotation"), "line 9"),
    ],
    ids=["bad-channel-count", "truncated", "short-frame", "unknown-channel"],
)
def test_malformed_bvh_names_file_and_line(tmp_path: Path, mutate, line_word: str):
    path = tmp_path / "broken.bvh"
    path.write_text(mutate(SMALL_BVH))
    with pytest.raises(MocapFormatError) as info:
        load_bvh(path)
    message = str(info.value)
    assert "broken.bvh" in message and "line " in message
    assert line_word in message


# ------------------------------------------------------------------------------------------
# Skeleton maps
# ------------------------------------------------------------------------------------------


def test_shipped_skeleton_maps_load_and_place_all_22_joints():
    for name in ("deepmimic_humanoid3d", "cmu", "mixamo"):
        smap = load_skeleton_map(name)
        placed = set(smap.joints) | {d.joint for d in smap.derived}
        assert placed == set(JOINT_NAMES)


def test_skeleton_map_rejects_missing_targets_and_unknown_rules():
    with pytest.raises(SkeletonMapError, match="does not place"):
        SkeletonMap.from_dict({"joints": {"pelvis": "Hips"}})
    full = {name: name for name in JOINT_NAMES if name != "head"}
    with pytest.raises(SkeletonMapError, match="unknown rule"):
        SkeletonMap.from_dict({"joints": full, "derived": [{"joint": "head", "rule": "guess"}]})
    smap = SkeletonMap.from_dict({"joints": full, "derived": [{"joint": "head", "rule": "extend", "from": "spine3", "to": "neck", "length_m": 0.1}]})
    with pytest.raises(SkeletonMapError, match="lacks"):
        smap.resolve(["pelvis"])


# ------------------------------------------------------------------------------------------
# DeepMimic
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deepmimic(shared_data: Path):
    root = shared_data / "deepmimic_mocap"
    return root, load_deepmimic_character(root / "characters" / "humanoid3d.txt")


def test_deepmimic_walk_round_trips_through_features_and_is_a_walking_human(deepmimic):
    root, character = deepmimic
    clip = load_deepmimic_clip(root / "motions" / "humanoid3d_walk.txt", character)
    joints = deepmimic_to_joints(clip, cycles=3)
    assert abs(len(joints) - round(3 * clip.poses.duration_s * 20)) <= 1  # 20 fps
    features = joints_to_features(joints)
    assert features.shape == (len(joints) - 1, 263)
    recovered = features_to_joints(features)
    np.testing.assert_allclose(recovered, normalize_joint_positions(joints)[:-1], atol=1e-3)

    idx = {n: i for i, n in enumerate(JOINT_NAMES)}
    head_above_pelvis = joints[:, idx["head"], 1] - joints[:, idx["pelvis"], 1]
    assert 0.5 < head_above_pelvis.mean() < 0.7
    feet = joints[:, [idx["left_ankle"], idx["right_ankle"], idx["left_foot"], idx["right_foot"]], 1]
    assert feet.min(axis=1).max() < 0.06  # a foot touches the floor in every frame
    travel = joints[-1, 0] - joints[0, 0]
    assert travel[2] > 3.0 and abs(travel[0]) < 0.3 * travel[2]  # walks forward along +Z
    assert joints[0, idx["left_hip"], 0] > joints[0, idx["right_hip"], 0]  # left side at +x


def test_deepmimic_loop_carries_displacement_without_duplicating_the_seam(deepmimic):
    root, character = deepmimic
    clip = load_deepmimic_clip(root / "motions" / "humanoid3d_run.txt", character)
    one = deepmimic_to_joints(clip, cycles=1, normalize=False, fps=30)
    three = deepmimic_to_joints(clip, cycles=3, normalize=False, fps=30)
    step = one[-1, 0] - one[0, 0]
    total = three[-1, 0] - three[0, 0]
    np.testing.assert_allclose(total[[0, 2]], 3 * step[[0, 2]], rtol=0.05, atol=0.05)
    # run.txt is ~0.8 s of 30 Hz key frames; 3 cycles without duplicated seam frames last 3x as long.
    assert len(three) == math.floor(3 * clip.poses.duration_s * 30 + 1e-9) + 1
    assert np.linalg.norm(np.diff(three[:, 0], axis=0), axis=-1).min() > 1e-3


def test_deepmimic_half_speed_doubles_the_frames(deepmimic):
    root, character = deepmimic
    clip = load_deepmimic_clip(root / "motions" / "humanoid3d_jump.txt", character)
    normal = deepmimic_to_joints(clip, normalize=False)
    slow = deepmimic_to_joints(clip, speed=0.5, normalize=False)
    assert abs(len(slow) - 2 * len(normal)) <= 2
    np.testing.assert_allclose(slow[::2][: len(normal) - 1], normal[: len(normal) - 1], atol=2e-3)


def test_malformed_deepmimic_json_names_file_and_key(deepmimic, tmp_path: Path):
    root, character = deepmimic
    import json

    data = json.loads((root / "motions" / "humanoid3d_walk.txt").read_text())
    data["Frames"][3] = data["Frames"][3][:-2]
    bad = tmp_path / "humanoid3d_bad.txt"
    bad.write_text(json.dumps(data))
    with pytest.raises(MocapFormatError, match=r"humanoid3d_bad\.txt: key 'Frames\[3\]': expected 44 numbers"):
        load_deepmimic_clip(bad, character)
    bad.write_text('{"Loop": "wrap", "Frames": [[0.1, ')
    with pytest.raises(MocapFormatError, match=r"humanoid3d_bad\.txt: line 1"):
        load_deepmimic_clip(bad, character)
    bad.write_text('{"Loop": "wrap"}')
    with pytest.raises(MocapFormatError, match="key 'Frames'"):
        load_deepmimic_clip(bad, character)


# ------------------------------------------------------------------------------------------
# Demo dataset
# ------------------------------------------------------------------------------------------


def test_demo_dataset_mirrors_captions_and_keeps_heldout_captions_out(shared_data: Path, tmp_path: Path):
    out = tmp_path / "demo"
    summary = build_demo_dataset(shared_data / "deepmimic_mocap", out, seed=1, variants_per_skill=3)
    assert summary.clips == 20 and summary.items == 2 * 20 * 3
    assert set(CAPTIONS) == set(HELDOUT_CAPTIONS) and len(CAPTIONS) == 20
    assert all(len(v) >= 5 for v in CAPTIONS.values()) and all(len(v) >= 2 for v in HELDOUT_CAPTIONS.values())

    kick = (out / "texts" / "kick_000.txt").read_text()
    mirrored = (out / "texts" / "Mkick_000.txt").read_text()
    assert "right leg" in kick and "left" not in kick
    assert "left leg" in mirrored and "right" not in mirrored

    written = " ".join(p.read_text().lower() for p in (out / "texts").glob("*.txt"))
    heldout = [c for caps in HELDOUT_CAPTIONS.values() for c in caps]
    assert not [c for c in heldout if c + "#" in written]

    for split in ("train", "val", "test"):
        assert (out / f"{split}.txt").read_text().split()
    for path in (out / "new_joint_vecs").glob("*.npy"):
        frames = np.load(path)
        assert frames.shape[1] == 263 and 40 <= len(frames) <= 196, path.name
    mean, std = np.load(out / "Mean.npy"), np.load(out / "Std.npy")
    assert mean.shape == std.shape == (263,) and np.all(std > 0)
