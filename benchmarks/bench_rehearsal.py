"""``physical_checks: rehearse`` benchmark: does rehearsal keep every fall away from the live robot, what
does it cost, and does it agree with the live simulator?

    OMP_NUM_THREADS=1 nice python benchmarks/bench_rehearsal.py [--parts latency,agreement,stream]
        [--skills backflip,walk] [--seeds 0-2] [--latency-commands 6] [--stream-s 60] [--json out.json]

Everything runs the node's own conductor (`momask_ros.stream.conductor`) with the packaged demo model on
Unitree's G1 (``--description``) and TWIST2 (``--tracker``); no DDS.

* **latency**: the node's threads on the wall clock, ticking at 50 Hz: the same commands sent one at a
  time to an idle node under ``off``, ``warn`` and ``rehearse``; the ``latency_ms`` of each ``playing``
  status (command received -> first JointState). Target: rehearse <= off + 0.5 s. Also the time the
  playback held a pose waiting for the rehearsal (``held_s``: periods whose sample repeated the one
  before while a motion played).
* **agreement**: each motion (the skill's first demo caption at each seed; by default the acrobatic skills
  and four ordinary ones) played twice in the tracked simulator, lock-step: conductor samples ->
  `LiveReference`/`Tracker` -> `Simulator` (`momask_ros.stream.tracked_loop`), once with the checks off
  (does the live robot fall?) and once under rehearse (the verdict: ok, cut, refused; and does the live
  robot fall?). Prints how often the verdict agrees with the live run, the false alarms (cut or refused,
  would not have fallen), the misses (passed, fell live without the gate), and the live falls under
  rehearse (target 0).
* **stream**: a continuous stream under rehearse: ``--stream-s`` seconds (60) of 12 random in-scope
  commands at random times, mixing preempts, queued commands and a sequence, through the conductor
  driving the tracked simulator in lock-step; whether the robot fell and its final state (target: standing).

Without the tracker or G1 files it prints a skip line.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared"

from bench_tracker import ACROBATICS, seed_list  # noqa: E402  (this folder: the same skills, the same seeds)

ORDINARY = ["walk", "jog", "kick", "dance_a"]
PERIOD_NS = 20_000_000
SETTLE_S = 2.0
#: The agreement runs let the robot stand this long under its tracker before the command [s]: the live
#: tracker then remembers standing, as on a robot (a rehearsal from a robot standing still assumes so).
STAND_S = 2.0


class World:
    """The demo model's pipeline on the G1, the tracker and a rehearser, loaded once."""

    def __init__(self, tracker: Path, description: Path) -> None:
        import torch

        from momask_model.generation.bundle import load_bundle
        from momask_model.generation.loading import default_bundle_path
        from momask_ros.robot.model import load_robot
        from momask_ros.stream.pipeline import MotionPipeline
        from momask_ros.stream.rehearsal_setup import load_rehearsal
        from momask_ros.stream.rehearsing import Rehearser
        from momask_ros.tracker import load_tracker

        torch.set_num_threads(1)
        self.model = load_bundle(default_bundle_path(), "cpu")
        self.robot = load_robot("g1", description=description)
        self.bundle = load_tracker(tracker)
        self.pipeline = MotionPipeline.for_model(self.model, robot=self.robot)
        names = self.pipeline.joint_space.names
        self.rehearser = Rehearser(load_rehearsal(tracker, names, robot="g1"), joint_names=names)

    def conductor(self, mode: str, now_ns: int, clock, **params):
        from momask_ros.stream.conductor import Conductor
        from momask_ros.stream.settings import StreamSettings

        settings = StreamSettings.from_parameters({"physical_checks": mode, "command_burst": 20, **params})
        return Conductor(self.pipeline, settings, now_ns=now_ns, clock=clock,
                         rehearser=self.rehearser if mode == "rehearse" else None)


# ---------------------------------------------------------------------------------------------- latency
def latency(world: World, texts: list[str]) -> dict:
    """First-JointState latency per mode, the node's worker threads on the wall clock."""
    out = {}
    for mode in ("off", "warn", "rehearse"):
        conductor = world.conductor(mode, time.monotonic_ns(), time.perf_counter)
        conductor.start(warm_up=True)
        rows = []
        try:
            _run_for(conductor, 1.0, [])
            for k, text in enumerate(texts):
                statuses: list[dict] = []
                conductor.command(text, time.monotonic_ns())
                held = _run_until_idle(conductor, statuses, 40.0)
                playing = [s for s in statuses if s["state"] == "playing"]
                rejected = [s for s in statuses if s["state"] == "rejected"]
                rows.append({"text": text, "latency_ms": playing[0]["latency_ms"] if playing else None,
                             "generation_ms": playing[0].get("generation_ms") if playing else None,
                             "held_s": round(held, 2), "refused": bool(rejected and not playing),
                             "cut": any(s.get("cut") for s in statuses)})
                _run_for(conductor, 0.5, [])
        finally:
            conductor.shutdown()
        lat = [r["latency_ms"] for r in rows if r["latency_ms"] is not None]
        out[mode] = {"rows": rows, "median_ms": statistics.median(lat) if lat else None,
                     "mean_ms": statistics.fmean(lat) if lat else None}
        print(f"[latency] {mode:8s} first JointState: median {out[mode]['median_ms']:.0f} ms, mean "
              f"{out[mode]['mean_ms']:.0f} ms over {len(lat)} commands; held waiting for rehearsal "
              f"{sum(r['held_s'] for r in rows):.2f} s in all", flush=True)
    added = [(r["latency_ms"] - o["latency_ms"]) for r, o in zip(out["rehearse"]["rows"], out["off"]["rows"])
             if r["latency_ms"] is not None and o["latency_ms"] is not None]
    out["added_ms"] = {"median": statistics.median(added) if added else None,
                       "max": max(added) if added else None}
    if added:
        print(f"[latency] rehearse - off, same commands: median +{statistics.median(added):.0f} ms, "
              f"worst +{max(added):.0f} ms (target <= +500 ms)", flush=True)
    return out


def _tick(conductor, statuses: list[dict]):
    out = conductor.tick(time.monotonic_ns())
    statuses += [dict(s.fields, state=s.state) for s in out.statuses]
    return out


def _run_for(conductor, seconds: float, statuses: list[dict]) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        _tick(conductor, statuses)
        time.sleep(0.02)


def _run_until_idle(conductor, statuses: list[dict], timeout_s: float) -> float:
    """Tick at 50 Hz until the command ended; the seconds a playing motion held a repeated pose."""
    end, held, last = time.perf_counter() + timeout_s, 0.0, None
    next_tick = time.perf_counter()
    while time.perf_counter() < end:
        out = _tick(conductor, statuses)
        for p in out.samples:
            if p.motion_id is not None and last is not None and np.array_equal(p.sample.positions, last):
                held += 0.02
            last = p.sample.positions
        snap = conductor.snapshot()
        finals = [s for s in statuses if s["state"] in ("done", "rejected")]
        if finals and snap["playing"] is None and not snap["waiting"] and not snap["generating"]:
            return held
        next_tick += 0.02
        time.sleep(max(0.0, next_tick - time.perf_counter()))
    return held


# ---------------------------------------------------------------------------------------------- lock-step
class LockStep:
    """A conductor on a fake clock driving the tracked simulator, one 20 ms period at a time."""

    def __init__(self, world: World, mode: str, **params) -> None:
        from momask_ros.stream.tracked_loop import TrackedLoop

        self.now_ns = 10**12
        self.conductor = world.conductor(mode, self.now_ns, lambda: self.now_ns * 1e-9, **params)
        self.loop = TrackedLoop(world.bundle, t0_s=self.now_ns * 1e-9)
        world.rehearser.state = self.loop.simulation.state  # the robot's measured state, as the node's topics give it
        world.rehearser.memory = self.loop.tracker.memory  # its tracker's memory, as `tracker/memory` gives it
        self.names = world.pipeline.joint_space.names
        self.statuses: list[dict] = []

    def tick(self) -> None:
        self.conductor.run_pending()
        out = self.conductor.tick(self.now_ns)
        for p in out.samples:
            s = p.sample
            self.loop.push(p.stamp_ns * 1e-9, self.names, s.positions, s.base_position, s.base_quat_wxyz,
                           velocities=s.velocities, base_linear_velocity=s.base_linear_velocity,
                           base_angular_velocity=s.base_angular_velocity)
        for s in out.statuses:
            fields = dict(s.fields, state=s.state)
            self.statuses.append(fields)
            self.loop.status(s.state, s.fields)
        self.loop.step()
        self.now_ns += PERIOD_NS

    def run(self, seconds: float) -> None:
        for _ in range(int(round(seconds / 0.02))):
            self.tick()

    def until_idle(self, timeout_s: float = 40.0) -> None:
        for _ in range(int(timeout_s / 0.02)):
            self.tick()
            snap = self.conductor.snapshot()
            if any(s["state"] in ("done", "rejected") for s in self.statuses) and snap["playing"] is None \
                    and not snap["waiting"] and not snap["generating"]:
                return


def agreement(world: World, skills: list[str], seeds: list[int]) -> dict:
    from momask_model.data.mocap.demo_skills import CAPTIONS

    rows = []
    for skill in skills:
        for seed in seeds:
            text = f"{CAPTIONS[skill][0]} seed={seed}"
            runs = {}
            for mode in ("off", "rehearse"):
                t0 = time.perf_counter()
                ls = LockStep(world, mode)
                ls.run(STAND_S)  # standing under its tracker first, as a robot is before its first command
                ls.conductor.command(text, ls.now_ns)
                ls.until_idle()
                ls.run(SETTLE_S)
                rep = ls.loop.report
                rejected = [s for s in ls.statuses if s["state"] == "rejected" and s.get("id") == 1]
                played = any(s["state"] == "playing" for s in ls.statuses)
                verdict = "ok"
                if rejected and rejected[0].get("reason") == "falls_in_rehearsal":
                    verdict = "refused" if not played else "cut"
                elif rejected:
                    verdict = f"rejected:{rejected[0].get('reason')}"
                runs[mode] = {"fell": rep.fell or rep.sim_fell, "fall_time_s": rep.fall_time_s, "verdict": verdict,
                              "joint_error_rad": rep.mean_joint_error_rad, "wall_s": time.perf_counter() - t0}
            off, on = runs["off"], runs["rehearse"]
            row = {"skill": skill, "seed": seed, "text": text, "live_fell": off["fell"], "verdict": on["verdict"],
                   "fell_under_rehearse": on["fell"], "agree": (on["verdict"] != "ok") == off["fell"],
                   "joint_error_off": off["joint_error_rad"], "joint_error_rehearse": on["joint_error_rad"]}
            rows.append(row)
            print(f"[agreement] {skill:15s} seed {seed}: live (off) {'FELL' if off['fell'] else 'up  '}; "
                  f"rehearse {on['verdict']:8s} live {'FELL' if on['fell'] else 'up'}"
                  f"{'' if row['agree'] else '  <- disagree'}", flush=True)
    n = len(rows)
    alarms = [r for r in rows if r["verdict"] != "ok" and not r["live_fell"]]
    misses = [r for r in rows if r["verdict"] == "ok" and r["live_fell"]]
    live_falls = [r for r in rows if r["fell_under_rehearse"]]
    flagged = [r for r in rows if r["verdict"] != "ok"]
    summary = {"motions": n, "agree": sum(r["agree"] for r in rows),
               "live_fell_without_gate": sum(r["live_fell"] for r in rows),
               "flagged": len(flagged), "false_alarms": len(alarms), "misses": len(misses),
               "live_falls_under_rehearse": len(live_falls)}
    print(f"[agreement] {summary['agree']}/{n} verdicts agree with the live run; {summary['live_fell_without_gate']} "
          f"of {n} fall live without the gate; rehearsal flags {len(flagged)} (cut or refused), of which "
          f"{len(alarms)} false alarms; {len(misses)} misses; live falls under rehearse: {len(live_falls)} (target 0)",
          flush=True)
    return {"rows": rows, "summary": summary}


def stream(world: World, seconds: float, seed: int = 7, log: bool = False) -> dict:
    """Random in-scope commands at random times, preempting, queued and one sequence, under rehearse."""
    from momask_model.data.mocap.demo_skills import CAPTIONS
    from momask_ros.stream.settings import StreamSettings

    rng = random.Random(seed)
    skills = list(CAPTIONS)
    times = sorted(rng.uniform(0.5, seconds - 12.0) for _ in range(12))
    seq = rng.randrange(12)
    plan = []
    for k, t in enumerate(times):
        mode = "queue" if k % 3 == 1 else "preempt"
        if k == seq:
            text = f"{CAPTIONS['walk'][0]} length=3s | {CAPTIONS[rng.choice(skills)][0]}"
        else:
            text = rng.choice(CAPTIONS[rng.choice(skills)])
        plan.append((t, mode, f"{text} seed={rng.randrange(100)}" if " | " not in text else text))
    ls = LockStep(world, "rehearse", seed=seed)  # a command without seed= draws from it: reproducible
    wall = time.perf_counter()
    print(f"[stream] seed {seed}:", flush=True)
    k = 0
    base = {"physical_checks": "rehearse", "command_burst": 20, "seed": seed}
    while ls.loop.time_s < seconds:
        while k < len(plan) and plan[k][0] <= ls.loop.time_s:
            _, mode, text = plan[k]
            ls.conductor.configure(StreamSettings.from_parameters({**base, "queue_mode": mode}))
            ls.conductor.command(text, ls.now_ns)
            print(f"[stream] {ls.loop.time_s:5.1f} s  {mode:7s} {text!r}", flush=True)
            k += 1
        seen = len(ls.statuses)
        ls.tick()
        if log and round(ls.loop.time_s / 0.02) % 25 == 0:
            print(f"[stream] {ls.loop.time_s:5.1f} s    tilt {ls.loop.report.tilt_rad:.2f}", flush=True)
        for st in ls.statuses[seen:] if log else ():
            if st["state"] in ("playing", "done", "rejected"):
                print(f"[stream] {ls.loop.time_s:5.1f} s    id {st.get('id')} {st['state']} {st.get('reason', '')} "
                      f"{st.get('stops_at_s', '')} tilt {ls.loop.report.tilt_rad:.2f}", flush=True)
    rep = ls.loop.report
    finals = {}
    for s in ls.statuses:
        if s["state"] in ("done", "rejected", "stopped") and s.get("id") is not None:
            finals.setdefault(s["id"], (s["state"], s.get("reason"), s.get("cut")))
    out = {"seconds": seconds, "commands": plan, "fell": rep.fell or rep.sim_fell, "fall_time_s": rep.fall_time_s,
           "final_base_height_m": rep.base_height_m, "final_tilt_rad": rep.tilt_rad,
           "standing": rep.standing and rep.base_height_m > 0.6 and rep.tilt_rad < 0.3,
           "tracker_state": ls.loop.tracker.state.value, "finals": {str(k): v for k, v in finals.items()},
           "mean_joint_error_rad": rep.mean_joint_error_rad, "wall_s": time.perf_counter() - wall}
    cut = sum(1 for v in finals.values() if v[1] == "falls_in_rehearsal")
    print(f"[stream] seed {seed}: {seconds:.0f} s, {len(plan)} commands ({sum(1 for v in finals.values() if v[0] == 'done')} done, "
          f"{cut} cut or refused by rehearsal): fell {out['fell']}"
          f"{f' (at {rep.fall_time_s:.1f} s)' if rep.fall_time_s is not None else ''}; "
          f"final base height {rep.base_height_m:.3f} m, "
          f"tilt {rep.tilt_rad:.3f} rad, tracker {out['tracker_state']} -> "
          f"{'standing' if out['standing'] else 'NOT standing'}; joint error {rep.mean_joint_error_rad:.3f} rad; "
          f"{out['wall_s']:.0f} s wall", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="latency,agreement,stream")
    p.add_argument("--tracker", type=Path, default=SHARED / "trackers" / "twist2")
    p.add_argument("--description", type=Path, default=SHARED / "data" / "robots" / "unitree_g1" / "g1_29dof.xml")
    p.add_argument("--skills", default=",".join(ACROBATICS + ORDINARY))
    p.add_argument("--seeds", type=seed_list, default="0-2")
    p.add_argument("--latency-commands", type=int, default=6)
    p.add_argument("--stream-s", type=float, default=60.0)
    p.add_argument("--stream-seeds", type=seed_list, default="7",
                   help="one continuous stream per seed (its random commands): '7', '1-12' or '13-21,23'")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--stream-log", action="store_true", help="print each status of the stream with the robot's tilt")
    args = p.parse_args(argv)
    if not (args.tracker.is_dir() and args.description.is_file()):
        print(f"[skip] rehearsal benchmark: needs {args.tracker} and {args.description}")
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import logging

    logging.getLogger("momask_ros.tracker.controller").setLevel(logging.ERROR)  # a fall per rehearsed fall
    world = World(args.tracker, args.description)
    parts = set(args.parts.split(","))
    result = {}
    if "latency" in parts:
        from momask_model.data.mocap.demo_skills import CAPTIONS

        order = ["walk", "kick", "jog", "punch", "cartwheel", "dance_a", "jump", "backflip"]
        texts = [f"{CAPTIONS[s][0]} seed={k}" for k, s in enumerate(order[:args.latency_commands])]
        result["latency"] = latency(world, texts)
    if "agreement" in parts:
        result["agreement"] = agreement(world, args.skills.split(","), args.seeds)
    if "stream" in parts:
        result["stream"] = [stream(world, args.stream_s, seed, args.stream_log) for seed in args.stream_seeds]
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
