"""Start momask_node: ``ros2 launch momask_ros generate.launch.py [config:=isaac_sim.yaml] [robot:=h1] ...``.

Every argument but ``config`` and ``namespace`` overrides the matching entry of the parameter file, and
only when given: an empty argument (the default) keeps the file's value, so ``config:=isaac_sim.yaml``
keeps that file's ``use_sim_time: true``. launch_ros applies the file first and the dictionary after.

``config`` is a parameter file path, or the bare name of one shipped in ``share/momask_ros/config``
(``isaac_sim.yaml``, ``isaac_sim``); a file that does not exist, or has no ``momask_node`` entry,
stops the launch with an error. Its ``momask_node`` entry applies under any ``namespace``. A node
that exits with an error (missing robot description, no CUDA, a bad parameter) ends the whole launch
with a non-zero exit status instead of leaving it running without its node.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

#: launch argument -> node parameter, each passed only when not empty.
OVERRIDES = {
    "robot": "robot",
    "robot_description_path": "robot_description_path",
    "device": "device",
    "use_sim_time": "use_sim_time",
    "record": "record",
}
BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


class LaunchArgumentError(ValueError):
    """A launch argument has a value the node cannot run with (the message names it)."""


def resolve_config(value: str, config_dir: str) -> str:
    """A parameter file path, or a bare name (with or without ``.yaml``) of a file in ``config_dir``."""
    candidates = [value]
    if os.sep not in value and not os.path.isabs(value):
        candidates = [os.path.join(config_dir, value), os.path.join(config_dir, value + ".yaml"), value]
    for path in candidates:
        if os.path.isfile(path):
            return os.path.abspath(path)
    shipped = sorted(f for f in os.listdir(config_dir) if f.endswith(".yaml")) if os.path.isdir(config_dir) else []
    raise LaunchArgumentError(f"config:={value}: no such parameter file (shipped in {config_dir}: "
                              f"{', '.join(shipped) or 'none'}; or give a path)")


def config_parameters(path: str, namespace: str, name: str = "momask_node") -> dict:
    """The parameters a file gives this node, whatever its namespace.

    rcl matches a file's ``momask_node:`` only to a node without namespace, so under ``namespace:=ns`` a
    file passed as it is would be ignored without a word. The entries for this node (``momask_node``,
    ``/ns/momask_node`` or ``/**``) are read here and handed to launch_ros as one dictionary, which it
    writes under the node's full name. A file with none of them is an error, not a silent no-op.
    """
    import yaml

    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise LaunchArgumentError(f"config:={path}: not valid YAML: {exc}".replace("\n", " ")) from None
    ns = namespace.strip("/")
    names = {"/**", "**", name, "/" + name, f"/{ns}/{name}" if ns else "/" + name, f"{ns}/{name}" if ns else name}
    params, found = {}, False
    for key, value in (data.items() if isinstance(data, dict) else []):
        if str(key) in names and isinstance(value, dict) and isinstance(value.get("ros__parameters"), dict):
            params.update(value["ros__parameters"])
            found = True
    if not found:
        raise LaunchArgumentError(f"config:={path}: expected 'momask_node: ros__parameters: ...' (see momask.yaml)")
    return params


def parameter_overrides(arguments: dict) -> dict:
    """The node parameters set by non-empty launch arguments (``use_sim_time`` parsed as a boolean)."""
    out = {}
    for argument, parameter in OVERRIDES.items():
        value = str(arguments.get(argument, "")).strip()
        if not value:
            continue
        if argument == "use_sim_time":
            if value.lower() not in BOOLEANS:
                raise LaunchArgumentError(f"use_sim_time:={value}: must be true or false (or empty: the file's value)")
            out[parameter] = BOOLEANS[value.lower()]
        else:
            out[parameter] = value
    return out


def _fail_if_node_failed(event, context):
    """End the launch with an error when momask_node exits non-zero (unless the launch is stopping)."""
    if event.returncode != 0 and not context.is_shutdown:
        raise RuntimeError(f"momask_node exited with code {event.returncode} (its [FATAL] line above says why)")


def _node(context, *args, **kwargs):
    """Build the node once the arguments are known."""
    config_dir = os.path.join(get_package_share_directory("momask_ros"), "config")
    arguments = {name: LaunchConfiguration(name).perform(context) for name in OVERRIDES}
    namespace = LaunchConfiguration("namespace").perform(context)
    config = resolve_config(LaunchConfiguration("config").perform(context), config_dir)
    node = Node(
        package="momask_ros",
        executable="momask_node",
        name="momask_node",
        namespace=namespace,
        parameters=[config_parameters(config, namespace), parameter_overrides(arguments)],
        output="screen",
        emulate_tty=True,
    )
    return [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=_fail_if_node_failed))]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value="momask.yaml",
                              description="parameter file in the momask_node: ros__parameters: layout: a path, "
                                          "or the name of a shipped one (momask.yaml, isaac_sim.yaml, gazebo.yaml)"),
        DeclareLaunchArgument("robot", default_value="",
                              description="robot profile: default, h1, g1, menagerie:<name> (needs the "
                                          "mujoco-menagerie package) or a profile YAML path; empty keeps the file's"),
        DeclareLaunchArgument("robot_description_path", default_value="",
                              description="MJCF or URDF of the robot (e.g. your copy of Unitree's h1.xml), "
                                          "overriding the profile's; empty keeps the file's"),
        DeclareLaunchArgument("device", default_value="",
                              description="auto, cpu, cuda or cuda:N; empty keeps the file's value"),
        DeclareLaunchArgument("use_sim_time", default_value="",
                              description="true: stamp and time everything from /clock (Gazebo, Isaac Sim); "
                                          "empty keeps the file's value"),
        DeclareLaunchArgument("record", default_value="",
                              description="folder: write each played motion there as an MCAP bag; "
                                          "empty keeps the file's value (off by default)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="ROS namespace of the node (and of its relative topic names)"),
        OpaqueFunction(function=_node),
    ])
