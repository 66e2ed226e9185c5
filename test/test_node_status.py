"""How momask_node's statuses move the tracker's live reference (`momask_ros.tracker.node_status`)."""
from momask_ros.tracker.node_status import reference_event


def test_a_motion_begins_at_its_first_sample_but_never_in_the_past():
    assert reference_event("playing", {"stamp_s": 12.5}, 2.0, clock_offset_s=10.0) == ("begin", 2.5)
    assert reference_event("playing", {"stamp_s": 11.0}, 2.0, clock_offset_s=10.0) == ("begin", 2.0)
    assert reference_event("playing", {}, 2.0) == ("begin", 2.0)


def test_an_end_blends_out_once_its_last_sample_is_followed():
    # the tracker follows 0.1 s behind: the end's last sample is still to come
    assert reference_event("done", {"end_stamp_s": 12.25}, 2.0, clock_offset_s=10.0) == ("end", 2.25)
    assert reference_event("done", {"duration_s": 3.0}, 2.0) == ("end", 2.0)  # no stamp: now
    assert reference_event("stopped", {"end_stamp_s": 99.0}, 2.0) == ("end", 2.0)  # a stop: at once


def test_a_motion_another_goes_on_from_does_not_end_the_reference():
    assert reference_event("done", {"preempted_by": 4, "end_stamp_s": 3.0}, 2.0) is None
    assert reference_event("done", {"continued_by": 4, "end_stamp_s": 3.0}, 2.0) is None
    for state in ("accepted", "generating", "rejected", "error"):
        assert reference_event(state, {}, 2.0) is None
