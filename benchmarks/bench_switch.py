"""How smooth a switch between two motions is on the robot: walk -> jog, preempting, over real ROS.

Runs momask_node (demo model, default robot unless told otherwise) in this process over loopback
DDS, sends a walk, then a jog ``--after`` seconds into it, records every JointState and base pose,
and measures, on what was published:

* base speed through the switch: horizontal base speed averaged over a sliding ``--speed-window``
  (about one step, so the gait's own rhythm does not count), its minimum from 0.25 s before to
  1 s after the switch, divided by the walking speed (mean over the 1.5 s before the switch);
* foot sliding: horizontal speed of a foot body while the foot is in contact (its lowest point
  within ``--contact-z`` of the floor in two consecutive samples), mean during the switch
  (-0.25 s .. ``+--window``, which covers the retargeter's smoothing before a continuation and a
  0.5 s blend) against the mean inside the clips (everything else after the first blend-in);
* max joint acceleration and jerk (finite differences on the stream's own stamps) during the
  switch (same span), against the 99th percentile of |acceleration| / |jerk| inside the clips; and,
  as that ratio's own floor, the same max / p99 over windows of the same span inside the clips
  (a motion's peaks: a window of a walk with no switch in it reaches 1.5x as well). Foot sliding is
  also given for each motion apart (a jog's feet slide more than a walk's on the retargeted robot),
  and against the clips it joins (``foot_slide_in_clip_matched_mps``: each contact sample of the
  switch counted at the in-clip sliding of its own motion, the first before the switch frame, the
  second after).

The switch instant is the stamp of the JointState at the new motion's switch frame (status
``playing``: ``switch_stamp_s`` for a continuation, ``stamp_s`` for a blend).

``--switch continue`` (default) is the node's continuation, ``--switch blend`` the blend into a
freshly generated clip (today's behaviour before continuations). Prints one JSON object.

    python benchmarks/bench_switch.py --runs 3
    python benchmarks/bench_switch.py --runs 3 --switch blend
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def foot_tracks(robot, positions: np.ndarray, base: np.ndarray, quats: np.ndarray) -> np.ndarray:
    """(N, 2 feet, 3): each foot body's origin (x, y) and its lowest point's height (z), per sample.

    The origin, not the lowest point, measures sliding: a rolling foot's lowest point jumps from heel
    to toe without the foot sliding at all.
    """
    out = np.zeros((len(positions), len(robot.foot_body_ids), 3))
    for i in range(len(positions)):
        data = robot.forward(robot.full_qpos(positions[i], base[i], quats[i]))
        for k, body in enumerate(robot.foot_body_ids):
            pts = data.xpos[body] + np.asarray(robot.foot_points_body[k]) @ data.xmat[body].reshape(3, 3).T
            out[i, k, :2] = data.xpos[body][:2]
            out[i, k, 2] = pts[:, 2].min()
    return out


def sliding_speed(t: np.ndarray, x: np.ndarray, window: float) -> np.ndarray:
    """Horizontal speed [m/s] over a centred window, at each sample (NaN where the window leaves the data)."""
    out = np.full(len(t), np.nan)
    for i, ti in enumerate(t):
        lo, hi = np.searchsorted(t, ti - window / 2), np.searchsorted(t, ti + window / 2) - 1
        if lo > 0 and hi < len(t) - 1 and t[hi] > t[lo]:
            out[i] = np.linalg.norm(x[hi, :2] - x[lo, :2]) / (t[hi] - t[lo])
    return out


def peak(x: np.ndarray, times: np.ndarray, at_switch: np.ndarray, in_clip: np.ndarray, names: list, t_switch: float,
         unit: str, digits: int) -> dict:
    """The largest |x| (samples, joints) at the switch: which joint, when (from the switch), its value and
    that joint's own in-clip 99th percentile."""
    k = np.flatnonzero(at_switch)
    i, j = np.unravel_index(int(np.argmax(np.abs(x[k]))), x[k].shape)
    return {"joint": names[j], "at_s": round(float(times[k[i]] - t_switch), 3), unit: round(float(x[k[i], j]), digits),
            "in_clip_p99_of_that_joint": round(float(np.percentile(np.abs(x[in_clip, j]), 99)), digits)}


def analyse(robot, js: list, poses: list, t_switch: float, t_start: float, *, speed_window: float,
            contact_z: float, window: float) -> dict:
    tj = np.array([m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in js])
    q = np.array([m.position for m in js])
    tp = np.array([m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in poses])
    p = np.array([[m.pose.position.x, m.pose.position.y, m.pose.position.z] for m in poses])
    quat = np.array([[m.pose.orientation.w, m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z]
                     for m in poses])
    # joint states and poses are published in the same tick with the same stamp
    common, ij, ip = np.intersect1d(np.round(tj, 6), np.round(tp, 6), return_indices=True)
    t, q, p, quat = tj[ij], q[ij], p[ip], quat[ip]
    speed = sliding_speed(t, p, speed_window)
    before = (t > t_switch - 1.5) & (t < t_switch)
    walk_speed = float(np.nanmean(speed[before]))
    around = (t >= t_switch - 0.25) & (t <= t_switch + 1.0)
    dip = float(np.nanmin(speed[around]) / walk_speed)

    def at_switch(times: np.ndarray) -> np.ndarray:
        return (times >= t_switch - 0.25) & (times <= t_switch + window)

    dt = np.diff(t)
    near = at_switch(t[1:])   # samples ending a step inside the switch
    period = float(np.median(dt))
    stamps = {"max_gap_ms_at_switch": round(float(dt[near].max()) * 1e3, 2) if near.any() else None,
              "off_grid_at_switch": int((np.abs(dt[near] - period) > 1e-3).sum()),
              "joint_states_without_pose": int(len(tj) - len(common))}
    vel = np.diff(q, axis=0) / dt[:, None]
    acc = np.diff(vel, axis=0) / (0.5 * (dt[1:] + dt[:-1]))[:, None]
    jerk = np.diff(acc, axis=0) / (0.5 * (t[3:] - t[1:-2]))[:, None]
    ta, tjk = t[1:-1], t[1:-2] + 0.5 * dt[1:-1]
    a_sw = at_switch(ta)
    a_in = (ta > t_start + 0.6) & ~a_sw
    j_sw = at_switch(tjk)
    j_in = (tjk > t_start + 0.6) & ~j_sw
    acc_p99 = float(np.percentile(np.abs(acc[a_in]), 99))
    names = list(js[0].name)
    spike = peak(acc, ta, a_sw, a_in, names, t_switch, "acc_rad_s2", 1)
    jerk_p99 = float(np.percentile(np.abs(jerk[j_in]), 99))
    jerk_spike = peak(jerk, tjk, j_sw, j_in, names, t_switch, "jerk_rad_s3", 0)
    # the metric's own floor: the same max / p99 over windows of the same span inside the clips
    span, floor, jerk_floor = 0.25 + window, [], []
    for s in np.arange(t_start + 0.6, ta[-1] - span, 0.1):
        m = (ta >= s) & (ta <= s + span)
        if m.any() and not (m & a_sw).any():
            floor.append(float(np.abs(acc[m]).max()) / acc_p99)
        m = (tjk >= s) & (tjk <= s + span)
        if m.any() and not (m & j_sw).any():
            jerk_floor.append(float(np.abs(jerk[m]).max()) / jerk_p99)

    feet = foot_tracks(robot, q, p, quat)
    contact = feet[:, :, 2] < contact_z
    both = contact[1:] & contact[:-1]
    slide = np.linalg.norm(np.diff(feet[:, :, :2], axis=0), axis=-1) / dt[:, None]
    s_sw = near[:, None] & both
    s_in = ((t[1:] > t_start + 0.6) & ~near)[:, None] & both
    s_before = ((t[1:] > t_start + 0.6) & (t[1:] < t_switch - 0.25))[:, None] & both
    s_after = (t[1:] > t_switch + window)[:, None] & both
    # "no worse than inside the clips it joins": each contact sample of the switch is held against the
    # in-clip sliding of the motion it belongs to (before the switch frame: the first motion's, after:
    # the second's), since a walk -> jog switch holds a jog start whose feet slide as the jog's do
    n_before = int((s_sw & (t[1:] < t_switch)[:, None]).sum())
    n_after = int(s_sw.sum()) - n_before
    matched = None
    if s_before.any() and s_after.any() and s_sw.any():
        matched = (n_before * slide[s_before].mean() + n_after * slide[s_after].mean()) / (n_before + n_after)
    return {
        "walk_speed_mps": round(walk_speed, 3),
        "min_speed_through_switch_x_walk": round(dip, 3),
        "max_acc_at_switch_x_in_clip_p99": round(float(np.abs(acc[a_sw]).max()) / acc_p99, 2),
        "max_jerk_at_switch_x_in_clip_p99": round(float(np.abs(jerk[j_sw]).max()) / jerk_p99, 2),
        "in_clip_acc_p99_rad_s2": round(acc_p99, 1),
        "in_clip_window_max_acc_x_p99_median": round(float(np.median(floor)), 2) if floor else None,
        "in_clip_window_max_acc_x_p99_max": round(float(np.max(floor)), 2) if floor else None,
        "in_clip_window_max_jerk_x_p99_median": round(float(np.median(jerk_floor)), 2) if jerk_floor else None,
        "max_acc_at_switch": spike,
        "in_clip_jerk_p99_rad_s3": round(jerk_p99, 0),
        "max_jerk_at_switch": jerk_spike,
        "foot_slide_at_switch_mps": round(float(slide[s_sw].mean()), 4) if s_sw.any() else None,
        "foot_slide_in_clip_mps": round(float(slide[s_in].mean()), 4) if s_in.any() else None,
        "foot_slide_first_motion_mps": round(float(slide[s_before].mean()), 4) if s_before.any() else None,
        "foot_slide_second_motion_mps": round(float(slide[s_after].mean()), 4) if s_after.any() else None,
        "foot_slide_in_clip_matched_mps": round(float(matched), 4) if matched is not None else None,
        "foot_slide_at_switch_x_matched": round(float(slide[s_sw].mean() / matched), 3) if matched else None,
        "contact_samples_at_switch": int(s_sw.sum()),
        "stamps": stamps,
        "contact_samples_at_switch_after_switch_frame": n_after,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=None, help="bundle path (default: the packaged demo)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--robot", default="default")
    ap.add_argument("--switch", choices=("continue", "blend"), default="continue")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--first", default="a person walks forward length=8s")
    ap.add_argument("--second", default="a person jogs forward length=4s")
    ap.add_argument("--after", type=float, default=3.0, help="seconds into the first motion")
    ap.add_argument("--blend-s", type=float, default=0.5)
    ap.add_argument("--window", type=float, default=0.5, help="the switch spans -0.25 s .. +window [s]")
    ap.add_argument("--speed-window", type=float, default=0.5)
    ap.add_argument("--contact-z", type=float, default=0.01)
    ap.add_argument("--src", default=str(ROOT / "src"), help="sources to measure (another checkout's src)")
    args = ap.parse_args()
    sys.path.insert(0, args.src)
    sys.path.insert(1, str(ROOT / "test"))
    from momask_ros.stream.pipeline import MotionPipeline
    from momask_ros.robot.model import load_robot
    from ros_harness import Harness

    pipeline = MotionPipeline.from_bundle(args.bundle, robot=args.robot, device=args.device)
    robot = load_robot(args.robot)
    params = {"control_rate": 50.0, "blend_s": args.blend_s, "command_burst": 100}
    if args.switch == "blend":
        params["switch_mode"] = "blend"
    try:
        h = Harness(pipeline, params)
    except Exception:  # sources from before continuations have no switch_mode: they always blend
        params.pop("switch_mode", None)
        h = Harness(pipeline, params)
    rows = []
    try:
        for run in range(args.runs):
            n0, p0 = len(h.joint_states), len(h.poses)
            h.send(f"{args.first} seed={run}")
            first = h.wait_for(lambda: h.by_state("playing", text=args.first.split(" length=")[0])[run:], 30.0)[0]
            time.sleep(args.after)
            h.send(f"{args.second} seed={100 + run}")
            text2 = args.second.split(" length=")[0]
            playing = h.wait_for(lambda: h.by_state("playing", text=text2)[run:], 30.0)[0]
            h.wait_for(lambda: h.by_state("done", text=text2)[run:], 30.0)
            t_switch = playing.get("switch_stamp_s") or playing.get("stamp_s") or h.received_at(playing)
            t_start = first.get("stamp_s") or h.received_at(first)
            row = analyse(robot, h.joint_states[n0:], h.poses[p0:], t_switch, t_start,
                          speed_window=args.speed_window, contact_z=args.contact_z, window=args.window)
            row.update(switch=playing.get("switch", "blend"), latency_ms=playing.get("latency_ms"),
                       switch_reason=playing.get("switch_reason"), slip_frames=playing.get("switch_slip_frames"))
            rows.append(row)
            h.stop()
            time.sleep(0.5)
    finally:
        h.close()

    def mean(key):
        vals = [r[key] for r in rows if r.get(key) is not None]
        return round(float(np.mean(vals)), 3) if vals else None

    report = {"machine": {"cpu_count": os.cpu_count(), "note": "shared machine"}, "src": args.src,
              "switch_mode": args.switch, "robot": args.robot, "first": args.first, "second": args.second,
              "after_s": args.after, "runs": len(rows),
              "mean": {k: mean(k) for k in rows[0] if any(isinstance(r[k], (int, float)) for r in rows)},
              "worst_min_speed_x_walk": min(r["min_speed_through_switch_x_walk"] for r in rows),
              "worst_acc_x_p99": max(r["max_acc_at_switch_x_in_clip_p99"] for r in rows),
              "worst_jerk_x_p99": max(r["max_jerk_at_switch_x_in_clip_p99"] for r in rows),
              "worst_foot_slide_x_matched": max((r["foot_slide_at_switch_x_matched"] for r in rows
                                                 if r["foot_slide_at_switch_x_matched"] is not None), default=None),
              "per_run": rows}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
