"""Whole-body tracker between a reference motion and the robot (TWIST2 on the G1 first).

No ROS here: a spec (data) and a checked folder of files, the observation the policy expects, reference
conditioning (of a whole motion, and of a live stream), a clock-injected controller, an offline MuJoCo
closed loop, the rehearsal that keeps falling motions off the robot, and the downloader."""
from .controller import MeasuredState, PdCommand, Tracker, TrackerMemory, TrackerState
from .fetch import default_tracker_dir, fetch_tracker
from .live_reference import LiveReference, LiveReport
from .observation import ObservationBuilder, mimic_vector
from .policy import OnnxPolicy, pd_target_rad
from .reference import (ConditionedReference, ConditioningReport, ReferenceSample, RobotReference,
                        reorder_joints, smootherstep)
from .rehearsal import CutPlan, Rehearsal, RehearsalResult, rehearsal_decision
from .rollout import RobotState, RolloutResult, TrackerSimulation, rollout
from .spec import (CheckpointFile, TrackerBundle, TrackerError, TrackerSource, TrackerSpec, check_reference_joints,
                   load_spec, load_tracker, sha256_file)
from .synthetic import standing_reference, synthetic_walk

__all__ = [
    "CheckpointFile", "ConditionedReference", "ConditioningReport", "CutPlan", "LiveReference", "LiveReport",
    "MeasuredState", "ObservationBuilder",
    "OnnxPolicy", "PdCommand", "ReferenceSample", "Rehearsal", "RehearsalResult", "RobotReference", "RobotState",
    "RolloutResult", "Tracker", "TrackerBundle", "TrackerError", "TrackerMemory", "TrackerSimulation",
    "TrackerSource", "TrackerSpec", "TrackerState", "check_reference_joints", "rehearsal_decision",
    "default_tracker_dir", "fetch_tracker", "load_spec", "load_tracker", "mimic_vector", "pd_target_rad",
    "reorder_joints", "rollout", "sha256_file", "smootherstep", "standing_reference", "synthetic_walk",
]
