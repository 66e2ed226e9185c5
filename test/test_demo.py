"""The main job end to end: node in its own process, command over ROS, stream saved, previews rendered."""
import numpy as np
import pytest



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


def test_demo_streams_over_ros_and_writes_previews(tmp_path):
    """The default job exactly as `make demo` runs it (packaged demo model, default humanoid), shortened."""
    from momask_ros.ros.demo import main

    out = tmp_path / "demo"
    rc = main(["--text", "a person walks forward length=3s", "--out", str(out), "--device", "cpu", "--seed", "3",
               "--timeout", "150"])
    assert rc == 0, (out / "node.log").read_text()[-3000:]
    stream = np.load(out / "joint_states.npz")
    from momask_ros.robot.model import load_robot

    robot = load_robot("default")
    assert list(stream["names"]) == list(robot.joint_names)
    stamps = stream["stamps_s"]
    assert len(stamps) >= 50 and np.all(np.diff(stamps) > 0)
    lo, hi = robot.position_limits[:, 0], robot.position_limits[:, 1]
    assert np.all(stream["positions"] >= lo - 1e-9) and np.all(stream["positions"] <= hi + 1e-9)
    assert_valid_video(out / "robot.mp4")
    assert_valid_video(out / "human.mp4")
    # time-correct previews: as long as the motion (its done status), within one frame
    import json

    done = next(s for s in json.loads((out / "status.json").read_text()) if s["state"] == "done")
    human, side = _frames(out / "human.mp4"), _frames(out / "side_by_side.mp4")
    assert abs(len(human) / 20.0 - (done["duration_s"] + 1 / 20.0)) <= 1 / 20.0 + 1e-9, (len(human), done)
    assert abs(done["duration_s"] - 3.0) < 0.2
    assert side.shape[0] == human.shape[0] and side.shape[2] == 2 * human.shape[2]
    assert_valid_video(out / "side_by_side.mp4")
