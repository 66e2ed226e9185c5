"""Physical checks and self-collision: statics that must hold, the real clip, the CLI, the node's gate."""
import json
import time

import numpy as np
import pytest

from momask_ros.physics.checks import MotionChecker, Thresholds, window_decision
from momask_ros.retarget.retargeter import Retargeter
from momask_ros.robot.model import load_robot, packaged_profile_path
from momask_ros.robot.profile import ProfileError, RobotProfile
from momask_ros.robot.self_collision import SelfCollisionMeter, robot_pair_classes, tree_joint_distance


def standing(robot, n=20):
    t = np.arange(n) / 50.0
    return (t, np.tile(robot.rest_positions, (n, 1)), np.tile(robot.rest_qpos[robot.base_qpos_index:][:3], (n, 1)),
            np.tile([1.0, 0, 0, 0], (n, 1)), np.ones((n, 2), bool))


def test_standing_still_is_balanced_and_within_limits():
    robot = load_robot("default")
    report = MotionChecker(robot).check(*standing(robot))
    assert report.supported_samples == 20 and report.zmp_inside_fraction == 1.0
    assert report.peak_torque_ratio.max() < 0.3 and report.foot_slide_max_mm == 0.0
    assert report.self_collision.depth_m == 0.0 and not report.failures()
    # the ZMP of a still robot is under its centre of mass
    import mujoco

    data = robot.forward(robot.rest_qpos)
    mujoco.mj_comPos(robot.model, data)
    assert np.allclose(report.zmp_xy[5], data.subtree_com[robot.base_body_id][:2], atol=5e-3)


def test_a_robot_falling_over_is_out_of_balance_and_a_heavy_limit_is_reported():
    robot = load_robot("default")
    t, q, b, quat, c = standing(robot, 30)
    b = b.copy()
    b[:, 0] += 0.5 * 3.0 * t ** 2        # the whole body accelerates forward at 3 m/s^2 on planted feet
    report = MotionChecker(robot).check(t, q, b, quat, c)
    assert report.zmp_inside_fraction < 0.5 and report.zmp_worst_outside_m > 0.05
    assert any("balance" in f for f in report.failures())
    assert report.failures(Thresholds(max_torque_ratio=1e-3))[0].startswith("torque")


def test_without_foot_contact_balance_is_not_evaluated_never_ok():
    robot = load_robot("default")
    t, q, b, quat, _ = standing(robot)
    report = MotionChecker(robot).check(t, q, b + [0.0, 0.0, 0.5], quat, np.zeros((len(t), 2), bool))  # in the air
    assert report.supported_samples == 0 and not report.balance_evaluated
    summary = report.summary()
    assert summary["zmp_inside_fraction"] is None and summary["not_evaluated"][0].startswith("balance not evaluated")
    assert json.loads(json.dumps(report.as_dict()))["zmp_inside_fraction"] is None  # strict JSON, no NaN
    standing_report = MotionChecker(robot).check(*standing(robot))
    assert standing_report.balance_evaluated and standing_report.summary()["not_evaluated"] == []


def test_momask_check_says_balance_not_evaluated_instead_of_ok(shared_data, tmp_path, capsys):
    from momask_ros.tools.check import main

    motion = np.load(shared_data / "humanml3d_sample/new_joints/012314.npy")
    floating = tmp_path / "floating.npy"
    np.save(floating, motion + np.array([0.0, 1.0, 0.0]))  # a metre up: no foot ever on the floor
    assert main([str(floating), "--robot", "default"]) == 0
    text = capsys.readouterr().out
    assert "balance: not evaluated" in text and "0 supported samples" in text
    assert "verdict: OK" not in text and "% of 0 supported" not in text


def test_a_torque_or_balance_failure_says_what_it_means():
    robot = load_robot("default")
    t, q, b, quat, c = standing(robot, 30)
    b = b.copy()
    b[:, 0] += 0.5 * 3.0 * t ** 2
    failing = MotionChecker(robot).check(t, q, b, quat, c).summary()
    assert not failing["ok"] and "kinematic" in failing["note"] and "position-controlled" in failing["note"]
    assert "note" not in MotionChecker(robot).check(*standing(robot)).summary()


def test_self_collision_meter_names_the_pair_and_counts_neighbours_that_can_meet():
    robot = load_robot("default")
    m = robot.model
    a, b = m.body("left_elbow_link").id, m.body("torso_link").id
    assert tree_joint_distance(m, a, b) == 4
    assert tree_joint_distance(m, m.body("left_knee_link").id, m.body("left_ankle_link").id) == 1
    meter = SelfCollisionMeter.for_robot(robot)
    qpos = robot.rest_qpos.copy()
    # swing the left arm across the body: the arm goes into the torso
    for name, value in (("left_shoulder_roll_joint", -1.2), ("left_shoulder_pitch_joint", -0.3), ("left_elbow_joint", 1.4)):
        qpos[m.jnt_qposadr[m.joint(name).id]] = value
    pen = meter.deepest(np.stack([robot.rest_qpos, qpos]))
    assert pen.depth_m > 0.01 and pen.frame == 1 and "torso_link vs left_" in pen.pair
    rules = {}  # body pair -> the rules of its geom pairs
    for c in robot_pair_classes(robot):
        rules.setdefault(c.bodies, set()).add(c.rule)
    # three joints apart and able to meet within the limits: counted (the old rule left these out)
    assert "counted" in rules[("torso_link", "left_shoulder_yaw_link")]
    assert rules[("left_hip_yaw_link", "left_hip_pitch_link")] == {"counted"}
    assert "touch_at_rest" in rules[("torso_link", "left_shoulder_pitch_link")]
    assert rules[("torso_link", "torso_link")] == {"rigid"}


def test_pairs_left_out_as_unable_to_meet_never_meet_within_the_limits():
    """The sweep's verdict against random configurations inside the joint limits."""
    import mujoco

    robot = load_robot("default")
    m = robot.model
    excluded = [c.geoms for c in robot_pair_classes(robot) if c.rule == "cannot_collide"]
    assert len(excluded) > 10
    data, fromto = mujoco.MjData(m), np.zeros(6)
    lo, hi = robot.position_limits.T
    rng = np.random.default_rng(0)
    closest = np.inf
    for _ in range(3000):
        data.qpos[:] = robot.rest_qpos
        data.qpos[robot.qpos_index] = rng.uniform(lo, hi)
        mujoco.mj_kinematics(m, data)
        closest = min(closest, min(mujoco.mj_geomDistance(m, data, a, b, 0.05, fromto) for a, b in excluded))
    assert closest > -1e-4


@pytest.mark.parametrize("robot_name, clip, pair", [
    ("h1", "jog", "left_hip_yaw_link vs right_hip_yaw_link"),       # the hip-yaw housings, 2 joints apart
    ("g1", "kick", "torso_link vs left_shoulder_yaw_link"),         # the shoulder into the torso, 3 joints apart
])
def test_neighbours_that_meet_are_measured_and_avoided(shared_data, robot_name, clip, pair):
    description = {"h1": "robots/unitree_h1/h1.xml", "g1": "robots/unitree_g1/g1_29dof.xml"}[robot_name]
    robot = load_robot(robot_name, description=shared_data / description)
    meter = SelfCollisionMeter.for_robot(robot)
    m = robot.model
    this_pair = SelfCollisionMeter(m, [g for g in meter.pairs if
                                       f"{m.body(m.geom_bodyid[g[0]]).name} vs {m.body(m.geom_bodyid[g[1]]).name}" == pair])
    assert len(this_pair.pairs)  # counted (the old rule left pairs this close in the tree out)
    motion = _mocap_joints(shared_data, clip)
    out = {}
    for avoid in (False, True):
        traj = Retargeter(robot, self_collision=avoid).retarget(motion)
        qpos = np.array([robot.full_qpos(p, b, q) for p, b, q in zip(traj.positions, traj.base_position,
                                                                        traj.base_quat_wxyz)])
        out[avoid] = (this_pair.deepest(qpos), meter.deepest(qpos), traj.keypoint_error_m.mean())
    assert out[False][0].depth_m > 0.01      # without avoidance the pair meets (H1 17 mm, G1 14 mm)
    assert out[True][1].depth_m < 0.005      # with it no counted pair goes 5 mm deep
    assert out[True][2] <= 1.1 * out[False][2]


def test_self_collision_avoidance_on_the_real_clip(shared_data):
    """G1's left wrist goes ~30 mm into its hip without avoidance; under 5 mm with it, same keypoint error."""
    robot = load_robot("g1", description=shared_data / "robots/unitree_g1/g1_29dof.xml")
    motion = np.load(shared_data / "humanml3d_sample/new_joints/012314.npy")
    meter = SelfCollisionMeter.for_robot(robot)
    out = {}
    for avoid in (False, True):
        traj = Retargeter(robot, self_collision=avoid).retarget(motion)
        qpos = [robot.full_qpos(p, b, q) for p, b, q in zip(traj.positions, traj.base_position, traj.base_quat_wxyz)]
        out[avoid] = (meter.deepest(np.array(qpos)), traj.keypoint_error_m.mean(), traj)
    assert out[False][0].depth_m > 0.02 and "wrist" in out[False][0].pair
    assert out[True][0].depth_m < 0.005
    assert out[True][1] <= 1.1 * out[False][1]
    traj = out[True][2]
    assert traj.foot_contacts.shape == (len(traj), 2) and traj.foot_contacts.any()
    report = MotionChecker(robot).check_trajectory(traj)
    assert report.samples == len(traj) and np.all(np.isfinite(report.peak_torque))
    assert report.supported_samples > 0 and 0 <= report.zmp_inside_fraction <= 1


def _mocap_joints(shared_data, skill):
    from momask_model.data.mocap.deepmimic import deepmimic_to_joints, load_deepmimic_character, load_deepmimic_clip

    root = shared_data / "deepmimic_mocap"
    character = load_deepmimic_character(root / "characters" / "humanoid3d.txt")
    return deepmimic_to_joints(load_deepmimic_clip(root / "motions" / f"humanoid3d_{skill}.txt", character))


def test_the_spline_between_keyframes_is_kept_out_of_self_collision(shared_data, monkeypatch):
    """A forward roll on the default humanoid: the IK keyframes are clear, but without the collision-aware
    interpolation the spline between two of them cuts ~12 mm into a limb. With it: under 5 mm, the same
    keypoint error, velocities within the guarantee, C1 samples, and chunks equal to the batch."""
    from momask_ros.retarget import keyframes as retarget_keyframes
    from momask_ros.retarget.retargeter import RobotTrajectory

    robot = load_robot("default")
    meter = SelfCollisionMeter.for_robot(robot)
    motion = _mocap_joints(shared_data, "roll")

    def run(**kw):
        traj = Retargeter(robot, **kw).retarget(motion)
        qpos = [robot.full_qpos(p, b, q) for p, b, q in zip(traj.positions, traj.base_position, traj.base_quat_wxyz)]
        return meter.deepest(np.array(qpos)), traj

    fixed, traj = run()
    with monkeypatch.context() as m:
        m.setattr(retarget_keyframes, "REPAIR_DEPTH_M", np.inf)
        spline_only, unrepaired = run()
    assert spline_only.depth_m > 0.01 and fixed.depth_m < 0.005
    assert traj.keypoint_error_m.mean() <= 1.1 * run(self_collision=False)[1].keypoint_error_m.mean()
    assert np.all(np.abs(traj.velocities) <= robot.velocity_limits + 1e-9)
    lo, hi = robot.position_limits.T
    assert np.all(traj.positions >= lo) and np.all(traj.positions <= hi)
    # no jump where a knot was inserted: each step is within what the velocity limits allow
    assert np.all(np.abs(np.diff(traj.positions, axis=0)) <= robot.velocity_limits * np.diff(traj.times_s)[:, None])
    changed = np.abs(traj.positions - unrepaired.positions).max(axis=1) > 1e-6
    assert 0 < changed.sum() < 0.5 * len(traj)   # only around the penetrating samples
    stream = Retargeter(robot).stream()
    chunks = [stream.push(motion[i:i + 7]) for i in range(0, len(motion), 7)] + [stream.finish()]
    assert np.array_equal(RobotTrajectory.concatenate(chunks).positions, traj.positions)


def test_push_out_moves_a_penetrating_pose_out_within_its_box():
    """The repair step alone: a pose with the upper arm in the torso comes out of collision, every joint
    inside the box it was given; a zero-width box leaves the pose as it is."""
    from momask_ros.retarget.avoidance import collision_limit

    robot = load_robot("default")
    limit = collision_limit(robot)
    m = robot.model
    qpos = robot.rest_qpos.copy()
    for name, value in (("left_shoulder_roll_joint", -0.5), ("left_shoulder_pitch_joint", -0.3), ("left_elbow_joint", 1.4)):
        qpos[m.jnt_qposadr[m.joint(name).id]] = value   # the upper arm ~50 mm in the torso
    depth = limit.depth(qpos)
    assert depth > 0.03
    joints = qpos[robot.qpos_index]
    lower, upper = joints - 0.5, joints + 0.5
    out = limit.push_out(qpos, robot.qpos_index, lower, upper)
    assert limit.depth(out) <= 1e-3
    assert np.all(out[robot.qpos_index] >= lower - 1e-9) and np.all(out[robot.qpos_index] <= upper + 1e-9)
    same = limit.push_out(qpos, robot.qpos_index, joints, joints)
    assert np.allclose(same, qpos)


def test_profile_sections_are_checked(tmp_path):
    import yaml

    data = yaml.safe_load(packaged_profile_path("default").read_text())
    for bad, match in (({"sim": {"kp": {"left_knee_joint": -1}}}, "sim.kp"),
                       ({"sim": {"bogus": 1}}, "unknown"),
                       ({"self_collision": {"pairs": [["pelvis"]]}}, "pairs"),
                       ({"self_collision": {"min_distance_m": 0.1, "detection_distance_m": 0.05}}, "min_distance")):
        with pytest.raises(ProfileError, match=match):
            RobotProfile.from_dict({**data, **bad})
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({**data, "description": str(packaged_profile_path("default").parent / "humanoid.xml"),
                                    "self_collision": {"pairs": [[["no_such_body"], ["pelvis"]]]}}))
    with pytest.raises(ProfileError, match="no_such_body"):
        load_robot(path)


def test_momask_check_cli(shared_data, tmp_path, capsys):
    from momask_ros.tools.check import main

    out = tmp_path / "r.json"
    assert main([str(shared_data / "humanml3d_sample/new_joints/012314.npy"), "--robot", "default", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "balance: ZMP inside" in text and "self-collision" in text and "verdict" in text
    report = json.loads(out.read_text())
    assert set(report["joints"]) == set(load_robot("default").joint_names)
    assert main([str(tmp_path / "missing.npz")]) == 2



def _demo_harness(params):
    from momask_ros.stream.pipeline import MotionPipeline

    from ros_harness import Harness

    return Harness(MotionPipeline.from_bundle(None, robot="default", device="cpu"), {"seed": 3, **params})


# Any motion under gravity needs more than 1 % of some joint's effort limit: a threshold every motion fails,
# whatever the demo model generates.
STRICT = dict(physical_max_torque_ratio=0.01)
LOOSE = dict(physical_max_torque_ratio=100.0, physical_min_zmp_inside=0.0, physical_max_zmp_outside_m=100.0,
             physical_max_self_penetration_m=1.0)


@pytest.mark.parametrize("loose", [False, True])
def test_node_physical_checks_gate(loose):
    """reject, over ROS: a motion over the thresholds is refused with the reason before any of it plays and
    the stream keeps holding; loose thresholds play it, the summary in its statuses."""
    h = _demo_harness({"physical_checks": "reject", **(LOOSE if loose else STRICT)})
    try:
        h.wait_state("ready", 60.0)
        h.send("a person walks forward length=2s")
        if loose:
            done = h.wait_state("done", 60.0)
            assert done["physical"]["ok"] and "peak_torque_ratio" in done["physical"]
            assert h.by_state("playing")
        else:
            rejected = h.wait_state("rejected", 60.0, reason="physically_infeasible")
            assert rejected["detail"].startswith("torque") and rejected["physical"]["ok"] is False
            assert rejected["physical"]["failures"] and "zmp_inside_fraction" in rejected["physical"]
            n = len(h.joint_states)
            time.sleep(0.5)
            assert not h.by_state("playing") and not h.by_state("done")
            held = [np.asarray(m.position) for m in list(h.joint_states)[n:]]
            assert held and np.allclose(held, held[0])   # still publishing the held rest pose
    finally:
        h.close()


def test_node_physical_checks_warn_plays_and_reports():
    """warn (the default): a motion over the thresholds plays to its end; the done status carries the
    failing summary."""
    h = _demo_harness(STRICT)
    try:
        h.send("a person walks forward length=2s")
        done = h.wait_state("done", 60.0)
        assert done["physical"]["ok"] is False and done["physical"]["failures"][0].startswith("torque")
        assert "kinematic" in done["physical"]["note"]  # the status says what the failure means
        assert not h.by_state("rejected")
    finally:
        h.close()


def test_node_physical_checks_off_as_ros_parses_it():
    """`-p physical_checks:=off` reaches the node as YAML's false: it means off (no check, no summary)."""
    from momask_ros.ros.node import ParameterError, _coerce

    assert _coerce("physical_checks", False) == "off" and _coerce("physical_checks", "reject") == "reject"
    for bad in ("bogus", True):
        with pytest.raises(ParameterError):
            _coerce("physical_checks", bad)
    h = _demo_harness({"physical_checks": False})
    try:
        h.send("a person walks forward length=1s")
        done = h.wait_state("done", 60.0)
        assert "physical" not in done
    finally:
        h.close()


def test_window_decision_for_each_window_and_mode():
    good = {"ok": True, "failures": [], "peak_torque_ratio": 0.5, "zmp_inside_fraction": 1.0, "self_penetration_m": 0.0}
    bad = {**good, "ok": False, "failures": ["torque 2.0 > 1.0 (left_knee)"], "peak_torque_ratio": 2.0}
    assert window_decision("off", 3, bad, start_s=6.0).play and window_decision("reject", 0, None, start_s=0).play
    for mode in ("warn", "reject"):
        d = window_decision(mode, 1, good, start_s=2.0)
        assert d.play and d.status is None and d.entry["window"] == 1 and d.entry["start_s"] == 2.0 and d.entry["ok"]
    warned = window_decision("warn", 2, bad, start_s=4.0)
    assert warned.play and warned.entry["failures"] == bad["failures"] and not warned.entry["ok"]
    first = window_decision("reject", 0, bad, start_s=0.0)
    assert not first.play and first.refuse_job and first.status["reason"] == "physically_infeasible"
    assert "window" not in first.status and first.status["detail"].startswith("torque")
    later = window_decision("reject", 2, bad, start_s=4.0)
    assert not later.play and not later.refuse_job
    assert later.status["window"] == 2 and later.status["stops_at_s"] == 4.0 and later.status["physical"] is bad


def _failing_second_window(monkeypatch):
    """Patch the gate so that the second window it checks fails (the checks themselves are tested above)."""
    from momask_ros.physics import checks as physical_checks

    real = physical_checks.MotionGate.summary
    calls = []

    def summary(self, joints_yup, fps, limits=Thresholds()):
        out = real(self, joints_yup, fps, limits)
        calls.append(len(joints_yup))
        return {**out, "ok": False, "failures": ["torque (test)"]} if len(calls) == 2 else out

    monkeypatch.setattr(physical_checks.MotionGate, "summary", summary)
    return calls


def test_node_reject_cuts_a_long_motion_before_a_refused_later_window(monkeypatch):
    """reject, over ROS: a 6 s motion generated in 2 s windows whose second window fails is cut where that
    window begins: a rejected status names the window, the first window plays to its end (done, with
    each checked window in physical_windows), the robot then holds, and the next command plays."""
    from momask_ros.stream.pipeline import MotionPipeline

    from motion_fakes import WalkGenerator
    from ros_harness import Harness

    calls = _failing_second_window(monkeypatch)
    pipeline = MotionPipeline.for_model(WalkGenerator(max_length=40), robot="default")
    h = Harness(pipeline, {"physical_checks": "reject", **LOOSE, "control_rate": 50.0})
    try:
        h.send("a person walks forward length=6s")
        rejected = h.wait_state("rejected", 60.0, reason="physically_infeasible")
        assert rejected["window"] == 1 and rejected["stops_at_s"] == 2.0 and rejected["detail"] == "torque (test)"
        done = h.wait_state("done", 60.0)
        assert done["id"] == rejected["id"] and done["windows"] == 1 and done["duration_s"] == pytest.approx(1.95)
        assert [(w["window"], w["ok"]) for w in done["physical_windows"]] == [(0, True), (1, False)]
        assert done["physical"]["ok"] and calls == [40, 40]          # the third window was never generated
        played = [s for s in h.statuses if s.get("id") == done["id"]]
        assert [s["state"] for s in played].index("playing") < [s["state"] for s in played].index("done")
        n = len(h.joint_states)
        time.sleep(0.3)
        held = [np.asarray(m.position) for m in list(h.joint_states)[n:]]
        assert not held or np.allclose(held, held[0], atol=1e-6)   # holding (or idle) after the cut
        h.send("a person walks forward length=1s")
        after = h.wait_for(lambda: [s for s in h.by_state("done") if s["id"] != done["id"]], 60.0, "next done")[0]
        assert after["physical"]["ok"] and after["duration_s"] == pytest.approx(0.95)
    finally:
        h.close()


def test_node_warn_checks_every_window_and_plays_them_all(monkeypatch):
    """warn, over ROS: the same 6 s motion plays all three windows; done lists each window's check."""
    from momask_ros.stream.pipeline import MotionPipeline

    from motion_fakes import WalkGenerator
    from ros_harness import Harness

    calls = _failing_second_window(monkeypatch)
    pipeline = MotionPipeline.for_model(WalkGenerator(max_length=40), robot="default")
    h = Harness(pipeline, {"physical_checks": "warn", **LOOSE, "control_rate": 50.0})
    try:
        h.send("a person walks forward length=6s")
        done = h.wait_state("done", 60.0)
        assert done["windows"] == 3 and done["duration_s"] == pytest.approx(5.95) and not h.by_state("rejected")
        assert [(w["window"], w["start_s"], w["ok"]) for w in done["physical_windows"]] == [
            (0, 0.0, True), (1, 2.0, False), (2, 4.0, True)]
        assert calls == [40, 40, 40]
    finally:
        h.close()
