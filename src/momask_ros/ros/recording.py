"""MCAP bags of what the node publishes, readable by ``ros2 bag info/play``, rosbags and Foxglove.

A bag follows MCAP's ``ros2`` profile, as rosbag2's MCAP storage writes it: each message is the CDR
content of the message that was published (`momask_ros.ros.cdr`: the same bytes a subscriber receives,
exact in length, padding zeroed, the same message always giving the same bytes), each schema the
``ros2msg`` text of the installed ``.msg`` definition followed by those of the types it uses, each
channel carries the publisher's QoS and the type hash. Writing uses the ``mcap`` package, reading back
`mcap-ros2-support`'s decoder.

* `BagWriter`: one ``.mcap`` file, or a rosbag2 folder (the ``.mcap`` and its ``metadata.yaml``),
  ``write(topic, msg, log_time_ns)`` for any ROS 2 message.
* `MotionRecorder`: the node's recorder, one rosbag2 folder per played motion (fed from the node's
  publish calls).
* `record_motion_offline`: the stream the node would publish for one motion, computed without a ROS
  graph from the same pipeline and playback as the node; `record_generation` does it for
  ``momask-generate --mcap``.
"""
from __future__ import annotations

import importlib.util
import logging
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from momask_ros.ros.cdr import serialize_cdr
from momask_ros.ros.rosbag2_metadata import (TopicRecord, bag_information, qos_yaml, serialized_information,
                                             type_description_hash, write_metadata)

if TYPE_CHECKING:
    from momask_ros.stream.pipeline import GeneratedMotion, MotionPipeline

__all__ = ["BagError", "BagWriter", "MotionRecorder", "message_definition", "read_bag", "record_generation",
           "record_motion_offline", "write_generation_mcap"]

_PRIMITIVES = {"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
               "uint32", "int64", "uint64", "string", "wstring"}
_SEPARATOR = "=" * 80

log = logging.getLogger(__name__)


class BagError(RuntimeError):
    """A bag cannot be written or read (missing message definition, unwritable path, bad file)."""


# --------------------------------------------------------------------------- schemas
def _share_dirs(package: str) -> list[Path]:
    """Where ``share/<package>`` may be: the ament prefixes, this Python's prefix, the package's own prefix."""
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.origin:  # <prefix>/lib/pythonX.Y/site-packages/<package>/__init__.py
        prefixes.append(str(Path(spec.origin).resolve().parents[4]))
    return [Path(p) / "share" / package for p in dict.fromkeys(prefixes)]


def _msg_text(type_name: str) -> str:
    package, _, name = type_name.partition("/")
    name = name.split("/")[-1]
    for share in _share_dirs(package):
        path = share / "msg" / f"{name}.msg"
        if path.is_file():
            return path.read_text()
    raise BagError(f"no message definition for {type_name} (looked for share/{package}/msg/{name}.msg "
                   f"in AMENT_PREFIX_PATH and {sys.prefix})")


def _used_types(text: str, package: str) -> Iterator[str]:
    """The message types that fields of a ``.msg`` text use, as ``package/Type``."""
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) < 2 or "=" in parts[1]:  # a constant (always primitive)
            continue
        base = re.sub(r"<=\d+$", "", re.sub(r"\[[^\]]*\]$", "", parts[0]))
        if base not in _PRIMITIVES:
            yield base if "/" in base else f"{package}/{base}"


def message_definition(type_name: str) -> str:
    """The ``ros2msg`` schema of ``pkg/msg/Type``: its ``.msg`` text, then each type it uses (once).

    Raises:
        BagError: a definition is not installed.
    """
    package, name = type_name.split("/")[0], type_name.split("/")[-1]
    parts, seen = [_msg_text(type_name)], set()
    stack = list(_used_types(parts[0], package))
    while stack:
        dep = stack.pop(0)
        short = f"{dep.split('/')[0]}/{dep.split('/')[-1]}"
        if short in seen or short == f"{package}/{name}":
            continue
        seen.add(short)
        text = _msg_text(short)
        parts.append(f"{_SEPARATOR}\nMSG: {short}\n{text}")
        stack.extend(_used_types(text, short.split("/")[0]))
    return "\n".join(p.rstrip("\n") for p in parts) + "\n"


def _type_name(msg: Any) -> str:
    cls = type(msg)
    return f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"


# --------------------------------------------------------------------------- one bag
class BagWriter:
    """One MCAP file in the ROS 2 profile, or a rosbag2 folder. Use as a context manager, or call `close`.

    Args:
        path: the ``.mcap`` file (its folder is created); with ``folder=True`` the bag folder (created, must
            not exist), holding ``<folder name>_0.mcap`` and, once closed, ``metadata.yaml``.
        qos_depth: per topic, the publisher's history depth written into the channel's QoS (default 10).
        folder: write a rosbag2 folder instead of a bare file.
    """

    def __init__(self, path: str | os.PathLike, *, qos_depth: dict[str, int] | None = None,
                 folder: bool = False) -> None:
        from mcap.writer import CompressionType, Writer

        self.path = Path(path)
        self.folder = self.path if folder else None
        self.file_path = self.path / f"{self.path.name}_0.mcap" if folder else self.path
        try:
            if folder:
                self.path.mkdir(parents=True)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.file_path, "wb")
        except OSError as exc:
            raise BagError(f"cannot write a bag at {self.path}: {exc}") from exc
        self._writer = Writer(self._file, compression=CompressionType.ZSTD)
        self._writer.start(profile="ros2", library="momask_ros")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._qos_depth = dict(qos_depth or {})
        self.topics: dict[str, TopicRecord] = {}
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.closed = False
        self.count = 0

    def _channel(self, topic: str, type_name: str) -> int:
        if topic not in self._channels:
            if type_name not in self._schemas:
                self._schemas[type_name] = self._writer.register_schema(
                    name=type_name, encoding="ros2msg", data=message_definition(type_name).encode())
            depth = self._qos_depth.get(topic, 10)
            self._channels[topic] = self._writer.register_channel(
                topic=topic, message_encoding="cdr", schema_id=self._schemas[type_name],
                metadata={"offered_qos_profiles": qos_yaml(depth),
                          "topic_type_hash": type_description_hash(type_name, _share_dirs)})
            self.topics[topic] = TopicRecord(type_name, depth)
        return self._channels[topic]

    def write(self, topic: str, msg: Any, log_time_ns: int) -> None:
        """Append one message (an rclpy message object) received at ``log_time_ns``."""
        data = serialize_cdr(msg)
        channel = self._channel(topic, _type_name(msg))
        record = self.topics[topic]
        ns = int(log_time_ns)
        self._writer.add_message(channel_id=channel, log_time=ns, publish_time=ns, sequence=record.count, data=data)
        record.count += 1
        self.count += 1
        self.first_ns = ns if self.first_ns is None else min(self.first_ns, ns)
        self.last_ns = ns if self.last_ns is None else max(self.last_ns, ns)

    def close(self) -> None:
        """Finish the file (with rosbag2's ``rosbag2`` metadata record) and, for a folder, its ``metadata.yaml``."""
        if not self.closed:
            self.closed = True
            info = bag_information([(self.file_path.name, self.first_ns or 0, self.last_ns or 0, self.count)],
                                   self.topics, _share_dirs)
            try:
                self._writer.add_metadata("rosbag2", {"serialized_metadata": serialized_information(info)})
                self._writer.finish()
            finally:
                self._file.close()
            if self.folder is not None:
                try:
                    write_metadata(self.folder, info)
                except OSError as exc:
                    raise BagError(f"cannot write {self.folder / 'metadata.yaml'}: {exc}") from exc

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_bag(path: str | os.PathLike) -> list[tuple[str, str, int, Any]]:
    """Every message of a ROS 2 MCAP bag (a ``.mcap`` file or a rosbag2 folder of them) in log-time
    order: (topic, type name, log time [ns], decoded).

    Decoded messages are `mcap-ros2-support` objects with the message's field names as attributes.
    """
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    path = Path(path)
    files = sorted(path.glob("*.mcap")) if path.is_dir() else [path]
    if not files:
        raise BagError(f"cannot read bag {path}: no .mcap file in it")
    out = []
    try:
        for file in files:
            with open(file, "rb") as f:
                reader = make_reader(f, decoder_factories=[DecoderFactory()])
                out.extend((channel.topic, schema.name, message.log_time, decoded) for schema, channel, message, decoded
                           in reader.iter_decoded_messages(log_time_order=True))
    except (OSError, ValueError) as exc:
        raise BagError(f"cannot read bag {path}: {exc}") from exc
    return sorted(out, key=lambda item: item[2]) if len(files) > 1 else out


# --------------------------------------------------------------------------- the node's recorder
def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:limit] or "motion"


class MotionRecorder:
    """One bag per played motion: `open` when it starts playing, `write` what is published meanwhile,
    and the bag closes once the motion's final status (done, stopped, rejected) is written.

    Args:
        folder: where bags go (created); each is a rosbag2 folder ``<date>-<time>_<id>_<text>`` (its
            ``.mcap`` and ``metadata.yaml``), which ``ros2 bag info``/``play`` open.
        qos_depth: per topic, the publisher's history depth (recorded as the offered QoS).
        on_error: called with a one-line reason when a bag cannot be written; recording of that
            motion stops, the node goes on.
    """

    FINAL_STATES = ("done", "stopped", "rejected", "error")
    EARLY_STATES = ("accepted", "generating")

    def __init__(self, folder: str | os.PathLike, *, qos_depth: dict[str, int] | None = None,
                 on_error: Callable[[str], None] = lambda reason: None) -> None:
        self.folder = Path(folder).expanduser()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BagError(f"record folder {self.folder} cannot be created: {exc}") from exc
        if not os.access(self.folder, os.W_OK):
            raise BagError(f"record folder {self.folder} is not writable")
        self._qos_depth = qos_depth
        self._on_error = on_error
        self._bags: dict[int, BagWriter] = {}

    def open(self, motion_id: int, text: str) -> Path | None:
        """Start the bag of a motion that starts playing; returns its folder (None if it failed)."""
        stem = f"{time.strftime('%Y%m%d-%H%M%S')}_{motion_id:04d}_{_slug(text)}"
        path, n = self.folder / stem, 1
        while path.exists():  # a restarted node numbers its motions from 1 again
            path, n = self.folder / f"{stem}-{n}", n + 1
        try:
            self._bags[motion_id] = BagWriter(path, qos_depth=self._qos_depth, folder=True)
        except BagError as exc:
            self._on_error(str(exc))
            return None
        return path

    def write(self, motion_id: int | None, topic: str, msg: Any, log_time_ns: int) -> None:
        bag = self._bags.get(motion_id) if motion_id is not None else None
        if bag is None:
            return
        try:
            bag.write(topic, msg, log_time_ns)
        except Exception as exc:  # disk full, missing definition: stop this bag, keep the node going
            self._drop(motion_id, f"recording {bag.path.name} stopped: {type(exc).__name__}: {exc}")

    def write_status(self, motion_id: int | None, state: str, topic: str, msg: Any, log_time_ns: int) -> None:
        """A status message; the motion's final state closes its bag. A bag starts with ``playing``:
        the earlier states of its motion (flushed in the tick it starts in) stay out."""
        if state in self.EARLY_STATES:
            return
        self.write(motion_id, topic, msg, log_time_ns)
        if motion_id in self._bags and state in self.FINAL_STATES:
            self.close(motion_id)

    def _drop(self, motion_id: int, reason: str) -> None:
        bag = self._bags.pop(motion_id, None)
        if bag is not None:
            try:
                bag.close()
            except Exception:
                pass
        self._on_error(reason)

    def close(self, motion_id: int) -> None:
        bag = self._bags.pop(motion_id, None)
        if bag is not None:
            try:
                bag.close()
            except Exception as exc:
                self._on_error(f"recording {bag.path.name} could not be finished: {exc}")

    def close_all(self) -> None:
        for motion_id in list(self._bags):
            self.close(motion_id)

    @property
    def open_bags(self) -> list[Path]:
        return [bag.path for bag in self._bags.values()]


# --------------------------------------------------------------------------- without a ROS graph
def record_motion_offline(path: str | os.PathLike, pipeline: MotionPipeline, motion: GeneratedMotion, *,
                          rate_hz: float = 50.0, blend_s: float = 0.5, marker_rate_hz: float = 10.0,
                          frame_id: str = "odom", start_ns: int | None = None, motion_id: int = 1) -> dict:
    """Write, as a bag, the stream the node would publish for one generated motion started from the
    rest pose: the node's own conductor (`momask_ros.stream.conductor`) plays it on a fake clock and its
    ticks go through the node's conversion (`momask_ros.ros.publishing`), on the node's default topics:
    JointState at ``rate_hz``, base pose and twist, skeleton markers at ``marker_rate_hz``, the
    JointTrajectory and the ``playing``/``done`` statuses.

    Args:
        path: the ``.mcap`` file.
        pipeline: its retargeter and joint space are used; motion: the generated motion.
        start_ns: stamp of the first sample (default: now).
        motion_id: the ``id`` its statuses carry.

    Returns:
        counts per topic and the duration [s].
    """
    from momask_ros.ros.publishing import status_messages, stream_messages
    from momask_ros.stream.conductor import Conductor
    from momask_ros.stream.settings import StreamSettings
    from momask_ros.stream.topics import DEFAULT_TOPICS

    keys = ("joint_state_topic", "trajectory_topic", "base_pose_topic", "base_twist_topic", "markers_topic",
            "status_topic")
    topics = {key: "/" + DEFAULT_TOPICS[key].lstrip("/") for key in keys}
    settings = StreamSettings.from_parameters({"control_rate": float(rate_hz), "blend_s": float(blend_s),
                                               "marker_rate": float(marker_rate_hz), "physical_checks": "off"})
    now_ns = time.time_ns() if start_ns is None else int(start_ns)
    clock = [now_ns]
    conductor = Conductor(pipeline, settings, now_ns=now_ns, clock=lambda: clock[0] * 1e-9)
    job = conductor.play(motion, now_ns, motion_id=motion_id)
    names = list(pipeline.joint_space.names)
    counts: dict[str, int] = {}
    last_ns = now_ns + int((motion.frames / motion.fps / motion.command.speed + blend_s + 10.0) * 1e9)
    final = None
    with BagWriter(path, qos_depth={topics["status_topic"]: 50}) as bag:
        while final is None and clock[0] <= last_ns:
            conductor.run_pending()
            tick = conductor.tick(clock[0])
            outgoing = [*stream_messages(tick, names=names, frame_id=frame_id, now_ns=clock[0], keys=topics),
                        *status_messages(tick, now_ns=clock[0])]
            for out in outgoing:
                if out.state in MotionRecorder.EARLY_STATES:  # as the node's bags: from ``playing`` on
                    continue
                bag.write(topics[out.key], out.msg, out.log_ns)
                counts[topics[out.key]] = counts.get(topics[out.key], 0) + 1
            final = next((st for st in tick.statuses
                          if st.motion_id == job.id and st.state in MotionRecorder.FINAL_STATES), None)
            clock[0] += settings.period_ns
    conductor.shutdown()
    if final is None or final.state != "done":
        raise BagError(f"the motion did not play to its end: {final.fields if final else 'no final status'}")
    return {"topics": counts, "duration_s": final.fields.get("duration_s"), "path": str(path)}


def record_generation(path: str | os.PathLike, model: Any, result: Any, texts: list[str], *,
                      robot: str = "default", description: str | None = None, rate_hz: float = 50.0,
                      seed: int | None = None) -> list[Path]:
    """``momask-generate --mcap``: retarget each motion of a `GenerationResult` onto ``robot`` and write
    the node's stream for it (`record_motion_offline`) to ``path``, or ``<stem>_<i>.mcap`` for a batch.

    Raises:
        momask_ros.robot.profile.ProfileError: the robot cannot be loaded.
    """
    from momask_ros.stream.commands import MotionCommand
    from momask_ros.stream.pipeline import GeneratedMotion, MotionPipeline
    from momask_ros.robot.model import load_robot

    pipeline = MotionPipeline.for_model(model, robot=load_robot(robot, description))
    path = Path(path)
    paths = [path] if len(texts) == 1 else [path.with_name(f"{path.stem}_{i}{path.suffix}") for i in range(len(texts))]
    for i, (text, out) in enumerate(zip(texts, paths)):
        _, joints = result.motion(i)
        motion = GeneratedMotion(MotionCommand(text, length_frames=int(result.lengths[i])),
                                 np.asarray(joints, dtype=np.float64), float(result.fps), math.nan, seed)
        record_motion_offline(out, pipeline, motion, rate_hz=rate_hz, motion_id=i + 1)
    return paths


def write_generation_mcap(args: Any, model: Any, result: Any, texts: list[str]) -> int:
    """``momask-generate --mcap`` (registered as its ``mcap`` robot-stream writer in setup.py): write the
    bags, and turn a robot that cannot be loaded into the CLI's one-line error with exit status 2."""
    from momask_ros.robot.profile import DescriptionNotFound, ProfileError

    try:
        paths = record_generation(args.mcap, model, result, texts, robot=args.robot,
                                  description=args.robot_description, seed=args.seed)
    except DescriptionNotFound as exc:  # say the CLI's own option, not the node parameter
        print(f"momask-generate: {str(exc).split(';')[0]}; give it with --robot-description /path/to/{exc.file_name}",
              file=sys.stderr)
        return 2
    except (ProfileError, BagError) as exc:
        print(f"momask-generate: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        log.info("wrote %s", path)
    return 0


def check_generation_mcap(args: Any) -> None:
    """``momask-generate --mcap``'s own options, checked before the model loads (its ``check`` hook):
    the robot must load. Raises ValueError with the CLI's one-line message."""
    from momask_ros.robot.model import load_robot
    from momask_ros.robot.profile import DescriptionNotFound

    try:
        load_robot(args.robot, args.robot_description)
    except DescriptionNotFound as exc:  # say the CLI's own option, not the node parameter
        raise ValueError(f"{str(exc).split(';')[0]}; give it with --robot-description /path/to/{exc.file_name}") from None


write_generation_mcap.check = check_generation_mcap  # type: ignore[attr-defined]
