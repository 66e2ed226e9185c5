"""Reference conditioning: standing at both ends, smooth ramps, exact lag-free velocities, re-anchoring,
slowing a motion too fast for the robot, clipping to what the robot can do."""
import numpy as np
import pytest

from momask_ros.tracker import (ConditionedReference, RobotReference, TrackerError, load_spec, reorder_joints,
                                smootherstep)
from momask_ros.tracker.reference import smootherstep_integral, smootherstep_rate
from momask_ros.tracker.rotations import quat_wxyz_to_rpy, rpy_to_quat_wxyz

SPEC = load_spec()
Q0 = SPEC.default_pose_rad
H = SPEC.standing_height_m


def _reference(times, pos, yaw=None, joints=None, rpy=None):
    n = len(times)
    if rpy is None:
        rpy = np.zeros((n, 3))
        if yaw is not None:
            rpy[:, 2] = yaw
    joints = np.tile(Q0 + 0.1, (n, 1)) if joints is None else joints
    return RobotReference(np.asarray(times, float), np.asarray(pos, float), rpy_to_quat_wxyz(rpy), joints)


def _conditioned(ref, **kw):
    return ConditionedReference(ref, standing_pose_rad=Q0, standing_height_m=H, **kw)


def _straight(speed_mps, heading_rad=0.0, duration_s=3.0, fps=50):
    t = np.arange(0, duration_s + 1e-9, 1 / fps)
    direction = np.array([np.cos(heading_rad), np.sin(heading_rad), 0.0])
    pos = np.array([1.0, 2.0, 0.75]) + np.outer(t, speed_mps * direction)
    return _reference(t, pos, yaw=np.full(t.size, heading_rad))


def test_smootherstep_is_c2_at_both_ends():
    assert smootherstep(0.0) == 0.0 and smootherstep(1.0) == 1.0 and smootherstep(0.5) == 0.5
    assert smootherstep_rate(0.0) == 0.0 and smootherstep_rate(1.0) == 0.0
    h = 1e-4
    for x in (0.0, 1.0):  # second derivative (numerical, one-sided) vanishes at the ends
        side = 1 if x == 0.0 else -1
        second = (smootherstep(x + 2 * side * h) - 2 * smootherstep(x + side * h) + smootherstep(x)) / h ** 2
        assert abs(second) < 1e-2
    assert smootherstep_integral(1.0) == pytest.approx(0.5)


def test_starts_and_ends_at_standing_pose():
    ref = _conditioned(_straight(0.5))
    first, last = ref.sample(0.0), ref.sample(ref.end_s + 0.5)
    for s in (first, last):
        np.testing.assert_allclose(s.joint_pos_rad, Q0, atol=1e-12)
        np.testing.assert_allclose(s.mimic[2:6], [H, 0, 0, 0], atol=1e-12)
        np.testing.assert_allclose(s.mimic[:2], 0.0, atol=1e-12)
    assert first.phase == "blend_in" and last.phase == "standing"
    # standing where the motion starts and ends, in the motion's heading
    np.testing.assert_allclose(first.base_pos_world[:2], [1.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(last.base_pos_world[:2], [2.5, 2.0], atol=1e-6)
    # at the end of the blend-in the reference is the motion's first frame
    np.testing.assert_allclose(ref.sample(SPEC.blend_in_s).joint_pos_rad, Q0 + 0.1, atol=1e-12)


def test_ramps_have_no_steps_in_joints_or_velocity():
    ref = _conditioned(_straight(0.8))
    t = np.arange(0, ref.end_s + 0.5, 0.005)
    samples = [ref.sample(x) for x in t]
    joints = np.array([s.joint_pos_rad[0] for s in samples])
    vel = np.array([s.mimic[0] for s in samples])
    # bounded first and second differences: no jumps anywhere (blend, ease in/out, blend out)
    assert np.abs(np.diff(joints)).max() < 0.002
    assert np.abs(np.diff(vel)).max() < 0.02
    assert np.abs(np.diff(vel, 2)).max() < 0.005
    assert vel.max() == pytest.approx(0.8, abs=1e-6)


def test_constant_velocity_is_exact_in_root_frame_at_any_heading():
    ref = _conditioned(_straight(0.8, heading_rad=2.0))
    for t in np.linspace(2.0, 3.5, 7):
        s = ref.sample(t)
        assert s.phase == "motion"
        np.testing.assert_allclose(s.base_lin_vel_xy_root, [0.8, 0.0], atol=1e-9)
        assert s.yaw_rate_root_rad_s == pytest.approx(0.0, abs=1e-9)


def test_turning_yaw_rate_is_exact_across_the_pi_wrap():
    t = np.arange(0, 6.0, 0.02)
    yaw = 2.5 + 0.9 * t  # wraps past pi in the quaternions
    pos = np.stack([np.cos(yaw), np.sin(yaw), np.full(t.size, 0.75)], 1)
    ref = _conditioned(_reference(t, pos, yaw=yaw))
    for tc in (2.5, 4.0, 5.5):
        s = ref.sample(tc)
        assert s.yaw_rate_root_rad_s == pytest.approx(0.9, abs=1e-3)
        np.testing.assert_allclose(s.base_lin_vel_xy_root, [0.0, 0.9], atol=2e-3)  # circle: sideways


def test_velocity_has_no_lag_on_a_swaying_path():
    t = np.arange(0, 8.0, 0.02)
    f = 0.7
    pos = np.stack([0.2 * np.sin(2 * np.pi * f * t), np.zeros_like(t), np.full_like(t, 0.75)], 1)
    ref = _conditioned(_reference(t, pos))
    for tc in np.linspace(2.5, 7.0, 10):
        tau = ref.motion_time_s(tc)
        expected = 0.2 * 2 * np.pi * f * np.cos(2 * np.pi * f * tau)
        assert ref.sample(tc).mimic[0] == pytest.approx(expected, abs=0.01 * 0.2 * 2 * np.pi * f)


def test_reanchor_puts_the_reference_on_the_robot_and_keeps_the_mimic():
    ref = _conditioned(_straight(0.5, heading_rad=np.pi / 2))  # walks +y from (1, 2)
    before = ref.sample(2.5)
    robot_quat = rpy_to_quat_wxyz([0.0, 0.0, 0.3])
    ref.reanchor(2.0, np.array([-4.0, 5.0, 0.7]), robot_quat)
    at = ref.sample(2.0)
    np.testing.assert_allclose(at.base_pos_world[:2], [-4.0, 5.0], atol=1e-9)
    assert quat_wxyz_to_rpy(at.base_quat_wxyz)[2] == pytest.approx(0.3)
    after = ref.sample(2.5)
    step = after.base_pos_world[:2] - at.base_pos_world[:2]
    np.testing.assert_allclose(step / np.linalg.norm(step), [np.cos(0.3), np.sin(0.3)], atol=1e-9)
    np.testing.assert_allclose(after.mimic, before.mimic, atol=1e-12)  # the policy sees no difference
    ref.reanchor(2.5, np.zeros(3), rpy_to_quat_wxyz([0, 0, -1.0]))  # re-anchoring composes
    np.testing.assert_allclose(ref.sample(2.5).base_pos_world[:2], 0.0, atol=1e-9)


def test_speed_cap_slows_a_too_fast_path_and_reports_it():
    fast = _conditioned(_straight(3.0), max_base_speed_mps=1.5)
    normal = _conditioned(_straight(1.0), max_base_speed_mps=1.5)
    assert fast.time_stretch == pytest.approx(2.0, rel=1e-3) and normal.time_stretch == 1.0
    assert "slowed 2.00x" in fast.report.summary()
    assert normal.report.summary() == "reference used as given"
    speeds = [np.linalg.norm(fast.sample(t).base_lin_vel_xy_root) for t in np.arange(0, fast.end_s, 0.01)]
    assert max(speeds) <= 1.5 + 1e-3
    assert fast.end_s - normal.end_s == pytest.approx(3.0, rel=1e-3)  # 3 s motion played in 6 s
    np.testing.assert_allclose(fast.sample(fast.end_s).base_pos_world[:2], [10.0, 2.0], atol=1e-6)  # whole path


def test_tilt_and_joints_are_clipped_to_what_the_robot_can_do():
    t = np.arange(0, 2.0, 0.02)
    rpy = np.zeros((t.size, 3))
    rpy[:, 0] = 1.2
    joints = np.tile(Q0, (t.size, 1))
    joints[:, 3] = 3.5  # left knee beyond its range
    limits = np.tile([-2.0, 2.0], (29, 1))
    ref = _conditioned(_reference(t, np.tile([0, 0, 0.75], (t.size, 1)), rpy=rpy, joints=joints),
                       max_tilt_rad=0.5, joint_range_rad=limits, joint_names=SPEC.joint_names)
    s = ref.sample(1.8)
    assert s.mimic[3] == pytest.approx(0.5) and s.joint_pos_rad[3] == pytest.approx(2.0)
    assert ref.report.tilt_clipped and ref.report.clipped_joints == ("left_knee_joint",)
    assert "roll/pitch clipped" in ref.report.summary() and "left_knee_joint" in ref.report.summary()


def test_stop_decelerates_then_returns_to_standing_from_where_it_is():
    ref = _conditioned(_straight(0.8, duration_s=6.0))
    ref.stop(3.0)
    assert ref.end_s == pytest.approx(3.0 + SPEC.ease_s + SPEC.blend_out_s)
    before, at = ref.sample(2.99), ref.sample(3.0)
    assert at.mimic[0] == pytest.approx(before.mimic[0], abs=1e-3)  # no velocity step at the stop
    speeds = [ref.sample(t).mimic[0] for t in np.arange(3.0, 3.0 + SPEC.ease_s, 0.01)]
    assert np.all(np.diff(speeds) <= 1e-12)  # decelerates monotonically
    end = ref.sample(ref.end_s)
    assert end.phase == "standing"
    np.testing.assert_allclose(end.joint_pos_rad, Q0, atol=1e-12)
    stopped_x = end.base_pos_world[0]
    assert 1.0 + 0.8 * 2.0 < stopped_x < 1.0 + 0.8 * 3.0  # stopped part-way, not at the motion's end
    assert ref.sample(ref.end_s + 3).base_pos_world[0] == pytest.approx(stopped_x)


def test_reorder_joints_maps_names_and_refuses_unknown_or_missing():
    names = list(SPEC.joint_names)
    shuffled = names[::-1]
    data = np.tile(np.arange(29.0)[::-1], (3, 1))  # column k holds index of shuffled[k] in names
    np.testing.assert_array_equal(reorder_joints(data, shuffled, names)[0], np.arange(29.0))
    with pytest.raises(TrackerError, match=r"missing \['left_hip_pitch_joint'\]"):
        reorder_joints(data[:, :-1], shuffled[:-1], names)
    with pytest.raises(TrackerError, match="unknown"):
        reorder_joints(data, shuffled[:-1] + ["tail_joint"], names)


def test_malformed_reference_is_refused():
    with pytest.raises(TrackerError, match="strictly increasing"):
        _reference([0.0, 0.1, 0.1], np.zeros((3, 3)))
    with pytest.raises(TrackerError, match="base_pos_world has shape"):
        _reference([0.0, 0.1, 0.2], np.zeros((3, 2)))
    ref = _reference([0.0, 0.1, 0.2], np.zeros((3, 3)), joints=np.zeros((3, 28)))
    with pytest.raises(TrackerError, match="28 joints, tracker has 29"):
        _conditioned(ref)


def _spin(rate_rad_s, duration_s=4.0, fps=50, walk_mps=0.0):
    """Turning on the spot at rate (or walking forward while turning), level, at standing height."""
    t = np.arange(0, duration_s + 1e-9, 1 / fps)
    yaw = rate_rad_s * t
    pos = np.zeros((t.size, 3))
    pos[:, 2] = 0.75
    if walk_mps:  # a circle walked facing along it
        pos[:, 0] = walk_mps / rate_rad_s * np.sin(yaw)
        pos[:, 1] = walk_mps / rate_rad_s * (1.0 - np.cos(yaw))
    return _reference(t, pos, yaw=yaw)


def test_fast_turning_is_limited_and_reported_slow_turning_is_not():
    fast = _conditioned(_spin(8.0), max_yaw_rate_rad_s=2.0)
    slow = _conditioned(_spin(0.5), max_yaw_rate_rad_s=2.0)
    rates = [abs(fast.sample(t).yaw_rate_root_rad_s) for t in np.arange(0, fast.end_s, 0.01)]
    assert max(rates) <= 2.0 + 1e-6 and max(rates) > 1.8
    assert fast.time_stretch == 1.0  # limited, not slowed: the joints keep their pace
    assert fast.report.yaw_rate_limited and "turning limited to 2.0 rad/s" in fast.report.summary()
    assert not slow.report.yaw_rate_limited and slow.report.summary() == "reference used as given"
    assert slow.sample(2.5).yaw_rate_root_rad_s == pytest.approx(0.5, abs=1e-3)


def test_limited_turning_keeps_the_body_frame_velocity():
    # walking 0.6 m/s while turning 4 rad/s: the policy still reads 0.6 m/s straight ahead
    original = _conditioned(_spin(4.0, walk_mps=0.6))
    limited = _conditioned(_spin(4.0, walk_mps=0.6), max_yaw_rate_rad_s=1.0)
    for t in (2.0, 2.7, 3.5):
        np.testing.assert_allclose(limited.sample(t).base_lin_vel_xy_root, [0.6, 0.0], atol=0.02)
        np.testing.assert_allclose(original.sample(t).base_lin_vel_xy_root, [0.6, 0.0], atol=0.02)
        assert limited.sample(t).yaw_rate_root_rad_s < original.sample(t).yaw_rate_root_rad_s


def test_a_section_beyond_the_robot_is_bridged_and_reported():
    t = np.arange(0, 4.0 + 1e-9, 0.02)
    rpy = np.zeros((t.size, 3))
    flip = (t > 1.5) & (t < 2.5)
    rpy[flip, 1] = 2.0 * np.sin(np.pi * (t[flip] - 1.5))  # pitches over to 2 rad and back
    pos = np.column_stack([0.3 * t, np.zeros_like(t), np.full_like(t, 0.75)])
    ref = _conditioned(_reference(t, pos, rpy=rpy), skip_tilt_rad=1.4, max_tilt_rad=0.5)
    skipped = ref.report.skipped
    assert len(skipped) == 1 and skipped[0].peak_tilt_rad == pytest.approx(2.0, abs=0.01)
    assert skipped[0].start_s < 1.5 + np.arcsin(0.7) / np.pi and skipped[0].end_s > 2.5 - np.arcsin(0.7) / np.pi
    assert "skipped" in ref.report.summary()
    samples = [ref.sample(x) for x in np.arange(0, ref.end_s, 0.01)]
    assert max(abs(s.base_rpy_rad[1]) for s in samples) < 1.4  # the flip is gone
    assert ref.end_s < _conditioned(_reference(t, pos, rpy=rpy)).end_s  # and its time with it
    # the motion after the bridge plays on: motion time maps back onto the original clock
    assert ref.motion_time_s(ref.end_s) == pytest.approx(4.0)
    xs = np.array([s.base_pos_world[0] for s in samples])
    assert np.all(np.diff(xs) > -1e-3)  # no jump back: the rest continues from where the robot is


def test_a_section_with_a_joint_beyond_its_range_is_bridged_and_named():
    t = np.arange(0, 3.0 + 1e-9, 0.02)
    joints = np.tile(Q0, (t.size, 1))
    hip_yaw = SPEC.joint_names.index("left_hip_yaw_joint")
    joints[(t > 1.0) & (t < 1.6), hip_yaw] = 2.7  # a retargeting wind-up
    outside = np.tile([-np.inf, np.inf], (29, 1))
    outside[hip_yaw] = [-1.2, 1.2]
    ref = _conditioned(_reference(t, np.tile([0, 0, 0.75], (t.size, 1)), joints=joints), skip_outside_rad=outside,
                       joint_names=SPEC.joint_names)
    (section,) = ref.report.skipped
    assert section.reason == "left_hip_yaw_joint at 2.70 rad" and "left_hip_yaw_joint at 2.70 rad" in ref.report.summary()
    assert max(abs(ref.sample(x).joint_pos_rad[hip_yaw]) for x in np.arange(0, ref.end_s, 0.01)) < 0.5
