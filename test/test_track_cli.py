"""`momask-track`: a text command generated, retargeted onto the G1, tracked in physics, reported as JSON;
bad input is one line and exit status 2. Needs ../shared/trackers/twist2 and Unitree's G1 model in
../shared/data (else skips)."""
import json
import shutil
from pathlib import Path

import pytest

from momask_ros.tools import track

SHARED = Path(__file__).resolve().parents[2] / "shared"
TWIST2 = SHARED / "trackers" / "twist2"
G1 = SHARED / "data" / "robots" / "unitree_g1" / "g1_29dof.xml"


@pytest.fixture(scope="module")
def files():
    if not TWIST2.is_dir() or not G1.is_file():
        pytest.skip(f"tracker files ({TWIST2}) or the G1 model ({G1}) not found")
    return TWIST2, G1


def _args(files, *extra):
    tracker_dir, g1 = files
    return ["--robot", "g1", "--description", str(g1), "--tracker", str(tracker_dir), *extra]


def _one_line_error(capsys, *fragments):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("momask-track: error:"), err
    for fragment in fragments:
        assert fragment in err[0]
    return err[0]


@pytest.mark.parametrize("text, reason", [("a person walks lenght=3s", "bad_option"), ("   ", "empty"),
                                          ("a person walks length=99s", "out_of_range")])
def test_bad_text_is_one_line_and_status_2(files, tmp_path, capsys, text, reason):
    assert track.main(_args(files, "--text", text, "--json", str(tmp_path / "r.json"))) == 2
    _one_line_error(capsys, reason)
    assert not (tmp_path / "r.json").exists()


def test_unknown_robot_and_mismatched_joints_are_refused(files, capsys):
    assert track.main([*_args(files, "--text", "a person walks"), "--robot", "r2d2"]) == 2
    _one_line_error(capsys, "r2d2")
    assert track.main([*_args(files, "--text", "a person walks"), "--robot", "default", "--description", ""]) == 2
    _one_line_error(capsys, "do not match the tracker")


def test_bad_tracker_folders_are_refused(files, tmp_path, capsys):
    assert track.main([*_args(files, "--text", "a person walks"), "--tracker", str(tmp_path / "nowhere")]) == 2
    _one_line_error(capsys, "tracker folder not found")
    bad = tmp_path / "bad_hash"
    shutil.copytree(TWIST2, bad, ignore=shutil.ignore_patterns("meshes"))
    weights = bad / "twist2_1017_20k.onnx"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    assert track.main([*_args(files, "--text", "a person walks"), "--tracker", str(bad)]) == 2
    _one_line_error(capsys, "sha256")
    assert track.main(_args(files, "--text", "a person walks", "--checkpoint", "99k")) == 2
    _one_line_error(capsys, "unknown checkpoint '99k'")
    assert track.main(_args(files, "--text", "a person walks", "--policy-rate", "75")) == 2
    _one_line_error(capsys, "75.0 Hz not allowed")


def test_bad_output_paths_are_refused_before_any_work(files, tmp_path, capsys):
    assert track.main(_args(files, "--text", "a person walks", "--json", str(tmp_path / "r.txt"))) == 2
    _one_line_error(capsys, "--json", ".json")
    assert track.main(_args(files, "--text", "a person walks", "--video", str(tmp_path / "v.avi"))) == 2
    _one_line_error(capsys, "--video")


def test_a_walk_is_tracked_and_reported(files, tmp_path, capsys):
    out = tmp_path / "walk.json"
    assert track.main(_args(files, "--text", "a person walks forward length=2s", "--seed", "1",
                            "--json", str(out))) == 0
    assert "no fall" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["refused"] is None and report["fell"] is False and report["fall_time_s"] is None
    assert report["duration_s"] == pytest.approx(2.0, abs=0.1) and report["seed"] == 1
    assert report["simulated_s"] > report["duration_s"] + report["blend_in_s"]  # back to standing, settled
    for key in ("mean_joint_error_rad", "base_height_error_m", "path_deviation_m", "realtime_factor",
                "time_stretch", "slowed", "conditioning", "path_deviation_reanchored_m"):
        assert key in report
    assert 0 < report["mean_joint_error_rad"] < 0.2 and report["realtime_factor"] > 0
    assert report["segments"] == [{"text": "a person walks forward", "length_frames": 40, "speed": 1.0, "seed": None}]


def test_a_text_the_model_refuses_is_reported_not_an_error(files, tmp_path):
    out = tmp_path / "violin.json"
    assert track.main(_args(files, "--text", "a person plays the violin", "--json", str(out))) == 0
    report = json.loads(out.read_text())
    assert report["refused"].startswith("out_of_scope") and report["fell"] is False


def test_speed_warp_plays_each_segment_at_its_speed():
    import numpy as np

    joints = np.arange(40, dtype=float)[:, None, None] * np.ones((1, 22, 3))
    fast = track.speed_warp(joints, 20.0, [(0, 20), (20, 40)], [2.0, 1.0])
    assert len(fast) == 30  # the first 20 frames in half the time
    np.testing.assert_allclose(fast[:10, 0, 0], np.arange(0, 20, 2))
    assert track.speed_warp(joints, 20.0, [(0, 40)], [1.0]) is joints
