"""The tracker as a controller: measured robot state + conditioned reference -> PD command.

Clock-injected: every call carries its time, so a simulator, a ROS node or a test drives it alike. The
caller ticks it at the policy rate (or faster: between policy ticks the last command is held). After a
fall (base too low or too tilted) it only ever returns a damped command, until `reset()`."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from typing import Callable

import numpy as np

from .observation import ObservationBuilder, mimic_vector
from .policy import OnnxPolicy, pd_target_rad
from .reference import ConditionedReference, ReferenceSample
from .rotations import tilt_from_quat_wxyz
from .spec import TrackerBundle, TrackerError

LOG = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class MeasuredState:
    """What the robot reports each tick (joint order = the tracker's).

    base_ang_vel_body_rad_s is the gyro (base frame); base_height_m may be None on a real robot, then
    only tilt detects a fall."""

    joint_pos_rad: np.ndarray
    joint_vel_rad_s: np.ndarray
    base_quat_wxyz: np.ndarray
    base_ang_vel_body_rad_s: np.ndarray
    base_height_m: float | None = None


@dataclass(frozen=True, eq=False)
class PdCommand:
    """Per-joint PD command: torque = clip(kp (target - q) - kd qd, +-torque_limit)."""

    target_rad: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    torque_limit_nm: np.ndarray
    safe: bool = False  # True: the damped command of the fallen state

    def torque_nm(self, joint_pos_rad: np.ndarray, joint_vel_rad_s: np.ndarray) -> np.ndarray:
        """The torque this command asks for at the given joint state."""
        tau = self.kp * (self.target_rad - joint_pos_rad) - self.kd * joint_vel_rad_s
        return np.clip(tau, -self.torque_limit_nm, self.torque_limit_nm)


@dataclass(frozen=True, eq=False)
class TrackerMemory:
    """What a tracker remembers between ticks (observation history, last raw action, its policy clock):
    a copy of a live tracker's continues exactly as it would (a rehearsal from the robot's current state)."""

    history: tuple[np.ndarray, ...]
    last_action: np.ndarray
    next_policy_s: float | None = None
    last_command: "PdCommand | None" = None


class TrackerState(Enum):
    STANDING = "standing"  # no reference: tracking the standing pose
    TRACKING = "tracking"
    FALLEN = "fallen"


class Tracker:
    """Whole-body tracking controller around one policy.

    Args:
        bundle: a checked tracker folder (`load_tracker`).
        policy: callable observation -> raw action; default an `OnnxPolicy` on the bundle's weights.
        policy_rate_hz: one of the spec's allowed rates; default the spec's.
    """

    def __init__(self, bundle: TrackerBundle, *, policy: Callable[[np.ndarray], np.ndarray] | None = None,
                 policy_rate_hz: float | None = None):
        spec = bundle.spec
        rate = spec.policy_rate_hz if policy_rate_hz is None else float(policy_rate_hz)
        if rate not in spec.allowed_policy_rates_hz:
            raise TrackerError(f"policy rate {rate} Hz not allowed for {spec.name}: {spec.allowed_policy_rates_hz}")
        self.bundle = bundle
        self.spec = spec
        self.policy_rate_hz = rate
        self.policy_period_s = 1.0 / rate
        self.policy = policy if policy is not None else OnnxPolicy(bundle)
        self.observations = ObservationBuilder.from_spec(spec)
        self._standing_mimic = mimic_vector(np.zeros(2), spec.standing_height_m, np.zeros(2), 0.0,
                                            spec.default_pose_rad)
        self._reference: ConditionedReference | None = None
        self._reference_start_s = 0.0
        self.reset()

    # ---- state -----------------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to a fresh start: empty history, zero last action, not fallen, no reference."""
        self.observations.reset()
        self.last_action = np.zeros(self.spec.num_joints)
        self.state = TrackerState.STANDING
        self.fall_time_s: float | None = None
        self.fall_reason: str | None = None
        self.last_sample: ReferenceSample | None = None
        self._reference = None
        self._last_command: PdCommand | None = None
        self._next_policy_s: float | None = None

    def memory(self) -> TrackerMemory:
        """A copy of the observation history and last action (see `restore_memory`)."""
        return TrackerMemory(self.observations.history, self.last_action.copy(), self._next_policy_s,
                             self._last_command)

    def restore_memory(self, memory: TrackerMemory) -> None:
        """Continue from another tracker's (or an earlier) memory; state and reference are unchanged."""
        self.observations.restore(memory.history)
        self.last_action = np.array(memory.last_action, dtype=np.float64)
        self._next_policy_s, self._last_command = memory.next_policy_s, memory.last_command

    def accepts_commands(self) -> bool:
        """False while fallen: a new reference is refused until `reset()`."""
        return self.state is not TrackerState.FALLEN

    @property
    def refusal_reason(self) -> str | None:
        if self.state is TrackerState.FALLEN:
            return f"fallen at t={self.fall_time_s:.2f} s ({self.fall_reason}); reset the tracker first"
        return None

    @property
    def reference(self) -> ConditionedReference | None:
        return self._reference

    def set_reference(self, reference: ConditionedReference, start_s: float) -> None:
        """Track `reference`, its time 0 being clock time start_s [s]. Raises TrackerError while fallen."""
        if not self.accepts_commands():
            raise TrackerError(self.refusal_reason)
        self._reference = reference
        self._reference_start_s = float(start_s)
        self.state = TrackerState.TRACKING

    def reference_time_s(self, t_s: float) -> float:
        return float(t_s) - self._reference_start_s

    def stop(self, t_s: float) -> None:
        """Blend the current reference back to standing from clock time t_s."""
        if self._reference is not None:
            self._reference.stop(self.reference_time_s(t_s))

    # ---- control ---------------------------------------------------------------------------------

    def _check_fall(self, t_s: float, measured: MeasuredState) -> None:
        spec = self.spec
        tilt = float(tilt_from_quat_wxyz(measured.base_quat_wxyz))
        reason = None
        if tilt > spec.fall_max_tilt_rad:
            reason = f"base tilt {tilt:.2f} rad > {spec.fall_max_tilt_rad:.2f} rad"
        elif measured.base_height_m is not None and measured.base_height_m < spec.fall_min_base_height_m:
            reason = f"base height {measured.base_height_m:.2f} m < {spec.fall_min_base_height_m:.2f} m"
        if reason is not None:
            self.state, self.fall_time_s, self.fall_reason = TrackerState.FALLEN, float(t_s), reason
            LOG.warning("tracker fell at t=%.2f s: %s", t_s, reason)

    def _safe_command(self, measured: MeasuredState) -> PdCommand:
        return PdCommand(target_rad=np.array(measured.joint_pos_rad, dtype=np.float64), kp=self.spec.safe_kp,
                         kd=self.spec.safe_kd, torque_limit_nm=self.spec.torque_limit_nm, safe=True)

    def _reference_mimic(self, t_s: float) -> np.ndarray:
        if self._reference is None:
            self.last_sample = None
            return self._standing_mimic
        self.last_sample = self._reference.sample(self.reference_time_s(t_s))
        return self.last_sample.mimic

    def step(self, t_s: float, measured: MeasuredState) -> PdCommand:
        """One control tick at clock time t_s [s]: the PD command to apply until the next tick.

        The policy runs when a policy period has passed since its last run; otherwise the previous
        command is returned unchanged (so calling faster than the policy rate is harmless)."""
        if self.state is not TrackerState.FALLEN:
            self._check_fall(t_s, measured)
        if self.state is TrackerState.FALLEN:
            return self._safe_command(measured)
        # small tolerance: a 1 ms physics clock summed in floats must not skip a 20 ms policy tick
        if self._next_policy_s is not None and t_s < self._next_policy_s - 1e-6 and self._last_command is not None:
            return self._last_command
        mimic = self._reference_mimic(t_s)
        proprio = self.observations.proprio(measured.base_ang_vel_body_rad_s, measured.base_quat_wxyz,
                                            measured.joint_pos_rad, measured.joint_vel_rad_s, self.last_action)
        action = self.policy(self.observations.build(mimic, proprio))
        self.last_action = action  # the raw, unclipped action goes back into the next observation
        command = PdCommand(target_rad=pd_target_rad(self.spec, action), kp=self.spec.kp, kd=self.spec.kd,
                            torque_limit_nm=self.spec.torque_limit_nm)
        self._last_command = command
        nxt = (t_s if self._next_policy_s is None else self._next_policy_s) + self.policy_period_s
        self._next_policy_s = nxt if nxt > t_s else t_s + self.policy_period_s  # a late caller restarts the grid
        return command
