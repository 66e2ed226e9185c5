"""The node's parameters: name, default, description, whether it may change at run time, and the
check of its value. No ROS here, so the table and its validation are tested without a graph; the
node declares every entry (`momask_ros.ros.node`) and runs `coerce` on each value it receives.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from momask_ros.stream.topics import DEFAULT_TOPICS

__all__ = ["PARAMETERS", "Param", "ParameterError", "coerce"]


class ParameterError(ValueError):
    """A node parameter has an invalid value (the message names it and the accepted values)."""


@dataclass(frozen=True)
class Param:
    """One parameter: default (its type is the type the value must have), description, and check."""

    default: Any
    description: str
    read_only: bool = True
    check: Callable[[Any], str | None] = lambda v: None  # returns an error text or None
    off_is_false: bool = False  # YAML 1.1 (ROS's -p and parameter files) reads a bare off as false


def _positive(v: Any) -> str | None:
    return None if isinstance(v, (int, float)) and math.isfinite(v) and v > 0 else "must be a finite number > 0"


def _non_negative(v: Any) -> str | None:
    return None if isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 else "must be a finite number >= 0"


def _bundle_or_non_negative(v: Any) -> str | None:
    """Sampling settings: -1 keeps the bundle's own (each model is trained for its guidance), else >= 0."""
    return None if v == -1 else _non_negative(v)


def _one_of(*options: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in options else f"must be one of {', '.join(options)}"


def _int_at_least(lo: int) -> Callable[[Any], str | None]:
    return lambda v: None if isinstance(v, int) and not isinstance(v, bool) and v >= lo else f"must be an integer >= {lo}"


def _device(v: Any) -> str | None:
    from momask_model.generation.loading import device_problem  # the one device syntax (no torch import)

    return device_problem(v)


def _string(v: Any) -> str | None:
    return None if isinstance(v, str) else "must be a string"


def _topic(optional: bool) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if not isinstance(v, str):
            return "must be a string"
        if v == "" and optional:
            return None
        if v == "" or any(c.isspace() for c in v):
            return "must be a non-empty topic name without spaces" + (" ('' disables it)" if optional else "")
        return None

    return check


PARAMETERS: dict[str, Param] = {
    "bundle_path": Param("", "MoMask bundle (.pt); empty = the packaged demo bundle momask_model/assets/demo_bundle.pt"),
    "device": Param("auto", "where the model runs: auto (CUDA if present), cpu, cuda, cuda:N", check=_device),
    "robot": Param("default", "robot profile name (momask_ros/robots) or path to a profile YAML",
                    check=lambda v: None if isinstance(v, str) and v else "must be a non-empty string"),
    "robot_description_path": Param("", "MJCF or URDF file of the robot, for any profile (e.g. your copy of "
                                         "Unitree's h1.xml); '' = the profile's own", check=_string),
    "record": Param("", "folder: write each played motion there as an MCAP bag (ROS 2 profile); '' = off",
                     check=_string),
    "control_rate": Param(50.0, "JointState publishing rate [Hz]",
                           check=lambda v: _positive(v) or (None if v <= 1000 else "must be <= 1000 Hz")),
    "joint_state_topic": Param(DEFAULT_TOPICS["joint_state_topic"], "JointState stream (robot_state_publisher reads joint_states)",
                                check=_topic(False)),
    "joint_command_topic": Param("", "second JointState stream, e.g. /joint_command for Isaac Sim; '' = off",
                                  check=_topic(True)),
    "trajectory_topic": Param(DEFAULT_TOPICS["trajectory_topic"],
                               "whole motion as JointTrajectory (ros2_control); '' = off", check=_topic(True)),
    "base_pose_topic": Param(DEFAULT_TOPICS["base_pose_topic"], "floating-base pose as PoseStamped; '' = off", check=_topic(True)),
    "base_twist_topic": Param(DEFAULT_TOPICS["base_twist_topic"], "floating-base twist as TwistStamped (world-frame "
                               "linear and angular velocity of the reference, the JointState's stamp); '' = off",
                               check=_topic(True)),
    "markers_topic": Param(DEFAULT_TOPICS["markers_topic"], "human skeleton MarkerArray for RViz; '' = off",
                            check=_topic(True)),
    "command_topic": Param(DEFAULT_TOPICS["command_topic"], "text commands (std_msgs/String)", check=_topic(False)),
    "stop_topic": Param(DEFAULT_TOPICS["stop_topic"], "stop (std_msgs/Empty): blend into a hold of the current pose",
                         check=_topic(False)),
    "status_topic": Param(DEFAULT_TOPICS["status_topic"], "status JSON (std_msgs/String)", check=_topic(False)),
    "frame_id": Param("odom", "frame of the base pose and the skeleton markers",
                       check=lambda v: None if isinstance(v, str) and v else "must be a non-empty string"),
    "marker_rate": Param(10.0, "skeleton marker rate [Hz]; 0 = off", read_only=False, check=_non_negative),
    "publish_when_idle": Param(True, "keep publishing the held pose when no motion plays", read_only=False),
    "cond_scale": Param(-1.0, "classifier-free guidance scale of the masked transformer; -1 = the bundle's own",
                         read_only=False, check=_bundle_or_non_negative),
    "res_cond_scale": Param(-1.0, "classifier-free guidance scale of the residual transformer; -1 = the bundle's own",
                             read_only=False, check=_bundle_or_non_negative),
    "timesteps": Param(-1, "masked decoding iterations; -1 = the bundle's own", read_only=False,
                        check=lambda v: None if v == -1 else _int_at_least(1)(v)),
    "temperature": Param(1.0, "sampling temperature", read_only=False, check=_positive),
    "length_s": Param(0.0, "motion length when a command gives none [s]; 0 = the model's length estimator",
                       read_only=False, check=_non_negative),
    "seed": Param(-1, "generation seed; -1 = a new seed per command", read_only=False, check=_int_at_least(-1)),
    "idle_behavior": Param("hold", "after a motion: hold the last pose, or rest (blend to the rest pose)",
                            read_only=False, check=_one_of("hold", "rest")),
    "queue_mode": Param("preempt", "a new command preempts the current motion, or queue it", read_only=False,
                         check=_one_of("preempt", "queue")),
    "max_queue": Param(4, "commands waiting in queue mode (older ones beyond it are rejected)", read_only=False,
                        check=_int_at_least(1)),
    "blend_s": Param(0.5, "blend from the current pose into a motion that starts afresh [s]", read_only=False,
                      check=_non_negative),
    "switch_mode": Param("continue", "continue: a new motion continues the playing one without a blend; "
                          "blend: it starts afresh and blends in over blend_s", read_only=False,
                          check=_one_of("continue", "blend")),
    "stop_blend_s": Param(0.15, "deceleration time of a stop [s]", read_only=False, check=_non_negative),
    "rest_blend_s": Param(1.5, "return-to-rest duration when idle_behavior=rest [s]", read_only=False,
                           check=_non_negative),
    "max_command_chars": Param(300, "longest accepted command text [characters]", read_only=False,
                                check=_int_at_least(1)),
    "command_rate": Param(2.0, "sustained command rate [Hz]; faster commands coalesce to the newest",
                           read_only=False, check=_positive),
    "command_burst": Param(3, "commands accepted back to back before coalescing", read_only=False,
                            check=_int_at_least(1)),
    "chunk_frames": Param(20, "frames retargeted per chunk (smaller = earlier first JointState)",
                           check=_int_at_least(2)),
    "warm_up": Param(True, "run one short generation at start so the first command is fast"),
    "physical_checks": Param("warn", "physical checks of each motion (momask_ros.physics.checks): off; warn = "
                              "summary in the status; reject = check before playing, refuse motions over the "
                              "thresholds below; rehearse = run each motion through the whole-body tracker in "
                              "physics first (tracker_dir; robots the tracker drives: G1), refuse it or cut it "
                              "before a predicted fall", read_only=False,
                              check=_one_of("off", "warn", "reject", "rehearse"), off_is_false=True),
    "tracker_dir": Param("", "rehearse: whole-body tracker folder (as momask-fetch-tracker writes it); '' = the "
                          "download cache (momask_ros.tracker.fetch.default_tracker_dir)", check=_string),
    "measured_joint_state_topic": Param("", "rehearse: the robot's measured JointState (a simulator's joint_states), "
                                         "so rehearsals start from its state; '' = from standing", check=_topic(True)),
    "measured_imu_topic": Param("", "rehearse: the robot's base Imu (orientation, gyro); '' = none", check=_topic(True)),
    "measured_base_pose_topic": Param("", "rehearse: the robot's measured base PoseStamped (a simulator's "
                                       "sim/base_pose); '' = none", check=_topic(True)),
    "measured_tracker_memory_topic": Param("", "rehearse: the robot's tracker's memory (momask_tracker's "
                                            "tracker/memory), so rehearsals from the measured state continue as "
                                            "that tracker would, and a playing motion is re-rehearsed from the "
                                            "robot as it goes; '' = none", check=_topic(True)),
    "physical_max_torque_ratio": Param(1.0, "reject above this peak |torque| / effort limit", read_only=False,
                                        check=_positive),
    "physical_min_zmp_inside": Param(0.8, "reject when the ZMP is inside the support polygon in fewer supported "
                                      "samples than this fraction", read_only=False, check=_non_negative),
    "physical_max_zmp_outside_m": Param(0.1, "reject when the ZMP ever goes further outside the support "
                                         "polygon [m]", read_only=False, check=_non_negative),
    "physical_max_self_penetration_m": Param(0.01, "reject above this self-penetration depth [m]",
                                              read_only=False, check=_non_negative),
}


def coerce(name: str, value: Any) -> Any:
    """YAML writes 50 for 50.0: accept ints for float parameters, then run the parameter's check."""
    spec = PARAMETERS[name]
    if spec.off_is_false and value is False:
        value = "off"
    if isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not type(spec.default):
        raise ParameterError(f"parameter {name}={value!r} must be a {type(spec.default).__name__}")
    problem = spec.check(value)
    if problem:
        raise ParameterError(f"parameter {name}={value!r} {problem}")
    return value
