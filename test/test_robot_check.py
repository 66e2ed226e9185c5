"""A new profile, checked from the docs' tools alone: warnings that name what is left to defaults,
clear errors for a nested base body, the rest-pose PNG, and a pinned placeholder joint."""
from pathlib import Path

import numpy as np
import pytest
import yaml

from momask_ros.robot.model import load_robot, packaged_profile_path
from momask_ros.robot.profile import ProfileError, RobotProfile
from momask_ros.tools.robot_check import main as robot_check

ROBOTS = Path(__file__).resolve().parents[1] / "src" / "momask_ros" / "robot" / "profiles"


def _profile(tmp_path, edit) -> Path:
    data = yaml.safe_load(packaged_profile_path("default").read_text())
    data["description"] = str(ROBOTS / "humanoid.xml")
    edit(data)
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_left_to_chance_are_named(tmp_path, capsys):
    def edit(d):
        del d["limits"]["velocity_default"]  # the knees and ankles keep their own limits
        d["keypoints"] = [k for k in d["keypoints"] if not k["human"].endswith("wrist")]
        d["rest_pose"]["torso_joint"] = 9.0

    path = _profile(tmp_path, edit)
    png = tmp_path / "rest.png"
    assert robot_check([str(path), "--out", str(png)]) == 0
    out = capsys.readouterr().out
    assert "velocity limit of 15 driven joint(s) defaults to 10 rad/s" in out and "left_hip_yaw_joint" in out
    assert "left_knee_joint," not in out.split("defaults to")[1].split("\n")[0]  # it has its own
    assert "scale.arms is auto but no side has shoulder, elbow, wrist keypoints (missing: left_wrist, right_wrist)" in out
    assert "rest_pose.torso_joint = 9 is outside its range" in out
    assert robot_check([str(path), "--out", str(png), "--strict"]) == 1
    import imageio.v2 as imageio

    image = imageio.imread(png)
    assert image.shape[1] == 2 * image.shape[0]  # front and side views
    green = (image[..., 1].astype(int) - image[..., 0] > 80) & (image[..., 1] > 120)
    assert green.sum() > 50  # the human targets are drawn


def test_shipped_default_profile_has_no_profile_warnings():
    assert load_robot("default").warnings == []


def test_nested_base_body_says_what_is_wrong(tmp_path, capsys):
    path = _profile(tmp_path, lambda d: d.update(base_body="torso_link"))
    with pytest.raises(ProfileError, match="inside body 'pelvis'.*direct child of the world.*'pelvis'"):
        load_robot(path)
    assert robot_check([str(path), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "direct child of the world" in err


def test_placeholder_joint_is_output_at_a_fixed_value(tmp_path):
    """The documented recipe: list the joint in driven_joints, pin it with limits.position."""
    def edit(d):
        d["rest_pose"]["left_elbow_joint"] = 0.5
        d["limits"]["position"] = {"left_elbow_joint": [0.4999, 0.5001]}

    robot = load_robot(_profile(tmp_path, edit))
    from momask_ros.retarget.retargeter import Retargeter
    from momask_ros.tools.robot_check import standing_human

    human = standing_human(40)
    human[:, 20, 1] += 0.3 * np.sin(np.linspace(0, 3, 40))  # the left wrist waves up and down
    traj = Retargeter(robot).retarget(human)
    col = robot.joint_names.index("left_elbow_joint")
    assert np.abs(traj.positions[:, col] - 0.5).max() <= 1e-4 + 1e-9
    assert RobotProfile.from_yaml(_profile(tmp_path, edit)).position_limits["left_elbow_joint"] == (0.4999, 0.5001)
