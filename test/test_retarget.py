"""Retargeting: real HumanML3D motion onto H1/G1/default within limits, resampling, streaming."""
import numpy as np
import pytest

from momask_ros.retarget.retargeter import RetargetStream, Retargeter, RobotTrajectory, resample, yup_to_zup
from momask_ros.robot.model import load_robot
from momask_ros.retarget.trajectory import bspline_knots, hermite

SAMPLE = "humanml3d_sample/new_joints/012314.npy"
# Mean keypoint error threshold [m]: robot points vs scaled human targets after forward kinematics. H1's
# torso cannot pitch or roll, so the crouched, leaning start of this clip costs it (and the H1-like default)
# more than G1 with its 3-DoF waist.
MAX_MEAN_ERROR_M = {"h1": 0.12, "g1": 0.07, "default": 0.13}  # measured 0.107 / 0.047 / 0.120
CLIP = slice(0, 80)  # 4 s of the sample keeps the file fast on one core


@pytest.fixture(scope="module")
def motion(shared_data):
    return np.load(shared_data / SAMPLE)[CLIP]


@pytest.fixture(scope="module")
def robots(shared_data):
    return {
        "default": load_robot("default"),
        "h1": load_robot("h1", description=shared_data / "robots/unitree_h1/h1.xml"),
        "g1": load_robot("g1", description=shared_data / "robots/unitree_g1/g1_29dof.xml"),
    }


def _assert_within_limits(traj: RobotTrajectory, robot) -> None:
    lo, hi = robot.position_limits[:, 0], robot.position_limits[:, 1]
    assert np.all(traj.positions >= lo) and np.all(traj.positions <= hi), "position limit violated"
    assert np.all(np.abs(traj.velocities) <= robot.velocity_limits + 1e-9), "velocity limit violated"
    assert np.all(np.isfinite(traj.positions)) and np.all(np.isfinite(traj.velocities))


def test_axis_conversion_is_a_rotation():
    p = np.array([[1.0, 2.0, 3.0]])  # left 1, up 2, forward 3
    assert yup_to_zup(p).tolist() == [[3.0, 1.0, 2.0]]  # forward x, left y, up z


@pytest.mark.parametrize("name", ["h1", "g1", "default"])
def test_real_motion_retargets_with_low_error_and_no_violations(name, robots, motion):
    robot = robots[name]
    traj = Retargeter(robot, rate_hz=50.0).retarget(motion, fps=20.0)
    assert traj.joint_names == robot.joint_names
    assert traj.times_s[0] == 0.0 and traj.times_s[-1] == pytest.approx((len(motion) - 1) / 20.0)
    assert np.allclose(np.diff(traj.times_s)[:-1], 0.02) and 0 < np.diff(traj.times_s)[-1] <= 0.02 + 1e-12
    _assert_within_limits(traj, robot)
    assert len(traj.keypoint_error_m) == len(motion)
    assert traj.keypoint_error_m.mean() < MAX_MEAN_ERROR_M[name]
    assert traj.max_penetration_m < 0.01  # feet never more than 1 cm below the floor
    assert np.allclose(np.linalg.norm(traj.base_quat_wxyz, axis=1), 1.0)
    # the base follows the human root: same travelled distance up to the leg-length scale
    human_root = yup_to_zup(motion[:, 0])
    human_path = np.linalg.norm(human_root[-1, :2] - human_root[0, :2])
    robot_path = np.linalg.norm(traj.base_position[-1, :2] - traj.base_position[0, :2])
    assert robot_path == pytest.approx(human_path, rel=0.5, abs=0.1)


def test_velocities_are_the_derivative_of_positions(robots, motion):
    traj = Retargeter(robots["g1"], rate_hz=200.0).retarget(motion[:40])
    fd = np.diff(traj.positions, axis=0) / np.diff(traj.times_s)[:, None]
    mid = 0.5 * (traj.velocities[1:] + traj.velocities[:-1])
    assert np.max(np.abs(fd - mid)) < 0.05 * max(1.0, np.abs(traj.velocities).max())


def test_impossible_pose_stays_within_limits(robots):
    rng = np.random.default_rng(0)
    base = np.array([[0, .9, 0], [.1, .85, 0], [-.1, .85, 0], [0, 1.0, 0], [.1, .45, 0], [-.1, .45, 0], [0, 1.1, 0],
                     [.1, .05, 0], [-.1, .05, 0], [0, 1.2, 0], [.1, 0, .1], [-.1, 0, .1], [0, 1.45, 0], [.07, 1.35, 0],
                     [-.07, 1.35, 0], [0, 1.55, 0], [.18, 1.38, 0], [-.18, 1.38, 0], [.45, 1.38, 0], [-.45, 1.38, 0],
                     [.7, 1.38, 0], [-.7, 1.38, 0]], float)
    frames = base[None] + rng.normal(0, 0.02, (12, 22, 3))
    frames[6:, 18:22, 0] *= 8.0   # arms stretched several metres sideways
    frames[8:, 20, 1] += 3.0      # a wrist 3 m above the head
    frames[10:, 7, 2] -= 2.0      # an ankle 2 m behind
    for name in ("h1", "default"):
        traj = Retargeter(robots[name]).retarget(frames)
        _assert_within_limits(traj, robots[name])


def test_bad_input_is_rejected(robots):
    rt = Retargeter(robots["default"])
    with pytest.raises(ValueError, match="shape"):
        rt.retarget(np.zeros((10, 21, 3)))
    bad = np.zeros((10, 22, 3))
    bad[3, 5, 1] = np.nan
    with pytest.raises(ValueError, match="frame 3"):
        rt.retarget(bad)
    with pytest.raises(ValueError, match="fps"):
        rt.retarget(np.zeros((10, 22, 3)), fps=0.0)


def test_resampling_preserves_ends_and_is_smooth(robots, motion):
    robot = robots["default"]
    traj = Retargeter(robot, rate_hz=50.0).retarget(motion[:41])
    fine = resample(traj, 500.0)
    assert fine.times_s[0] == traj.times_s[0] and fine.times_s[-1] == pytest.approx(traj.times_s[-1])
    np.testing.assert_allclose(fine.positions[0], traj.positions[0], atol=1e-12)
    np.testing.assert_allclose(fine.positions[-1], traj.positions[-1], atol=1e-9)
    _assert_within_limits(fine, robot)
    # bounded second differences: |q[i+1] - 2 q[i] + q[i-1]| <= a_max dt^2 for a modest a_max
    dt = 1.0 / 500.0
    second = np.abs(np.diff(fine.positions, 2, axis=0))
    assert second.max() < 200.0 * dt * dt
    # no jumps anywhere: consecutive samples differ by at most v_max * dt
    assert np.all(np.abs(np.diff(fine.positions, axis=0)) <= robot.velocity_limits * dt + 1e-9)
    coarse = resample(traj, 25.0)
    assert coarse.times_s[-1] == pytest.approx(traj.times_s[-1])


def _hermite_acc(h, p0, p1, m0, m1, u):
    """Second derivative of a cubic Hermite piece at u in [0, 1]."""
    return ((12 * u - 6) * (p0 - p1) / h + (6 * u - 4) * m0 + (6 * u - 2) * m1) / h


def test_bspline_knots_make_a_c2_spline_that_keeps_its_ends_and_bounds():
    rng = np.random.default_rng(3)
    dt = 0.05
    control = np.cumsum(rng.normal(0, 0.1, (30, 4)), axis=0)
    values, slopes = bspline_knots(dt, control)
    assert values.shape == control.shape and slopes.shape == control.shape
    np.testing.assert_allclose(values[[0, -1]], control[[0, -1]])            # the ends are kept
    np.testing.assert_allclose(slopes[0], (control[1] - control[0]) / dt)     # one-sided at the ends
    # C2: the acceleration leaving each inner knot equals the one arriving (Catmull-Rom jumps there)
    for k in range(1, len(control) - 1):
        into = _hermite_acc(dt, values[k - 1], values[k], slopes[k - 1], slopes[k], 1.0)
        out = _hermite_acc(dt, values[k], values[k + 1], slopes[k], slopes[k + 1], 0.0)
        np.testing.assert_allclose(into, out, atol=1e-8 * max(1.0, np.abs(into).max()))
    # a convex combination: inside the points' box, and no secant steeper than the steepest step
    assert np.all(values >= control.min(0) - 1e-12) and np.all(values <= control.max(0) + 1e-12)
    steepest = np.abs(np.diff(control, axis=0)).max(0) / dt
    assert np.all(np.abs(np.diff(values, axis=0)) / dt <= steepest + 1e-9)
    assert np.all(np.abs(slopes) <= steepest + 1e-9)
    # a sampled piece matches its knots at its ends
    pos, _ = hermite(0.0, dt, values[3], values[4], slopes[3], slopes[4], np.array([0.0, dt]))
    np.testing.assert_allclose(pos, values[3:5])
    one, zero = bspline_knots(dt, control[:1])          # a single point: itself, at rest
    np.testing.assert_allclose(one, control[:1])
    np.testing.assert_allclose(zero, 0.0)


def test_retargeted_acceleration_does_not_jump_at_keyframes(robots, motion):
    """The output is the C2 B-spline over the keyframes: its acceleration, sampled finely, changes by
    little from one sample to the next, also across a keyframe (a C1 spline would jump there)."""
    robot = robots["default"]
    traj = Retargeter(robot, rate_hz=400.0).retarget(motion[:41])
    t, q = traj.times_s[:-1], traj.positions[:-1]      # the last sample is the off-grid end
    acc = np.diff(q, 2, axis=0) / np.diff(t)[0] ** 2
    step = np.abs(np.diff(acc, axis=0))
    knot = np.zeros(len(step), bool)
    knot[np.arange(20, len(step), 20) - 1] = True        # keyframes every 20 samples (400 Hz / 20 fps)
    typical = np.abs(acc).max(0)
    # across keyframes, the acceleration changes no more than elsewhere (jerk is bounded, C2)
    assert np.all(step[knot].max(0) <= 2.0 * step[~knot].max(0) + 1e-6 * typical)
    assert step.max() < 0.05 * np.abs(acc).max()


def test_resample_stretches_time_instead_of_exceeding_velocity():
    names = ("j",)
    traj = RobotTrajectory(names, np.array([0.0, 1.0]), np.array([[0.0], [1.0]]), np.array([[5.0], [5.0]]),
                           np.zeros((2, 3)), np.tile([1.0, 0, 0, 0], (2, 1)), position_limits=np.array([[-10, 10.0]]),
                           velocity_limits=np.array([2.0]))
    out = resample(traj, 100.0)
    assert np.all(np.abs(out.velocities) <= 2.0 + 1e-9)
    assert out.times_s[-1] > 1.0 and out.positions[-1, 0] == pytest.approx(1.0)
    assert np.all(np.abs(np.diff(out.positions[:, 0])) < 0.05)


@pytest.mark.parametrize("chunk", [7, 25])
def test_streaming_chunks_equal_batch_and_join_seamlessly(robots, motion, chunk):
    robot = robots["g1"]
    rt = Retargeter(robot, rate_hz=50.0)
    clip = motion[:60]
    batch = rt.retarget(clip)
    stream: RetargetStream = rt.stream(fps=20.0)
    parts = [stream.push(clip[i:i + chunk]) for i in range(0, len(clip), chunk)] + [stream.finish()]
    assert sum(len(p) for p in parts[:-1]) > 0, "samples must come out before the end of the motion"
    joined = RobotTrajectory.concatenate(parts)
    np.testing.assert_allclose(joined.times_s, batch.times_s, atol=1e-12)
    np.testing.assert_allclose(joined.positions, batch.positions, atol=1e-9)
    np.testing.assert_allclose(joined.velocities, batch.velocities, atol=1e-9)
    np.testing.assert_allclose(joined.base_position, batch.base_position, atol=1e-9)
    np.testing.assert_allclose(joined.base_quat_wxyz, batch.base_quat_wxyz, atol=1e-9)
    assert np.all(np.diff(joined.times_s) > 0)
    assert np.all(np.abs(np.diff(joined.positions, axis=0)) <= robot.velocity_limits * 0.02 + 1e-9)


def test_calibrating_up_front_gives_early_samples_and_the_same_trajectory(robots, motion):
    """A caller holding the whole clip calibrates first; then 6 frames already release samples."""
    rt = Retargeter(robots["default"], rate_hz=50.0)
    clip = motion[:60]
    batch = rt.retarget(clip)
    late = rt.stream(fps=20.0)
    assert len(late.push(clip[:6])) == 0  # waits for calibration_frames (20) before any IK
    stream = rt.stream(fps=20.0)
    stream.calibrate(clip)
    parts = [stream.push(clip[:6])]
    assert len(parts[0]) > 0
    parts += [stream.push(clip[i:i + 20]) for i in range(6, len(clip), 20)] + [stream.finish()]
    joined = RobotTrajectory.concatenate(parts)
    np.testing.assert_array_equal(joined.positions, batch.positions)
    np.testing.assert_array_equal(joined.times_s, batch.times_s)
    with pytest.raises(RuntimeError, match="before the first push"):
        stream.calibrate(clip)
    with pytest.raises(ValueError):
        rt.stream(fps=20.0).calibrate(np.full((5, 22, 3), np.nan))


def test_single_frame_and_short_clip(robots, motion):
    rt = Retargeter(robots["default"])
    one = rt.retarget(motion[:1])
    assert len(one) == 1 and one.times_s[0] == 0.0
    short = rt.retarget(motion[:3])
    assert short.times_s[-1] == pytest.approx(0.1)
    _assert_within_limits(short, robots["default"])


@pytest.mark.parametrize("finished", [False, True])
def test_rewind_continues_from_the_streams_own_state(robots, motion, finished):
    """Rewinding to a switch frame and pushing a continuation gives what retargeting the joined human
    motion in one go gives: the samples before the cut are untouched, those after equal the batch."""
    rt = Retargeter(robots["default"])
    first, other = motion[:60], motion[20:60] + np.array([0.3, 0.0, 0.2])  # a different motion after frame 36
    switch = 36
    stream = rt.stream()
    parts = [stream.push(first[:24]), stream.push(first[24:])]
    if finished:
        parts.append(stream.finish())
    played = RobotTrajectory.concatenate(parts)
    cut = stream.rewind(switch)
    assert cut == pytest.approx(stream.cut_time(switch)) and 0 < cut < switch / 20
    after = RobotTrajectory.concatenate([stream.push(other), stream.finish()])
    joined = np.concatenate([first[:switch], other])
    batch = rt.retarget(joined)
    keep = played.times_s < cut - 1e-9
    assert after.times_s[0] == pytest.approx(cut)
    assert np.allclose(np.concatenate([played.times_s[keep], after.times_s]), batch.times_s)
    assert np.allclose(np.concatenate([played.positions[keep], after.positions]), batch.positions, atol=1e-9)
    assert np.allclose(np.concatenate([played.base_position[keep], after.base_position]), batch.base_position,
                       atol=1e-9)
    with pytest.raises(ValueError, match="rewind"):
        stream.rewind(10_000)
