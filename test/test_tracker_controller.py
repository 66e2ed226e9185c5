"""The controller on a fake clock and a fake policy: PD targets from actions, the policy rate, falls."""
from pathlib import Path

import numpy as np
import pytest

from momask_ros.tracker import (ConditionedReference, MeasuredState, RobotReference, Tracker, TrackerBundle,
                                TrackerError, TrackerState, load_spec)
from momask_ros.tracker.rotations import rpy_to_quat_wxyz

SPEC = load_spec()


class RecordingPolicy:
    def __init__(self, action):
        self.action = np.asarray(action, dtype=np.float64)
        self.observations = []

    def __call__(self, obs):
        self.observations.append(obs)
        return self.action.copy()


def _tracker(action=None, rate=None):
    bundle = TrackerBundle(spec=SPEC, directory=Path("."), checkpoint=SPEC.checkpoints["20k"],
                           policy_path=Path("none.onnx"), model_path=Path("none.xml"), policy_input_name="input",
                           joint_range_rad=np.tile([-3.0, 3.0], (29, 1)))
    policy = RecordingPolicy(np.zeros(29) if action is None else action)
    return Tracker(bundle, policy=policy, policy_rate_hz=rate), policy


def _state(rpy=(0.0, 0.0, 0.0), height=0.79, q=None):
    return MeasuredState(joint_pos_rad=SPEC.default_pose_rad.copy() if q is None else q,
                         joint_vel_rad_s=np.zeros(29), base_quat_wxyz=rpy_to_quat_wxyz(rpy),
                         base_ang_vel_body_rad_s=np.zeros(3), base_height_m=height)


def test_command_is_default_pose_plus_scaled_clipped_action_and_raw_action_is_fed_back():
    action = np.zeros(29)
    action[0], action[1] = 30.0, -0.4
    tracker, policy = _tracker(action)
    first = tracker.step(0.0, _state())
    np.testing.assert_allclose(first.target_rad[:2] - SPEC.default_pose_rad[:2], [5.0, -0.2])
    np.testing.assert_array_equal(first.kp, SPEC.kp)
    np.testing.assert_array_equal(first.kd, SPEC.kd)
    assert not first.safe
    tracker.step(0.02, _state())
    assert policy.observations[0].shape == (SPEC.policy_input_dim,)
    np.testing.assert_array_equal(policy.observations[0][98:127], 0.0)  # no previous action yet
    np.testing.assert_array_equal(policy.observations[1][98:127], action.astype(np.float32))  # raw, unclipped


def test_pd_command_torque_is_clipped_to_limits():
    tracker, _ = _tracker(np.full(29, 10.0))
    cmd = tracker.step(0.0, _state())
    torque = cmd.torque_nm(SPEC.default_pose_rad, np.zeros(29))
    np.testing.assert_allclose(np.abs(torque), SPEC.torque_limit_nm)


def test_policy_runs_at_its_rate_and_holds_the_command_between_ticks():
    for rate, expected_calls in ((50, 10), (100, 20)):
        tracker, policy = _tracker(rate=rate)
        commands = [tracker.step(i * 0.001, _state()) for i in range(200)]
        assert len(policy.observations) == expected_calls
        assert commands[1] is commands[0]
    with pytest.raises(TrackerError, match="not allowed"):
        _tracker(rate=30)


def test_standing_mimic_without_reference_and_reference_mimic_with_one():
    tracker, policy = _tracker()
    tracker.step(0.0, _state())
    np.testing.assert_allclose(policy.observations[0][:6], [0, 0, SPEC.standing_height_m, 0, 0, 0], atol=1e-6)
    t = np.arange(0, 3.0, 0.02)
    ref = ConditionedReference.from_spec(RobotReference(
        t, np.stack([0.5 * t, 0 * t, np.full_like(t, 0.78)], 1), np.tile([1.0, 0, 0, 0], (t.size, 1)),
        np.tile(SPEC.default_pose_rad, (t.size, 1)), joint_names=SPEC.joint_names), SPEC)
    tracker.set_reference(ref, start_s=10.0)
    assert tracker.state is TrackerState.TRACKING
    tracker.step(12.5, _state())  # reference time 2.5 s: mid-motion
    assert policy.observations[-1][0] == pytest.approx(0.5, abs=1e-5)
    assert tracker.last_sample.phase == "motion"


@pytest.mark.parametrize("state, reason", [
    (_state(rpy=(1.2, 0.0, 0.0)), "tilt"),
    (_state(rpy=(0.0, -1.1, 2.0)), "tilt"),
    (_state(height=0.2), "height"),
])
def test_fall_gives_damped_commands_and_refuses_references_until_reset(state, reason):
    tracker, policy = _tracker(np.ones(29))
    tracker.step(0.0, _state())
    cmd = tracker.step(0.02, state)
    assert tracker.state is TrackerState.FALLEN and tracker.fall_time_s == pytest.approx(0.02)
    assert cmd.safe and np.all(cmd.kp == SPEC.safe_kp) and np.all(cmd.kd == SPEC.safe_kd)
    assert np.all(cmd.kp == 0.0) and np.all(cmd.kd > 0)
    calls = len(policy.observations)
    for i in range(5):  # upright again: still damped, the policy no longer runs
        again = tracker.step(0.04 + 0.02 * i, _state())
        assert again.safe
        np.testing.assert_allclose(again.torque_nm(SPEC.default_pose_rad, np.ones(29)), -SPEC.safe_kd)
    assert len(policy.observations) == calls
    assert not tracker.accepts_commands() and reason in tracker.refusal_reason
    ref = ConditionedReference.from_spec(RobotReference(
        np.array([0.0, 1.0]), np.zeros((2, 3)), np.tile([1.0, 0, 0, 0], (2, 1)), np.zeros((2, 29))), SPEC)
    with pytest.raises(TrackerError, match="fallen"):
        tracker.set_reference(ref, start_s=1.0)
    tracker.reset()
    assert tracker.accepts_commands() and tracker.refusal_reason is None
    assert not tracker.step(2.0, _state()).safe


def test_without_height_only_tilt_detects_a_fall():
    tracker, _ = _tracker()
    tracker.step(0.0, _state(height=None))
    assert tracker.accepts_commands()
    tracker.step(0.02, _state(rpy=(0.0, 1.3, 0.0), height=None))
    assert not tracker.accepts_commands()


def test_reset_clears_history_and_last_action():
    tracker, policy = _tracker(np.full(29, 2.0))
    for i in range(3):
        tracker.step(0.02 * i, _state())
    tracker.reset()
    tracker.step(5.0, _state())
    obs = policy.observations[-1]
    assert not obs[127:-35].any() and not obs[98:127].any()
