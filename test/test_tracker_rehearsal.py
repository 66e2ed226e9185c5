"""Rehearsal on the tracker's own MuJoCo G1 (needs ../shared/trackers/twist2, else skips): a walk passes,
a motion that makes the robot fall is cut before the fall (the cut checked by an independent run) or
refused, and the node's decision follows."""

import numpy as np
import pytest

from momask_ros.tracker import ConditionedReference, RobotReference, Tracker, rollout
from momask_ros.tracker.rehearsal import Rehearsal, rehearsal_decision
from momask_ros.tracker.rollout import RobotState, TrackerSimulation
from momask_ros.tracker.synthetic import synthetic_walk




@pytest.fixture(scope="module")
def rehearsal(bundle):
    return Rehearsal(bundle)


def leaning_walk(spec, *, lean_at_s: float = 2.0, duration_s: float = 3.5) -> RobotReference:
    """A 0.4 m/s walk that, from lean_at_s on, throws both legs and the waist to one side: beyond the robot."""
    walk = synthetic_walk(spec, speed_mps=0.4, duration_s=duration_s)
    names = list(spec.joint_names)
    q = walk.joint_pos_rad.copy()
    ramp = np.clip((walk.times_s - lean_at_s) / 0.4, 0.0, 1.0)[:, None]
    for joint in ("left_hip_roll_joint", "right_hip_roll_joint", "waist_roll_joint"):
        q[:, [names.index(joint)]] += 0.5 * ramp
    return RobotReference(walk.times_s, walk.base_pos_world, walk.base_quat_wxyz, q, joint_names=spec.joint_names)


def test_a_walk_passes_and_says_so(bundle, rehearsal):
    result = rehearsal.rehearse(synthetic_walk(bundle.spec, duration_s=3.0))
    assert not result.falls and result.cut is None and not result.refuse and result.complete
    assert result.rehearsed_s >= 3.0 + bundle.spec.blend_in_s + bundle.spec.blend_out_s
    assert result.status()["falls_in_rehearsal"] is False
    decision = rehearsal_decision(0, result, start_s=0.0)
    assert decision.play and decision.status is None and decision.entry["ok"]
    print(f"\nwalk rehearsed {result.rehearsed_s:.1f} s at {result.realtime_factor:.1f}x real time")


def test_a_motion_that_falls_is_cut_before_the_fall_or_refused(bundle, rehearsal):
    motion = leaning_walk(bundle.spec)
    result = rehearsal.rehearse(motion)
    assert result.falls and result.fall_time_s is not None and result.fall_reason
    status = result.status()
    assert status["falls_in_rehearsal"] is True and status["fall_time_s"] == pytest.approx(result.fall_time_s, abs=0.01)
    assert result.refuse == (result.cut is None)
    decision = rehearsal_decision(0, result, start_s=0.0)
    assert decision.status["reason"] == "falls_in_rehearsal"
    if result.cut is None:
        assert decision.refuse_job and not decision.play
        return
    cut = result.cut
    assert cut.cut_s < result.fall_time_s - rehearsal.lead_s + 1e-9 and cut.motion_time_s < result.fall_motion_time_s
    assert decision.play and decision.status["stops_at_s"] == pytest.approx(cut.motion_time_s, abs=1e-3)
    # an independent run of the cut motion (fresh tracker and simulator, no snapshots) stays up
    reference = ConditionedReference.from_spec(motion, bundle.spec, bundle.joint_range_rad)
    reference.stop(cut.cut_s)
    check = rollout(Tracker(bundle), reference, reference.end_s + rehearsal.settle_s, simulation=TrackerSimulation(bundle))
    assert not check.fell and reference.end_s == pytest.approx(cut.stands_s)
    print(f"\nleaning walk: falls at {result.fall_time_s:.2f} s, cut at {cut.cut_s:.2f} s "
          f"(motion {cut.motion_time_s:.2f} s), standing at {cut.stands_s:.2f} s")


def test_the_verdict_is_the_same_twice_and_advance_stays_ahead(bundle, rehearsal):
    motion = leaning_walk(bundle.spec)
    first = rehearsal.rehearse(motion)
    run = rehearsal.start(motion)
    early = run.advance(1.0)
    assert not early.complete and not early.falls and early.rehearsed_s == pytest.approx(1.0, abs=0.02)
    second = run.finish()
    assert (second.fall_time_s, second.cut) == (first.fall_time_s, first.cut)


def test_rehearsal_starts_from_the_given_state(bundle, rehearsal):
    state = RobotState.standing(bundle.spec, xy=(2.0, -1.0), yaw_rad=1.2)
    run = rehearsal.start(synthetic_walk(bundle.spec, duration_s=2.0), state)
    np.testing.assert_allclose(rehearsal.simulation.base_pos_world[:2], [2.0, -1.0])
    # the reference is re-anchored on the robot: it starts where the robot stands, facing its way
    np.testing.assert_allclose(run.reference.sample(0.0).base_pos_world[:2], [2.0, -1.0], atol=1e-9)
    result = run.finish()
    assert not result.falls
    moved = rehearsal.simulation.base_pos_world[:2] - np.array([2.0, -1.0])
    assert moved @ np.array([np.cos(1.2), np.sin(1.2)]) > 0.2  # walked forward along its own heading


def test_a_motion_wholly_beyond_the_robot_is_refused_without_rehearsal(bundle, rehearsal):
    from momask_ros.tracker.rotations import rpy_to_quat_wxyz

    walk = synthetic_walk(bundle.spec, duration_s=2.0)
    lying = rpy_to_quat_wxyz(np.tile([0.0, 1.57, 0.0], (walk.times_s.size, 1)))  # face down the whole time
    motion = RobotReference(walk.times_s, walk.base_pos_world * [1, 1, 0.2], lying, walk.joint_pos_rad,
                            joint_names=bundle.spec.joint_names)
    result = rehearsal.rehearse(motion)
    assert result.refuse and not result.falls and result.rehearsed_s == 0.0
    assert result.refusal.startswith("beyond the robot") and result.status()["refused"] == result.refusal
    decision = rehearsal_decision(0, result, start_s=0.0)
    assert decision.refuse_job and decision.status["reason"] == "beyond_robot"


def test_a_robot_that_has_not_settled_when_the_rehearsal_ends_counts_as_fallen(bundle, rehearsal):
    """Standing is not enough at the end: the robot must be still (little tilt and rotation). One that is
    not is rehearsed on, up to the settle time again, and counts as fallen unless it settles."""
    walk = synthetic_walk(bundle.spec, duration_s=2.0)
    run = rehearsal.start(walk)
    assert not run.finish().falls and rehearsal.settled(rehearsal.simulation.state())

    class Restless(Rehearsal):
        SETTLED_TILT_RAD = -1.0  # never still enough

    restless = Restless(bundle, settle_s=0.5, max_cut_attempts=1)
    result = restless.rehearse(walk)
    end = restless.start(walk).end_s
    assert result.falls and result.fall_reason.startswith("not settled") and result.refuse and result.cut is None
    assert result.fall_time_s == pytest.approx(end + restless.settle_s, abs=0.05)
    assert result.fall_motion_time_s == pytest.approx(2.0, abs=0.05)  # after the motion's end


def test_a_rehearsal_from_a_robot_standing_still_starts_with_a_standing_tracker_memory(bundle, rehearsal):
    """A live tracker that has held its robot standing remembers a full observation history and the
    standing action; the policy reads both. A rehearsal from that robot started with that memory
    (`Rehearsal.standing_memory`) follows the live run much more closely than one from a fresh tracker."""
    from momask_ros.tracker.rollout import decimation

    walk = synthetic_walk(bundle.spec, duration_s=2.0)
    memory = rehearsal.standing_memory()
    assert np.abs(memory.last_action).max() > 0 and memory.next_policy_s is None
    # the live robot: standing 2 s under its tracker, then the walk
    tracker, sim = Tracker(bundle), TrackerSimulation(bundle)
    rollout(tracker, None, 2.0, simulation=sim)
    every = decimation(tracker, sim)
    dt = every * sim.dt_s
    start, state = sim.time_s, sim.state()
    reference = ConditionedReference.from_spec(walk, bundle.spec, bundle.joint_range_rad)
    reference.reanchor(0.0, sim.base_pos_world, sim.base_quat_wxyz)
    tracker.set_reference(reference, start_s=start)
    for j in range(int(round(1.5 / dt))):
        sim.hold(tracker.step(start + j * dt, sim.measured()), every)
    live = sim.state().joint_pos_rad

    def rehearsed(with_memory):
        run = rehearsal.start(walk, state, memory if with_memory else None)
        run.advance(1.5)
        return rehearsal.simulation.state().joint_pos_rad

    remembered, fresh = (np.abs(rehearsed(m) - live).max() for m in (True, False))
    print(f"\nafter 1.5 s: joint difference to the live run {remembered:.2e} rad with the standing memory, "
          f"{fresh:.2e} rad from a fresh tracker")
    assert remembered < 0.2 * fresh
