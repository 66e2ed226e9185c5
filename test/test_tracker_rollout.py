"""Closed loop on the tracker's own MuJoCo G1 (needs ../shared/trackers/twist2, else skips)."""
import time

import numpy as np
import pytest

from momask_ros.tracker import ConditionedReference, Tracker, rollout
from momask_ros.tracker.rollout import TrackerSimulation
from momask_ros.tracker.synthetic import standing_reference, synthetic_walk




@pytest.fixture(scope="module")
def simulation(bundle):
    return TrackerSimulation(bundle)


def test_policy_call_time(bundle):
    tracker = Tracker(bundle)
    obs = np.zeros(bundle.spec.policy_input_dim, np.float32)
    tracker.policy(obs)
    start = time.perf_counter()
    for _ in range(200):
        tracker.policy(obs)
    print(f"\nTWIST2 ONNX policy: {(time.perf_counter() - start) / 200 * 1e3:.3f} ms per call (1 thread)")


def test_g1_stands_on_the_default_pose_for_3_s(bundle, simulation):
    reference = ConditionedReference.from_spec(standing_reference(bundle.spec, duration_s=0.4), bundle.spec,
                                               bundle.joint_range_rad)
    result = rollout(Tracker(bundle), reference, 3.0, simulation=simulation)
    print(f"\nstanding: {result.summary()}")
    assert not result.fell and reference.end_s < 3.0  # blended in, out, and standing at the end
    assert result.base_pos_world[-1, 2] > 0.7
    assert result.mean_joint_error_rad < 0.1
    assert result.path_deviation_m < 0.2
    assert result.times_s.size == 150


def test_g1_walks_forward_on_a_synthetic_walk_without_falling(bundle, simulation):
    reference = ConditionedReference.from_spec(synthetic_walk(bundle.spec), bundle.spec, bundle.joint_range_rad)
    assert reference.time_stretch == 1.0
    result = rollout(Tracker(bundle), reference, 4.0, simulation=simulation)
    print(f"\nsynthetic walk 0.5 m/s: {result.summary()}; base x {result.base_pos_world[-1, 0]:.2f} m "
          f"(reference {result.ref_base_pos_world[-1, 0]:.2f} m)")
    assert not result.fell
    assert result.base_pos_world[-1, 0] > 0.3
    assert result.base_pos_world[:, 2].min() > 0.6


def test_rollout_is_deterministic(bundle, simulation):
    runs = []
    for _ in range(2):
        reference = ConditionedReference.from_spec(synthetic_walk(bundle.spec, duration_s=1.0), bundle.spec,
                                                   bundle.joint_range_rad)
        runs.append(rollout(Tracker(bundle, policy_rate_hz=100), reference, 1.5, simulation=simulation))
    a, b = runs
    assert a.times_s.size == 150
    np.testing.assert_array_equal(a.joint_pos_rad, b.joint_pos_rad)
    np.testing.assert_array_equal(a.base_pos_world, b.base_pos_world)
    np.testing.assert_array_equal(a.ref_joint_pos_rad, b.ref_joint_pos_rad)


def test_fall_is_detected_and_the_robot_is_only_damped_after(bundle, simulation):
    tracker = Tracker(bundle)
    simulation.reset()
    pelvis = simulation.model.body("pelvis").id
    for i in range(2500):
        # shove the standing robot sideways hard for 0.4 s after 0.5 s
        simulation.data.xfrc_applied[pelvis, 1] = 400.0 if 500 <= i < 900 else 0.0
        if i % 20 == 0:
            command = tracker.step(i * 0.001, simulation.measured())
        q, qd = simulation.joint_state()
        simulation.step(command.torque_nm(q, qd))
    simulation.data.xfrc_applied[:] = 0.0
    print(f"\nshoved: {tracker.refusal_reason}")
    assert tracker.fall_time_s is not None and not tracker.accepts_commands()
    assert command.safe and np.all(command.kp == 0)
