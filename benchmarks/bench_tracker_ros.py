"""The closed loop through ROS: speed of `momask_tracker` + `momask_sim` (1 ms physics) on one core.

    OMP_NUM_THREADS=1 python benchmarks/bench_tracker_ros.py [--tracker-dir DIR] [--core 0] [--json out.json]

Both nodes run as processes pinned to one CPU core (`--core`), the TWIST2 G1 tracking the synthetic 0.5 m/s
walk (momask_ros.tracker.synthetic, streamed ahead as momask_node streams a motion) for `--seconds` of
simulated time, at each policy rate (50, 100 Hz) and with each simulator clock:

* real_time (real_time_factor 1): the achieved real-time factor (target >= 1x: the loop keeps up), and
  the controller's answer delay: from a state's joint_states to the PD command stamped with it, both as
  this probe received them [ms, median and 95th percentile];
* lock_step (as fast as the tracker answers): the real-time factor the pair reaches, i.e. the headroom.

Also the policy's own inference time (onnxruntime, one thread, this process on the same core) and the
tracker's controller tick as its node measured it (policy + reference + observation) [ms]. Without
tracker files it prints a skip line and exits 0.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bench_tracker import policy_call_ms  # noqa: E402  (this folder: the same timing of one policy call)

SHARED = ROOT.parent / "shared" / "trackers" / "twist2"
DOMAIN_ID = int(os.environ.get("MOMASK_BENCH_DOMAIN_ID", 150 + os.getpid() % 50))


def _process(module: str, namespace: str, params: dict, core: int) -> subprocess.Popen:
    args = [x for k, v in params.items() for x in ("-p", f"{k}:={str(v).lower() if isinstance(v, bool) else v}")]
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    return subprocess.Popen([sys.executable, "-m", module, "--ros-args", "-r", f"__ns:={namespace}", *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: os.sched_setaffinity(0, {core}))


def run_loop(folder: Path, rate: float, clock: str, seconds: float, core: int, index: int) -> dict:
    import rclpy
    from geometry_msgs.msg import PoseStamped, TwistStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String

    from momask_ros.ros.messages import pose_stamped_msg, time_msg
    from momask_ros.tracker import load_spec
    from momask_ros.tracker.synthetic import synthetic_walk

    spec = load_spec()
    qos = QoSProfile(depth=2000, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    ns = f"/bench_tracker_{os.getpid()}_{index}"
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    node = rclpy.create_node("bench_probe", context=context, namespace=ns)
    sim_status, tracker_status, poses, commands, states = [], [], [], {}, {}
    node.create_subscription(String, "sim/status", lambda m: sim_status.append((time.perf_counter(), json.loads(m.data))), qos)
    node.create_subscription(String, "tracker/status", lambda m: tracker_status.append(json.loads(m.data)), qos)
    node.create_subscription(PoseStamped, "sim/base_pose", poses.append, qos)
    node.create_subscription(JointState, "joint_states",
                             lambda m: states.setdefault(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9,
                                                         time.perf_counter()), qos)
    node.create_subscription(JointState, "tracker/pd_command",
                             lambda m: commands.setdefault(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9,
                                                           time.perf_counter()), qos)
    pubs = [node.create_publisher(kind, topic, qos) for kind, topic in (
        (JointState, "reference/joint_states"), (PoseStamped, "reference/base_pose"),
        (TwistStamped, "reference/base_twist"), (String, "momask/status"))]
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinning = threading.Event()
    spinning.set()

    def spin():
        while spinning.is_set():
            try:
                executor.spin_once(timeout_sec=0.05)
            except Exception:
                return

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    procs = [_process("momask_ros.ros.tracker_node", ns, {"tracker": folder, "policy_rate": float(rate)}, core)]
    try:
        deadline = time.monotonic() + 120
        while not all(p.get_subscription_count() for p in pubs):
            if time.monotonic() > deadline:
                raise RuntimeError("the tracker node did not subscribe")
            time.sleep(0.05)
        walk = synthetic_walk(spec, duration_s=max(1.0, seconds - 4.0))
        v = np.gradient(walk.base_pos_world, walk.times_s, axis=0)
        for k, t in enumerate(walk.times_s):
            stamp = time_msg(0.5 + t)
            js = JointState(name=list(spec.joint_names), position=walk.joint_pos_rad[k].tolist())
            js.header.stamp = stamp
            tw = TwistStamped()
            tw.header.stamp = stamp
            tw.twist.linear.x, tw.twist.linear.y = float(v[k, 0]), float(v[k, 1])
            pubs[0].publish(js)
            pubs[1].publish(pose_stamped_msg(walk.base_pos_world[k], walk.base_quat_wxyz[k], stamp, "odom"))
            pubs[2].publish(tw)
        pubs[3].publish(String(data=json.dumps({"state": "playing", "id": 1, "stamp_s": 0.5, "switch": "start"})))
        time.sleep(1.0)
        sim = {"robot": "g1", "tracker": folder, "mode": "tracked", "clock": clock, "publish_clock": True,
               "real_time_factor": 1.0 if clock == "real_time" else 0.0, "publish_rate": float(rate)}
        procs.append(_process("momask_ros.ros.sim_node", ns, sim, core))
        deadline = time.monotonic() + 60 + 4 * seconds
        while not sim_status or sim_status[-1][1]["sim_time_s"] < seconds:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"the loop stalled: {sim_status[-1:]}")
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        spinning.clear()
        thread.join(timeout=2)
        executor.shutdown(timeout_sec=1)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    moving = [(w, s["sim_time_s"]) for w, s in sim_status if s["sim_time_s"] > 0.2]
    (w0, s0), (w1, s1) = moving[0], moving[-1]
    x = [p.pose.position.x for p in poses]
    last = tracker_status[-1]
    delay = np.array([commands[t] - states[t] for t in states if t in commands and t > 0.2]) * 1e3
    return {"policy_hz": rate, "clock": clock, "sim_s": round(s1, 2), "realtime_factor": round((s1 - s0) / (w1 - w0), 2),
            "fell": any(s["fallen"] for _, s in sim_status), "walked_m": round(x[-1] - x[0], 2),
            "tick_ms_mean": last["policy_ms_mean"], "tick_ms_max": last["policy_ms_max"],
            "answer_ms_median": round(float(np.median(delay)), 2), "answer_ms_p95": round(float(np.percentile(delay, 95)), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracker-dir", type=Path, default=None,
                        help="tracker folder (default ../shared/trackers/twist2, else the fetch default)")
    parser.add_argument("--seconds", type=float, default=8.0, help="simulated seconds per run")
    parser.add_argument("--core", type=int, default=0, help="the CPU core both nodes are pinned to")
    parser.add_argument("--rates", type=float, nargs="+", default=[50.0, 100.0])
    parser.add_argument("--clocks", nargs="+", default=["real_time", "lock_step"])
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args(argv)
    from momask_ros.tracker import TrackerError, default_tracker_dir, load_tracker

    folder = args.tracker_dir or (SHARED if SHARED.is_dir() else default_tracker_dir())
    try:
        bundle = load_tracker(folder)
    except TrackerError as err:
        print(f"[skip] {err}")
        return 0
    os.sched_setaffinity(0, {args.core})
    ms = policy_call_ms(bundle, 300)
    mean, p99 = float(np.mean(ms)), float(np.percentile(ms, 99))
    print(f"policy inference (onnxruntime, 1 thread, core {args.core}): {mean:.2f} ms mean, {p99:.2f} ms p99 "
          f"-> {mean * 50 / 10:.1f} % of a core at 50 Hz, {mean * 100 / 10:.1f} % at 100 Hz")
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    rows = [{"policy_ms_mean": round(mean, 3), "policy_ms_p99": round(p99, 3)}]
    print(f"{'rate':>6} {'clock':>10} {'sim s':>6} {'RTF':>6} {'fell':>5} {'walked m':>9} {'tick ms':>8} {'max ms':>7} "
          f"{'answer ms (median/p95)':>23}")
    for index, (rate, clock) in enumerate((r, c) for r in args.rates for c in args.clocks):
        row = run_loop(folder, rate, clock, args.seconds, args.core, index)
        rows.append(row)
        print(f"{rate:>6g} {clock:>10} {row['sim_s']:>6.1f} {row['realtime_factor']:>6.2f} {str(row['fell']):>5} "
              f"{row['walked_m']:>9.2f} {row['tick_ms_mean']:>8.2f} {row['tick_ms_max']:>7.1f} "
              f"{row['answer_ms_median']:>14.1f} / {row['answer_ms_p95']:.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
