"""MuJoCo simulation: ``ros2 launch momask_ros sim.launch.py [robot:=g1] [tracker:=DIR] [mode:=free] ...``.

Two set-ups, both on simulated time (momask_sim publishes /clock):

* With a whole-body tracker (``robot:=g1``; ``tracker:=DIR``, by default the download cache that
  ``momask-fetch-tracker`` fills): ``momask_node`` generates the reference on ``reference/...``,
  ``momask_tracker`` (TWIST2) answers the robot's state with PD targets, ``momask_sim`` simulates the
  tracker's own G1 (free base, 1 ms physics) driven by them; ``config/mujoco_tracked.yaml``. The G1 walks
  in physics. ``momask_node`` retargets onto ``description:=`` when given, else onto the tracker's G1 model
  (the same kinematics as Unitree's). ``clock:=lock_step`` makes the simulator wait for each answer.
* Without (``tracker:=none``, or another robot): ``momask_node`` streams its set-points into the simulator
  on /joint_command and the base pose on base_pose (harness mode follows it); ``config/mujoco_sim.yaml``.

Arguments override the file; empty ones keep its values. ``simulator_only:=true`` starts the simulator
alone. A node that cannot start (its [FATAL] line says why) ends the launch with a non-zero status.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

OFF = ("none", "off", "false", "0")
#: the robot each tracker folder is for (the only one so far: TWIST2 on the Unitree G1)
TRACKED_ROBOTS = ("g1",)


class LaunchArgumentError(ValueError):
    """A launch argument the nodes cannot run with (the message names it and what to do)."""


def resolve_tracker(value: str, robot: str) -> str | None:
    """The tracker folder to use, or None: ``auto`` (default) = the download cache for a tracked robot."""
    value = value.strip()
    if value.lower() in OFF:
        return None
    if value.lower() in ("", "auto"):
        if robot not in TRACKED_ROBOTS:
            return None
        from momask_ros.tracker.fetch import default_tracker_dir

        value = str(default_tracker_dir())
    folder = os.path.abspath(os.path.expanduser(value))
    if not os.path.isdir(folder):
        raise LaunchArgumentError(f"tracker:={value}: no tracker folder there; download it with "
                                  f"`momask-fetch-tracker --dest {folder}`, or launch with tracker:=none")
    return folder


def _fail_if_node_failed(event, context):
    """End the launch with an error when a node exits non-zero (unless the launch is stopping)."""
    if event.returncode != 0 and not context.is_shutdown:
        raise RuntimeError(f"{event.action.name} exited with code {event.returncode} (its [FATAL] line above says why)")


def _given(context, *names: str) -> dict:
    return {name: value for name in names if (value := LaunchConfiguration(name).perform(context))}


def _nodes(context, *args, **kwargs):
    share = get_package_share_directory("momask_ros")
    given = _given(context, "robot", "description", "mode", "record_path", "device", "clock", "policy_rate",
                   "checkpoint")
    tracker = resolve_tracker(LaunchConfiguration("tracker").perform(context), given.get("robot", ""))
    config = LaunchConfiguration("config").perform(context) or os.path.join(
        share, "config", "mujoco_tracked.yaml" if tracker else "mujoco_sim.yaml")
    sim = {k: v for k, v in given.items() if k in ("robot", "description", "mode", "record_path", "clock")}
    node = {"use_sim_time": True, **{k: v for k, v in given.items() if k in ("robot", "device")}}
    if tracker:
        sim["tracker"] = tracker
        from momask_ros.tracker import load_spec

        node["robot_description_path"] = given.get("description") or os.path.join(tracker, load_spec().model_file)
        node["tracker_dir"] = tracker  # what physical_checks: rehearse rehearses with
    elif given.get("description"):
        node["robot_description_path"] = given["description"]  # the same file for both
    nodes = [Node(package="momask_ros", executable="momask_sim", name="momask_sim",
                  parameters=[config, sim], output="screen", emulate_tty=True)]
    if tracker:
        tracking = {"tracker": tracker, **{k: v for k, v in given.items() if k in ("robot", "checkpoint")}}
        if "policy_rate" in given:
            tracking["policy_rate"] = float(given["policy_rate"])
        nodes.append(Node(package="momask_ros", executable="momask_tracker", name="momask_tracker",
                          parameters=[config, tracking], output="screen", emulate_tty=True))
    if LaunchConfiguration("simulator_only").perform(context).lower() not in ("true", "1"):
        nodes.append(Node(package="momask_ros", executable="momask_node", name="momask_node",
                          parameters=[config, node], output="screen", emulate_tty=True))
    return nodes + [RegisterEventHandler(OnProcessExit(target_action=n, on_exit=_fail_if_node_failed)) for n in nodes]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value="",
                              description="parameter file with momask_sim:, momask_node: (and momask_tracker:) "
                                          "sections; empty = mujoco_tracked.yaml with a tracker, else mujoco_sim.yaml"),
        DeclareLaunchArgument("robot", default_value="", description="default, h1, g1 or a profile YAML (every node)"),
        DeclareLaunchArgument("tracker", default_value="auto",
                              description="whole-body tracker folder (laid out as momask-fetch-tracker writes it); "
                                          "auto = the download cache for robot:=g1, none = no tracker"),
        DeclareLaunchArgument("description", default_value="",
                              description="MJCF/URDF of the robot for h1/g1 (not shipped); with a tracker, what "
                                          "momask_node retargets onto (default: the tracker's G1 model)"),
        DeclareLaunchArgument("mode", default_value="", description="fixed, harness, free or tracked (the file's)"),
        DeclareLaunchArgument("clock", default_value="",
                              description="real_time or lock_step (tracked: one control period per answer)"),
        DeclareLaunchArgument("policy_rate", default_value="", description="tracker policy rate [Hz]: 50 or 100"),
        DeclareLaunchArgument("checkpoint", default_value="", description="tracker checkpoint key, e.g. 25k"),
        DeclareLaunchArgument("device", default_value="", description="momask_node device: auto, cpu, cuda[:N]"),
        DeclareLaunchArgument("record_path", default_value="", description="MP4 of the physics, written on exit"),
        DeclareLaunchArgument("simulator_only", default_value="false",
                              description="start momask_sim (and the tracker) without momask_node"),
        OpaqueFunction(function=_nodes),
    ])
