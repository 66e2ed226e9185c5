"""Live reference conditioning on a fake stream: blends, stalls, velocities, re-anchoring, the speed cap."""
import numpy as np
import pytest

from momask_ros.tracker import TrackerError, load_spec
from momask_ros.tracker.live_reference import LiveReference
from momask_ros.tracker.rotations import rpy_to_quat_wxyz

SPEC = load_spec()
Q0 = SPEC.default_pose_rad
H = SPEC.standing_height_m


def _stream(ref, t0=1.0, duration=3.0, speed=0.5, yaw_rate=0.0, twist=True, dt=0.02, knee=0.3):
    """A walk-like stream: constant speed along its heading, knees bent by `knee`, from t0 for duration."""
    knee_cols = [SPEC.joint_names.index(j) for j in ("left_knee_joint", "right_knee_joint")]
    for k in range(int(round(duration / dt)) + 1):
        t = k * dt
        yaw = yaw_rate * t
        q = Q0.copy()
        q[knee_cols] += knee
        vel = speed * np.array([np.cos(yaw), np.sin(yaw), 0.0])
        pos = np.array([speed * t, 0.0, 0.75]) if yaw_rate == 0 else np.array(
            [speed / yaw_rate * np.sin(yaw), speed / yaw_rate * (1 - np.cos(yaw)), 0.75])
        ref.push(t0 + t, pos, rpy_to_quat_wxyz([0.0, 0.0, yaw]), q,
                 base_lin_vel_world=vel if twist else None,
                 base_ang_vel_world=np.array([0.0, 0.0, yaw_rate]) if twist else None)


def _live(**kwargs):
    return LiveReference.from_spec(SPEC, np.tile([-3.0, 3.0], (SPEC.num_joints, 1)), **kwargs)


def test_blends_in_from_standing_and_out_to_standing_when_the_motion_ends():
    ref = _live()
    _stream(ref)
    ref.begin(1.0)
    before = ref.sample(0.5)
    assert before.phase == "standing" and np.allclose(before.joint_pos_rad, Q0) and before.mimic[2] == H
    assert not before.mimic[:2].any()
    assert ref.sample(1.5).phase == "blend_in" and 0 < ref.weight(1.5) < 1
    during = ref.sample(2.5)
    assert during.phase == "motion" and during.mimic[0] == pytest.approx(0.5) and during.mimic[2] == pytest.approx(0.75)
    assert during.joint_pos_rad[SPEC.joint_names.index("left_knee_joint")] == pytest.approx(Q0[3] + 0.3)
    ref.end(3.0)
    assert ref.sample(3.5).phase == "blend_out"
    after = ref.sample(4.1)
    assert after.phase == "standing" and np.allclose(after.joint_pos_rad, Q0) and after.mimic[0] == 0.0
    weights = [ref.weight(t) for t in np.arange(4.1, 5.0, 0.1)]
    assert max(weights) == 0.0


def test_blend_weight_is_continuous_when_a_motion_begins_while_the_last_one_blends_out():
    ref = _live()
    _stream(ref, duration=6.0)
    ref.begin(1.0)
    ref.end(2.5)
    ref.begin(3.0)  # half way down
    ts = np.arange(2.0, 4.5, 0.001)
    w = np.array([ref.weight(t) for t in ts])
    assert 0.2 < w[np.searchsorted(ts, 3.0)] < 0.8
    assert np.abs(np.diff(w)).max() < 0.01 and w[-1] == 1.0


def test_a_stalled_stream_blends_out_and_blends_in_again_when_it_returns():
    ref = _live(stall_s=0.5)
    _stream(ref, duration=1.0)  # samples up to t = 2.0
    ref.begin(1.0)
    assert ref.sample(2.4).phase == "motion"
    assert ref.sample(2.7).phase == "blend_out"  # stalled at 2.5
    _stream(ref, t0=2.8, duration=2.0)
    assert ref.sample(3.0).phase == "blend_in"
    assert ref.sample(4.0).phase == "motion"
    ref.end(4.2)  # an end is final: a late sample does not restart it
    assert ref.sample(5.5).phase == "standing"
    _stream(ref, t0=5.6, duration=0.2)
    assert ref.sample(5.7).phase == "standing"


def test_velocities_from_pose_differences_match_the_twist():
    with_twist, without = _live(max_yaw_rate_rad_s=np.inf), _live(max_yaw_rate_rad_s=np.inf)
    for ref, twist in ((with_twist, True), (without, False)):
        _stream(ref, yaw_rate=0.4, twist=twist)
        ref.begin(0.0)
    for t in (2.0, 2.51, 3.37):
        a, b = with_twist.sample(t), without.sample(t)
        np.testing.assert_allclose(a.base_lin_vel_xy_root, [0.5, 0.0], atol=1e-5)  # (interpolated vectors)
        np.testing.assert_allclose(b.base_lin_vel_xy_root, a.base_lin_vel_xy_root, atol=0.01)
        assert a.yaw_rate_root_rad_s == pytest.approx(0.4) and b.yaw_rate_root_rad_s == pytest.approx(0.4, abs=1e-6)


def test_samples_between_stamps_interpolate_and_past_the_newest_extrapolate_briefly():
    ref = _live(max_extrapolation_s=0.05)
    _stream(ref, duration=1.0)
    ref.begin(0.0)
    assert ref.sample(1.51).base_pos_world[0] == pytest.approx(0.5 * 0.51)
    newest = ref.sample(2.0).base_pos_world[0]
    assert ref.sample(2.03).base_pos_world[0] == pytest.approx(newest + 0.5 * 0.03)
    assert ref.sample(2.2).base_pos_world[0] == pytest.approx(newest + 0.5 * 0.05)  # then holds


def test_reanchor_moves_the_path_onto_the_robot_but_not_what_the_policy_sees():
    plain, anchored = _live(), _live()
    for ref in (plain, anchored):
        _stream(ref, yaw_rate=0.2)
        ref.begin(1.0)
    anchored.reanchor(np.array([3.0, -2.0, 0.8]), rpy_to_quat_wxyz([0.0, 0.0, np.pi / 2]))
    first = anchored.sample(2.0)
    np.testing.assert_allclose(first.base_pos_world[:2], [3.0, -2.0], atol=1e-12)
    assert first.base_rpy_rad[2] == pytest.approx(np.pi / 2)
    a, b = plain.sample(3.0), anchored.sample(3.0)
    np.testing.assert_allclose(a.mimic, b.mimic, atol=1e-12)
    assert np.linalg.norm(a.base_pos_world[:2] - b.base_pos_world[:2]) > 1.0


def test_a_stream_faster_than_the_robot_is_capped_and_says_so():
    ref = _live()
    _stream(ref, speed=3.0)
    ref.begin(1.0)
    sample = ref.sample(3.0)
    assert np.linalg.norm(sample.base_lin_vel_xy_root) == pytest.approx(SPEC.max_base_speed_mps)
    assert ref.report.speed_capped and "speed capped" in ref.report.notes()[0]
    ref.begin(5.0)  # a new motion starts a new report
    assert ref.report.notes() == []


def test_a_bad_sample_is_refused_with_a_reason():
    ref = _live()
    with pytest.raises(TrackerError, match="joint positions needs 29"):
        ref.push(0.0, [0, 0, 0.8], [1, 0, 0, 0], np.zeros(5))
    with pytest.raises(TrackerError, match="base position"):
        ref.push(0.0, [0, np.nan, 0.8], [1, 0, 0, 0], Q0)
    assert ref.newest_s is None
