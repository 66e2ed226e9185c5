"""``tracker/memory``: a tracker's memory survives the message whole, and a message of another layout is
refused with one line (`momask_ros.ros.memory_messages`)."""
import numpy as np
import pytest

from momask_ros.ros.memory_messages import MemoryMessageError, memory_from_msg, tracker_memory_msg
from momask_ros.tracker.controller import TrackerMemory

LAYOUT = {"history_length": 3, "frame_dim": 5, "num_joints": 2}


def _memory(seed=0):
    rng = np.random.default_rng(seed)
    return TrackerMemory(tuple(rng.normal(size=5) for _ in range(3)), rng.normal(size=2), next_policy_s=1.0)


def test_a_memory_comes_back_whole_from_its_message():
    memory = _memory()
    back = memory_from_msg(tracker_memory_msg(memory), **LAYOUT)
    assert len(back.history) == 3
    assert all(np.array_equal(a, b) for a, b in zip(back.history, memory.history))
    assert np.array_equal(back.last_action, memory.last_action)
    assert back.next_policy_s is None and back.last_command is None  # the policy clock stays with its tracker


@pytest.mark.parametrize("layout", [{"history_length": 4}, {"frame_dim": 6}, {"num_joints": 29}])
def test_a_message_of_another_layout_is_refused_with_one_line(layout):
    with pytest.raises(MemoryMessageError) as err:
        memory_from_msg(tracker_memory_msg(_memory()), **{**LAYOUT, **layout})
    assert "\n" not in str(err.value) and "layout" in str(err.value)


def test_a_message_with_missing_or_non_finite_values_is_refused():
    msg = tracker_memory_msg(_memory())
    msg.data = list(msg.data)[:-1]
    with pytest.raises(MemoryMessageError, match="values"):
        memory_from_msg(msg, **LAYOUT)
    msg = tracker_memory_msg(_memory())
    data = list(msg.data)
    data[3] = float("nan")
    msg.data = data
    with pytest.raises(MemoryMessageError, match="finite"):
        memory_from_msg(msg, **LAYOUT)
