"""How momask_node's statuses move the tracker's live reference (`LiveReference`): `momask_tracker` and
the tracked simulator loop (`momask_ros.stream.tracked_loop`) read them alike, and a rehearsal
(`momask_ros.stream.followed`) follows a motion to its end the same way.

* ``playing``: the motion begins at its first sample's stamp (``stamp_s``), not before the time the
  tracker follows now.
* An end (``done`` that names no command taking over, ``preempted_by`` or ``continued_by``; or
  ``stopped``): back to standing once the tracker has followed the stream to it, at the stamp of the
  motion's last sample (``end_stamp_s``) when the status gives one. The tracker follows the stream a
  little behind the node's clock (``reference_delay``): ending at the status's arrival would drop the
  motion's last 0.1 s, which a rehearsal plays. A stop blends out at once.
"""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["reference_event"]


def reference_event(state: str, fields: Mapping[str, Any], ref_now_s: float,
                    clock_offset_s: float = 0.0) -> tuple[str, float] | None:
    """``("begin", t)``, ``("end", t)`` or None for a status; ``t`` on the reference's clock: the status's
    stamps minus ``clock_offset_s``, never before ``ref_now_s`` (the time the tracker follows now)."""
    def at(key: str) -> float:
        stamp = fields.get(key)
        return max(ref_now_s if stamp is None else float(stamp) - clock_offset_s, ref_now_s)

    if state == "playing":
        return "begin", at("stamp_s")
    if state == "done" and not ({"preempted_by", "continued_by"} & set(fields)):
        return "end", at("end_stamp_s")
    if state == "stopped":
        return "end", ref_now_s
    return None
