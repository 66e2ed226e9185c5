"""The optional ``self_collision:`` and ``sim:`` sections of a robot profile (schema and checks).

Kept apart from `momask_ros.robot.profile` so that the core profile stays short; `RobotProfile.from_dict` calls
`parse_self_collision` and `parse_sim` and turns their `SectionError` (naming the entry) into a `ProfileError`.

``self_collision`` (IK avoidance, `momask_ros.retarget.avoidance`)::

    self_collision:
      enabled: true                 # false = IK without collision avoidance
      pairs:                        # body groups; omitted = every counted pair (robot/self_collision.py)
        - [[left_elbow_link], [pelvis, torso_link]]
      min_distance_m: 0.01          # clearance the IK keeps between counted geoms
      detection_distance_m: 0.03    # pairs closer than this are constrained
      gain: 0.5                     # fraction of the remaining gap one IK step may close

``sim`` (the MuJoCo simulator, `momask_ros.physics.simulator`; every key optional)::

    sim:
      timestep_s: 0.002             # default: the MJCF's option timestep
      effort_default: 50.0          # N m for joints whose MJCF gives none
      effort: {left_knee_joint: 139.0}
      kp_default: null              # N m/rad; null = effort / saturation_error_rad
      kp: {left_knee_joint: 200.0}
      kd: {left_knee_joint: 4.0}    # N m s/rad; default = critical damping on the joint's inertia
      saturation_error_rad: 0.1
      damping_ratio: 1.0
      self_collision: false         # collide the robot with itself in the simulator too
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping


class SectionError(ValueError):
    """A bad entry in an optional profile section (the message names it)."""


def _err(message: str) -> Exception:
    return SectionError(message)


def _number(value: Any, what: str, *, positive: bool = False, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise _err(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(out) or (positive and out <= 0) or out < 0:
        raise _err(f"{what} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return out


def _joint_map(raw: Any, what: str) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _err(f"{what} must map joint names to numbers, got {raw!r}")
    return {str(k): _number(v, f"{what}.{k}", positive=True) for k, v in raw.items()}  # type: ignore[misc]


@dataclass(frozen=True)
class SelfCollisionConfig:
    """Profile ``self_collision`` section (see the module docstring)."""

    enabled: bool = True
    pairs: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] | None = None
    min_distance_m: float = 0.01
    detection_distance_m: float = 0.03
    gain: float = 0.5


@dataclass(frozen=True)
class SimConfig:
    """Profile ``sim`` section (see the module docstring)."""

    timestep_s: float | None = None
    effort_default: float | None = None
    effort: Mapping[str, float] = field(default_factory=dict)
    kp_default: float | None = None
    kp: Mapping[str, float] = field(default_factory=dict)
    kd: Mapping[str, float] = field(default_factory=dict)
    saturation_error_rad: float = 0.1
    damping_ratio: float = 1.0
    self_collision: bool = False

    def joint_names(self) -> set[str]:
        return set(self.effort) | set(self.kp) | set(self.kd)


def parse_self_collision(raw: Any) -> SelfCollisionConfig:
    if raw is None:
        return SelfCollisionConfig()
    if not isinstance(raw, Mapping):
        raise _err(f"self_collision must be a mapping, got {raw!r}")
    bad = set(raw) - {"enabled", "pairs", "min_distance_m", "detection_distance_m", "gain"}
    if bad:
        raise _err(f"self_collision has unknown key(s) {sorted(bad)}")
    pairs = raw.get("pairs")
    parsed = None
    if pairs is not None:
        if not isinstance(pairs, list):
            raise _err(f"self_collision.pairs must be a list of [bodies, bodies], got {pairs!r}")
        parsed = []
        for i, pair in enumerate(pairs):
            ok = isinstance(pair, (list, tuple)) and len(pair) == 2 and all(
                isinstance(g, (list, tuple)) and g and all(isinstance(b, str) for b in g) for g in pair)
            if not ok:
                raise _err(f"self_collision.pairs[{i}] must be [[body, ...], [body, ...]], got {pair!r}")
            parsed.append((tuple(pair[0]), tuple(pair[1])))
        parsed = tuple(parsed)
    gain = _number(raw.get("gain", 0.5), "self_collision.gain", positive=True)
    if gain > 1:
        raise _err(f"self_collision.gain must be in (0, 1], got {gain}")
    detect = _number(raw.get("detection_distance_m", 0.03), "self_collision.detection_distance_m", positive=True)
    clearance = _number(raw.get("min_distance_m", 0.01), "self_collision.min_distance_m")
    if clearance >= detect:
        raise _err(f"self_collision.min_distance_m {clearance} must be < detection_distance_m {detect}")
    return SelfCollisionConfig(bool(raw.get("enabled", True)), parsed, clearance, detect, gain)


def parse_sim(raw: Any) -> SimConfig:
    if raw is None:
        return SimConfig()
    if not isinstance(raw, Mapping):
        raise _err(f"sim must be a mapping, got {raw!r}")
    keys = {"timestep_s", "effort_default", "effort", "kp_default", "kp", "kd", "saturation_error_rad",
            "damping_ratio", "self_collision"}
    bad = set(raw) - keys
    if bad:
        raise _err(f"sim has unknown key(s) {sorted(bad)}; known: {sorted(keys)}")
    return SimConfig(
        timestep_s=_number(raw.get("timestep_s"), "sim.timestep_s", positive=True, allow_none=True),
        effort_default=_number(raw.get("effort_default"), "sim.effort_default", positive=True, allow_none=True),
        effort=_joint_map(raw.get("effort"), "sim.effort"),
        kp_default=_number(raw.get("kp_default"), "sim.kp_default", positive=True, allow_none=True),
        kp=_joint_map(raw.get("kp"), "sim.kp"),
        kd=_joint_map(raw.get("kd"), "sim.kd"),
        saturation_error_rad=_number(raw.get("saturation_error_rad", 0.1), "sim.saturation_error_rad", positive=True),
        damping_ratio=_number(raw.get("damping_ratio", 1.0), "sim.damping_ratio", positive=True),
        self_collision=bool(raw.get("self_collision", False)),
    )
