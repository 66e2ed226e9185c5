"""rosbag2's side of a bag: ``metadata.yaml`` (format version 9), the offered QoS and the type hashes.

Why: ``ros2 bag info``/``ros2 bag play`` and rosbags' folder reader open a rosbag2 *folder*, whose
``metadata.yaml`` lists the storage files, the topics with their types, QoS and message counts. This
writes that file the way rosbag2's own recorder does (Jazzy/Kilted layout), from what a `BagWriter`
counted; the type hashes (``RIHS01_...``) are the ones rosidl installed beside each ``.msg``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

__all__ = ["METADATA_VERSION", "TopicRecord", "bag_information", "qos_profile", "qos_yaml", "serialized_information",
           "type_description_hash", "write_metadata"]

METADATA_VERSION = 9


@dataclass
class TopicRecord:
    """One topic of a bag: its type, the publisher's history depth and how many messages it holds."""

    type_name: str
    depth: int
    count: int = 0


def qos_profile(depth: int, reliable: bool = True) -> dict:
    """One offered QoS profile in rosbag2's version-9 form: keep_last(depth), volatile, default durations."""
    zero = {"sec": 0, "nsec": 0}
    return {"history": "keep_last", "depth": int(depth), "reliability": "reliable" if reliable else "best_effort",
            "durability": "volatile", "deadline": dict(zero), "lifespan": dict(zero), "liveliness": "automatic",
            "liveliness_lease_duration": dict(zero), "avoid_ros_namespace_conventions": False}


def qos_yaml(depth: int, reliable: bool = True) -> str:
    """`qos_profile` as the YAML list an MCAP channel's ``offered_qos_profiles`` metadata holds."""
    return yaml.safe_dump([qos_profile(depth, reliable)], sort_keys=False)


def type_description_hash(type_name: str, share_dirs: Callable[[str], list[Path]]) -> str:
    """The ``RIHS01_...`` hash of ``pkg/msg/Type`` from the ``.json`` rosidl installs beside its ``.msg``
    ("" when not found: readers then skip the check)."""
    package, name = type_name.split("/")[0], type_name.split("/")[-1]
    for share in share_dirs(package):
        path = share / "msg" / f"{name}.json"
        if path.is_file():
            try:
                hashes = json.loads(path.read_text())["type_hashes"]
                return next(h["hash_string"] for h in hashes if h["type_name"] == f"{package}/msg/{name}")
            except (ValueError, KeyError, StopIteration):
                return ""
    return ""


def bag_information(files: list[tuple[str, int, int, int]], topics: dict[str, TopicRecord],
                    share_dirs: Callable[[str], list[Path]]) -> dict:
    """rosbag2's bag information (``rosbag2_bagfile_information``) for MCAP storage files.

    Args:
        files: per storage file, (name relative to the bag folder, first log time [ns], last log time [ns],
            message count).
        topics: topic name -> what it holds.
        share_dirs: where ``share/<package>`` may be (for the type hashes).
    """
    counted = [f for f in files if f[3]]
    start = min((f[1] for f in counted), default=0)
    end = max((f[2] for f in counted), default=0)
    info = {
        "version": METADATA_VERSION,
        "storage_identifier": "mcap",
        "duration": {"nanoseconds": int(end - start)},
        "starting_time": {"nanoseconds_since_epoch": int(start)},
        "message_count": int(sum(f[3] for f in files)),
        "topics_with_message_count": [
            {"topic_metadata": {"name": topic, "type": record.type_name, "serialization_format": "cdr",
                                "offered_qos_profiles": [qos_profile(record.depth)],
                                "type_description_hash": type_description_hash(record.type_name, share_dirs)},
             "message_count": int(record.count)}
            for topic, record in topics.items()],
        "compression_format": "",
        "compression_mode": "",
        "relative_file_paths": [f[0] for f in files],
        "files": [{"path": name, "starting_time": {"nanoseconds_since_epoch": int(first)},
                   "duration": {"nanoseconds": int(last - first)}, "message_count": int(count)}
                  for name, first, last, count in files],
        "custom_data": None,
        "ros_distro": os.environ.get("ROS_DISTRO", ""),
    }
    return info


def serialized_information(info: dict) -> str:
    """`bag_information` as the YAML rosbag2 keeps in an MCAP file's ``rosbag2`` metadata record (it reads
    the format version there, and so how to parse each channel's QoS)."""
    return yaml.safe_dump(info, sort_keys=False)


def write_metadata(folder: Path, info: dict) -> Path:
    """Write ``folder/metadata.yaml`` (atomically) from `bag_information`; returns its path."""
    path = Path(folder) / "metadata.yaml"
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump({"rosbag2_bagfile_information": info}, sort_keys=False))
    tmp.replace(path)
    return path
