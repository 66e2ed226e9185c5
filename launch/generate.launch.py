"""Start momask_node: ``ros2 launch momask_ros generate.launch.py [config:=...] [robot:=h1] [device:=cuda]``.

Arguments override the matching entries of the YAML file (launch_ros applies parameter files first
and the dictionary after, so ``robot:=h1`` wins over ``robot: default`` in the file). Empty ``robot``
and ``device`` keep the file's values.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _node(context, *args, **kwargs):
    """Build the node once the arguments are known (empty robot/device mean: keep the YAML value)."""
    overrides = {"use_sim_time": LaunchConfiguration("use_sim_time").perform(context).lower() in ("true", "1")}
    for name in ("robot", "device"):
        value = LaunchConfiguration(name).perform(context)
        if value:
            overrides[name] = value
    return [
        Node(
            package="momask_ros",
            executable="momask_node",
            name="momask_node",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("config").perform(context), overrides],
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description() -> LaunchDescription:
    default_config = os.path.join(get_package_share_directory("momask_ros"), "config", "momask.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=default_config,
                              description="parameter file in the momask_node: ros__parameters: layout "
                                          "(momask.yaml, isaac_sim.yaml, gazebo.yaml or your own)"),
        DeclareLaunchArgument("robot", default_value="",
                              description="robot profile (default, h1, g1 or a profile YAML path); "
                                          "empty keeps the config file's value"),
        DeclareLaunchArgument("device", default_value="",
                              description="auto, cpu, cuda or cuda:N; empty keeps the config file's value"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="stamp and time everything from /clock (Gazebo, Isaac Sim)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="ROS namespace of the node (and of its relative topic names)"),
        OpaqueFunction(function=_node),
    ])
