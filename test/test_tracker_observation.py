"""The policy input is laid out exactly as TWIST2 was trained on (design/tracker.md)."""
import numpy as np
import pytest

from momask_ros.tracker import ObservationBuilder, load_spec, mimic_vector, pd_target_rad
from momask_ros.tracker.rotations import quat_wxyz_to_rpy, rpy_to_quat_wxyz


@pytest.fixture(scope="module")
def spec():
    return load_spec()


def test_packaged_spec_dimensions_are_twist2s(spec):
    assert (spec.num_joints, spec.mimic_dim, spec.proprio_dim, spec.policy_input_dim) == (29, 35, 92, 1432)
    assert spec.joint_names[4] == "left_ankle_pitch_joint" and spec.joint_names[11] == "right_ankle_roll_joint"
    assert spec.default_checkpoint == "20k" and spec.source.commit == "d5c7108"
    np.testing.assert_array_equal(spec.torque_limit_nm, spec.kp)


def test_mimic_vector_order_is_vel_height_roll_pitch_yaw_rate_joints():
    joints = np.arange(29) * 0.01
    m = mimic_vector([0.3, -0.1], 0.7, [0.05, -0.02], 0.4, joints)
    assert m.shape == (35,)
    np.testing.assert_allclose(m[:6], [0.3, -0.1, 0.7, 0.05, -0.02, 0.4])
    np.testing.assert_allclose(m[6:], joints)


def test_proprio_scales_gyro_subtracts_default_pose_and_hides_ankle_velocities(spec):
    builder = ObservationBuilder.from_spec(spec)
    q = spec.default_pose_rad + 0.1
    qd = np.ones(29)
    action = np.linspace(-20, 20, 29)
    quat = rpy_to_quat_wxyz([0.1, -0.2, 1.0])
    p = builder.proprio([1.0, 2.0, -4.0], quat, q, qd, action)
    assert p.shape == (92,)
    np.testing.assert_allclose(p[:3], [0.25, 0.5, -1.0])
    np.testing.assert_allclose(p[3:5], [0.1, -0.2], atol=1e-12)
    np.testing.assert_allclose(p[5:34], 0.1)
    velocities = p[34:63]
    np.testing.assert_array_equal(velocities[[4, 5, 10, 11]], 0.0)
    np.testing.assert_allclose(np.delete(velocities, [4, 5, 10, 11]), 0.05)
    np.testing.assert_array_equal(p[63:], action)  # the raw (unclipped) action


def test_history_is_previous_frames_oldest_first_with_zeros_at_start(spec):
    builder = ObservationBuilder.from_spec(spec)
    frames = []
    for k in range(12):
        mimic = np.full(35, float(k + 1))
        proprio = np.full(92, -float(k + 1))
        obs = builder.build(mimic, proprio)
        frames.append(np.concatenate([mimic, proprio]))
        assert obs.shape == (1432,) and obs.dtype == np.float32
        np.testing.assert_array_equal(obs[:127], frames[-1])  # current frame first
        np.testing.assert_array_equal(obs[-35:], mimic)  # future slot = current reference
        history = obs[127:-35].reshape(10, 127)
        previous = frames[:-1][-10:]
        n_zero = 10 - len(previous)
        np.testing.assert_array_equal(history[:n_zero], 0.0)
        for row, frame in zip(history[n_zero:], previous):
            np.testing.assert_array_equal(row, frame.astype(np.float32))
    builder.reset()
    assert not builder.build(np.ones(35), np.ones(92))[127:-35].any()


def test_pd_target_clips_then_scales_around_default_pose(spec):
    action = np.zeros(29)
    action[0], action[1], action[2] = 20.0, -30.0, 1.0
    target = pd_target_rad(spec, action)
    np.testing.assert_allclose(target[:3] - spec.default_pose_rad[:3], [5.0, -5.0, 0.5])
    np.testing.assert_allclose(target[3:], spec.default_pose_rad[3:])


def test_euler_round_trip_uses_zyx_roll_pitch_yaw():
    rpy = np.array([[0.3, -0.4, 2.5], [-1.0, 0.2, -3.0]])
    np.testing.assert_allclose(quat_wxyz_to_rpy(rpy_to_quat_wxyz(rpy)), rpy, atol=1e-12)
    # a pure yaw leaves roll and pitch at zero
    np.testing.assert_allclose(quat_wxyz_to_rpy([np.cos(0.5), 0, 0, np.sin(0.5)]), [0, 0, 1.0], atol=1e-12)
