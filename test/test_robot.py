"""Robot profiles: packaged robots load, profiles are validated against the model at load time."""
from pathlib import Path

import numpy as np
import pytest
import yaml

from momask_ros.robot.model import load_robot, packaged_profile_path
from momask_ros.robot.profile import ProfileError, RobotProfile

H1 = "robots/unitree_h1/h1.xml"
G1 = "robots/unitree_g1/g1_29dof.xml"


def _write_profile(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(packaged_profile_path("default").read_text())
    data["description"] = str(packaged_profile_path("default").parent / "humanoid.xml")
    edit(data)
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_default_robot_loads_with_nothing_else():
    robot = load_robot("default")
    assert len(robot.joint_names) == 19
    assert robot.position_limits.shape == (19, 2)
    assert np.all(robot.position_limits[:, 0] < robot.position_limits[:, 1])
    assert np.all(robot.velocity_limits > 0)
    data = robot.forward(robot.rest_qpos)
    assert robot.lowest_foot_z(data) == pytest.approx(0.0, abs=1e-9)  # rest pose stands on the floor


def test_h1_and_g1_joint_names_match_the_official_descriptions(shared_data):
    h1 = load_robot("h1", description=shared_data / H1)
    g1 = load_robot("g1", description=shared_data / G1)
    assert len(h1.joint_names) == 19 and "not_use_joint" not in h1.joint_names
    assert len(g1.joint_names) == 29
    assert g1.joint_names[:2] == ("left_hip_pitch_joint", "left_hip_roll_joint")  # Unitree SDK order
    assert h1.frozen_dofs, "H1's not_use_joint must be frozen, not driven"
    h1_file_range = dict(zip(h1.joint_names, h1.position_limits.tolist()))
    assert h1_file_range["left_knee_joint"] == [-0.26, 2.05]


def test_h1_without_a_description_names_the_override(monkeypatch):
    monkeypatch.delenv("MOMASK_ROS_H1_DESCRIPTION", raising=False)
    with pytest.raises(ProfileError, match="MOMASK_ROS_H1_DESCRIPTION"):
        load_robot("h1")


def test_description_env_var_is_used(monkeypatch, shared_data):
    monkeypatch.setenv("MOMASK_ROS_G1_DESCRIPTION", str(shared_data / G1))
    assert len(load_robot("g1").joint_names) == 29


def test_unknown_body_is_named(tmp_path):
    path = _write_profile(tmp_path, lambda d: d["keypoints"][3].update(body="no_such_knee"))
    with pytest.raises(ProfileError, match="no_such_knee"):
        load_robot(path)


def test_unknown_joint_is_named(tmp_path):
    path = _write_profile(tmp_path, lambda d: d["driven_joints"].append("tail_joint"))
    with pytest.raises(ProfileError, match="tail_joint"):
        load_robot(path)


def test_unknown_human_joint_and_frame_are_named(tmp_path):
    path = _write_profile(tmp_path, lambda d: d["keypoints"][0].update(human="tail"))
    with pytest.raises(ProfileError, match="tail"):
        load_robot(path)
    path = _write_profile(tmp_path, lambda d: d["keypoints"][0].update(orientation="belly"))
    with pytest.raises(ProfileError, match="belly"):
        load_robot(path)


def test_missing_description_file_is_named(tmp_path):
    path = _write_profile(tmp_path, lambda d: d.update(description="missing/robot.xml"))
    with pytest.raises(ProfileError, match="missing/robot.xml"):
        load_robot(path)


def test_unknown_key_and_limit_override_on_undriven_joint_fail(tmp_path):
    path = _write_profile(tmp_path, lambda d: d.update(colour="red"))
    with pytest.raises(ProfileError, match="colour"):
        load_robot(path)
    path = _write_profile(tmp_path, lambda d: d["limits"]["velocity"].update(elbow_joint=3.0))
    with pytest.raises(ProfileError, match="elbow_joint"):
        load_robot(path)


def test_position_limit_override_narrows_the_model(tmp_path):
    path = _write_profile(tmp_path, lambda d: d["limits"].update(position={"torso_joint": [-0.5, 0.25]}))
    robot = load_robot(path)
    i = robot.joint_names.index("torso_joint")
    assert robot.position_limits[i].tolist() == [-0.5, 0.25]
    assert robot.model.jnt_range[robot.joint_ids[i]].tolist() == [-0.5, 0.25]  # the IK sees it too


def test_unknown_robot_name():
    with pytest.raises(ProfileError, match="atlas"):
        load_robot("atlas")


def test_profile_from_dict_requires_pelvis_keypoint():
    data = yaml.safe_load(packaged_profile_path("default").read_text())
    data["keypoints"] = [k for k in data["keypoints"] if k["human"] != "pelvis"]
    with pytest.raises(ProfileError, match="pelvis"):
        RobotProfile.from_dict(data)


# --------------------------------------------------------------------------- MuJoCo Menagerie
class _StandInMenagerie:
    """Stands in for the optional `mujoco_menagerie` package (its get(name).xml(entry) API), no download."""

    def __init__(self, files: dict, error: Exception | None = None) -> None:
        self.files, self.error, self.calls = files, error, []

    def get(self, name):
        if name not in self.files:
            raise LookupError(f"Unknown robot {name!r}.")
        menagerie = self

        class Model:
            default_model = "g1"

            @staticmethod
            def xml(entry):
                menagerie.calls.append((name, entry))
                if menagerie.error is not None:
                    raise menagerie.error
                if entry not in menagerie.files[name]:
                    raise LookupError(f"{name!r} has no entry point {entry!r}")
                return menagerie.files[name][entry]

        return Model()


def test_menagerie_name_loads_the_fitted_profile_with_menageries_file(monkeypatch, shared_data):
    import sys

    stand_in = _StandInMenagerie({"unitree_g1": {"g1": str(shared_data / G1), "g1_mjx": str(shared_data / G1)}})
    monkeypatch.setitem(sys.modules, "mujoco_menagerie", stand_in)
    robot = load_robot("menagerie:unitree_g1")
    assert robot.profile.name == "unitree_g1_29dof" and len(robot.joint_names) == 29
    assert robot.description_path == shared_data / G1 and stand_in.calls == [("unitree_g1", "g1")]
    load_robot("g1", description="menagerie:unitree_g1/g1_mjx")  # any profile, any entry point
    assert stand_in.calls[-1] == ("unitree_g1", "g1_mjx")
    with pytest.raises(ProfileError, match="no entry point 'nope'"):
        load_robot("menagerie:unitree_g1/nope")
    with pytest.raises(ProfileError, match="no packaged profile fits Menagerie's 'booster_t1'"):
        load_robot("menagerie:booster_t1")


def test_menagerie_errors_are_one_line(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "mujoco_menagerie", None)  # not installed: import fails
    with pytest.raises(ProfileError, match=r"pip install mujoco-menagerie.*robot_description_path") as info:
        load_robot("menagerie:unitree_g1")
    assert "\n" not in str(info.value)
    offline = _StandInMenagerie({"unitree_g1": {}}, error=OSError("Network is unreachable"))
    monkeypatch.setitem(sys.modules, "mujoco_menagerie", offline)
    with pytest.raises(ProfileError, match=r"cannot fetch Menagerie model 'unitree_g1'.*offline.*unreachable"):
        load_robot("menagerie:unitree_g1")
    path = _write_profile(tmp_path, lambda d: d.update(description="menagerie:unitree_g2"))
    with pytest.raises(ProfileError, match="menagerie:unitree_g2: Unknown robot"):
        load_robot(path)


def test_missing_description_names_the_parameter_fix(monkeypatch):
    from momask_ros.robot.profile import DescriptionNotFound

    monkeypatch.delenv("MOMASK_ROS_G1_DESCRIPTION", raising=False)
    with pytest.raises(DescriptionNotFound, match="robot_description_path:=/path/to/g1_29dof.xml.*menagerie:unitree_g1"):
        load_robot("g1")


def test_human_joint_names_are_the_model_skeletons():
    """The profile side keeps its own copy of the joint names (no torch import); it must not drift."""
    from momask_model.motion.skeleton import JOINT_NAMES
    from momask_ros.robot.profile import HUMAN_JOINT_NAMES

    assert HUMAN_JOINT_NAMES == JOINT_NAMES


def _actuated_joints(description: Path) -> list[str]:
    """The joints of a description's <actuator> entries, in file order (Unitree's SDK motor order)."""
    import mujoco

    model = mujoco.MjModel.from_xml_path(str(description))
    return [model.joint(model.actuator_trnid[a, 0]).name for a in range(model.nu)]


@pytest.mark.parametrize("name, description", [("h1", H1), ("g1", G1)])
def test_unitree_output_order_is_the_descriptions_actuator_order(shared_data, name, description):
    robot = load_robot(name, description=shared_data / description)
    motors = _actuated_joints(shared_data / description)
    # every driven joint in motor order; H1's motor 9 (not_use_joint, a placeholder body) is the only one left out
    assert list(robot.joint_names) == [j for j in motors if j in robot.joint_names]
    assert set(motors) - set(robot.joint_names) == ({"not_use_joint"} if name == "h1" else set())
    if name == "h1":
        assert robot.joint_names[:3] == ("right_hip_roll_joint", "right_hip_pitch_joint", "right_knee_joint")


def test_each_packaged_profile_says_which_output_order_it_uses():
    for name in ("default", "h1", "g1"):
        head = packaged_profile_path(name).read_text().split("driven_joints:")[0]
        assert "Output order:" in head, name
