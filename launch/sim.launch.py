"""MuJoCo simulation: ``ros2 launch momask_ros sim.launch.py [robot:=g1 description:=PATH] [mode:=free]``.

Starts `momask_sim` (physics, /clock, measured /joint_states) and `momask_node` (text -> motion, streamed
into the simulator on /joint_command, base pose on base_pose), both from ``config/mujoco_sim.yaml`` and on
simulated time. Arguments override the file; empty ones keep its values. ``simulator_only:=true`` starts
the simulator alone (drive it with your own /joint_command or JointTrajectory).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _nodes(context, *args, **kwargs):
    config = LaunchConfiguration("config").perform(context)
    sim_overrides, node_overrides = {}, {"use_sim_time": True}
    for name in ("robot", "description", "mode", "record_path"):
        value = LaunchConfiguration(name).perform(context)
        if value:
            sim_overrides[name] = value
    for name in ("robot", "device"):
        value = LaunchConfiguration(name).perform(context)
        if value:
            node_overrides[name] = value
    nodes = [Node(package="momask_ros", executable="momask_sim", name="momask_sim",
                  parameters=[config, sim_overrides], output="screen", emulate_tty=True)]
    if LaunchConfiguration("simulator_only").perform(context).lower() not in ("true", "1"):
        if sim_overrides.get("description"):
            node_overrides["robot_description_path"] = sim_overrides["description"]  # the same file for both
        nodes.append(Node(package="momask_ros", executable="momask_node", name="momask_node",
                          parameters=[config, node_overrides], output="screen", emulate_tty=True))
    return nodes


def generate_launch_description() -> LaunchDescription:
    default_config = os.path.join(get_package_share_directory("momask_ros"), "config", "mujoco_sim.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=default_config,
                              description="parameter file with momask_sim: and momask_node: sections"),
        DeclareLaunchArgument("robot", default_value="", description="default, h1, g1 or a profile YAML (both nodes)"),
        DeclareLaunchArgument("description", default_value="", description="MJCF/URDF for h1/g1 (not shipped)"),
        DeclareLaunchArgument("mode", default_value="", description="fixed, harness or free"),
        DeclareLaunchArgument("device", default_value="", description="momask_node device: auto, cpu, cuda[:N]"),
        DeclareLaunchArgument("record_path", default_value="", description="MP4 of the physics, written on exit"),
        DeclareLaunchArgument("simulator_only", default_value="false", description="start momask_sim alone"),
        OpaqueFunction(function=_nodes),
    ])
