"""The stream's settings as typed values, made once from the node's parameters.

The node keeps its parameters by name, as ROS does; everything past it (the conductor, the producer,
the pipeline) reads these frozen dataclasses instead, so a misspelt option is an AttributeError at
the first run, not a silently missing key. A parameter change builds new settings and hands them on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from momask_ros.physics.checks import Thresholds, thresholds_from
from momask_ros.stream.parameters import PARAMETERS

__all__ = ["ProducerSettings", "StreamSettings"]

#: Sampling parameters passed to the generator unless -1 (-1 keeps the bundle's own setting).
SAMPLING_PARAMETERS = ("timesteps", "cond_scale", "res_cond_scale", "temperature")


@dataclass(frozen=True)
class ProducerSettings:
    """What the producer's workers read per job.

    Attributes:
        queue_mode: ``preempt`` (a new command supersedes what waits and continues the playing motion)
            or ``queue`` (it continues the end of the last one).
        switch_mode: ``continue`` (join without a blend) or ``blend`` (start afresh).
        physical_checks: ``off``, ``warn`` or ``reject`` (`momask_ros.physics.checks.window_decision`), or
            ``rehearse`` (`momask_ros.stream.rehearsing`; the conductor needs a `Rehearser` for it).
        physical_thresholds: the checks' limits.
    """

    queue_mode: str = "preempt"
    switch_mode: str = "continue"
    physical_checks: str = "off"
    physical_thresholds: Thresholds = field(default_factory=Thresholds)


@dataclass(frozen=True)
class StreamSettings:
    """What the conductor, its producer and the pipeline follow (see `PARAMETERS` for each meaning).

    Rates are [Hz], durations [s]. ``sampling`` holds the generator's keyword arguments that the node
    sets (a parameter at -1 is left out: the bundle's own); ``seed`` None draws one per command;
    ``length_s`` 0 leaves a command's length to the model.
    """

    control_rate_hz: float = 50.0
    producer: ProducerSettings = field(default_factory=ProducerSettings)
    max_queue: int = 4
    blend_s: float = 0.5
    stop_blend_s: float = 0.15
    rest_blend_s: float = 1.5
    idle_behavior: str = "hold"
    publish_when_idle: bool = True
    marker_rate_hz: float = 10.0
    command_rate_hz: float = 2.0
    command_burst: int = 3
    max_command_chars: int = 300
    sampling: Mapping[str, float | int] = field(default_factory=dict)
    seed: int | None = None
    length_s: float = 0.0

    @property
    def period_ns(self) -> int:
        """One control period [ns]."""
        return int(round(1e9 / self.control_rate_hz))

    @classmethod
    def from_parameters(cls, values: Mapping[str, Any]) -> "StreamSettings":
        """From the node's parameter values by name (already checked by `parameters.coerce`); a name
        missing from ``values`` takes its `PARAMETERS` default."""
        p = {name: values.get(name, spec.default) for name, spec in PARAMETERS.items()}
        producer = ProducerSettings(queue_mode=p["queue_mode"], switch_mode=p["switch_mode"],
                                    physical_checks=p["physical_checks"], physical_thresholds=thresholds_from(p))
        return cls(control_rate_hz=float(p["control_rate"]), producer=producer, max_queue=int(p["max_queue"]),
                   blend_s=float(p["blend_s"]), stop_blend_s=float(p["stop_blend_s"]),
                   rest_blend_s=float(p["rest_blend_s"]), idle_behavior=p["idle_behavior"],
                   publish_when_idle=bool(p["publish_when_idle"]), marker_rate_hz=float(p["marker_rate"]),
                   command_rate_hz=float(p["command_rate"]), command_burst=int(p["command_burst"]),
                   max_command_chars=int(p["max_command_chars"]),
                   sampling={k: p[k] for k in SAMPLING_PARAMETERS if p[k] != -1},
                   seed=None if p["seed"] < 0 else int(p["seed"]), length_s=float(p["length_s"]))

    def default_length_frames(self, fps: float, unit: int, max_frames: int) -> int | None:
        """``length_s`` in frames: the nearest whole token unit within the model's range (None: 0 s)."""
        if self.length_s <= 0:
            return None
        return int(min(max_frames, max(unit, math.floor(self.length_s * fps / unit + 0.5) * unit)))
