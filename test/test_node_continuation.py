"""momask_node as a continuous motion source, end to end over real rclpy/DDS (see ros_harness.py).

The switching logic itself is tested on the conductor's fake clock (test_conductor.py: queue mode,
sequences, long motions, stops, late switches). Here a few of those run through the node's threads
and DDS: a continuation joins the playing motion without a blend, a sequence streams segment by
segment, and a command's generation starts at once while the playing clip is still retargeted.
Every test checks the published stream itself: joint and base continuity, limits, stamps strictly
increasing with no gap longer than two control periods (a loaded machine), and each command's
statuses in order. The small deterministic generator and retargeter of motion_fakes keep this fast.
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


@pytest.mark.parametrize("harness", [{"stream_delay_s": 0.05}], indirect=True)
def test_generation_starts_at_once_even_while_the_playing_clip_is_retargeted(harness):
    h = harness
    h.send("walk first length=6s")  # 120 frames in chunks of 8, 50 ms each: ~0.75 s of retargeting
    h.wait_state("playing", 10.0, text="walk first")
    h.send("walk second length=1s")
    generating = h.wait_state("generating", 5.0, text="walk second")
    assert generating["wait_ms"] < 50.0
    h.wait_state("done", 10.0, text="walk second")
