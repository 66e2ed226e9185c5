"""A tracker folder is checked against its spec, and every problem is one clear TrackerError line."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from momask_ros.tracker import TrackerError, check_reference_joints, load_spec, load_tracker, sha256_file




def _linked_copy(src: Path, dest: Path, replace: dict[str, bytes] | None = None) -> Path:
    """dest mirrors src with symlinks, except the files in `replace` (relative path -> new bytes)."""
    replace = replace or {}
    dest.mkdir(parents=True, exist_ok=True)
    for entry in ("twist2_1017_20k.onnx", "twist2_1017_25k.onnx", "g1/meshes"):
        if entry not in replace:
            (dest / entry).parent.mkdir(parents=True, exist_ok=True)
            (dest / entry).symlink_to(src / entry)
    xml = "g1/g1_sim2sim_29dof.xml"
    if xml not in replace:
        (dest / xml).symlink_to(src / xml)
    for rel, payload in replace.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(payload)
    return dest


def test_tracker_error_is_a_value_error():
    assert issubclass(TrackerError, ValueError)


def test_shared_folder_loads_with_default_checkpoint_and_model_ranges(twist2_dir):
    bundle = load_tracker(twist2_dir)
    assert bundle.checkpoint.name == "20k" and bundle.policy_path.name == "twist2_1017_20k.onnx"
    assert bundle.policy_input_name == "input"
    assert bundle.joint_range_rad.shape == (29, 2)
    knee = bundle.spec.joint_names.index("left_knee_joint")
    np.testing.assert_allclose(bundle.joint_range_rad[knee], [-0.087267, 2.8798])
    assert load_tracker(twist2_dir, checkpoint="25k").policy_path.name == "twist2_1017_25k.onnx"


def test_unknown_checkpoint_is_named(twist2_dir):
    with pytest.raises(TrackerError, match="unknown checkpoint '30k'"):
        load_tracker(twist2_dir, checkpoint="30k")


def test_missing_folder_says_how_to_fetch(tmp_path):
    with pytest.raises(TrackerError, match="tracker folder not found.*momask-fetch-tracker"):
        load_tracker(tmp_path / "nowhere")


def test_missing_weights_are_named(tmp_path):
    with pytest.raises(TrackerError, match="policy weights not found: .*twist2_1017_20k.onnx"):
        load_tracker(tmp_path)


def test_altered_weights_report_expected_and_actual_hash(twist2_dir, tmp_path):
    payload = bytearray((twist2_dir / "twist2_1017_20k.onnx").read_bytes())
    payload[-1] ^= 0xFF
    folder = _linked_copy(twist2_dir, tmp_path / "t", {"twist2_1017_20k.onnx": bytes(payload)})
    got = sha256_file(folder / "twist2_1017_20k.onnx")
    expected = load_spec().checkpoints["20k"].sha256
    with pytest.raises(TrackerError) as err:
        load_tracker(folder)
    message = str(err.value)
    assert "\n" not in message and got in message and expected in message
    load_tracker(folder, checkpoint="25k")  # the untouched checkpoint still loads


def test_policy_shape_not_matching_spec_is_refused(twist2_dir):
    spec = dataclasses.replace(load_spec(), history_length=9)
    with pytest.raises(TrackerError, match=r"input 'input' has shape .*1432.*expected \[batch, 1305\]"):
        load_tracker(twist2_dir, spec=spec)


def test_robot_model_with_swapped_actuators_is_refused(twist2_dir, tmp_path):
    xml = (twist2_dir / "g1/g1_sim2sim_29dof.xml").read_text()
    a = '<motor name="left_knee_joint" joint="left_knee_joint"/>'
    b = '<motor name="left_hip_yaw_joint" joint="left_hip_yaw_joint"/>'
    assert a in xml and b in xml
    swapped = xml.replace(a, "@@").replace(b, a).replace("@@", b)
    folder = _linked_copy(twist2_dir, tmp_path / "t", {"g1/g1_sim2sim_29dof.xml": swapped.encode()})
    with pytest.raises(TrackerError, match="actuator joint order differs .* index 2: 'left_knee_joint'"):
        load_tracker(folder)


def test_robot_model_with_renamed_joint_is_refused(twist2_dir, tmp_path):
    xml = (twist2_dir / "g1/g1_sim2sim_29dof.xml").read_text().replace("waist_roll_joint", "waist_tilt_joint")
    folder = _linked_copy(twist2_dir, tmp_path / "t", {"g1/g1_sim2sim_29dof.xml": xml.encode()})
    with pytest.raises(TrackerError, match=r"missing \['waist_roll_joint'\], unknown \['waist_tilt_joint'\]"):
        load_tracker(folder)


def test_reference_with_wrong_joints_is_refused():
    spec = load_spec()
    check_reference_joints(spec, spec.joint_names)
    names = list(spec.joint_names[:-1]) + ["right_hand_joint"]
    with pytest.raises(TrackerError, match=r"missing \['right_wrist_yaw_joint'\], unknown \['right_hand_joint'\]"):
        check_reference_joints(spec, names)
    with pytest.raises(TrackerError, match="order differs"):
        check_reference_joints(spec, list(reversed(spec.joint_names)))


def test_spec_yaml_errors_are_tracker_errors(tmp_path):
    with pytest.raises(TrackerError, match="spec not found"):
        load_spec(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("name: x\n")
    with pytest.raises(TrackerError, match="lacks key"):
        load_spec(tmp_path / "bad.yaml")


def test_reference_conditioning_is_data_in_the_spec(tmp_path):
    import yaml
    from importlib import resources

    spec = load_spec()
    names = list(spec.joint_names)
    assert spec.max_reference_yaw_rate_rad_s == 2.0 and spec.skip_tilt_rad == 1.4
    assert spec.reference_joint_scale[names.index("left_elbow_joint")] == 0.5
    assert spec.reference_joint_scale[names.index("left_knee_joint")] == 1.0
    np.testing.assert_array_equal(spec.reference_joint_range_rad[names.index("waist_pitch_joint")], [-0.2, 0.2])
    assert np.isinf(spec.reference_joint_range_rad[names.index("left_knee_joint")]).all()
    np.testing.assert_array_equal(spec.skip_joint_range_rad[names.index("right_hip_yaw_joint")], [-1.2, 1.2])
    raw = yaml.safe_load(resources.files("momask_ros.tracker").joinpath("twist2_g1.yaml").read_text())
    raw["reference"]["joint_range_rad"] = {"tail_joint": [-1, 1]}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(TrackerError, match="reference.joint_range_rad names unknown joint 'tail_joint'"):
        load_spec(tmp_path / "bad.yaml")
    raw["reference"]["joint_range_rad"] = {"waist_yaw_joint": [1, -1]}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(TrackerError, match="needs low < high"):
        load_spec(tmp_path / "bad.yaml")
    for key in ("joint_range_rad", "joint_scale", "skip_beyond", "max_yaw_rate_rad_s"):
        raw["reference"].pop(key)
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump(raw))
    plain = load_spec(tmp_path / "plain.yaml")  # all optional: the reference as given
    assert np.isinf(plain.max_reference_yaw_rate_rad_s) and np.all(plain.reference_joint_scale == 1.0)
