"""Rehearsal: no motion reaches a robot that would make it fall.

Before (or while) a motion plays, it runs through the tracker in a copy of the simulator, faster than
real time, from the robot's current state. When the rehearsed robot falls, a cut is planned: playback
stops `lead_s` before the detected fall and the reference returns to standing (`ConditionedReference.stop`:
decelerate, then blend to the default pose). The cut is rehearsed too, from a snapshot taken before it,
and moved earlier until the robot stays up; when no cut inside the motion keeps it up, the motion is
refused. A robot still leaning or turning when the rehearsal ends (`Rehearsal.settled`) is rehearsed on
until it settles, and counts as fallen if it does not: it stands, but has not shown that it stays up.
Deterministic: the same motion from the same state gives the same verdict.

Times are on the reference's clock: 0 is where the tracker starts the motion (the blend from standing
begins), as `Tracker.set_reference(reference, start_s)` counts them. `motion_time_s` values are times
in the motion itself (its first sample = 0), where the node's playback is."""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable

import mujoco
import numpy as np

from momask_ros.physics.checks import WindowDecision

from .controller import Tracker, TrackerMemory, TrackerState
from .reference import ConditionedReference, RobotReference
from .rollout import RobotState, TrackerSimulation, decimation, rollout
from .rotations import tilt_from_quat_wxyz
from .spec import TrackerBundle, TrackerError


@dataclass(frozen=True)
class CutPlan:
    """Where to cut a motion that falls in rehearsal: the reference stops at `cut_s` (and plays motion
    time `motion_time_s` there), then returns to standing; `stands_s` is when it stands still."""

    cut_s: float
    motion_time_s: float
    stands_s: float


@dataclass(frozen=True)
class RehearsalResult:
    """The verdict on one motion (see the module docstring for the clocks).

    falls: the motion as given makes the rehearsed robot fall.
    fall_time_s / fall_motion_time_s / fall_reason: the first detected fall (None when it stays up).
    cut: the verified cut plan when it falls and a cut inside the motion keeps the robot up.
    refuse: do not play it: it falls and no verified cut exists, or nothing of it is within the robot
        (`refusal` says which).
    complete: the whole motion and the return to standing were rehearsed (False: `advance` stopped early).
    """

    falls: bool
    fall_time_s: float | None
    fall_motion_time_s: float | None
    fall_reason: str | None
    cut: CutPlan | None
    refuse: bool
    complete: bool
    rehearsed_s: float
    wall_s: float
    time_stretch: float
    conditioning: str
    refusal: str | None = None

    @classmethod
    def beyond_robot(cls, reason: str) -> "RehearsalResult":
        """The verdict on a motion conditioning cannot make playable at all (nothing rehearsed)."""
        return cls(falls=False, fall_time_s=None, fall_motion_time_s=None, fall_reason=None, cut=None, refuse=True,
                   complete=True, rehearsed_s=0.0, wall_s=0.0, time_stretch=1.0, conditioning="",
                   refusal=f"beyond the robot: {reason}")

    @property
    def realtime_factor(self) -> float:
        return self.rehearsed_s / self.wall_s if self.wall_s > 0 else float("inf")

    def status(self) -> dict[str, Any]:
        """JSON-friendly fields for the node's status (`falls_in_rehearsal` with its time)."""
        out: dict[str, Any] = {"falls_in_rehearsal": self.falls, "rehearsed_s": round(self.rehearsed_s, 2),
                               "rehearsal_realtime_factor": round(self.realtime_factor, 1)}
        if self.falls:
            out.update(fall_time_s=round(self.fall_time_s, 2), fall_motion_time_s=round(self.fall_motion_time_s, 2),
                       fall_reason=self.fall_reason)
        if self.refuse:
            out["refused"] = self.refusal
        if self.cut is not None:
            out.update(cut_at_s=round(self.cut.cut_s, 2), cut_motion_time_s=round(self.cut.motion_time_s, 2))
        if self.time_stretch > 1.0:
            out["slowed"] = round(self.time_stretch, 2)
        return out


@dataclass(frozen=True, eq=False)
class _Snapshot:
    t_s: float
    data: Any  # mujoco.MjData copy
    memory: TrackerMemory


class RehearsalRun:
    """One motion's rehearsal in progress: `advance` it ahead of playback, `finish` it for the verdict."""

    def __init__(self, rehearsal: "Rehearsal", reference: ConditionedReference, state: RobotState | None,
                 memory: TrackerMemory | None):
        self._owner = rehearsal
        self._pristine = copy.deepcopy(reference)  # before any stop(): what each cut attempt starts from
        self.reference = reference
        self._wall_s = 0.0
        sim, tracker = rehearsal.simulation, rehearsal.tracker
        sim.reset(state)
        tracker.reset()
        if memory is not None:
            tracker.restore_memory(memory)
        reference.reanchor(0.0, sim.base_pos_world, sim.base_quat_wxyz)
        self._pristine.reanchor(0.0, sim.base_pos_world, sim.base_quat_wxyz)
        tracker.set_reference(reference, start_s=0.0)
        self._every = decimation(tracker, sim)
        self._tick = 0
        self._snapshots: list[_Snapshot] = []
        self._fall: tuple[float, str] | None = None
        self._cut: CutPlan | None = None
        self._refuse = False
        self._settled = False  # the end's settling was checked (`_unsettled`)
        #: no cut is planned at or before this time [s of the reference clock] (besides the motion's start):
        #: what plays while the rehearsal runs is out of its reach
        self.earliest_cut_s = -np.inf

    @property
    def end_s(self) -> float:
        """Where the rehearsal of the motion ends: standing still plus the settle time."""
        return self.reference.end_s + self._owner.settle_s

    @property
    def rehearsed_s(self) -> float:
        return self._tick * self._every * self._owner.simulation.dt_s

    def _snapshot(self, t_s: float) -> None:
        self._snapshots.append(_Snapshot(t_s, copy.copy(self._owner.simulation.data), self._owner.tracker.memory()))

    def _run(self, until_s: float, snapshots: bool) -> tuple[float, str] | None:
        """Tick the closed loop until until_s; (time, reason) of a fall, else None."""
        sim, tracker, owner = self._owner.simulation, self._owner.tracker, self._owner
        dt = self._every * sim.dt_s
        while self._tick * dt < until_s - 1e-9:
            t = self._tick * dt
            if snapshots and (not self._snapshots or t - self._snapshots[-1].t_s >= owner.snapshot_every_s - 1e-9):
                self._snapshot(t)
            command = tracker.step(t, sim.measured())
            if tracker.state is TrackerState.FALLEN:
                return tracker.fall_time_s, tracker.fall_reason
            sim.hold(command, self._every)
            self._tick += 1
        return None

    def _restore(self, before_s: float) -> None:
        """Back to the last snapshot at or before before_s (its state, memory and clock)."""
        snap = next(s for s in reversed(self._snapshots) if s.t_s <= before_s + 1e-9)
        sim, tracker = self._owner.simulation, self._owner.tracker
        mujoco.mj_copyData(sim.data, sim.model, snap.data)
        tracker.state = TrackerState.TRACKING
        tracker.fall_time_s = tracker.fall_reason = None
        tracker.restore_memory(snap.memory)
        self._tick = int(round(snap.t_s / (self._every * sim.dt_s)))

    def _plan_cut(self, fall_s: float) -> CutPlan | None:
        """Cuts before the fall, each `lead_s` earlier than the last failed one, until one stays up."""
        owner = self._owner
        start_s = owner.motion_start_s(self._pristine)
        for attempt in range(1, owner.max_cut_attempts + 1):
            cut_s = fall_s - owner.lead_s * attempt
            if cut_s <= max(start_s, self.earliest_cut_s):
                return None  # the motion would not even start (or has played past it): refuse it
            reference = copy.deepcopy(self._pristine)
            reference.stop(cut_s)
            self._restore(cut_s)
            owner.tracker.set_reference(reference, start_s=0.0)
            outcome = self._run(reference.end_s + owner.settle_s, snapshots=False) or self._unsettled(snapshots=False)
            if outcome is None:
                self.reference = reference
                return CutPlan(cut_s=cut_s, motion_time_s=reference.motion_time_s(reference.end_s),
                               stands_s=reference.end_s)
        return None

    def _unsettled(self, snapshots: bool = True) -> tuple[float, str] | None:
        """At the end: a robot still leaning or turning (`Rehearsal.settled`) is rehearsed on, up to
        ``settle_s`` more, until it settles; (time, reason) of a fall then, or of still not settling."""
        owner = self._owner
        sim, end = owner.simulation, self.rehearsed_s + owner.settle_s
        dt = self._every * sim.dt_s
        while not owner.settled(sim.state()):
            if self.rehearsed_s >= end - 1e-9:
                tilt = float(tilt_from_quat_wxyz(sim.state().base_quat_wxyz))
                return self.rehearsed_s, f"not settled {2 * owner.settle_s:.1f} s after standing (tilt {tilt:.2f} rad)"
            if (fall := self._run(self.rehearsed_s + dt, snapshots)) is not None:
                return fall
        return None

    def advance(self, until_s: float) -> RehearsalResult:
        """Rehearse up to until_s [s] on the reference clock (no further than the end, unless the robot has
        not settled there); the verdict so far.

        A fall found here is answered at once with a verified cut plan (or a refusal)."""
        wall = time.perf_counter()
        if self._fall is None:
            self._fall = self._run(min(until_s, self.end_s), snapshots=True)
            if self._fall is None and self.rehearsed_s >= self.end_s - 1e-9 and not self._settled:
                self._fall, self._settled = self._unsettled(), True
            if self._fall is not None:
                self._cut = self._plan_cut(self._fall[0])
                self._refuse = self._cut is None
        self._wall_s += time.perf_counter() - wall
        return self.result()

    def finish(self) -> RehearsalResult:
        """Rehearse to the end (the return to standing and the settle time included)."""
        return self.advance(self.end_s)

    def result(self) -> RehearsalResult:
        fall_s, reason = self._fall if self._fall is not None else (None, None)
        complete = self._fall is not None or self.rehearsed_s >= self.end_s - 1e-9
        return RehearsalResult(
            falls=fall_s is not None, fall_time_s=fall_s,
            fall_motion_time_s=None if fall_s is None else self._pristine.motion_time_s(fall_s),
            fall_reason=reason, cut=self._cut, refuse=self._refuse, complete=complete,
            rehearsed_s=self.rehearsed_s, wall_s=self._wall_s, time_stretch=self._pristine.time_stretch,
            conditioning=self._pristine.report.summary(),
            refusal="no cut before the fall keeps the robot up" if self._refuse else None)


class Rehearsal:
    """Rehearses motions on a private copy of the tracker and its robot (one per node; not thread-safe).

    Args:
        bundle: the checked tracker folder the live tracker uses.
        policy_rate_hz: the live tracker's policy rate (default: the spec's).
        policy: callable observation -> action (default: the bundle's ONNX policy).
        conditioning: motion -> ConditionedReference, as the live tracker conditions it (default:
            `ConditionedReference.from_spec` with the bundle's joint ranges).
        lead_s: how long before a detected fall a cut is tried first, and the step between tries [s].
        max_cut_attempts: cut tries before the motion is refused.
        settle_s: rehearsed time after the reference stands still (a fall shortly after still counts) [s];
            a robot not `settled` then is rehearsed up to as long again, and counts as fallen unless it settles.
        snapshot_every_s: spacing of the saved states a cut is rehearsed from [s].
    """

    #: A robot has settled when its base tilts at most this [rad] and turns at most `SETTLED_RATE_RAD_S`
    #: (bench_rehearsal stream, seeds 1-6, 12, 22: 81 rehearsals ended at tilt <= 0.04 rad, rate <= 0.04 rad/s;
    #: one at 0.40 rad and 2.6 rad/s, after a backflip's held wind-up, and the live robot fell 3.8 s later).
    SETTLED_TILT_RAD = 0.15
    SETTLED_RATE_RAD_S = 0.5

    def __init__(self, bundle: TrackerBundle, *, policy_rate_hz: float | None = None,
                 policy: Callable[[np.ndarray], np.ndarray] | None = None,
                 conditioning: Callable[[RobotReference], ConditionedReference] | None = None,
                 lead_s: float = 1.0, max_cut_attempts: int = 3, settle_s: float = 1.5,
                 snapshot_every_s: float = 0.25):
        if lead_s <= 0 or max_cut_attempts < 1 or settle_s < 0 or snapshot_every_s <= 0:
            raise ValueError("need lead_s > 0, max_cut_attempts >= 1, settle_s >= 0, snapshot_every_s > 0")
        self.bundle = bundle
        self.tracker = Tracker(bundle, policy=policy, policy_rate_hz=policy_rate_hz)
        self.simulation = TrackerSimulation(bundle)
        self.conditioning = conditioning or (
            lambda ref: ConditionedReference.from_spec(ref, bundle.spec, bundle.joint_range_rad))
        self.lead_s = float(lead_s)
        self.max_cut_attempts = int(max_cut_attempts)
        self.settle_s = float(settle_s)
        self.snapshot_every_s = float(snapshot_every_s)

    def settled(self, state: RobotState) -> bool:
        """Standing still: little tilt and little base rotation (`SETTLED_TILT_RAD`, `SETTLED_RATE_RAD_S`)."""
        return (float(tilt_from_quat_wxyz(state.base_quat_wxyz)) <= self.SETTLED_TILT_RAD
                and float(np.linalg.norm(state.base_ang_vel_body_rad_s)) <= self.SETTLED_RATE_RAD_S)

    def standing_memory(self, seconds: float = 2.0) -> TrackerMemory:
        """The memory of a tracker that has held the robot standing for ``seconds``: what a live tracker
        remembers when its robot stands still (a full observation history and the standing action, not
        the empty history and zero action of a fresh start). A rehearsal from a robot standing still
        starts with it; the policy reads both. Its policy clock is left unset (the live one is unknown)."""
        rollout(self.tracker, None, seconds, simulation=self.simulation)
        memory = self.tracker.memory()
        self.tracker.reset()
        return dataclasses.replace(memory, next_policy_s=None, last_command=None)

    @staticmethod
    def motion_start_s(reference: ConditionedReference) -> float:
        """Where the motion itself starts playing on the reference clock (after the blend from standing)."""
        return reference.play_start_s

    def start(self, motion, state: RobotState | None = None, memory: TrackerMemory | None = None) -> RehearsalRun:
        """Begin rehearsing `motion` (a `RobotTrajectory` as the node plays it, a `RobotReference`, or a
        `ConditionedReference`) from `state` (default: standing at the origin) and, optionally, the live
        tracker's memory (`Tracker.memory()`), so the rehearsal continues exactly as the robot would."""
        if isinstance(motion, ConditionedReference):
            reference = copy.deepcopy(motion)
        else:
            if not isinstance(motion, RobotReference):
                motion = RobotReference.from_trajectory(motion, self.bundle.spec.joint_names)
            reference = self.conditioning(motion)
        return RehearsalRun(self, reference, state, memory)

    def rehearse(self, motion, state: RobotState | None = None, memory: TrackerMemory | None = None) -> RehearsalResult:
        """The whole motion's verdict (`start(...).finish()`); a motion nothing of which is within the robot
        (conditioning raises TrackerError) is refused without rehearsal."""
        try:
            run = self.start(motion, state, memory)
        except TrackerError as exc:
            return RehearsalResult.beyond_robot(str(exc))
        return run.finish()


def rehearsal_decision(window: int, result: RehearsalResult, *, start_s: float) -> WindowDecision:
    """The node's verdict under ``physical_checks: rehearse`` on window `window` (0 = the command's first)
    starting start_s [s] into the command's motion, as `momask_ros.physics.checks.window_decision` gives
    it for ``reject``: a motion that stays up plays; one that falls with no safe cut is refused (a later
    window: the motion ends where that window begins); one with a cut plays up to the cut
    (``stops_at_s``, in the command's motion time), then returns to standing. ``status`` is set whenever
    the rehearsed robot falls: fields of the status that says ``falls_in_rehearsal`` with the time."""
    entry = {"window": int(window), "start_s": round(float(start_s), 3), "ok": not (result.falls or result.refuse),
             **result.status()}
    if not (result.falls or result.refuse):
        return WindowDecision(True, entry=entry)
    if result.falls:
        status = {"reason": "falls_in_rehearsal", "rehearsal": result.status(),
                  "detail": f"the rehearsed robot falls {result.fall_motion_time_s:.2f} s into the motion "
                            f"({result.fall_reason})"}
    else:
        status = {"reason": "beyond_robot", "rehearsal": result.status(), "detail": result.refusal}
    if result.cut is not None:
        return WindowDecision(True, status={**status, "window": int(window),
                                            "stops_at_s": round(float(start_s) + result.cut.motion_time_s, 3)},
                              entry=entry)
    if window == 0:
        return WindowDecision(False, refuse_job=True, status=status, entry=entry)
    return WindowDecision(False, status={**status, "window": int(window), "stops_at_s": round(float(start_s), 3)},
                          entry=entry)
