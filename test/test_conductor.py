"""The conductor on a fake clock: switching, stops, queues, bursts, catch-up and the base twist, exactly
reproducible (no ROS, no threads, no sleeps).

`Drive` steps the conductor's producer on this thread before each control period, and a generation
that "takes" time plays that much of the stream meanwhile (the fake generator's sleep ticks the
conductor), so what the node's threads do concurrently happens here in a fixed order. The checks are
those of the ROS tests they replace (test_node_continuation.py keeps a few end to end over DDS).
"""
import numpy as np
import pytest

from momask_ros.stream.conductor import Conductor
from momask_ros.stream.pipeline import MotionPipeline
from momask_ros.stream.settings import StreamSettings

from motion_fakes import AngleRetargeter, ChunkStream, TrickleStream, WalkGenerator

RATE = 50.0
PERIOD_NS = 20_000_000
MAX_JOINT_SPEED = 15.0   # rad/s between consecutive samples: a jump between poses shows as ~50+
MAX_BASE_STEP_M = 0.05   # per period: the fake walks at <= 0.9 m/s, i.e. <= 0.018 m per 20 ms


class Drive:
    """A conductor and its stepped producer on a fake clock, recording everything it publishes."""

    def __init__(self, params=None, *, delay_s=0.0, stream=ChunkStream, start_s=1000.0):
        r = AngleRetargeter()
        self.generator = WalkGenerator(delay_s=delay_s)
        self.generator.sleep = self.play_for  # a generation plays the stream on while it runs
        self.streams = []

        def make_stream(fps):
            self.streams.append(stream(r, fps))
            return self.streams[-1]

        self.pipeline = MotionPipeline(self.generator, r, r.joint_space, chunk_frames=8, stream_factory=make_stream)
        self.now_ns = int(start_s * 1e9)
        settings = StreamSettings.from_parameters({"control_rate": RATE, "blend_s": 0.2, "command_burst": 20,
                                                   **(params or {})})
        self.conductor = Conductor(self.pipeline, settings, now_ns=self.now_ns, clock=lambda: self.now_ns * 1e-9)
        self.samples, self.statuses, self.trajectories = [], [], []
        self._working = False

    @property
    def joiner(self):
        return self.conductor.producer.joiner

    def send(self, text):
        self.conductor.command(text, self.now_ns)

    def stop(self):
        self.conductor.stop(self.now_ns)

    def tick(self, *, work=True, late_ns=0):
        """The producer's pending work (unless inside it already), then one control period (``late_ns``
        after its time: a stalled control loop)."""
        if work and not self._working:
            self._working = True
            try:
                self.conductor.run_pending()
            finally:
                self._working = False
        self.now_ns += late_ns
        out = self.conductor.tick(self.now_ns)
        self.samples += out.samples
        self.trajectories += out.trajectories
        self.statuses += [dict(s.fields, state=s.state) for s in out.statuses]
        self.now_ns += PERIOD_NS

    def play_for(self, seconds):
        for _ in range(int(round(seconds * RATE))):
            self.tick()

    def by_state(self, state, **match):
        return [s for s in self.statuses if s["state"] == state and all(s.get(k) == v for k, v in match.items())]

    def until(self, state, timeout_s=20.0, **match):
        for _ in range(int(timeout_s * RATE)):
            found = self.by_state(state, **match)
            if found:
                return found[0]
            self.tick()
        raise AssertionError(f"no {state} {match} within {timeout_s} s; statuses {self.statuses[-6:]}")

    def states_of(self, job_id):
        return [s["state"] for s in self.statuses if s.get("id") == job_id]

    def stamps(self, since=0):
        return np.array([p.stamp_ns for p in self.samples[since:]]) * 1e-9

    def positions(self, since=0):
        return np.array([p.sample.positions for p in self.samples[since:]])


def check_stream(d, since=0, speed=1.0):
    """No period dropped or repeated, continuous, within limits (a motion at ``speed`` moves that much faster)."""
    t = d.stamps(since)
    assert np.allclose(np.diff(t), 1.0 / RATE, atol=1e-9), f"an interval of {np.diff(t).max() * 1e3:.0f} ms"
    pos = d.positions(since)
    assert AngleRetargeter.joint_space.within(pos)
    joint_speed = (np.abs(np.diff(pos, axis=0)).max(axis=1) / np.diff(t)).max()
    assert joint_speed < MAX_JOINT_SPEED * speed, f"joint jump: {joint_speed:.1f} rad/s"
    base = np.array([p.sample.base_position for p in d.samples[since:] if p.sample.base_valid])
    assert np.linalg.norm(np.diff(base, axis=0), axis=1).max() < MAX_BASE_STEP_M * speed, "base jump"


def max_joint_speed(d):
    return float((np.abs(np.diff(d.positions(), axis=0)).max(axis=1) / np.diff(d.stamps())).max())


# ---------------------------------------------------------------------------------------------- switching
def test_preempt_continues_the_playing_motion_without_a_blend():
    d = Drive()
    d.send("walk first length=6s")
    first = d.until("playing", text="walk first")
    d.play_for(0.8)
    d.send("walk second faster length=2s")
    second = d.until("playing", text="walk second faster")
    assert second["switch"] == "continue" and "switch_reason" not in second, second
    assert 0 < second["latency_ms"] <= second["switch_latency_ms"]
    done = d.until("done", text="walk second faster")
    assert d.states_of(first["id"]) == ["accepted", "generating", "playing", "done"]
    assert d.by_state("done", id=first["id"])[0]["preempted_by"] == second["id"]
    assert d.states_of(second["id"]) == ["accepted", "generating", "playing", "done"]
    slip = second["switch_slip_frames"]
    assert 0 <= slip <= 12 and done["duration_s"] == pytest.approx((40 - slip) / 20.0)
    text, at, length = d.generator.continuations[-1]
    assert text == "walk second faster" and at % 4 == 0 and length == 40
    # the switch happened `slip` frames after the token the continuation starts at: first's frame `at`
    assert second["switch_stamp_s"] - first["stamp_s"] == pytest.approx((at + slip) / 20.0, abs=0.1)
    check_stream(d)


def test_queue_mode_continues_at_the_end_of_the_current_motion():
    d = Drive({"queue_mode": "queue"})
    d.send("walk one length=1.6s")
    d.send("walk two now length=1.2s")
    two = d.until("playing", text="walk two now")
    d.until("done", text="walk two now")
    one_done = d.until("done", text="walk one")
    assert "preempted_by" not in one_done and two["switch"] == "continue"
    assert d.generator.continuations[-1] == ("walk two now", 32, 24)  # at the end of one
    one = d.by_state("playing", text="walk one")[0]
    assert two["switch_stamp_s"] - one["stamp_s"] == pytest.approx(1.6, abs=0.1)
    check_stream(d)


def test_sequence_streams_segment_by_segment_as_continuations():
    d = Drive()
    d.send("walk alpha length=1s | walk beta long length=1s | walk gamma longer length=1s")
    d.until("done", text="walk gamma longer")
    texts = ["walk alpha", "walk beta long", "walk gamma longer"]
    played = d.by_state("playing")
    assert [s["text"] for s in played] == texts
    assert [s["switch"] for s in played] == ["start", "continue", "continue"]
    assert [s["segment"] for s in played] == [1, 2, 3] and {s["segments"] for s in played} == {3}
    for s in played:
        assert d.states_of(s["id"]) == ["accepted", "generating", "playing", "done"]
    assert [s["text"] for s in d.by_state("done")] == texts
    assert not any("preempted_by" in s for s in d.by_state("done"))
    assert np.diff([s.get("switch_stamp_s", s["stamp_s"]) for s in played]) == pytest.approx([1.0, 1.0], abs=0.1)
    # a tracker goes straight on from one segment to the next, and blends out after the last one's last sample
    done = d.by_state("done")
    assert [s.get("continued_by") for s in done] == [played[1]["id"], played[2]["id"], None]
    assert "end_stamp_s" not in done[0] and done[2]["end_stamp_s"] == pytest.approx(played[2]["switch_stamp_s"] + 1.0,
                                                                                     abs=0.1)
    check_stream(d)


def start_long_walk(d):
    """A 30 s walk (windows of 196 frames), 0.5 s into its playback: its 'playing' status."""
    d.send("walk for a long while length=30s")
    playing = d.until("playing")
    d.play_for(0.5)
    return playing


def long_walk_windows(d):
    """The continuations the generator made for the long walk's later windows."""
    return [c for c in d.generator.continuations if c[0] == "walk for a long while"]


def test_a_30_s_motion_streams_window_by_window():
    d = Drive()
    d.send("walk for a long while length=30s speed=4")
    playing = d.until("playing")
    done = d.until("done")
    assert done["windows"] == 4 and done["duration_s"] == pytest.approx(30.0 / 4, abs=0.05)
    assert [c[1] for c in long_walk_windows(d)] == [196, 196, 196]  # each window continues the one before
    assert d.states_of(playing["id"]) == ["accepted", "generating", "playing", "done"]
    check_stream(d, speed=4.0)
    assert d.stamps()[-1] - playing["stamp_s"] >= 30.0 / 4 - 0.1  # it played to the end


def test_stop_during_a_long_motion_reports_stopped_only_and_cancels_the_rest():
    d = Drive(delay_s=0.25)
    playing = start_long_walk(d)
    d.stop()
    stopped = d.until("stopped", timeout_s=2.0)
    d.play_for(0.8)
    assert stopped["id"] == playing["id"] and stopped["dropped_ids"] == []
    assert d.states_of(playing["id"]) == ["accepted", "generating", "playing", "stopped"]
    assert not long_walk_windows(d)  # later windows: never made
    n = len(d.samples)
    d.play_for(0.3)
    held = d.positions(n)
    assert len(held) >= 5 and np.allclose(held, held[0])
    check_stream(d)


def test_preempt_during_a_long_motion_cancels_its_unplayed_windows():
    d = Drive(delay_s=0.1)
    first = start_long_walk(d)
    d.send("walk short length=1s")
    second = d.until("playing", text="walk short")
    d.until("done", text="walk short")
    assert second["switch"] == "continue", second
    assert d.by_state("done", id=first["id"])[0]["preempted_by"] == second["id"]
    assert not long_walk_windows(d)
    check_stream(d)


def test_stop_mid_motion_reports_stopped_and_nothing_else_for_the_motion():
    d = Drive()
    d.send("walk first length=4s")
    first = d.until("playing")
    d.generator.delay_s = 0.3
    d.generator.sleep = lambda s: (d.stop(), d.play_for(s))  # stopped while "walk second" is generated
    d.send("walk second length=2s")
    stopped = d.until("stopped", timeout_s=2.0)
    d.play_for(0.8)
    second_id = d.by_state("accepted", text="walk second")[0]["id"]
    assert stopped["id"] == first["id"] and stopped["dropped_ids"] == [second_id]
    assert d.states_of(first["id"])[-1] == "stopped"
    assert d.states_of(second_id) == ["accepted", "generating"]  # answered by the stop, nothing after
    assert not d.by_state("rejected") and not d.by_state("done")
    check_stream(d)


def test_a_switch_that_comes_too_late_falls_back_to_a_blend_and_says_so():
    d = Drive()
    d.send("walk first length=6s")
    d.until("playing")
    for _ in range(16):
        d.joiner.switch_lead.add(1.0)   # the conductor now expects a switch to take 1 ms
    d.generator.delay_s = 1.0           # ... and it takes 1 s: more than 12 frames after its token
    d.play_for(0.3)
    d.send("walk second length=1s")
    second = d.until("playing", text="walk second")
    assert second["switch"] == "blend" and second["switch_reason"] == "late"
    d.until("done", text="walk second")
    check_stream(d)


def test_a_switch_after_its_planned_token_crossfades_and_reacts_at_once():
    """Planned on a 1 ms expectation, a continuation that takes 200 ms joins a few frames after its
    token (crossfading from the old motion there) instead of waiting or blending: its first sample
    comes about one generation after the command, and the stream stays continuous."""
    d = Drive()
    d.send("walk first length=6s")
    d.until("playing")
    for _ in range(16):
        d.joiner.switch_lead.add(1.0)
    d.generator.delay_s = 0.2
    d.play_for(0.3)
    d.send("walk second length=2s")
    second = d.until("playing", text="walk second")
    assert second["switch"] == "continue" and second["switch_slip_frames"] >= 2, second
    assert second["latency_ms"] < 200 + 150  # generation, a frame, a tick
    d.until("done", text="walk second")
    check_stream(d)


# ---------------------------------------------------------------------------------------------- commands
def test_stop_blends_into_a_hold_of_the_current_pose():
    d = Drive()
    d.send("walk for a long time length=8s")
    d.until("playing")
    d.play_for(0.5)
    d.stop()
    d.until("stopped", timeout_s=2.0)
    d.play_for(0.4)
    n = len(d.samples)
    d.play_for(0.3)
    after = d.samples[n:]
    assert len(after) >= 5
    pos = np.array([p.sample.positions for p in after])
    assert np.allclose(pos, pos[0]) and np.allclose([p.sample.velocities for p in after], 0.0)
    assert not d.by_state("done")  # the stopped motion never finished
    assert max_joint_speed(d) < 15.0  # no jump at the stop
    d.send("walk again length=1s")
    d.until("done", text="walk again")


@pytest.mark.parametrize("switch_mode", ["continue", "blend"])
def test_a_new_command_preempts_and_blends_from_the_current_pose(switch_mode):
    d = Drive({"switch_mode": switch_mode})
    d.send("first motion length=6s")
    d.until("playing", text="first motion")
    d.play_for(0.6)
    d.send("second motion length=1s")
    d.until("done", text="second motion")
    preempted = d.until("done", text="first motion")
    second = d.by_state("playing", text="second motion")[0]
    assert preempted["preempted_by"] == second["id"]
    assert second["switch"] == ("blend" if switch_mode == "blend" else "continue")
    assert max_joint_speed(d) < 15.0  # blended, not a jump
    check_stream(d)


def test_queue_mode_plays_in_order_and_bounds_the_queue():
    d = Drive({"queue_mode": "queue", "max_queue": 1, "command_burst": 10}, delay_s=0.3)
    d.send("one length=1s")
    d.until("generating", text="one")
    d.send("two length=1s")
    d.send("three length=1s")
    d.until("rejected", text="three")
    assert d.by_state("rejected", text="three")[0]["reason"] == "queue_full"
    d.until("done", text="two")
    assert [s["text"] for s in d.by_state("playing")] == ["one", "two"]
    assert not d.by_state("done", text="one")[0].get("preempted_by")


def test_burst_is_coalesced_to_the_newest_command():
    d = Drive({"command_rate": 1.0, "command_burst": 2})
    for i in range(30):
        d.send(f"walk number {i} length=1s")
    d.until("done", timeout_s=15.0, text="walk number 29")
    coalesced = [s for s in d.by_state("rejected") if s["reason"] == "coalesced"]
    assert len(coalesced) >= 20
    # every command is answered exactly once: folded into a newer one, or accepted
    assert sorted(s["id"] for s in coalesced + d.by_state("accepted")) == list(range(1, 31))


def test_a_parameter_change_reaches_the_next_command():
    d = Drive()
    d.conductor.configure(StreamSettings.from_parameters({"control_rate": RATE, "length_s": 3.0, "seed": 7,
                                                          "cond_scale": 2.0}))
    assert d.pipeline.default_length_frames == 60 and d.pipeline.seed == 7
    assert d.pipeline.sampling == {"cond_scale": 2.0, "temperature": 1.0}
    d.send("walk on")
    d.until("done", text="walk on")
    assert d.generator.calls[-1] == ("walk on", 60, 7)


# ---------------------------------------------------------------------------------------------- timing
def test_a_late_tick_at_the_start_of_playback_leaves_no_gap():
    """Issue 24: the first interval after playback started was 36-60 ms when the control loop stalled
    while the first chunk was retargeted (the clip covered only its first sample, and the late tick
    gave up on the missed periods). Every interval stays one period, the first included."""
    d = Drive(stream=lambda r, fps: TrickleStream(r, fps, budget=2))
    d.tick()
    d.send("walk on length=2s")
    producer = d.conductor.producer
    job = producer.take_job(wait=False)
    generation = producer.generation(job)
    next(generation)                                   # the first window is generated ...
    producer.retarget(producer.take_task(wait=False))  # ... and its first two samples retargeted
    d.tick(work=False)
    playing = d.by_state("playing")[0]
    assert playing["stamp_s"] == pytest.approx(d.stamps()[-1])
    d.tick(work=False, late_ns=2 * PERIOD_NS)          # the control loop stalls for two periods
    list(generation)
    d.play_for(1.0)
    d.streams[-1].budget = 10**9
    d.until("done")
    t = d.stamps()
    assert np.diff(t).max() <= 1.5 / RATE + 1e-9, np.diff(t).max()
    check_stream(d)


def test_a_late_tick_steps_through_the_missed_periods_at_their_own_times():
    """A stalled control loop publishes, on its late tick, the samples it missed: at their own stamps,
    the same as an on-time loop published then."""
    on_time, late = Drive(), Drive()
    for d in (on_time, late):
        d.send("walk on length=3s seed=5")
        d.until("playing")
        d.play_for(0.5)
    n = len(late.samples)
    late.tick(late_ns=3 * PERIOD_NS + PERIOD_NS // 3)   # a stall of 3.3 periods
    on_time.play_for(0.1)
    caught = late.samples[n:]
    intervals = np.diff([p.stamp_ns for p in caught])
    assert len(caught) == 4 and intervals.tolist() == [PERIOD_NS, PERIOD_NS, PERIOD_NS + PERIOD_NS // 3]
    by_stamp = {p.stamp_ns: p.sample for p in on_time.samples}
    for p in caught[:3]:
        assert np.array_equal(p.sample.positions, by_stamp[p.stamp_ns].positions)
    late.until("done")
    assert late.by_state("done")[0]["duration_s"] == pytest.approx(2.95)
    assert max_joint_speed(late) < MAX_JOINT_SPEED


def test_a_sim_clock_jump_is_not_replayed():
    d = Drive()
    d.tick()
    n = len(d.samples)
    d.tick(late_ns=5 * 10**9)
    assert len(d.samples) == n + 1


# ---------------------------------------------------------------------------------------------- the base twist
def test_the_base_twist_is_the_rate_of_the_published_base_pose():
    """A tracker reads the reference's twist beside its pose: the world-frame linear velocity and the
    angular velocity are the derivative of the published pose, through the blend and the motion."""
    d = Drive({"blend_s": 0.5})
    d.send("walk and turn length=3s speed=1.5")
    d.until("done")
    d.play_for(0.1)
    moving = [p for p in d.samples if p.motion_id is not None and p.sample.base_valid]
    t = np.array([p.stamp_ns for p in moving]) * 1e-9
    pos = np.array([p.sample.base_position for p in moving])
    quat = np.array([p.sample.base_quat_wxyz for p in moving])
    linear = np.array([p.sample.base_linear_velocity for p in moving])
    angular = np.array([p.sample.base_angular_velocity for p in moving])
    assert np.abs(linear[:, :2]).max() > 0.2 and np.abs(angular[:, 2]).max() > 0.1  # it walks and turns
    fd = np.gradient(pos, t, axis=0)
    inner = slice(2, -2)
    assert np.abs(linear[inner] - fd[inner]).max() < 0.05 * np.abs(fd).max() + 0.01
    # yaw rate from consecutive headings
    yaw = np.unwrap(2 * np.arctan2(quat[:, 3], quat[:, 0]))
    assert np.abs(angular[inner, 2] - np.gradient(yaw, t)[inner]).max() < 0.05
    idle = [p for p in d.samples if p.motion_id is None and p.sample.base_valid]
    assert idle and np.allclose([p.sample.base_linear_velocity for p in idle], 0.0)


def test_a_continuation_superseded_before_it_plays_never_plays():
    """A preempt supersedes a sequence's next segment, already joined to the playing clip, and then fails:
    the segment is taken back out of the clip, and the playing motion ends as it would have alone (its
    own last frames, not cut), instead of playing the superseded one."""
    d = Drive()
    d.generator.fail_on = "boom"
    d.send("walk a length=2s | walk b length=2s")
    d.until("playing", text="walk a")
    d.play_for(0.6)  # the second segment is generated and joined to the clip meanwhile
    d.send("boom walk")
    d.until("rejected", text="boom walk")
    assert d.by_state("rejected", text="walk b", reason="superseded")
    d.play_for(3.0)
    assert not d.by_state("playing", text="walk b"), d.statuses[-6:]
    done = d.by_state("done", text="walk a")
    assert len(done) == 1 and not done[0].get("cut") and done[0]["duration_s"] == pytest.approx(2.0, abs=0.1)
    check_stream(d)
