"""Retargeting: human joints (HumanML3D, 20 fps) -> a robot joint trajectory within limits and free of
self-collision (mink IK per frame, smoothing, a C2 spline to the control rate), streamed chunk by chunk."""
from momask_ros.retarget.retargeter import Retargeter, RetargetStream
from momask_ros.retarget.trajectory import RobotTrajectory

__all__ = ["RetargetStream", "Retargeter", "RobotTrajectory"]
