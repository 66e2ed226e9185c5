"""BVH export: the written file reproduces the joints under forward kinematics, reads back through the
project's own importer without a map, and its rotations read well (hinge knees/elbows, level feet)."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from momask_model.motion.bvh import BVH_JOINT_NAMES, BvhExportError, joint_rotations, rest_offsets, save_bvh
from momask_model.cli.main import generate_main
from momask_model.data.mocap.bvh import bvh_to_joints, load_bvh
from momask_model.data.mocap.kinematics import forward_kinematics
from momask_model.motion.skeleton import T2M_SKELETON

PARENTS = T2M_SKELETON.parents


def _file_fk(path):
    """World joint positions from the file alone: parse, FK, reorder by name to SMPL order."""
    clip = load_bvh(path)
    pos, _ = forward_kinematics(clip.poses())
    order = [clip.skeleton.joint_names.index(n) for n in BVH_JOINT_NAMES]
    return pos[:, order]


def _deepmimic(shared_data, skill):
    from momask_model.data.mocap.deepmimic import deepmimic_to_joints, load_deepmimic_character, load_deepmimic_clip

    root = shared_data / "deepmimic_mocap"
    character = load_deepmimic_character(root / "characters" / "humanoid3d.txt")
    return deepmimic_to_joints(load_deepmimic_clip(root / "motions" / f"humanoid3d_{skill}.txt", character))


def test_generated_motion_round_trips_through_the_written_file(tmp_path):
    """momask-generate --bvh with the packaged demo model: every joint of every frame within 1 cm."""
    out, bvh = tmp_path / "jog.npz", tmp_path / "jog.bvh"
    rc = generate_main(["--text", "a person jogs forward", "--seed", "1", "--device", "cpu", "--out", str(out),
                        "--bvh", str(bvh)])
    assert rc == 0
    data = np.load(out)
    joints = data["joints"][0, : int(data["lengths"][0])]
    bones = np.linalg.norm(joints[:, 1:] - joints[:, list(PARENTS[1:])], axis=-1)
    assert bones.std(axis=0).max() > 0.01  # generated bones are not rigid: rotations alone could not do this
    fk = _file_fk(bvh)
    assert fk.shape == joints.shape
    assert np.linalg.norm(fk - joints, axis=-1).max() < 0.01
    # the project's importer finds the shipped map by itself, and reads the file's own positions
    back = bvh_to_joints(bvh)
    assert np.linalg.norm(back - joints, axis=-1).max() < 0.01


def test_a_walk_away_from_the_origin_reads_back_where_it_was_written(tmp_path):
    """bvh_to_joints with its defaults is a reader: no move to the origin, the floor or +Z facing."""
    t = np.arange(40)[:, None]
    rest = np.zeros((22, 3))
    for j in range(1, 22):  # a standing figure along the kinematic chains, bones 10-20 cm
        rest[j] = rest[PARENTS[j]] + 0.15 * np.array(T2M_SKELETON.raw_offsets[j], float)
    joints = rest[None] + np.concatenate([0.05 * t, 1.0 + 0 * t, -0.04 * t], axis=1)[:, None]
    joints = joints @ Rotation.from_euler("y", 60, degrees=True).as_matrix().T  # facing away from +Z
    back = bvh_to_joints(save_bvh(joints, tmp_path / "walk.bvh"))
    assert np.linalg.norm(back - joints, axis=-1).max() < 1e-4
    moved = bvh_to_joints(tmp_path / "walk.bvh", normalize=True)  # the training set's normalisation
    assert abs(moved[..., 1].min()) < 1e-6 and np.linalg.norm(moved[0, 0, [0, 2]]) < 1e-6


def test_real_motion_round_trips_with_and_without_translation_channels(tmp_path, shared_data):
    joints = np.load(shared_data / "humanml3d_sample" / "new_joints" / "012314.npy").astype(np.float64)
    for mode in ("all", "root"):  # real (rigid) bones: rotations on the rest skeleton are enough too
        path = save_bvh(joints, tmp_path / f"{mode}.bvh", translations=mode)
        assert np.linalg.norm(_file_fk(path) - joints, axis=-1).max() < 0.01, mode
    text = (tmp_path / "root.bvh").read_text()
    assert text.count("CHANNELS 6") == 1 and text.count("CHANNELS 3") == 21
    assert "Frame Time: 0.050000" in text and f"Frames: {len(joints)}" in text


def _local(glob):
    par = np.swapaxes(glob[:, [max(p, 0) for p in PARENTS]], -1, -2)
    return par @ glob


def test_knees_and_elbows_bend_as_hinges_and_feet_stay_level(shared_data):
    joints = _deepmimic(shared_data, "walk")
    offsets = rest_offsets(joints)
    glob = joint_rotations(joints, offsets)
    local = _local(glob)
    # knee about the joint's left-right axis, elbow about the axis normal to the T-pose arm and forward
    for joint, axis in ((4, [1, 0, 0]), (5, [1, 0, 0]), (18, [0, 1, 0]), (19, [0, 1, 0])):
        rotvec = Rotation.from_matrix(local[:, joint]).as_rotvec()
        angle = np.linalg.norm(rotvec, axis=-1)
        bent = angle > np.radians(20)
        assert bent.sum() >= 5, joint
        cos = np.abs(rotvec[bent] @ np.array(axis, float)) / angle[bent]
        assert cos.min() > np.cos(np.radians(2)), joint
    for ankle, toe in ((7, 10), (8, 11)):
        rest = offsets[toe] / np.linalg.norm(offsets[toe])
        bone = joints[:, toe] - joints[:, ankle]
        bone /= np.linalg.norm(bone, axis=-1, keepdims=True)
        flat = (np.abs(bone[:, 1] - rest[1]) < np.sin(np.radians(2))) & (joints[:, toe, 1] < joints[:, toe, 1].min() + 0.01)
        assert flat.sum() >= 2, ankle
        up = glob[flat, ankle] @ np.array([0.0, 1.0, 0.0])
        assert np.degrees(np.arccos(np.clip(up[:, 1], -1, 1))).max() < 5.0, ankle  # a flat foot is a pure turn
    # continuous: no joint flips between frames of a walk at 20 fps
    step = Rotation.from_matrix(local[1:].reshape(-1, 3, 3)).inv() * Rotation.from_matrix(local[:-1].reshape(-1, 3, 3))
    assert np.degrees(step.magnitude()).max() < 45.0


def test_rest_skeleton_is_upright_t_pose_and_file_is_named_like_momask(tmp_path, shared_data):
    joints = np.load(shared_data / "humanml3d_sample" / "new_joints" / "012314.npy").astype(np.float64)
    off = rest_offsets(joints)
    assert off[1, 0] > 0.03 and off[2, 0] < -0.03  # left hip at +X
    assert off[3, 1] > 0.05 and off[12, 1] > 0.1  # spine and neck up
    assert off[18, 0] > 0.2 and off[19, 0] < -0.2 and abs(off[18, 1]) < 1e-9  # T-pose arms
    text = save_bvh(joints, tmp_path / "a.bvh").read_text()
    assert "ROOT Hips" in text and "JOINT LeftForeArm" in text and "JOINT RightToe" in text


@pytest.mark.parametrize("bad, match", [
    (np.zeros((5, 21, 3)), "shape"),
    (np.full((5, 22, 3), np.nan), "NaN"),
])
def test_bad_input_is_a_clear_error(tmp_path, bad, match):
    with pytest.raises(BvhExportError, match=match):
        save_bvh(bad, tmp_path / "x.bvh")
    with pytest.raises(BvhExportError, match="translations"):
        save_bvh(np.zeros((2, 22, 3)) + np.arange(22)[None, :, None], tmp_path / "x.bvh", translations="some")
