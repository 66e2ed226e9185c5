"""The main job end to end: node in its own process, command over ROS, stream saved, previews rendered;
and what it says and leaves behind when something goes wrong (issue 24)."""
import json
from pathlib import Path

import numpy as np
import pytest

from momask_ros.ros.demo import OUTPUTS, command_outcome, main, motion_window

SHARED_H1 = Path(__file__).resolve().parents[2] / "shared" / "data" / "robots" / "unitree_h1" / "h1.xml"


@pytest.fixture(autouse=True)
def _localhost(monkeypatch):
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


def _frames(path):
    import imageio.v2 as imageio

    reader = imageio.get_reader(path)
    frames = np.stack([f for f in reader])
    reader.close()
    return frames


def assert_valid_video(path, min_frames=5):
    assert path.is_file() and path.stat().st_size > 2000, path
    frames = _frames(path).astype(np.float32)
    assert frames.ndim == 4 and frames.shape[0] >= min_frames and frames.shape[-1] == 3
    # not blank: every frame has structure (a uniform image has ~0 spatial std)
    assert (frames.reshape(len(frames), -1, 3).std(axis=1).mean(axis=1) > 5.0).all()
    # changes over time: the first and last frames differ visibly
    diff = np.abs(frames[-1] - frames[0]).mean()
    assert diff > 0.5, f"video {path.name} does not change over time (mean abs diff {diff:.3f})"


def _stale(out: Path) -> Path:
    """A previous run's outputs, and a file of the user's that is not the demo's."""
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        (out / name).write_text("from the previous run")
    notes = out / "my_notes.txt"
    notes.write_text("mine")
    return notes


def test_a_sequence_plays_to_its_last_segment_after_the_node_is_ready(tmp_path, capsys):
    """` | ` sequences are the node's syntax, and the demo records until the last segment is done."""
    out = tmp_path / "demo"
    rc = main(["--text", "a person walks forward length=2s | a person jumps length=2s", "--out", str(out),
               "--device", "cpu", "--seed", "3", "--timeout", "200"])
    assert rc == 0, (out / "node.log").read_text()[-3000:]
    statuses = json.loads((out / "status.json").read_text())
    states = [s["state"] for s in statuses]
    assert states.index("ready") < states.index("accepted")  # sent once the node was warm
    done = [s for s in statuses if s["state"] == "done"]
    assert [(s["segment"], s["segments"]) for s in done] == [(1, 2), (2, 2)]
    start, duration = motion_window(statuses)
    assert abs(duration - 4.0) < 0.25, duration  # both segments, not the first one only
    first = next(s for s in statuses if s["state"] == "playing")
    assert first["latency_ms"] < 1500, first  # no warm-up in it (was 2,011 ms when sent before ready)
    stream = np.load(out / "joint_states.npz")
    from momask_ros.robot.model import load_robot

    robot = load_robot("default")
    assert list(stream["names"]) == list(robot.joint_names)
    stamps = stream["stamps_s"]
    assert np.all(np.diff(stamps) > 0) and stamps[0] >= start - 1e-6  # the command's motion, not the idle wait
    assert stamps[-1] - stamps[0] >= duration - 0.1
    lo, hi = robot.position_limits[:, 0], robot.position_limits[:, 1]
    assert np.all(stream["positions"] >= lo - 1e-9) and np.all(stream["positions"] <= hi + 1e-9)
    robot_frames = _frames(out / "robot.mp4")
    assert robot_frames.shape[1:3] == (540, 960)
    assert len(robot_frames) / 25.0 >= duration  # 25 fps from the 50 Hz stream, to the end of segment 2
    assert_valid_video(out / "robot.mp4")
    assert_valid_video(out / "human.mp4")
    # time-correct previews: as long as the whole command, within one frame
    human, side = _frames(out / "human.mp4"), _frames(out / "side_by_side.mp4")
    assert abs(len(human) / 20.0 - (duration + 1 / 20.0)) <= 1 / 20.0 + 1e-9, (len(human), duration)
    assert side.shape[0] == human.shape[0] and side.shape[2] == 2 * human.shape[2]
    assert_valid_video(out / "side_by_side.mp4")
    printed = capsys.readouterr().out
    assert "2 segment(s)" in printed and "sent after the node's ready status" in printed


def test_each_run_removes_the_previous_runs_outputs_even_when_refused(tmp_path, capsys):
    out = tmp_path / "demo"
    notes = _stale(out)
    assert main(["--text", "a person walks lenght=4s", "--out", str(out)]) == 2
    assert "lenght" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [notes.name]  # only what is not the demo's stays


def test_a_node_that_cannot_start_says_why_and_the_demo_takes_what_the_node_takes(tmp_path, capsys):
    """A 12 s sequence passes the demo's own checks (it refused > 9.8 s and ' | '); the node then stops on a
    bad bundle, and the demo prints the node's FATAL reason, not 'node states []'."""
    out = tmp_path / "demo"
    _stale(out)
    bundle = tmp_path / "not_a_bundle.pt"
    bundle.write_bytes(b"not a bundle")
    robot = ["--robot", "h1", "--robot-description", str(SHARED_H1)] if SHARED_H1.is_file() else []
    rc = main(["--text", "a person walks forward length=12s | a person jumps", "--out", str(out), "--device", "cpu",
               "--bundle", str(bundle), "--timeout", "120", *robot])
    err = capsys.readouterr().err
    assert rc == 1
    assert "momask_node stopped: cannot start:" in err and "not_a_bundle.pt" in err, err
    assert "node states" not in err
    # (the node loads the robot before the bundle: failing on the bundle, it had H1's --robot-description)
    assert (out / "node.log").is_file() and not (out / "robot.mp4").exists()
    assert json.loads((out / "status.json").read_text()) == []


def test_a_missing_robot_description_is_one_line_before_the_node_starts(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["--robot", "h1", "--robot-description", str(tmp_path / "nosuch.xml"), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("momask-demo: error: --robot h1:") and len(err.splitlines()) == 1
    assert not (out / "node.log").exists()


def test_the_outcome_waits_for_every_segment_and_names_the_nodes_reason():
    accepted = [{"state": "accepted", "id": 1, "segment": 1, "segments": 2},
                {"state": "accepted", "id": 2, "segment": 2, "segments": 2}]
    first_done = [*accepted, {"state": "playing", "id": 1}, {"state": "done", "id": 1, "duration_s": 2.0}]
    assert command_outcome(first_done) == ("running", "")  # the bug: the demo stopped here
    assert command_outcome([*first_done, {"state": "done", "id": 2}]) == ("done", "")
    refused = command_outcome([{"state": "rejected", "id": 1, "reason": "out_of_scope", "segment": 2,
                                "segments": 2, "detail": "'a person swims' is outside"}])
    assert refused == ("refused", "out_of_scope (segment 2 of 2): 'a person swims' is outside")
    assert command_outcome([{"state": "error", "reason": "warm_up_failed", "detail": "CUDA"}])[0] == "failed"
    assert command_outcome([{"state": "ready"}]) == ("running", "")


def test_the_motion_window_runs_from_the_first_jointstate_to_the_end_of_the_last_segment():
    statuses = [{"state": "playing", "id": 1, "stamp_s": 100.0, "duration_s": 2.0},
                {"state": "done", "id": 1, "duration_s": 2.0},
                {"state": "playing", "id": 2, "stamp_s": 101.0, "switch_stamp_s": 102.04, "duration_s": 1.5},
                {"state": "done", "id": 2, "duration_s": 1.5}]
    start, duration = motion_window(statuses)
    assert start == 100.0 and duration == pytest.approx(3.54)
