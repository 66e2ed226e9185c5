"""Robots as data: a MuJoCo-loadable description plus a YAML profile (joints, keypoints, limits), its optional
self-collision and simulator sections, and the actuation (effort limits, PD gains) derived from them.
The shipped profiles are in ``profiles/``; a new humanoid needs a profile, not code."""
from momask_ros.robot.model import Robot, load_robot
from momask_ros.robot.profile import DescriptionNotFound, ProfileError, RobotProfile

__all__ = ["DescriptionNotFound", "ProfileError", "Robot", "RobotProfile", "load_robot"]
