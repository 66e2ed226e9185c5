"""Live reference conditioning on a fake stream: blends, stalls, velocities, re-anchoring, and the offline
conditioning's limits (speed, turning rate, arm swing, joint ranges) applied sample by sample."""
import numpy as np
import pytest

from momask_ros.tracker import ConditionedReference, RobotReference, TrackerError, load_spec
from momask_ros.tracker.live_reference import LiveReference
from momask_ros.tracker.rotations import rpy_to_quat_wxyz

SPEC = load_spec()
Q0 = SPEC.default_pose_rad
H = SPEC.standing_height_m
RANGES = np.tile([-3.0, 3.0], (SPEC.num_joints, 1))  # a robot's hardware ranges


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
    return LiveReference.from_spec(SPEC, RANGES, **kwargs)


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


def test_a_stream_published_ahead_keeps_its_start_and_the_past_is_dropped_behind_the_sampled_time():
    """A stream sent seconds ahead of the robot's clock (a burst, a planner) is followed from its first
    sample; what lies buffer_s behind the sampled time goes, and at most max_samples are held."""
    ref = _live(buffer_s=1.0)
    _stream(ref, t0=1.0, duration=6.0)  # 301 samples, all before the first sample() call
    assert ref.samples == 301 and ref.oldest_s == pytest.approx(1.0)
    ref.begin(1.0)
    knee = SPEC.joint_names.index("left_knee_joint")
    early = ref.sample(2.5)  # 1.5 s into the walk: 0.75 m along it, knees bent as the stream says
    assert early.phase == "motion" and early.joint_pos_rad[knee] == pytest.approx(Q0[knee] + 0.3)
    assert early.base_pos_world[0] == pytest.approx(0.75, abs=1e-6)
    assert ref.oldest_s <= 1.5 and ref.oldest_s >= 1.0  # one sample before 2.5 - 1.0 stays
    ref.sample(6.0)
    assert 4.9 <= ref.oldest_s <= 5.0 and ref.newest_s == pytest.approx(7.0)
    capped = _live(max_samples=50)
    _stream(capped, duration=6.0)
    assert capped.samples == 50 and capped.newest_s == pytest.approx(7.0)


def test_a_motion_begun_during_a_blend_out_elsewhere_blends_in_from_that_weight():
    """`begin(t, from_weight=w)`: a rehearsal starting while the live tracker blends out starts at w."""
    ref = _live()
    _stream(ref, duration=4.0)
    ref.begin(1.0, from_weight=0.4)
    assert ref.weight(1.0) == pytest.approx(0.4)
    assert 0.4 < ref.weight(1.5) < 1.0 and ref.weight(1.0 + SPEC.blend_in_s) == pytest.approx(1.0)
    fresh = _live()
    _stream(fresh, duration=4.0)
    fresh.begin(1.0)
    assert fresh.weight(1.0) == 0.0 and ref.weight(1.5) > fresh.weight(1.5)


def test_a_follower_that_carries_on_mid_hold_samples_what_the_first_would():
    """A rehearsal follows a stream span by span, the live tracker as one: a second follower that takes
    the first's `carried` state at a span boundary (here inside a flip held beyond the robot, then at
    its blend back) samples the rest of the stream as the first one does; without it, it does not."""
    knee = SPEC.joint_names.index("left_knee_joint")
    t = np.arange(0.0, 5.0 + 1e-9, 0.02)
    roll = np.where((t > 1.5) & (t < 3.0), 3.0, 0.0)  # a flip: upside down for 1.5 s

    def push_all(ref, t0=0.0):
        for k, tk in enumerate(t):
            q = Q0.copy()
            q[knee] += 0.5 * tk / 5.0
            ref.push(tk - t0, [0.1 * tk, 0.0, 0.75], rpy_to_quat_wxyz([roll[k], 0.0, 0.0]), q,
                     base_lin_vel_world=[0.1, 0.0, 0.0], base_ang_vel_world=[0.0, 0.0, 0.0])

    for boundary in (2.2, 3.1):  # in the hold; in the blend back onto the stream
        whole = _live()
        push_all(whole)
        whole.begin(0.0)
        for tk in t[t <= boundary + 1e-9]:
            whole.sample(tk)
        carried = whole.carried()
        after, fresh = _live(blend_in_s=0.0), _live(blend_in_s=0.0)
        for ref in (after, fresh):
            push_all(ref, t0=boundary)  # the next span's clock starts at the boundary
            ref.begin(0.0)
        after.carry_on(carried, 0.0)
        rest = t[t > boundary + 1e-9]
        first = [whole.sample(tk).joint_pos_rad for tk in rest]
        same = [np.allclose(q, after.sample(tk - boundary).joint_pos_rad, atol=1e-9) for q, tk in zip(first, rest)]
        differs = [not np.allclose(q, fresh.sample(tk - boundary).joint_pos_rad) for q, tk in zip(first, rest)]
        assert all(same) and any(differs), boundary


def test_a_bad_sample_is_refused_with_a_reason():
    ref = _live()
    with pytest.raises(TrackerError, match="joint positions needs 29"):
        ref.push(0.0, [0, 0, 0.8], [1, 0, 0, 0], np.zeros(5))
    with pytest.raises(TrackerError, match="base position"):
        ref.push(0.0, [0, np.nan, 0.8], [1, 0, 0, 0], Q0)
    assert ref.newest_s is None


def _pose_stream(ref, q, duration=4.0, yaw_rate=0.0, speed=0.5, dt=0.02):
    """Walking along its heading at `speed` while turning at `yaw_rate`, joints held at q; the same
    motion as a `RobotReference` for the offline conditioning."""
    t = np.arange(0.0, duration + 1e-9, dt)
    yaw = yaw_rate * t
    pos = np.zeros((t.size, 3))
    pos[:, 0] = speed / yaw_rate * np.sin(yaw) if yaw_rate else speed * t
    pos[:, 1] = speed / yaw_rate * (1.0 - np.cos(yaw)) if yaw_rate else 0.0
    pos[:, 2] = 0.75
    quat = rpy_to_quat_wxyz(np.column_stack([np.zeros((t.size, 2)), yaw]))
    for k in range(t.size):
        heading = np.array([np.cos(yaw[k]), np.sin(yaw[k]), 0.0])
        ref.push(t[k], pos[k], quat[k], q, base_lin_vel_world=speed * heading,
                 base_ang_vel_world=np.array([0.0, 0.0, yaw_rate]))
    return RobotReference(t, pos, quat, np.tile(q, (t.size, 1)))


def test_turning_faster_than_the_limit_is_limited_as_offline_and_the_body_frame_velocity_kept():
    live = _live()
    offline = ConditionedReference.from_spec(_pose_stream(live, Q0, yaw_rate=6.0), SPEC, RANGES)
    live.begin(0.0)
    limit = SPEC.max_reference_yaw_rate_rad_s
    samples = [live.sample(t) for t in np.arange(0.0, 3.0, 0.02)]
    rates = np.array([s.yaw_rate_root_rad_s for s in samples])
    assert rates.max() <= limit and rates[-1] > 0.9 * limit  # the stream turns at 6 rad/s
    steady = offline.sample(offline.play_start_s + 2.0)  # past the offline ease, turning steadily
    assert steady.yaw_rate_root_rad_s == pytest.approx(rates[-1], abs=1e-3)
    np.testing.assert_allclose(samples[-1].base_lin_vel_xy_root, [0.5, 0.0], atol=1e-9)  # what the policy reads
    heading = np.unwrap([s.base_rpy_rad[2] for s in samples[-20:]])
    assert np.diff(heading).mean() / 0.02 == pytest.approx(rates[-1], abs=1e-3)  # the reported path turns with it
    path = np.array([s.base_pos_world[:2] for s in samples[-20:]])
    assert np.linalg.norm(np.diff(path, axis=0), axis=1).mean() / 0.02 == pytest.approx(0.5, abs=0.01)
    assert live.report.yaw_rate_limited and any("turning limited to 2.0 rad/s" in n for n in live.report.notes())


def test_joints_are_scaled_and_clipped_as_the_offline_conditioning_does():
    q = Q0.copy()
    for joint, delta in (("waist_pitch_joint", 0.5), ("waist_roll_joint", -0.4), ("left_elbow_joint", -1.0),
                         ("right_shoulder_roll_joint", -0.6), ("left_knee_joint", 0.3)):
        q[SPEC.joint_names.index(joint)] += delta
    live = _live()
    offline = ConditionedReference.from_spec(_pose_stream(live, q), SPEC, RANGES)
    live.begin(0.0)
    got = live.sample(2.5).joint_pos_rad
    np.testing.assert_allclose(got, offline.sample(offline.play_start_s + 1.5).joint_pos_rad, atol=1e-6)
    at = {j: got[SPEC.joint_names.index(j)] - Q0[SPEC.joint_names.index(j)] for j in SPEC.joint_names}
    assert at["waist_pitch_joint"] == pytest.approx(0.2) and at["waist_roll_joint"] == pytest.approx(-0.2)
    assert at["left_elbow_joint"] == pytest.approx(-0.5) and at["right_shoulder_roll_joint"] == pytest.approx(-0.3)
    assert at["left_knee_joint"] == pytest.approx(0.3)  # legs keep their full swing
    notes = " ".join(live.report.notes())
    assert "waist_pitch_joint" in notes and "swing of 2 joints scaled to 50%" in notes


def test_a_section_beyond_the_robot_settles_from_the_last_pose_within_reach_to_standing_then_blends_back():
    live = _live()
    knee = SPEC.joint_names.index("left_knee_joint")
    t = np.arange(0.0, 5.0 + 1e-9, 0.02)
    roll = np.where((t > 1.5) & (t < 3.0), 3.0, 0.0)  # a flip: upside down for 1.5 s
    live.begin(0.0)
    samples = {}
    for k, tk in enumerate(t):  # as it arrives
        q = Q0.copy()
        q[knee] += 0.5 * tk / 5.0  # keeps bending, so what is held shows
        live.push(tk, [0.1 * tk, 0.0, 0.75], rpy_to_quat_wxyz([roll[k], 0.0, 0.0]), q,
                  base_lin_vel_world=[0.1, 0.0, 0.0], base_ang_vel_world=[0.0, 0.0, 0.0])
        samples[round(tk, 2)] = live.sample(tk)
    knee_at = {tk: s.joint_pos_rad[knee] for tk, s in samples.items()}
    assert knee_at[1.48] <= knee_at[1.52] <= Q0[knee] + 0.5 * 1.52 / 5.0  # the last pose within reach
    for tk in np.arange(1.52, 3.0, 0.1):
        s = samples[round(tk, 2)]
        assert abs(s.base_rpy_rad[0]) < 1e-9 and not s.mimic[:2].any() and s.yaw_rate_root_rad_s == 0.0
    held = np.array([knee_at[round(tk, 2)] for tk in np.arange(1.52, 3.0, 0.02)])
    assert np.all(np.diff(held) <= 1e-12) and np.abs(np.diff(held)).max() < 0.01  # settles, no jump
    np.testing.assert_allclose(samples[2.9].joint_pos_rad, Q0, atol=1e-9)  # standing after blend_out_s
    assert samples[2.9].mimic[2] == pytest.approx(H)
    assert Q0[knee] < knee_at[3.04] < Q0[knee] + 0.5 * 3.04 / 5.0  # back within reach: blending onto it
    assert knee_at[3.7] == pytest.approx(Q0[knee] + 0.5 * 3.7 / 5.0)
    back = np.array([knee_at[round(tk, 2)] for tk in np.arange(2.9, 3.7, 0.02)])
    assert np.abs(np.diff(back)).max() < 0.03  # the stream was 0.3 rad away: no jump
    assert any("held a pose 1.5 s beyond the robot (base tilt 3.00 rad)" in n for n in live.report.notes())
