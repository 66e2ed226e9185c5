"""momask_node as a continuous motion source, over real rclpy/DDS (see ros_harness.py).

A command arriving while a motion plays continues it (no blend), queue mode continues at the end,
sequences and long motions stream window by window, stop and preempt cancel what has not played.
Every test checks the published stream itself: joint and base continuity, limits, stamps strictly
increasing with no gap longer than two control periods, and each command's statuses in order.
The small deterministic generator and retargeter of motion_fakes keep this fast; their continuation
follows issue 13's contract (same pose, phase, heading and place at the switch frame).
"""
import time

import numpy as np
import pytest

from momask_ros.stream.pipeline import MotionPipeline

from motion_fakes import AngleRetargeter, ChunkStream, WalkGenerator
from ros_harness import Harness

RATE = 50.0
MAX_JOINT_SPEED = 15.0   # rad/s between consecutive JointStates: a jump between poses shows as ~50+
MAX_BASE_STEP_M = 0.05   # per tick: the fake walks at <= 0.9 m/s, i.e. <= 0.018 m per 20 ms


class SlowStream(ChunkStream):
    """Retargeting that takes real time per chunk (like the real retargeter on a busy CPU)."""

    delay_s = 0.0

    def push(self, joints_yup):
        if self.delay_s:
            time.sleep(self.delay_s)
        return super().push(joints_yup)


def make_harness(params=None, *, delay_s=0.0, stream_delay_s=0.0):
    r = AngleRetargeter()
    SlowStream.delay_s = stream_delay_s
    pipeline = MotionPipeline(WalkGenerator(delay_s=delay_s), r, r.joint_space, chunk_frames=8,
                              stream_factory=lambda fps: SlowStream(r, fps))
    return Harness(pipeline, {"control_rate": RATE, "blend_s": 0.2, "command_burst": 20, **(params or {})})


@pytest.fixture
def harness(request):
    h = make_harness(**getattr(request, "param", {}))
    yield h
    h.close()


def stamps(msgs):
    return np.array([m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in msgs])


def check_stream(h, since=0, speed=1.0):
    """The stream neither drops nor repeats, stays continuous and within limits (motion played at
    ``speed`` moves that much faster)."""
    js = list(h.joint_states)[since:]
    t = stamps(js)
    assert np.all(np.diff(t) > 0), "stamps must increase strictly"
    assert np.diff(t).max() <= 2.0 / RATE + 2e-3, f"gap of {np.diff(t).max() * 1e3:.0f} ms in the stream"
    pos = np.array([m.position for m in js])
    assert AngleRetargeter.joint_space.within(pos)
    joint_speed = (np.abs(np.diff(pos, axis=0)).max(axis=1) / np.diff(t)).max()
    assert joint_speed < MAX_JOINT_SPEED * speed, f"joint jump: {joint_speed:.1f} rad/s"
    base = np.array([[p.pose.position.x, p.pose.position.y, p.pose.position.z] for p in h.poses])
    assert np.linalg.norm(np.diff(base, axis=0), axis=1).max() < MAX_BASE_STEP_M * speed, "base jump"
    return js


def states_of(h, job_id):
    return [s["state"] for s in list(h.statuses) if s.get("id") == job_id]


def test_preempt_continues_the_playing_motion_without_a_blend(harness):
    h = harness
    h.send("walk first length=6s")
    first = h.wait_state("playing", 10.0, text="walk first")
    time.sleep(0.8)
    h.send("walk second faster length=2s")
    second = h.wait_state("playing", 10.0, text="walk second faster")
    assert second["switch"] == "continue" and "switch_reason" not in second, second
    assert 0 < second["latency_ms"] <= second["switch_latency_ms"]
    done = h.wait_state("done", 10.0, text="walk second faster")
    assert states_of(h, first["id"]) == ["accepted", "generating", "playing", "done"]
    assert h.by_state("done", id=first["id"])[0]["preempted_by"] == second["id"]
    assert states_of(h, second["id"]) == ["accepted", "generating", "playing", "done"]
    slip = second["switch_slip_frames"]
    assert 0 <= slip <= 12 and done["duration_s"] == pytest.approx((40 - slip) / 20.0)
    gen = h.node.pipeline.generator
    text, at, length = gen.continuations[-1]
    assert text == "walk second faster" and at % 4 == 0 and length == 40
    # the switch happened `slip` frames after the token the continuation starts at: first's frame `at`
    assert second["switch_stamp_s"] - first["stamp_s"] == pytest.approx((at + slip) / 20.0, abs=0.1)
    check_stream(h)


@pytest.mark.parametrize("harness", [{"params": {"queue_mode": "queue"}}], indirect=True)
def test_queue_mode_continues_at_the_end_of_the_current_motion(harness):
    h = harness
    h.send("walk one length=1.6s")
    h.send("walk two now length=1.2s")
    two = h.wait_state("playing", 10.0, text="walk two now")
    h.wait_state("done", 10.0, text="walk two now")
    one_done = h.wait_state("done", 1.0, text="walk one")
    assert "preempted_by" not in one_done and two["switch"] == "continue"
    assert h.node.pipeline.generator.continuations[-1] == ("walk two now", 32, 24)  # at the end of one
    one = h.by_state("playing", text="walk one")[0]
    assert two["switch_stamp_s"] - one["stamp_s"] == pytest.approx(1.6, abs=0.1)
    check_stream(h)


def test_sequence_streams_segment_by_segment_as_continuations(harness):
    h = harness
    h.send("walk alpha length=1s | walk beta long length=1s | walk gamma longer length=1s")
    h.wait_state("done", 15.0, text="walk gamma longer")
    texts = ["walk alpha", "walk beta long", "walk gamma longer"]
    played = [s for s in h.statuses if s["state"] == "playing"]
    assert [s["text"] for s in played] == texts
    assert [s["switch"] for s in played] == ["start", "continue", "continue"]
    assert [s["segment"] for s in played] == [1, 2, 3] and {s["segments"] for s in played} == {3}
    for s in played:
        assert states_of(h, s["id"]) == ["accepted", "generating", "playing", "done"]
    assert [s["text"] for s in h.by_state("done")] == texts
    assert not any("preempted_by" in s for s in h.by_state("done"))
    assert np.diff([s.get("switch_stamp_s", s["stamp_s"]) for s in played]) == pytest.approx([1.0, 1.0], abs=0.1)
    check_stream(h)


def start_long_walk(h):
    """A 30 s walk (windows of 196 frames), 0.5 s into its playback: its 'playing' status."""
    h.send("walk for a long while length=30s")
    playing = h.wait_state("playing", 10.0)
    time.sleep(0.5)
    return playing


def long_walk_windows(h):
    """The continuations the generator made for the long walk's later windows."""
    return [c for c in h.node.pipeline.generator.continuations if c[0] == "walk for a long while"]


def test_a_30_s_motion_streams_window_by_window(harness):
    h = harness
    h.send("walk for a long while length=30s speed=4")
    playing = h.wait_state("playing", 10.0)
    done = h.wait_state("done", 20.0)
    assert done["windows"] == 4 and done["duration_s"] == pytest.approx(30.0 / 4, abs=0.05)
    assert [c[1] for c in long_walk_windows(h)] == [196, 196, 196]  # each window continues the one before
    assert states_of(h, playing["id"]) == ["accepted", "generating", "playing", "done"]
    js = check_stream(h, speed=4.0)
    t = stamps(js)
    assert t[-1] - playing["stamp_s"] >= 30.0 / 4 - 0.1  # it played to the end


@pytest.mark.parametrize("harness", [{"delay_s": 0.25}], indirect=True)
def test_stop_during_a_long_motion_reports_stopped_only_and_cancels_the_rest(harness):
    h = harness
    playing = start_long_walk(h)
    h.stop()
    stopped = h.wait_state("stopped", 2.0)
    time.sleep(0.8)
    assert stopped["id"] == playing["id"] and stopped["dropped_ids"] == []
    assert states_of(h, playing["id"]) == ["accepted", "generating", "playing", "stopped"]
    assert not long_walk_windows(h)  # later windows: never made
    n = len(h.joint_states)
    time.sleep(0.3)
    held = np.array([m.position for m in h.joint_states[n:]])
    assert len(held) >= 5 and np.allclose(held, held[0])
    check_stream(h)


@pytest.mark.parametrize("harness", [{"delay_s": 0.1}], indirect=True)
def test_preempt_during_a_long_motion_cancels_its_unplayed_windows(harness):
    h = harness
    first = start_long_walk(h)
    h.send("walk short length=1s")
    second = h.wait_state("playing", 10.0, text="walk short")
    h.wait_state("done", 10.0, text="walk short")
    assert second["switch"] == "continue", second
    assert h.by_state("done", id=first["id"])[0]["preempted_by"] == second["id"]
    assert not long_walk_windows(h)
    check_stream(h)


@pytest.mark.parametrize("harness", [{"stream_delay_s": 0.05}], indirect=True)
def test_generation_starts_at_once_even_while_the_playing_clip_is_retargeted(harness):
    h = harness
    h.send("walk first length=6s")  # 120 frames in chunks of 8, 50 ms each: ~0.75 s of retargeting
    h.wait_state("playing", 10.0, text="walk first")
    h.send("walk second length=1s")
    generating = h.wait_state("generating", 5.0, text="walk second")
    assert generating["wait_ms"] < 50.0
    h.wait_state("done", 10.0, text="walk second")


def test_stop_mid_motion_reports_stopped_and_nothing_else_for_the_motion(harness):
    h = harness
    h.node.pipeline.generator.delay_s = 0.3
    h.send("walk first length=4s")
    first = h.wait_state("playing", 10.0)
    h.send("walk second length=2s")  # stopped while it is being generated
    h.wait_state("generating", 5.0, text="walk second")
    h.stop()
    stopped = h.wait_state("stopped", 2.0)
    time.sleep(0.8)
    second_id = h.by_state("accepted", text="walk second")[0]["id"]
    assert stopped["id"] == first["id"] and stopped["dropped_ids"] == [second_id]
    assert states_of(h, first["id"])[-1] == "stopped"
    assert states_of(h, second_id) == ["accepted", "generating"]  # answered by the stop, nothing after
    assert not h.by_state("rejected") and not h.by_state("done")
    check_stream(h)


def test_a_switch_that_comes_too_late_falls_back_to_a_blend_and_says_so(harness):
    h = harness
    h.send("walk first length=6s")
    h.wait_state("playing", 10.0)
    producer = h.node._producer
    for _ in range(16):
        producer.switch_lead.add(1.0)           # the node now expects a switch to take 1 ms
    h.node.pipeline.generator.delay_s = 1.0     # ... and it takes 1 s: more than 12 frames after its token
    time.sleep(0.3)
    h.send("walk second length=1s")
    second = h.wait_state("playing", 10.0, text="walk second")
    assert second["switch"] == "blend" and second["switch_reason"] == "late"
    h.wait_state("done", 10.0, text="walk second")
    check_stream(h)


def test_a_switch_after_its_planned_token_crossfades_and_reacts_at_once(harness):
    """Planned on a 1 ms expectation, a continuation that takes 200 ms joins a few frames after its
    token (crossfading from the old motion there) instead of waiting or blending: its first JointState
    comes about one generation after the command, and the stream stays continuous."""
    h = harness
    h.send("walk first length=6s")
    h.wait_state("playing", 10.0)
    producer = h.node._producer
    for _ in range(16):
        producer.switch_lead.add(1.0)
    h.node.pipeline.generator.delay_s = 0.2
    time.sleep(0.3)
    h.send("walk second length=2s")
    second = h.wait_state("playing", 10.0, text="walk second")
    assert second["switch"] == "continue" and second["switch_slip_frames"] >= 2, second
    assert second["latency_ms"] < 200 + 150  # generation, a frame, a tick, a loaded CI machine
    h.wait_state("done", 10.0, text="walk second")
    check_stream(h)
