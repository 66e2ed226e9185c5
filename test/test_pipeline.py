"""MotionPipeline and playbacks: generation -> clip -> samples within limits, blending, stop, rest."""
import threading

import numpy as np
import pytest

from momask_ros.stream.commands import MotionCommand
from momask_ros.retarget.frames import human_yup_to_ros
from momask_model.generation.loading import BundleNotFound, DeviceUnavailable, default_bundle_path, resolve_bundle_path, select_device
from momask_ros.stream.pipeline import MotionPipeline
from momask_ros.stream.retargeting import FIRST_CHUNK_FRAMES
from momask_ros.stream.clip import MotionClip
from momask_ros.stream.playback import BlendToPosePlayback, HoldPlayback, MotionPlayback, StopPlayback
from momask_ros.stream.state import JointSpace, PipelineError, RobotPose

from motion_fakes import AngleRetargeter, ChunkStream, WalkGenerator


@pytest.fixture
def pipeline():
    r = AngleRetargeter()
    return MotionPipeline(WalkGenerator(), r, r.joint_space, chunk_frames=8, seed=3)


def rest_pose(space):
    return RobotPose(space.rest.copy(), np.array([5.0, -2.0, 0.9]), np.array([np.cos(0.4), 0, 0, np.sin(0.4)]))


def test_select_device():
    import torch

    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailable, match="cuda"):
            select_device("cuda")
    with pytest.raises(ValueError, match="tpu"):
        select_device("tpu")


def test_bundle_path_resolution(tmp_path):
    assert default_bundle_path().parts[-3:] == ("momask_model", "assets", "demo_bundle.pt")
    with pytest.raises(BundleNotFound, match="nope.pt"):
        resolve_bundle_path(tmp_path / "nope.pt")
    f = tmp_path / "b.pt"
    f.write_bytes(b"x")
    assert resolve_bundle_path(str(f)) == f


def test_human_to_ros_axes_is_a_proper_rotation():
    basis = np.eye(3)
    m = human_yup_to_ros(basis)  # rows: images of x_h, y_h, z_h
    assert np.linalg.det(m) == pytest.approx(1.0)
    assert np.allclose(human_yup_to_ros(np.array([0.0, 1.0, 0.0])), [0, 0, 1])  # up stays up
    assert np.allclose(human_yup_to_ros(np.array([0.0, 0.0, 1.0])), [1, 0, 0])  # facing -> forward


def test_joint_space_rejects_bad_limits():
    with pytest.raises(ValueError, match="lower"):
        JointSpace(("a",), np.array([1.0]), np.array([0.0]), np.array([0.0]))
    with pytest.raises(ValueError, match="unique"):
        JointSpace(("a", "a"), np.zeros(2), np.ones(2), np.zeros(2))


def test_run_fills_clip_within_limits(pipeline):
    clip = pipeline.run(MotionCommand("walk", length_frames=40))
    assert clip.complete and clip.frames_ready == 40 and clip.human_frames == 40
    assert clip.duration_s == pytest.approx(39 / 20)
    space = pipeline.joint_space
    times, positions, _, _ = clip.samples()
    assert space.within(positions) and np.all(np.diff(times) > 0)
    raw = AngleRetargeter().retarget(pipeline.generate(MotionCommand("walk", length_frames=40)).joints_yup).positions
    assert not space.within(raw)  # the exaggerated fake does exceed limits, so clipping was exercised
    assert np.isfinite(clip.first_chunk_ms) and clip.retarget_ms >= clip.first_chunk_ms


def test_seed_and_length_reach_the_generator(pipeline):
    pipeline.generate(MotionCommand("walk", length_frames=44, seed=9))
    pipeline.generate(MotionCommand("walk"))
    assert pipeline.generator.calls == [("walk", 44, 9), ("walk", 60, 3)]


def test_generation_failure_is_a_pipeline_error():
    r = AngleRetargeter()
    p = MotionPipeline(WalkGenerator(fail_on="boom"), r, r.joint_space)
    with pytest.raises(PipelineError, match="boom"):
        p.generate(MotionCommand("boom now"))


def test_playback_blends_from_start_pose_and_anchors_base(pipeline):
    space = pipeline.joint_space
    clip = pipeline.run(MotionCommand("walk", length_frames=60))
    start = rest_pose(space)
    play = MotionPlayback(clip, start, blend_s=0.5)
    s0 = play.sample(0.0)
    assert np.allclose(s0.positions, start.positions)
    assert np.allclose(s0.base_position, start.base_position, atol=1e-6)
    assert np.allclose(np.abs(s0.base_quat_wxyz @ start.base_quat_wxyz), 1.0, atol=1e-6)
    late = play.sample(1.0)
    assert np.allclose(late.positions, clip.at(1.0)[0])
    # the base path is the clip's path re-anchored: same distance travelled
    moved_clip = np.linalg.norm(clip.at(1.0)[1][:2] - clip.base_position[0, :2])
    moved_play = np.linalg.norm(late.base_position[:2] - start.base_position[:2])
    assert moved_play == pytest.approx(moved_clip, rel=1e-6)


def test_playback_is_continuous_and_velocity_matches_positions(pipeline):
    space = pipeline.joint_space
    clip = pipeline.run(MotionCommand("walk", length_frames=60))
    play = MotionPlayback(clip, rest_pose(space), blend_s=0.4)
    dt = 0.02
    ts = np.arange(0, play.duration_s, dt)
    samples = [play.sample(t) for t in ts]
    q = np.stack([s.positions for s in samples])
    assert all(space.within(s.positions) for s in samples)
    assert np.max(np.abs(np.diff(q, axis=0))) < 0.3  # no jumps at 50 Hz
    v = np.stack([s.velocities for s in samples])
    fd = np.gradient(q, dt, axis=0)
    assert np.median(np.abs(v - fd)) < 0.2 * np.median(np.abs(fd)) + 1e-3
    assert play.finished(play.duration_s) and not play.finished(play.duration_s / 2)


def test_speed_scales_duration(pipeline):
    clip = pipeline.run(MotionCommand("walk", length_frames=40))
    start = rest_pose(pipeline.joint_space)
    assert MotionPlayback(clip, start, speed=2.0).duration_s == pytest.approx(clip.duration_s / 2)
    slow = MotionPlayback(clip, start, speed=0.5, blend_s=0.0)
    assert np.allclose(slow.sample(1.0).positions, clip.at(0.5)[0])


def test_streaming_playback_waits_for_frames_then_plays():
    r = AngleRetargeter()
    p = MotionPipeline(WalkGenerator(), r, r.joint_space, chunk_frames=5, stream_factory=lambda fps: ChunkStream(r, fps))
    motion = p.generate(MotionCommand("walk", length_frames=40))
    clip = p.new_clip(motion)
    play = MotionPlayback(clip, rest_pose(r.joint_space))
    assert play.sample(0.0) is None and not play.finished(0.0)
    gate = threading.Event()
    seen = []

    def cancelled():
        seen.append(clip.frames_ready)
        return False

    worker = threading.Thread(target=lambda: (p.fill_clip(motion, clip, cancelled=cancelled), gate.set()))
    worker.start()
    worker.join(10)
    assert gate.is_set() and clip.complete
    assert seen[:3] == [0, 5, 10]  # filled chunk by chunk
    full = p.new_clip(motion)
    MotionPipeline(WalkGenerator(), r, r.joint_space).fill_clip(motion, full)
    assert full.frames_ready == clip.frames_ready == 40
    assert np.allclose(full.samples()[1], clip.samples()[1])  # same samples whether streamed or not
    assert np.allclose(full.samples()[0], clip.samples()[0])
    traj_t, traj_q, traj_v = play.trajectory()
    assert np.all(np.diff(traj_t) > 0) and traj_t[-1] == pytest.approx(play.duration_s)
    assert r.joint_space.within(traj_q)
    for k in (0, 3, len(traj_t) // 2, len(traj_t) - 1):  # the vectorised grid equals the per-tick samples
        assert np.allclose(traj_q[k], play.sample(float(traj_t[k])).positions)
    assert np.allclose(traj_v, np.gradient(traj_q, traj_t, axis=0))


def test_joint_trajectory_follows_the_joint_states_between_samples(pipeline):
    """The JointTrajectory is read on the clip's Hermite curve and the blend, as every JointState is:
    at any time, between the retargeter's samples included, both give the same positions (it used
    straight lines between samples: up to 4.5e-4 rad apart at 50 Hz on the real retargeter)."""
    clip = pipeline.run(MotionCommand("walk", length_frames=60))
    play = MotionPlayback(clip, rest_pose(pipeline.joint_space), blend_s=0.4, speed=1.3)
    times, positions, _ = play.trajectory(step_s=0.0137)  # off every sample time
    sample_times = clip.samples()[0]
    between = [k for k, t in enumerate(times) if np.abs(sample_times - play.clip_time(t)).min() > 5e-3]
    assert len(between) > 0.5 * len(times)
    for k in between:
        assert np.allclose(positions[k], play.sample(float(times[k])).positions, atol=1e-12, rtol=0)
    # and the polyline it used to be is measurably off there
    c_times, c_pos = clip.samples()[:2]
    t_src = np.array([play.clip_time(t) for t in times[between]])
    linear = np.stack([np.interp(t_src, c_times, c_pos[:, j]) for j in range(c_pos.shape[1])], axis=1)
    w = np.clip(times[between] / 0.4, 0, 1)
    w = (w * w * (3 - 2 * w))[:, None]
    polyline = pipeline.joint_space.clip((1 - w) * rest_pose(pipeline.joint_space).positions + w * linear)
    assert np.abs(polyline - positions[between]).max() > 1e-3


def test_stream_that_calibrates_up_front_gets_a_small_first_chunk():
    r = AngleRetargeter()
    pushed, calibrated = [], []

    class CalibratingStream(ChunkStream):
        def calibrate(self, joints_yup):
            calibrated.append(len(joints_yup))

        def push(self, joints_yup):
            pushed.append(len(joints_yup))
            return super().push(joints_yup)

    p = MotionPipeline(WalkGenerator(), r, r.joint_space, chunk_frames=20,
                       stream_factory=lambda fps: CalibratingStream(r, fps))
    motion = p.generate(MotionCommand("walk", length_frames=48))
    clip = p.new_clip(motion)
    p.fill_clip(motion, clip)
    assert calibrated == [48]  # the whole clip, before the first push
    # small first, then doubling up to chunk_frames (each chunk is retargeted while the one before plays)
    assert pushed == [FIRST_CHUNK_FRAMES, 2 * FIRST_CHUNK_FRAMES, 20, 48 - 20 - 3 * FIRST_CHUNK_FRAMES]
    assert clip.complete and clip.frames_ready == 48


def test_clip_reads_between_samples_on_their_hermite_curve_not_a_polyline():
    """A control tick lands anywhere between two samples: the clip gives the cubic through the
    samples and their velocities (exact for a cubic), where straight lines would put a kink at
    every sample (acceleration and jerk noise in the published stream)."""
    space = JointSpace(("a", "b"), np.array([-10.0, -0.5]), np.array([10.0, 0.5]), np.zeros(2))
    times = np.arange(0.0, 1.0001, 0.1)
    q = np.stack([times ** 3 - times, np.full_like(times, 0.7)], axis=1)     # "b" beyond its limit
    v = np.stack([3 * times ** 2 - 1, np.full_like(times, 2.0)], axis=1)
    clip = MotionClip(joint_space=space, fps=20.0, human_joints_ros=np.zeros((21, 22, 3)))
    clip.append(times, q, np.zeros((len(times), 3)), np.tile([1.0, 0, 0, 0], (len(times), 1)), v)
    for t in (0.05, 0.137, 0.55, 0.999):
        pos = clip.at(t)[0]
        assert pos[0] == pytest.approx(t ** 3 - t, abs=1e-12)
        assert pos[1] == pytest.approx(0.5)                 # clipped: flat, its velocity zeroed
    assert clip.velocities[:, 1].max() == 0.0
    # without velocities: finite differences of the samples, still a smooth read between them
    rough = MotionClip(joint_space=space, fps=20.0, human_joints_ros=np.zeros((21, 22, 3)))
    rough.append(times, q, np.zeros((len(times), 3)), np.tile([1.0, 0, 0, 0], (len(times), 1)))
    assert rough.at(0.55)[0][0] == pytest.approx(0.55 ** 3 - 0.55, abs=2e-3)
    for bad in (np.full_like(q, np.nan), q[:, :1]):       # NaN, or the wrong shape: one clear error
        with pytest.raises(PipelineError, match="velocities"):
            rough.append(times + 2.0, q, np.zeros((len(times), 3)), np.tile([1.0, 0, 0, 0], (len(times), 1)), bad)
    assert rough.frames_ready == len(times)               # and the clip is as it was


def test_failed_retarget_marks_clip_failed():
    class Broken(AngleRetargeter):
        def retarget(self, joints_yup, fps=20.0):
            out = super().retarget(joints_yup, fps)
            out.positions[3, 0] = np.nan
            return out

    r = Broken()
    p = MotionPipeline(WalkGenerator(), r, r.joint_space)
    motion = p.generate(MotionCommand("walk", length_frames=20))
    clip = p.new_clip(motion)
    with pytest.raises(PipelineError, match="non-finite"):
        p.fill_clip(motion, clip)
    play = MotionPlayback(clip, rest_pose(r.joint_space))
    assert play.sample(0.0) is None and play.finished(0.0)


def test_stop_decelerates_continuously_then_holds(pipeline):
    space = pipeline.joint_space
    clip = pipeline.run(MotionCommand("walk", length_frames=60))
    moving = MotionPlayback(clip, rest_pose(space), blend_s=0.0).sample(1.0)
    stop = StopPlayback(moving, space, stop_s=0.2)
    s0 = stop.sample(0.0)
    assert np.allclose(s0.positions, moving.positions)
    inside = (moving.positions > space.lower) & (moving.positions < space.upper)
    assert np.allclose(s0.velocities[inside], moving.velocities[inside])
    end = stop.sample(0.2)
    assert np.allclose(end.velocities, 0.0) and stop.finished(0.2)
    assert np.allclose(stop.sample(5.0).positions, end.positions)
    assert space.within(end.positions)
    assert np.allclose(stop.final_pose().positions, end.positions)


def test_hold_and_return_to_rest(pipeline):
    space = pipeline.joint_space
    pose = RobotPose(space.upper.copy())
    hold = HoldPlayback(pose)
    assert np.allclose(hold.sample(100.0).positions, space.upper) and not hold.finished(1e9)
    rest = BlendToPosePlayback(pose, space.rest, space, duration_s=1.0)
    assert np.allclose(rest.sample(0.0).positions, space.upper)
    assert np.allclose(rest.sample(0.0).velocities, 0.0) and np.allclose(rest.sample(1.0).velocities, 0.0)
    assert np.allclose(rest.sample(1.0).positions, space.rest) and rest.finished(1.0)


def test_warm_up_runs_a_short_motion(pipeline):
    ms = pipeline.warm_up()
    assert ms > 0 and pipeline.generator.calls[-1][1] == 16


def test_real_tiny_momask_and_default_robot_through_pipeline():
    """The real generator (tiny random MoMask) and the real retargeter (default robot, streamed)."""
    from momask_model.generation.bundle import build_random_momask
    from momask_model.config import tiny_config

    model = build_random_momask(tiny_config())
    p = MotionPipeline.for_model(model, robot="default", sampling={"timesteps": 2}, chunk_frames=12)
    assert p.fps == 20.0 and p.unit_frames == 4 and p.max_frames == 196
    assert p.stream_factory is not None and len(p.joint_space.names) == 19
    a = p.run(MotionCommand("a person walks forward", length_frames=24, seed=1))
    b = p.run(MotionCommand("a person walks forward", length_frames=24, seed=1))
    assert a.human_frames == 24 and np.array_equal(a.human_joints, b.human_joints)
    times, positions, base, quat = a.samples()
    assert times[0] == 0.0 and times[-1] == pytest.approx(23 / 20) and np.allclose(np.diff(times)[:-1], 0.02)
    assert p.joint_space.within(positions)
    assert np.allclose(np.linalg.norm(quat, axis=1), 1.0)
    play = MotionPlayback(a, RobotPose(p.joint_space.rest, base_valid=False), blend_s=0.3)
    assert all(p.joint_space.within(play.sample(t).positions) for t in np.arange(0, play.duration_s, 0.02))
    # no base known yet: the blend starts from the robot standing at rest (where a simulator holds it), with
    # its feet never pushed into the floor, and the clip's own base path follows (no re-anchoring)
    rest_p, rest_q = p.joint_space.rest_base
    s0 = play.sample(0.0)
    assert np.allclose(s0.base_position, rest_p) and np.allclose(s0.base_quat_wxyz, rest_q)
    lowest = p.joint_space.lowest_foot_z
    for t in np.arange(0.0, 0.3, 0.02):
        s, (q_m, p_m, quat_m, _) = play.sample(t), a.at(t)
        assert lowest(s.positions, s.base_position, s.base_quat_wxyz) >= -max(0.0, -lowest(q_m, p_m, quat_m)) - 1e-9
    assert np.allclose(play.sample(0.6).base_position, a.at(0.6)[1])
    limits = p.command_limits()
    assert (limits.min_frames, limits.max_frames, limits.fps) == (4, 1200, 20.0)  # 60 s: windows continue
    refusal = p.check_text("a person xyzzy")  # the bag-of-words encoder's own rule
    assert refusal.fields["unknown_words"] == ["xyzzy"] and "walks" in refusal.fields["known_words"]


def played_walk(played_s):
    """A 3 s walk retargeted into a session, played up to ``played_s``: (retargeter, pipeline, motion,
    session, playback, the clip's positions)."""
    r = AngleRetargeter()
    p = MotionPipeline(WalkGenerator(), r, r.joint_space, chunk_frames=8, stream_factory=lambda fps: ChunkStream(r, fps))
    first = p.generate(MotionCommand("walk", length_frames=60, seed=1))
    session = p.open_session(first)
    session.push(first.joints_yup)
    play = MotionPlayback(session.clip, rest_pose(r.joint_space), blend_s=0.0)
    before = session.clip.samples()[1].copy()
    play.sample(played_s)
    return r, p, first, session, play, before


def test_continuation_replaces_the_tail_ahead_of_playback_and_refuses_a_late_one():
    """A session continues its clip from a frame: the samples before the cut stay, those after come
    from the joined motion; a cut already played is refused (`SwitchTooLate`) and leaves the clip as is."""
    from momask_ros.stream.clip import SwitchTooLate

    r, p, first, session, play, before = played_walk(0.5)
    clip = session.clip
    second = p.continue_from(first, 24, MotionCommand("walk faster now", length_frames=40))
    cuts = []
    session.push(second.joints_yup, at_frame=24, on_commit=cuts.append)
    assert cuts == [pytest.approx(24 / 20)] and clip.complete and session.frames == 64
    times, positions, _, _ = clip.samples()
    assert np.allclose(positions[:24], before[:24]) and times[-1] == pytest.approx(63 / 20)
    joined = np.concatenate([first.joints_yup[:24], second.joints_yup])
    assert np.allclose(positions, r.joint_space.clip(r.retarget(joined).positions))  # as if in one piece
    assert np.allclose(clip.human_joints, human_yup_to_ros(joined))
    play.sample(2.0)
    with pytest.raises(SwitchTooLate):
        session.push(second.joints_yup, at_frame=32)
    assert np.allclose(clip.samples()[1], positions)  # untouched


def test_a_refused_continuation_gives_back_what_it_replaced():
    """Rehearse refuses a continuation none of which would play: the session takes it back, and the clip
    has the replaced samples, human frames, completeness and playable limit again, bit for bit; a later join
    re-pushes the motion from where the continuation took over. Playback at or past the cut, or another replacement since, keep
    the clip as it is."""
    import threading

    r, p, first, session, play, before = played_walk(0.5)
    clip, lock = session.clip, threading.Lock()
    clip.verified_s = -np.inf  # rehearsed: its own rehearsal cleared it to the end
    clip.verify(clip.duration_s, since=0)
    old = [a.copy() for a in clip.samples()] + [clip.human_joints.copy(), clip.base_velocity[:clip.frames_ready].copy()]
    limit = clip.verified_s
    base, cont = object(), object()
    session.segments[:] = [(0, base)]
    second = p.continue_from(first, 24, MotionCommand("walk faster now", length_frames=40))
    session.push(second.joints_yup, at_frame=24)
    session.segments.append((24, cont))
    cut = clip.replaced[-1]
    assert clip.verified_s == cut and clip.duration_s > 3.0
    assert not session.restore(base, cut, ends_at=60, lock=lock)  # not the last segment
    assert not session.restore(cont, cut + 0.05, ends_at=60, lock=lock)  # not its cut
    assert not session.restore(cont, cut, ends_at=64, lock=lock)  # what it replaced ended elsewhere
    assert session.restore(cont, cut, ends_at=60, lock=lock)
    now = [a.copy() for a in clip.samples()] + [clip.human_joints, clip.base_velocity[:clip.frames_ready]]
    assert all(np.array_equal(a, b) for a, b in zip(now, old))
    assert clip.complete and clip.verified_s == limit and session.segments == [(0, base)]
    assert not session.restore(cont, cut, ends_at=60, lock=lock)
    # its stream went on with the continuation from frame 24: a later join pushes the walk again from there,
    # and gets the samples it had
    assert session.frames == 24
    third = p.continue_from(first, 40, MotionCommand("walk on", length_frames=20))
    session.push(np.concatenate([first.joints_yup[24:40], third.joints_yup]), at_frame=24)
    times, positions = clip.samples()[:2]
    assert np.array_equal(positions[:40], old[1][:40]) and times[-1] == pytest.approx(59 / 20)
    # playback reached the cut: what plays stays
    r, p, first, session, play, _ = played_walk(0.5)
    session.clip.verified_s = -np.inf
    session.clip.verify(session.clip.duration_s, since=0)
    session.segments[:] = [(0, base)]
    session.push(p.continue_from(first, 24, MotionCommand("walk", length_frames=40)).joints_yup, at_frame=24)
    session.segments.append((24, cont))
    session.clip.verify(session.clip.duration_s, since=1)  # the continuation's rehearsal cleared some
    play.sample(session.clip.replaced[-1] + 0.01)
    assert not session.restore(cont, session.clip.replaced[-1], ends_at=60, lock=lock)
    assert session.segments[-1] == (24, cont) and session.clip.duration_s > 3.0


def test_playback_speed_changes_keep_positions_continuous(pipeline):
    clip = pipeline.run(MotionCommand("walk", length_frames=60))
    play = MotionPlayback(clip, rest_pose(pipeline.joint_space), blend_s=0.0)
    before = play.sample(1.0).positions
    play.change_speed(1.0, 2.0)
    assert np.allclose(play.sample(1.0).positions, before)
    assert play.clip_time(1.5) == pytest.approx(2.0) and play.play_time(2.0) == pytest.approx(1.5)
    assert play.duration_s == pytest.approx(1.0 + (clip.duration_s - 1.0) / 2)


def test_a_switch_retargets_two_frames_before_its_first_samples_are_in():
    """A continuation's first chunk is two frames: its first changed samples are in the clip after
    that little work (a fresh stream needs its smoothing window first)."""
    r = AngleRetargeter()
    pushed = []

    class CountingStream(ChunkStream):
        def push(self, joints_yup):
            pushed.append(len(joints_yup))
            return super().push(joints_yup)

    p = MotionPipeline(WalkGenerator(), r, r.joint_space, chunk_frames=20, stream_factory=lambda fps: CountingStream(r, fps))
    first = p.generate(MotionCommand("walk", length_frames=60, seed=1))
    session = p.open_session(first)
    session.push(first.joints_yup)
    pushed.clear()
    second = p.continue_from(first, 24, MotionCommand("walk on", length_frames=40))
    committed = []
    session.push(second.joints_yup, at_frame=24, on_commit=lambda cut: committed.append(list(pushed)))
    assert committed == [[2]] and pushed == [2, 4, 8, 16, 10]
    pushed.clear()
    third = p.continue_from(first, 32, MotionCommand("walk on again", length_frames=40))
    session.push(third.joints_yup, at_frame=32, chunk_limit=lambda: 4)  # e.g. while a generation runs
    assert pushed == [2, 4] + [4] * 8 + [2]


def test_a_continuation_without_a_length_takes_the_length_estimators():
    """As a fresh command would: the model's length estimator for the new text (not a fixed 4 s)."""
    r = AngleRetargeter()

    class EstimatingWalk(WalkGenerator):
        asked = []
        estimates_lengths = True

        def estimate_lengths(self, texts, *, seed=None):
            self.asked.append((texts[0], seed))
            return np.array([4 * (10 + len(texts[0]))])

    gen = EstimatingWalk()
    p = MotionPipeline(gen, r, r.joint_space, stream_factory=lambda fps: ChunkStream(r, fps))
    first = p.generate(MotionCommand("walk", length_frames=60, seed=1))
    more = p.continue_from(first, 24, MotionCommand("walk on", seed=7))
    assert more.frames == 4 * (10 + len("walk on")) and gen.asked == [("walk on", 7)]
    windows = list(p.motions(MotionCommand("walk again", seed=3), after=first, at_frame=24))
    assert sum(w.frames for w in windows) == 4 * (10 + len("walk again"))
    gen.estimates_lengths = False  # no estimator: 4 s
    assert p.continue_from(first, 24, MotionCommand("walk on")).frames == MotionPipeline.CONTINUATION_FRAMES


def test_real_length_estimator_gives_unit_multiples():
    from momask_model.generation.bundle import build_random_momask
    from momask_model.config import tiny_config

    model = build_random_momask(tiny_config())
    frames = model.estimate_lengths(["a person walks forward", "a person jumps"], seed=0)
    assert frames.shape == (2,) and np.all(frames % model.unit_length == 0) and np.all(frames > 0)
    assert np.array_equal(frames, model.estimate_lengths(["a person walks forward", "a person jumps"], seed=0))


def test_a_retried_switch_may_repeat_played_samples_exactly_but_never_change_them():
    """A switch whose first chunk came too late rewinds to a frame already played and pushes the old
    frames again up to a later switch frame: the clip takes it when the played samples come out equal,
    and refuses it (`SwitchTooLate`, clip untouched) when they would change."""
    from momask_ros.stream.clip import SwitchTooLate

    r, p, first, session, play, before = played_walk(1.0)  # frame 20
    clip = session.clip
    second = p.continue_from(first, 24, MotionCommand("walk faster now", length_frames=40))
    changed = np.concatenate([first.joints_yup[16:20], 1.1 * first.joints_yup[20:24], second.joints_yup])
    with pytest.raises(SwitchTooLate):
        session.push(changed, at_frame=16, repeat_frames=8)
    assert np.array_equal(clip.samples()[1], before)
    again = np.concatenate([first.joints_yup[16:24], second.joints_yup])
    session.push(again, at_frame=16, repeat_frames=8)
    positions = clip.samples()[1]
    assert np.array_equal(positions[:24], before[:24])
    joined = np.concatenate([first.joints_yup[:24], second.joints_yup])
    assert np.allclose(positions, r.joint_space.clip(r.retarget(joined).positions))
