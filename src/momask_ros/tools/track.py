"""`momask-track`: rehearse a text command offline on a humanoid with its whole-body tracker, in physics.

    momask-track --text "a person walks forward | a person jumps" --seed 3 --robot g1 \\
        --description g1_29dof.xml --tracker ~/.cache/momask_ros/trackers/twist2 --json walk.json --video walk.mp4

The command (the node's syntax: options such as ``length=4s speed=0.8 seed=2``, segments joined by `` | ``)
is generated with MoMask (the packaged demo model by default), retargeted onto the robot, conditioned for
the tracker (blend from and back to standing, lag-free velocities, slowed or clipped where the robot
cannot follow) and tracked in MuJoCo: free base, 1 ms physics, the policy in lock-step at its rate. The
JSON says whether and when the robot fell, how well it tracked, and how fast the loop ran. Exit status 0
whenever it ran (fall or not; a text the model refuses is reported in ``refused``), 2 with one line on
bad input (bad text or option, unknown robot, missing or wrong tracker files, unwritable output).

Clocks in the JSON: ``fall_time_s`` counts from the start of the motion's playback, after the
``blend_in_s`` blend from standing (negative: fell during the blend); ``fall_motion_time_s`` is where in
the generated motion that was (they differ when the motion was slowed, ``time_stretch`` > 1).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("momask-track")

SETTLE_S = 1.5  # simulated after the reference stands still: a late fall still counts
REANCHOR_EVERY_S = 2.0  # path deviation with the reference re-anchored this often (as each new command is)


class TrackUsageError(ValueError):
    """Bad input: printed as one line, exit status 2."""


def _parse(argv: list[str] | None) -> argparse.Namespace:
    from momask_ros.tracker.fetch import default_tracker_dir

    p = argparse.ArgumentParser(prog="momask-track", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--text", required=True, help="command in the node's syntax: '<text> [length=4s] [speed=1] "
                                                 "[seed=N] [| <text> ...]'")
    p.add_argument("--seed", type=int, default=None, help="generation seed (default: a random one, reported)")
    p.add_argument("--robot", default="g1", help="robot profile whose joints the tracker drives (default g1)")
    p.add_argument("--description", default=None, help="the robot's MJCF/URDF for retargeting (G1: your copy of "
                                                        "Unitree's g1_29dof.xml; as momask-generate --robot-description)")
    p.add_argument("--tracker", type=Path, default=None,
                   help=f"tracker folder (checkpoints + robot model; default {default_tracker_dir()}, "
                        "filled by momask-fetch-tracker)")
    p.add_argument("--checkpoint", default=None, help="tracker checkpoint (TWIST2: 20k, the default, or 25k)")
    p.add_argument("--policy-rate", type=float, default=None, help="policy rate [Hz] (TWIST2: 50, the default, or 100)")
    p.add_argument("--json", type=Path, default=None, help="write the report here (else it is printed)")
    p.add_argument("--video", type=Path, default=None,
                   help="render the kinematic reference (left) beside the tracked robot (right) to .mp4/.gif")
    p.add_argument("--bundle", type=Path, default=None, help="MoMask bundle (default: the packaged demo model)")
    p.add_argument("--device", default="cpu", help="where MoMask runs: cpu (default), cuda, auto")
    p.add_argument("--settle", type=float, default=SETTLE_S, help="simulated seconds after the return to standing")
    return p.parse_args(argv)


def _check_args(args: argparse.Namespace) -> None:
    from momask_model.cli.main import UsageError, check_writable
    from momask_model.motion.render import VIDEO_SUFFIXES

    if args.seed is not None and not 0 <= args.seed < 2**31:
        raise TrackUsageError(f"--seed {args.seed}: a seed is an integer from 0 to {2**31 - 1}")
    if not (math.isfinite(args.settle) and args.settle >= 0):
        raise TrackUsageError(f"--settle {args.settle}: must be >= 0")
    if args.bundle is not None and not args.bundle.is_file():
        raise TrackUsageError(f"--bundle {args.bundle}: no such file")
    try:
        if args.json is not None:
            check_writable(args.json, "--json", (".json",))
        if args.video is not None:
            check_writable(args.video, "--video", VIDEO_SUFFIXES)
    except UsageError as exc:
        raise TrackUsageError(str(exc)) from None


def _load_tracking(args: argparse.Namespace):
    """The tracker bundle and the robot, checked against each other (cheap before the model loads)."""
    from momask_ros.robot.model import load_robot
    from momask_ros.robot.profile import ProfileError
    from momask_ros.tracker import Tracker, TrackerError, default_tracker_dir, load_tracker
    from momask_ros.tracker.spec import check_joint_names

    try:
        bundle = load_tracker(args.tracker or default_tracker_dir(), checkpoint=args.checkpoint)
        tracker = Tracker(bundle, policy_rate_hz=args.policy_rate)
    except TrackerError as exc:
        raise TrackUsageError(f"tracker: {exc}") from None
    try:
        robot = load_robot(args.robot, description=args.description or None)
    except (ProfileError, ValueError, OSError) as exc:
        raise TrackUsageError(f"--robot {args.robot}: {exc}") from None
    try:
        check_joint_names(bundle.spec.joint_names, robot.joint_names, f"robot {args.robot}")
    except TrackerError as exc:
        raise TrackUsageError(str(exc)) from None
    return bundle, tracker, robot


def parse_text(text: str, model: Any = None):
    """The command's segments (`momask_ros.stream.commands.parse_sequence_command`), with the model's
    frame rate, token unit and ``then`` rule when a model is given (MoMask's defaults before it loads)."""
    from momask_ros.stream.commands import CommandLimits, CommandRejected, parse_sequence_command

    fps = float(model.config.dataset.fps) if model is not None else 20.0
    unit = int(model.unit_length) if model is not None else 4
    limits = CommandLimits(fps=fps, min_frames=unit, max_frames=int(60 * fps) // unit * unit, unit_frames=unit)
    then = bool(model.then_separates_segments) if model is not None else False
    try:
        return parse_sequence_command(text, limits, then_separates=then)
    except CommandRejected as exc:
        raise TrackUsageError(f"--text: {exc.reason}: {exc}") from None


def speed_warp(joints: np.ndarray, fps: float, marks: list[tuple[int, int]], speeds: list[float]) -> np.ndarray:
    """Human frames (T, 22, 3) played at each segment's speed, resampled to fps (the node's ``speed=``)."""
    if all(s == 1.0 for s in speeds):
        return joints
    frame_speed = np.ones(len(joints))
    for (start, end), speed in zip(marks, speeds):
        frame_speed[start:end] = speed
    times = np.concatenate([[0.0], np.cumsum(1.0 / (fps * frame_speed[:-1]))])
    grid = np.arange(0.0, times[-1] + 1e-9, 1.0 / fps)
    flat = joints.reshape(len(joints), -1)
    return np.stack([np.interp(grid, times, flat[:, k]) for k in range(flat.shape[1])], 1).reshape(
        (len(grid),) + joints.shape[1:])


def generate(model: Any, commands, seed: int) -> tuple[np.ndarray, float]:
    """(T, 22, 3) human joints [m] (Y up) and fps for the command's segments, each at its speed."""
    from momask_model.generation.prompt import Segment

    if len(commands) == 1:
        c = commands[0]
        result = model.generate([c.text], None if c.length_frames is None else [c.length_frames],
                                seed=c.seed if c.seed is not None else seed)
        n = int(np.asarray(result.lengths).reshape(-1)[0])
        marks = [(0, n)]
    else:
        segments = [Segment(c.text, c.length_frames, c.speed, c.seed) for c in commands]
        result = model.generate_sequence_motion(segments, seed=seed)
        n = int(np.asarray(result.lengths).reshape(-1)[0])
        marks = [tuple(m) for m in result.marks] or [(0, n)]
    joints = np.asarray(result.joints)[0, :n].astype(np.float64)
    return speed_warp(joints, float(result.fps), marks, [c.speed for c in commands]), float(result.fps)


def track(bundle, tracker, trajectory, *, settle_s: float = SETTLE_S, simulation=None):
    """A retargeted trajectory conditioned for the tracker and tracked in physics from standing:
    (RolloutResult, ConditionedReference)."""
    from momask_ros.tracker import ConditionedReference, RobotReference, rollout

    reference = ConditionedReference.from_spec(RobotReference.from_trajectory(trajectory, bundle.spec.joint_names),
                                               bundle.spec, bundle.joint_range_rad)
    return rollout(tracker, reference, reference.end_s + settle_s, simulation=simulation), reference


def report_fields(result, reference, motion_s: float) -> dict[str, Any]:
    """The JSON figures of one tracked run (see the module docstring for the clocks)."""
    start = reference.play_start_s
    fell = bool(result.fell)
    return {
        "fell": fell,
        "fall_time_s": round(result.fall_time_s - start, 3) if fell else None,
        "fall_motion_time_s": round(reference.motion_time_s(result.fall_time_s), 3) if fell else None,
        "fall_reason": result.fall_reason,
        "duration_s": round(motion_s, 3),
        "played_s": round(motion_s * reference.time_stretch, 3),
        "blend_in_s": start,
        "simulated_s": round(float(result.times_s[-1]) if result.times_s.size else 0.0, 3),
        "time_stretch": round(reference.time_stretch, 3),
        "slowed": reference.report.slowed,
        "skipped_s": round(reference.report.skipped_s, 3),
        "conditioning": reference.report.summary(),
        "mean_joint_error_rad": round(result.mean_joint_error_rad, 4),
        "base_height_error_m": round(result.base_height_error_m, 4),
        "path_deviation_m": round(result.path_deviation_m, 3),
        "path_deviation_reanchored_m": round(result.reanchored_path_deviation_m(REANCHOR_EVERY_S), 3),
        "final_path_deviation_m": round(result.final_path_deviation_m, 3),
        "realtime_factor": round(result.realtime_factor, 2),
        "policy_ms_per_call": round(result.policy_ms_per_call, 3),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Everything after the argument checks; returns the report (raises TrackUsageError on bad input)."""
    import torch

    from momask_model.generation.bundle import load_bundle
    from momask_model.generation.loading import default_bundle_path
    from momask_model.text.scope import check_text
    from momask_ros.retarget.retargeter import Retargeter
    from momask_ros.tracker import TrackerError

    _check_args(args)
    parse_text(args.text)  # syntax errors before anything loads
    bundle, tracker, robot = _load_tracking(args)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    report: dict[str, Any] = {"text": args.text, "seed": seed, "robot": args.robot, "tracker": str(bundle.directory),
                              "checkpoint": bundle.checkpoint.name, "policy_rate_hz": tracker.policy_rate_hz,
                              "refused": None}
    torch.set_num_threads(1)
    try:
        model = load_bundle(args.bundle or default_bundle_path(), args.device)
    except Exception as exc:  # BundleError, TextEncoderError, a bad device: one line
        raise TrackUsageError(f"model: {str(exc).splitlines()[0]}") from None
    commands = parse_text(args.text, model)
    report["segments"] = [asdict(c) for c in commands]
    refusals = [r for r in (check_text(model, c.text) for c in commands) if r is not None]
    if refusals:
        report.update(refused=f"{refusals[0].reason}: {refusals[0].message}", fell=False, fall_time_s=None)
        return report
    t0 = time.perf_counter()
    joints, fps = generate(model, commands, seed)
    t1 = time.perf_counter()
    trajectory = Retargeter(robot).retarget(joints, fps=fps)
    t2 = time.perf_counter()
    try:
        result, reference = track(bundle, tracker, trajectory, settle_s=args.settle)
    except TrackerError as exc:  # nothing of the motion is within the robot's ability: not played
        report.update(refused=f"beyond_robot: {exc}", fell=False, fall_time_s=None,
                      duration_s=round(trajectory.duration_s, 3))
        return report
    report.update(report_fields(result, reference, trajectory.duration_s))
    report.update(generation_s=round(t1 - t0, 3), retarget_s=round(t2 - t1, 3))
    if args.video is not None:
        from momask_ros.tracker.video import save_tracking_video

        save_tracking_video(bundle, result, args.video)
        report["video"] = str(args.video)
    return report


def main(argv: list[str] | None = None) -> int:
    """Console script `momask-track` (see the module docstring)."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = _parse(argv)
    try:
        report = run(args)
    except TrackUsageError as exc:
        print(f"momask-track: error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=1)
    if args.json is not None:
        args.json.write_text(text + "\n")
        status = "refused: " + report["refused"] if report["refused"] else (
            f"fell at {report['fall_time_s']:.2f} s" if report["fell"] else "no fall")
        print(f"momask-track: {status}; wrote {args.json}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
