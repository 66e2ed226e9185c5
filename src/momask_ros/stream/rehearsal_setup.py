"""The rehearsal momask_node runs under ``physical_checks: rehearse`` (`load_rehearsal`): the tracker
folder it loads and the robot it drives, the margins by which a rehearsed robot counts as fallen sooner
than the live tracker would say, the cut search and settle time, and a copy of the live simulator for
the tracker to drive. `momask_ros.stream.rehearsing` runs it on the stream's spans.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from momask_ros.stream.followed import LiveFollowed
from momask_ros.stream.tracked_loop import TrackedSimulation
from momask_ros.tracker.rehearsal import Rehearsal
from momask_ros.tracker.spec import TrackerError

__all__ = ["RehearsalUnavailable", "load_rehearsal"]


#: A fall's first cut is tried this long before it, each next one as much earlier [s]: playback stays
#: `CUT_LEAD_S` x `CUT_ATTEMPTS` behind the rehearsal, which is also what a fresh motion's start waits for.
CUT_LEAD_S = 0.5
CUT_ATTEMPTS = 4
#: The rehearsed robot "falls" this much sooner than the tracker's own detection would say: its base tilts
#: past `REHEARSAL_MAX_TILT_RAD` or drops below `REHEARSAL_MIN_BASE_HEIGHT_M` (the spec's are 1.0 rad and
#: 0.35 m). A rehearsal is a prediction: a motion that comes close to a fall in it may fall on the robot.
#: At 0.75 rad a watch followed the live dance within 0.04 rad for 1.5 s up to 0.70 rad, where the rehearsed
#: robot recovered and the live one fell (stream seed 7); seeds 1-60 (min height 0.45 m): 57 streams stood
#: at 0.65 rad, 56 at 0.75 rad (docs/benchmarks.md).
#: The height is also above the live simulator's own fall line (`momask_sim`: 0.6 x its 0.793 m standing
#: height, 0.476 m, below which `sim/status` says fallen): at 0.45 m a getup whose rehearsed pelvis dipped to
#: 0.46 m passed, and the live one, at 0.43 m, was a fall (bench_rehearsal stream, seed 27).
REHEARSAL_MAX_TILT_RAD = 0.65
REHEARSAL_MIN_BASE_HEIGHT_M = 0.50
#: Rehearsed time after the robot is back on a standing reference [s]: a G1 off balance after a deep crouch
#: or a cut wobbled for 2-3 s and then fell (bench_rehearsal stream, seed 6); the tracker's default is 1.5.
SETTLE_S = 3.0

class RehearsalUnavailable(ValueError):
    """``physical_checks: rehearse`` cannot run: no usable tracker folder, or a robot the tracker does not
    drive (one line: what and what to do)."""


def load_rehearsal(tracker_dir: str | Path | None, joint_names: Sequence[str], *, robot: str = "") -> Rehearsal:
    """The rehearsal of the tracker in ``tracker_dir`` ('' or None: the download cache) for a robot whose
    joints are ``joint_names`` (any order; the tracker's set). Raises `RehearsalUnavailable`."""
    from momask_ros.tracker import default_tracker_dir, load_spec, load_tracker

    spec = load_spec()  # the robot first: it needs no files and says more than a missing folder
    if sorted(joint_names) != sorted(spec.joint_names):
        raise RehearsalUnavailable(
            f"physical_checks: rehearse works only for robots the tracker drives ({spec.name}: "
            f"{spec.num_joints} joints, {spec.joint_names[0]}, ...); robot {robot or '?'!r} has {len(joint_names)} "
            "other joints: use robot g1, or physical_checks off, warn or reject")
    folder = Path(tracker_dir).expanduser() if tracker_dir else default_tracker_dir()
    try:
        bundle = load_tracker(folder)
        spec = bundle.spec
        strict = dataclasses.replace(spec, fall_max_tilt_rad=min(spec.fall_max_tilt_rad, REHEARSAL_MAX_TILT_RAD),
                                     fall_min_base_height_m=max(spec.fall_min_base_height_m, REHEARSAL_MIN_BASE_HEIGHT_M))
        bundle = dataclasses.replace(bundle, spec=strict)
        rehearsal = Rehearsal(bundle, conditioning=lambda reference: LiveFollowed(reference, bundle),
                              lead_s=CUT_LEAD_S, max_cut_attempts=CUT_ATTEMPTS, settle_s=SETTLE_S)
    except TrackerError as exc:
        raise RehearsalUnavailable(f"physical_checks: rehearse needs the tracker (tracker_dir {str(folder)!r}): "
                                   f"{exc}") from None
    rehearsal.simulation = TrackedSimulation(bundle)  # a copy of the live simulator, not the tracker's own
    return rehearsal
