"""``physical_checks: rehearse``: every motion runs through the whole-body tracker in physics before it
plays. The node's conductor on a fake clock (no ROS, no threads) with the packaged demo model, the G1
(Unitree's description) and TWIST2; skips when ../shared/trackers/twist2 or the G1 files are absent.

What is rehearsed is what plays: the clip's retargeted samples. A walk plays whole; a motion the
rehearsed robot falls on is refused (nothing plays) or cut before the fall (the stream holds there).
"""
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from momask_ros.stream.clip import MotionClip
from momask_ros.stream.conductor import Conductor
from momask_ros.stream.rehearsal_setup import RehearsalUnavailable, load_rehearsal
from momask_ros.stream.rehearsing import Rehearser
from momask_ros.stream.settings import StreamSettings
from momask_ros.stream.state import JointSpace

SHARED = Path(__file__).resolve().parents[2] / "shared"
TWIST2 = SHARED / "trackers" / "twist2"
G1_XML = SHARED / "data" / "robots" / "unitree_g1" / "g1_29dof.xml"
PERIOD_NS = 20_000_000


@pytest.fixture(scope="module")
def g1_pipeline():
    if not (TWIST2.is_dir() and G1_XML.is_file()):
        pytest.skip(f"tracker or G1 files not found ({TWIST2}, {G1_XML})")
    import torch

    from momask_model.generation.bundle import load_bundle
    from momask_model.generation.loading import default_bundle_path
    from momask_ros.robot.model import load_robot
    from momask_ros.stream.pipeline import MotionPipeline

    torch.set_num_threads(1)
    return MotionPipeline.for_model(load_bundle(default_bundle_path(), "cpu"),
                                    robot=load_robot("g1", description=G1_XML))


@pytest.fixture(scope="module")
def rehearser(g1_pipeline):
    names = g1_pipeline.joint_space.names
    return Rehearser(load_rehearsal(TWIST2, names, robot="g1"), joint_names=names)


@pytest.fixture(scope="module")
def unheld_rehearser(g1_pipeline):
    """Sections beyond the robot followed as they are, not held (the spec's skip_beyond off): the
    acrobatics then fall in rehearsal, for the tests of cuts and refusals."""
    from momask_ros.stream.followed import LiveFollowed

    names = g1_pipeline.joint_space.names
    rehearsal = load_rehearsal(TWIST2, names, robot="g1")
    spec = dataclasses.replace(rehearsal.bundle.spec, skip_tilt_rad=math.inf, skip_joint_range_rad=None)
    bundle = dataclasses.replace(rehearsal.bundle, spec=spec)
    rehearsal.conditioning = lambda reference: LiveFollowed(reference, bundle)
    return Rehearser(rehearsal, joint_names=names)


class Drive:
    """The node's conductor under rehearse on a fake clock; its workers step between ticks."""

    def __init__(self, pipeline, rehearser):
        self.now_ns = 10**12
        settings = StreamSettings.from_parameters({"physical_checks": "rehearse", "command_burst": 20})
        self.conductor = Conductor(pipeline, settings, now_ns=self.now_ns, clock=lambda: self.now_ns * 1e-9,
                                   rehearser=rehearser)
        self.statuses, self.samples = [], []

    def send(self, text):
        self.conductor.command(text, self.now_ns)

    def tick(self):
        self.conductor.run_pending()
        out = self.conductor.tick(self.now_ns)
        self.samples += out.samples
        self.statuses += [dict(s.fields, state=s.state) for s in out.statuses]
        self.now_ns += PERIOD_NS

    def run(self, seconds):
        for _ in range(int(seconds * 50)):
            self.tick()

    def final(self, cid):
        """The statuses of command ``cid`` once it has ended (done, or rejected without playing)."""
        for _ in range(50 * 30):
            mine = [s for s in self.statuses if s.get("id") == cid]
            states = [s["state"] for s in mine]
            snap = self.conductor.snapshot()
            if "done" in states or ("rejected" in states and "playing" not in states and not snap["waiting"]
                                    and snap["playing"] is None):
                return mine
            self.tick()
        raise AssertionError(f"command {cid} did not end: {self.statuses[-5:]}")


def test_rehearse_plays_a_walk_whole(g1_pipeline, rehearser):
    d = Drive(g1_pipeline, rehearser)
    d.send("a person walks forward length=3s seed=0")
    mine = d.final(1)
    assert [s["state"] for s in mine] == ["accepted", "generating", "playing", "done"], mine
    done = mine[-1]
    assert done["duration_s"] == pytest.approx(2.95) and "cut" not in done
    windows = done["physical_windows"]
    assert windows and all(w["ok"] and w["falls_in_rehearsal"] is False for w in windows)
    assert windows[0]["rehearsed_s"] >= 2.95  # the whole motion (and the return to standing) was rehearsed
    d.run(0.5)
    moved = np.linalg.norm(d.samples[-1].sample.base_position[:2] - d.samples[0].sample.base_position[:2])
    assert moved > 0.5  # the reference walked


@pytest.mark.parametrize("text", ["a person gets up from lying face down seed=0", "a person does a cartwheel seed=0"])
def test_rehearse_refuses_or_cuts_a_motion_that_falls(g1_pipeline, unheld_rehearser, text):
    d = Drive(g1_pipeline, unheld_rehearser)
    d.send(text)
    mine = d.final(1)
    rejected = next(s for s in mine if s["state"] == "rejected")
    assert rejected["reason"] == "falls_in_rehearsal" and "falls" in rejected["detail"]
    assert rejected["rehearsal"]["falls_in_rehearsal"] and rejected["rehearsal"]["fall_time_s"] > 0
    states = [s["state"] for s in mine]
    if "playing" not in states:  # refused: nothing of it plays; the robot keeps holding
        assert "refused" in rejected["rehearsal"] and "done" not in states
        assert all(s.motion_id is None for s in d.samples)
        return
    # cut: it plays up to the cut, well before the predicted fall, then returns to the rest pose
    assert states.index("rejected") < states.index("playing") < states.index("done")
    done = mine[-1]
    assert done["cut"] and done["duration_s"] == pytest.approx(rejected["stops_at_s"], abs=0.1)
    assert rejected["stops_at_s"] < rejected["rehearsal"]["fall_motion_time_s"]
    d.run(1.0)  # decelerates into a hold where it was cut (the tracker returns to standing on done)
    held = [p.sample for p in d.samples[-10:]]
    assert all(p.motion_id is None for p in d.samples[-10:])
    assert np.allclose([s.positions for s in held], held[0].positions) and not np.any(held[-1].velocities)
    speeds = np.abs(np.diff([p.sample.positions for p in d.samples], axis=0)).max(axis=1) / 0.02
    assert speeds.max() < 10.0  # no jump at the cut


def test_a_sequence_stops_at_its_cut_segment(g1_pipeline, unheld_rehearser):
    d = Drive(g1_pipeline, unheld_rehearser)
    d.send("a person walks forward length=2s seed=0 | a person does a cartwheel seed=0 "
           "| a person walks forward length=2s")
    d.run(12.0)
    by_id = {cid: [s["state"] for s in d.statuses if s.get("id") == cid] for cid in (1, 2, 3)}
    assert by_id[1][-1] == "done"
    falls = [s for s in d.statuses if s["state"] == "rejected" and s["id"] in (2, 3)]
    assert falls and all(s["reason"] == "falls_in_rehearsal" for s in falls)
    assert "playing" not in by_id[3]  # the segment after the cut never plays


def test_rehearse_needs_a_tracked_robot_and_the_tracker_files(tmp_path):
    with pytest.raises(RehearsalUnavailable, match="works only for robots the tracker drives") as robot:
        load_rehearsal(TWIST2, ["left_knee", "right_knee"], robot="default")
    with pytest.raises(RehearsalUnavailable, match="tracker folder not found") as folder:
        load_rehearsal(tmp_path / "nothing", _g1_joints(), robot="g1")
    assert "\n" not in str(robot.value) and "\n" not in str(folder.value)
    from motion_fakes import AngleRetargeter, WalkGenerator
    from momask_ros.stream.pipeline import MotionPipeline

    r = AngleRetargeter()
    pipeline = MotionPipeline(WalkGenerator(), r, r.joint_space)
    with pytest.raises(ValueError, match="rehearse needs a rehearser"):
        Conductor(pipeline, StreamSettings.from_parameters({"physical_checks": "rehearse"}), now_ns=0)


def _g1_joints():
    from momask_ros.tracker import load_spec

    return list(load_spec().joint_names)


def test_a_clip_plays_only_what_was_cleared():
    space = JointSpace(("a",), lower=np.array([-1.0]), upper=np.array([1.0]), rest=np.array([0.0]))
    clip = MotionClip(joint_space=space, fps=20.0, human_joints_ros=np.zeros((21, 22, 3)))
    times = np.arange(21) / 20.0
    clip.append(times, np.zeros((21, 1)), np.zeros((21, 3)), np.tile([1.0, 0, 0, 0], (21, 1)))
    assert clip.covers(0.9) and clip.settled is False  # not rehearsed: playable (verified_s = inf)
    clip.verified_s = -np.inf
    assert not clip.covers(0.0)
    clip.verify(0.5, since=0)
    assert clip.covers(0.5) and not clip.covers(0.55)
    clip.append(times[10:] + 0.01, np.zeros((11, 1)), np.zeros((11, 3)), np.tile([1.0, 0, 0, 0], (11, 1)),
                replace_from=0.4)  # a continuation replaces from 0.4 s: not cleared any more
    assert clip.verified_s == 0.4 and not clip.covers(0.45)
    clip.verify(1.0, since=0)  # the old span's rehearsal cannot clear the new samples
    assert clip.verified_s == 0.4
    clip.verify(1.0, since=1)
    assert clip.covers(1.0)
    clip.cut(0.7)
    assert clip.stop_at_s == 0.7 and not clip.covers(0.75) and not clip.settled


def test_node_under_rehearse_fails_at_start_or_refuses_the_switch_with_one_line():
    """Over ROS (no messages): a robot the tracker does not drive cannot start under rehearse, and a
    running node refuses to switch to it, each with one line."""
    import os

    import rclpy
    from rclpy.parameter import Parameter

    from momask_ros.ros.node import MomaskNode
    from momask_ros.stream.pipeline import MotionPipeline
    from motion_fakes import AngleRetargeter, WalkGenerator
    from ros_harness import DOMAIN_ID

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    r = AngleRetargeter()
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    try:
        def node(**params):
            return MomaskNode(pipeline=MotionPipeline(WalkGenerator(), r, r.joint_space), context=context,
                              parameter_overrides=[Parameter(k, value=v) for k, v in
                                                   {"warm_up": False, **params}.items()])

        with pytest.raises(RehearsalUnavailable, match="works only for robots the tracker drives") as failed:
            node(physical_checks="rehearse", tracker_dir=str(TWIST2))
        assert "\n" not in str(failed.value)
        running = node(physical_checks="warn")
        try:
            result = running.set_parameters([Parameter("physical_checks", value="rehearse")])[0]
            assert not result.successful and "works only for robots the tracker drives" in result.reason
            assert running.get_parameter("physical_checks").value == "warn"
        finally:
            running.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_make_demo_replays_the_g1_stream_tracked_in_physics(g1_pipeline, tmp_path):
    """`make demo ROBOT=g1`'s last step: the received stream replayed through the tracker in the tracked
    simulator, lock-step (here the conductor's stream of a walk, saved as the demo saves it)."""
    from momask_ros.ros.demo import find_tracker, motion_window, track_recording

    assert find_tracker("default", TWIST2) == (None, None)  # only the G1 is tracked
    assert find_tracker("g1", tmp_path / "none")[1].startswith("no tracker at")
    bundle, why = find_tracker("g1", TWIST2)
    assert why is None
    now = [10**12]
    conductor = Conductor(g1_pipeline, StreamSettings.from_parameters({"physical_checks": "off"}), now_ns=now[0],
                          clock=lambda: now[0] * 1e-9)
    conductor.command("a person walks forward length=3s seed=0", now[0])
    statuses, samples = [], []
    for _ in range(200):
        conductor.run_pending()
        out = conductor.tick(now[0])
        statuses += [dict(s.fields, state=s.state) for s in out.statuses]
        samples += [(p.stamp_ns * 1e-9, p.sample) for p in out.samples]
        now[0] += PERIOD_NS
    start, duration = motion_window(statuses)
    kept = [(t, s) for t, s in samples if t >= start - 1e-6]
    stamps = np.array([t for t, _ in kept])
    path = tmp_path / "joint_states.npz"
    np.savez(path, names=np.array(g1_pipeline.joint_space.names), stamps_s=stamps,
             positions=np.stack([s.positions for _, s in kept]), velocities=np.stack([s.velocities for _, s in kept]),
             base_stamps_s=stamps, base_position=np.stack([s.base_position for _, s in kept]),
             base_quat_wxyz=np.stack([s.base_quat_wxyz for _, s in kept]))
    line = track_recording(path, bundle, None, start_s=start, duration_s=duration)
    assert "stayed up" in line, line
    error = float(line.split("mean joint error ")[1].split(" rad")[0])
    assert 0.0 < error < 0.15, line


def _swaying(space, n, fps):
    """(times, joints, base positions, base quats) of a gentle sway from the rest stance, n samples at fps."""
    p0, quat0 = space.rest_base
    times = np.arange(n) / fps
    q = space.clip(space.rest + 0.15 * np.sin(2.0 * times)[:, None] * (np.arange(len(space.names)) % 3 == 0))
    pos = np.tile(p0, (n, 1)) + np.outer(np.sin(times), [0.05, 0.0, 0.0])
    return times, q, pos, np.tile(quat0, (n, 1))


def _job(clip):
    import types

    from momask_ros.stream.commands import MotionCommand
    from momask_ros.stream.job import Job

    job = Job(1, MotionCommand("a person sways"), 0.0)
    job.session = types.SimpleNamespace(clip=clip, closed=False)
    return job


def test_a_stream_followed_as_it_is_retargeted_is_the_one_followed_whole(g1_pipeline, rehearser):
    """A span streamed while its clip is still being written (`SpanStream` with no end yet, `LiveFollowed.grow`)
    gives the same samples and the same tracker reference as the whole clip streamed at once; an open
    stream is never followed past its last sample."""
    from momask_ros.stream.followed import LiveFollowed, SpanStream, StreamStart
    from momask_ros.stream.state import RobotPose

    space, fps, n = g1_pipeline.joint_space, 20.0, 81
    times, q, pos, quat = _swaying(space, n, fps)
    start = StreamStart(RobotPose(space.rest.copy(), base_valid=False), 0.5, 0.02)
    kw = dict(order=rehearser._order, spec=rehearser.rehearsal.bundle.spec, following=False, fresh=start)
    whole_clip = MotionClip(joint_space=space, fps=fps, human_joints_ros=np.zeros((n, 22, 3)))
    whole_clip.append(times, q, pos, quat)
    whole = SpanStream(_job(whole_clip), 0.0, **kw).update(times[-1])
    bundle = rehearser.rehearsal.bundle
    followed_whole = LiveFollowed(whole, bundle)

    clip = MotionClip(joint_space=space, fps=fps, human_joints_ros=np.zeros((n, 22, 3)))
    stream, followed, t = SpanStream(_job(clip), 0.0, **kw), None, 0.0
    for a, b in ((0, 2), (2, 8), (8, 20), (20, 41), (41, n)):
        clip.append(times[a:b], q[a:b], pos[a:b], quat[a:b])
        grown = stream.update(np.inf)
        if grown is None:
            assert b < 3
            continue
        assert grown.open and grown.times_s[-1] < times[b - 1]  # no further than its final samples
        if followed is None:
            followed = LiveFollowed(grown, bundle)
        else:
            followed.grow(grown)
        while t <= followed.known_s - 0.02 + 1e-9:  # followed as far as it goes, as a rehearsal would
            assert np.allclose(followed.sample(t).mimic, followed_whole.sample(t).mimic, atol=1e-9)
            t += 0.02
        with pytest.raises(ValueError, match="past the stream's last sample"):
            followed.sample(followed.known_s + 0.1)
    final = stream.update(times[-1])
    followed.grow(final)
    assert not final.open and np.allclose(final.joint_pos_rad, whole.joint_pos_rad, atol=1e-12)
    assert np.allclose(final.base_lin_vel_world, whole.base_lin_vel_world, atol=1e-12)
    assert followed.end_s == followed_whole.end_s
    for t in np.arange(0.0, followed.end_s + 0.1, 0.02):
        assert np.allclose(followed.sample(t).mimic, followed_whole.sample(t).mimic, atol=1e-9)


def test_a_fresh_motion_starts_before_its_retargeting_ends(g1_pipeline):
    """The first span of a fresh clip is rehearsed as the retargeting writes it: its start is cleared
    (the first JointState may go) once the rehearsal is `Rehearser.margin_s` in, while most of the clip
    is still to come; the rehearsal then follows the clip to its end and clears all of it."""
    import math
    import threading

    from momask_ros.stream.followed import StreamStart
    from momask_ros.stream.job import SpanRehearsal
    from momask_ros.stream.state import RobotPose

    space, fps, n = g1_pipeline.joint_space, 20.0, 121
    rehearser = Rehearser(load_rehearsal(TWIST2, space.names, robot="g1"), joint_names=space.names)
    rehearser.stream_start = lambda: StreamStart(RobotPose(space.rest.copy(), base_valid=False), 0.5, 0.02)
    times, q, pos, quat = _swaying(space, n, fps)
    clip = MotionClip(joint_space=space, fps=fps, human_joints_ros=np.zeros((n, 22, 3)))
    clip.verified_s = -math.inf
    job, end = _job(clip), [None]

    class Host:
        lock = threading.RLock()
        released = threading.Event()
        reports: list = []

        def report(self, state, job, fields):
            self.reports.append((state, fields))

        def release(self, job):
            self.released.set()

        def refuse(self, job, status):
            self.reports.append(("refused", status))

        def drop(self, job):
            pass

        def drop_following(self, job, reason):
            pass

    host, out = Host(), []
    worker = threading.Thread(target=lambda: out.append(rehearser.run(
        SpanRehearsal(job, 0, 0.0, math.inf, fresh=True), host, end=lambda idle: end[0])))
    worker.start()
    for a in range(0, 60, 10):  # the first 3 s, chunk by chunk
        clip.append(times[a:a + 10], q[a:a + 10], pos[a:a + 10], quat[a:a + 10])
    assert host.released.wait(60.0), "the start was never cleared"
    assert clip.available_s < 3.0 and 0.0 < clip.verified_s <= clip.available_s - rehearser.margin_s + 1e-9
    clip.append(times[60:], q[60:], pos[60:], quat[60:])
    end[0] = clip.available_s  # its retargeting task ended here
    worker.join(60.0)
    result = out[0]
    assert result is not None and result.complete and not result.falls and not host.reports
    assert clip.verified_s == pytest.approx(times[-1]) and job.fields["physical_windows"][0]["ok"]


def test_a_motion_sent_as_the_last_one_blends_out_is_rehearsed_from_its_predicted_state(g1_pipeline, rehearser):
    """Idle within seconds of a motion's end, the robot is still settling and the tracker still blending
    out: the next motion is rehearsed from what the last one's rehearsal predicted there, blending in from
    the tracker's weight then; long after, from standing (this rehearser has no measured state)."""
    from momask_ros.stream.followed import StreamStart
    from momask_ros.stream.state import RobotPose

    d = Drive(g1_pipeline, rehearser)
    d.send("a person walks forward length=2s seed=0")
    first = d.final(1)
    d.run(0.4)
    d.send("a person kicks with the right leg length=2s seed=1")
    soon = d.final(2)
    d.run(6.0)
    d.send("a person walks forward length=2s seed=2")
    late = d.final(3)
    origins = [[w["rehearsed_from"] for w in m[-1]["physical_windows"]] for m in (first, soon, late)]
    assert origins[0][0] == "standing" and origins[1][0] == "predicted" and origins[2][0] == "standing", origins
    spec = rehearser.rehearsal.bundle.spec
    pose = RobotPose(g1_pipeline.joint_space.rest.copy(), base_valid=False)
    clip = MotionClip(joint_space=g1_pipeline.joint_space, fps=20.0, human_joints_ros=np.zeros((2, 22, 3)))
    weights = [StreamStart(pose, 0.5, 0.02, ended=clip, since_end_s=s).blend_weight(spec) for s in (0.0, 0.5, 5.0)]
    assert weights[0] == 1.0 and 0.0 < weights[1] < 1.0 and weights[2] == 0.0
    assert StreamStart(pose, 0.5, 0.02).blend_weight(spec) == 0.0


def test_a_takeover_is_rehearsed_from_the_measured_state_once_the_robot_drifted_from_the_prediction(
        g1_pipeline, rehearser):
    """Predictions chained over a long motion drift: when the measured robot tilts clearly more than the
    rehearsal of what plays predicted for now, a motion taking over starts from the measured state."""
    from momask_ros.stream.rehearsing import DIVERGED_TILT_RAD
    from momask_ros.tracker.rollout import RobotState
    from momask_ros.tracker.rotations import rpy_to_quat_wxyz

    space, fps = g1_pipeline.joint_space, 20.0
    times, q, pos, quat = _swaying(space, 41, fps)
    clip = MotionClip(joint_space=space, fps=fps, human_joints_ros=np.zeros((41, 22, 3)))
    clip.append(times, q, pos, quat)
    clip.at(1.0)  # played up to 1 s
    spec = rehearser.rehearsal.bundle.spec

    def leaning(rad):
        state = RobotState.standing(spec)
        return dataclasses.replace(state, base_quat_wxyz=rpy_to_quat_wxyz(np.array([rad, 0.0, 0.0])))

    watcher = Rehearser(rehearser.rehearsal, joint_names=space.names)
    # read at 1.0 s, the tracker follows 0.1 s behind: the prediction for now is the entry at 0.88 s
    job = _job(clip)
    watcher._trails[clip] = [(t, leaning(tilt), None, {}, job) for t, tilt in ((0.5, 0.0), (0.88, 0.1), (0.95, 0.3),
                                                                                (1.5, 0.6))]
    measured = [None]
    watcher.state = lambda: measured[0]
    assert not watcher._diverged(clip)  # nothing measured: the prediction stands
    measured[0] = leaning(0.1 + DIVERGED_TILT_RAD - 0.05)
    assert not watcher._diverged(clip)
    measured[0] = leaning(0.1 + DIVERGED_TILT_RAD + 0.05)  # compared with 0.88 s, not with 0.95 or 1.5 s
    assert watcher._diverged(clip)
    assert not watcher._diverged(clip, speed=0.5)  # played at half speed it follows 0.95 s (tilt 0.3)


def test_a_continuation_that_falls_before_any_of_it_plays_gives_the_motion_back(g1_pipeline, rehearser):
    """A continuation whose rehearsal falls with no cut after its switch: where the producer can take it
    back, the motion it would have continued plays on as its own rehearsal cleared it (``kept_playing``;
    the clip is not cut, and the continuation's predicted states no longer count); where it cannot, the
    clip is cut where playback is, as before."""
    import threading

    from momask_ros.stream.job import SpanRehearsal
    from momask_ros.tracker.rehearsal import RehearsalResult

    space, fps = g1_pipeline.joint_space, 20.0
    times, q, pos, quat = _swaying(space, 41, fps)
    falls = RehearsalResult(falls=True, fall_time_s=1.5, fall_motion_time_s=1.2, fall_reason="base tilt 0.8 rad",
                            cut=None, refuse=True, complete=True, rehearsed_s=1.5, wall_s=0.1, time_stretch=1.0,
                            conditioning="", refusal="no cut before the fall keeps the robot up")

    class Host:
        lock = threading.RLock()

        def __init__(self, kept):
            self.kept, self.reports, self.dropped = kept, [], []

        def report(self, state, job, fields):
            self.reports.append((state, fields))

        def restore(self, job):
            return self.kept

        def drop(self, job):
            self.dropped.append(job)

        def drop_following(self, job, reason):
            pass

    for kept in (_job(None), None):
        clip = MotionClip(joint_space=space, fps=fps, human_joints_ros=np.zeros((41, 22, 3)))
        clip.append(times, q, pos, quat)
        job = _job(clip)
        job.id, job.start_frame, job.switch_frame = 2, 24, 24  # continues at 1.2 s; playback is before it
        watcher = Rehearser(rehearser.rehearsal, joint_names=space.names)
        watcher._trails[clip] = [(t, None, None, {}, job) for t in (0.5, 1.0, 1.3, 1.6)]
        host = Host(kept)
        watcher._apply(SpanRehearsal(job, 0, 1.1, 2.0, fresh=False), host, falls, 1.1, "predicted")
        (state, fields), = host.reports
        assert state == "rejected" and fields["reason"] == "falls_in_rehearsal"
        if kept is not None:
            assert fields["kept_playing"] == kept.id and "plays on" in fields["detail"] and "stops_at_s" not in fields
            assert clip.stop_at_s is None
        else:
            assert "kept_playing" not in fields and clip.stop_at_s == pytest.approx(1.1) and host.dropped == [job]
    # the predictions for a job that will never play are not where a takeover starts from
    base, cont = _job(clip), _job(clip)
    watcher._trails[clip] = [(0.5, None, None, {}, base), (1.0, None, None, {}, base), (1.3, None, None, {}, base),
                             (1.2, None, None, {}, cont), (1.6, None, None, {}, cont)]
    assert [e[0] for e in watcher._predicted(clip, 1.4)] == [0.5, 1.0, 1.3, 1.2]
    cont.cancelled = True
    assert [e[0] for e in watcher._predicted(clip, 1.4)] == [0.5, 1.0, 1.3]


def test_a_motion_from_idle_starts_from_the_settling_of_the_end_that_played(g1_pipeline, rehearser):
    """The predicted settling after a clip's end is the latest one rehearsed for the end the clip has now,
    by a job that plays: not a taken-back continuation's, not an end a continuation replaced, none after a cut."""
    space, fps = g1_pipeline.joint_space, 20.0
    times, q, pos, quat = _swaying(space, 41, fps)
    clip = MotionClip(joint_space=space, fps=fps, human_joints_ros=np.zeros((41, 22, 3)))
    clip.append(times, q, pos, quat)
    clip.finish()
    end = clip.duration_s
    first, base, cont = _job(clip), _job(clip), _job(clip)
    watcher = Rehearser(rehearser.rehearsal, joint_names=space.names)
    watcher._afters[clip] = [(0.0, "old end", None, first, end - 1.0), (0.0, "base", None, base, end),
                             (0.5, "base", None, base, end), (0.0, "cont", None, cont, end)]
    assert [e[1] for e in watcher._settling(clip)] == ["cont"]
    cont.cancelled = True  # taken back: the base's end plays
    assert [e[1] for e in watcher._settling(clip)] == ["base", "base"]
    clip.cut(1.5)
    assert watcher._settling(clip) == []


def test_a_playing_motion_is_watched_from_the_robot_and_cut_when_the_robot_starts_to_fall(g1_pipeline, rehearser):
    """With the robot's measured state and its tracker's memory, a motion that plays is rehearsed again from
    the robot every `WATCH_EVERY_S` (a watch): a walk the live robot (the tracked simulator, lock-step)
    follows well plays whole, watched; once the measured robot is rolling over, the next watch predicts the
    fall and the motion is cut where playback is, its ``physical_windows`` saying ``watched``."""
    from momask_ros.stream.rehearsing import WATCH_EVERY_S
    from momask_ros.stream.tracked_loop import TrackedLoop
    from momask_ros.tracker.rollout import RobotState
    from momask_ros.tracker.rotations import rpy_to_quat_wxyz

    names = g1_pipeline.joint_space.names
    loop = TrackedLoop(rehearser.rehearsal.bundle, t0_s=10**12 * 1e-9)
    source = {"state": loop.simulation.state}
    watcher = Rehearser(rehearser.rehearsal, joint_names=names, state=lambda: source["state"](),
                        memory=loop.tracker.memory)

    class Live(Drive):
        def tick(self):
            self.conductor.run_pending()
            out = self.conductor.tick(self.now_ns)
            for p in out.samples:
                s = p.sample
                loop.push(p.stamp_ns * 1e-9, names, s.positions, s.base_position, s.base_quat_wxyz,
                          velocities=s.velocities, base_linear_velocity=s.base_linear_velocity,
                          base_angular_velocity=s.base_angular_velocity)
            for s in out.statuses:
                self.statuses.append(dict(s.fields, state=s.state))
                loop.status(s.state, s.fields)
            loop.step()
            self.now_ns += PERIOD_NS

    d = Live(g1_pipeline, watcher)
    d.run(1.0)  # standing under its tracker first
    d.send("a person walks forward length=4s seed=0")
    mine = d.final(1)
    assert "cut" not in mine[-1] and mine[-1]["duration_s"] == pytest.approx(3.95), mine[-1]
    assert watcher.watches >= 2 and mine[-1]["watched"] == watcher.watches and not loop.report.fell
    assert all(w.get("rehearsed_from") != "watched" for w in mine[-1]["physical_windows"])

    d.run(2.0)
    d.send("a person walks forward length=4s seed=1")
    d.run(1.0 + WATCH_EVERY_S)  # playing, watched once at least
    watched = watcher.watches
    spec = rehearser.rehearsal.bundle.spec
    rolling = dataclasses.replace(RobotState.standing(spec), base_quat_wxyz=rpy_to_quat_wxyz(np.array([0.5, 0.0, 0.0])),
                                  base_ang_vel_body_rad_s=np.array([4.0, 0.0, 0.0]))
    source["state"] = lambda: rolling
    mine = d.final(2)
    assert watcher.watches > watched
    cut = [s for s in mine if s["state"] == "rejected"]
    assert cut and cut[0]["reason"] == "falls_in_rehearsal", mine
    assert mine[-1]["cut"] and mine[-1]["duration_s"] < 3.5
    assert mine[-1]["physical_windows"][-1]["rehearsed_from"] == "watched"


def test_a_watch_is_due_each_second_of_a_cleared_motion_with_the_robot_and_its_tracker_known(g1_pipeline, rehearser):
    """A watch is due once a second of playback has passed since the job's start or its last watch, once
    the clip is cleared to its end, and only with both the measured state and the tracker's memory."""
    from momask_ros.stream.rehearsing import WATCH_EVERY_S
    from momask_ros.tracker.live_reference import REFERENCE_DELAY_S
    from momask_ros.tracker.rollout import RobotState

    space, fps = g1_pipeline.joint_space, 20.0
    times, q, pos, quat = _swaying(space, 81, fps)
    clip = MotionClip(joint_space=space, fps=fps, human_joints_ros=np.zeros((81, 22, 3)))
    clip.append(times, q, pos, quat)
    clip.finish()
    clip.verified_s = 2.0  # rehearsed this far
    job = _job(clip)
    standing = RobotState.standing(rehearser.rehearsal.bundle.spec)
    memory = rehearser._standing
    watcher = Rehearser(rehearser.rehearsal, joint_names=space.names, state=lambda: standing, memory=lambda: memory)
    watcher._trails[clip] = [(t, standing, memory, {}, job) for t in np.arange(0.0, 4.0, 0.05)]
    clip.at(0.5 * WATCH_EVERY_S)
    assert watcher.watch_due(job) is None  # too soon after the start
    clip.at(WATCH_EVERY_S + 0.5)
    assert watcher.watch_due(job) is None  # not cleared to its end yet: its spans' rehearsals go first
    clip.verify(clip.duration_s, since=0)
    task = watcher.watch_due(job)
    assert task is not None and task.watch and not task.fresh
    assert task.start_s == pytest.approx(WATCH_EVERY_S + 0.5 - REFERENCE_DELAY_S) and task.end_s == clip.duration_s
    assert watcher.watch_due(job) is None  # the next one a second of playback later
    clip.at(2 * WATCH_EVERY_S + 0.6)
    assert watcher.watch_due(job) is not None
    clip.at(3 * WATCH_EVERY_S + 0.7)
    for blind in (Rehearser(rehearser.rehearsal, joint_names=space.names, state=lambda: standing),  # no memory
                  Rehearser(rehearser.rehearsal, joint_names=space.names, memory=lambda: memory)):  # no state
        blind._trails[clip] = watcher._trails[clip]
        assert blind.watch_due(job) is None
