"""Skeleton constants, features <-> joints, normalisation and mirroring (design/momask.md §1.3–1.6)."""
import numpy as np
import pytest
import torch

from momask_model.data.synthetic import synthetic_walk
from momask_model.motion.feature_layout import InvalidMotionError, feature_dim, feature_slices, joints_num_from_dim
from momask_model.motion.features import features_to_joints, joints_to_features, normalize_joint_positions
from momask_model.motion.mirroring import mirror_caption, mirror_joints
from momask_model.motion.normalization import Normalizer, apply_feat_bias, compute_mean_std
from momask_model.motion.skeleton import JOINT_NAMES, KIT_SKELETON, T2M_SKELETON

SAMPLE_ID = "012314"


@pytest.fixture(scope="module")
def sample(shared_data):
    root = shared_data / "humanml3d_sample"
    return {
        "features": np.load(root / "new_joint_vecs" / f"{SAMPLE_ID}.npy"),
        "joints": np.load(root / "new_joints" / f"{SAMPLE_ID}.npy"),
        "mean": np.load(root / "Mean.npy"),
        "std": np.load(root / "Std.npy"),
    }


def _yaw(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _kit_from_t2m(p: np.ndarray) -> np.ndarray:
    """A 21-joint KIT-like figure built from the 22 SMPL joints (right leg 11-15, left leg 16-20)."""
    heel_r = p[:, 8] + 0.5 * (p[:, 11] - p[:, 8]) + np.array([0.0, -0.02, 0.0])
    heel_l = p[:, 7] + 0.5 * (p[:, 10] - p[:, 7]) + np.array([0.0, -0.02, 0.0])
    order = [p[:, 0], p[:, 3], p[:, 6], p[:, 9], p[:, 15], p[:, 17], p[:, 19], p[:, 21], p[:, 16], p[:, 18],
             p[:, 20], p[:, 2], p[:, 5], p[:, 8], heel_r, p[:, 11], p[:, 1], p[:, 4], p[:, 7], heel_l, p[:, 10]]
    return np.stack(order, axis=1)


# --- skeleton constants ----------------------------------------------------------------------


def test_feature_dims_match_the_datasets():
    assert feature_dim(22) == 263 and feature_dim(21) == 251
    assert joints_num_from_dim(263) == 22 and joints_num_from_dim(251) == 21
    with pytest.raises(InvalidMotionError, match="262"):
        joints_num_from_dim(262)


@pytest.mark.parametrize("skel", [T2M_SKELETON, KIT_SKELETON])
def test_feature_groups_tile_the_vector(skel):
    slices = list(feature_slices(skel.joints_num).values())
    assert slices[0].start == 0 and slices[-1].stop == skel.feature_dim
    assert all(a.stop == b.start for a, b in zip(slices[:-1], slices[1:]))


@pytest.mark.parametrize("skel", [T2M_SKELETON, KIT_SKELETON])
def test_parents_follow_the_kinematic_chains(skel):
    assert skel.parents[0] == -1 and len(skel.parents) == skel.joints_num == len(skel.raw_offsets)
    for chain in skel.kinematic_chain:
        for parent, child in zip(chain[:-1], chain[1:]):
            assert skel.parents[child] == parent
    # every joint is reachable from the root
    for j in range(skel.joints_num):
        k = j
        for _ in range(skel.joints_num):
            k = skel.parents[k]
            if k == -1:
                break
        assert k == -1


def test_joint_names_and_mirror_pairs_agree():
    assert len(JOINT_NAMES) == 22 and JOINT_NAMES[0] == "pelvis" and JOINT_NAMES[11] == "right_foot"
    for left, right in T2M_SKELETON.mirror_pairs:
        assert JOINT_NAMES[left].replace("left_", "right_") == JOINT_NAMES[right]
    assert [JOINT_NAMES[i] for i in T2M_SKELETON.face_joint_indx] == [
        "right_hip", "left_hip", "right_shoulder", "left_shoulder"]


# --- features -> joints ----------------------------------------------------------------------


def test_features_to_joints_reproduces_the_released_joints(sample):
    joints = features_to_joints(sample["features"])
    assert isinstance(joints, np.ndarray) and joints.dtype == np.float32 and joints.shape == (170, 22, 3)
    assert np.abs(joints - sample["joints"]).max() < 1e-4


def test_features_to_joints_torch_batched_and_differentiable(sample):
    feats = torch.from_numpy(sample["features"]).double().requires_grad_(True)
    batch = torch.stack((feats, feats))
    joints = features_to_joints(batch)
    assert isinstance(joints, torch.Tensor) and joints.shape == (2, 170, 22, 3) and joints.dtype == torch.float64
    assert (joints[0] - torch.from_numpy(sample["joints"]).double()).abs().max() < 1e-4
    joints[..., 1].sum().backward()
    assert feats.grad is not None and feats.grad[:, 3].abs().sum() > 0  # root height drives every y


def test_features_to_joints_rejects_bad_input(sample):
    bad = sample["features"].copy()
    bad[5, 10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        features_to_joints(bad)
    with pytest.raises(InvalidMotionError, match=r"\(170, 262\)"):
        features_to_joints(sample["features"][:, :262])
    with pytest.raises(InvalidMotionError, match="251"):
        features_to_joints(sample["features"], joints_num=21)


# --- joints -> features ----------------------------------------------------------------------


@pytest.mark.parametrize("turn_rate,heading", [(0.0, 0.0), (0.4, 1.0), (2.5, 2.0), (-1.5, -2.8)])
def test_round_trip_on_synthetic_walks(turn_rate, heading):
    # turn_rate 2.5 from heading 2.0 crosses ±180°, where the root yaw quaternion changes sign
    positions = synthetic_walk(120, turn_rate=turn_rate, heading=heading)
    feats = joints_to_features(positions)
    assert feats.shape == (119, 263) and feats.dtype == np.float32
    target = normalize_joint_positions(positions)[:-1]
    assert np.abs(features_to_joints(feats) - target).max() < 1e-4


def test_normalized_positions_are_floored_centred_and_face_plus_z():
    positions = synthetic_walk(60, heading=2.2) + np.array([3.0, 0.5, -1.0], dtype=np.float32)
    norm = normalize_joint_positions(positions)
    assert abs(norm[..., 1].min()) < 1e-9
    assert np.allclose(norm[0, 0, [0, 2]], 0.0, atol=1e-9)
    across = (norm[0, 2] - norm[0, 1]) + (norm[0, 17] - norm[0, 16])  # right minus left
    forward = np.cross([0.0, 1.0, 0.0], across)
    assert forward[2] > 0 and abs(forward[0]) < 1e-9
    assert norm[0, 1, 0] > norm[0, 2, 0]  # left hip on +X


def test_features_ignore_global_yaw_and_translation():
    positions = synthetic_walk(80, turn_rate=0.5).astype(np.float64)
    moved = positions @ _yaw(1.3).T + np.array([2.0, 0.3, -4.0])
    a, b = joints_to_features(positions), joints_to_features(moved)
    assert np.abs(a - b).max() < 1e-4


def test_foot_contacts_follow_the_threshold():
    positions = synthetic_walk(100).astype(np.float64)
    positions[40:60, [7, 10]] = positions[40, [7, 10]]  # plant the left foot for 20 frames
    feats = joints_to_features(positions)
    contacts = feats[:, -4:]
    assert set(np.unique(contacts)) <= {0.0, 1.0}
    assert contacts[40:59, 0:2].min() == 1.0
    assert contacts[:, 0:2].mean() < 1.0


def test_round_trip_on_kit_skeleton():
    positions = _kit_from_t2m(synthetic_walk(90, turn_rate=0.7).astype(np.float64))
    feats = joints_to_features(positions, KIT_SKELETON)
    assert feats.shape == (89, 251)
    target = normalize_joint_positions(positions, KIT_SKELETON)[:-1]
    assert np.abs(features_to_joints(feats, joints_num=21) - target).max() < 1e-4


def test_real_sample_round_trip_and_agreement_with_released_features(sample):
    joints, ref = sample["joints"], sample["features"]
    norm = normalize_joint_positions(joints)
    assert np.abs(norm - joints).max() < 1e-5  # the released joints are already normalised
    feats = joints_to_features(joints)
    assert feats.shape == (169, 263)
    assert np.abs(features_to_joints(feats) - norm[:-1]).max() < 1e-4
    # The reference was made from 171 position frames; we see 170, so the σ=20 heading smoothing
    # differs only within its 80-frame reach of the clip end. Before that everything (IK with the
    # facing quirk and 6D rotations included) matches to float precision.
    assert np.abs(feats[:85] - ref[:85]).max() < 1e-4
    s = feature_slices(22)
    for name in ("root_rot_vel", "root_lin_vel", "root_y", "local_vel", "foot_contact"):
        assert np.abs(feats[:, s[name]] - ref[:-1, s[name]]).max() < 1e-3, name
    assert np.abs(feats[:, s["ric"]] - ref[:-1, s["ric"]]).max() < 1e-2


def test_joints_to_features_rejects_bad_input():
    positions = synthetic_walk(10)
    with pytest.raises(InvalidMotionError, match=r"\(10, 21, 3\)"):
        joints_to_features(positions[:, :21])
    with pytest.raises(InvalidMotionError, match="at least 2"):
        joints_to_features(positions[:1])
    bad = positions.copy()
    bad[3, 4, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        joints_to_features(bad)
    flat = positions.copy()
    flat[:, 4] = flat[:, 1]  # knee on the hip: zero-length bone
    with pytest.raises(InvalidMotionError, match="zero-length"):
        joints_to_features(flat)


# --- mirroring ---------------------------------------------------------------------------------


def test_mirroring_twice_is_identity_and_commutes_with_extraction():
    positions = synthetic_walk(70, turn_rate=0.6, heading=0.4).astype(np.float64)
    mirrored = mirror_joints(positions)
    assert np.array_equal(mirror_joints(mirrored), positions)
    assert np.allclose(mirrored[:, 1, 0], -positions[:, 2, 0])
    feats, feats_m = joints_to_features(positions), joints_to_features(mirrored)
    assert np.abs(features_to_joints(feats_m) - mirror_joints(normalize_joint_positions(positions)[:-1])).max() < 1e-4
    assert np.array_equal(feats_m[:, -4:], feats[:, [-2, -1, -4, -3]])  # left/right contacts swap
    assert np.allclose(feats_m[:, 0], -feats[:, 0], atol=1e-5)  # turning left becomes turning right


def test_mirror_joints_torch_and_shape_check():
    p = torch.from_numpy(synthetic_walk(5))
    m = mirror_joints(p)
    assert isinstance(m, torch.Tensor) and torch.equal(m[:, 10], p[:, 11] * torch.tensor([-1.0, 1.0, 1.0]))
    with pytest.raises(InvalidMotionError, match="22"):
        mirror_joints(p[:, :20])


def test_mirror_caption_swaps_sides_and_keeps_case():
    assert mirror_caption("A man steps LEFT, then Right with his left hand.") == \
        "A man steps RIGHT, then Left with his right hand."
    assert mirror_caption("he walks leftwards and turns clockwise") == "he walks rightwards and turns counterclockwise"
    assert mirror_caption("Counterclockwise spin, standing upright in bright light") == \
        "Clockwise spin, standing upright in bright light"
    assert mirror_caption("right-handed throw") == "left-handed throw"


# --- normalisation -----------------------------------------------------------------------------


def test_released_std_is_constant_within_each_feature_group(sample):
    # checks our group boundaries against the shipped statistics
    for name, sl in feature_slices(22).items():
        group = sample["std"][sl]
        assert np.ptp(group) < 1e-6, name


def test_compute_mean_std_group_means_and_feat_bias():
    arrays = [joints_to_features(synthetic_walk(n, turn_rate=t)) for n, t in ((80, 0.2), (120, -0.5), (60, 1.0))]
    data = np.concatenate(arrays)
    mean, plain = compute_mean_std(arrays, 22, feat_bias=1.0)
    assert mean.dtype == np.float32 and np.allclose(mean, data.mean(0), atol=1e-6)
    raw_std = data.std(0)
    for sl in feature_slices(22).values():
        assert np.allclose(plain[sl], raw_std[sl].mean(), rtol=1e-5)
    _, once = compute_mean_std(arrays, 22)
    _, twice = compute_mean_std(arrays, 22, double_feat_bias=True)
    biased = np.r_[0:4, 259:263]
    assert np.allclose(once[biased], plain[biased] / 5) and np.allclose(twice[biased], plain[biased] / 25)
    assert np.array_equal(once[4:259], plain[4:259])
    assert np.allclose(apply_feat_bias(plain, 22, feat_bias=5.0), once)


def test_compute_mean_std_rejects_bad_arrays():
    good = joints_to_features(synthetic_walk(30))
    with pytest.raises(InvalidMotionError, match="feature array 1"):
        compute_mean_std([good, good[:, :200]], 22)
    bad = good.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="feature array 0 contains NaN"):
        compute_mean_std([bad], 22)


def test_normalizer_round_trips_numpy_and_torch(sample):
    norm = Normalizer(sample["mean"], sample["std"])
    x = sample["features"]
    z = norm.normalize(x)
    assert z.dtype == np.float32 and np.allclose(norm.denormalize(z), x, atol=1e-5)
    assert abs(z[:, 3].mean()) < 5  # root height lands near the dataset mean
    zt = norm.normalize(torch.from_numpy(x).double())
    assert zt.dtype == torch.float64 and np.allclose(zt.numpy(), z, atol=1e-5)
    assert torch.allclose(norm.denormalize(zt), torch.from_numpy(x).double(), atol=1e-5)
    with pytest.raises(InvalidMotionError, match="251"):
        norm.normalize(np.zeros((3, 251), dtype=np.float32))


def test_normalizer_with_feat_bias_divides_root_and_contacts(sample):
    base = Normalizer(sample["mean"], sample["std"])
    official = base.with_feat_bias(5.0, times=2)
    assert np.allclose(official.std[:4], sample["std"][:4] / 25)
    assert np.allclose(official.std[-4:], sample["std"][-4:] / 25)
    assert np.array_equal(official.std[4:-4], sample["std"][4:-4])


def test_normalizer_from_dir_layouts(tmp_path, sample):
    (tmp_path / "ds").mkdir()
    np.save(tmp_path / "ds" / "Mean.npy", sample["mean"])
    np.save(tmp_path / "ds" / "Std.npy", sample["std"])
    assert np.array_equal(Normalizer.from_dir(tmp_path / "ds").std, sample["std"])
    ckpt = tmp_path / "ckpt" / "meta"
    ckpt.mkdir(parents=True)
    np.save(ckpt / "mean.npy", sample["mean"].astype(np.float64))  # released meta files are float64
    np.save(ckpt / "std.npy", sample["std"].astype(np.float64) / 2)
    loaded = Normalizer.from_dir(tmp_path / "ckpt")
    assert loaded.std.dtype == np.float32 and np.allclose(loaded.std, sample["std"] / 2)
    with pytest.raises(FileNotFoundError, match="meta/mean.npy"):
        Normalizer.from_dir(tmp_path)


def test_normalizer_rejects_bad_statistics():
    with pytest.raises(ValueError, match="positive"):
        Normalizer(np.zeros(263), np.r_[np.ones(262), 0.0])
    with pytest.raises(ValueError, match="equal length"):
        Normalizer(np.zeros(263), np.ones(251))
