"""The real entry points: `colcon build`, `ros2 launch momask_ros generate.launch.py` with each launch
argument, `ros2 topic pub/echo`, `ros2 param get/set`, a namespace, sim time from a /clock publisher,
MCAP recording, and the failure cases (exit status and message).

They need ROS 2's launch and `ros2` command line (`make test` installs ../shared/ros2-cli into the venv;
a ROS 2 install has them) and skip with the reason otherwise. The package is built once per session
with colcon into a temporary folder, and `ros2 launch` runs that build, in this session's domain id.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ros_harness import DEEP, DOMAIN_ID

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
G1 = "robots/unitree_g1/g1_29dof.xml"


def _ros2() -> str | None:
    found = VENV / "bin" / "ros2"
    return str(found) if found.is_file() else shutil.which("ros2")


def _missing() -> str | None:
    if _ros2() is None:
        return "no `ros2` command (make test installs ../shared/ros2-cli; or source a ROS 2 install)"
    for module in ("launch", "launch_ros", "ros2launch", "colcon_core"):
        if importlib.util.find_spec(module) is None:
            return f"python package {module} is not installed (make test installs ../shared/ros2-cli and colcon)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


@pytest.fixture(scope="session")
def ros2_env(tmp_path_factory) -> dict[str, str]:
    """`colcon build` of this checkout into a temporary folder, and the environment that runs it."""
    base = tmp_path_factory.mktemp("colcon")
    colcon = VENV / "bin" / "colcon"
    cmd = [str(colcon) if colcon.is_file() else "colcon", "--log-base", str(base / "log"), "build",
           "--paths", str(ROOT), "--build-base", str(base / "build"), "--install-base", str(base / "install")]
    done = subprocess.run(cmd, cwd=base, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"colcon build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    install = base / "install" / "momask_ros"
    site = install / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    assert (install / "lib" / "momask_ros" / "momask_node").is_file()  # where ros2 launch looks for it
    assert (install / "share" / "momask_ros" / "launch" / "generate.launch.py").is_file()
    prefixes = [str(install), str(VENV)] + [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    log_dir = base / "ros_log"
    return dict(os.environ, PATH=f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                AMENT_PREFIX_PATH=os.pathsep.join(dict.fromkeys(prefixes)), PYTHONPATH=str(site),
                ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOG_DIR=str(log_dir),
                RCUTILS_COLORIZED_OUTPUT="0", MUJOCO_GL="osmesa", OMP_NUM_THREADS="1")


class Launch:
    """`ros2 launch momask_ros generate.launch.py ARGS` (or another launch file) with its output collected
    line by line."""

    def __init__(self, env: dict[str, str], *args: str, file: str = "generate.launch.py") -> None:
        self.proc = subprocess.Popen([_ros2(), "launch", "momask_ros", file, *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} in the launch output (exit {self.proc.poll()}):\n{self.output[-4000:]}")

    def finish(self, timeout: float = 30.0) -> int:
        """The exit status once the launch ends by itself (failure cases)."""
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return self.proc.returncode

    def stop(self) -> int:
        """SIGINT, as Ctrl-C: the launch stops the node and exits (SIGTERM would orphan the node)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.finish(30)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def ros2(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.Popen:
    return subprocess.Popen([_ros2(), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def publish_until_accepted(env: dict[str, str], launch: "Launch", topic: str, text: str,
                           attempts: int = 3, wait_s: float = 30.0) -> subprocess.Popen:
    """`ros2 topic pub --once` of a command, again if the node never said `accepted`: on a loaded machine
    the one sample can go out before the node's subscription has matched the new publisher (DDS
    discovery is not symmetric), and is then lost."""
    for attempt in range(attempts):
        pub = ros2(env, "topic", "pub", "--once", "-w", "1", topic, "std_msgs/msg/String", f"{{data: '{text}'}}")
        try:
            launch.wait_for('"state": "accepted"', wait_s)
            return pub
        except AssertionError:
            if attempt == attempts - 1:
                raise
            pub.wait(timeout=30)
    raise AssertionError("unreachable")


def outputs(*procs: subprocess.Popen, timeout: float = 60) -> list[str]:
    return [p.communicate(timeout=timeout)[0] for p in procs]


def _echoed(text: str) -> list[dict]:
    """Status records from `ros2 topic echo` of a std_msgs/String (``data: '<json>'`` lines)."""
    return [json.loads(line[len("data: '"):-1]) for line in text.splitlines() if line.startswith("data: '{")]


class Probe:
    """An rclpy node in this process: publishes /clock (sim time, from 1000 s at real speed) and
    records JointStates."""

    def __init__(self, topic: str, clock: bool) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import JointState

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=DOMAIN_ID)
        self.node = rclpy.create_node("launch_test_probe", context=self.context)
        self.received: list = []
        self.node.create_subscription(JointState, topic, self.received.append, DEEP)
        self._stop = threading.Event()
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._threads = [threading.Thread(target=self._spin, daemon=True)]
        if clock:
            from rosgraph_msgs.msg import Clock

            self._clock_pub = self.node.create_publisher(Clock, "/clock", 10)
            self._threads.append(threading.Thread(target=self._tick_clock, daemon=True))
        for thread in self._threads:
            thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:
                return

    def _tick_clock(self) -> None:
        from builtin_interfaces.msg import Time
        from rosgraph_msgs.msg import Clock

        t0 = time.monotonic()
        while not self._stop.is_set():
            ns = int((1000.0 + time.monotonic() - t0) * 1e9)
            self._clock_pub.publish(Clock(clock=Time(sec=ns // 10**9, nanosec=ns % 10**9)))
            time.sleep(0.005)

    def subscribers(self, topic: str) -> int:
        return self.node.count_subscribers(topic)

    def close(self) -> None:
        import rclpy

        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self.executor.shutdown(timeout_sec=1)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_launch_isaac_config_by_name_with_namespace_sim_time_and_recording(ros2_env, shared_data, tmp_path):
    """config:= a bare name, robot + robot_description_path, device, namespace, record; sim time from
    the file (isaac_sim.yaml sets it), driven by a /clock publisher; command by `ros2 topic pub`,
    status by `ros2 topic echo`, parameters by `ros2 param get/set`; the bag against what was received."""
    from momask_ros.ros.recording import read_bag

    probe = Probe("/robot1/joint_states", clock=True)
    launch = Launch(ros2_env, "config:=isaac_sim.yaml", "robot:=g1", f"robot_description_path:={shared_data / G1}",
                    "device:=cpu", "namespace:=robot1", f"record:={tmp_path / 'bags'}")
    try:
        launch.wait_for('"state": "ready"', 90)
        echo = ros2(ros2_env, "topic", "echo", "--no-daemon", "--full-length", "/robot1/momask/status",
                    "std_msgs/msg/String")
        echo_lines: list[str] = []
        echo_reader = threading.Thread(target=lambda: echo_lines.extend(iter(echo.stdout.readline, "")), daemon=True)
        echo_reader.start()
        _wait(lambda: probe.subscribers("/robot1/momask/status") >= 1, 30, "ros2 topic echo to subscribe")
        # The echo is matched to the node's status publisher once it prints the rejection of an empty
        # command (on a loaded machine that can take seconds after the echo's subscription is seen).
        for _ in range(10):
            ros2(ros2_env, "topic", "pub", "--once", "-w", "1", "/robot1/momask/command", "std_msgs/msg/String",
                 "{data: ''}").wait(timeout=30)
            if any('"rejected"' in line for line in list(echo_lines)):
                break
            time.sleep(1.0)
        pub = publish_until_accepted(ros2_env, launch, "/robot1/momask/command", "a person walks forward length=2s")
        launch.wait_for('"state": "done"', 90)
        node = "/robot1/momask_node"
        spin = ("--no-daemon", "--spin-time", "3")
        checks = [ros2(ros2_env, "param", "get", *spin, node, "use_sim_time"),
                  ros2(ros2_env, "param", "get", *spin, node, "robot"),
                  ros2(ros2_env, "param", "set", *spin, node, "blend_s", "0.3"),
                  ros2(ros2_env, "param", "set", *spin, node, "queue_mode", "random")]
        sim_time, robot, set_ok, set_bad = outputs(*checks)
        assert pub.wait(timeout=30) == 0, outputs(pub)
        echo.send_signal(signal.SIGINT)
        echo.wait(timeout=30)
        echo_reader.join(timeout=10)
        echoed = [s for s in _echoed("".join(echo_lines)) if s["state"] != "rejected"]  # the empty pings
        rc = launch.stop()
    finally:
        launch.kill()
        probe.close()

    assert "Boolean value is: True" in sim_time  # the file's use_sim_time: true survives (fix 1)
    assert "String value is: g1" in robot
    assert "Set parameter successful" in set_ok
    assert "Setting parameter failed" in set_bad and "queue_mode" in set_bad
    assert [s["state"] for s in echoed] == ["accepted", "generating", "playing", "done"]
    done = echoed[-1]
    assert rc == 0 and "process has finished cleanly" in launch.output

    received = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in probe.received}
    assert received and all(999 < sec < 1200 for sec, _ in received)  # sim time from our /clock, not wall time
    bag = {}
    for topic, _, _, msg in read_bag(done["bag"]):
        bag.setdefault(topic, []).append(msg)
    assert {"/robot1/joint_states", "/joint_command", "/robot1/base_pose", "/robot1/momask/status"} <= set(bag)
    recorded = bag["/robot1/joint_states"]
    assert len(recorded) >= 2.0 * 60 * 0.9  # 2 s at isaac_sim.yaml's 60 Hz
    for msg in recorded:  # every JointState in the bag is one the subscriber received, value for value
        got = received[(msg.header.stamp.sec, msg.header.stamp.nanosec)]
        assert len(msg.name) == 29 and list(msg.name) == list(got.name)
        assert list(msg.position) == list(got.position) and list(msg.velocity) == list(got.velocity)
    first, last = recorded[0].header.stamp, recorded[-1].header.stamp
    inside = [k for k in received if (first.sec, first.nanosec) <= k <= (last.sec, last.nanosec)]
    assert len(inside) == len(recorded)  # and none of those received while it played is missing
    assert [json.loads(m.data)["state"] for m in bag["/robot1/momask/status"]] == ["playing", "done"]


def test_launch_arguments_override_the_file_only_when_given(ros2_env):
    """use_sim_time:=false beats isaac_sim.yaml's true (no /clock needed then); robot:=default beats h1."""
    probe = Probe("/joint_states", clock=False)
    launch = Launch(ros2_env, "config:=isaac_sim", "robot:=default", "use_sim_time:=false", "device:=cpu")
    try:
        launch.wait_for('"state": "ready"', 90)
        _wait(lambda: len(probe.received) > 10, 30, "JointStates without a /clock")
        sim_time, robot = outputs(ros2(ros2_env, "param", "get", "--no-daemon", "--spin-time", "3",
                                       "/momask_node", "use_sim_time"),
                                  ros2(ros2_env, "param", "get", "--no-daemon", "--spin-time", "3",
                                       "/momask_node", "robot"))
        rc = launch.stop()
    finally:
        launch.kill()
        probe.close()
    assert "Boolean value is: False" in sim_time and "String value is: default" in robot
    stamp = probe.received[-1].header.stamp.sec
    assert abs(stamp - time.time()) < 600  # wall time
    assert rc == 0


def test_launch_failures_end_with_an_error_and_say_why(ros2_env, tmp_path):
    not_params = tmp_path / "plain.yaml"
    not_params.write_text("robot: h1\n")
    cases = {
        "config": (["config:=no_such.yaml"], ["no such parameter file", "isaac_sim.yaml"]),
        "layout": ([f"config:={not_params}"], ["expected 'momask_node: ros__parameters"]),
        "sim_time": (["use_sim_time:=maybe"], ["use_sim_time:=maybe: must be true or false"]),
        # the node dies at start: the launch ends with it, non-zero, after the node's one-line reason
        "description": (["config:=gazebo.yaml", "device:=cpu"],
                        ["[FATAL]", "robot_description_path:=/path/to/h1.xml", "momask_node exited with code 1"]),
        "parameter": (["device:=gpu"], ["[FATAL]", "device='gpu'", "momask_node exited with code 1"]),
    }
    import torch

    if not torch.cuda.is_available():
        cases["no_cuda"] = (["device:=cuda"], ["[FATAL]", "CUDA is not available", "momask_node exited with code 1"])
    if importlib.util.find_spec("mujoco_menagerie") is None:
        cases["menagerie"] = (["robot:=menagerie:unitree_g1", "device:=cpu"],
                              ["pip install mujoco-menagerie", "momask_node exited with code 1"])
    launches = {name: Launch(ros2_env, *args) for name, (args, _) in cases.items()}
    show = ros2(ros2_env, "launch", "momask_ros", "generate.launch.py", "--show-args")
    try:
        codes = {name: launch.finish(60) for name, launch in launches.items()}
        shown = outputs(show)[0]
    finally:
        for launch in launches.values():
            launch.kill()
    for name, (_, expected) in cases.items():
        out = launches[name].output
        assert codes[name] != 0, f"{name}: exit 0\n{out}"
        for text in expected:
            assert text in out, f"{name}: {text!r} not in\n{out}"
    for argument in ("config", "robot", "robot_description_path", "device", "use_sim_time", "record", "namespace"):
        assert f"'{argument}':" in shown


TWIST2 = ROOT.parent / "shared" / "trackers" / "twist2"


class LoopProbe:
    """Records the closed loop's statuses and the measured base pose (this process, this domain)."""

    def __init__(self) -> None:
        import rclpy
        from geometry_msgs.msg import PoseStamped
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import String

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=DOMAIN_ID)
        self.node = rclpy.create_node("sim_launch_probe", context=self.context)
        self.sim, self.tracker, self.momask, self.poses = [], [], [], []
        for topic, store in (("/sim/status", self.sim), ("/tracker/status", self.tracker),
                             ("/momask/status", self.momask)):
            self.node.create_subscription(String, topic, lambda m, s=store: s.append(json.loads(m.data)), DEEP)
        self.node.create_subscription(PoseStamped, "/sim/base_pose", self.poses.append, DEEP)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:
                return

    def close(self) -> None:
        import rclpy

        self._stop.set()
        self._thread.join(timeout=2)
        self.executor.shutdown(timeout_sec=1)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.mark.skipif(not TWIST2.is_dir(), reason=f"tracker files not found at {TWIST2}")
def test_sim_launch_g1_walks_in_physics_with_the_tracker(ros2_env):
    """`sim.launch.py robot:=g1 tracker:=DIR`, then `ros2 topic pub` a walk: generator, tracker and simulator
    in real time; the free-base G1 walks forward, does not fall, and stands again after the motion."""
    probe = LoopProbe()
    launch = Launch(ros2_env, "robot:=g1", f"tracker:={TWIST2}", "device:=cpu", file="sim.launch.py")
    try:
        launch.wait_for("momask_tracker up", 90)
        launch.wait_for('"state": "ready"', 120)
        _wait(lambda: probe.tracker and probe.tracker[-1]["state"] == "standing", 30, "the tracker standing the G1")
        pub = publish_until_accepted(ros2_env, launch, "/momask/command", "a person walks forward length=3s")
        launch.wait_for('"state": "done"', 120)
        _wait(lambda: [s for s in probe.tracker if s["reference"]["phase"] == "blend_out"], 30, "blend out")
        _wait(lambda: probe.tracker[-1]["reference"]["phase"] == "standing", 30, "standing again")
        assert pub.wait(timeout=30) == 0
        rc = launch.stop()
    finally:
        launch.kill()
        probe.close()
    assert rc == 0
    assert not any(s["fallen"] for s in probe.sim) and not any(s["fallen"] for s in probe.tracker)
    playing = next(s for s in probe.momask if s["state"] == "playing")
    x = [p.pose.position.x for p in probe.poses if p.header.stamp.sec + p.header.stamp.nanosec * 1e-9 >= playing["stamp_s"]]
    print(f"\nsim.launch.py walk: base moved {x[-1] - x[0]:.2f} m; sim real-time factor "
          f"{[s['real_time_factor'] for s in probe.sim[-6:]]}; policy {probe.tracker[-1]['policy_ms_mean']} ms")
    assert x[-1] - x[0] > 0.2
    assert {"motion", "blend_out", "standing"} <= {s["reference"]["phase"] for s in probe.tracker}


def test_sim_launch_without_the_tracker_folder_says_how_to_get_it(ros2_env, tmp_path):
    missing = tmp_path / "no_tracker"
    launch = Launch(ros2_env, "robot:=g1", f"tracker:={missing}", file="sim.launch.py")
    try:
        rc = launch.finish(60)
    finally:
        launch.kill()
    assert rc != 0
    assert f"momask-fetch-tracker --dest {missing}" in launch.output and "tracker:=none" in launch.output
